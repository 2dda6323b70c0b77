"""Turning raw message bytes into a sealed object and back.

Kept free of I/O and state so that parser worker processes can seal objects in
parallel; the single writer then only appends.
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import zstandard

from archiver.crypto.aead import open_object, seal_object
from archiver.model import Compact
from archiver.store.dictionary import Dictionaries, Trained, build
from archiver.store.segments import CODEC_ZSTD, CODEC_ZSTD_DICT, record_digest

ZSTD_LEVEL = 6
#: zstd window cap for decompression: messages are at most a few hundred MB.
MAX_WINDOW = 2**28

_compressor: zstandard.ZstdCompressor | None = None
_DICT_NUMBER = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class SealedObject(Compact):
    id: str
    size: int
    codec: int
    wrapped_key: bytes
    payload: bytes
    #: SHA-256 of the encoded segment record (:func:`record_digest`), for the journal's ingest record.
    record_sha256: str


def message_id_of(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


_MESSAGE_ID = re.compile(r"[0-9a-f]{64}")


def is_message_id(text: str) -> bool:
    """Whether ``text`` has the form of a message id: a SHA-256 as 64 lowercase hex digits."""
    return _MESSAGE_ID.fullmatch(text) is not None


def seal(
    kek: bytes, raw: bytes, oid: str | None = None, dictionaries: Dictionaries | None = None, dictionary: int = 0
) -> SealedObject:
    """Compress (with shared dictionary ``dictionary`` when not 0) and encrypt one message."""
    global _compressor
    oid = oid or message_id_of(raw)
    object_id = bytes.fromhex(oid)
    if dictionary and dictionaries is not None:
        codec = CODEC_ZSTD_DICT
        plain = _DICT_NUMBER.pack(dictionary) + dictionaries.compress(dictionary, raw)
    else:
        if _compressor is None:
            _compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_content_size=True)
        codec = CODEC_ZSTD
        plain = _compressor.compress(raw)
    wrapped, payload = seal_object(kek, object_id, plain)
    return SealedObject(oid, len(raw), codec, wrapped, payload, record_digest(object_id, codec, payload))


def unseal(
    kek: bytes, oid: str, codec: int, wrapped_key: bytes, payload: bytes, dictionaries: Dictionaries | None = None
) -> bytes:
    """Decrypt and decompress one object; raises DecryptError, DictionaryError or ValueError."""
    plain = open_object(kek, bytes.fromhex(oid), wrapped_key, payload)
    if codec == CODEC_ZSTD:
        return zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW).decompress(plain)
    if codec == CODEC_ZSTD_DICT:
        if dictionaries is None or len(plain) < _DICT_NUMBER.size:
            raise ValueError("object compressed with a dictionary, and no dictionary at hand")
        (number,) = _DICT_NUMBER.unpack_from(plain)
        return dictionaries.decompress(number, plain[_DICT_NUMBER.size :], MAX_WINDOW)
    raise ValueError(f"unknown codec {codec}")


def dictionary_from(
    kek: bytes, dictionaries: Dictionaries, sample: Iterable[tuple[str, int, bytes, bytes]]
) -> Trained | None:
    """A compression dictionary built from sealed stored objects (id, codec, wrapped key, payload).

    An object that does not decrypt or hash to its id is left out (verify reports it).
    """

    def raws() -> Iterator[bytes]:
        for oid, codec, wrapped, payload in sample:
            try:
                raw = unseal(kek, oid, codec, wrapped, payload, dictionaries)
            except Exception:
                continue
            if message_id_of(raw) == oid:
                yield raw

    return build(raws())
