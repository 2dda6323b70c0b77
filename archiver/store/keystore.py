"""The keystore: the one mutable, non-derivable file of the archive.

It maps each object id to its wrapped data key.  Disposal deletes the row, with
SQLite's secure_delete overwriting the freed page and a WAL checkpoint truncating
the write-ahead log, so the key is gone from the disk and the object's ciphertext
in the append-only segment can never be decrypted again.  It is kept apart from
the catalog precisely because the catalog must be rebuildable from the journal,
and nothing that can be rebuilt from an append-only file can be forgotten.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from archiver.store.catalog import connect


class Keystore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn = connect(path)
        self.conn.execute("CREATE TABLE IF NOT EXISTS keys(id TEXT PRIMARY KEY, wrapped BLOB NOT NULL)")

    def close(self) -> None:
        self.conn.close()

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            c.executemany("INSERT OR REPLACE INTO keys(id, wrapped) VALUES (?, ?)", items)
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise

    def get(self, oid: str) -> bytes | None:
        row = self.conn.execute("SELECT wrapped FROM keys WHERE id=?", (oid,)).fetchone()
        return None if row is None else bytes(row[0])

    def ids(self) -> Iterator[str]:
        for (oid,) in self.conn.execute("SELECT id FROM keys ORDER BY id"):
            yield oid

    def destroy(self, ids: Iterable[str]) -> int:
        """Delete wrapped keys for good (crypto-shredding) and flush the WAL."""
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            n = c.executemany("DELETE FROM keys WHERE id=?", [(i,) for i in ids]).rowcount
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        # The deleted keys must leave the WAL too; a reader can keep the checkpoint busy for a moment.
        for _ in range(100):
            busy = c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            if not busy:
                break
            time.sleep(0.05)
        return int(n)
