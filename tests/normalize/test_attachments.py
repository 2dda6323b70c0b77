"""Attachment text extraction: every format, bad input flagged, bombs and slow parsers bounded.

Fixtures are generated here with the same libraries' writers (PDF by hand: a few objects and an
xref table), so nothing binary is committed and each test says what it contains.
"""

from __future__ import annotations

import io
import signal
import threading
import time
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest

from archiver.normalize.attachments import (
    MAX_EXTRACT_BYTES,
    MAX_UNZIPPED_BYTES,
    detect_kind,
    extract_text,
)
from archiver.normalize.parse import parse_message
from tests.conftest import CliResult

OCTET = "application/octet-stream"
DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
PPTX_TYPE = "application/vnd.openxmlformats-officedocument.presentationml.presentation"
RECEIVED = datetime(2024, 5, 1, tzinfo=UTC)


# --- fixture builders -------------------------------------------------------------------------


def make_pdf(pages: list[str]) -> bytes:
    """A minimal valid PDF: one Helvetica text line per page, with a correct xref table."""
    count = len(pages)
    font_id = 3 + 2 * count
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids ["
        + b" ".join(f"{3 + 2 * i} 0 R".encode() for i in range(count))
        + f"] /Count {count} >>".encode(),
    ]
    for i, line in enumerate(pages):
        escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        stream = f"BT /F1 12 Tf 72 720 Td ({escaped}) Tj ET".encode("latin-1")
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {4 + 2 * i} 0 R "
            f"/Resources << /Font << /F1 {font_id} 0 R >> >> >>".encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def make_docx(*paragraphs: str, table_cell: str = "") -> bytes:
    from docx import Document

    document = Document()
    for text in paragraphs:
        document.add_paragraph(text)
    if table_cell:
        document.add_table(rows=1, cols=2).cell(0, 1).text = table_cell
    buf = io.BytesIO()
    document.save(buf)
    return buf.getvalue()


def make_xlsx(rows: list[list[object]], title: str = "Ledger") -> bytes:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = title
    for row in rows:
        sheet.append(row)
    buf = io.BytesIO()
    book.save(buf)
    return buf.getvalue()


def make_pptx(title: str, notes: str) -> bytes:
    from pptx import Presentation

    deck = Presentation()
    slide = deck.slides.add_slide(deck.slide_layouts[1])
    assert slide.shapes.title is not None
    slide.shapes.title.text = title
    frame = slide.notes_slide.notes_text_frame
    assert frame is not None
    frame.text = notes
    buf = io.BytesIO()
    deck.save(buf)
    return buf.getvalue()


RTF = (
    rb"{\rtf1\ansi\ansicpg1252\deff0{\fonttbl{\f0 Times New Roman;}}"
    rb"\f0\fs24 The settlement figure is confidential\par Caf\'e9 meeting on Tuesday\par}"
)


