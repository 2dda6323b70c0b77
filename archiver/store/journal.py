"""The hash-chained, signed event journal.

One JSON document per line in ``journal/journal.jsonl``.  Each record carries the
SHA-256 of the previous record, so editing or removing a record breaks the chain
from that point on.  Every transaction ends with a ``commit`` record whose
signature (the archive's Ed25519 key) covers the chain head before it: these
are the signed checkpoints that bundles and verifiers anchor to.  Records after
the last commit record were never committed and are cut off on recovery.

Record (keys sorted, no spaces, UTF-8)::

    {"actor", "data", "prev", "seq", "time", "type"}  -> hash = sha256(that JSON)
    the line written is that JSON with "hash" added.

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
from typing import Any

GENESIS = "0" * 64
CHECKPOINT_CONTEXT = b"archiver/checkpoint/v1\x00"


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def record_hash(rec: dict[str, Any]) -> str:
    body = {k: rec[k] for k in ("actor", "data", "prev", "seq", "time", "type")}
    return hashlib.sha256(canonical(body)).hexdigest()


def checkpoint_message(archive_id: str, seq: int, head_hash: str, segment: int, end: int) -> bytes:
    """What a commit record's signature covers: the archive, the chain head before it,
    and the committed segment end the commit record itself names."""
    return CHECKPOINT_CONTEXT + f"{archive_id}\x00{seq}\x00{head_hash}\x00{segment}\x00{end}".encode()


class JournalError(Exception):
    """The journal is damaged at a given line; ``torn`` when it is an unfinished last line."""

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
    record: dict[str, Any]
    offset: int
    end: int


class Journal:
    """Append and read the journal file; writes happen only under the archive lock."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def lines(self, start: int = 0) -> Iterator[JournalLine]:
        """Raw records from byte offset ``start``; a torn last line raises JournalError."""
        with open(self.path, "rb") as fh:
            fh.seek(start)
            pos = start
            for raw in fh:
                end = pos + len(raw)
                if not raw.endswith(b"\n"):
                    raise JournalError(f"journal line at byte {pos} is incomplete", torn=True)
                try:
                    rec = json.loads(raw)
                except ValueError:
                    raise JournalError(f"journal line at byte {pos} is not valid JSON") from None
                if not isinstance(rec, dict):
                    raise JournalError(f"journal line at byte {pos} is not a record")
                yield JournalLine(rec, pos, end)
                pos = end

    def committed_tail(self, head: Head) -> tuple[list[dict[str, Any]], Head, int]:
        """Records after ``head`` up to the last commit record.

        Returns the committed records (in order, commit records included), the new
        head, and the byte offset where the uncommitted tail (if any) begins.
        Damage (a torn or unparsable line, a broken link) ends the scan there: what
        follows it was never acknowledged as committed.
        """
        committed: list[dict[str, Any]] = []
        pending: list[dict[str, Any]] = []
        new_head = head
        prev, seq = head.hash, head.seq
        try:
            for line in self.lines(head.offset):
                rec = line.record
                if rec.get("seq") != seq or rec.get("prev") != prev or rec.get("hash") != record_hash(rec):
                    break
                pending.append(rec)
                prev, seq = rec["hash"], seq + 1
                if rec.get("type") == "commit":
                    committed.extend(pending)
                    pending = []
                    new_head = Head(seq, prev, line.end)
        except (JournalError, KeyError):
            pass
        return committed, new_head, new_head.offset

    def append(self, records: list[dict[str, Any]]) -> int:
        """Write records and fsync; returns the new file size."""
        data = b"".join(canonical(r) + b"\n" for r in records)
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
            from archiver.store.segments import fsync_dir

            fsync_dir(self.path.parent)
        return size

    def has_complete_commit_after(self, offset: int) -> bool:
        """True when a complete, parsable commit record lies after ``offset`` (then it is damage, not a torn write)."""
        with open(self.path, "rb") as fh:
            fh.seek(offset)
            for raw in fh:
                if not raw.endswith(b"\n"):
                    return False
                try:
                    rec = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(rec, dict) and rec.get("type") == "commit":
                    return True
        return False

    def truncate(self, offset: int) -> None:
        with open(self.path, "r+b") as fh:
            fh.truncate(offset)
            os.fsync(fh.fileno())


def make_record(*, seq: int, prev: str, time: str, type: str, actor: str, data: dict[str, Any]) -> dict[str, Any]:
    rec: dict[str, Any] = {"actor": actor, "data": data, "prev": prev, "seq": seq, "time": time, "type": type}
    rec["hash"] = record_hash(rec)
    return rec
