"""parse_message against the stdlib on real mail (review of the normalizer, in its priority order).

Each test builds the shape of a corpus message that the normalizer got wrong: text after
``</html>``, an empty text part hiding the HTML body, an HTML body with a plain footer, a
folded boundary parameter, recipients dropped from mixed lists, dates with AM/PM or unknown
zones, and raw 8-bit headers in the body's charset.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest

from archiver.model import Address, ParsedMessage
from archiver.normalize.parse import attachment_payloads, parse_message
from archiver.normalize.text import html_to_text

RECEIVED = datetime(2020, 1, 1, 12, 0, tzinfo=UTC)
HEAD = b"From: a@x.example\r\nTo: b@x.example\r\nDate: Tue, 04 Mar 2014 15:30:00 +0000\r\nMIME-Version: 1.0\r\n"


def parse(data: bytes) -> ParsedMessage:
    return parse_message(data, received=RECEIVED)


def multipart(subtype: str, boundary: bytes, *parts: bytes) -> bytes:
    """A multipart body (without headers of its own) from parts given as header block + body."""
    out = [b"--" + boundary + b"\r\n" + part + b"\r\n" for part in parts]
    return (
        b"Content-Type: multipart/" + subtype.encode() + b'; boundary="' + boundary + b'"\r\n\r\n'
        b"preamble\r\n" + b"".join(out) + b"--" + boundary + b"--\r\n"
    )


PLAIN = b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
HTML = b"Content-Type: text/html; charset=utf-8\r\n\r\n"


# --- 1. text after </html> --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("markup", "expected"),
    [
        ("<html><body>first</body></html><div>Footer</div>", "first\n\nFooter"),
        ("<HTML><BODY>first</BODY></HTML >\r\nplain tail text", "first\n\nplain tail text"),
        ("<html><body>one</body></html><html><body>two</body></html>", "one\n\ntwo"),
        ("<p>a</p></html foo>\n<p>b</p>", "a\n\nb"),
    ],
)
def test_text_after_closing_html_tag_is_kept(markup: str, expected: str) -> None:
    assert html_to_text(markup) == expected


def test_document_ending_in_closing_html_tag_is_unchanged() -> None:
    assert html_to_text("<html><body><p>only</p></body></html>\r\n\r\n") == "only"
    assert html_to_text("<p>x</p><!-- </html> in a comment --><p>y</p>") == "x\n\ny"


def test_html_body_text_after_closing_html_tag_is_indexed() -> None:
    body = "<HTML><BODY>광고 banner</BODY></HTML></td></tr></table>\r\n<p>실제 본문 text</p>\r\n</html>\r\n"
    data = HEAD + b"Content-Type: text/html; charset=utf-8\r\n\r\n" + body.encode()
    assert parse(data).body_text == "광고 banner\n\n실제 본문 text"


# --- 2. an empty text part does not hide the HTML -----------------------------------------------


def test_empty_plain_part_does_not_hide_html_in_mixed() -> None:
    attachment = b'Content-Type: application/zip; name="x.zip"\r\nContent-Disposition: attachment\r\n\r\nPK'
    data = HEAD + multipart("mixed", b"M", HTML + b"<p>Dear taxpayer</p>", attachment, PLAIN)
    msg = parse(data)
    assert msg.body_text == "Dear taxpayer"
    assert [a.content_type for a in msg.attachments] == ["application/zip"]


def test_whitespace_plain_alternative_does_not_hide_html() -> None:
    data = HEAD + multipart("alternative", b"A", PLAIN + b" \r\n\r\n", HTML + b"<p>the real body</p>")
    assert parse(data).body_text == "the real body"


# --- 3. HTML body + plain footer in multipart/mixed -----------------------------------------------


def test_html_body_and_plain_footer_both_count() -> None:
    footer = b"Content-Type: text/plain\r\nContent-Disposition: inline\r\n\r\n-- \r\nsent with a trial version"
    data = HEAD + multipart("mixed", b"M", HTML + b"<p>Buy <b>now</b></p>", footer)
    msg = parse(data)
    assert msg.body_text == "Buy now\n\n-- \nsent with a trial version"
    assert msg.body_html == "<p>Buy <b>now</b></p>"


def test_plain_alternative_still_wins_over_html_with_a_footer() -> None:
    alternative = multipart("alternative", b"A", PLAIN + b"plain version", HTML + b"<p>html version</p>")
    footer = PLAIN + b"list footer"
    data = HEAD + multipart("mixed", b"M", alternative, footer)
    msg = parse(data)
    assert msg.body_text == "plain version\n\nlist footer"
    assert msg.body_html == "<p>html version</p>"


def test_plain_alternative_wins_over_nested_related_html() -> None:
    image = b"Content-Type: image/gif\r\nContent-Transfer-Encoding: base64\r\n\r\nR0lGODlhAQABAAAAACw="
    related = multipart("related", b"R", HTML + b"<p>html version</p>", image)
    data = HEAD + multipart("alternative", b"A", PLAIN + b"plain version", related)
    assert parse(data).body_text == "plain version"


def test_html_alternative_with_plain_footer_after_it() -> None:
    """An alternative whose plain part is empty: its HTML counts, and the mixed footer too."""
    alternative = multipart("alternative", b"A", PLAIN, HTML + b"<p>html body</p>")
    data = HEAD + multipart("mixed", b"M", alternative, PLAIN + b"footer")
    assert parse(data).body_text == "html body\n\nfooter"


# --- 4. a folded boundary parameter -------------------------------------------------------------

FOLDED = (
    b"From: a@x.example\r\nDate: Tue, 04 Mar 2014 15:30:00 +0000\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="simple\r\n boundary"\r\n\r\n'
    b"preamble\r\n--simple boundary\r\n" + PLAIN + b"first part\r\n"
    b"--simple boundary\r\nContent-Type: application/octet-stream\r\n"
    b'Content-Disposition: attachment; filename="data.bin"\r\n\r\n\x00\x01binary\r\n'
    b"--simple boundary\r\n" + PLAIN + b"second part\r\n--simple boundary--\r\n"
)


def test_folded_boundary_parameter_is_unfolded() -> None:
    msg = parse(FOLDED)
    assert msg.body_text == "first part\n\nsecond part"
    (att,) = msg.attachments
    assert (att.filename, att.content_type, att.size) == ("data.bin", "application/octet-stream", 8)
    assert not any("MIME defects" in e for e in msg.parse_errors)


def test_folded_boundary_attachment_is_found_again_by_its_hash() -> None:
    (att,) = parse(FOLDED).attachments
    assert att.sha256 in {hashlib.sha256(b).hexdigest() for b in attachment_payloads(FOLDED)}


def test_folded_boundary_inside_an_embedded_message() -> None:
    inner = FOLDED.replace(b"From: a@x.example", b"From: a@x.example\r\nSubject: inner")
    data = HEAD + multipart("mixed", b"M", PLAIN + b"see below", b"Content-Type: message/rfc822\r\n\r\n" + inner)
    msg = parse(data)
    assert msg.body_text == "see below"
    embedded = next(a for a in msg.attachments if a.content_type == "message/rfc822")
    assert embedded.text == "inner\n\nfirst part\n\nsecond part"
    assert "data.bin" not in {a.filename for a in msg.attachments}  # an embedded message's files stay in it
    hashes = {hashlib.sha256(b).hexdigest() for b in attachment_payloads(data)}
    assert all(a.sha256 in hashes for a in msg.attachments)


# --- 5. addresses dropped from mixed lists --------------------------------------------------------


def recipients(to: bytes) -> tuple[Address, ...]:
    return parse(b"From: a@x.example\r\nTo: " + to + b"\r\nDate: Tue, 04 Mar 2014 15:30:00 +0000\r\n\r\nx\r\n").to


def test_odd_local_parts_are_kept_next_to_named_entries() -> None:
    to = recipients(
        b"e-mail <.bill@enron.com>, e-mail <.brandon@enron.com>,\r\n\tjim.cashion@enron.com, d..lee@enron.com,\r\n"
        b"\tclint.dean@enron.com, x.@enron.com"
    )
    assert [a.addr for a in to] == [
        ".bill@enron.com", ".brandon@enron.com", "jim.cashion@enron.com", "d..lee@enron.com",
        "clint.dean@enron.com", "x.@enron.com",
    ]  # fmt: skip
    assert to[0].name == "e-mail"


def test_named_entry_with_a_refused_one_keeps_both() -> None:
    to = recipients(b"Bob Smith <bob@x.com>, j..broderick@enron.com")
    assert to == (Address(addr="bob@x.com", name="Bob Smith"), Address(addr="j..broderick@enron.com"))


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b"a@x.com; b@x.com", ["a@x.com", "b@x.com"]),
        (b"A <a@x.com>; B <b@x.com>; C <c@x.com>", ["a@x.com", "b@x.com", "c@x.com"]),
        (b'"Smith, J" <j@x.com>; k@x.com;', ["j@x.com", "k@x.com"]),
    ],
)
def test_semicolon_separated_lists_keep_every_address(header: bytes, expected: list[str]) -> None:
    assert [a.addr for a in recipients(header)] == expected


def test_broken_entries_still_yield_no_fragments() -> None:
    to = recipients(b"<<bad@@x>>, ok@Example.COM, Smith, John <j@x.com>, k..l@x.com")
    assert [a.addr for a in to] == ["ok@example.com", "j@x.com", "k..l@x.com"]


# --- 6. dates read by the lenient fallback ----------------------------------------------------------

ZONE_FLAG = "date without a known zone, read as UTC"


def dated(value: str) -> ParsedMessage:
    return parse(b"From: a@x.example\r\nDate: " + value.encode() + b"\r\n\r\nx\r\n")


@pytest.mark.parametrize(
    ("value", "expected", "flagged"),
    [
        ("03 Jul 01 4:12:06 PM", datetime(2001, 7, 3, 16, 12, 6, tzinfo=UTC), True),
        ("03 Jul 01 04:12:06 PM", datetime(2001, 7, 3, 16, 12, 6, tzinfo=UTC), True),  # mail-parser: "PM" as zone
        ("02 Aug 01 12:11:43 AM", datetime(2001, 8, 2, 0, 11, 43, tzinfo=UTC), True),
        ("Tue, 06 Aug 2002 06:50:21 PM -0400", datetime(2002, 8, 6, 22, 50, 21, tzinfo=UTC), False),
        ("Fri, 20 Sep 2002 12:15:37 GMT+1", datetime(2002, 9, 20, 12, 15, 37, tzinfo=UTC), True),
        ("Tue, 24 Sep 2002 10:39:13 +-0500", datetime(2002, 9, 24, 10, 39, 13, tzinfo=UTC), True),
        ("Tue, 3 Jul 2001 10:00:00 CEST", datetime(2001, 7, 3, 10, 0, tzinfo=UTC), True),
        ("Fri, 7 Dec 2001 07:01:03", datetime(2001, 12, 7, 7, 1, 3, tzinfo=UTC), True),
        ("Tue, 7 May 2002 9:38:27 -0600", datetime(2002, 5, 7, 15, 38, 27, tzinfo=UTC), False),
        ("Tue, 3 Jul 2001 10:00:00 +0000 (GMT)", datetime(2001, 7, 3, 10, 0, tzinfo=UTC), False),
        ("Tue, 3 Jul 2001 10:00:00 GMT", datetime(2001, 7, 3, 10, 0, tzinfo=UTC), False),
        ("Tue, 3 Jul 2001 10:00:00 -0000", datetime(2001, 7, 3, 10, 0, tzinfo=UTC), False),
        ("Tue, 3 Jul 2001 10:00:00 EDT", datetime(2001, 7, 3, 14, 0, tzinfo=UTC), False),
    ],
)
def test_lenient_dates_honour_am_pm_and_flag_unknown_zones(value: str, expected: datetime, flagged: bool) -> None:
    msg = dated(value)
    assert msg.date == expected
    assert not msg.date_is_fallback  # a date was read: the received time is not used
    assert any(e.startswith(ZONE_FLAG) for e in msg.parse_errors) == flagged
    assert not any(e.startswith("bad date") for e in msg.parse_errors)


def test_bad_date_is_not_also_flagged_for_its_zone() -> None:
    msg = dated("Thu, 22 Aug 0102 12:07:35 PM")
    assert msg.date_is_fallback and msg.date == RECEIVED
    assert not any(e.startswith(ZONE_FLAG) for e in msg.parse_errors)


# --- 7. raw 8-bit headers in the declared charset -------------------------------------------------


def test_raw_gb2312_headers_are_read_in_the_body_charset() -> None:
    subject = "全新原装进口，货到付款"
    name = "台湾鑫龙商贸集团公司"
    data = (
        b'From: "' + name.encode("gb2312") + b'" <1234@e34.com>\r\nSubject: ' + subject.encode("gb2312") + b"\r\n"
        b"Date: Tue, 7 Jan 2003 13:26:53 +0800\r\nContent-Type: text/plain; charset=gb2312\r\n\r\n"
        + "联系人".encode("gb2312")
        + b"\r\n"
    )
    msg = parse(data)
    assert msg.subject == subject
    assert msg.from_ == (Address(addr="1234@e34.com", name=name),)
    assert dict(msg.headers)["Subject"] == subject
    assert msg.body_text == "联系人"


def test_raw_header_charset_is_taken_from_a_text_part() -> None:
    subject = "Греческий салат"
    body = PLAIN.replace(b"utf-8", b"koi8-r") + "салат".encode("koi8-r")
    data = b"Subject: " + subject.encode("koi8-r") + b"\r\n" + multipart("mixed", b"M", body)
    assert parse(data).subject == subject


def test_raw_utf8_and_latin1_headers_are_unchanged_by_a_declared_charset() -> None:
    head = b"Content-Type: text/plain; charset=gb2312\r\n\r\nx\r\n"
    assert parse(b"Subject: caf\xc3\xa9 cr\xc3\xa8me\r\n" + head).subject == "café crème"
    assert parse(b"Subject: caf\xe9\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\nx\r\n").subject == "café"
