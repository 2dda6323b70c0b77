"""The catalog: an SQLite database of what the archive holds.

Everything in it except the ``messages`` metadata is derived from the journal by
:func:`apply_records`: replaying the journal into an empty catalog rebuilds it, and
that is exactly what recovery after a crash and ``verify`` do.  ``messages`` holds
metadata parsed from the objects themselves (subject, addresses, dates), which a
rebuild recomputes by decrypting and parsing.

WAL mode lets readers (search, show, the web server) run while a writer commits;
``secure_delete`` overwrites deleted rows so disposed metadata does not linger.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archiver.model import ParsedMessage
from archiver.store.journal import GENESIS, Head
from archiver.store.segments import HEADER

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS objects(
    id TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    segment INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    length INTEGER NOT NULL,
    record_sha256 TEXT NOT NULL,
    ingest_seq INTEGER NOT NULL,
    ingested_at TEXT NOT NULL,
    disposed_at TEXT,
    disposed_rule TEXT,
    disposed_seq INTEGER
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tags(
    id TEXT PRIMARY KEY,
    client TEXT NOT NULL,
    matters TEXT NOT NULL,
    seq INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS matters(id TEXT NOT NULL, matter TEXT NOT NULL, PRIMARY KEY(id, matter)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS matters_by_matter ON matters(matter);
CREATE TABLE IF NOT EXISTS provenance(
    id TEXT NOT NULL,
    source TEXT NOT NULL,
    account TEXT NOT NULL,
    folder TEXT NOT NULL,
    uid TEXT NOT NULL,
    uidvalidity TEXT NOT NULL,
    internaldate TEXT,
    flags TEXT NOT NULL,
    location TEXT NOT NULL,
    envelope_recipients TEXT NOT NULL,
    fetched_at TEXT,
    seq INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS provenance_by_id ON provenance(id);
CREATE INDEX IF NOT EXISTS provenance_by_source ON provenance(source, account, folder);
CREATE TABLE IF NOT EXISTS checkpoints(key TEXT PRIMARY KEY, value TEXT NOT NULL, seq INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events(seq INTEGER PRIMARY KEY, type TEXT NOT NULL, time TEXT NOT NULL,
    actor TEXT NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS messages(
    id TEXT PRIMARY KEY,
    message_id TEXT NOT NULL,
    in_reply_to TEXT NOT NULL,
    refs TEXT NOT NULL,
    date TEXT NOT NULL,
    date_fallback INTEGER NOT NULL,
    from_addr TEXT NOT NULL,
    from_name TEXT NOT NULL,
    to_addrs TEXT NOT NULL,
    cc_addrs TEXT NOT NULL,
    bcc_addrs TEXT NOT NULL,
    subject TEXT NOT NULL,
    attachments TEXT NOT NULL,
    parse_errors TEXT NOT NULL,
    indexed INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS messages_by_msgid ON messages(message_id);
CREATE INDEX IF NOT EXISTS messages_unindexed ON messages(indexed) WHERE indexed = 0;
CREATE TABLE IF NOT EXISTS holds(
    case_name TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    reason TEXT NOT NULL,
    placed_at TEXT NOT NULL,
    placed_by TEXT NOT NULL,
    placed_seq INTEGER NOT NULL,
    released_at TEXT,
    released_by TEXT,
    released_seq INTEGER
);
CREATE TABLE IF NOT EXISTS matter_events(
    seq INTEGER PRIMARY KEY,
    client TEXT NOT NULL,
    matter TEXT NOT NULL,
    event TEXT NOT NULL,
    date TEXT,
    time TEXT NOT NULL,
    actor TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS matter_events_by_matter ON matter_events(client, matter);
CREATE TABLE IF NOT EXISTS retention_rules(
    seq INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    rules TEXT NOT NULL,
    time TEXT NOT NULL,
    actor TEXT NOT NULL
);
"""

#: journal record types that are kept in the events table (audit trail queries).
EVENT_TYPES = frozenset(
    {
        "init",
        "verify",
        "retag",
        "source_event",
        "import",
        "sync",
        "hold",
        "hold_release",
        "matter_close",
        "matter_reopen",
        "retention_rules",
        "disposition",
        "dispose",
        "search",
        "view",
        "download",
        "login",
        "export",
    }
)


