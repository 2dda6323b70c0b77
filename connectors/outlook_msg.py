"""Outlook ``.msg`` files, converted to RFC 822 by ``msgconvert``.

A ``.msg`` (what Outlook saves when a message is dragged out of it, and what document
management systems keep) is an OLE compound file of MAPI properties: like a PST, it holds
no RFC 822 bytes.  ``msgconvert`` (Debian package ``libemail-outlook-message-perl``,
Email::Outlook::Message) writes them, the way ``readpst`` does for PSTs, and what the
archive stores is that conversion.

The same ``.msg`` must always give the same bytes, so that re-imports and copies are
duplicates rather than new messages.  msgconvert's MIME library draws boundaries and
Content-IDs from the clock, ``rand``, the process id and the host name, and dates a
message (or an attached one) that has no date of its own with the time of conversion.  So
msgconvert runs inside a small Perl wrapper (``_WRAPPER``) that fixes all four and the hash
seed; the one date it can then write for "now", ``_NO_DATE``, is removed again, leaving a
message without a Date header, which the normalizer dates by the file's time and flags,
as for any dateless message.

msgconvert runs with limits (output size, memory, CPU time, wall time): a 2.5 KB
``.msg`` with a lying compressed-RTF header makes it loop and print warnings forever.

An Outlook item that is not a message (a contact, a task) converts to a bare header
block: the item's own fields (addresses, phone numbers) are not in it, and the ANSI and
Unicode copies of the same contact give the same bytes.  So when the conversion has no
body, the original ``.msg`` is attached to it (``_with_original``), with a boundary
derived from the file's SHA-256: the stored message then holds everything the file held,
and the same file still always gives the same bytes.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import resource
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "libemail-outlook-message-perl"
#: a .msg is converted in well under a second; a converter still busy after this is stuck.
TIMEOUT_S = 120
#: the converter's address space (it holds the whole .msg and the message it builds), at least.
MEMORY_BYTES = 2 << 30

#: Runs msgconvert (its path is the first argument) with a fixed clock (1 s after the epoch),
#: random seed, process id and host name; see the module docstring.
_WRAPPER = r"""
BEGIN { *CORE::GLOBAL::time = sub () { 1 }; srand(1); }
$$ = 1;
my $host = sub { 'msgconvert.invalid' };
require Sys::Hostname;
{ no warnings 'redefine'; *Sys::Hostname::hostname = $host; }
if (eval { require Sys::Hostname::Long; 1 }) { no warnings 'redefine'; *Sys::Hostname::Long::hostname_long = $host; }
my $script = shift @ARGV;
$0 = $script;
do $script;
die $@ if $@;
"""
#: the Date msgconvert writes for a message without one, under the wrapper's clock.
_NO_DATE = re.compile(rb"^Date: Thu, 1 Jan 1970 00:00:01 \+0000\r?\n", re.MULTILINE)
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_CONTENT_HEADERS = re.compile(rb"^(From|To|Cc|Subject):[ \t]*\S", re.MULTILINE | re.IGNORECASE)
#: header fields replaced when the original .msg is attached (the message becomes multipart/mixed).
_MIME_HEADERS = (b"mime-version", b"content-type", b"content-transfer-encoding", b"content-disposition")


@dataclass(frozen=True, slots=True)
class Converted:
    """The message bytes, or why there are none (``permanent``: retrying will not help)."""

    data: bytes | None
    error: str = ""
    permanent: bool = True


def convert(path: Path, max_bytes: int) -> Converted:
    """Convert one ``.msg`` file (output of at most ``max_bytes``).  Never raises."""
    exe, perl = shutil.which("msgconvert"), shutil.which("perl")
    if exe is None or perl is None:
        return Converted(
            None, f"Outlook .msg import needs the msgconvert program: install the Debian package {PACKAGE}", False
        )
    env = {**os.environ, "TZ": "UTC", "PERL_HASH_SEED": "0", "PERL_PERTURB_KEYS": "0"}
    with tempfile.TemporaryDirectory(prefix="archiver-msg-") as tmp:
        out, err = Path(tmp) / "message.eml", Path(tmp) / "stderr"
        # an absolute path: a file named "-x.msg" must not be read as an option
        argv = [perl, "-e", _WRAPPER, exe, "--outfile", str(out), str(path.absolute())]
        try:
            with err.open("wb") as err_file:
                proc = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err_file, env=env
                )
                _limit(proc.pid, max_bytes)
                try:
                    code = proc.wait(timeout=TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                    return Converted(
                        None, f"msgconvert did not finish within {TIMEOUT_S} s; tried again next run", False
                    )
        except OSError as exc:
            return Converted(None, f"msgconvert could not be run: {exc.strerror or exc}", False)
        data = out.read_bytes() if out.is_file() else b""
        detail = _last_line(err)
    if code != 0 or not data.strip():
        return Converted(None, f"msgconvert could not convert the .msg: {detail or f'exit status {code}'}")
    data = _NO_DATE.sub(b"", data)
    if not _has_content(data):
        # msgconvert writes a bare header for a damaged file.  Recorded as done: a file that was
        # still being copied changes size and time, and its checkpoint makes the next run read it.
        return Converted(None, "msgconvert found no message in the .msg (damaged, or not an Outlook message)")
    if not _has_body(data):
        try:
            original = path.read_bytes()
        except OSError as exc:
            return Converted(None, f"the .msg could not be read again: {exc.strerror or exc}", False)
        if len(data) + len(original) * 4 // 3 + 4096 <= max_bytes:
            data = _with_original(data, original)
    return Converted(data)


def _limit(pid: int, max_bytes: int) -> None:
    """Cap the converter's output files (its stderr included), memory and CPU time."""
    for which, value in (
        (resource.RLIMIT_FSIZE, max(max_bytes, 1 << 20) + (1 << 20)),
        (resource.RLIMIT_AS, max(MEMORY_BYTES, 10 * max_bytes)),
        (resource.RLIMIT_CPU, TIMEOUT_S),
    ):
        # it may have exited already, or a limit may be lower than this already
        with contextlib.suppress(OSError, ValueError):
            resource.prlimit(pid, which, (value, value))


