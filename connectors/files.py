"""Import mail files from disk: Maildir, mbox, single messages, folders of them, and PST.

Firms hand over mail in whatever shape their last system left it: a Maildir
copied off a server, an mbox from Thunderbird or a Google Takeout, a folder tree
of ``1.``, ``2.``... files (the Enron release), a PST exported from Outlook.  The
connector takes a list of paths and decides what each one is from its *content*,
never from its name alone, because exported files are routinely misnamed.

Guarantees the pipeline relies on:

* Each :class:`~connectors.base.RawMessage` carries the message's own bytes,
  unchanged, with the single exception of mbox framing: the ``From `` separator
  line is not part of a message, and mboxrd ``>From`` quoting is undone.
* Nothing read is silently dropped.  Every path that cannot be imported (missing,
  unreadable, not mail, empty, too large, unsupported format) becomes a
  :class:`~connectors.base.SourceFailure` and the import continues.
* Big files are streamed; memory stays bounded by ``max_message_bytes``.
* Every file gets a checkpoint in the batch that completes it (an mbox or a PST
  only once all of it was imported); a file whose checkpoint still matches is
  not opened again, so re-running an unchanged import reads nothing, and a file
  whose size or modification time changed is read again.  The key is
  ``files:<source>:<digest>``, the digest being 16 base64url characters
  (96 bits of BLAKE2b) of the absolute path, and the value is
  ``<size>:<mtime_ns>`` in base 36 (see :meth:`FilesConnector._key`).
* Order is deterministic (paths sorted by name), so two runs produce the same
  batches.

Python's :mod:`mailbox` module is not used for mbox because it neither undoes
mboxrd quoting nor honours ``Content-Length`` framing, and it splits on every
``From `` line, which cuts unquoted ("mboxo") files in the middle of messages.
"""

from __future__ import annotations

import base64
import hashlib
import io
import itertools
import logging
import os
import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from connectors import outlook_msg
from connectors.base import Batch, Checkpoint, Origin, RawMessage, SourceFailure

__all__ = ["FilesConnector", "detect_format"]

log = logging.getLogger(__name__)

#: how much of a file is looked at to decide what it is.
#: files up to this size are read in one go (the sniffed sample is the message).
_READ_WHOLE_BYTES = 1 << 20
_SNIFF_BYTES = 128 * 1024
#: mbox lines longer than this are read in pieces.
_MAX_LINE = 1 << 20
_UTF8_BOM = b"\xef\xbb\xbf"
_PST_MAGIC = b"!BDN"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
#: the UTF-16 stream-name prefix every Outlook .msg compound file carries.
_MSG_MARKER = "__substg1.0_".encode("utf-16-le")

#: an RFC 5322 header field line: printable ASCII name (no colon), optional blanks, colon.
_HEADER_RE = re.compile(rb"^[\x21-\x39\x3b-\x7e]+[ \t]*:")
#: header names that real mail nearly always carries; one of them must appear.
_KNOWN_HEADERS = frozenset(
    {
        b"from",
        b"to",
        b"cc",
        b"bcc",
        b"subject",
        b"date",
        b"message-id",
        b"received",
        b"return-path",
        b"mime-version",
        b"content-type",
        b"content-transfer-encoding",
        b"delivered-to",
        b"sender",
        b"reply-to",
        b"in-reply-to",
        b"references",
        b"x-mailer",
        b"user-agent",
        b"dkim-signature",
        b"authentication-results",
        b"x-original-to",
        b"envelope-to",
        b"list-id",
        b"thread-topic",
    }
)
#: mboxrd quoting: one ``>`` is removed from every line that is ``>``* followed by ``From ``.
_MBOXRD_QUOTED = re.compile(rb"^>(>*From )", re.MULTILINE)
#: time of day or a four-digit year: what makes a ``From `` line an envelope, not prose.
_ENVELOPE_TIME = re.compile(rb"\d{1,2}:\d{2}")
_ENVELOPE_YEAR = re.compile(rb"(?<!\d)\d{4}(?!\d)")

#: Maildir info flags -> IMAP flags (https://cr.yp.to/proto/maildir.html).
_MAILDIR_FLAGS = {
    "D": "\\Draft",
    "F": "\\Flagged",
    "P": "$Forwarded",
    "R": "\\Answered",
    "S": "\\Seen",
    "T": "\\Deleted",
}


