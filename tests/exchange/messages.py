"""Small messages of the tests' own (never real mail): plain ones and Exchange journal reports."""

from __future__ import annotations


def make_mime(n: int, *, to: str = "bob@example.com", subject: str | None = None) -> bytes:
    """A small message with a unique Message-ID; CRLF line ends and a trailing space, to prove byte-exactness."""
    subject = subject or f"Test message {n}"
    return (
        f"From: Alice <alice@example.com>\r\n"
        f"To: {to}\r\n"
        f"Subject: {subject}\r\n"
        f"Date: Mon, 02 Mar 2026 10:{n % 60:02d}:00 +0000\r\n"
        f"Message-ID: <msg-{n}@example.com>\r\n"
        f"MIME-Version: 1.0\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n"
        f"\r\n"
        f"Body of message {n}. \r\n"
        f"Second line with a trailing space \r\n"
    ).encode()


def make_journal_report(original: bytes, *, to: str, cc: str, bcc: str, boundary: str = "JR-boundary-42") -> bytes:
    """An Exchange journal report wrapping ``original`` (layout as Exchange writes it)."""
    envelope = (
        "Sender: alice@example.com\r\n"
        "Subject: Quarterly figures\r\n"
        "Message-Id: <msg-jr@example.com>\r\n"
        f"To: {to}\r\n"
        f"Cc: {cc}\r\n"
        f"Bcc: {bcc}\r\n"
        "To: Sales@Example.com, Expanded: erin@example.com\r\n"
    )
    return (
        (
            "From: Microsoft Exchange Server <postmaster@example.com>\r\n"
            "To: journal@example.com\r\n"
            "Subject: Quarterly figures\r\n"
            "Message-ID: <journal-envelope-1@example.com>\r\n"
            "X-MS-Journal-Report: \r\n"
            "MIME-Version: 1.0\r\n"
            f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n'
            "\r\n"
            f"--{boundary}\r\n"
            "Content-Type: text/plain; charset=us-ascii\r\n"
            "Content-Transfer-Encoding: 7bit\r\n"
            "\r\n"
            f"{envelope}"
            f"\r\n--{boundary}\r\n"
            "Content-Type: message/rfc822\r\n"
            "Content-Disposition: attachment\r\n"
            "\r\n"
        ).encode()
        + original
        + f"\r\n--{boundary}--\r\n".encode()
    )
