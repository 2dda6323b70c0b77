"""The hash-chained, signed event journal.

One JSON document per record.  Each record carries the SHA-256 of the previous
record, so editing or removing a record breaks the chain from that point on.
Every transaction ends with a ``commit`` record whose signature (the archive's
Ed25519 key) covers the chain head before it: these are the signed checkpoints
that bundles and verifiers anchor to.  Records after the last commit record were
never committed and are cut off on recovery.

Record (keys sorted, no spaces, UTF-8)::

    {"actor", "data", "prev", "seq", "time", "type", "v": 2}
    hash = sha256 of {"actor", "data_sha256", "prev", "seq", "time", "type", "v": 2},
           where data_sha256 = sha256 of the canonical JSON of "data"
    the line written is the record with "hash" added, then a newline.

The record's hash covers its ``data`` through the data's own SHA-256 (record version
2), so an evidence bundle can prove the chain from an exported message's ingest record
to a signed commit while showing the other records of that transaction only as their
header and ``data_sha256``: the other messages' ids, clients and file paths stay out of
it.  Records written before version 2 have no ``v`` and hash
``{"actor", "data", "prev", "seq", "time", "type"}``; they are read and verified as
they are (docs/format.md 6.2).

On disk (``journal/journal.jsonl.zst``) each transaction's lines are one zstd
frame (with its content checksum), appended after the previous one: the file is
a plain concatenation of zstd frames, so ``zstdcat journal.jsonl.zst`` prints
the JSON lines and any tool can re-check the chain.  Compressing per transaction
matters: ingest records are mostly repeated keys, folder names and the previous
record's hash, and uncompressed they weighed a quarter of the raw mail.  A frame
boundary is always a transaction boundary, so the catalog's journal offset (just
after the last applied commit) is a frame boundary too.  Archives written before
the journal was compressed keep their plain ``journal/journal.jsonl`` (one line
per record) and go on being read and appended in that form.

The journal never holds message content or data keys: disposal must be able to
make a message unreadable, and an append-only journal cannot forget.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Final

import zstandard

from archiver.store.segments import fsync_dir

GENESIS = "0" * 64
CHECKPOINT_CONTEXT = b"archiver/checkpoint/v1\x00"
#: the journal file of new archives (zstd frames of JSON lines).
COMPRESSED_NAME: Final = "journal.jsonl.zst"
#: the journal file of archives written before compression (JSON lines).
PLAIN_NAME: Final = "journal.jsonl"
#: zstd level for journal frames: the records are small and repetitive; higher levels gain < 3 %.
_LEVEL: Final = 3
_CHUNK: Final = 1 << 20
_MAGIC: Final = zstandard.FRAME_HEADER
#: how far before the head a writer looks for the start of the last committed frame.
_TAIL_WINDOW: Final = 2 << 20
#: this many zero bytes at the end of the file mark a torn write (see _zero_tail).
_ZERO_TAIL: Final = 16


def _json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical(obj: Any) -> bytes:
    return _json(obj).encode("utf-8")


#: the record version this code writes (docs/format.md 6.2); records without ``v`` are version 1.
RECORD_VERSION: Final = 2
_HEADER_FIELDS: Final = ("actor", "prev", "seq", "time", "type")


def data_digest(data: Any) -> str:
    """SHA-256 of a record's ``data`` in canonical JSON: what a version-2 record's hash covers."""
    return hashlib.sha256(canonical(data)).hexdigest()


def record_hash(rec: dict[str, Any]) -> str:
    """The hash a record of the archive's journal must carry; raises KeyError when a field it covers is missing.

    Records in the journal always carry their ``data``: the form without it (header and
    ``data_sha256``) exists only in a bundle's proofs, checked by archiver/export/verify.py,
    and is no record here (KeyError, so it is reported as damage).  An unknown version gives
    "" (no hash matches it): a record cannot be made to verify by relabelling its version.
    """
    if "data_sha256" in rec:
        raise KeyError("data")
    if "v" not in rec:
        body = {k: rec[k] for k in ("actor", "data", "prev", "seq", "time", "type")}
        return hashlib.sha256(canonical(body)).hexdigest()
    if type(rec["v"]) is not int or rec["v"] != RECORD_VERSION:
        return ""
    body = {k: rec[k] for k in _HEADER_FIELDS}
    body["data_sha256"] = data_digest(rec["data"])
    body["v"] = RECORD_VERSION
    return hashlib.sha256(canonical(body)).hexdigest()


def checkpoint_message(archive_id: str, seq: int, head_hash: str, segment: int, end: int) -> bytes:
    """What a commit record's signature covers: the archive, the chain head before it,
    and the committed segment end the commit record itself names."""
    return CHECKPOINT_CONTEXT + f"{archive_id}\x00{seq}\x00{head_hash}\x00{segment}\x00{end}".encode()


class JournalError(Exception):
    """The journal is damaged at a given byte; ``torn`` when it is an unfinished last write."""

    def __init__(self, message: str, torn: bool = False) -> None:
        super().__init__(message)
        self.torn = torn


@dataclass(frozen=True, slots=True)
class Head:
    """The state after the last committed record: next sequence number, its hash, file size."""

    seq: int
    hash: str
    offset: int


@dataclass(frozen=True, slots=True)
class JournalLine:
    """A record and where it lies: for a compressed journal, the bounds of its frame."""

    record: dict[str, Any]
    offset: int
    end: int


def _parse(raw: bytes, where: str) -> dict[str, Any]:
    try:
        rec = json.loads(raw)
    except ValueError:
        raise JournalError(f"the journal record {where} is not valid JSON") from None
    if not isinstance(rec, dict):
        raise JournalError(f"the journal record {where} is not a record")
    return rec


def _is_commit(raw: bytes) -> bool:
    try:
        rec = json.loads(raw)
    except ValueError:
        return False
    return isinstance(rec, dict) and rec.get("type") == "commit"


def _lines(records: list[dict[str, Any]]) -> bytes:
    """Records as JSON lines (what a plain journal appends, and what a frame holds)."""
    return b"".join(canonical(r) + b"\n" for r in records)


def encode_frame(records: list[dict[str, Any]]) -> bytes:
    """One transaction's records as the bytes a compressed journal appends."""
    return _frame(_lines(records))


