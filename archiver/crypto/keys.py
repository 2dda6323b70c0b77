"""The archive's keys and the key file that protects them.

``keys/master.json`` holds, in one versioned JSON document:

* the Argon2id parameters and salt used to derive a key from the passphrase;
* the 256-bit master key (the key-encryption key for every data key), sealed
  with AES-256-GCM under the passphrase-derived key;
* the Ed25519 signing key, sealed under the master key;
* the Ed25519 public key in clear, so anyone can check signatures.

The passphrase is the only trust boundary.  A wrong passphrase fails GCM
authentication of the sealed master key, which gives a clear error and writes
nothing.  Keys and passphrases are never logged or put in exceptions.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from archiver.errors import ArchiverError, IntegrityError, PassphraseError

KEYFILE_FORMAT = 1
#: Argon2id cost: 64 MiB, 3 passes, 4 lanes (RFC 9106's second recommended option).
DEFAULT_KDF = {"memory_kib": 65536, "iterations": 3, "lanes": 4}


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def _unb64(s: str) -> bytes:
    return base64.b64decode(s.encode("ascii"), validate=True)


def fingerprint(public_key: bytes) -> str:
    """SHA-256 of the raw Ed25519 public key, hex, in groups of four for reading aloud."""
    digest = hashlib.sha256(public_key).hexdigest()
    return ":".join(digest[i : i + 4] for i in range(0, len(digest), 4))


def verify_signature(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """True when ``signature`` is a valid Ed25519 signature of ``message``."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except Exception:
        return False
    return True


@dataclass(frozen=True)
class Keys:
    """Unlocked keys of one archive (kept in memory only)."""

    archive_id: str
    master: bytes = field(repr=False)
    signing: Ed25519PrivateKey = field(repr=False)
    public_key: bytes

    def sign(self, message: bytes) -> bytes:
        return self.signing.sign(message)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)


def _derive(passphrase: str, salt: bytes, params: dict[str, int]) -> bytes:
    return Argon2id(
        salt=salt,
        length=32,
        iterations=params["iterations"],
        lanes=params["lanes"],
        memory_cost=params["memory_kib"],
    ).derive(passphrase.encode("utf-8"))


def _ad(archive_id: str, what: str) -> bytes:
    return f"archiver/{what}/v{KEYFILE_FORMAT}\x00{archive_id}".encode()


def create_keyfile(path: Path, archive_id: str, passphrase: str) -> Keys:
    """Generate the master and signing keys and write the key file (mode 0600)."""
    if not passphrase:
        raise PassphraseError("The passphrase must not be empty.")
    master = AESGCM.generate_key(bit_length=256)
    signing = Ed25519PrivateKey.generate()
    public = signing.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    salt = os.urandom(16)
    kdf = dict(DEFAULT_KDF)
    pkey = _derive(passphrase, salt, kdf)
    n1, n2 = os.urandom(12), os.urandom(12)
    seed = signing.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    doc = {
        "format": KEYFILE_FORMAT,
        "archive_id": archive_id,
        "kdf": {"name": "argon2id", "salt": _b64(salt), **kdf},
        "master": {
            "nonce": _b64(n1),
            "sealed": _b64(AESGCM(pkey).encrypt(n1, master, _ad(archive_id, "master"))),
        },
        "signing": {
            "algorithm": "ed25519",
            "public": _b64(public),
            "nonce": _b64(n2),
            "sealed": _b64(AESGCM(master).encrypt(n2, seed, _ad(archive_id, "signing"))),
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=2)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return Keys(archive_id=archive_id, master=master, signing=signing, public_key=public)


def read_keyfile(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArchiverError(f"The key file {path} is missing; the archive cannot be opened.") from None
    except (OSError, ValueError) as exc:
        raise IntegrityError(f"The key file {path} is unreadable or corrupt ({exc}): restore it from a backup.") from None
    if not isinstance(doc, dict) or doc.get("format") != KEYFILE_FORMAT:
        raise ArchiverError(f"The key file {path} has an unsupported format.")
    return doc


def public_key_from_keyfile(path: Path) -> bytes:
    """The archive's public key, readable without the passphrase."""
    return _unb64(read_keyfile(path)["signing"]["public"])


def unlock_keyfile(path: Path, passphrase: str) -> Keys:
    """Derive the passphrase key and open the master and signing keys."""
    doc = read_keyfile(path)
    archive_id = str(doc["archive_id"])
    kdf = doc["kdf"]
    params = {k: int(kdf[k]) for k in ("memory_kib", "iterations", "lanes")}
    pkey = _derive(passphrase, _unb64(kdf["salt"]), params)
    try:
        master = AESGCM(pkey).decrypt(
            _unb64(doc["master"]["nonce"]), _unb64(doc["master"]["sealed"]), _ad(archive_id, "master")
        )
    except InvalidTag:
        raise PassphraseError("Wrong passphrase: the archive's master key could not be unlocked.") from None
    sig = doc["signing"]
    try:
        seed = AESGCM(master).decrypt(_unb64(sig["nonce"]), _unb64(sig["sealed"]), _ad(archive_id, "signing"))
    except InvalidTag:
        raise ArchiverError(f"The signing key in {path} has been altered; restore the key file.") from None
    signing = Ed25519PrivateKey.from_private_bytes(seed)
    public = _unb64(sig["public"])
    derived = signing.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    if derived != public:
        raise ArchiverError(f"The public key in {path} does not match the signing key; restore the key file.")
    return Keys(archive_id=archive_id, master=master, signing=signing, public_key=public)