def zip_bomb_docx() -> bytes:
    """A DOCX-shaped zip whose document.xml inflates to more than the limit (a few hundred KB packed)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        with zf.open("word/document.xml", "w", force_zip64=True) as member:
            block = b" " * 2**20
            for _ in range(MAX_UNZIPPED_BYTES // 2**20 + 8):
                member.write(block)
    return buf.getvalue()


def eml_with(data: bytes, ctype: str, filename: str, body: str = "See attached.") -> bytes:
    msg = EmailMessage()
    msg["From"] = "alice@acme.example"
    msg["To"] = "bob@globex.example"
    msg["Subject"] = "Attached document"
    msg["Date"] = "Wed, 10 Apr 2024 09:00:00 +0000"
    msg["Message-ID"] = f"<{filename}@test.example>"
    msg.set_content(body)
    maintype, _, subtype = ctype.partition("/")
    msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return msg.as_bytes()


# --- each format --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "ctype", "name", "expected"),
    [
        (lambda: make_pdf(["Quarterly zephyrine forecast (draft)"]), "application/pdf", "q.pdf", "zephyrine"),
        (lambda: make_docx("Intro", "The merger code name is Bluebird"), DOCX_TYPE, "m.docx", "Bluebird"),
        (lambda: make_docx("x", table_cell="cell wombat value"), DOCX_TYPE, "t.docx", "wombat"),
        (lambda: make_xlsx([["Invoice", 4711], [None, "Pemberton Ltd"]]), XLSX_TYPE, "s.xlsx", "Pemberton"),
        (lambda: make_pptx("Roadmap Halcyon", "notes mention Gargoyle"), PPTX_TYPE, "d.pptx", "Gargoyle"),
        (lambda: RTF, "application/rtf", "r.rtf", "settlement"),
        (lambda: b"<html><body><p>Hello <b>kingfisher</b></p><script>x()</script></body></html>", "text/html",
         "p.html", "kingfisher"),
        (lambda: b"name,amount\nOsprey Holdings,12\n", "text/csv", "a.csv", "Osprey"),
        (lambda: "plain text with caf\u00e9 and heron".encode(), "text/plain", "n.txt", "heron"),
    ],
)  # fmt: skip
def test_each_format_is_read(build: Callable[[], bytes], ctype: str, name: str, expected: str) -> None:
    data = build()
    text, error = extract_text(data, ctype, name, max_chars=10_000)
    assert error == ""
    assert expected in text
    # the same bytes sent as application/octet-stream are still recognised (magic bytes or extension)
    text2, error2 = extract_text(data, OCTET, name, max_chars=10_000)
    assert (text2, error2) == (text, error)


def test_details_of_formats() -> None:
    xlsx = make_xlsx([["Invoice", 4711]], title="Quarter3")
    xlsx_text, _ = extract_text(xlsx, XLSX_TYPE, "", max_chars=1000)
    assert "Quarter3" in xlsx_text and "4711" in xlsx_text
    rtf_text, _ = extract_text(RTF, "text/rtf", "", max_chars=1000)
    assert "Café meeting" in rtf_text
    assert "\\par" not in rtf_text
    pptx_text, _ = extract_text(make_pptx("Roadmap Halcyon", "n"), PPTX_TYPE, "", max_chars=1000)
    assert "Halcyon" in pptx_text
    html_text, _ = extract_text(b"<p>a</p><script>secretscript()</script>", "text/html", "", max_chars=100)
    assert "secretscript" not in html_text
    pdf_text, _ = extract_text(make_pdf(["first page", "second page"]), "application/pdf", "", max_chars=1000)
    assert "first page" in pdf_text and "second page" in pdf_text


def test_detection_by_magic_extension_and_type() -> None:
    pdf = make_pdf(["x"])
    assert detect_kind(pdf, OCTET, "") == "PDF"
    assert detect_kind(pdf, "text/plain", "wrongly-named.txt") == "PDF"
    assert detect_kind(make_docx("x"), OCTET, "no-extension") == "DOCX"
    assert detect_kind(make_xlsx([["x"]]), "application/zip", "x.zip") == "XLSX"
    assert detect_kind(make_pptx("x", "y"), OCTET, "") == "PPTX"
    assert detect_kind(RTF, OCTET, "") == "RTF"
    assert detect_kind(b"a,b\n1,2\n", OCTET, "data.CSV") == "text"
    assert detect_kind(b"hello", "text/x-custom", "") == "text"
    # not documents: images, plain zips, binary data with a text label
    assert detect_kind(b"\x89PNG\r\n\x1a\n" + b"\0" * 100, OCTET, "scan.pdf") is None
    plain_zip = io.BytesIO()
    with zipfile.ZipFile(plain_zip, "w") as zf:
        zf.writestr("readme.txt", "hello")
    assert detect_kind(plain_zip.getvalue(), "application/zip", "files.zip") is None
    assert detect_kind(b"\x00\x01\x02binary", OCTET, "dump.txt") is None
    assert extract_text(b"\xff\xd8\xff\xe0 jpeg", "image/jpeg", "photo.jpg", max_chars=100) == ("", "")


def test_output_is_capped() -> None:
    data = make_docx(*[f"paragraph number {i} with some words" for i in range(500)])
    text, error = extract_text(data, DOCX_TYPE, "big.docx", max_chars=300)
    assert error == ""
    assert 0 < len(text) <= 300
    assert text.startswith("paragraph number 0")
    assert extract_text(data, DOCX_TYPE, "big.docx", max_chars=0) == ("", "")


# --- bad input ----------------------------------------------------------------------------------


def test_corrupt_pdf_is_flagged() -> None:
    data = b"%PDF-1.4\n1 0 obj <<garbage"
    text, error = extract_text(data, "application/pdf", "broken.pdf", max_chars=1000)
    assert text == ""
    assert error.startswith("unreadable PDF")


def test_truncated_pdf_keeps_what_it_can_or_flags() -> None:
    whole = make_pdf(["alpha page", "beta page"])
    text, error = extract_text(whole[: len(whole) // 2], "application/pdf", "cut.pdf", max_chars=1000)
    assert error or "alpha" in text  # either recovered (pypdf rebuilds xrefs) or flagged, never raised


def test_corrupt_docx_is_flagged() -> None:
    text, error = extract_text(b"this is not a zip", DOCX_TYPE, "broken.docx", max_chars=1000)
    assert (text, error[:16]) == ("", "unreadable DOCX:")
    # a zip that claims to be a DOCX but lacks the document part
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("word/other.xml", "<x/>")
    text, error = extract_text(buf.getvalue(), OCTET, "broken.docx", max_chars=1000)
    assert error.startswith("unreadable DOCX")


def test_corrupt_attachments_are_flagged_and_the_message_still_parses() -> None:
    raw = eml_with(b"%PDF-1.7\n%garbage without objects", "application/pdf", "contract.pdf", body="Body kept")
    parsed = parse_message(raw, received=RECEIVED)
    assert parsed.subject == "Attached document"
    assert "Body kept" in parsed.body_text
    (att,) = parsed.attachments
    assert att.filename == "contract.pdf"
    assert att.error.startswith("unreadable PDF")
    assert any("contract.pdf" in e and "unreadable PDF" in e for e in parsed.parse_errors)

    raw = eml_with(b"PK\x03\x04 truncated", OCTET, "memo.docx")
    parsed = parse_message(raw, received=RECEIVED)
    assert parsed.attachments[0].error.startswith("unreadable DOCX")
    assert any("memo.docx" in e for e in parsed.parse_errors)


def test_good_attachment_text_reaches_the_parsed_message() -> None:
    raw = eml_with(make_pdf(["Indemnity clause marmalade"]), OCTET, "scan0001.pdf")
    parsed = parse_message(raw, received=RECEIVED)
    (att,) = parsed.attachments
    assert "marmalade" in att.text
    assert att.error == ""
    assert parsed.parse_errors == ()
    # the configured limit still applies to documents
    parsed = parse_message(raw, received=RECEIVED, max_attachment_text_chars=5)
    assert len(parsed.attachments[0].text) <= 5


def test_zip_bomb_docx_is_refused_quickly() -> None:
    bomb = zip_bomb_docx()
    assert len(bomb) < 2 * 2**20  # small on the wire ...
    started = time.monotonic()
    text, error = extract_text(bomb, DOCX_TYPE, "bomb.docx", max_chars=10_000)
    assert time.monotonic() - started < 1.0  # ... refused from the central directory, not inflated
    assert text == ""
    assert error.startswith("refused DOCX") and "zip bomb" in error


def test_oversized_attachment_is_not_read() -> None:
    data = b"%PDF-1.4\n" + b" " * MAX_EXTRACT_BYTES
    text, error = extract_text(data, "application/pdf", "huge.pdf", max_chars=100)
    assert text == ""
    assert "not read for text" in error


# --- time budget --------------------------------------------------------------------------------


def _many_page_pdf() -> bytes:
    return make_pdf([f"page {i} of the long report" for i in range(400)])


def test_time_budget_stops_extraction_and_keeps_partial_text() -> None:
    data = _many_page_pdf()
    full, error = extract_text(data, "application/pdf", "long.pdf", max_chars=1_000_000)
    assert error == "" and "page 399" in full
    text, error = extract_text(data, "application/pdf", "long.pdf", max_chars=1_000_000, time_budget_s=0.02)
    assert "stopped after 0.02 s" in error
    assert "page 399" not in text


def test_time_budget_in_a_thread_uses_cooperative_checks() -> None:
    data = _many_page_pdf()
    result: list[tuple[str, str]] = []
    worker = threading.Thread(
        target=lambda: result.append(
            extract_text(data, "application/pdf", "x.pdf", max_chars=10**6, time_budget_s=0.02)
        )
    )
    worker.start()
    worker.join(30)
    assert "stopped after" in result[0][1]


def test_an_existing_alarm_is_restored() -> None:
    fired: list[int] = []

    def outer(signum: int, frame: object) -> None:
        fired.append(signum)

    previous = signal.signal(signal.SIGALRM, outer)
    old = signal.setitimer(signal.ITIMER_REAL, 0.5)
    try:
        extract_text(make_pdf(["x"]), "application/pdf", "x.pdf", max_chars=100)
        assert signal.getsignal(signal.SIGALRM) is outer
        remaining = signal.getitimer(signal.ITIMER_REAL)[0]
        assert 0 < remaining <= 0.5
        deadline = time.monotonic() + 5
        while not fired and time.monotonic() < deadline:
            time.sleep(0.01)
        assert fired == [signal.SIGALRM]
    finally:
        signal.setitimer(signal.ITIMER_REAL, *old)
        signal.signal(signal.SIGALRM, previous)


# --- end to end -----------------------------------------------------------------------------------


def test_search_finds_pdf_attachment_text(initialised: Callable[..., CliResult], tmp_path: Path) -> None:
    inbox = tmp_path / "incoming"
    inbox.mkdir()
    (inbox / "with-pdf.eml").write_bytes(
        eml_with(make_pdf(["Escrow terms for project quagmire"]), "application/pdf", "terms.pdf")
    )
    (inbox / "with-docx.eml").write_bytes(eml_with(make_docx("Nothing relevant here"), OCTET, "other.docx"))
    (inbox / "broken.eml").write_bytes(eml_with(b"%PDF-1.5 broken", "application/pdf", "broken.pdf"))
    r = initialised("import", str(inbox), "--source", "upload", "--json")
    assert r.code == 0, r.err
    report = r.json()
    assert isinstance(report, dict)
    assert (report["imported"], report["parse_errors"]) == (3, 1)  # the broken PDF is flagged

    def found(query: str) -> list[object]:
        return [h["message_id"] for h in initialised("search", query, "--json").json_lines()]

    assert found("attachment:quagmire") == ["<terms.pdf@test.example>"]
    assert found("attachment:escrow attachment:terms") == ["<terms.pdf@test.example>"]
    assert found("attachment:relevant") == ["<other.docx@test.example>"]  # sent as octet-stream
    assert found("body:quagmire") == []  # only in the PDF, not in the body
    assert found("quagmire") == ["<terms.pdf@test.example>"]  # a bare word searches attachments too
    # the message with an unreadable PDF was archived and is found by the attachment's name
    assert found("attachment:broken.pdf") == ["<broken.pdf@test.example>"]
