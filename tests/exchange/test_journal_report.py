"""Exchange journal reports: the original's exact bytes and the envelope recipients come out."""

from __future__ import annotations

import base64

from connectors.journal_report import envelope_recipients, is_journal_report, unwrap_journal_report

from .messages import make_journal_report, make_mime


def test_unwraps_original_bytes_and_envelope_recipients() -> None:
    original = make_mime(7)
    report = make_journal_report(original, to="Bob@Example.com", cc="carol@example.com", bcc="dave@example.com")
    assert is_journal_report(report)
    result = unwrap_journal_report(report)
    assert result is not None
    data, recipients = result
    assert data == original
    assert recipients == (
        "bob@example.com",
        "carol@example.com",
        "dave@example.com",
        "sales@example.com",
        "erin@example.com",
    )


def test_original_with_its_own_multipart_and_lf_line_ends() -> None:
    inner = (
        b"From: a@example.com\nTo: b@example.com\nSubject: nested\nMIME-Version: 1.0\n"
        b'Content-Type: multipart/alternative; boundary="inner"\n\n'
        b"--inner\nContent-Type: text/plain\n\nplain\n--inner\nContent-Type: text/html\n\n<p>html</p>\n--inner--\n"
    )
    report = make_journal_report(inner, to="b@example.com", cc="", bcc="x@example.com").replace(b"\r\n", b"\n")
    result = unwrap_journal_report(report)
    assert result is not None
    assert result[0] == inner
    assert "x@example.com" in result[1]


def test_base64_encoded_attachment_is_decoded() -> None:
    original = make_mime(3)
    encoded = base64.encodebytes(original)
    report = make_journal_report(original, to="b@example.com", cc="", bcc="z@example.com").replace(
        b"Content-Type: message/rfc822\r\n", b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n"
    )
    report = report.replace(original, encoded)
    result = unwrap_journal_report(report)
    assert result is not None and result[0] == original


def test_not_a_journal_report() -> None:
    assert unwrap_journal_report(make_mime(1)) is None
    assert not is_journal_report(make_mime(1))


def test_malformed_reports_are_left_alone() -> None:
    # Header present but no attached original: the caller archives it as is.
    assert unwrap_journal_report(b"X-MS-Journal-Report: \r\nSubject: x\r\n\r\nSender: a@b.c\r\n") is None
    assert unwrap_journal_report(b"X-MS-Journal-Report: \r\nContent-Type: multipart/mixed\r\n\r\n--x--") is None
    assert unwrap_journal_report(b"") is None
    assert unwrap_journal_report(b"\xff\xfe\x00garbage") is None


def test_envelope_lines() -> None:
    text = "Sender: s@example.com\nTo: A@x.com, Forwarded: f@x.com\nBcc: b@x.com\nSubject: To: fake@x.com\nRecipient: r@x.com"
    assert envelope_recipients(text) == ("a@x.com", "f@x.com", "b@x.com", "r@x.com")