def _last_line(err: Path) -> str:
    """The last thing msgconvert said (its warnings can run to megabytes: only the tail is read)."""
    try:
        with err.open("rb") as fh:
            fh.seek(max(0, err.stat().st_size - 4096))
            tail = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _has_body(data: bytes) -> bool:
    """Anything but white space after the header block."""
    end = _HEADER_END.search(data)
    return bool(end and data[end.end() :].strip())


def _with_original(converted: bytes, original: bytes) -> bytes:
    """The converted header block, as multipart/mixed: a short note and the original .msg (see the module docstring)."""
    eol = b"\r\n" if b"\r\n" in converted[:4096] else b"\n"
    end = _HEADER_END.search(converted)
    head = converted[: end.start()] if end else converted.rstrip(b"\r\n")
    kept: list[bytes] = []
    keep = True
    for line in head.splitlines():
        if line[:1] not in (b" ", b"\t"):  # a new field; continuation lines follow their field
            keep = line.split(b":", 1)[0].strip().lower() not in _MIME_HEADERS
        if keep:
            kept.append(line)
    boundary = b"archiver-msg-" + hashlib.sha256(original).hexdigest()[:32].encode()
    encoded = base64.encodebytes(original).replace(b"\n", eol)
    note = b"This Outlook item has no message body (a contact or a task, for example); the original .msg is attached."
    parts = [
        *kept,
        b"MIME-Version: 1.0",
        b'Content-Type: multipart/mixed; boundary="' + boundary + b'"',
        b"",
        b"--" + boundary,
        b"Content-Type: text/plain; charset=us-ascii",
        b"",
        note,
        b"--" + boundary,
        b"Content-Type: application/vnd.ms-outlook",
        b"Content-Transfer-Encoding: base64",
        b'Content-Disposition: attachment; filename="original.msg"',
        b"",
    ]
    return eol.join(parts) + eol + encoded + b"--" + boundary + b"--" + eol


def _has_content(data: bytes) -> bool:
    """A sender, recipient or subject in the top header block, or a body after it."""
    end = _HEADER_END.search(data)
    head, body = (data[: end.start()], data[end.end() :]) if end else (data, b"")
    return bool(_CONTENT_HEADERS.search(head)) or bool(body.strip())