def detect_format(path: Path) -> str:
    """What ``path`` holds, judged by its content.

    Returns one of ``"maildir"``, ``"directory"``, ``"mbox"``, ``"eml"``, ``"pst"``,
    ``"msg"`` or ``"unknown"`` (also for empty files and anything that is not a
    regular file, such as a fifo, which is never opened).  Raises :class:`OSError`
    when the path cannot be examined.
    """
    st = path.stat()
    if stat.S_ISDIR(st.st_mode):
        return "maildir" if _is_maildir(path) else "directory"
    if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
        return "unknown"
    with path.open("rb") as fh:
        sample = fh.read(_SNIFF_BYTES)
    return _classify(sample, path.name)


def _classify(sample: bytes, name: str) -> str:
    """Format of a regular file from its first bytes (and, as a last resort, its name)."""
    if sample.startswith(_PST_MAGIC):
        return "pst"
    if sample.startswith(_OLE_MAGIC):
        return "msg" if name.lower().endswith(".msg") or _MSG_MARKER in sample else "unknown"
    if sample.removeprefix(_UTF8_BOM).startswith(b"From "):
        return "mbox"
    if _looks_like_headers(sample):
        return "eml"
    # A file its exporter called .eml is a message even when it has no header
    # (body-only, whitespace-only): archiving it loses nothing, skipping it might.
    if name.lower().endswith(".eml"):
        return "eml"
    return "unknown"


def _looks_like_headers(sample: bytes) -> bool:
    """True when the sample opens with an RFC 5322 header block.

    The first line must be a header field (a stray leading blank or byte-order
    mark is forgiven) and a well-known field must appear before the first line
    that is not a header; broken mail still has to count as mail.
    """
    lines = sample.removeprefix(_UTF8_BOM).splitlines()[:64]
    if not lines or not _HEADER_RE.match(lines[0].lstrip(b" \t")):
        return False
    lines[0] = lines[0].lstrip(b" \t")
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            continue
        if not _HEADER_RE.match(line):
            return False
        if line.split(b":", 1)[0].strip().lower() in _KNOWN_HEADERS:
            return True
    return False


def _is_archive(path: Path) -> bool:
    """An archiver archive folder (``archive.json`` next to ``segments/`` and ``journal/``)."""
    return (path / "archive.json").is_file() and (path / "segments").is_dir() and (path / "journal").is_dir()


def _is_maildir(path: Path) -> bool:
    return (path / "cur").is_dir() and (path / "new").is_dir()


_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def _base36(n: int) -> str:
    if n < 0:
        return "-" + _base36(-n)
    digits = []
    while True:
        n, r = divmod(n, 36)
        digits.append(_BASE36[r])
        if not n:
            return "".join(reversed(digits))


def _checkpoint_value(st: os.stat_result) -> str:
    """``<size>:<mtime_ns>`` in base 36 (``2es:cwyvpeni7w9h`` for 3,124 bytes, mtime 1,700,000,000,123,456,789 ns)."""
    return f"{_base36(st.st_size)}:{_base36(st.st_mtime_ns)}"


def _legacy_value(st: os.stat_result) -> str:
    """The checkpoint value archives imported before the short keys hold: decimal ``<size>:<mtime_ns>``."""
    return f"{st.st_size}:{st.st_mtime_ns}"


def _mtime(st: os.stat_result) -> datetime:
    return datetime.fromtimestamp(st.st_mtime, UTC)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


def _decode_mutf7(name: str) -> str:
    """Maildir++ folder names are IMAP modified UTF-7 (``&AOQ-`` is ``ä``)."""
    if "&" not in name:
        return name
    try:
        from imapclient import imap_utf7

        decoded = imap_utf7.decode(name.encode("ascii"))
    except (ImportError, ValueError, UnicodeError):
        return name
    return str(decoded)


def _maildir_info(filename: str) -> tuple[datetime | None, tuple[str, ...]]:
    """Delivery time and IMAP flags from a Maildir file name ``<time>.<unique>:2,<flags>``."""
    stamp = filename.split(".", 1)[0]
    when = None
    if stamp.isdigit() and len(stamp) <= 11:
        when = datetime.fromtimestamp(int(stamp), UTC)
    flags: tuple[str, ...] = ()
    for sep in (":2,", "!2,", ";2,"):
        if sep in filename:
            letters = filename.rsplit(sep, 1)[1]
            flags = tuple(_MAILDIR_FLAGS[c] for c in letters if c in _MAILDIR_FLAGS)
            break
    return when, flags


