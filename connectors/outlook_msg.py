"""Outlook ``.msg`` files, converted to RFC 822 by ``msgconvert``.

A ``.msg`` (what Outlook saves when a message is dragged out of it, and what document
management systems keep) is an OLE compound file of MAPI properties: like a PST, it holds
no RFC 822 bytes.  ``msgconvert`` (Debian package ``libemail-outlook-message-perl``,
Email::Outlook::Message) writes them, the way ``readpst`` does for PSTs, and what the
archive stores is that conversion.

The conversion is made deterministic, so that the same ``.msg`` always gets the same id
(re-imports and copies in two folders are duplicates, not new messages):

* ``msgconvert`` draws each multipart boundary from the clock, a counter and its process
  id; each is replaced by one derived from the message with its boundaries blanked out;
* a ``.msg`` with no date of its own gets the time of the conversion as its ``Date``; that
  one is replaced by the file's modification time.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path

PACKAGE = "libemail-outlook-message-perl"
#: a .msg is converted in well under a second; a converter still busy after this is stuck.
TIMEOUT_S = 120

#: Email::MIME's boundaries: <epoch seconds><counter>.<random hex>.<process id>.
_BOUNDARY = re.compile(rb"\b(\d{10,}\.[0-9A-Fa-f]+\.\d+)\b")
_BOUNDARY_PARAM = re.compile(rb'boundary="?(\d{10,}\.[0-9A-Fa-f]+\.\d+)"?', re.IGNORECASE)
_DATE_LINE = re.compile(rb"^Date:[ \t]*([^\r\n]*)(\r?\n)", re.MULTILINE | re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Converted:
    """The message bytes, or why there are none (``permanent``: retrying will not help)."""

    data: bytes | None
    error: str = ""
    permanent: bool = True


def convert(path: Path, mtime: datetime) -> Converted:
    """Convert one ``.msg`` file.  Never raises for a bad file or a missing converter."""
    exe = shutil.which("msgconvert")
    if exe is None:
        return Converted(
            None, f"Outlook .msg import needs the msgconvert program: install the Debian package {PACKAGE}", False
        )
    with tempfile.TemporaryDirectory(prefix="archiver-msg-") as tmp:
        out = Path(tmp) / "message.eml"
        started = datetime.now(UTC)
        try:
            proc = subprocess.run(
                # an absolute path: a file named "-x.msg" must not be read as an option
                [exe, "--outfile", str(out), str(path.absolute())],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return Converted(None, f"msgconvert did not finish converting the .msg within {TIMEOUT_S} s")
        except OSError as exc:
            return Converted(None, f"msgconvert could not be run: {exc.strerror or exc}", False)
        finished = datetime.now(UTC)
        try:
            data = out.read_bytes()
        except OSError:
            data = b""
    if proc.returncode != 0 or not data.strip():
        # msgconvert exits 0 on some unreadable files, having written nothing.
        lines = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        detail = lines[-1].strip() if lines else f"exit status {proc.returncode}"
        return Converted(None, f"msgconvert could not convert the .msg: {detail[:300]}")
    return Converted(stable_conversion(data, started, finished, mtime))


def stable_conversion(data: bytes, started: datetime, finished: datetime, mtime: datetime) -> bytes:
    """``msgconvert``'s output made the same for every conversion of the same file (see above)."""
    return _stable_date(_stable_boundaries(data), started, finished, mtime)


def _stable_boundaries(data: bytes) -> bytes:
    declared = list(dict.fromkeys(m.group(1) for m in _BOUNDARY_PARAM.finditer(data)))
    if not declared:
        return data
    wanted = set(declared)
    blank = _BOUNDARY.sub(lambda m: b"" if m.group(1) in wanted else m.group(0), data)
    base = hashlib.sha256(blank).hexdigest()[:20]
    # token characters only: the Content-Type parameter stays valid unquoted, as msgconvert wrote it
    new = {old: f"archiver-msg-{base}-{i}".encode() for i, old in enumerate(declared)}
    return _BOUNDARY.sub(lambda m: new.get(m.group(1), m.group(0)), data)


def _stable_date(data: bytes, started: datetime, finished: datetime, mtime: datetime) -> bytes:
    head_end = data.find(b"\n\n")
    crlf_end = data.find(b"\r\n\r\n")
    ends = [e for e in (head_end, crlf_end) if e >= 0]
    head = data[: min(ends)] if ends else data
    match = _DATE_LINE.search(head)
    if match is None:
        return data
    try:
        when = parsedate_to_datetime(match.group(1).decode("ascii", "replace"))
    except (TypeError, ValueError):
        return data
    if when.tzinfo is None:
        return data
    slack = timedelta(seconds=2)
    if not started.replace(microsecond=0) - slack <= when <= finished + slack:
        return data  # the message's own date
    line = b"Date: " + format_datetime(mtime.astimezone(UTC)).encode("ascii") + match.group(2)
    return data[: match.start()] + line + data[match.end() :]
