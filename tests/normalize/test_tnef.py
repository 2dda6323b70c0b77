"""Outlook's winmail.dat (TNEF): the files inside are attachments, the body inside is the body.

The TNEF streams are built here attribute by attribute (MS-OXTNEF 2.1.3: level, id, length,
data, checksum), so each test says what its stream holds and nothing binary is committed.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import struct
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

from archiver.normalize.parse import attachment_payloads, parse_message
from archiver.normalize.tnef import SIGNATURE, unpack
from tests.conftest import CliResult

RECEIVED = datetime(2024, 5, 1, tzinfo=UTC)
_MESSAGE, _ATTACHMENT = 1, 2
# attribute ids: (type << 16) | id, as MS-OXTNEF 2.1.3.1 lists them
ATT_TNEF_VERSION = 0x00089006
ATT_OEM_CODEPAGE = 0x00069007
ATT_BODY = 0x0002800C
ATT_ATTACH_REND_DATA = 0x00069002
ATT_ATTACH_TITLE = 0x00018010
ATT_ATTACH_DATA = 0x0006800F


def _attribute(level: int, attr: int, data: bytes) -> bytes:
    checksum = sum(data) & 0xFFFF
    return struct.pack("<BII", level, attr, len(data)) + data + struct.pack("<H", checksum)


def make_tnef(
    body: bytes | None, files: list[tuple[str, bytes]], codepage: bytes = struct.pack("<II", 1252, 0)
) -> bytes:
    out = [SIGNATURE, struct.pack("<H", 0x0101)]
    out.append(_attribute(_MESSAGE, ATT_TNEF_VERSION, struct.pack("<I", 0x00010000)))
    out.append(_attribute(_MESSAGE, ATT_OEM_CODEPAGE, codepage))
    name_codec = f"cp{struct.unpack_from('<I', codepage)[0]}"
    if body is not None:
        out.append(_attribute(_MESSAGE, ATT_BODY, body + b"\x00"))
    for name, data in files:
        out.append(_attribute(_ATTACHMENT, ATT_ATTACH_REND_DATA, b"\x01\x00" + b"\xff" * 12))
        out.append(_attribute(_ATTACHMENT, ATT_ATTACH_TITLE, name.encode(name_codec) + b"\x00"))
        out.append(_attribute(_ATTACHMENT, ATT_ATTACH_DATA, data))
    return b"".join(out)


FILES = [
    ("gas-report.txt", b"quarterly pipeline tariff figures\n"),
    ("minutes.html", b"<html><body><p>Board <b>minutes</b> on the merger</p></body></html>"),
    ("photo.jpg", b"\xff\xd8\xff\xe0" + bytes(range(256))),
]


def outlook_message(tnef: bytes, plain: str | None = None) -> bytes:
    """A message as Outlook sends it in rich-text mode: (a plain part and) winmail.dat."""
    msg = EmailMessage()
    msg["From"] = "Jeff <jeff@enron.example>"
    msg["To"] = "legal@acme.example"
    msg["Subject"] = "Rich text"
    msg["Date"] = "Tue, 01 May 2001 10:00:00 +0000"
    msg["Message-ID"] = "<tnef@enron.example>"
    if plain is not None:
        msg.set_content(plain)
    else:
        msg.make_mixed()
    msg.add_attachment(tnef, maintype="application", subtype="ms-tnef", filename="winmail.dat")
    return bytes(msg)


def test_the_builder_makes_streams_the_reader_reads() -> None:
    unpacked = unpack(make_tnef(b"hello", FILES), max_body_chars=100)
    assert unpacked.files == FILES and unpacked.body == "hello" and unpacked.error == ""


def test_the_files_are_the_real_ones_not_rendering_stubs() -> None:
    """PR_ATTACH_DATA (in the attachment's MAPI properties) wins over attAttachData."""
    props = struct.pack("<IHHI", 1, 0x0102, 0x3701, 1) + struct.pack("<I", 6) + b"real!!" + b"\0\0"
    stream = make_tnef(None, [("a.bin", b"stub")]) + _attribute(_ATTACHMENT, 0x00069005, props)
    assert unpack(stream, max_body_chars=0).files == [("a.bin", b"real!!")]


def test_files_inside_winmail_dat_are_attachments_with_their_text() -> None:
    raw = outlook_message(make_tnef(b"The body Outlook kept inside.", FILES))
    parsed = parse_message(raw, received=RECEIVED)
    by_name = {a.filename: a for a in parsed.attachments}
    assert list(by_name) == ["winmail.dat", "gas-report.txt", "minutes.html", "photo.jpg"]
    assert by_name["winmail.dat"].content_type == "application/ms-tnef"
    report = by_name["gas-report.txt"]
    assert report.content_type == "text/plain" and report.size == len(FILES[0][1])
    assert report.sha256 == hashlib.sha256(FILES[0][1]).hexdigest()
    assert "pipeline tariff" in report.text
    assert "Board minutes on the merger" in " ".join(by_name["minutes.html"].text.split())
    assert by_name["photo.jpg"].content_type == "image/jpeg" and by_name["photo.jpg"].text == ""
    assert parsed.body_text == "The body Outlook kept inside."  # no other body: the TNEF one
    assert parsed.parse_errors == ()


def test_a_plain_part_stays_the_body() -> None:
    raw = outlook_message(make_tnef(b"inside", FILES[:1]), plain="Outside text.\n")
    assert parse_message(raw, received=RECEIVED).body_text == "Outside text."


def test_every_file_inside_can_be_downloaded_by_its_hash() -> None:
    raw = outlook_message(make_tnef(None, FILES))
    parsed = parse_message(raw, received=RECEIVED)
    offered = {hashlib.sha256(b).hexdigest() for b in attachment_payloads(raw)}
    assert len(parsed.attachments) == 4 and all(a.sha256 in offered for a in parsed.attachments)


def test_a_damaged_stream_is_flagged_and_the_message_kept() -> None:
    good = make_tnef(b"body", FILES)
    for damaged in (SIGNATURE + b"\x01\x01" + b"\x02" * 40, good[: len(good) // 2], SIGNATURE):
        raw = outlook_message(damaged)
        parsed = parse_message(raw, received=RECEIVED)
        assert parsed.attachments[0].filename == "winmail.dat"
        assert parsed.attachments[0].sha256 == hashlib.sha256(damaged).hexdigest()
        assert parsed.subject == "Rich text"
        list(attachment_payloads(raw))  # the download lookup copes as well


def test_tnef_attachments_are_searchable_after_import(initialised: Callable[..., CliResult], tmp_path: Path) -> None:
    folder = tmp_path / "mail"
    folder.mkdir()
    (folder / "1.eml").write_bytes(outlook_message(make_tnef(b"Body kept inside winmail.", FILES)))
    assert initialised("import", str(folder), "--json").code == 0
    for query in ('"pipeline tariff"', "attachment:gas-report.txt", '"kept inside winmail"'):
        hits = initialised("search", query, "--json").json_lines()
        assert [h["subject"] for h in hits] == ["Rich text"], query


def test_reindex_rewrites_metadata_parsed_by_an_older_version(
    initialised: Callable[..., CliResult], tmp_path: Path
) -> None:
    """An archive filled before winmail.dat was unpacked lists only winmail.dat: `verify --full`
    says so and names the remedy, and `reindex` re-reads the message into the catalog."""
    folder = tmp_path / "mail"
    folder.mkdir()
    (folder / "1.eml").write_bytes(outlook_message(make_tnef(b"Body kept inside winmail.", FILES)))
    assert initialised("import", str(folder)).code == 0
    with sqlite3.connect(tmp_path / "archive" / "catalog.sqlite") as db:
        (stored,) = db.execute("SELECT attachments FROM message_rows").fetchone()
        older = json.dumps(json.loads(stored)[:1], separators=(",", ":"))  # what the old parser saw
        db.execute("UPDATE message_rows SET attachments = ?", (older,))
    db.close()
    r = initialised("verify", "--full")
    assert r.code == 9 and "attachments" in r.out + r.err and "archiver reindex" in r.out + r.err
    assert initialised("reindex").code == 0
    assert initialised("verify", "--full").code == 0
    (shown,) = [
        initialised("show", h["id"], "--json").json() for h in initialised("search", "photo", "--json").json_lines()
    ]
    assert isinstance(shown, dict) and [a["filename"] for a in shown["attachments"]][1:] == [f for f, _ in FILES]


ATT_MAPI_PROPS = 0x00069003


def test_counts_the_stream_cannot_back_are_refused_not_followed() -> None:
    """A few bytes claiming billions of properties or values, or a flood of empty attributes,
    end with an error at once (tnefparse spun or filled memory on these)."""
    head = SIGNATURE + b"\x01\x01"
    props = struct.pack("<I", 0xFFFFFFFF)
    values = struct.pack("<IHHI", 1, 0x1002, 0x0001, 0xFFFFFFFF)  # one multi-valued SHORT
    for stream in (
        head + _attribute(_MESSAGE, ATT_MAPI_PROPS, props),
        head + _attribute(_MESSAGE, ATT_MAPI_PROPS, values),
    ):
        unpacked = unpack(stream, max_body_chars=100)
        assert "claims 4294967295" in unpacked.error and unpacked.files == []
    flood = head + _attribute(_MESSAGE, 0x00067777, b"") * 30_000
    assert "more than 20000 attributes" in unpack(flood, max_body_chars=0).error


def test_files_beyond_the_limit_are_counted_not_listed() -> None:
    stream = make_tnef(None, [(f"f{i}.txt", b"x%d" % i) for i in range(600)])
    unpacked = unpack(stream, max_body_chars=0)
    assert len(unpacked.files) == 500 and "more than 500 files" in unpacked.error
    assert len(unpack(stream, max_body_chars=0, max_files=3).files) == 3


def test_the_streams_code_page_decodes_body_and_names() -> None:
    cp1251 = struct.pack("<II", 1251, 0)
    stream = make_tnef("Привет".encode("cp1251"), [("Отчёт.txt", b"data")], codepage=cp1251)
    unpacked = unpack(stream, max_body_chars=100)
    assert unpacked.body == "Привет" and unpacked.files == [("Отчёт.txt", b"data")]


def test_an_empty_text_part_does_not_hide_the_body_inside() -> None:
    raw = outlook_message(make_tnef(b"The real body.", FILES[:1]), plain="\n")
    assert parse_message(raw, received=RECEIVED).body_text == "The real body."