def _envelope_date(line: bytes) -> datetime | None:
    """The asctime date of an mbox ``From `` line, taken as UTC (which mbox writers use)."""
    parts = line.split()
    for width in (5, 6):
        if len(parts) < 2 + width:
            continue
        text = b" ".join(parts[2 : 2 + width]).decode("ascii", "replace")
        for fmt in ("%a %b %d %H:%M:%S %Y", "%a %b %d %H:%M:%S %z %Y"):
            try:
                parsed = datetime.strptime(text, fmt)
            except ValueError:
                continue
            return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    return None


@dataclass(frozen=True, slots=True)
class _MboxEntry:
    """One message found in an mbox: where its ``From `` line starts and its bytes."""

    offset: int
    envelope: bytes
    data: bytes | None  # None when the message is larger than the limit
    size: int


class _LineReader:
    """Buffered line reader over a binary file that tracks offsets and can peek and seek.

    Lines longer than ``_MAX_LINE`` come back in pieces (so a 1 GB file without
    a newline does not land in memory); ``continued`` tells whether the last
    piece returned was the rest of a longer line rather than a line start.
    """

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self._pushed: list[tuple[int, bytes, bool]] = []
        self._partial = False
        self.pos = 0
        self.continued = False

    def readline(self) -> tuple[int, bytes]:
        if self._pushed:
            off, line, self.continued = self._pushed.pop()
        else:
            off = self.pos
            line = self._fh.readline(_MAX_LINE)
            self.pos += len(line)
            self.continued = self._partial
            self._partial = bool(line) and not line.endswith(b"\n")
        return off, line

    def unread(self, off: int, line: bytes) -> None:
        self._pushed.append((off, line, self.continued))

    def peek(self) -> bytes:
        continued = self.continued
        off, line = self.readline()
        self.unread(off, line)
        self.continued = continued
        return line

    def seek(self, pos: int) -> None:
        self._pushed.clear()
        self._fh.seek(pos)
        self.pos = pos
        self._partial = False
        self.continued = False

    def read(self, n: int) -> bytes:
        assert not self._pushed
        data = self._fh.read(n)
        self.pos += len(data)
        return data


def _is_blank(line: bytes) -> bool:
    return line in (b"\n", b"\r\n", b"\r")


def _is_envelope(line: bytes, after_blank: bool, next_line: bytes, in_headers: bool = False) -> bool:
    """Whether a ``From `` line separates messages or is unquoted body text.

    A separator is ``From <sender>`` optionally followed by a date, and the next
    line is a header field.  After a blank line a time or a year is enough;
    otherwise (and always inside a header block, where ``From  :`` is a
    sloppy header) both are required.  This keeps "From Russia with love" followed by
    "Year: 1963" in an unquoted (mboxo) body where it belongs.
    """
    if not line.startswith(b"From ") or not _HEADER_RE.match(next_line):
        return False
    words = line[5:].split(None, 1)
    if len(words) < 2 and not in_headers:
        return not words or not words[0].startswith(b":")
    if len(words) < 2:
        return False
    has_time = bool(_ENVELOPE_TIME.search(words[1]))
    has_year = bool(_ENVELOPE_YEAR.search(words[1]))
    return (has_time or has_year) if after_blank and not in_headers else (has_time and has_year)


def _content_length(line: bytes) -> int | None:
    name, _, value = line.partition(b":")
    if name.strip().lower() != b"content-length":
        return None
    value = value.strip()
    return int(value) if value.isdigit() else None


