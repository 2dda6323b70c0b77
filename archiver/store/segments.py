"""Append-only segment files holding the encrypted objects.

Layout (docs/format.md has the normative version)::

    segment  = header record*
    header   = "ARCSEG\\x00\\x01" (8 bytes) | segment number (u64, big-endian)
    record   = "OBJ\\x01" | object id (32 bytes, SHA-256 of the raw message) | codec (u8)
               | reserved (3 zero bytes) | payload length (u64 BE) | payload
    payload  = nonce (12) | AES-256-GCM ciphertext | tag (16)

The plaintext under the GCM layer is a zstd frame (codec 1), or a dictionary number
(u32 BE) and a zstd frame compressed with that dictionary (codec 2, archiver/store/dictionary.py).

A segment is only ever appended to.  Bytes past the end recorded by the last
journal commit are an uncommitted tail and are cut off on recovery.  All I/O of
segment files goes through this class, so that an object-storage backend (S3
with Object Lock) can replace it later behind the same few methods.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archiver.errors import IntegrityError

SEGMENT_MAGIC = b"ARCSEG\x00\x01"
HEADER = struct.Struct(">8sQ")
RECORD_MAGIC = b"OBJ\x01"
RECORD = struct.Struct(">4s32sB3sQ")
CODEC_ZSTD = 1
#: zstd with one of the archive's shared dictionaries (archiver/store/dictionary.py).
CODEC_ZSTD_DICT = 2


class SegmentError(IntegrityError):
    """A segment is missing or malformed at a given place (exit 9, like every integrity failure)."""


@dataclass(frozen=True, slots=True)
class Location:
    """Where a record lives: segment number, byte offset of the record, total record length."""

    segment: int
    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class StoredRecord:
    object_id: bytes
    codec: int
    payload: bytes
    location: Location

    def record_sha256(self) -> str:
        return record_digest(self.object_id, self.codec, self.payload)


def record_digest(object_id: bytes, codec: int, payload: bytes) -> str:
    """SHA-256 over the whole encoded record; the journal stores it for light verification."""
    h = hashlib.sha256(RECORD.pack(RECORD_MAGIC, object_id, codec, b"\0\0\0", len(payload)))
    h.update(payload)
    return h.hexdigest()


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SegmentStore:
    """The folder of segment files.  Writes happen only under the archive lock."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self._dirty: set[int] = set()
        self._created = False
        # The segment being appended to, its size and an open handle: valid only while the
        # archive lock is held (another process may append between transactions).
        self._active: tuple[int, int] | None = None
        self._fh: Any = None
        self._fh_number = -1

    def path(self, number: int) -> Path:
        return self.root / f"{number:08d}.seg"

    def numbers(self) -> list[int]:
        out = []
        for p in self.root.glob("*.seg"):
            try:
                out.append(int(p.stem))
            except ValueError:
                continue
        return sorted(out)

    def active(self) -> tuple[int, int]:
        """The segment being appended to and its current size (creating the first if none)."""
        nums = self.numbers()
        if not nums:
            return self._create(0), HEADER.size
        n = nums[-1]
        return n, self.path(n).stat().st_size

    def _create(self, number: int) -> int:
        p = self.path(number)
        with open(p, "xb") as fh:
            fh.write(HEADER.pack(SEGMENT_MAGIC, number))
        self._dirty.add(number)
        self._created = True
        return number

    def position(self) -> tuple[int, int]:
        """The current append position (cached while a transaction appends)."""
        if self._active is None:
            self._active = self.active()
        return self._active

    def forget(self) -> None:
        """Drop the cached append position (at the start of every transaction)."""
        self._close_handle()
        self._active = None

    def _close_handle(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def append(self, object_id: bytes, codec: int, payload: bytes) -> Location:
        """Append one record (not yet durable: call :meth:`sync`)."""
        if self._active is None:
            self._active = self.active()
        n, size = self._active
        if size > HEADER.size and size + RECORD.size + len(payload) > self.max_bytes:
            self._close_handle()
            n, size = self._create(n + 1), HEADER.size
        if self._fh is None or self._fh_number != n:
            self._close_handle()
            self._fh = open(self.path(n), "ab")  # noqa: SIM115 - kept open across appends
            self._fh_number = n
        self._fh.write(RECORD.pack(RECORD_MAGIC, object_id, codec, b"\0\0\0", len(payload)))
        self._fh.write(payload)
        self._dirty.add(n)
        self._active = (n, size + RECORD.size + len(payload))
        return Location(n, size, RECORD.size + len(payload))

    def sync(self) -> None:
        """fsync every segment written since the last sync, and the folder if a file was created."""
        if self._fh is not None:
            self._fh.flush()
        for n in sorted(self._dirty):
            fd = os.open(self.path(n), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        if self._created:
            fsync_dir(self.root)
        self._dirty.clear()
        self._created = False

    def read(self, loc: Location) -> StoredRecord:
        try:
            with open(self.path(loc.segment), "rb") as fh:
                fh.seek(loc.offset)
                data = fh.read(loc.length)
        except FileNotFoundError:
            raise SegmentError(
                f"segment {loc.segment} is missing: restore it from a backup (`archiver verify` lists what it held)"
            ) from None
        except OSError as exc:
            raise SegmentError(f"segment {loc.segment} cannot be read ({exc.strerror or exc})") from None
        return self._decode(data, loc)

    @staticmethod
    def _decode(data: bytes, loc: Location) -> StoredRecord:
        if len(data) < RECORD.size:
            raise SegmentError(f"segment {loc.segment} is truncated at offset {loc.offset}")
        magic, oid, codec, _res, plen = RECORD.unpack_from(data)
        if magic != RECORD_MAGIC:
            raise SegmentError(f"segment {loc.segment} has no record at offset {loc.offset}")
        if RECORD.size + plen != len(data):
            raise SegmentError(f"segment {loc.segment} record at offset {loc.offset} has a wrong length")
        return StoredRecord(oid, codec, data[RECORD.size :], loc)

    def scan(self, number: int, end: int | None = None) -> Iterator[StoredRecord]:
        """Every record of one segment up to ``end`` (its committed size); raises SegmentError on damage."""
        p = self.path(number)
        with open(p, "rb") as fh:
            head = fh.read(HEADER.size)
            if len(head) != HEADER.size or HEADER.unpack(head) != (SEGMENT_MAGIC, number):
                raise SegmentError(f"segment {number} has a bad header")
            pos = HEADER.size
            limit = end if end is not None else os.fstat(fh.fileno()).st_size
            while pos < limit:
                rh = fh.read(RECORD.size)
                if len(rh) < RECORD.size:
                    raise SegmentError(f"segment {number} is truncated at offset {pos}")
                magic, oid, codec, _res, plen = RECORD.unpack(rh)
                if magic != RECORD_MAGIC or pos + RECORD.size + plen > limit:
                    raise SegmentError(f"segment {number} is damaged at offset {pos}")
                payload = fh.read(plen)
                yield StoredRecord(oid, codec, payload, Location(number, pos, RECORD.size + plen))
                pos += RECORD.size + plen

    def is_clean(self, number: int, end: int) -> bool:
        """True when nothing lies past the committed end (segment ``number`` is ``end`` bytes, no later one)."""
        try:
            size = self.path(number).stat().st_size
        except FileNotFoundError:
            return False
        return size == end and not self.path(number + 1).exists()

    def ids_after(self, number: int, end: int) -> list[str]:
        """Ids of the (possibly torn) records past the committed end: the tail recovery cuts."""
        out: list[str] = []
        for n in self.numbers():
            if n < number:
                continue
            p = self.path(n)
            start = end if n == number else HEADER.size
            with open(p, "rb") as fh:
                fh.seek(start)
                while True:
                    head = fh.read(RECORD.size)
                    if len(head) < 4 + 32 or head[:4] != RECORD_MAGIC:
                        break
                    out.append(head[4:36].hex())
                    if len(head) < RECORD.size:
                        break
                    fh.seek(RECORD.unpack(head)[4], os.SEEK_CUR)
        return out

    def truncate_to(self, number: int, end: int) -> list[str]:
        """Cut the uncommitted tail: segment ``number`` back to ``end``, later segments removed."""
        self.forget()
        actions = []
        for n in self.numbers():
            p = self.path(n)
            if n > number:
                p.unlink()
                actions.append(f"removed uncommitted segment {n}")
            elif n == number and p.stat().st_size > end:
                with open(p, "r+b") as fh:
                    fh.truncate(end)
                    os.fsync(fh.fileno())
                actions.append(f"cut segment {n} back to {end} bytes")
        if actions:
            fsync_dir(self.root)
        return actions
