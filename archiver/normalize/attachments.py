"""Text inside attachments (PDF, DOCX, XLSX, PPTX, RTF, HTML, CSV, plain text), bounded and never raising.

Why this module exists
----------------------
Compliance searches have to find words that only occur in an attached contract or spreadsheet, so
attachment text goes into the index next to the body.  Attachments are also the most hostile input
the archive reads: a malformed PDF can make a parser spin for minutes, and an Office file is a zip
that can declare gigabytes of XML.  So every extraction is bounded:

* **size**: attachments over ``MAX_EXTRACT_BYTES`` are not read at all;
* **memory**: the declared uncompressed sizes in a zip's central directory are summed *before* any
  library opens it (CPython's ``zipfile`` never inflates a member past its declared size, so the
  check is sound), and pages, sheets, rows and slides are capped;
* **output**: at most ``max_chars`` characters;
* **time**: a wall-clock budget per attachment.  Extraction runs in the ingest worker processes'
  main threads, where ``SIGALRM`` (``signal.setitimer``) can interrupt a parser stuck inside one
  page; elsewhere (a thread) the budget is checked between pages, slides and rows.  An alarm that
  was already armed (pytest-timeout, a daemon watchdog) is put back afterwards.

The format is taken from the magic bytes first, then the declared content type, then the file
extension: mail clients often send ``application/octet-stream`` or a wrong type.  Formats we do not
read (images, legacy binary Office files, archives) are not errors: they just have no text.

An attachment that looks like a supported format but cannot be read returns whatever text was
recovered plus a short reason; the caller records it (``Attachment.error`` and ``parse_errors``)
and the message is archived regardless.

The parsers are well-kept libraries: pypdf, python-docx, openpyxl (read-only streaming mode, with
defusedxml), python-pptx and striprtf; HTML and text reuse ``archiver.normalize.text``.
"""

from __future__ import annotations

import io
import logging
import posixpath
import signal
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Final

from archiver.normalize.text import clean_text, decode_bytes, html_to_text

__all__ = [
    "MAX_EXTRACT_BYTES",
    "MAX_UNZIPPED_BYTES",
    "TIME_BUDGET_S",
    "detect_kind",
    "extract_text",
]

#: attachments larger than this are not read for text (flagged).
MAX_EXTRACT_BYTES: Final = 20 * 2**20
#: an Office zip declaring more uncompressed bytes than this is refused (zip bomb).
MAX_UNZIPPED_BYTES: Final = 100 * 2**20
#: an Office zip with more members than this is refused.
MAX_ZIP_MEMBERS: Final = 10_000
#: default wall-clock budget per attachment, seconds.
TIME_BUDGET_S: Final = 10.0
MAX_PDF_PAGES: Final = 1_000
MAX_SHEETS: Final = 50
MAX_ROWS_PER_SHEET: Final = 20_000
MAX_COLUMNS: Final = 200
MAX_SLIDES: Final = 1_000

PDF, DOCX, XLSX, PPTX, RTF, HTML, TEXT = "PDF", "DOCX", "XLSX", "PPTX", "RTF", "HTML", "text"
_OOXML = (DOCX, XLSX, PPTX)