class _Accumulator:
    """The bytes of one message, dropped (but still counted) once past the size limit."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._parts: list[bytes] = []
        self.size = 0

    def keep(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self._limit:
            self._parts.clear()
        else:
            self._parts.append(chunk)

    def data(self) -> bytes | None:
        return None if self.size > self._limit else b"".join(self._parts)


def _iter_mbox(fh: BinaryIO, max_bytes: int) -> Iterator[_MboxEntry]:
    """Split an mbox stream into messages (mboxo, mboxrd, and Content-Length framing).

    Reads line by line; only the current message is held in memory, and not even
    that once it passes ``max_bytes``.
    """
    reader = _LineReader(fh)
    off, line = reader.readline()
    if line.startswith(_UTF8_BOM):
        off, line = off + len(_UTF8_BOM), line[len(_UTF8_BOM) :]
    if not line.startswith(b"From "):
        return
    while line:
        start, envelope = off, line
        acc = _Accumulator(max_bytes)
        keep = acc.keep
        framed_by_length = False

        # Header block: note Content-Length and where the body starts.
        lengths: list[int] = []
        in_headers = True
        prev_blank = False
        next_sep: tuple[int, bytes] | None = None
        while True:
            off, line = reader.readline()
            if not line:
                break
            if reader.continued:  # the rest of an over-long line: plain content
                keep(line)
                prev_blank = False
                continue
            if line.startswith(b"From ") and _is_envelope(line, prev_blank, reader.peek(), in_headers):
                next_sep = (off, line)
                break
            if in_headers:
                if _is_blank(line):
                    in_headers = False
                    keep(line)
                    body_start = off + len(line)
                    if len(lengths) == 1 and _length_is_consistent(reader, body_start, lengths[0]):
                        reader.seek(body_start)
                        remaining = lengths[0]
                        while remaining:
                            chunk = reader.read(min(remaining, 1 << 20))
                            if not chunk:
                                break
                            keep(chunk)
                            remaining -= len(chunk)
                        framed_by_length = True
                        off, line = reader.readline()
                        if _is_blank(line):
                            off, line = reader.readline()
                        if line:
                            next_sep = (off, line)
                        break
                    reader.seek(body_start)
                    prev_blank = True
                    continue
                length = _content_length(line)
                if length is not None:
                    lengths.append(length)
            keep(line)
            prev_blank = _is_blank(line)
        data = acc.data()
        if data is not None and not framed_by_length:
            data = _unframe(data)
        yield _MboxEntry(start, envelope, data, acc.size)
        if next_sep is None:
            return
        off, line = next_sep


#: "Content-Length" anywhere: a header of that name may frame an mbox message (``_content_length``
#: strips any whitespace around the name, so the shortcut declines on the bare word).
_CONTENT_LENGTH_WORD = re.compile(rb"content-length", re.IGNORECASE)


def _single_message(data: bytes, max_bytes: int) -> _MboxEntry | None:
    """The only message of a whole mbox file in memory, or None when it may hold more.

    Most "mbox" files met in mail trees are one saved message behind an envelope line
    (the SpamAssassin corpus is 6,000 of them).  When no line after the envelope starts
    with ``From `` or ``>From `` and no Content-Length header could frame the body,
    :func:`_iter_mbox` can only find that one message, so it is cut here with a few
    searches instead of the line-by-line reader, whose Python loop cost the single writer
    a tenth of its time.  Anything else (a BOM too) goes to :func:`_iter_mbox`;
    tests/connectors/test_files.py checks the two agree.
    """
    if not data.startswith(b"From "):
        return None
    end = data.find(b"\n") + 1
    if end == 0:
        return None
    envelope, rest = data[:end], data[end:]
    if rest.startswith((b"From ", b">")) or b"\nFrom " in rest or b">From " in rest:
        return None
    if _CONTENT_LENGTH_WORD.search(rest):
        return None
    if len(rest) > max_bytes:
        return _MboxEntry(0, envelope, None, len(rest))
    return _MboxEntry(0, envelope, _unframe(rest), len(rest))


def _length_is_consistent(reader: _LineReader, body_start: int, length: int) -> bool:
    """True when ``Content-Length`` ends exactly at end of file or before the next ``From ``."""
    if length > 0:
        reader.seek(body_start + length - 1)
        if not reader.read(1):  # the file ends before the announced length
            return False
    reader.seek(body_start + length)
    tail = reader.read(7)
    return tail in (b"", b"\n", b"\r\n") or tail.startswith((b"From ", b"\nFrom ", b"\r\nFrom"))


def _unframe(data: bytes) -> bytes:
    """Undo mboxrd quoting and drop the blank line the mbox writer put after the message."""
    if data.endswith(b"\r\n") and data[:-2].endswith(b"\n"):
        data = data[:-2]
    elif data.endswith(b"\n") and data[:-1].endswith(b"\n"):
        data = data[:-1]
    return _MBOXRD_QUOTED.sub(rb"\1", data)


class _Batcher:
    """Groups messages into batches of one folder, at most ``size`` messages each.

    A batch is only closed when the *next* message needs room, so a checkpoint
    added right after a file's last message lands in the same batch as it.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._current: Batch | None = None

    def _batch(self, folder: str, full: bool) -> Iterator[Batch]:
        cur = self._current
        if cur is not None and (cur.folder != folder or (full and len(cur.messages) >= self._size)):
            yield cur
            self._current = None
        if self._current is None:
            self._current = Batch(folder=folder)

    def message(self, folder: str, msg: RawMessage) -> Iterator[Batch]:
        yield from self._batch(folder, True)
        assert self._current is not None
        self._current.messages.append(msg)

    def checkpoint(self, folder: str, key: str, value: str) -> Iterator[Batch]:
        yield from self._batch(folder, False)
        assert self._current is not None
        self._current.checkpoints.append(Checkpoint(key, value))

    def failure(self, folder: str, location: str, reason: str, permanent: bool = True) -> Iterator[Batch]:
        yield from self._batch(folder, False)
        assert self._current is not None
        self._current.failures.append(SourceFailure(location, reason, permanent))

    def finish(self) -> Iterator[Batch]:
        if self._current is not None:
            yield self._current
            self._current = None


