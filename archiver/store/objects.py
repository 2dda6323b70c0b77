"""Turning raw message bytes into a sealed object and back.

Kept free of I/O and state so that parser worker processes can seal objects in
parallel; the single writer then only appends.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import zstandard

from archiver.crypto.aead import open_object, seal_object
from archiver.store.segments import CODEC_ZSTD, record_digest

ZSTD_LEVEL = 6
#: zstd window cap for decompression: messages are at most a few hundred MB.
MAX_WINDOW = 2**28

_compressor: zstandard.ZstdCompressor | None = None


@dataclass(frozen=True, slots=True)
class SealedObject:
    id: str
    size: int
    codec: int
    wrapped_key: bytes
    payload: bytes
    #: SHA-256 of the encoded segment record (:func:`record_digest`), for the journal's ingest record.
    record_sha256: str


def message_id_of(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def seal(kek: bytes, raw: bytes, oid: str | None = None) -> SealedObject:
    global _compressor
    if _compressor is None:
        _compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_content_size=True)
    oid = oid or message_id_of(raw)
    object_id = bytes.fromhex(oid)
    wrapped, payload = seal_object(kek, object_id, _compressor.compress(raw))
    return SealedObject(oid, len(raw), CODEC_ZSTD, wrapped, payload, record_digest(object_id, CODEC_ZSTD, payload))


def unseal(kek: bytes, oid: str, codec: int, wrapped_key: bytes, payload: bytes) -> bytes:
    plain = open_object(kek, bytes.fromhex(oid), wrapped_key, payload)
    if codec != CODEC_ZSTD:
        raise ValueError(f"unknown codec {codec}")
    return zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW).decompress(plain)