_BY_TYPE: Final = {
    "application/pdf": PDF,
    "application/x-pdf": PDF,
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": DOCX,
    "application/vnd.ms-word.document.macroenabled.12": DOCX,
    "application/vnd.openxmlformats-officedocument.wordprocessingml.template": DOCX,
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": XLSX,
    "application/vnd.ms-excel.sheet.macroenabled.12": XLSX,
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": PPTX,
    "application/vnd.ms-powerpoint.presentation.macroenabled.12": PPTX,
    "application/rtf": RTF,
    "application/x-rtf": RTF,
    "text/rtf": RTF,
    "text/richtext": RTF,
    "text/html": HTML,
    "application/xhtml+xml": HTML,
    "text/plain": TEXT,
    "text/csv": TEXT,
    "text/tab-separated-values": TEXT,
    "text/markdown": TEXT,
    "application/csv": TEXT,
    "application/json": TEXT,
}
_BY_EXTENSION: Final = {
    ".pdf": PDF,
    ".docx": DOCX,
    ".docm": DOCX,
    ".dotx": DOCX,
    ".xlsx": XLSX,
    ".xlsm": XLSX,
    ".pptx": PPTX,
    ".pptm": PPTX,
    ".ppsx": PPTX,
    ".rtf": RTF,
    ".html": HTML,
    ".htm": HTML,
    ".xhtml": HTML,
    ".txt": TEXT,
    ".text": TEXT,
    ".csv": TEXT,
    ".tsv": TEXT,
    ".md": TEXT,
    ".log": TEXT,
    ".json": TEXT,
    ".ics": TEXT,
    ".vcf": TEXT,
}
#: the member that identifies each Office Open XML format.
_OOXML_MAIN: Final = {"word/document.xml": DOCX, "xl/workbook.xml": XLSX, "ppt/presentation.xml": PPTX}
#: magic bytes of common formats we do not read: never sent to a parser whatever the label says.
_OPAQUE_MAGIC: Final = (
    b"\x89PNG",
    b"\xff\xd8\xff",
    b"GIF8",
    b"\xd0\xcf\x11\xe0",  # OLE2: legacy .doc/.xls/.ppt/.msg
    b"Rar!",
    b"7z\xbc\xaf",
    b"\x1f\x8b",
)


class _OutOfTime(BaseException):
    """Raised by the alarm or the cooperative check.  A BaseException so that the parsers' own
    ``except Exception`` recovery code (pypdf has plenty) cannot swallow it."""


class _Refused(Exception):
    """Input we will not hand to a parser (too big, zip bomb, encrypted)."""


# --- format detection ------------------------------------------------------------------------


