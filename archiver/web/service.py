"""The web server's only door to the archive: every read goes through a :class:`Scope`.

One :class:`WebArchive` wraps the :class:`~archiver.archive.Archive` opened at start-up.  The
repository and its SQLite connection are not safe for concurrent use by threads (the writer
lock is re-entrant per object, the catalog connection is shared), so everything touching them
runs under one lock.  That includes a search page, whose hits are described from the catalog;
facet counts and id selections ask only the index and run outside it (tantivy searchers are
thread-safe).

A message the scope may not see is reported exactly like a message that does not exist
(:class:`Hidden`, a 404), so a walled user cannot even learn that it exists.  Every access is
journalled (search, view, download, export, login) in the hash-chained journal.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from archiver.archive import Archive, received_of
from archiver.errors import ArchiverError, NotFoundError, QueryError
from archiver.index.store import highlight_html
from archiver.model import Attachment, ParsedMessage, SearchHit
from archiver.normalize.parse import attachment_payloads
from archiver.store.audit import GroupCommit
from archiver.store.objects import is_message_id
from archiver.web import auditlog, policy
from archiver.web.access import Scope
from archiver.web.filters import MATCH_ALL

#: longest query text written to the journal (a 1 MB query is an attack, not an audit need).
_MAX_LOGGED = 2000


class Hidden(NotFoundError):
    """No such message (or one the user may not see: the answer is the same)."""


class Gone(ArchiverError):
    """The message was disposed of; its content can no longer be read."""


@dataclass(frozen=True, slots=True)
class Page:
    """One page of search results the scope may see."""

    query: str
    total: int
    hits: tuple[SearchHit, ...]
    facets: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    #: the order used ("relevance" only for users who see the whole archive; hits' scores are 0 otherwise).
    sort: Literal["date", "relevance"] = "date"


@dataclass(frozen=True, slots=True)
class MessageView:
    """Everything the message page shows."""

    info: dict[str, Any]
    parsed: ParsedMessage | None
    #: the covering holds this user may read (see policy.shown_holds).
    holds: list[dict[str, Any]]
    retention: dict[str, Any] | None
    #: whether any active hold covers the message (told to every user, unlike the holds themselves).
    on_hold: bool = False


def snippet_html(hit: SearchHit) -> str:
    return highlight_html(hit.snippet, hit.highlights)


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_LOGGED else text[:_MAX_LOGGED] + "…"


class WebArchive:
    """Scoped, journalled access to one opened archive (thread-safe)."""

    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self.lock = threading.RLock()
        self._audit = GroupCommit(self._commit_events)

    def _commit_events(self, events: list[tuple[str, str, dict[str, Any]]]) -> None:
        with self.lock, self.archive.repo.transaction(actor="web") as tx:
            for actor, type_, data in events:
                tx.event(type_, data, actor=f"web:{actor}")

    # -- journal -----------------------------------------------------------------------
    def journal(
        self, actor: str, type_: Literal["search", "view", "download", "export", "login"], data: dict[str, Any]
    ) -> None:
        """Write one access event to the hash-chained journal (committed before returning;
        concurrent requests share one commit, see archiver.store.audit)."""
        self._audit.submit(actor, type_, data)

    def events(
        self,
        scope: Scope,
        *,
        types: Sequence[str] = (),
        actor: str = "",
        since: str = "",
        until: str = "",
        contains: str = "",
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[int, list[dict[str, Any]]]:
        """Journal events from the catalog's events table, newest first, with their total.

        Each event is shown as ``scope`` may see it (``archiver.web.auditlog``); for a walled
        reader ``contains`` is matched against what is shown, not against the stored text.
        """
        where, args = _event_filters([t for t in types if t], actor, since, until)
        if contains:  # a prefilter for walled readers (what is shown is part of what is stored)
            where.append("instr(data, ?) > 0")
            args.append(contains)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        limit, offset = max(1, min(limit, 1000)), max(0, offset)
        select = f"SELECT seq, type, time, actor, data FROM events{clause} ORDER BY seq DESC"
        with self.lock:
            conn = self.archive.repo.catalog.conn
            view = self._visibility(scope)
            if scope.whole_archive or not contains:
                total = int(conn.execute(f"SELECT count(*) FROM events{clause}", args).fetchone()[0])
                rows = conn.execute(select + " LIMIT ? OFFSET ?", [*args, limit, offset]).fetchall()
                return total, auditlog.show_rows(view, rows)
            return self._matching_events(view, conn.execute(select, args), contains, limit, offset)

    @staticmethod
    def _matching_events(
        view: auditlog.Visibility, cursor: Any, contains: str, limit: int, offset: int
    ) -> tuple[int, list[dict[str, Any]]]:
        """The page of events whose shown data contains ``contains``, and how many there are (under lock)."""
        total = 0
        page: list[dict[str, Any]] = []
        while rows := cursor.fetchmany(500):
            for event in auditlog.show_rows(view, rows):
                if contains not in auditlog.event_text(event["data"]):
                    continue
                if offset <= total < offset + limit:
                    page.append(event)
                total += 1
        return total, page

    def _visibility(self, scope: Scope) -> auditlog.Visibility:
        """What ``scope`` may see, for the access log (call under lock; answers are remembered)."""
        holds: dict[str, dict[str, Any]] = {}
        shown: dict[tuple[str, str], bool] = {}

        def hold_of_case(case: str) -> dict[str, Any] | None:
            if not holds:
                holds.update({str(h["case"]): h for h in reversed(policy.all_holds(self.archive))})
            return holds.get(case)

        def hold_shown(hold: dict[str, Any]) -> bool:
            key = (str(hold.get("kind", "")), str(hold.get("value", "")))
            if key not in shown:
                shown[key] = policy.hold_visible(scope, hold, lambda h: self._covers_hidden(scope, h))
            return shown[key]

        return auditlog.Visibility(
            scope=scope,
            visible_ids=lambda ids: set(self._visible(scope, list(ids))),
            hold_shown=hold_shown,
            hold_of_case=hold_of_case,
            sources=lambda: {s.lower() for s in self.sources(scope)},
            prefix_hidden=lambda prefix: self._prefix_hidden(scope, prefix),
        )

    def _prefix_hidden(self, scope: Scope, prefix: str) -> bool:
        """Whether a stored message whose id starts with ``prefix`` (hex) is one ``scope`` may not see (under lock)."""
        rows = self.archive.repo.catalog.conn.execute(
            "SELECT client, COALESCE(matters, '[]') FROM object_rows WHERE id >= ? AND id < ? LIMIT 1000",
            (prefix, prefix + "g"),
        ).fetchall()
        return not all(scope.sees(client, json.loads(matters)) for client, matters in rows)

    # -- search ------------------------------------------------------------------------
    def search(
        self,
        scope: Scope,
        query: str,
        *,
        limit: int = 20,
        offset: int = 0,
        sort: Literal["date", "relevance"] = "date",
        facets: bool = True,
        journal: dict[str, Any] | None = None,
    ) -> Page:
        """Search within the scope; the hits, the total and the facets all respect it.

        A user under a wall or an allowed list always gets date order: relevance scores are
        computed over the whole index (walls are filters), so the order, and above all the
        scores, of their hits would move with the number of hidden messages holding the words.
        """
        if not scope.whole_archive:
            sort = "date"
        restriction = scope.restriction
        index = self.archive.index
        try:
            with self.lock:  # describing the hits reads the catalog
                result = index.search(query, limit=limit, offset=offset, sort=sort, restriction=restriction)
            counts = index.facets(query, restriction=restriction) if facets else {}
        except ValueError as exc:  # e.g. a date tantivy cannot represent (before:5073-01-01)
            raise QueryError(f"The query {_clip(query)!r} could not be run: {exc}.") from None
        # Defence in depth: the catalog is the truth for tags, and the hits were described from
        # it in the locked call above, so their client and matters are the catalog's.  Drop a hit
        # it says is walled (an index lagging behind a retag must not leak), or does not know
        # (no client: every catalog row has one).
        hits = [h for h in result.hits if h.client and scope.sees(h.client, h.matters)]
        total = max(0, result.total - (len(result.hits) - len(hits)))
        self.journal(
            scope.username,
            "search",
            {
                "query": _clip(query),
                **(journal or {}),
                "sort": sort,
                "offset": offset,
                "total": total,
                "ids": [h.id for h in hits],
            },
        )
        return Page(query=query, total=total, hits=tuple(hits), facets=counts, sort=sort)

    def visible_ids(self, scope: Scope, query: str) -> list[str]:
        """Every id matching ``query`` that the scope may see (for exports)."""
        try:
            ids = self.archive.index.matching_ids(query, restriction=scope.restriction)
        except ValueError as exc:
            raise QueryError(f"The query {_clip(query)!r} could not be run: {exc}.") from None
        with self.lock:
            return self._visible(scope, ids)

    def matter_ids(self, scope: Scope, matter: str) -> list[str]:
        """Every live message of ``matter`` (``MATTER`` or ``CLIENT/MATTER``) the scope may see (from the catalog)."""
        client, sep, number = matter.strip().rpartition("/")
        sql = (
            "SELECT m.id FROM matters m JOIN objects o ON o.id = m.id JOIN tags t ON t.id = m.id "
            "WHERE lower(m.matter) = lower(?) AND o.disposed_at IS NULL"
        )
        args = [number.strip()]
        if sep:
            sql += " AND lower(t.client) = lower(?)"
            args.append(client.strip())
        with self.lock:
            rows = self.archive.repo.catalog.conn.execute(sql + " ORDER BY m.id", args).fetchall()
            return self._visible(scope, [r[0] for r in rows])

    # -- one message -------------------------------------------------------------------
    def _visible(self, scope: Scope, ids: list[str]) -> list[str]:
        """Those of ``ids`` (stored messages) the scope may see, in order (call under lock)."""
        tags = self.archive.repo.catalog.tags_of(ids)
        return [i for i in ids if i in tags and scope.sees(*tags[i])]

    def _check(self, scope: Scope, oid: str) -> str:
        """The id when it names a message the scope may see; Hidden otherwise (call under lock)."""
        oid = oid.strip().lower()
        if not is_message_id(oid) or not self._visible(scope, [oid]):
            raise Hidden(f"No message with id {oid[:64]} in the archive.")
        return oid

    def _content(self, oid: str) -> tuple[dict[str, Any], bytes | None]:
        """The catalog record and original bytes (None once disposed).

        Call under the lock with an id :meth:`_check` returned; parse with :meth:`_parse` after it."""
        info = self.archive.describe(oid)
        if info.get("disposed_at"):
            return info, None
        return info, self.archive.repo.read_raw(oid)

    def _parse(self, info: dict[str, Any], raw: bytes | None, *, attachment_text: bool = True) -> ParsedMessage | None:
        """Parse outside the lock (the parser is pure); without attachment text when only the
        structure is wanted (the HTML body, an attachment's bytes)."""
        if raw is None:
            return None
        received = received_of(str(info["ingested_at"]), info.get("provenance") or [])
        return self.archive.parse(raw, received, attachment_text=attachment_text)

    def message(self, scope: Scope, oid: str) -> MessageView:
        """The message's catalog record, parsed content (None once disposed), holds and retention."""
        with self.lock:
            oid = self._check(scope, oid)
            info, raw = self._content(oid)
            holds, retention = policy.status(self.archive, oid, info)
            shown, retention = policy.shown_holds(scope, holds, retention, lambda h: self._covers_hidden(scope, h))
        self.journal(scope.username, "view", {"id": oid})
        return MessageView(
            info=info, parsed=self._parse(info, raw), holds=shown, retention=retention, on_hold=bool(holds)
        )

    def raw(self, scope: Scope, oid: str) -> tuple[str, bytes]:
        """The original bytes (journalled as a download)."""
        with self.lock:
            oid = self._check(scope, oid)
            row = self.archive.repo.catalog.object(oid)
            if row is not None and row.disposed_at:
                raise Gone(f"Message {oid} was disposed of on {row.disposed_at}; its content can no longer be read.")
            raw = self.archive.repo.read_raw(oid)
        self.journal(scope.username, "download", {"id": oid, "part": "raw", "size": len(raw)})
        return oid, raw

    def html_body(self, scope: Scope, oid: str) -> str:
        """The HTML body as sent (the caller sanitises it); journalled as a view of that part."""
        with self.lock:
            oid = self._check(scope, oid)
            info, raw = self._content(oid)
        parsed = self._parse(info, raw, attachment_text=False)
        self.journal(scope.username, "view", {"id": oid, "part": "html"})
        return parsed.body_html if parsed else ""

    def attachment(self, scope: Scope, oid: str, sha256: str) -> tuple[Attachment, bytes]:
        """One attachment's decoded bytes, found by its SHA-256 (journalled as a download)."""
        sha256 = sha256.strip().lower()
        with self.lock:
            oid = self._check(scope, oid)
            info, raw = self._content(oid)
        parsed = self._parse(info, raw, attachment_text=False) if is_message_id(sha256) else None
        meta = next((a for a in (parsed.attachments if parsed else ()) if a.sha256 == sha256), None)
        if raw is None or meta is None:
            raise Hidden(f"Message {oid} has no attachment {sha256[:64]}.")
        data = find_part(raw, sha256)
        if data is None:
            raise Hidden(f"The attachment {sha256} of message {oid} could not be found again in the raw message.")
        self.journal(
            scope.username,
            "download",
            {"id": oid, "part": "attachment", "sha256": sha256, "filename": meta.filename, "size": len(data)},
        )
        return meta, data

    # -- overviews -----------------------------------------------------------------------
    def clients_and_matters(self, scope: Scope) -> dict[str, list[tuple[str, int]]]:
        """Facet counts over the whole archive within the scope (filter drop-downs)."""
        return self.archive.index.facets(MATCH_ALL, restriction=scope.restriction)

    def sources(self, scope: Scope) -> list[str]:
        """Source names for the search form: those with a message the scope may see.

        A source that only feeds walled clients (say ``globex-imap``) would otherwise tell a
        walled user that the walled client's mail is being archived, and from where.
        """
        with self.lock:
            rows = self.archive.repo.catalog.conn.execute("SELECT DISTINCT source FROM copies ORDER BY source")
            names = [str(r[0]) for r in rows]
        if scope.whole_archive:
            return names
        facets = self.archive.index.facets(MATCH_ALL, ("source",), restriction=scope.restriction)
        seen = {value for value, _count in facets.get("source", [])}
        return [n for n in names if n.lower() in seen]

    def message_counts(self, scope: Scope) -> tuple[int, int]:
        """(live, disposed) messages the scope may see, for the holds and retention overview.

        Users who see everything get the catalog's counts; anyone else the index's count of
        live messages within their scope (what their own search of everything totals) and
        the disposed messages whose last tags they may see, so that the number never moves
        when walled mail arrives.
        """
        with self.lock:
            conn = self.archive.repo.catalog.conn
            if scope.whole_archive:
                live, disposed = conn.execute(
                    "SELECT sum(disposed_at IS NULL), sum(disposed_at IS NOT NULL) FROM objects"
                ).fetchone()
                return int(live or 0), int(disposed or 0)
            # one row per distinct filing, not per message: the scope is asked a few times, not millions
            gone = conn.execute(
                "SELECT client, COALESCE(matters, '[]'), count(*) FROM object_rows "
                "WHERE disposed_at IS NOT NULL GROUP BY client, matters"
            ).fetchall()
        live = self.archive.index.count_matching(MATCH_ALL, restriction=scope.restriction)
        return live, sum(n for client, matters, n in gone if scope.sees(client, json.loads(matters)))

    # -- holds -----------------------------------------------------------------------------
    def holds(self, scope: Scope) -> list[dict[str, Any]]:
        """Every hold (placed or released, newest first) that ``scope`` may see (policy.hold_visible)."""
        with self.lock:
            holds = policy.all_holds(self.archive)
            return [h for h in holds if policy.hold_visible(scope, h, lambda held: self._covers_hidden(scope, held))]

    def _covers_hidden(self, scope: Scope, hold: dict[str, Any]) -> bool:
        """Whether a query or custodian hold covers a message ``scope`` may not see.

        Counted in the index with and without the scope's filters (a difference is a hidden
        message); a custodian hold also covers the copies pulled from that mailbox account,
        which the catalog knows.  A query that cannot run counts as covering hidden mail.
        """
        kind, value = str(hold.get("kind", "")), str(hold.get("value", ""))
        if kind not in ("query", "custodian"):
            return False
        query = value if kind == "query" else policy.custodian_query(value)
        index = self.archive.index
        try:
            if index.count_matching(query) != index.count_matching(query, restriction=scope.restriction):
                return True
        except (ArchiverError, ValueError):
            return True
        if kind == "query":
            return False
        with self.lock:
            rows = self.archive.repo.catalog.conn.execute(
                "SELECT DISTINCT o.client, COALESCE(o.matters, '[]') FROM copies c "
                "JOIN object_rows o ON o.ingest_seq = c.obj WHERE lower(c.account) = lower(?)",
                (value,),
            ).fetchall()
        return not all(scope.sees(client, json.loads(matters)) for client, matters in rows)


def _event_filters(types: Sequence[str], actor: str, since: str, until: str) -> tuple[list[str], list[Any]]:
    """SQL conditions on the events table's own columns (which every reader is shown as stored)."""
    where: list[str] = []
    args: list[Any] = []
    if types:
        where.append(f"type IN ({','.join('?' * len(types))})")
        args.extend(types)
    if actor:
        where.append("actor LIKE ? ESCAPE '\\'")
        args.append("%" + actor.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
    if since:
        where.append("time >= ?")
        args.append(since)
    if until:
        where.append("time < ?")
        args.append(until)
    return where, args


def find_part(raw: bytes, sha256: str) -> bytes | None:
    """The MIME part of ``raw`` whose decoded bytes hash to ``sha256``."""
    for data in attachment_payloads(raw):
        if hashlib.sha256(data).hexdigest() == sha256:
            return data
    return None
