"""Keystore: the compact layout (raw-byte ids, WITHOUT ROWID), keystores of the first layout, shredding."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import pytest

from archiver.store.keystore import Keystore


def oid(i: int) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()


def wrapped(i: int) -> bytes:
    return hashlib.sha512(b"key %d" % i).digest()[:61]


def table_sql(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return str(conn.execute("SELECT sql FROM sqlite_master WHERE name='keys'").fetchone()[0])
    finally:
        conn.close()


def exercise(ks: Keystore) -> None:
    """The whole API, on any layout (stored ids besides these are left alone)."""
    before = set(ks.ids())
    ks.put_many([(oid(i), wrapped(i)) for i in range(50)])
    assert ks.get(oid(7)) == wrapped(7)
    assert ks.get(oid(999)) is None
    assert ks.get("not an id") is None and ks.get(oid(7).upper()) is None
    assert list(ks.ids()) == sorted(before | {oid(i) for i in range(50)})
    ks.put_many([(oid(7), wrapped(70))])  # replaced
    assert ks.get(oid(7)) == wrapped(70)
    assert ks.destroy([oid(1), oid(2), oid(999), "zz"]) == 2
    assert ks.get(oid(1)) is None and ks.get(oid(3)) == wrapped(3)
    assert len(list(ks.ids())) == len(before) + 48


def test_new_keystore_stores_ids_as_bytes(tmp_path: Path) -> None:
    ks = Keystore(tmp_path / "keys.sqlite")
    exercise(ks)
    ks.close()
    assert "WITHOUT ROWID" in table_sql(tmp_path / "keys.sqlite")
    conn = sqlite3.connect(tmp_path / "keys.sqlite")
    assert conn.execute("SELECT id FROM keys WHERE id=?", (bytes.fromhex(oid(3)),)).fetchone() is not None
    assert {conn.execute("SELECT typeof(id) FROM keys").fetchone()[0]} == {"blob"}
    conn.close()
    with pytest.raises(ValueError, match="not an object id"):
        Keystore(tmp_path / "keys.sqlite").put_many([("ABC", b"x")])


def test_keystore_of_the_first_layout_is_used_as_it_is(tmp_path: Path) -> None:
    """A keystore cannot be rebuilt: one written before the compact layout keeps its hex-text table."""
    path = tmp_path / "keys.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS keys(id TEXT PRIMARY KEY, wrapped BLOB NOT NULL)")
    conn.executemany("INSERT INTO keys VALUES (?, ?)", [(oid(i), wrapped(i)) for i in range(100, 110)])
    conn.commit()
    conn.close()
    ks = Keystore(path)
    assert ks.hex_ids
    assert ks.get(oid(105)) == wrapped(105)
    exercise(ks)
    assert ks.get(oid(105)) == wrapped(105)
    assert len(list(ks.ids())) == 58
    ks.close()
    assert table_sql(path) == "CREATE TABLE keys(id TEXT PRIMARY KEY, wrapped BLOB NOT NULL)"
    conn = sqlite3.connect(path)
    assert {r[0] for r in conn.execute("SELECT typeof(id) FROM keys")} == {"text"}
    conn.close()


def test_destroyed_keys_leave_the_file_and_the_wal(tmp_path: Path) -> None:
    """In a WITHOUT ROWID table whole rows also sit in interior pages: secure_delete must reach them too."""
    path = tmp_path / "keys.sqlite"
    ks = Keystore(path)
    keys = {oid(i): os.urandom(61) for i in range(3000)}
    items = list(keys.items())
    for start in range(0, len(items), 300):
        ks.put_many(items[start : start + 300])
    gone = [k for i, k in enumerate(sorted(keys)) if i % 3 == 0]
    for start in range(0, len(gone), 100):
        ks.destroy(gone[start : start + 100])
    data = path.read_bytes()
    wal = path.with_name("keys.sqlite-wal")
    data += wal.read_bytes() if wal.exists() else b""
    assert not [k for k in gone if keys[k] in data], "secure_delete must overwrite every destroyed key"
    kept = [k for k in keys if k not in set(gone)]
    assert all(ks.get(k) == keys[k] for k in kept)
    ks.close()