@dataclass(frozen=True, slots=True)
class ObjectRow:
    id: str
    size: int
    segment: int
    offset: int
    length: int
    record_sha256: str
    ingest_seq: int
    ingested_at: str
    disposed_at: str | None
    disposed_rule: str | None


def connect(path: Path, *, durable: bool = True) -> sqlite3.Connection:
    """Open an archive database in WAL mode with secure_delete.

    ``durable=False`` (the catalog) skips the fsync at each commit: everything the catalog
    derives from the journal is re-applied by recovery if a power loss drops its last commits.
    The keystore stays durable: a key must be on disk before the journal commit names it.
    """
    conn = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
    conn.execute("PRAGMA secure_delete=ON")
    conn.execute("PRAGMA foreign_keys=OFF")
    return conn


class Catalog:
    """Typed access to the catalog database."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn = connect(path, durable=False)
        self.conn.executescript(SCHEMA)
        schema = self.get_meta("schema")
        if schema is None:
            self.set_meta("schema", str(SCHEMA_VERSION))
        elif schema != str(SCHEMA_VERSION):
            from archiver.errors import ArchiverError

            raise ArchiverError(
                f"The catalog {path} has schema {schema}; this version uses {SCHEMA_VERSION}. "
                "Move it aside: it is rebuilt from the journal on the next open."
            )

    def close(self) -> None:
        self.conn.close()

    # -- meta and head -------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def head(self) -> Head:
        return Head(
            int(self.get_meta("journal_seq") or 0),
            self.get_meta("journal_hash") or GENESIS,
            int(self.get_meta("journal_offset") or 0),
        )

    def segment_end(self) -> tuple[int, int]:
        return int(self.get_meta("segment") or 0), int(self.get_meta("segment_end") or HEADER.size)

    # -- applying journal records -------------------------------------------
    def apply_records(
        self, records: Iterable[dict[str, Any]], head: Head, metadata: Sequence[tuple[str, ParsedMessage]] = ()
    ) -> None:
        """Apply committed journal records and move the head, in one SQLite transaction
        (with the parsed metadata of new messages, so one commit serves a whole batch)."""
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            if metadata:
                c.executemany(_PUT_METADATA, [metadata_row(oid, p) for oid, p in metadata])
            batch = _Batch(c)
            for rec in records:
                batch.apply(rec)
                if rec["type"] == "commit":
                    self.set_meta("segment", str(rec["data"]["segment"]))
                    self.set_meta("segment_end", str(rec["data"]["end"]))
            batch.flush()
            self.set_meta("journal_seq", str(head.seq))
            self.set_meta("journal_hash", head.hash)
            self.set_meta("journal_offset", str(head.offset))
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise

    # -- reads ---------------------------------------------------------------
    def object(self, oid: str) -> ObjectRow | None:
        row = self.conn.execute(
            "SELECT id,size,segment,offset,length,record_sha256,ingest_seq,ingested_at,disposed_at,disposed_rule"
            " FROM objects WHERE id=?",
            (oid,),
        ).fetchone()
        return None if row is None else ObjectRow(*row)

    def existing(self, ids: Sequence[str]) -> set[str]:
        """Which of these ids are stored (one query per 500 ids instead of one per message)."""
        found: set[str] = set()
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            found.update(r[0] for r in self.conn.execute(f"SELECT id FROM objects WHERE id IN ({marks})", chunk))
        return found

    def has_object(self, oid: str) -> bool:
        return self.conn.execute("SELECT 1 FROM objects WHERE id=?", (oid,)).fetchone() is not None

    def resolve_prefix(self, prefix: str) -> list[str]:
        rows = self.conn.execute(
            "SELECT id FROM objects WHERE id >= ? AND id < ? LIMIT 3", (prefix, prefix + "g")
        ).fetchall()
        return [r[0] for r in rows]

    def live_ids(self) -> Iterator[str]:
        for (oid,) in self.conn.execute("SELECT id FROM objects WHERE disposed_at IS NULL ORDER BY id"):
            yield oid

    def tags(self, oid: str) -> tuple[str, tuple[str, ...]] | None:
        row = self.conn.execute("SELECT client, matters FROM tags WHERE id=?", (oid,)).fetchone()
        return None if row is None else (row[0], tuple(json.loads(row[1])))

    def tags_for_message_ids(self, message_ids: Sequence[str]) -> list[tuple[str, tuple[str, ...]]]:
        """Tags of archived messages with these Message-IDs (thread inheritance)."""
        if not message_ids:
            return []
        marks = ",".join("?" * len(message_ids))
        rows = self.conn.execute(
            f"SELECT t.client, t.matters FROM messages m JOIN tags t ON t.id = m.id WHERE m.message_id IN ({marks})",
            tuple(message_ids),
        ).fetchall()
        return [(r[0], tuple(json.loads(r[1]))) for r in rows]

    def provenance(self, oid: str) -> list[dict[str, Any]]:
        cur = self.conn.execute(
            "SELECT source,account,folder,uid,uidvalidity,internaldate,flags,location,envelope_recipients,"
            "fetched_at FROM provenance WHERE id=? ORDER BY seq",
            (oid,),
        )
        out = []
        for r in cur:
            out.append(
                {
                    "source": r[0],
                    "account": r[1],
                    "folder": r[2],
                    "uid": r[3],
                    "uidvalidity": r[4],
                    "internaldate": r[5],
                    "flags": json.loads(r[6]),
                    "location": r[7],
                    "envelope_recipients": json.loads(r[8]),
                    "fetched_at": r[9],
                }
            )
        return out

    def checkpoints(self) -> dict[str, str]:
        return {k: v for k, v in self.conn.execute("SELECT key, value FROM checkpoints")}

    def message(self, oid: str) -> dict[str, Any] | None:
        self.conn.row_factory = sqlite3.Row
        try:
            row = self.conn.execute("SELECT * FROM messages WHERE id=?", (oid,)).fetchone()
        finally:
            self.conn.row_factory = None
        if row is None:
            return None
        out = dict(row)
        for k in ("refs", "to_addrs", "cc_addrs", "bcc_addrs", "attachments", "parse_errors"):
            out[k] = json.loads(out[k])
        return out

    def missing_metadata(self, limit: int = 1000) -> list[str]:
        rows = self.conn.execute(
            "SELECT o.id FROM objects o LEFT JOIN messages m ON m.id = o.id "
            "WHERE m.id IS NULL AND o.disposed_at IS NULL LIMIT ?",
            (limit,),
        ).fetchall()
        return [r[0] for r in rows]

    def unindexed(self, limit: int = 1000) -> list[str]:
        rows = self.conn.execute(
            "SELECT m.id FROM messages m JOIN objects o ON o.id = m.id "
            "WHERE m.indexed = 0 AND o.disposed_at IS NULL LIMIT ?",
            (limit,),
        ).fetchall()
        return [r[0] for r in rows]

    def mark_indexed(self, ids: Sequence[str], value: int = 1) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.executemany("UPDATE messages SET indexed=? WHERE id=?", [(value, i) for i in ids])
        self.conn.execute("COMMIT")

    def mark_all_unindexed(self) -> None:
        self.conn.execute("UPDATE messages SET indexed=0")

    def put_metadata(self, items: Sequence[tuple[str, ParsedMessage]]) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.executemany(_PUT_METADATA, [metadata_row(oid, p) for oid, p in items])
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    def stats(self) -> dict[str, Any]:
        c = self.conn

        def one(q: str) -> tuple[Any, ...]:
            return tuple(c.execute(q).fetchone())

        live, size = one("SELECT COUNT(*), COALESCE(SUM(size),0) FROM objects WHERE disposed_at IS NULL")
        disposed = one("SELECT COUNT(*) FROM objects WHERE disposed_at IS NOT NULL")[0]
        copies = one("SELECT COUNT(*) FROM provenance")[0]
        errors = one("SELECT COUNT(*) FROM messages WHERE parse_errors != '[]'")[0]
        clients = dict(c.execute("SELECT client, COUNT(*) FROM tags GROUP BY client ORDER BY 2 DESC").fetchall())
        sources = dict(
            c.execute("SELECT source, COUNT(DISTINCT id) FROM provenance GROUP BY source ORDER BY 2 DESC").fetchall()
        )
        dates = one("SELECT MIN(date), MAX(date) FROM messages")
        return {
            "messages": live,
            "raw_bytes": size,
            "disposed": disposed,
            "copies": copies,
            "parse_errors": errors,
            "clients": clients,
            "sources": sources,
            "oldest": dates[0],
            "newest": dates[1],
            "journal_records": self.head().seq,
        }


_PUT_METADATA = (
    "INSERT OR REPLACE INTO messages(id,message_id,in_reply_to,refs,date,date_fallback,from_addr,"
    "from_name,to_addrs,cc_addrs,bcc_addrs,subject,attachments,parse_errors,indexed)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,0)"
)


def _addrs(addrs: Iterable[Any]) -> str:
    return json.dumps([[a.addr, a.name] for a in addrs], ensure_ascii=False)


def metadata_row(oid: str, p: ParsedMessage) -> tuple[Any, ...]:
    first = p.from_[0] if p.from_ else None
    atts = [
        {
            "filename": a.filename,
            "content_type": a.content_type,
            "size": a.size,
            "sha256": a.sha256,
            "error": a.error,
        }
        for a in p.attachments
    ]
    return (
        oid,
        p.message_id,
        p.in_reply_to,
        json.dumps(list(p.references)),
        p.date.isoformat(),
        int(p.date_is_fallback),
        first.addr if first else "",
        first.name if first else "",
        _addrs(p.to),
        _addrs(p.cc),
        _addrs(p.bcc),
        p.subject,
        json.dumps(atts, ensure_ascii=False),
        json.dumps(list(p.parse_errors), ensure_ascii=False),
    )


class _Batch:
    """Applies records like :func:`apply_record`, but the frequent ones (ingest, copy, checkpoint)
    as one ``executemany`` per table: a batch of thousands of messages is a handful of statements.

    Order is kept where it matters: buffered rows are flushed before any other record type.
    """

    def __init__(self, c: sqlite3.Connection) -> None:
        self.c = c
        self.objects: list[tuple[Any, ...]] = []
        self.provenance: list[tuple[Any, ...]] = []
        self.tags: list[tuple[Any, ...]] = []
        self.matters: list[tuple[str, str]] = []
        self.checkpoints: list[tuple[Any, ...]] = []

    def apply(self, rec: dict[str, Any]) -> None:
        t, d, seq = rec["type"], rec["data"], rec["seq"]
        if t == "ingest":
            self.objects.append(
                (d["id"], d["size"], d["segment"], d["offset"], d["length"], d["record_sha256"], seq, rec["time"])
            )
            self.provenance.append(_provenance_row(d["id"], d["prov"], seq))
            self.tags.append((d["id"], d["client"], json.dumps(d["matters"]), seq))
            self.matters.extend((d["id"], m) for m in d["matters"])
        elif t == "copy":
            self.provenance.append(_provenance_row(d["id"], d["prov"], seq))
        elif t == "checkpoint":
            self.checkpoints.append((d["key"], d["value"], seq))
        elif t == "checkpoints":
            self.checkpoints.extend((k, v, seq) for k, v in d["items"].items())
        elif t != "commit":
            self.flush()
            apply_record(self.c, rec)

    def flush(self) -> None:
        c = self.c
        if self.objects:
            c.executemany(
                "INSERT INTO objects(id,size,segment,offset,length,record_sha256,ingest_seq,ingested_at)"
                " VALUES (?,?,?,?,?,?,?,?)",
                self.objects,
            )
            c.executemany("INSERT OR REPLACE INTO tags(id, client, matters, seq) VALUES (?,?,?,?)", self.tags)
            c.executemany("INSERT OR IGNORE INTO matters(id, matter) VALUES (?,?)", self.matters)
        if self.provenance:
            c.executemany(_INSERT_PROVENANCE, self.provenance)
        if self.checkpoints:
            c.executemany("INSERT OR REPLACE INTO checkpoints(key, value, seq) VALUES (?,?,?)", self.checkpoints)
        self.objects, self.provenance, self.tags, self.matters, self.checkpoints = [], [], [], [], []


def apply_record(c: sqlite3.Connection, rec: dict[str, Any]) -> None:
    """Apply one journal record to the derived tables (the single place that defines their meaning)."""
    t, d, seq = rec["type"], rec["data"], rec["seq"]
    if t == "ingest":
        c.execute(
            "INSERT INTO objects(id,size,segment,offset,length,record_sha256,ingest_seq,ingested_at)"
            " VALUES (?,?,?,?,?,?,?,?)",
            (
                d["id"],
                d["size"],
                d["segment"],
                d["offset"],
                d["length"],
                d["record_sha256"],
                seq,
                rec["time"],
            ),
        )
        _apply_provenance(c, d["id"], d["prov"], seq)
        _apply_tags(c, d["id"], d["client"], d["matters"], seq)
    elif t == "copy":
        _apply_provenance(c, d["id"], d["prov"], seq)
    elif t == "tag":
        _apply_tags(c, d["id"], d["client"], d["matters"], seq)
    elif t == "checkpoint":
        c.execute("INSERT OR REPLACE INTO checkpoints(key, value, seq) VALUES (?,?,?)", (d["key"], d["value"], seq))
    elif t == "checkpoints":
        c.executemany(
            "INSERT OR REPLACE INTO checkpoints(key, value, seq) VALUES (?,?,?)",
            [(k, v, seq) for k, v in d["items"].items()],
        )
    elif t == "dispose":
        c.execute(
            "UPDATE objects SET disposed_at=?, disposed_rule=?, disposed_seq=? WHERE id=?",
            (rec["time"], d.get("rule", ""), seq, d["id"]),
        )
        c.execute("DELETE FROM messages WHERE id=?", (d["id"],))
    elif t in _POLICY_RECORDS:
        _apply_policy(c, rec)
    if t in EVENT_TYPES:
        c.execute(
            "INSERT OR REPLACE INTO events(seq, type, time, actor, data) VALUES (?,?,?,?,?)",
            (seq, t, rec["time"], rec["actor"], json.dumps(d, sort_keys=True, ensure_ascii=False)),
        )


_INSERT_PROVENANCE = (
    "INSERT INTO provenance(id,source,account,folder,uid,uidvalidity,internaldate,flags,location,"
    "envelope_recipients,fetched_at,seq) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
)


def _provenance_row(oid: str, p: dict[str, Any], seq: int) -> tuple[Any, ...]:
    return (
        oid,
        p["source"],
        p.get("account", ""),
        p.get("folder", ""),
        p.get("uid", ""),
        p.get("uidvalidity", ""),
        p.get("internaldate"),
        json.dumps(p.get("flags", [])),
        p.get("location", ""),
        json.dumps(p.get("envelope_recipients", [])),
        p.get("fetched_at"),
        seq,
    )


def _apply_provenance(c: sqlite3.Connection, oid: str, p: dict[str, Any], seq: int) -> None:
    c.execute(_INSERT_PROVENANCE, _provenance_row(oid, p, seq))


def _apply_tags(c: sqlite3.Connection, oid: str, client: str, matters: list[str], seq: int) -> None:
    c.execute(
        "INSERT OR REPLACE INTO tags(id, client, matters, seq) VALUES (?,?,?,?)",
        (oid, client, json.dumps(matters), seq),
    )
    c.execute("DELETE FROM matters WHERE id=?", (oid,))
    c.executemany("INSERT OR IGNORE INTO matters(id, matter) VALUES (?,?)", [(oid, m) for m in matters])


#: journal records of the retention and hold policies (archiver/policies), derived into their tables.
_POLICY_RECORDS = frozenset({"hold", "hold_release", "matter_close", "matter_reopen", "retention_rules"})


def _apply_policy(c: sqlite3.Connection, rec: dict[str, Any]) -> None:
    """Holds, matter close/reopen events and journalled retention rules (docs/retention.md)."""
    t, d, seq = rec["type"], rec["data"], rec["seq"]
    if t == "hold":
        c.execute(
            "INSERT OR REPLACE INTO holds(case_name,kind,value,reason,placed_at,placed_by,placed_seq)"
            " VALUES (?,?,?,?,?,?,?)",
            (d["case"], d["kind"], d["value"], d.get("reason", ""), rec["time"], rec["actor"], seq),
        )
    elif t == "hold_release":
        c.execute(
            "UPDATE holds SET released_at=?, released_by=?, released_seq=? WHERE case_name=? AND released_at IS NULL",
            (rec["time"], rec["actor"], seq, d["case"]),
        )
    elif t in ("matter_close", "matter_reopen"):
        c.execute(
            "INSERT OR REPLACE INTO matter_events(seq,client,matter,event,date,time,actor) VALUES (?,?,?,?,?,?,?)",
            (seq, d["client"], d["matter"], t.removeprefix("matter_"), d.get("date"), rec["time"], rec["actor"]),
        )
    elif t == "retention_rules":
        c.execute(
            "INSERT OR REPLACE INTO retention_rules(seq,fingerprint,rules,time,actor) VALUES (?,?,?,?,?)",
            (
                seq,
                d["fingerprint"],
                json.dumps(d["rules"], sort_keys=True, ensure_ascii=False),
                rec["time"],
                rec["actor"],
            ),
        )
