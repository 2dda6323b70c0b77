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


def message_id(original: bytes) -> str:
    """The Message-ID header of a test message (the journal report's envelope repeats it)."""
    for line in original.splitlines():
        if line.lower().startswith(b"message-id:"):
            return line.split(b":", 1)[1].strip().decode()
        if not line.strip():
            break
    return ""


def make_journal_report(
    original: bytes,
    *,
    to: str,
    cc: str,
    bcc: str,
    boundary: str = "JR-boundary-42",
    sender: str = "Microsoft Exchange Server <postmaster@example.com>",
    extra_lines: tuple[str, ...] = (
        # Microsoft's journal report format: the member (or the forwarding target) first, then the
        # distribution list it was expanded from (or the recipient it was forwarded from).
        "To: erin@example.com, Expanded: Sales@Example.com",
        "Cc: frank@example.com, Forwarded: grace@example.com",
    ),
) -> bytes:
    """An Exchange journal report wrapping ``original`` (layout as Exchange writes it, per the documented format)."""
    envelope = (
        "Sender: alice@example.com\r\n"
        "Subject: Quarterly figures\r\n"
        f"Message-Id: {message_id(original)}\r\n"
        f"To: {to}\r\n"
        + (f"Cc: {cc}\r\n" if cc else "")
        + f"Bcc: {bcc}\r\n"
        + "".join(f"{line}\r\n" for line in extra_lines)
    )
    return (
        (
            f"From: {sender}\r\n"
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
