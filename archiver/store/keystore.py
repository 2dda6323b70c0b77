"""The keystore: the one mutable, non-derivable file of the archive.

It maps each object id to its wrapped data key.  Disposal deletes the row, with
SQLite's secure_delete overwriting the freed page and a WAL checkpoint truncating
the write-ahead log, so the key is gone from the disk and the object's ciphertext
in the append-only segment can never be decrypted again.  It is kept apart from
the catalog precisely because the catalog must be rebuildable from the journal,
and nothing that can be rebuilt from an append-only file can be forgotten.

A keystore holds its ids as 32 raw bytes in a WITHOUT ROWID table (each id stored
once, about half the size of a table keyed by the hex text).  Keystores written
before that keep their layout, ``keys(id TEXT PRIMARY KEY, wrapped BLOB)``, and are
used as they are: they cannot be rebuilt, so they are never rewritten to convert them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from archiver.store.catalog import connect, in_chunks, reporting_damage, rollback

#: the layout of new keystores
SCHEMA = "CREATE TABLE IF NOT EXISTS keys(id BLOB PRIMARY KEY, wrapped BLOB NOT NULL) WITHOUT ROWID"


def _raw_id(oid: str) -> bytes | None:
    """An object id (lowercase hex) as bytes; None for anything else, which no stored id can equal."""
    try:
        raw = bytes.fromhex(oid)
    except (TypeError, ValueError):
        return None
    return raw if raw.hex() == oid else None


class Keystore:
    def __init__(self, path: Path) -> None:
        self.path = path
        with reporting_damage(
            f"The keystore {path} is damaged ({{exc}}): restore it from a backup. It holds every "
            "message's data key; without it no message can be read."
        ):
            self._open(path)

    def _open(self, path: Path) -> None:
        self.conn = connect(path)
        id_type = self._id_type()
        if id_type is None:
            self.conn.execute(SCHEMA)
            id_type = self._id_type()
        # TEXT: a keystore of the first layout, with hex text ids.
        self.hex_ids = (id_type or "").upper() == "TEXT"

    def _id_type(self) -> str | None:
        """The declared type of ``keys.id``, None when there is no ``keys`` table yet."""
        for row in self.conn.execute("PRAGMA table_info(keys)"):
            if row[1] == "id":
                return str(row[2])
        return None

    def _key(self, oid: str) -> str | bytes | None:
        return oid if self.hex_ids else _raw_id(oid)

    def close(self) -> None:
        self.conn.close()

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        rows = []
        for oid, wrapped in items:
            key = self._key(oid)
            if key is None:
                raise ValueError(f"{oid!r} is not an object id (lowercase hex)")
            rows.append((key, wrapped))
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            c.executemany("INSERT OR REPLACE INTO keys(id, wrapped) VALUES (?, ?)", rows)
            c.execute("COMMIT")
        except BaseException:
            rollback(c)
            raise

    def get(self, oid: str) -> bytes | None:
        key = self._key(oid)
        if key is None:
            return None
        row = self.conn.execute("SELECT CAST(wrapped AS BLOB) FROM keys WHERE id=?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def get_many(self, ids: Iterable[str]) -> dict[str, bytes]:
        """The wrapped keys of those of ``ids`` that have one (one query per 500 ids)."""
        by_key = {k: oid for oid in ids if (k := self._key(oid)) is not None}
        keys = list(by_key)
        out: dict[str, bytes] = {}
        for chunk, marks in in_chunks(keys):
            rows = self.conn.execute(f"SELECT id, CAST(wrapped AS BLOB) FROM keys WHERE id IN ({marks})", chunk)
            for key, wrapped in rows:
                out[by_key[key]] = bytes(wrapped)
        return out

    def ids(self) -> Iterator[str]:
        """Every key's object id.  Read as bytes whatever the stored type, so a row of the
        wrong type (an edited keystore) shows up as a key of no object instead of an error."""
        for (oid,) in self.conn.execute("SELECT CAST(id AS BLOB) FROM keys ORDER BY id"):
            raw = bytes(oid)
            yield raw.decode("ascii", "replace") if self.hex_ids else raw.hex()

    def destroy(self, ids: Iterable[str]) -> int:
        """Delete wrapped keys for good (crypto-shredding) and flush the WAL."""
        keys = [(k,) for k in map(self._key, ids) if k is not None]
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            n = c.executemany("DELETE FROM keys WHERE id=?", keys).rowcount
            c.execute("COMMIT")
        except BaseException:
            rollback(c)
            raise
        # The deleted keys must leave the WAL too; a reader can keep the checkpoint busy for a moment.
        for _ in range(100):
            busy = c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            if not busy:
                break
            time.sleep(0.05)
        return int(n)
