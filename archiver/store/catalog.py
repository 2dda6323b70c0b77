"""The catalog: an SQLite database of what the archive holds.

Everything in it except the ``messages`` metadata is derived from the journal by
:func:`apply_records`: replaying the journal into an empty catalog rebuilds it, and
that is exactly what recovery after a crash and ``verify`` do.  ``messages`` holds
metadata parsed from the objects themselves (subject, addresses, dates), which a
rebuild recomputes by decrypting and parsing.

The rows are stored compactly, and read through views.  ``object_rows`` holds an
object's 64-digit hex id (the one indexed copy: everything looks objects up by it);
``copies`` (provenance), ``matter_rows`` and ``message_rows`` refer to the object by
its ``ingest_seq``, the sequence number of its ingest record and the rowid of
``object_rows``, a few bytes instead of 64.  Timestamps in the canonical form are
stored as integers, digests as bytes, empty JSON lists as NULL, and the folder part
of a provenance location once in ``dirs``.  The views ``objects``, ``tags``,
``matters``, ``provenance`` and ``messages`` have the columns and values of the
tables they replace (hex ids, timestamps as text): readers query them, and
``verify`` compares them with the catalog it rebuilds from the journal.

WAL mode lets readers (search, show, the web server) run while a writer commits;
``secure_delete`` overwrites deleted rows so disposed metadata does not linger.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import structlog

from archiver.errors import IntegrityError
from archiver.model import HIT_RECIPIENTS, NO_DATE, Address, HitDisplay, ParsedMessage
from archiver.store.journal import GENESIS, Head
from archiver.store.segments import HEADER

SCHEMA_VERSION = 2

_log = structlog.get_logger("archiver.catalog")
_T = TypeVar("_T")


def _time(col: str) -> str:
    """SQL giving back a stored timestamp as its text (see :func:`pack_time`)."""
    return (
        f"CASE WHEN typeof({col}) = 'integer' THEN strftime('%Y-%m-%dT%H:%M:%S', {col} / 1000000, 'unixepoch')"
        f" || printf('.%06dZ', {col} % 1000000) ELSE {col} END"
    )


#: a message's direct parent: its In-Reply-To, else the last of its References (RFC 5322 3.6.4).
#: Indexed (for replies only) so that a parent arriving in a later import finds the replies
#: stored before it (threads.LateParents); a query must spell the expression the same way.
#: ``json_valid`` keeps a damaged ``refs`` value from failing the row's INSERT.
PARENT_SQL = (
    "(CASE WHEN in_reply_to != '' THEN in_reply_to WHEN json_valid(refs) THEN json_extract(refs, '$[#-1]') END)"
)
REPLY_SQL = "(in_reply_to != '' OR refs IS NOT NULL)"

# Stored rows and the views over them (see the module docstring).  ``object_rows`` are appended in
# ``ingest_seq`` order; its ``client``, ``matters`` and ``tag_seq`` (NULL: set by the ingest) are the tags.
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS object_rows(
    ingest_seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    segment INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    length INTEGER NOT NULL,
    record_sha256 BLOB NOT NULL,
    ingested_at NOT NULL,
    disposed_at TEXT,
    disposed_rule TEXT,
    disposed_seq INTEGER,
    client TEXT NOT NULL,
    matters TEXT,
    tag_seq INTEGER
);
CREATE VIEW IF NOT EXISTS objects AS SELECT id, size, segment, offset, length,
    CASE WHEN typeof(record_sha256) = 'blob' THEN lower(hex(record_sha256)) ELSE record_sha256 END AS record_sha256,
    ingest_seq, {_time("ingested_at")} AS ingested_at, disposed_at, disposed_rule, disposed_seq
    FROM object_rows;
CREATE VIEW IF NOT EXISTS tags AS SELECT id, client, COALESCE(matters, '[]') AS matters,
    COALESCE(tag_seq, ingest_seq) AS seq FROM object_rows;
CREATE TABLE IF NOT EXISTS matter_rows(matter TEXT NOT NULL, obj INTEGER NOT NULL, PRIMARY KEY(matter, obj)) WITHOUT ROWID;
CREATE VIEW IF NOT EXISTS matters AS SELECT o.id AS id, m.matter AS matter
    FROM matter_rows m JOIN object_rows o ON o.ingest_seq = m.obj;
CREATE TABLE IF NOT EXISTS dirs(n INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS copies(
    obj INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    source TEXT NOT NULL,
    account TEXT NOT NULL,
    folder TEXT NOT NULL,
    uid TEXT NOT NULL,
    uidvalidity TEXT NOT NULL,
    internaldate,
    flags TEXT,
    dir INTEGER,
    location TEXT NOT NULL,
    envelope_recipients TEXT,
    fetched_at,
    PRIMARY KEY(obj, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS copies_by_source ON copies(source);
CREATE VIEW IF NOT EXISTS provenance AS SELECT o.id AS id, c.source AS source, c.account AS account,
    c.folder AS folder, c.uid AS uid, c.uidvalidity AS uidvalidity, {_time("c.internaldate")} AS internaldate,
    COALESCE(c.flags, '[]') AS flags,
    CASE WHEN c.dir IS NULL THEN c.location ELSE (SELECT path FROM dirs WHERE n = c.dir) || '/' || c.location END
        AS location,
    COALESCE(c.envelope_recipients, '[]') AS envelope_recipients, {_time("c.fetched_at")} AS fetched_at,
    c.seq AS seq
    FROM copies c JOIN object_rows o ON o.ingest_seq = c.obj;
CREATE TABLE IF NOT EXISTS checkpoints(key TEXT PRIMARY KEY, value TEXT NOT NULL, seq INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events(seq INTEGER PRIMARY KEY, type TEXT NOT NULL, time TEXT NOT NULL,
    actor TEXT NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS message_rows(
    obj INTEGER PRIMARY KEY,
    message_id TEXT NOT NULL,
    in_reply_to TEXT NOT NULL,
    refs TEXT,
    date TEXT NOT NULL,
    date_fallback INTEGER NOT NULL,
    from_addr TEXT NOT NULL,
    from_name TEXT NOT NULL,
    to_addrs TEXT,
    cc_addrs TEXT,
    bcc_addrs TEXT,
    subject TEXT NOT NULL,
    attachments TEXT,
    parse_errors TEXT,
    indexed INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS message_rows_by_msgid ON message_rows(message_id);
CREATE INDEX IF NOT EXISTS message_rows_unindexed ON message_rows(indexed) WHERE indexed = 0;
CREATE INDEX IF NOT EXISTS message_rows_by_parent ON message_rows({PARENT_SQL}) WHERE {REPLY_SQL};
CREATE VIEW IF NOT EXISTS messages AS SELECT o.id AS id, m.message_id AS message_id, m.in_reply_to AS in_reply_to,
    COALESCE(m.refs, '[]') AS refs, m.date AS date, m.date_fallback AS date_fallback, m.from_addr AS from_addr,
    m.from_name AS from_name, COALESCE(m.to_addrs, '[]') AS to_addrs, COALESCE(m.cc_addrs, '[]') AS cc_addrs,
    COALESCE(m.bcc_addrs, '[]') AS bcc_addrs, m.subject AS subject, COALESCE(m.attachments, '[]') AS attachments,
    COALESCE(m.parse_errors, '[]') AS parse_errors, m.indexed AS indexed
    FROM message_rows m JOIN object_rows o ON o.ingest_seq = m.obj;
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
-- segment records of disposed messages that were stored again later (_forget_disposed):
-- verify still finds their ingest record for them
CREATE TABLE IF NOT EXISTS superseded(
    segment INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    id TEXT NOT NULL,
    record_sha256 BLOB NOT NULL,
    PRIMARY KEY(segment, offset)
) WITHOUT ROWID;
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
        "dictionary",
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


#: catalog ``meta`` key set while disposed messages' keys may still exist (see apply_records).
SHRED_PENDING = "shred_pending"


@contextmanager
def reporting_damage(message: str) -> Iterator[None]:
    """Turn SQLite's "file is not a database" (not a busy or locked one) into an IntegrityError
    saying ``message`` (``{exc}`` stands for SQLite's words): exit 9 and what to do, not a traceback."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        if type(exc) is not sqlite3.DatabaseError and "malformed" not in str(exc):
            raise
        raise IntegrityError(message.format(exc=exc)) from None


def rollback(c: sqlite3.Connection) -> None:
    """Undo the open transaction after a failure.

    Nothing is open when the failure (a Ctrl-C, say) arrived just after COMMIT had finished:
    a bare ROLLBACK would then raise over the original exception.
    """
    if c.in_transaction:
        c.execute("ROLLBACK")


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
        with reporting_damage(
            f"The catalog {path} is damaged ({{exc}}). It holds only derived data: delete "
            f"{path.name} and its -wal/-shm files, and the next command rebuilds it from the journal."
        ):
            self._open(path)

    def _open(self, path: Path) -> None:
        self.conn = connect(path, durable=False)
        schema = self._stored_schema()
        if schema is not None and schema != str(SCHEMA_VERSION):
            # Derived data in an older (or newer) layout: drop it rather than stop the user.  The
            # repository sees an empty catalog and replays the journal into it; the next writer
            # re-parses the messages' metadata.  Deleting (not keeping a copy) because the
            # catalog holds plaintext metadata, disposed messages' included.
            self.conn.close()
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            _log.warning("catalog_rebuilt", path=str(path), old_schema=schema, schema=SCHEMA_VERSION)
            self.conn = connect(path, durable=False)
            schema = None
        self.conn.executescript(SCHEMA)
        if schema is None:
            self.set_meta("schema", str(SCHEMA_VERSION))

    def _stored_schema(self) -> str | None:
        """The schema version of an existing catalog, read before creating anything in it."""
        try:
            return self.get_meta("schema")
        except sqlite3.OperationalError:  # no meta table: a new catalog
            return None

    def close(self) -> None:
        self.conn.close()

    # -- meta and head -------------------------------------------------------
    def disposed_ids(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT id FROM object_rows WHERE disposed_at IS NOT NULL")]

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
        records = list(records)
        c.execute("BEGIN IMMEDIATE")
        try:
            if metadata:
                # Keyed by the ingest record's sequence number, known before the record is applied.
                ingested = {r["data"]["id"]: r["seq"] for r in records if r["type"] == "ingest"}
                _put_metadata(c, metadata, ingested)
            apply_records(c, records)
            if any(r["type"] == "dispose" for r in records):
                # Cleared once the keys are destroyed (repository step 5); a crash in between
                # leaves it set, and recovery destroys them then (Repository.recover).
                self.set_meta(SHRED_PENDING, "1")
            commits = [r for r in records if r["type"] == "commit"]
            if commits:
                self.set_meta("segment", str(commits[-1]["data"]["segment"]))
                self.set_meta("segment_end", str(commits[-1]["data"]["end"]))
            self.set_meta("journal_seq", str(head.seq))
            self.set_meta("journal_hash", head.hash)
            self.set_meta("journal_offset", str(head.offset))
            c.execute("COMMIT")
        except BaseException:
            rollback(c)
            raise

    # -- reads ---------------------------------------------------------------
    def object(self, oid: str) -> ObjectRow | None:
        row = self.conn.execute(f"SELECT {_OBJECT_COLUMNS} FROM objects WHERE id=?", (oid,)).fetchone()
        return None if row is None else ObjectRow(*row)

    def first_copy_times(self, ids: Sequence[str]) -> dict[str, tuple[str | None, str | None]]:
        """(``internaldate``, ``fetched_at``) of the copy each of ``ids`` was stored from."""
        out: dict[str, tuple[str | None, str | None]] = {}
        for chunk, marks in in_chunks(ids):
            for oid, source, fetched in self.conn.execute(
                f"SELECT id, internaldate, fetched_at FROM provenance WHERE id IN ({marks}) ORDER BY id, seq",
                tuple(chunk),
            ):
                out.setdefault(oid, (source, fetched))
        return out

    def objects(self, ids: Sequence[str]) -> dict[str, ObjectRow]:
        """The rows of the stored ids among ``ids``, one query per 500 (batch readers: reindex, retag)."""
        out: dict[str, ObjectRow] = {}
        for chunk, marks in in_chunks(ids):
            for row in self.conn.execute(f"SELECT {_OBJECT_COLUMNS} FROM objects WHERE id IN ({marks})", chunk):
                out[row[0]] = ObjectRow(*row)
        return out

    def existing(self, ids: Sequence[str], *, live: bool = False) -> set[str]:
        """Which of these ids are stored (one query per 500 ids instead of one per message);
        ``live``: only those not disposed of (a disposed message arriving again is stored again)."""
        found: set[str] = set()
        where = " AND disposed_at IS NULL" if live else ""
        for chunk, marks in in_chunks(ids):
            found.update(
                r[0] for r in self.conn.execute(f"SELECT id FROM object_rows WHERE id IN ({marks}){where}", chunk)
            )
        return found

    def already_stored(self, arrivals: Sequence[tuple[str, tuple[str, str, str]]]) -> set[str]:
        """Which of these (id, (source, account, folder)) arrivals are not to be stored again.

        A live object, and a disposed one already seen in that place: re-reading a place (an
        mbox that grew, a folder read again after a UIDVALIDITY change or a delta reset)
        must not bring back what retention disposed of.  A disposed message arriving from a
        new place (a custodian's mailbox under a hold) is stored again.
        """
        ids = list(dict.fromkeys(oid for oid, _place in arrivals))
        known = self.existing(ids, live=True)
        seen: dict[str, set[tuple[str, str, str]]] = {}
        for chunk, marks in in_chunks(ids):
            for oid, source, account, folder in self.conn.execute(
                "SELECT o.id, p.source, p.account, p.folder FROM objects o JOIN provenance p ON p.id = o.id "
                f"WHERE o.id IN ({marks}) AND o.disposed_at IS NOT NULL",
                chunk,
            ):
                seen.setdefault(oid, set()).add((source, account, folder))
        return known | {oid for oid, place in arrivals if place in seen.get(oid, ())}

    def has_object(self, oid: str, *, live: bool = False) -> bool:
        where = " AND disposed_at IS NULL" if live else ""
        return self.conn.execute(f"SELECT 1 FROM object_rows WHERE id=?{where}", (oid,)).fetchone() is not None

    def resolve_prefix(self, prefix: str) -> list[str]:
        rows = self.conn.execute(
            "SELECT id FROM object_rows WHERE id >= ? AND id < ? LIMIT 3", (prefix, prefix + "g")
        ).fetchall()
        return [r[0] for r in rows]

    def live_ids(self) -> Iterator[str]:
        for (oid,) in self.conn.execute("SELECT id FROM object_rows WHERE disposed_at IS NULL ORDER BY id"):
            yield oid

    def live_count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM object_rows WHERE disposed_at IS NULL").fetchone()[0])

    def live_ids_spread(self, n: int) -> list[str]:
        """At most ``n`` live ids spread evenly over the archive in ingest order (a training sample)."""
        total = self.live_count()
        step = max(1, total // max(1, n))
        rows = self.conn.execute(
            "SELECT id FROM (SELECT id, row_number() OVER (ORDER BY ingest_seq) - 1 AS k "
            "FROM object_rows WHERE disposed_at IS NULL) WHERE k % ? = 0 LIMIT ?",
            (step, n),
        )
        return [r[0] for r in rows]

    def newest_dictionary(self) -> int:
        """The number of the newest committed compression dictionary; 0 when there is none."""
        return int(self.get_meta("dictionary") or 0)

    def tags(self, oid: str) -> tuple[str, tuple[str, ...]] | None:
        return self.tags_of([oid]).get(oid)

    def tags_of(self, ids: Sequence[str]) -> dict[str, tuple[str, tuple[str, ...]]]:
        """(client, matters) of each stored id among ``ids`` (one query per 500 ids)."""
        out: dict[str, tuple[str, tuple[str, ...]]] = {}
        for chunk, marks in in_chunks(ids):
            for oid, client, matters in self.conn.execute(
                f"SELECT id, client, matters FROM object_rows WHERE id IN ({marks})", chunk
            ):
                out[oid] = (client, _matters(matters))
        return out

    def live_rows_by_date(self) -> Iterator[int]:
        """Row numbers (ingest_seq) of the live messages with metadata, oldest Date first.

        Row numbers rather than ids so that a caller can hold the order of a whole
        archive in 8 bytes a message (``retag``); :meth:`ids_of_rows` turns them back.
        """
        for (seq,) in self.conn.execute(
            "SELECT o.ingest_seq FROM message_rows m JOIN object_rows o ON o.ingest_seq = m.obj "
            "WHERE o.disposed_at IS NULL ORDER BY m.date, o.id"
        ):
            yield int(seq)

    def ids_of_rows(self, rows: Sequence[int]) -> list[str]:
        """The ids of these row numbers, in the same order (rows no longer present are left out)."""
        found: dict[int, str] = {}
        for chunk, marks in in_chunks(rows):
            found.update(
                self.conn.execute(f"SELECT ingest_seq, id FROM object_rows WHERE ingest_seq IN ({marks})", chunk)
            )
        return [found[r] for r in rows if r in found]

    def tags_by_message_id(self, message_ids: Sequence[str]) -> dict[str, list[tuple[str, str, tuple[str, ...]]]]:
        """Tags of archived messages with these Message-IDs (thread inheritance), by Message-ID:
        each copy as (object id, client, matters), in the order they were stored."""
        found: dict[str, list[tuple[str, str, tuple[str, ...]]]] = {}
        for chunk, marks in in_chunks(message_ids):
            rows = self.conn.execute(
                "SELECT m.message_id, o.id, o.client, o.matters FROM message_rows m JOIN object_rows o"
                f" ON o.ingest_seq = m.obj WHERE m.message_id IN ({marks}) ORDER BY m.obj",
                tuple(chunk),
            )
            for message_id, oid, client, matters in rows:
                found.setdefault(message_id, []).append((oid, client, _matters(matters)))
        return found

    def replies_to(self, message_ids: Sequence[str], *, without_matter: bool = False) -> list[str]:
        """Ids of live messages whose direct parent (:data:`PARENT_SQL`) is one of ``message_ids``
        (``without_matter``: only those with no matter): replies stored before their parent,
        whose tags may change now (thread inheritance)."""
        no_matter = " AND (o.matters IS NULL OR o.matters = '[]')" if without_matter else ""
        out: list[str] = []
        for chunk, marks in in_chunks(message_ids):
            out.extend(
                r[0]
                for r in self.conn.execute(
                    "SELECT o.id FROM message_rows JOIN object_rows o ON o.ingest_seq = message_rows.obj"
                    f" WHERE {PARENT_SQL} IN ({marks}) AND {REPLY_SQL} AND o.disposed_at IS NULL{no_matter}",
                    tuple(chunk),
                )
            )
        return out

    def provenance(self, oid: str) -> list[dict[str, Any]]:
        return self.provenance_of([oid]).get(oid, [])

    def provenance_of(self, ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """Every copy of each of ``ids``, in the order they were recorded (one query per 500 ids)."""
        out: dict[str, list[dict[str, Any]]] = {}
        for chunk, marks in in_chunks(ids):
            cur = self.conn.execute(
                "SELECT id,source,account,folder,uid,uidvalidity,internaldate,flags,location,envelope_recipients,"
                f"fetched_at FROM provenance WHERE id IN ({marks}) ORDER BY id, seq",
                chunk,
            )
            for r in cur:
                out.setdefault(r[0], []).append(
                    {
                        "source": r[1],
                        "account": r[2],
                        "folder": r[3],
                        "uid": r[4],
                        "uidvalidity": r[5],
                        "internaldate": r[6],
                        "flags": json.loads(r[7]),
                        "location": r[8],
                        "envelope_recipients": json.loads(r[9]),
                        "fetched_at": r[10],
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

    def hit_rows(self, ids: Sequence[str]) -> dict[str, HitDisplay]:
        """What search hits show of these messages, one query per 500 ids (a result page is one).

        Ids the catalog does not hold are left out; a message without parsed metadata (not
        re-parsed yet, or disposed) still has its tags.
        """
        out: dict[str, HitDisplay] = {}
        for chunk, marks in in_chunks(ids):
            rows = self.conn.execute(
                "SELECT o.id, o.client, o.matters, m.message_id, m.date, m.from_addr, m.from_name, m.to_addrs,"
                " m.subject FROM object_rows o LEFT JOIN message_rows m ON m.obj = o.ingest_seq"
                f" WHERE o.id IN ({marks})",
                chunk,
            )
            for oid, client, matters, message_id, date, from_addr, from_name, to_addrs, subject in rows:
                to = json.loads(to_addrs)[:HIT_RECIPIENTS] if to_addrs else []
                out[oid] = HitDisplay(
                    message_id=message_id or "",
                    date=_utc(date),
                    from_=_mailbox(from_addr or "", from_name or ""),
                    to=tuple(_mailbox(addr, name) for addr, name in to),
                    subject=subject or "",
                    client=client,
                    matters=_matters(matters),
                )
        return out

    def missing_metadata(self, limit: int = 1000) -> list[str]:
        rows = self.conn.execute(
            "SELECT o.id FROM object_rows o LEFT JOIN message_rows m ON m.obj = o.ingest_seq "
            "WHERE m.obj IS NULL AND o.disposed_at IS NULL LIMIT ?",
            (limit,),
        ).fetchall()
        return [r[0] for r in rows]

    def unindexed(self, limit: int = 1000) -> list[str]:
        rows = self.conn.execute(
            "SELECT o.id FROM message_rows m JOIN object_rows o ON o.ingest_seq = m.obj "
            "WHERE m.indexed = 0 AND o.disposed_at IS NULL LIMIT ?",
            (limit,),
        ).fetchall()
        return [r[0] for r in rows]

    def indexed_live_ids(self) -> Iterator[str]:
        """Live ids the catalog marks as indexed (to check against the index itself)."""
        for (oid,) in self.conn.execute(
            "SELECT o.id FROM message_rows m JOIN object_rows o ON o.ingest_seq = m.obj "
            "WHERE m.indexed = 1 AND o.disposed_at IS NULL"
        ):
            yield oid

    def indexed_count(self, indexed: bool = True) -> int:
        """Live messages the catalog marks as indexed (the index should hold as many), or with
        ``indexed=False`` those not indexed yet (the partial index ``message_rows_unindexed``
        answers that; the flag is written into the SQL, as a bound value would hide it)."""
        return int(
            self.conn.execute(
                "SELECT COUNT(*) FROM message_rows m JOIN object_rows o ON o.ingest_seq = m.obj "
                f"WHERE m.indexed = {int(indexed)} AND o.disposed_at IS NULL"
            ).fetchone()[0]
        )

    def mark_indexed(self, ids: Sequence[str], value: int = 1) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.executemany(
            "UPDATE message_rows SET indexed=? WHERE obj=(SELECT ingest_seq FROM object_rows WHERE id=?)",
            [(value, i) for i in ids],
        )
        self.conn.execute("COMMIT")

    def mark_all_unindexed(self) -> None:
        self.conn.execute("UPDATE message_rows SET indexed=0")

    def put_metadata(self, items: Sequence[tuple[str, ParsedMessage]]) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            _put_metadata(self.conn, items, {})
            self.conn.execute("COMMIT")
        except BaseException:
            rollback(self.conn)
            raise

    def refresh_metadata(self, items: Sequence[tuple[str, ParsedMessage]]) -> None:
        """Rewrite the parsed metadata of messages already described (``reindex``), all of it
        but the date, which a re-parse decides as the ingest did (archive.received_time) but
        which archives written before ``fetched_at`` was the time of reading hold to the
        fraction of a second of that reading: the stored one stays."""
        rows = []
        for oid, p in items:
            values = _stored_metadata(p)
            rows.append((*values[:3], *values[5:], oid))
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.executemany(_REFRESH_METADATA, rows)
            self.conn.execute("COMMIT")
        except BaseException:
            rollback(self.conn)
            raise

    def stats(self) -> dict[str, Any]:
        c = self.conn

        def one(q: str) -> tuple[Any, ...]:
            return tuple(c.execute(q).fetchone())

        live, size = one("SELECT COUNT(*), COALESCE(SUM(size),0) FROM object_rows WHERE disposed_at IS NULL")
        disposed = one("SELECT COUNT(*) FROM object_rows WHERE disposed_at IS NOT NULL")[0]
        copies = one("SELECT COUNT(*) FROM copies")[0]
        errors = one("SELECT COUNT(*) FROM message_rows WHERE parse_errors IS NOT NULL")[0]
        clients = dict(c.execute("SELECT client, COUNT(*) FROM object_rows GROUP BY client ORDER BY 2 DESC").fetchall())
        sources = dict(
            c.execute("SELECT source, COUNT(DISTINCT obj) FROM copies GROUP BY source ORDER BY 2 DESC").fetchall()
        )
        dates = one("SELECT MIN(date), MAX(date) FROM message_rows")
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


# -- compact values ----------------------------------------------------------------------------

_ISO_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")
_EPOCH = datetime(1970, 1, 1)


def pack_time(text: Any) -> Any:
    """A timestamp as stored: microseconds since 1970 when it is in the canonical form ``iso`` writes
    (the views format it back to the very same text), else the text itself (NULL stays NULL)."""
    if text is None:
        return None
    if not isinstance(text, str):
        return str(text)  # never an integer: that would read back as a time
    if not _ISO_TIME.fullmatch(text):
        return text
    try:
        us = (datetime.fromisoformat(text[:-1]) - _EPOCH) // timedelta(microseconds=1)
    except ValueError:
        return text
    return us if us >= 0 else text


def _digest(hexdigest: Any) -> Any:
    """A hex SHA-256 as its 32 bytes (anything else as given; the ``objects`` view shows both as text)."""
    if isinstance(hexdigest, str) and len(hexdigest) == 64:
        try:
            raw = bytes.fromhex(hexdigest)
        except ValueError:
            return hexdigest
        if raw.hex() == hexdigest:
            return raw
    return hexdigest


def _json_list(items: Any) -> str | None:
    """A list as JSON, NULL when empty (the views show NULL as ``[]``)."""
    return None if items == [] else json.dumps(items)


def _compact_list(items: Any) -> str | None:
    """Like :func:`_json_list` without the blanks (``messages`` columns: read as JSON, never compared as text)."""
    return json.dumps(items, ensure_ascii=False, separators=(",", ":")) if items else None


_OBJECT_COLUMNS = "id,size,segment,offset,length,record_sha256,ingest_seq,ingested_at,disposed_at,disposed_rule"


def in_chunks(values: Sequence[_T], size: int = 500) -> Iterator[tuple[Sequence[_T], str]]:
    """``values`` in chunks for ``IN (...)`` lists, each with its placeholders (SQLite allows 999)."""
    for start in range(0, len(values), size):
        chunk = values[start : start + size]
        yield chunk, ",".join("?" * len(chunk))


def _matters(text: str | None) -> tuple[str, ...]:
    return tuple(json.loads(text)) if text else ()


def _utc(iso: str | None) -> datetime:
    """A ``message_rows.date`` (``datetime.isoformat`` of a UTC time) as a datetime; NULL as the epoch."""
    if not iso:
        return NO_DATE
    try:
        value = datetime.fromisoformat(iso)
    except ValueError:
        return NO_DATE
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _mailbox(addr: str, name: str) -> str:
    """A mailbox as shown: "Name <addr>", the bare address, or the name alone when there is no address."""
    return str(Address(addr=addr, name=name)) if addr else name


def _split_location(location: Any) -> tuple[str | None, Any]:
    """(folder part, rest) of a provenance location, split at the last ``/`` before any ``;`` or ``#``
    (IMAP, Graph and EWS locations carry ids after a ``;``, mbox ones an offset after a ``#``, and those
    may hold slashes): messages from one folder share the first part, stored once in ``dirs``."""
    if not isinstance(location, str):
        return None, location
    end = len(location)
    for mark in (";", "#"):
        i = location.find(mark)
        if i >= 0:
            end = min(end, i)
    cut = location.rfind("/", 0, end)
    if cut < 0:
        return None, location
    return location[:cut], location[cut + 1 :]


_PUT_METADATA = (
    "INSERT OR REPLACE INTO message_rows(obj,message_id,in_reply_to,refs,date,date_fallback,from_addr,"
    "from_name,to_addrs,cc_addrs,bcc_addrs,subject,attachments,parse_errors,indexed)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,0)"
)
_REFRESH_METADATA = (
    "UPDATE message_rows SET message_id=?,in_reply_to=?,refs=?,from_addr=?,from_name=?,to_addrs=?,cc_addrs=?,"
    "bcc_addrs=?,subject=?,attachments=?,parse_errors=?,indexed=0 WHERE obj=(SELECT ingest_seq FROM object_rows"
    " WHERE id=?)"
)
_PUT_METADATA_BY_ID = (
    "INSERT OR REPLACE INTO message_rows(obj,message_id,in_reply_to,refs,date,date_fallback,from_addr,"
    "from_name,to_addrs,cc_addrs,bcc_addrs,subject,attachments,parse_errors,indexed)"
    " SELECT ingest_seq,?,?,?,?,?,?,?,?,?,?,?,?,?,0 FROM object_rows WHERE id=?"
)


def _put_metadata(c: sqlite3.Connection, items: Sequence[tuple[str, ParsedMessage]], ingested: dict[str, int]) -> None:
    """Store parsed metadata, keyed by the object's ingest_seq: from ``ingested`` (the objects of the
    records being applied) or the catalog (metadata of an object the catalog does not hold is dropped)."""
    known: list[tuple[Any, ...]] = []
    by_id: list[tuple[Any, ...]] = []
    for oid, p in items:
        row = _stored_metadata(p)
        seq = ingested.get(oid)
        if seq is None:
            by_id.append((*row, oid))
        else:
            known.append((seq, *row))
    if known:
        c.executemany(_PUT_METADATA, known)
    if by_id:
        c.executemany(_PUT_METADATA_BY_ID, by_id)


def _attachments(p: ParsedMessage) -> list[dict[str, Any]]:
    return [
        {
            "filename": a.filename,
            "content_type": a.content_type,
            "size": a.size,
            "sha256": a.sha256,
            "error": a.error,
        }
        for a in p.attachments
    ]


def _metadata_values(p: ParsedMessage) -> tuple[Any, ...]:
    """The ``messages`` columns of a parsed message after the id, lists as Python lists."""
    first = p.from_[0] if p.from_ else None
    return (
        p.message_id,
        p.in_reply_to,
        list(p.references),
        p.date.isoformat(),
        int(p.date_is_fallback),
        first.addr if first else "",
        first.name if first else "",
        [[a.addr, a.name] for a in p.to],
        [[a.addr, a.name] for a in p.cc],
        [[a.addr, a.name] for a in p.bcc],
        p.subject,
        _attachments(p),
        list(p.parse_errors),
    )


#: the columns of a ``messages`` row after the id, in :func:`_metadata_values` order.
METADATA_COLUMNS = (
    "message_id",
    "in_reply_to",
    "refs",
    "date",
    "date_fallback",
    "from_addr",
    "from_name",
    "to_addrs",
    "cc_addrs",
    "bcc_addrs",
    "subject",
    "attachments",
    "parse_errors",
)


def metadata_differences(stored: Mapping[str, Any], p: ParsedMessage, fields: Iterable[str]) -> list[str]:
    """Which ``fields`` of a stored ``messages`` row (:meth:`Catalog.message`) a fresh parse gives otherwise.

    For checks of the catalog against the messages themselves (``verify --full``, the last
    check before a disposal).  Attachments compare by name, size and digest; ``date`` only
    when the fresh date is the message's own, not the received-time fallback.
    """
    fresh = dict(zip(METADATA_COLUMNS, _metadata_values(p), strict=True))

    def comparable(name: str, value: Any) -> Any:
        return [(a["filename"], a["size"], a["sha256"]) for a in value or ()] if name == "attachments" else value

    return sorted(
        name
        for name in fields
        if not (name == "date" and fresh["date_fallback"])
        and comparable(name, fresh[name]) != comparable(name, stored.get(name))
    )


def metadata_row(oid: str, p: ParsedMessage) -> tuple[Any, ...]:
    """The ``messages`` row of a parsed message (the lists as JSON text; the view's may differ in blanks)."""
    values = _metadata_values(p)
    return (oid, *(json.dumps(v, ensure_ascii=False) if isinstance(v, list) else v for v in values))


def _stored_metadata(p: ParsedMessage) -> tuple[Any, ...]:
    """:func:`metadata_row` as stored in ``message_rows`` (without the id; compact JSON, NULL for ``[]``)."""
    return tuple(_compact_list(v) if isinstance(v, list) else v for v in _metadata_values(p))


# -- applying records --------------------------------------------------------------------------



def _forget_disposed(c: sqlite3.Connection, stored: Sequence[tuple[int, str]]) -> None:
    """Replace the rows of disposed messages that an ``ingest`` record stores again.

    ``stored`` holds the new ``ingest`` records' (seq, id).  A message disposed of is stored
    anew when it arrives from a place it had not been seen in (a custodian's mailbox under a
    hold: :meth:`Catalog.already_stored`), under a new record and data key, and the rules
    and holds decide about it afresh.  The disposed object's row goes (``superseded`` keeps
    where its segment record lies, so that verify can account for it); its copies stay, now
    the new object's: the message is still known to be in those places, and a later re-read
    of one of them is then a copy, not another arrival.
    """
    new_seq = dict((oid, seq) for seq, oid in stored)
    old = [tuple(r) for chunk, marks in in_chunks(list(new_seq)) for r in c.execute(
        f"SELECT ingest_seq, id FROM object_rows WHERE id IN ({marks}) AND disposed_at IS NOT NULL", chunk
    )]  # fmt: skip
    for old_seq, oid in old:
        c.execute("UPDATE copies SET obj = ? WHERE obj = ?", (new_seq[oid], old_seq))
        c.execute("DELETE FROM matter_rows WHERE obj = ?", (old_seq,))
        c.execute("DELETE FROM message_rows WHERE obj = ?", (old_seq,))
        c.execute(
            "INSERT INTO superseded(segment, offset, id, record_sha256) SELECT segment, offset, id, record_sha256"
            " FROM object_rows WHERE ingest_seq = ?",
            (old_seq,),
        )
        c.execute("DELETE FROM object_rows WHERE ingest_seq = ?", (old_seq,))


class _Batch:
    """Applies journal records, the frequent ones (ingest, copy, checkpoint) as one ``executemany`` per
    table: a batch of thousands of messages is a handful of statements.

    Order is kept where it matters: buffered rows are flushed before any other record type.
    """

    def __init__(self, c: sqlite3.Connection) -> None:
        self.c = c
        self.objects: list[tuple[Any, ...]] = []
        #: (object row number, or None to look it up by id; id; :func:`_copy_row`)
        self.copies: list[tuple[int | None, str, tuple[Any, ...]]] = []
        self.matters: list[tuple[str, int]] = []
        self.checkpoints: list[tuple[Any, ...]] = []

    def apply(self, rec: dict[str, Any]) -> None:
        t, d, seq = rec["type"], rec["data"], rec["seq"]
        if t == "ingest":
            self.objects.append(
                (
                    seq,
                    d["id"],
                    d["size"],
                    d["segment"],
                    d["offset"],
                    d["length"],
                    _digest(d["record_sha256"]),
                    pack_time(rec["time"]),
                    d["client"],
                    _json_list(d["matters"]),
                )
            )
            self.copies.append((seq, d["id"], _copy_row(d["prov"], seq)))  # the object's row is its seq
            self.matters.extend((m, seq) for m in d["matters"])
        elif t == "copy":
            self.copies.append((None, d["id"], _copy_row(d["prov"], seq)))
        elif t == "checkpoint":
            self.checkpoints.append((d["key"], d["value"], seq))
        elif t == "checkpoints":
            self.checkpoints.extend((k, v, seq) for k, v in d["items"].items())
        elif t != "commit":
            self.flush()
            _apply_other(self.c, rec)

    def flush(self) -> None:
        c = self.c
        if self.objects:
            _forget_disposed(c, [(row[0], row[1]) for row in self.objects])
            c.executemany(
                "INSERT INTO object_rows(ingest_seq,id,size,segment,offset,length,record_sha256,ingested_at,"
                "client,matters) VALUES (?,?,?,?,?,?,?,?,?,?)",
                self.objects,
            )
            c.executemany("INSERT OR IGNORE INTO matter_rows(matter, obj) VALUES (?,?)", self.matters)
        if self.copies:
            self._flush_copies()
        if self.checkpoints:
            c.executemany("INSERT OR REPLACE INTO checkpoints(key, value, seq) VALUES (?,?,?)", self.checkpoints)
        self.objects, self.copies, self.matters, self.checkpoints = [], [], [], []

    def _flush_copies(self) -> None:
        """Insert the buffered copies, resolving folder numbers and objects once per batch, not per row.

        An ingest record's object is its own row; a ``copy`` record's object is looked up by id
        (a copy of an object the catalog does not hold is dropped, as the journal cannot have one).
        """
        c = self.c
        dirs = sorted({row[8] for _obj, _oid, row in self.copies if row[8] is not None})
        c.executemany("INSERT OR IGNORE INTO dirs(path) VALUES (?)", [(d,) for d in dirs])
        dir_numbers: dict[str, int] = {}
        for chunk, marks in in_chunks(dirs):
            dir_numbers.update(
                (path, n) for n, path in c.execute(f"SELECT n, path FROM dirs WHERE path IN ({marks})", chunk)
            )
        unknown = sorted({oid for obj, oid, _row in self.copies if obj is None})
        rows: dict[str, int] = {}
        for chunk, marks in in_chunks(unknown):
            rows.update(c.execute(f"SELECT id, ingest_seq FROM object_rows WHERE id IN ({marks})", chunk))
        params = []
        for obj, oid, row in self.copies:
            target = obj if obj is not None else rows.get(oid)
            if target is not None:
                place = row[8]
                params.append((target, *row[:8], dir_numbers.get(place) if place is not None else None, *row[9:]))
        c.executemany(_INSERT_COPY, params)


def apply_records(c: sqlite3.Connection, records: Iterable[dict[str, Any]]) -> None:
    """Apply journal records to the derived tables (the single place that defines their meaning)."""
    batch = _Batch(c)
    for rec in records:
        batch.apply(rec)
    batch.flush()


def _apply_other(c: sqlite3.Connection, rec: dict[str, Any]) -> None:
    """Records other than ingest, copy and checkpoints (which :class:`_Batch` applies)."""
    t, d, seq = rec["type"], rec["data"], rec["seq"]
    if t == "tag":
        _apply_tags(c, d["id"], d["client"], d["matters"], seq)
    elif t == "dispose":
        c.execute(
            "UPDATE object_rows SET disposed_at=?, disposed_rule=?, disposed_seq=? WHERE id=?",
            (rec["time"], d.get("rule", ""), seq, d["id"]),
        )
        c.execute("DELETE FROM message_rows WHERE obj=(SELECT ingest_seq FROM object_rows WHERE id=?)", (d["id"],))
    elif t in _POLICY_RECORDS:
        _apply_policy(c, rec)
    elif t == "dictionary":
        # The newest committed dictionary, for writers to read with one key lookup.
        c.execute(
            "INSERT INTO meta(key, value) VALUES ('dictionary', ?) ON CONFLICT(key) DO UPDATE SET value = "
            "CASE WHEN CAST(excluded.value AS INTEGER) > CAST(value AS INTEGER) THEN excluded.value ELSE value END",
            (str(int(d["number"])),),
        )
    if t in EVENT_TYPES:
        c.execute(
            "INSERT OR REPLACE INTO events(seq, type, time, actor, data) VALUES (?,?,?,?,?)",
            (seq, t, rec["time"], rec["actor"], json.dumps(d, sort_keys=True, ensure_ascii=False)),
        )


# One row per ingest or copy record: the same copy seen twice is two rows, in both (duplicates are kept out
# of the journal by Transaction.add_copy).  ``obj`` and ``dir`` are resolved by _Batch._flush_copies.
_INSERT_COPY = (
    "INSERT INTO copies(obj,seq,source,account,folder,uid,uidvalidity,internaldate,flags,dir,location,"
    "envelope_recipients,fetched_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
)


def _copy_row(p: dict[str, Any], seq: int) -> tuple[Any, ...]:
    """A copy's columns after ``obj``, with its location's folder part (index 8) still a path."""
    place, rest = _split_location(p.get("location", ""))
    return (
        seq,
        p["source"],
        p.get("account", ""),
        p.get("folder", ""),
        p.get("uid", ""),
        p.get("uidvalidity", ""),
        pack_time(p.get("internaldate")),
        _json_list(p.get("flags", [])),
        place,
        rest,
        _json_list(p.get("envelope_recipients", [])),
        pack_time(p.get("fetched_at")),
    )


def _apply_tags(c: sqlite3.Connection, oid: str, client: str, matters: list[str], seq: int) -> None:
    row = c.execute("SELECT ingest_seq, matters FROM object_rows WHERE id=?", (oid,)).fetchone()
    if row is None:
        return  # tags of an object the catalog does not hold
    obj, old = row
    c.execute(
        "UPDATE object_rows SET client=?, matters=?, tag_seq=? WHERE ingest_seq=?",
        (client, _json_list(matters), seq, obj),
    )
    c.executemany("DELETE FROM matter_rows WHERE matter=? AND obj=?", [(m, obj) for m in _matters(old)])
    c.executemany("INSERT OR IGNORE INTO matter_rows(matter, obj) VALUES (?,?)", [(m, obj) for m in matters])


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