def _zip_kind(data: bytes) -> str | None:
    """DOCX/XLSX/PPTX from a zip's member names (cheap: reads only the central directory)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            names = set(zf.namelist())
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, NotImplementedError):
        return None
    for member, kind in _OOXML_MAIN.items():
        if member in names:
            return kind
    return None


def detect_kind(data: bytes, content_type: str, filename: str) -> str | None:
    """Which extractor to use: magic bytes, then the content type, then the extension; None if none."""
    head = data[:1024]
    ctype = (content_type or "").split(";")[0].strip().lower()
    ext = posixpath.splitext((filename or "").strip().lower())[1]
    hint = _BY_TYPE.get(ctype) or _BY_EXTENSION.get(ext)
    if ctype.startswith("text/") and hint is None and ext not in _BY_EXTENSION:
        hint = TEXT
    if b"%PDF-" in head:
        return PDF
    if head.lstrip()[:5] == b"{\\rtf":
        return RTF
    if head.startswith(b"PK\x03\x04"):
        # a plain .zip is not a document; a corrupt one labelled as Office is tried (and flagged).
        return _zip_kind(data) or (hint if hint in _OOXML else None)
    if head.startswith(_OPAQUE_MAGIC):
        return None
    if hint in (TEXT, HTML) and b"\x00" in head and not head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return None  # binary data with a text label
    return hint


# --- bounds -----------------------------------------------------------------------------------


class _Budget:
    """A wall-clock deadline, enforced by SIGALRM when possible and by ``check()`` between units."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds

    def check(self) -> None:
        if time.monotonic() >= self.deadline:
            raise _OutOfTime

    @contextmanager
    def alarm(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
            yield  # cooperative checks only
            return
        armed = True

        def on_alarm(signum: int, frame: FrameType | None) -> None:
            if armed:
                raise _OutOfTime

        started = time.monotonic()
        try:
            previous = signal.signal(signal.SIGALRM, on_alarm)
        except (ValueError, OSError):  # e.g. a non-Python main thread
            yield
            return
        old_delay, old_interval = signal.setitimer(signal.ITIMER_REAL, max(self.seconds, 1e-3))
        try:
            yield
        finally:
            armed = False
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
            if old_delay > 0:
                # someone else's alarm (a test timeout, a watchdog): re-arm it for what is left.
                left = max(old_delay - (time.monotonic() - started), 1e-6)
                signal.setitimer(signal.ITIMER_REAL, left, old_interval)


class _Sink:
    """Collects text up to ``limit`` characters; ``full`` tells extractors to stop early."""

    def __init__(self, limit: int, budget: _Budget) -> None:
        self.limit = limit
        self.budget = budget
        self.parts: list[str] = []
        self.size = 0

    @property
    def full(self) -> bool:
        return self.size >= self.limit

    def add(self, text: str | None) -> bool:
        """Append one unit (page, paragraph, row); False once the limit is reached."""
        self.budget.check()
        if text and not self.full:
            text = text[: self.limit - self.size]
            self.parts.append(text)
            self.size += len(text) + 1
        return not self.full

    def text(self) -> str:
        return clean_text("\n".join(self.parts))[: self.limit]


def _check_zip(data: bytes, kind: str) -> None:
    """Refuse a zip whose declared contents are too big or too many, before any library opens it."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, NotImplementedError) as exc:
        raise _Refused(f"unreadable {kind}: not a valid zip ({type(exc).__name__}: {str(exc)[:60]})") from exc
    if len(infos) > MAX_ZIP_MEMBERS:
        raise _Refused(f"refused {kind}: {len(infos)} zip members (limit {MAX_ZIP_MEMBERS})")
    declared = sum(i.file_size for i in infos)
    if declared > MAX_UNZIPPED_BYTES:
        raise _Refused(
            f"refused {kind}: declares {declared} bytes uncompressed (limit {MAX_UNZIPPED_BYTES}; zip bomb?)"
        )


# --- extractors -------------------------------------------------------------------------------


def _pdf(data: bytes, sink: _Sink) -> str:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data), strict=False)
    if reader.is_encrypted:
        try:
            opened = reader.decrypt("")  # many "protected" PDFs only restrict printing/editing
        except Exception as exc:
            raise _Refused(f"encrypted PDF ({type(exc).__name__})") from exc
        if not opened:
            raise _Refused("encrypted PDF (needs a password)")
    total = len(reader.pages)
    for number in range(min(total, MAX_PDF_PAGES)):
        if not sink.add(reader.pages[number].extract_text()):
            return ""
    return f"only the first {MAX_PDF_PAGES} of {total} pages read" if total > MAX_PDF_PAGES else ""


def _docx(data: bytes, sink: _Sink) -> str:
    from docx import Document
    from docx.oxml.ns import qn
    from docx.text.paragraph import Paragraph

    document = Document(io.BytesIO(data))
    # every paragraph in document order, including those in tables and text boxes
    for p in document.element.body.iter(qn("w:p")):
        if not sink.add(Paragraph(p, document).text):
            return ""
    for section in document.sections:
        for part in (section.header, section.footer):
            if part.is_linked_to_previous:
                continue
            for para in part.paragraphs:
                if not sink.add(para.text):
                    return ""
    return ""


def _xlsx(data: bytes, sink: _Sink) -> str:
    from openpyxl import load_workbook

    book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    notes: list[str] = []
    try:
        sheets = book.worksheets
        if len(sheets) > MAX_SHEETS:
            notes.append(f"only the first {MAX_SHEETS} of {len(sheets)} sheets read")
        for sheet in sheets[:MAX_SHEETS]:
            if not sink.add(sheet.title):
                break
            for rows, row in enumerate(sheet.iter_rows(max_col=MAX_COLUMNS, values_only=True), 1):
                if rows > MAX_ROWS_PER_SHEET:
                    notes.append(f"sheet {sheet.title[:40]!r}: only the first {MAX_ROWS_PER_SHEET} rows read")
                    break
                cells = [str(v) for v in row if v is not None and v != ""]
                if cells and not sink.add("\t".join(cells)):
                    break
            if sink.full:
                break
    finally:
        book.close()
    return "; ".join(notes)


def _shape_texts(shapes: object, depth: int = 0) -> Iterator[str]:
    from pptx.enum.shapes import MSO_SHAPE_TYPE

    for shape in shapes:  # type: ignore[attr-defined]
        if shape.shape_type == MSO_SHAPE_TYPE.GROUP and depth < 10:
            yield from _shape_texts(shape.shapes, depth + 1)
        if getattr(shape, "has_text_frame", False) and shape.has_text_frame:
            yield shape.text_frame.text
        if getattr(shape, "has_table", False) and shape.has_table:
            for row in shape.table.rows:
                yield "\t".join(cell.text for cell in row.cells)


def _pptx(data: bytes, sink: _Sink) -> str:
    from pptx import Presentation

    slides = Presentation(io.BytesIO(data)).slides
    total = len(slides)
    for number, slide in enumerate(slides):
        if number >= MAX_SLIDES:
            return f"only the first {MAX_SLIDES} of {total} slides read"
        for text in _shape_texts(slide.shapes):
            if not sink.add(text):
                return ""
        notes = slide.notes_slide.notes_text_frame if slide.has_notes_slide else None
        if notes is not None and not sink.add(notes.text):
            return ""
    return ""


def _rtf(data: bytes, sink: _Sink) -> str:
    from striprtf.striprtf import rtf_to_text

    # RTF is 7-bit with escapes; \'xx escapes are decoded by striprtf with the code page below.
    source = data.decode("latin-1")
    text: str = rtf_to_text(source, encoding="cp1252", errors="replace")  # type: ignore[no-untyped-call]
    sink.add(text)
    return ""


def _decode(data: bytes, charset: str | None, limit: int) -> str:
    chunk = data[: limit * 4]
    if chunk.startswith((b"\xff\xfe", b"\xfe\xff")):
        return clean_text(chunk.decode("utf-16", "replace"))
    return decode_bytes(chunk, charset)[0]


def _html(data: bytes, sink: _Sink, charset: str | None) -> str:
    # markup is longer than its text: read more of it than the output limit.
    sink.add(html_to_text(_decode(data, charset, sink.limit * 4)))
    return ""


def _text(data: bytes, sink: _Sink, charset: str | None) -> str:
    sink.add(_decode(data, charset, sink.limit))
    return ""


_EXTRACTORS: Final[dict[str, Callable[[bytes, _Sink], str]]] = {
    PDF: _pdf,
    DOCX: _docx,
    XLSX: _xlsx,
    PPTX: _pptx,
    RTF: _rtf,
}


def extract_text(
    data: bytes,
    content_type: str,
    filename: str,
    *,
    max_chars: int,
    time_budget_s: float = TIME_BUDGET_S,
    charset: str | None = None,
) -> tuple[str, str]:
    """(text, error) for one attachment.  Never raises.

    ``error`` is "" when the text was read (or the format is not one we read, e.g. an image); else a
    short reason, with whatever text was recovered before the problem (a timeout keeps the pages
    already read).  ``charset`` is the MIME charset parameter, used for text and HTML.
    """
    if max_chars <= 0 or not data:
        return "", ""
    kind = detect_kind(data, content_type, filename)
    if kind is None:
        return "", ""
    if len(data) > MAX_EXTRACT_BYTES:
        return "", f"{kind} not read for text: {len(data)} bytes (limit {MAX_EXTRACT_BYTES})"
    budget = _Budget(time_budget_s)
    sink = _Sink(max_chars, budget)
    error = ""
    try:
        with budget.alarm():
            if kind in _OOXML:
                _check_zip(data, kind)
            if kind == HTML:
                error = _html(data, sink, charset)
            elif kind == TEXT:
                error = _text(data, sink, charset)
            else:
                error = _EXTRACTORS[kind](data, sink)
    except _OutOfTime:
        error = f"{kind} text extraction stopped after {time_budget_s:g} s"
    except _Refused as exc:
        error = str(exc)
    except RecursionError:
        error = f"unreadable {kind}: nested too deeply"
    except MemoryError:
        error = f"unreadable {kind}: out of memory"
    except Exception as exc:
        error = f"unreadable {kind}: {type(exc).__name__}: {str(exc)[:80]}"
    return sink.text(), clean_text(error)


# pypdf reports every recoverable oddity of a damaged PDF as a warning on its logger; the outcome
# that matters is recorded in ``error`` above, so keep ingest logs readable.
logging.getLogger("pypdf").setLevel(logging.ERROR)