def _frame(lines: bytes) -> bytes:
    return zstandard.ZstdCompressor(level=_LEVEL, write_checksum=True).compress(lines)


def _read_frame(fh: BinaryIO, buf: bytes, start: int) -> tuple[bytes, int, bytes]:
    """Decode the frame at ``start`` (``buf`` holds bytes already read from there).

    Returns (content, end offset, bytes read past the frame).
    """
    if len(buf) < len(_MAGIC):
        buf += fh.read(len(_MAGIC) - len(buf))
    if not buf.startswith(_MAGIC):
        torn = (_MAGIC.startswith(buf) and not fh.read(1)) or _zero_tail(fh)
        raise JournalError(f"no journal frame starts at byte {start}", torn=torn)
    dobj = zstandard.ZstdDecompressor().decompressobj()
    out: list[bytes] = []
    fed = 0
    data = buf
    while True:
        try:
            out.append(dobj.decompress(data))
        except zstandard.ZstdError as exc:
            # A write cut short by a crash can also leave the file's last blocks zero-filled.
            raise JournalError(f"the journal frame at byte {start} is damaged ({exc})", torn=_zero_tail(fh)) from None
        fed += len(data)
        if dobj.eof:
            rest = dobj.unused_data
            return b"".join(out), start + fed - len(rest), rest
        data = fh.read(_CHUNK)
        if not data:
            raise JournalError(f"the journal frame at byte {start} is incomplete", torn=True)


def _frame_at(data: bytes, at: int) -> tuple[bytes, bytes] | None:
    """(content, bytes after it) of a frame that decodes completely from ``data[at:]``, else None.

    For scans that must guess where a frame starts (a damaged frame hides the next one's start).
    """
    dobj = zstandard.ZstdDecompressor().decompressobj()
    try:
        content = dobj.decompress(data[at:])
    except zstandard.ZstdError:
        return None
    return (content, dobj.unused_data) if dobj.eof else None


def _zero_tail(fh: BinaryIO) -> bool:
    """True when the file ends in zero bytes: the mark of a write a crash cut short.

    After a crash a file system may show an appended range whose data never reached the
    disk as zeros.  A complete frame never ends that way (its last bytes are a checksum),
    so a frame that fails to decode in a file ending in zeros is a torn write, while one
    that fails anywhere else was altered (or rotted) after it was written.
    """
    size = os.fstat(fh.fileno()).st_size
    if size < _ZERO_TAIL:
        return False
    fh.seek(size - _ZERO_TAIL)
    return not fh.read(_ZERO_TAIL).strip(b"\0")