class FilesConnector:
    """Imports Maildirs, mbox files, single messages, folder trees of them, and PST files."""

    def __init__(
        self,
        name: str,
        paths: Sequence[Path],
        *,
        batch_size: int = 500,
        max_message_bytes: int = 200 * 2**20,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.name = name
        self.paths = [Path(p) for p in paths]
        self.batch_size = batch_size
        self.max_message_bytes = max_message_bytes

    # -- entry point ---------------------------------------------------------

    def _key(self, path: Path | str) -> str:
        """Checkpoint key of one file: ``files:<source>:<digest of the absolute path>``.

        Per source, so the same file imported under another source name is read again
        and gains that source's provenance.  The digest is BLAKE2b with a 12-byte
        output over the path's bytes (``os.fsencode``: surrogateescape on POSIX, so
        any file name works), as 16 base64url characters: a key is a few dozen bytes
        however deep the path.  Two paths sharing a digest is a 2**-96 chance per
        pair (about 1e-11 for a billion files in one source), and even then a file
        would only be skipped if its size and modification time also matched the
        other file's checkpoint.
        """
        digest = hashlib.blake2b(os.fsencode(path), digest_size=12).digest()
        return f"files:{self.name}:{base64.urlsafe_b64encode(digest).decode('ascii')}"

    def _legacy_key(self, path: Path | str) -> str:
        """The key archives imported before the short keys hold: ``files:<source>:<path>``."""
        return f"files:{self.name}:{path}"

    def _unchanged(self, cps: Mapping[str, str], path: Path, key: str, st: os.stat_result) -> bool:
        """Whether the file's checkpoint matches its size and mtime, so it need not be read.

        A file with no checkpoint under its key may still have one in the old long form
        (``files:<source>:<path>`` = decimal ``<size>:<mtime_ns>``) from an archive
        imported by an earlier version; it is honoured so that such an archive is not
        read again in full.  Once the file changes, it is checkpointed under the new key,
        which from then on takes precedence.
        """
        saved = cps.get(key)
        if saved is not None:
            return saved == _checkpoint_value(st)
        return cps.get(self._legacy_key(path)) == _legacy_value(st)

    def batches(self, checkpoints: Mapping[str, str]) -> Iterator[Batch]:
        """Yield batches for every path, skipping files whose checkpoint still matches."""
        out = _Batcher(self.batch_size)
        for root in self.paths:
            yield from self._root(Path(os.path.abspath(root)), checkpoints, out)
        yield from out.finish()

    def _root(self, root: Path, cps: Mapping[str, str], out: _Batcher) -> Iterator[Batch]:
        try:
            st = root.stat()
        except FileNotFoundError:
            reason = "broken symbolic link" if root.is_symlink() else "no such file or directory"
            yield from out.failure("", str(root), reason)
            return
        except OSError as exc:
            yield from out.failure("", str(root), f"cannot read: {exc.strerror or exc}", permanent=False)
            return
        if stat.S_ISDIR(st.st_mode):
            if _is_archive(root):
                yield from out.failure("", str(root), "this is an archiver archive folder, not mail")
            elif _is_maildir(root):
                yield from self._maildir(root, "", cps, out)
            else:
                yield from self._directory(root, "", cps, out, {(st.st_dev, st.st_ino)})
        else:
            yield from self._file(root, "", root.name, cps, out, st)

    # -- folder trees ----------------------------------------------------------

    def _directory(
        self,
        path: Path,
        rel: str,
        cps: Mapping[str, str],
        out: _Batcher,
        seen: set[tuple[int, int]],
    ) -> Iterator[Batch]:
        """Walk a plain folder: every file is judged by content, subfolders recursively."""
        try:
            entries = sorted(os.scandir(path), key=lambda e: e.name)
        except OSError as exc:
            yield from out.failure(rel, str(path), f"cannot list folder: {exc.strerror or exc}", False)
            return
        for entry in entries:
            child = Path(entry.path)
            child_rel = _join(rel, entry.name)
            try:
                st = child.stat()
            except FileNotFoundError:
                reason = "broken symbolic link" if entry.is_symlink() else "vanished while importing"
                yield from out.failure(rel, str(child), reason)
                continue
            except OSError as exc:
                yield from out.failure(rel, str(child), f"cannot read: {exc.strerror or exc}", False)
                continue
            if stat.S_ISDIR(st.st_mode):
                ident = (st.st_dev, st.st_ino)
                if ident in seen:
                    yield from out.failure(rel, str(child), "folder already imported (symbolic link loop)")
                    continue
                seen.add(ident)
                if _is_archive(child):
                    # `import .` next to (or above) the archive: its segments and journal are
                    # not mail, and reading them would only list hundreds of failures.
                    log.info("skipped an archive folder: %s", child)
                    continue
                if _is_maildir(child):
                    yield from self._maildir(child, child_rel, cps, out)
                else:
                    yield from self._directory(child, child_rel, cps, out, seen)
            else:
                yield from self._file(child, rel, child_rel, cps, out, st)

    def _maildir(self, root: Path, prefix: str, cps: Mapping[str, str], out: _Batcher) -> Iterator[Batch]:
        """A Maildir: the root is INBOX, ``.Sub.Folder`` children are Maildir++ folders."""
        folders: list[tuple[str, Path]] = [(_join(prefix, "INBOX"), root)]
        try:
            children = sorted(os.scandir(root), key=lambda e: e.name)
        except OSError as exc:
            yield from out.failure(prefix, str(root), f"cannot list folder: {exc.strerror or exc}", False)
            return
        for entry in children:
            if entry.name.startswith(".") and entry.name not in (".", "..") and entry.is_dir():
                sub = Path(entry.path)
                if _is_maildir(sub):
                    parts = [_decode_mutf7(p) for p in entry.name[1:].split(".") if p]
                    folders.append((_join(prefix, "/".join(parts)), sub))
        for folder, path in folders:
            yield from self._maildir_folder(path, folder, cps, out)

    def _maildir_folder(self, path: Path, folder: str, cps: Mapping[str, str], out: _Batcher) -> Iterator[Batch]:
        files: list[tuple[str, Path]] = []
        for sub in ("cur", "new"):
            try:
                files.extend((e.name, Path(e.path)) for e in os.scandir(path / sub) if not e.name.startswith("."))
            except OSError as exc:
                yield from out.failure(folder, str(path / sub), f"cannot list: {exc.strerror or exc}", False)
        for filename, file in sorted(files):
            key = self._key(file)
            try:
                st = file.stat()
            except FileNotFoundError:
                # Moved from new/ to cur/ or expunged by a mail client while we ran.
                yield from out.failure(folder, str(file), "vanished while importing", permanent=False)
                continue
            except OSError as exc:
                yield from out.failure(folder, str(file), f"cannot read: {exc.strerror or exc}", False)
                continue
            if self._unchanged(cps, file, key, st):
                continue
            value = _checkpoint_value(st)
            if not stat.S_ISREG(st.st_mode):
                yield from out.failure(folder, str(file), "not a regular file")
                continue
            if st.st_size == 0:
                yield from out.failure(folder, str(file), "empty file")
                yield from out.checkpoint(folder, key, value)
                continue
            if st.st_size > self.max_message_bytes:
                yield from out.failure(folder, str(file), self._too_big(st.st_size))
                continue
            try:
                data = file.read_bytes()
            except OSError as exc:
                yield from out.failure(folder, str(file), f"cannot read: {exc.strerror or exc}", False)
                continue
            when, flags = _maildir_info(filename)
            origin = Origin(
                source=self.name,
                folder=folder,
                internaldate=when or _mtime(st),
                flags=flags,
                location=str(file),
            )
            yield from out.message(folder, RawMessage(data, origin))
            yield from out.checkpoint(folder, key, value)

    # -- single files ----------------------------------------------------------

    def _file(
        self, path: Path, folder: str, rel: str, cps: Mapping[str, str], out: _Batcher, st: os.stat_result
    ) -> Iterator[Batch]:
        """One file found by content: a message, an mbox, a PST, or a failure; ``st`` is its stat()."""
        key = self._key(path)
        try:
            if not stat.S_ISREG(st.st_mode):
                yield from out.failure(folder, str(path), "not a regular file (fifo, socket or device)")
                return
            if self._unchanged(cps, path, key, st):
                return
            value = _checkpoint_value(st)
            if st.st_size == 0:
                yield from out.failure(folder, str(path), "empty file")
                yield from out.checkpoint(folder, key, value)
                return
            with path.open("rb") as fh:
                # Small files (nearly every single message) are read whole at once: one open, one read.
                whole = st.st_size <= _READ_WHOLE_BYTES
                sample = fh.read() if whole else fh.read(_SNIFF_BYTES)
        except OSError as exc:
            yield from out.failure(folder, str(path), f"cannot read: {exc.strerror or exc}", permanent=False)
            return
        kind = _classify(sample[:_SNIFF_BYTES], path.name)
        if kind == "eml":
            yield from self._eml(path, folder, st, key, value, out, data=sample if whole else None)
        elif kind == "mbox":
            yield from self._mbox(path, folder, rel, st, key, value, out, data=sample if whole else None)
        elif kind == "pst":
            yield from self._pst(path, rel, key, value, out)
        elif kind == "msg":
            yield from self._msg(path, folder, st, key, value, out)
        else:
            yield from out.failure(folder, str(path), f"not a mail file: {_describe(sample)}")
            yield from out.checkpoint(folder, key, value)

    def _too_big(self, size: int) -> str:
        return (
            f"message of {size} bytes is larger than the limit of {self.max_message_bytes} bytes; "
            "raise the limit to import it"
        )

    def _eml(
        self,
        path: Path,
        folder: str,
        st: os.stat_result,
        key: str,
        value: str,
        out: _Batcher,
        data: bytes | None = None,
    ) -> Iterator[Batch]:
        if st.st_size > self.max_message_bytes:
            yield from out.failure(folder, str(path), self._too_big(st.st_size))
            return
        try:
            if data is None:
                data = path.read_bytes()
        except OSError as exc:
            yield from out.failure(folder, str(path), f"cannot read: {exc.strerror or exc}", permanent=False)
            return
        origin = Origin(source=self.name, folder=folder, internaldate=_mtime(st), location=str(path))
        yield from out.message(folder, RawMessage(data, origin))
        yield from out.checkpoint(folder, key, value)

    def _mbox(
        self,
        path: Path,
        parent: str,
        rel: str,
        st: os.stat_result,
        key: str,
        value: str,
        out: _Batcher,
        data: bytes | None = None,
    ) -> Iterator[Batch]:
        """Stream an mbox; its checkpoint goes with the batch holding its last message.

        An mbox is a mail folder named after its file (``rel``), except a file
        holding one message behind an envelope line (a common way to save single
        messages): that one belongs to its directory (``parent``) like any other
        message file, so a folder of them is not cut into one batch per file.
        ``data`` is the whole file when it was small enough to read at once.
        """
        complete = True
        single = _single_message(data, self.max_message_bytes) if data is not None else None
        try:
            # A small file is already in memory: the line reader reads it from there.
            with io.BytesIO(data) if data is not None else path.open("rb", buffering=1 << 20) as fh:
                entries = iter((single,)) if single is not None else _iter_mbox(fh, self.max_message_bytes)
                head = list(itertools.islice(entries, 2))
                folder = parent if len(head) == 1 else rel
                for entry in itertools.chain(head, entries):
                    location = f"{path}#{entry.offset}"
                    if entry.data is None:
                        complete = False
                        yield from out.failure(folder, location, self._too_big(entry.size))
                        continue
                    if not entry.data.strip():
                        yield from out.failure(folder, location, "empty message in mbox (separator only)")
                        continue
                    origin = Origin(
                        source=self.name,
                        folder=folder,
                        internaldate=_envelope_date(entry.envelope) or _mtime(st),
                        location=location,
                    )
                    yield from out.message(folder, RawMessage(entry.data, origin))
        except OSError as exc:
            yield from out.failure(rel, str(path), f"read error: {exc.strerror or exc}", permanent=False)
            return
        if complete:
            yield from out.checkpoint(folder, key, value)

    def _msg(self, path: Path, folder: str, st: os.stat_result, key: str, value: str, out: _Batcher) -> Iterator[Batch]:
        """An Outlook .msg, converted by msgconvert (connectors/outlook_msg.py)."""
        if st.st_size > self.max_message_bytes:
            yield from out.failure(folder, str(path), self._too_big(st.st_size))
            return
        converted = outlook_msg.convert(path, self.max_message_bytes)
        if converted.data is None:
            # Not checkpointed when installing msgconvert would help: the next run tries again.
            yield from out.failure(folder, str(path), converted.error, permanent=converted.permanent)
            if converted.permanent:
                yield from out.checkpoint(folder, key, value)
            return
        if len(converted.data) > self.max_message_bytes:  # base64 makes the conversion larger
            yield from out.failure(folder, str(path), self._too_big(len(converted.data)))
            return
        origin = Origin(source=self.name, folder=folder, internaldate=_mtime(st), location=str(path))
        yield from out.message(folder, RawMessage(converted.data, origin))
        yield from out.checkpoint(folder, key, value)

    def _pst(self, path: Path, folder: str, key: str, value: str, out: _Batcher) -> Iterator[Batch]:
        """Convert a PST with readpst into one RFC 822 file per message, then import those."""
        readpst = shutil.which("readpst")
        if readpst is None:
            yield from out.failure(
                folder,
                str(path),
                "PST import needs the readpst program: install the Debian package pst-utils",
                permanent=False,
            )
            return
        with tempfile.TemporaryDirectory(prefix="archiver-pst-") as tmp:
            # -e: one .eml file per message in a folder tree; -t e: e-mail only
            # (contacts and calendars are not mail); -q: errors only.
            proc = subprocess.run(
                # an absolute path: a file named "-x.pst" must not be read as an option
                [readpst, "-e", "-t", "e", "-q", "-o", tmp, str(path.absolute())],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                check=False,
            )
            if proc.returncode != 0:
                err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
                detail = err[-1] if err else f"exit status {proc.returncode}"
                yield from out.failure(folder, str(path), f"readpst could not convert the PST: {detail}")
                return
            root = Path(tmp)
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames.sort()
                sub = Path(dirpath).relative_to(root).as_posix()
                pst_folder = _join(folder, "" if sub == "." else sub)
                for fn in sorted(filenames, key=_natural):
                    file = Path(dirpath) / fn
                    inner = file.relative_to(root).as_posix()
                    try:
                        size = file.stat().st_size
                        if size == 0:
                            continue
                        if size > self.max_message_bytes:
                            yield from out.failure(pst_folder, f"{path}#{inner}", self._too_big(size))
                            continue
                        data = stable_libpst_boundaries(file.read_bytes())
                    except OSError as exc:
                        yield from out.failure(pst_folder, f"{path}#{inner}", f"cannot read: {exc}", False)
                        continue
                    origin = Origin(source=self.name, folder=pst_folder, location=f"{path}#{inner}")
                    yield from out.message(pst_folder, RawMessage(data, origin))
            yield from out.checkpoint(folder, key, value)


_LIBPST_BOUNDARY = re.compile(rb"--boundary-LibPST-iamunique-(\d+)_-_-")


def stable_libpst_boundaries(data: bytes) -> bytes:
    """readpst's output for a message with its random MIME boundaries made deterministic.

    A PST holds no RFC 822 bytes; readpst writes them, and it draws every multipart
    boundary (``--boundary-LibPST-iamunique-<random>_-_-``) at random, so the same
    message converted twice had two ids and a changed PST (one new message) was
    imported again in full.  Each boundary's number is replaced by one derived from
    the message with its boundaries blanked out, plus its position among the
    message's boundaries: the same message always gets the same bytes, and a
    boundary still cannot occur in the text it separates unless that text already
    contained readpst's own marker.
    """
    found = list(dict.fromkeys(m.group(1) for m in _LIBPST_BOUNDARY.finditer(data)))
    if not found:
        return data
    blank = _LIBPST_BOUNDARY.sub(b"--boundary-LibPST-iamunique-_-_-", data)
    base = int.from_bytes(hashlib.sha256(blank).digest()[:4], "big")
    numbers = {old: str(base + i).encode() for i, old in enumerate(found)}
    return _LIBPST_BOUNDARY.sub(lambda m: b"--boundary-LibPST-iamunique-" + numbers[m.group(1)] + b"_-_-", data)


def _natural(name: str) -> tuple[int, str]:
    """readpst numbers messages 1.eml, 2.eml, ...; keep them in that order."""
    stem = name.split(".", 1)[0]
    return (int(stem), name) if stem.isdigit() else (1 << 62, name)


def _describe(sample: bytes) -> str:
    """A short human description of what a non-mail file seems to be."""
    signatures = (
        (b"\x89PNG", "PNG image"),
        (b"\xff\xd8\xff", "JPEG image"),
        (b"GIF8", "GIF image"),
        (b"%PDF", "PDF document"),
        (b"PK\x03\x04", "ZIP archive (or Office document)"),
        (b"\x1f\x8b", "gzip archive"),
        (b"\x7fELF", "executable"),
        (_OLE_MAGIC, "OLE compound file (Office document)"),
        (b"\x78\x9f\x3e\x22", "TNEF (winmail.dat) stream"),
    )
    for magic, what in signatures:
        if sample.startswith(magic):
            return what
    head = sample[:40]
    if b"\0" in sample[:4096]:
        return f"binary data starting {head!r}"
    return f"no mail headers at the start ({head!r})"
