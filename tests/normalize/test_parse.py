"""parse_message: fields, encodings, attachments, dates, and never raising on garbage."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archiver.model import Address, ParsedMessage
from archiver.normalize.parse import attachment_payloads, decode_header_value, parse_message
from archiver.normalize.text import decode_bytes, html_to_text

FIXTURES = Path(__file__).parent / "fixtures"
MALFORMED = Path(__file__).parent.parent / "data" / "malformed"
RECEIVED = datetime(2020, 1, 1, 12, 0, tzinfo=UTC)


def parse(name: str, **kwargs: object) -> ParsedMessage:
    return parse_message((FIXTURES / name).read_bytes(), received=RECEIVED, **kwargs)  # type: ignore[arg-type]


def all_text(msg: ParsedMessage) -> list[str]:
    return [
        msg.message_id,
        msg.in_reply_to,
        *msg.references,
        msg.subject,
        msg.body_text,
        msg.body_html,
        msg.explicit_matter,
        *(a.addr for a in (*msg.from_, *msg.to, *msg.cc, *msg.bcc)),
        *(a.name for a in (*msg.from_, *msg.to, *msg.cc, *msg.bcc)),
        *(a.filename for a in msg.attachments),
        *(a.text for a in msg.attachments),
        *(v for _, v in msg.headers),
        *msg.parse_errors,
    ]


def assert_storable(msg: ParsedMessage) -> None:
    """Every text field must encode as UTF-8 (no lone surrogates) and hold no NUL."""
    for text in all_text(msg):
        assert isinstance(text, str)
        text.encode("utf-8")
        assert "\x00" not in text
    assert msg.date.tzinfo is not None
    assert msg.date.utcoffset() == timedelta(0)


# --- headers ----------------------------------------------------------------------------------


def test_rfc2047_headers_ids_and_addresses() -> None:
    msg = parse("rfc2047.eml")
    assert msg.subject == "Café und Kuchen for André re: 12345-0001"
    assert msg.message_id == "<abc.123@acme.example>"
    assert msg.in_reply_to == "<parent@acme.example>"
    assert msg.references == ("<root@acme.example>", "<parent@acme.example>")
    assert msg.from_ == (Address(addr="joerg.mueller@acme.example", name="Jörg Müller"),)
    assert Address(addr="alice@acme.example") in msg.to
    assert Address(addr="bob@other.example", name="Bob, B.") in msg.to
    assert Address(addr="rene@x.example", name="René") in msg.to
    assert msg.cc == ()
    assert msg.explicit_matter == "Acme/12345-0001"
    assert msg.date == datetime(2014, 3, 4, 13, 30, tzinfo=UTC)
    assert not msg.date_is_fallback
    assert msg.body_text == "Grüße aus Köln."
    assert msg.parse_errors == ()
    names = [name for name, _ in msg.headers]
    assert names == [
        "From", "To", "Cc", "Subject", "Date", "Message-ID", "In-Reply-To", "References", "X-Archive-Matter",
    ]  # fmt: skip
    assert dict(msg.headers)["From"] == "Jörg Müller <Joerg.Mueller@Acme.Example>"


def test_matter_header_name_is_configurable() -> None:
    data = b"From: a@x.example\r\nX-Case: 777\r\nDate: Tue, 04 Mar 2014 15:30:00 +0000\r\n\r\nhi\r\n"
    msg = parse_message(data, received=RECEIVED, matter_header="X-Case")
    assert msg.explicit_matter == "777"
    assert ("X-Case", "777") in msg.headers
    assert parse_message(data, received=RECEIVED).explicit_matter == ""


def test_raw_8bit_headers_decode_as_utf8_or_latin1() -> None:
    msg = parse("eight_bit_headers.eml")
    assert msg.subject == "Grüße – raw utf-8"
    assert msg.from_ == (Address(addr="jose@example.es", name="José Núñez"),)
    assert parse("latin1_header.eml").subject == "café crème"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("=?utf-8?B?SsO2cmc=?=", "Jörg"),
        ("=?utf-8?q?a?= =?utf-8?q?b?=", "ab"),
        ("=?x-unknown-charset?q?caf=E9?=", "café"),
        ("=?utf-8?B?!!!not base64?=", "=?utf-8?B?!!!not base64?="),
        ("plain", "plain"),
        ("Grüße =?utf-8?q?x=C3=A9?= \\u0041 end", "Grüße xé \\u0041 end"),
        ("=?utf-8?b?5pel?= =?utf-8?b?5pys?=", "日本"),
    ],
)
def test_decode_header_value(raw: str, expected: str) -> None:
    assert decode_header_value(raw) == expected


def test_garbage_addresses_are_tolerated() -> None:
    data = (
        b"From: not an address at all\r\n"
        b"To: undisclosed-recipients: ;\r\n"
        b"Cc: <<bad@@x>>, ok@Example.COM, Broken <b@x.example\r\n"
        b"Bcc: noatsign\r\n"
        b"Date: Tue, 04 Mar 2014 15:30:00 +0000\r\n\r\nbody\r\n"
    )
    msg = parse_message(data, received=RECEIVED)
    assert_storable(msg)
    assert msg.to == ()
    assert Address(addr="ok@example.com") in msg.cc
    assert [a.addr for a in msg.bcc] == ["noatsign"]
    assert not any("To header" in e for e in msg.parse_errors)  # an empty group is not an error


# --- bodies and charsets ----------------------------------------------------------------------


def test_latin1_quoted_printable_body() -> None:
    assert parse("latin1_qp.eml").body_text == "Voilà le café à 3€."


def test_wrong_charset_label_is_recovered() -> None:
    msg = parse("wrong_charset.eml")
    assert msg.body_text == "Grüße, naïve café"


def test_unknown_charset_falls_back_without_dropping_text() -> None:
    msg = parse("unknown_charset.eml")
    assert msg.body_text == "price: café 5€ (end)"
    assert any("x-klingon" in e for e in msg.parse_errors)


def test_stray_byte_in_utf8_keeps_both_scripts() -> None:
    msg = parse("utf8_with_stray_byte.eml")
    assert msg.body_text == "日本語 and café end"
    assert msg.parse_errors  # flagged, not silent


def test_html_only_body_is_converted() -> None:
    msg = parse("html_only.eml")
    assert "Big Sale" in msg.body_text
    assert "Fish & chips <today> été" in msg.body_text
    assert "line one\nline two" in msg.body_text
    assert "cell a" in msg.body_text and "cell b" in msg.body_text
    assert "do not index" not in msg.body_text
    assert "Ignore title" not in msg.body_text
    assert "color: red" not in msg.body_text
    assert msg.body_html.startswith("<html>")


def test_alternative_prefers_plain_and_keeps_html() -> None:
    msg = parse("alternative.eml")
    assert msg.body_text == "plain version"
    assert msg.body_html == "<p>html <b>version</b></p>"


def test_nul_bytes_are_removed() -> None:
    msg = parse("nul_bytes.eml")
    assert msg.subject == "nulhere"
    assert msg.body_text == "beforeafter"
    assert_storable(msg)


# --- attachments ------------------------------------------------------------------------------


def test_attachments_size_hash_names_and_text() -> None:
    msg = parse("attachments.eml")
    assert msg.body_text == "see attached"
    by_name = {a.filename: a for a in msg.attachments}
    assert set(by_name) == {"contract.pdf", "résumé list.csv", "Bericht.html", "notes.txt"}
    pdf = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
    assert by_name["contract.pdf"].size == len(pdf)
    assert by_name["contract.pdf"].sha256 == hashlib.sha256(pdf).hexdigest()
    assert by_name["contract.pdf"].content_type == "application/pdf"
    assert by_name["contract.pdf"].text == ""
    csv = "name,city\nRené,Zürich\n".encode()
    assert by_name["résumé list.csv"].sha256 == hashlib.sha256(csv).hexdigest()
    assert by_name["résumé list.csv"].text == "name,city\nRené,Zürich\n"
    assert by_name["Bericht.html"].text == "Attached report"
    assert by_name["notes.txt"].text == "attached plain notes"


def test_attachment_text_is_capped() -> None:
    msg = parse("attachments.eml", max_attachment_text_chars=4)
    assert {a.filename: a.text for a in msg.attachments}["notes.txt"] == "atta"


def test_8bit_attachment_filename() -> None:
    data = (
        b"From: a@x.example\nContent-Type: multipart/mixed; boundary=X\n\n--X\n"
        b"Content-Type: application/octet-stream\n"
        b'Content-Disposition: attachment; filename="r\xc3\xa9sum\xc3\xa9.bin"\n\nabc\n--X--\n'
    )
    (att,) = parse_message(data, received=RECEIVED).attachments
    assert att.filename == "résumé.bin"
    assert att.size == 3  # "abc": the line break before the boundary belongs to the boundary


def test_message_rfc822_attachment() -> None:
    msg = parse("forwarded.eml")
    assert msg.body_text == "forwarding this"
    (att,) = msg.attachments
    assert att.content_type == "message/rfc822"
    assert att.filename == "the original ✓.eml"
    assert att.text.startswith("the original ✓")
    assert "inner body text" in att.text
    assert att.size > 0 and len(att.sha256) == 64
    assert "inner body text" not in msg.body_text


# --- dates ------------------------------------------------------------------------------------


def test_bad_date_falls_back_to_received() -> None:
    msg = parse("bad_date.eml")
    assert msg.date == RECEIVED and msg.date_is_fallback
    assert any(e.startswith("bad date:") for e in msg.parse_errors)


def test_missing_date_falls_back() -> None:
    msg = parse("missing_date.eml")
    assert msg.date == RECEIVED and msg.date_is_fallback
    assert "missing Date header" in msg.parse_errors


def test_absurd_future_date_falls_back() -> None:
    msg = parse("future_date.eml")
    assert msg.date == RECEIVED and msg.date_is_fallback
    assert any("bad date" in e for e in msg.parse_errors)


def test_date_before_1970_falls_back() -> None:
    data = b"From: a@x.example\r\nDate: Thu, 13 Feb 1969 23:32:54 -0330\r\n\r\nx\r\n"
    msg = parse_message(data, received=RECEIVED)
    assert msg.date_is_fallback and msg.date == RECEIVED


@pytest.mark.parametrize("year", ["0000", "0001", "0099"])
def test_a_four_digit_year_below_1000_is_no_date(year: str) -> None:
    """The parsers read "0000" as a two-digit year and give 2000: a plausible date for none at all."""
    data = f"From: a@x.example\r\nDate: Sat, 01 Jan {year} 10:00:00 -0500\r\n\r\nx\r\n".encode()
    msg = parse_message(data, received=RECEIVED)
    assert msg.date_is_fallback and msg.date == RECEIVED
    assert any("year before 1000" in e for e in msg.parse_errors)
    kept = parse_message(b"From: a@x.example\r\nDate: Sat, 01 Jan 2000 10:00:00 -0500\r\n\r\nx\r\n", received=RECEIVED)
    assert not kept.date_is_fallback and kept.date.year == 2000


def test_lenient_date_is_accepted_in_utc() -> None:
    msg = parse("lenient_date.eml")
    assert msg.date == datetime(2002, 5, 7, 15, 38, 27, tzinfo=UTC)
    assert not msg.date_is_fallback


def test_naive_received_is_taken_as_utc() -> None:
    msg = parse_message(b"", received=datetime(2021, 5, 1, 8, 0))
    assert msg.date == datetime(2021, 5, 1, 8, 0, tzinfo=UTC)


# --- hostile input ----------------------------------------------------------------------------


def test_empty_input() -> None:
    msg = parse_message(b"", received=RECEIVED)
    assert msg.date == RECEIVED and msg.date_is_fallback
    assert msg.parse_errors == ("empty message",)


def _nested(depth: int) -> bytes:
    head = b"From: a@x.example\r\nDate: Tue, 04 Mar 2014 15:30:00 +0000\r\n"
    head += b"Content-Type: multipart/mixed; boundary=b0\r\n\r\n"
    parts = [b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (i - 1, i) for i in range(1, depth)]
    return head + b"".join(parts) + b"--b%d\r\nContent-Type: text/plain\r\n\r\ndeep text\r\n" % (depth - 1)


@pytest.mark.parametrize("depth", [50, 5000])
def test_deep_nesting_is_bounded(depth: int) -> None:
    msg = parse_message(_nested(depth), received=RECEIVED)
    assert_storable(msg)
    assert "deep text" in msg.body_text
    assert msg.date == datetime(2014, 3, 4, 15, 30, tzinfo=UTC)


def test_huge_header_line() -> None:
    to = b", ".join(b"user%d@example.com" % i for i in range(60_000))
    data = b"From: a@x.example\r\nTo: " + to + b"\r\nSubject: " + b"x" * 2_000_000 + b"\r\n\r\nbody\r\n"
    msg = parse_message(data, received=RECEIVED)
    assert_storable(msg)
    assert msg.body_text == "body"
    assert len(msg.to) > 1000


def test_too_large_message_parses_headers_only() -> None:
    data = b"From: a@x.example\r\nSubject: big\r\nDate: Tue, 04 Mar 2014 15:30:00 +0000\r\n\r\n" + b"y" * 5000
    msg = parse_message(data, received=RECEIVED, max_parse_bytes=1000)
    assert msg.subject == "big"
    assert msg.body_text == ""
    assert any("too large to parse body" in e for e in msg.parse_errors)


def test_binary_garbage_does_not_crash() -> None:
    data = bytes(range(256)) * 50
    msg = parse_message(data, received=RECEIVED)
    assert_storable(msg)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000))
def test_random_bytes_never_raise(data: bytes) -> None:
    assert_storable(parse_message(data, received=RECEIVED))


_PIECES = st.sampled_from(
    [
        b"From: ", b"To: ", b"Subject: =?utf-8?B?", b"?=", b"=?x?q?=FF?=", b"Date: ", b"\r\n", b"\n",
        b"Content-Type: multipart/mixed; boundary=B\r\n", b"--B\r\n", b"--B--", b"\xff\xfe", b"\x00",
        b"Content-Transfer-Encoding: base64\r\n", b"Content-Type: message/rfc822\r\n", b"<a@b>", b";",
        b"charset=utf-16", b"Content-Disposition: attachment; filename*=utf-8''%FF%C3\r\n", b"\xc3\xa9",
    ]
)  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_PIECES, max_size=60))
def test_mail_shaped_garbage_never_raises(pieces: list[bytes]) -> None:
    assert_storable(parse_message(b"".join(pieces), received=RECEIVED))


@pytest.mark.skipif(not MALFORMED.is_dir(), reason="tests/data/malformed not present")
def test_every_malformed_sample_parses() -> None:
    files = sorted(p for p in MALFORMED.iterdir() if p.is_file() and p.suffix != ".txt")
    assert files
    for path in files:
        msg = parse_message(path.read_bytes(), received=RECEIVED)
        assert_storable(msg)


# --- text helpers -----------------------------------------------------------------------------


def test_decode_bytes_chain() -> None:
    assert decode_bytes("é".encode(), "us-ascii") == ("é", "")
    assert decode_bytes(b"\xe9", "utf-8")[0] == "é"
    assert decode_bytes("日本".encode("shift_jis"), "shift_jis") == ("日本", "")
    text, problem = decode_bytes(b"abc\xe9", "base64")  # a bytes codec is not a charset
    assert text == "abcé" and problem


def test_html_to_text_edge_cases() -> None:
    assert html_to_text("") == ""
    assert html_to_text("<!-- only a comment -->") == ""
    assert html_to_text("no tags &amp; entity") == "no tags & entity"
    deep = "<div>" * 3000 + "inside" + "</div>" * 3000
    assert "inside" in html_to_text(deep)


def _all_fixture_messages() -> list[Path]:
    data = Path(__file__).resolve().parent.parent / "data"
    files = [*FIXTURES.glob("*.eml"), *(data / "malformed").iterdir(), *(data / "sample-maildir").rglob("*")]
    return sorted(p for p in files if p.is_file() and not p.name.endswith((".txt", ".md")))


def test_every_attachment_is_found_again_by_its_hash() -> None:
    """The web downloads an attachment by the SHA-256 the normalizer recorded: attachment_payloads
    must yield those exact bytes for every attachment of every fixture (embedded messages too)."""
    checked = 0
    for path in _all_fixture_messages():
        raw = path.read_bytes()
        parsed = parse_message(raw, received=RECEIVED)
        hashes = {hashlib.sha256(b).hexdigest() for b in attachment_payloads(raw)}
        for att in parsed.attachments:
            assert att.sha256 in hashes, (path.name, att.filename)
            checked += 1
    assert checked >= 10  # the fixtures do carry attachments, embedded messages among them
