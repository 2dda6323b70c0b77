"""Per-object envelope encryption.

Each stored object gets its own random 256-bit data key.  The object is sealed
with AES-256-GCM under that data key, with the object id and format version as
associated data, so a ciphertext cannot be moved to another id undetected.  The
data key is itself sealed ("wrapped") under the archive's key-encryption key,
again bound to the object id.  Destroying the wrapped key makes the object's
ciphertext undecryptable forever: that is how disposal works in an append-only
store (crypto-shredding, docs/format.md).
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

OBJECT_FORMAT = 1
NONCE_LEN = 12
TAG_LEN = 16
KEY_LEN = 32
WRAPPED_LEN = 1 + NONCE_LEN + KEY_LEN + TAG_LEN

_OBJECT_AD = b"archiver/object/v1\x00"
_WRAP_AD = b"archiver/datakey/v1\x00"


class DecryptError(Exception):
    """A ciphertext failed authentication: wrong key, wrong id, or altered bytes."""


def seal_object(kek: bytes, object_id: bytes, plaintext: bytes) -> tuple[bytes, bytes]:
    """Encrypt ``plaintext`` under a fresh data key.

    Returns ``(wrapped_key, payload)``: ``payload`` is ``nonce || ciphertext || tag``
    and ``wrapped_key`` is ``version || nonce || E_kek(data_key) || tag``.
    """
    data_key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(NONCE_LEN)
    payload = nonce + AESGCM(data_key).encrypt(nonce, plaintext, _OBJECT_AD + object_id)
    return wrap_key(kek, object_id, data_key), payload


def open_object(kek: bytes, object_id: bytes, wrapped_key: bytes, payload: bytes) -> bytes:
    """Decrypt a payload made by :func:`seal_object`; raises DecryptError if anything was altered."""
    data_key = unwrap_key(kek, object_id, wrapped_key)
    nonce, body = payload[:NONCE_LEN], payload[NONCE_LEN:]
    try:
        return AESGCM(data_key).decrypt(nonce, body, _OBJECT_AD + object_id)
    except InvalidTag:
        raise DecryptError("object ciphertext failed authentication") from None


def wrap_key(kek: bytes, object_id: bytes, data_key: bytes) -> bytes:
    nonce = os.urandom(NONCE_LEN)
    sealed = AESGCM(kek).encrypt(nonce, data_key, _WRAP_AD + object_id)
    return bytes([OBJECT_FORMAT]) + nonce + sealed


def unwrap_key(kek: bytes, object_id: bytes, wrapped: bytes) -> bytes:
    if len(wrapped) != WRAPPED_LEN or wrapped[0] != OBJECT_FORMAT:
        raise DecryptError("wrapped data key has an unknown format")
    nonce, sealed = wrapped[1 : 1 + NONCE_LEN], wrapped[1 + NONCE_LEN :]
    try:
        return AESGCM(kek).decrypt(nonce, sealed, _WRAP_AD + object_id)
    except InvalidTag:
        raise DecryptError("wrapped data key failed authentication") from None
