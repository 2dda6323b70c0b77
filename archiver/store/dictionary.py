"""Shared compression dictionaries: the lines that many messages repeat, stored once.

Why: every object is compressed on its own (it has its own data key, so that disposing of
one message destroys exactly that message).  A 3 KB mail compressed alone keeps ~45% of
its bytes, because the header names, relay lines, MIME boilerplate and signatures it
shares with thousands of other messages are new to the compressor each time.  A zstd
dictionary gives the compressor those lines up front (at zstd level 4, ``LEVEL``, for the
CPU time level 6 takes without one).  On the Enron + SpamAssassin benchmark the segments
went from 0.456x to 0.430x of the raw bytes (the first 1,000 messages have no dictionary
yet, and each one is trained on the mailboxes imported so far); one dictionary from a
sample of the whole corpus would give about 0.39x.

What a dictionary may contain, and why (docs/format.md, "Compression dictionaries"):
only whole lines that occur in at least ``MIN_MESSAGES`` distinct messages *and* at least
``MIN_SHARE`` of the training sample, never a ``Subject:`` or ``Thread-Topic:`` line.  A
trained zstd dictionary (``zstandard.train_dictionary``) compresses better (~0.29x) but
copies arbitrary fragments of individual messages; a dictionary outlives the messages it
was built from, so it must hold nothing that disposal is supposed to destroy.  Lines
shared by 1 in 100 messages are boilerplate (headers, disclaimers, list footers), not one
matter's content.

On disk (``dictionaries/NNNNNNNN.dict``)::

    file    = "ARCDICT\\x01" | number (u32 BE) | wrapped data key (61) | payload
    payload = nonce (12) | AES-256-GCM(dictionary content) | tag (16)

sealed like an object (archiver/crypto/aead.py) under the id ``"dictionary" | number``,
so a file cannot be swapped for another number's undetected.  The journal's
``dictionary`` record names its number, size and SHA-256; ``verify`` checks the files
against it.  A dictionary file is never replaced or deleted while the archive exists:
the objects compressed with it need it.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import struct
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import zstandard

from archiver.crypto.aead import WRAPPED_LEN, DecryptError, open_object, seal_object
from archiver.store.segments import fsync_dir

DIR_NAME = "dictionaries"
FILE_MAGIC = b"ARCDICT\x01"
_NUMBER = struct.Struct(">I")
#: the archive trains its first dictionary once it holds this many live messages ...
TRAIN_AT = 1000
#: ... and each next one when it has grown this many times since the last (4k, 16k, 64k, ...).
GROWTH = 4
#: how many stored messages the training reads (evenly spread over the archive).
SAMPLE_SIZE = 1000
#: a line enters the dictionary only if at least this many distinct sampled messages hold it ...
MIN_MESSAGES = 10
#: ... and at least this share of the sample (the larger of the two wins).
MIN_SHARE = 0.01
#: the dictionary's size cap; lines beyond it are the least valuable (count x length).
MAX_BYTES = 64 * 1024
#: the fewest common lines worth a dictionary (a tiny one only costs a decompression context).
MIN_LINES = 4
#: zstd level for objects compressed with a dictionary.  Loading a dictionary into each frame
#: makes level 6 cost ~60 us a message instead of ~36 us without one; level 4 with a dictionary
#: costs what level 6 did without, and its output is 1.6% larger than level 6's.
LEVEL = 4
_PRIVATE_LINE = re.compile(rb"^\s*(subject|thread-topic)\s*:", re.IGNORECASE)


class DictionaryError(Exception):
    """A dictionary file is missing, unreadable or altered."""


@dataclass(frozen=True, slots=True)
class Trained:
    """The content of a new dictionary and how it was chosen (journalled with it)."""

    content: bytes
    lines: int
    sample: int
    min_messages: int

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


def due_at(current: int) -> int:
    """How many live messages the archive needs before dictionary ``current + 1`` is trained."""
    return int(TRAIN_AT * GROWTH**current)


def threshold(sample: int) -> int:
    """How many distinct sampled messages must hold a line (see the module docstring)."""
    return max(MIN_MESSAGES, math.ceil(sample * MIN_SHARE))


def build(samples: Iterable[bytes]) -> Trained | None:
    """The dictionary of the lines common to the samples, or None if too few are common.

    Each line counts once per message.  The most valuable lines (count x length) are put
    last: zstd reaches the end of a dictionary with the shortest offsets.
    """
    counts: Counter[bytes] = Counter()
    n = 0
    for raw in samples:
        n += 1
        counts.update(
            {line for line in raw.splitlines(keepends=True) if len(line) > 2 and not _PRIVATE_LINE.match(line)}
        )
    need = threshold(n)
    common = sorted(
        (line for line, c in counts.items() if c >= need), key=lambda line: (counts[line] * len(line), line)
    )
    chosen: list[bytes] = []
    size = 0
    for line in reversed(common):
        if size + len(line) <= MAX_BYTES:
            chosen.append(line)
            size += len(line)
    if len(chosen) < MIN_LINES:
        return None
    return Trained(b"".join(reversed(chosen)), len(chosen), n, need)


def _object_id(number: int) -> bytes:
    """The associated-data id a dictionary is sealed under (cannot collide with a 32-byte object id)."""
    return b"dictionary" + _NUMBER.pack(number)


def path_of(root: Path, number: int) -> Path:
    return root / f"{number:08d}.dict"


def write(root: Path, kek: bytes, number: int, content: bytes) -> Path:
    """Seal and durably write dictionary ``number``; an existing file is never replaced.

    Objects compressed with a dictionary cannot be read without it, so a number that is
    taken stays taken (FileExistsError), even by a file no journal record names.
    """
    root.mkdir(mode=0o700, exist_ok=True)
    wrapped, payload = seal_object(kek, _object_id(number), content)
    target = path_of(root, number)
    tmp = target.with_suffix(".tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(FILE_MAGIC + _NUMBER.pack(number) + wrapped + payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.link(tmp, target)  # unlike rename, fails if the target exists
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(root)
    return target


def read(root: Path, kek: bytes, number: int) -> bytes:
    """The content of dictionary ``number``; raises DictionaryError if missing or altered."""
    p = path_of(root, number)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise DictionaryError(f"compression dictionary {number} is unreadable ({p}: {exc.strerror})") from None
    head = len(FILE_MAGIC) + _NUMBER.size
    if len(data) < head + WRAPPED_LEN or data[: len(FILE_MAGIC)] != FILE_MAGIC:
        raise DictionaryError(f"compression dictionary {number} ({p}) is not a dictionary file")
    if _NUMBER.unpack_from(data, len(FILE_MAGIC))[0] != number:
        raise DictionaryError(f"compression dictionary {number} ({p}) holds another number")
    wrapped, payload = data[head : head + WRAPPED_LEN], data[head + WRAPPED_LEN :]
    try:
        return open_object(kek, _object_id(number), wrapped, payload)
    except DecryptError:
        raise DictionaryError(f"compression dictionary {number} ({p}) failed decryption: it was altered") from None


def numbers_on_disk(root: Path) -> list[int]:
    """Numbers of the dictionary files present (committed or not)."""
    if not root.is_dir():
        return []
    return sorted(int(p.stem) for p in root.glob("*.dict") if p.stem.isdigit())


class Dictionaries:
    """The dictionaries of one archive, loaded on first use and kept (they never change).

    Used by the writer and by every worker process; each holds its own instance.
    """

    def __init__(self, root: Path, kek: bytes | None) -> None:
        self.root = root
        self._kek = kek
        self._dicts: dict[int, zstandard.ZstdCompressionDict] = {}
        self._compressors: dict[int, zstandard.ZstdCompressor] = {}

    def get(self, number: int) -> zstandard.ZstdCompressionDict:
        d = self._dicts.get(number)
        if d is None:
            if self._kek is None:
                raise DictionaryError("the archive keys are needed to read compression dictionaries")
            content = read(self.root, self._kek, number)
            d = zstandard.ZstdCompressionDict(content, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
            self._dicts[number] = d
        return d

    def compress(self, number: int, raw: bytes) -> bytes:
        c = self._compressors.get(number)
        if c is None:
            c = zstandard.ZstdCompressor(level=LEVEL, dict_data=self.get(number), write_content_size=True)
            self._compressors[number] = c
        return c.compress(raw)

    def decompress(self, number: int, frame: bytes, max_window: int) -> bytes:
        return zstandard.ZstdDecompressor(dict_data=self.get(number), max_window_size=max_window).decompress(frame)
