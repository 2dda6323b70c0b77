"""Exchange journal reports: the original's exact bytes and the envelope's recipients with their roles come out;
anything not shaped like a journal report Exchange writes is kept as received."""

from __future__ import annotations

import base64

from connectors.journal_report import (
    EnvelopeRecipient,
    Kept,
    Unwrapped,
    envelope_roles,
    envelope_tokens,
    is_journal_report,
    journal_copy,
    parse_envelope,
    unwrap_journal_report,
)

from .messages import make_journal_report, make_mime


def unwrapped(report: bytes, **kw: object) -> Unwrapped:
    result = unwrap_journal_report(report, **kw)  # type: ignore[arg-type]
    assert isinstance(result, Unwrapped), result
    return result


def kept(report: bytes, **kw: object) -> str:
    result = unwrap_journal_report(report, **kw)  # type: ignore[arg-type]
    assert isinstance(result, Kept), result
    return result.reason


def test_unwraps_original_bytes_and_envelope_roles() -> None:
    original = make_mime(7)
    report = make_journal_report(original, to="Bob@Example.com", cc="carol@example.com", bcc="dave@example.com")
    assert is_journal_report(report)
    result = unwrapped(report)
    assert result.original == original
    assert result.envelope.sender == "alice@example.com"
    assert result.envelope.message_id == "msg-7@example.com"
    assert result.envelope.recipients == (
        EnvelopeRecipient("to", "bob@example.com"),
        EnvelopeRecipient("cc", "carol@example.com"),
        EnvelopeRecipient("bcc", "dave@example.com"),
        EnvelopeRecipient("to", "erin@example.com", "expanded", "sales@example.com"),
        EnvelopeRecipient("cc", "frank@example.com", "forwarded", "grace@example.com"),
    )


def test_roles_survive_the_flat_provenance_list() -> None:
    """Distribution-list members and forwarding targets keep their To/Cc role; only Bcc lines are Bcc."""
    result = unwrapped(make_journal_report(make_mime(1), to="bob@example.com", cc="", bcc="dave@example.com"))
    tokens = result.tokens
    assert all("@" in t or t.endswith(":") for t in tokens)
    assert [t for t in tokens if "@" in t] == [
        "bob@example.com",
        "dave@example.com",
        "erin@example.com",
        "sales@example.com",
        "frank@example.com",
        "grace@example.com",
    ]
    assert list(envelope_roles(tokens)) == [
        ("to", "bob@example.com"),
        ("bcc", "dave@example.com"),
        ("to", "erin@example.com"),
        ("to", "sales@example.com"),
        ("cc", "frank@example.com"),
        ("cc", "grace@example.com"),
    ]
    # copies archived before roles were kept: bare addresses, role unknown
    assert list(envelope_roles(["X@example.com", "y@example.com"])) == [
        ("recipient", "x@example.com"),
        ("recipient", "y@example.com"),
    ]
    assert envelope_tokens([EnvelopeRecipient("bcc", "m@x.com", "expanded", "dl@x.com")]) == (
        "bcc+expanded:",
        "m@x.com",
        "dl@x.com",
    )


def test_original_with_its_own_multipart_and_lf_line_ends() -> None:
    inner = (
        b"From: a@example.com\nTo: b@example.com\nSubject: nested\nMessage-ID: <nested@example.com>\n"
        b'MIME-Version: 1.0\nContent-Type: multipart/alternative; boundary="inner"\n\n'
        b"--inner\nContent-Type: text/plain\n\nplain\n--inner\nContent-Type: text/html\n\n<p>html</p>\n--inner--\n"
    )
    report = make_journal_report(inner, to="b@example.com", cc="", bcc="x@example.com").replace(b"\r\n", b"\n")
    result = unwrapped(report)
    assert result.original == inner
    assert EnvelopeRecipient("bcc", "x@example.com") in result.envelope.recipients


def test_base64_encoded_attachment_is_decoded() -> None:
    original = make_mime(3)
    encoded = base64.encodebytes(original)
    report = make_journal_report(original, to="b@example.com", cc="", bcc="z@example.com").replace(
        b"Content-Type: message/rfc822\r\n", b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n"
    )
    report = report.replace(original, encoded)
    assert unwrapped(report).original == original