class Journal:
    """Append and read the journal file; writes happen only under the archive lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.compressed = path.name.endswith(".zst")

    @classmethod
    def in_dir(cls, folder: Path) -> Journal:
        """The archive's journal: the compressed file, or the plain one of an archive written before compression.

        The compressed file wins when both exist: a ``zstdcat journal.jsonl.zst > journal.jsonl``
        left next to it by someone reading the journal must not become the journal.
        """
        compressed, plain = folder / COMPRESSED_NAME, folder / PLAIN_NAME
        return cls(plain if plain.exists() and not compressed.exists() else compressed)

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def lines(self, start: int = 0) -> Iterator[JournalLine]:
        """Records from byte offset ``start``; damage raises JournalError (``torn`` for an unfinished write)."""
        with open(self.path, "rb") as fh:
            fh.seek(start)
            yield from (self._frames(fh, start) if self.compressed else self._plain(fh, start))

    def committed(self, head: Head) -> Iterator[JournalLine]:
        """The records up to ``head`` (the catalog's): what was committed, never an unfinished tail."""
        for line in self.lines():
            if line.end > head.offset:
                return
            yield line

    def _frames(self, fh: BinaryIO, start: int) -> Iterator[JournalLine]:
        pos, buf = start, b""
        while True:
            if not buf:
                buf = fh.read(_CHUNK)
                if not buf:
                    return
            try:
                content, end, buf = _read_frame(fh, buf, pos)
            except JournalError as exc:
                # A flipped bit can make a frame look longer than the file: torn only if nothing complete follows.
                if exc.torn and self.has_complete_commit_after(pos):
                    raise JournalError(f"the journal frame at byte {pos} is damaged") from None
                raise
            if not content.endswith(b"\n"):
                raise JournalError(f"the journal frame at byte {pos} does not end a record")
            for n, raw in enumerate(content.splitlines()):
                yield JournalLine(_parse(raw, f"{n} of the frame at byte {pos}"), pos, end)
            pos = end

    @staticmethod
    def _plain(fh: BinaryIO, start: int) -> Iterator[JournalLine]:
        pos = start
        for raw in fh:
            end = pos + len(raw)
            if not raw.endswith(b"\n"):
                raise JournalError(f"journal line at byte {pos} is incomplete", torn=True)
            yield JournalLine(_parse(raw, f"at byte {pos}"), pos, end)
            pos = end

    def committed_tail(self, head: Head) -> tuple[list[dict[str, Any]], Head, int, str | None]:
        """Records after ``head`` up to the last commit record.

        Returns the committed records (in order, commit records included), the new
        head, the byte offset where the uncommitted tail (if any) begins, and what is
        wrong there when it is not a torn write: a record that fails its hash or link, or
        a frame that fails its checksum in a file that does not end the way a crash
        leaves it (:func:`_zero_tail`).  The scan ends at the first problem either way:
        what follows it was never acknowledged as committed, or cannot be trusted.
        """
        committed: list[dict[str, Any]] = []
        pending: list[dict[str, Any]] = []
        new_head = head
        prev, seq = head.hash, head.seq
        damage: str | None = None
        try:
            for line in self.lines(head.offset):
                rec = line.record
                if rec.get("seq") != seq or rec.get("prev") != prev or rec.get("hash") != record_hash(rec):
                    damage = f"the journal record at byte {line.offset} does not continue the hash chain"
                    break
                pending.append(rec)
                prev, seq = rec["hash"], seq + 1
                if rec.get("type") == "commit":
                    committed.extend(pending)
                    pending = []
                    new_head = Head(seq, prev, line.end)
        except JournalError as exc:
            damage = None if exc.torn else str(exc)
        except KeyError as exc:
            damage = f"a journal record lacks its {exc} field"
        return committed, new_head, new_head.offset, damage

    def last_commit(self, upto: int) -> dict[str, Any] | None:
        """The last commit record that ends at or before byte ``upto``, or None.

        For recovery's rare slow path (deciding what segment bytes a commit covers when the
        catalog's copy cannot be taken on trust), so it reads the whole journal once but
        parses only each transaction's last line, which is its commit record.
        """
        last: dict[str, Any] | None = None
        with open(self.path, "rb") as fh:
            if not self.compressed:
                pos = 0
                for raw in fh:
                    pos += len(raw)
                    if pos > upto:
                        break
                    if _is_commit(raw):
                        last = json.loads(raw)
                return last
            pos, buf = 0, b""
            while pos < upto:
                if not buf:
                    buf = fh.read(_CHUNK)
                    if not buf:
                        break
                content, end, buf = _read_frame(fh, buf, pos)
                if end > upto:
                    break
                tail = content.rstrip(b"\n").rpartition(b"\n")[2]
                if _is_commit(tail):
                    last = json.loads(tail)
                pos = end
        return last

    def tail_problem(self, head: Head) -> str | None:
        """What is wrong with the last applied transaction (the one ending at ``head``), or None.

        Writers check it before appending: damage there (bit rot, an edit) would otherwise be
        buried under new, validly chained records.  The frames of the last ``_TAIL_WINDOW``
        bytes before ``head.offset`` must decode, the last ending exactly there with a commit
        record whose hash is the head's.
        """
        if head.offset == 0:
            return None
        with open(self.path, "rb") as fh:
            start = max(0, head.offset - _TAIL_WINDOW)
            fh.seek(start)
            data = fh.read(head.offset - start)
        if not self.compressed:
            last = data.rstrip(b"\n").rpartition(b"\n")[2]
            return self._tail_record_problem(last, head)
        # Find a frame boundary: the first place in the window where a whole frame decodes (a
        # magic number inside compressed data does not decode to a checksummed frame), then
        # walk frame by frame to the head, where the last one must end exactly.
        at = data.find(_MAGIC)
        frame = None
        while at >= 0 and (frame := _frame_at(data, at)) is None:
            at = data.find(_MAGIC, at + 1)
        if frame is None:
            # Nothing decodes: damage, unless the window began inside one frame larger than it
            # (then left to verify, which reads the whole journal).
            return (
                None
                if start > 0
                else f"the journal's last committed transaction (ending at byte {head.offset}) is damaged"
            )
        while frame[1]:
            end = len(data) - len(frame[1])
            nxt = _frame_at(data, end)
            if nxt is None:
                return f"the journal's committed transaction at byte {start + end} is damaged"
            frame = nxt
        return self._tail_record_problem(frame[0].rstrip(b"\n").rpartition(b"\n")[2], head)

    @staticmethod
    def _tail_record_problem(raw: bytes, head: Head) -> str | None:
        try:
            rec = json.loads(raw)
            ok = rec.get("type") == "commit" and rec.get("hash") == head.hash == record_hash(rec)
        except (ValueError, AttributeError, KeyError):
            ok = False
        return None if ok else f"the journal's last committed record (before byte {head.offset}) was altered"

    def append(self, lines: list[bytes]) -> int:
        """Write one transaction's record lines (from :func:`make_record`) and fsync; returns the new file size."""
        data = _frame(b"".join(lines)) if self.compressed else b"".join(lines)
        created = not self.path.exists()
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            view = memoryview(data)
            while view:  # os.write may write less than asked (e.g. a nearly full disk)
                n = os.write(fd, view)
                view = view[n:]
            os.fsync(fd)
            size = os.fstat(fd).st_size
        finally:
            os.close(fd)
        if created:
            fsync_dir(self.path.parent)
        return size

    def has_complete_commit_after(self, offset: int) -> bool:
        """True when a complete, readable commit record lies after ``offset`` (then it is damage, not a torn write).

        A damaged frame hides where the next one starts, so every later position where a
        frame could start is tried; only frames that decode to their end (checksum
        included) count.
        """
        if not self.compressed:
            with open(self.path, "rb") as fh:
                fh.seek(offset)
                return any(_is_commit(raw) for raw in fh if raw.endswith(b"\n"))
        with open(self.path, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
        at = data.find(_MAGIC)
        while at >= 0:
            frame = _frame_at(data, at)
            if frame is not None and any(_is_commit(raw) for raw in frame[0].splitlines()):
                return True
            at = data.find(_MAGIC, at + 1)
        return False

    def truncate(self, offset: int) -> None:
        with open(self.path, "r+b") as fh:
            fh.truncate(offset)
            os.fsync(fh.fileno())


def make_record(
    *, seq: int, prev: str, time: str, type: str, actor: str, data: dict[str, Any]
) -> tuple[dict[str, Any], bytes]:
    """A new (version-2) record and its journal line (``canonical(record) + b"\\n"``).

    The hashed body and the line are the canonical JSON of dicts with fixed top-level
    keys, which sort as written here, so they are put together around one serialisation
    of ``data``: the writer, the ingest bottleneck, encodes each record once instead of
    twice.  tests/store/test_journal.py checks the result against ``canonical`` and
    :func:`record_hash`.
    """
    seq = int(seq)  # a plain int serialises the same in the f-string as in JSON
    data_json = _json(data)
    data_sha256 = hashlib.sha256(data_json.encode()).hexdigest()
    actor_json = _json(actor)
    rest = f'"prev":{_json(prev)},"seq":{seq},"time":{_json(time)},"type":{_json(type)},"v":{RECORD_VERSION}}}'
    digest = hashlib.sha256(f'{{"actor":{actor_json},"data_sha256":"{data_sha256}",{rest}'.encode()).hexdigest()
    rec: dict[str, Any] = {
        "actor": actor,
        "data": data,
        "prev": prev,
        "seq": seq,
        "time": time,
        "type": type,
        "v": RECORD_VERSION,
        "hash": digest,
    }
    return rec, f'{{"actor":{actor_json},"data":{data_json},"hash":"{digest}",{rest}\n'.encode()