def test_undecodable_base64_keeps_the_report_as_received() -> None:
    """Finding 12: a damaged base64 original is not "the original": the report itself is archived, flagged."""
    original = make_mime(3)
    encoded = base64.encodebytes(original)
    encoded = encoded[:40] + b"!" + encoded[40:]
    report = make_journal_report(original, to="b@example.com", cc="", bcc="z@example.com").replace(
        b"Content-Type: message/rfc822\r\n", b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n"
    )
    report = report.replace(original, encoded)
    assert "base64" in kept(report)
    data, recipients, reason = journal_copy(report)
    assert data == report and recipients == () and "base64" in reason


def test_not_a_journal_report() -> None:
    assert unwrap_journal_report(make_mime(1)) is None
    assert not is_journal_report(make_mime(1))
    assert journal_copy(make_mime(1)) == (make_mime(1), (), "")


def test_malformed_reports_are_kept_as_received() -> None:
    # Header present but no attached original: the caller archives it as is.
    assert kept(b"X-MS-Journal-Report: \r\nSubject: x\r\n\r\nSender: a@b.c\r\n")
    assert kept(b"X-MS-Journal-Report: \r\nContent-Type: multipart/mixed\r\n\r\n--x--")
    assert unwrap_journal_report(b"") is None
    assert unwrap_journal_report(b"\xff\xfe\x00garbage") is None


def test_spoofed_reports_are_not_unwrapped() -> None:
    """Finding 2: the header alone is not enough; the structure must be the one Exchange writes."""
    real = make_mime(9)
    fake = make_mime(10, subject="harmless")
    # a lawyer's mail with the header, free text and an attachment of the sender's choosing
    spoof = (
        b"From: Mallory <mallory@evil.example>\r\nTo: alice@example.com\r\nSubject: Settlement offer\r\n"
        b"Message-ID: <real-1@evil.example>\r\nX-MS-Journal-Report: \r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nWe offer $2M. See attached.\r\nBcc: judge@court.example\r\n"
        b"--b\r\nContent-Type: message/rfc822\r\n\r\n" + fake + b"\r\n--b--\r\n"
    )
    assert "Sender, Subject and Message-Id" in kept(spoof)
    # a well-formed envelope whose Message-Id is not the attached message's
    report = make_journal_report(real, to="b@example.com", cc="", bcc="z@example.com").replace(real, fake)
    assert "Message-Id" in kept(report)
    # two attached messages
    two = make_journal_report(real, to="b@example.com", cc="", bcc="z@example.com").replace(
        b"\r\n--JR-boundary-42--",
        b"\r\n--JR-boundary-42\r\nContent-Type: message/rfc822\r\n\r\n" + fake + b"\r\n--JR-boundary-42--",
    )
    assert "2 attached messages" in kept(two)
    # a sender that is not the configured journal sender
    report = make_journal_report(real, to="b@example.com", cc="", bcc="z@example.com", sender="mallory@evil.example")
    assert "journal senders" in kept(report, senders=("postmaster@example.com",))
    assert unwrapped(report).original == real  # without a configured sender only the structure is checked
    good = make_journal_report(real, to="b@example.com", cc="", bcc="z@example.com")
    assert unwrapped(good, senders=("Postmaster@Example.com",)).original == real


def test_envelope_lines() -> None:
    text = (
        "Sender: s@example.com\nSubject: To: fake@x.com\nMessage-Id: <m@x>\n"
        "To: A@x.com, Forwarded: f@x.com\nBcc: b@x.com\nOn-Behalf-Of: o@x.com\nRecipient: r@x.com"
    )
    envelope = parse_envelope(text)
    assert not isinstance(envelope, Kept)
    assert envelope.subject == "To: fake@x.com"
    assert envelope.recipients == (
        EnvelopeRecipient("to", "a@x.com", "forwarded", "f@x.com"),
        EnvelopeRecipient("bcc", "b@x.com"),
        EnvelopeRecipient("recipient", "r@x.com"),
    )
    assert isinstance(parse_envelope("Sender: s@x.com\nSubject: x\nMessage-Id: <m@x>\n"), Kept)  # no recipient
    assert isinstance(parse_envelope("Sender: s@x.com\nSubject: x\nMessage-Id: <m@x>\nTo: not an address"), Kept)
