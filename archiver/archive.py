"""The opened archive: repository + index + tagging rules, as one object.

The CLI, the daemon and the web server all go through this class (and the
pipeline), so each operation is written once.  The index is derived data: every
write path ends by bringing it up to date from the catalog's ``indexed`` flags,
which also repairs an index left behind by a crash.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from archiver.clock import Clock, parse_iso, received_at, system_clock
from archiver.config import Config, read_passphrase
from archiver.documents import index_doc
from archiver.errors import ArchiverError
from archiver.index.store import IndexSchemaError, MessageIndex
from archiver.logging import get_logger
from archiver.model import HitDisplay, IndexDoc, ParsedMessage, SearchResult, Tags
from archiver.normalize.tagging import Tagger
from archiver.store.catalog import METADATA_COLUMNS, metadata_differences
from archiver.store.repository import Repository, VerifyReport
from archiver.workers import ParseOptions, Workers, parse_with, reopen

_log = get_logger("archiver.archive")

Progress = Callable[[str, int, int | None], None]


def _no_progress(_stage: str, _done: int, _total: int | None) -> None:
    return None


@dataclass
class MaintenanceSummary:
    processed: int = 0
    changed: int = 0
    failed: list[str] = field(default_factory=list)


#: the ``messages`` columns ``verify --full`` checks against a fresh parse (not the date or the parse
#: errors, which depend on when the message arrived and on the parser's time budgets).
_PARSED_FIELDS = tuple(c for c in METADATA_COLUMNS if c not in ("date", "date_fallback", "parse_errors"))

#: tags decided in the current pass: Message-ID -> object id -> tags (see Archive.parent_tags).
LocalTags = Mapping[str, Mapping[str, Tags]]


class Archive:
    """An archive opened with its configuration."""

    def __init__(self, cfg: Config, repo: Repository) -> None:
        self.cfg = cfg
        self.repo = repo
        self.tagger = Tagger(cfg.tagging)
        self._index: MessageIndex | None = None

    # -- lifecycle ---------------------------------------------------------------
    @classmethod
    def init(cls, cfg: Config, *, clock: Clock = system_clock, actor: str = "system") -> Archive:
        repo = Repository.create(
            cfg.archive.path,
            read_passphrase(cfg.archive),
            clock=clock,
            segment_max_bytes=_segment_max(cfg),
            actor=actor,
        )
        return cls(cfg, repo)

    @classmethod
    def open(cls, cfg: Config, *, need_keys: bool = True, clock: Clock = system_clock) -> Archive:
        passphrase = read_passphrase(cfg.archive) if need_keys else None
        repo = Repository.open(cfg.archive.path, passphrase, clock=clock, segment_max_bytes=_segment_max(cfg))
        return cls(cfg, repo)

    def sibling(self, cfg: Config | None = None) -> Archive:
        """Another Archive on the same folder with its own catalog connection and lock descriptor,
        reusing the unlocked keys (no second key derivation): for a thread that must not share
        this one's (the web server in the daemon, a web export)."""
        cfg = cfg or self.cfg
        repo = self.repo
        return Archive(
            cfg, Repository(repo.path, keys=repo.keys, clock=repo.clock, segment_max_bytes=_segment_max(cfg))
        )

    def close(self) -> None:
        if self._index is not None:
            self._index.close()
            self._index = None
        self.repo.close()

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def index(self) -> MessageIndex:
        if self._index is None:
            self._index = MessageIndex.open(
                self.repo.path / "index", heap_mb=self.cfg.index.heap_mb, hits=ArchiveHits(self)
            )
        return self._index

    def parse_options(self) -> ParseOptions:
        return ParseOptions(
            max_parse_bytes=self.cfg.ingest.max_parse_mb * 2**20,
            max_attachment_text_chars=self.cfg.ingest.max_attachment_text_chars,
            matter_header=self.cfg.tagging.matter_header,
            tagging=self.cfg.tagging,
        )

    def parse(self, raw: bytes, received: datetime, *, attachment_text: bool = True) -> ParsedMessage:
        """Parse a message with this archive's options (the same ones ingest used)."""
        opts = self.parse_options()
        if not attachment_text:
            opts = replace(opts, max_attachment_text_chars=0)
        return parse_with(raw, received, opts)

    def workers(self) -> Workers:
        keys = self.repo.require_keys()
        return Workers(keys.master, self.parse_options(), self.cfg.ingest.workers, self.repo.dictionaries.root)

    # -- reading stored messages back ----------------------------------------------
    def reparse(self, ids: Sequence[str], workers: Workers) -> Iterator[tuple[str, ParsedMessage | None, str]]:
        """Decrypt and parse stored messages in parallel; yields (id, parsed or None, error)."""
        source_times = self.repo.catalog.first_copy_times(ids)
        tasks = [
            (row.id, rec.codec, wrapped, rec.payload, received_time(row.ingested_at, *source_times.get(row.id, ())))
            for row, rec, wrapped in self.repo.sealed_objects(ids)
        ]
        yield from workers.map(reopen, tasks)

    def tags_of(self, oid: str) -> Tags:
        t = self.repo.catalog.tags(oid)
        return Tags(client=t[0], matters=t[1]) if t else Tags()

    def docs_for(self, parsed: Sequence[tuple[str, ParsedMessage]]) -> list[IndexDoc]:
        """The index documents of stored messages, their sizes, tags and copies read in batches."""
        catalog = self.repo.catalog
        ids = [oid for oid, _p in parsed]
        rows, tags, copies = catalog.objects(ids), catalog.tags_of(ids), catalog.provenance_of(ids)
        docs = []
        for oid, p in parsed:
            row, t = rows.get(oid), tags.get(oid)
            own = Tags(client=t[0], matters=t[1]) if t else Tags()
            docs.append(index_doc(oid, row.size if row else 0, p, own, copies.get(oid, [])))
        return docs

    # -- keeping derived data current ---------------------------------------------------
    def catch_up(
        self, workers: Workers | None = None, progress: Progress = _no_progress, *, refresh_metadata: bool = False
    ) -> int:
        """Fill missing metadata and index every message the index has not seen yet
        (``refresh_metadata``: and rewrite the metadata of each message indexed).

        Call under the repository lock.  Returns how many messages were (re)indexed.
        """
        own = workers is None
        w = workers or self.workers()
        done = 0
        self._drop_outdated_index()
        try:
            while True:
                missing = self.repo.catalog.missing_metadata(1000)
                if not missing:
                    break
                parsed = [(oid, p) for oid, p, _err in self.reparse(missing, w) if p is not None]
                self.repo.catalog.put_metadata(parsed)
                if len(parsed) < len(missing):
                    break
            done = self._index_unindexed(w, progress, refresh_metadata)
        finally:
            if own:
                w.close()
        return done

    def _index_unindexed(self, workers: Workers, progress: Progress, refresh_metadata: bool = False) -> int:
        """Index every live message the catalog marks as not indexed; returns how many were.

        The workers decrypt and parse a chunk while this process adds the documents of the
        messages already parsed, a few hundred at a time.  The writer is kept across the
        chunks' commits (each followed by marking its messages indexed) and released at the
        end.  Only ids that failed are remembered, so memory does not grow with the archive.
        """
        done = 0
        failed: set[str] = set()
        try:
            while True:
                pending = [i for i in self.repo.catalog.unindexed(2000) if i not in failed]
                if not pending:
                    break
                indexed: list[str] = []
                for part in _parts(self.reparse(pending, workers), 250):
                    parsed = [(oid, p) for oid, p, _err in part if p is not None]
                    if refresh_metadata:
                        self.repo.catalog.refresh_metadata(parsed)
                    docs = self.docs_for(parsed)
                    self.index.add(docs)
                    indexed.extend(d.id for d in docs)
                self.index.commit(release=False)
                self.repo.catalog.mark_indexed(indexed)
                failed.update(set(pending).difference(indexed))
                done += len(indexed)
                progress("index", done, None)
            self.index.commit()
        except BaseException:
            self.index.rollback()
            raise
        return done

    def reindex(self, progress: Progress = _no_progress) -> MaintenanceSummary:
        """Rebuild the index, and the catalog's parsed metadata, from the store alone.

        Every message is parsed again anyway, so its catalog metadata is rewritten too: after
        an upgrade whose parser reads more (e.g. the files inside winmail.dat), one reindex
        brings search, listings and `verify --full`'s metadata check in line with it.
        """
        summary = MaintenanceSummary()
        with self.repo.lock():
            self.repo.recover()
            self._forget_index()
            summary.processed = self.catch_up(progress=progress, refresh_metadata=True)
        return summary

    def _forget_index(self) -> None:
        """Delete the index; the next catch_up rebuilds it from the store."""
        if self._index is not None:
            self._index.close()
            self._index = None
        shutil.rmtree(self.repo.path / "index", ignore_errors=True)
        self.repo.catalog.mark_all_unindexed()

    def _drop_outdated_index(self) -> None:
        """An index an older version built (other fields), or one with fewer documents than
        the catalog marks as indexed, is derived data: writers rebuild it.

        So an upgrade, or a deleted index folder, needs no manual `reindex` before the next
        import or sync; until one runs, `search` says to reindex.
        """
        try:
            index = self.index
        except IndexSchemaError as exc:
            _log.warning("index_rebuilt", reason=str(exc))
            self._forget_index()
            return
        index.reload()  # another process's last commit counts too
        held, expected = index.count(), self.repo.catalog.indexed_count()
        if held < expected:
            # The index folder was deleted or lost documents (it is derived data, and
            # docs/format.md says it may be deleted): what the catalog marks as indexed
            # is not there, so index everything again rather than search a partial index.
            _log.warning("index_rebuilt", reason=f"the index holds {held} of {expected} indexed messages")
            self._forget_index()

    def retag(
        self, progress: Progress = _no_progress, actor: str = "system", chunk_size: int = 1000
    ) -> MaintenanceSummary:
        """Re-apply the tagging rules to every message, oldest first (parents before replies).

        The decisions are :func:`archiver.threads.retag_chunks` (the retag guard's dry run makes
        the same).  Memory stays bounded whatever the archive's size: each chunk's changes are
        committed to the catalog before the next chunk asks it for parents' tags.
        """
        from archiver.threads import retag_chunks

        summary = MaintenanceSummary()
        with self.repo.lock(), self.workers() as w:
            for chunk in retag_chunks(self, w, chunk_size=chunk_size, committed=True):
                summary.failed.extend(chunk.failed)
                summary.processed = chunk.processed
                if chunk.changed:
                    with self.repo.transaction(actor) as tx:
                        for oid, _p, tags in chunk.changed:
                            tx.set_tags(oid, tags)
                    self.index.add(self.docs_for([(oid, p) for oid, p, _t in chunk.changed]))
                    self.index.commit()
                    summary.changed += len(chunk.changed)
                progress("retag", chunk.processed, chunk.total)
            with self.repo.transaction(actor) as tx:
                tx.event(
                    "retag",
                    {"rules": self.tagger.fingerprint(), "messages": summary.processed, "changed": summary.changed},
                )
        return summary

    def parent_tags(self, parsed: ParsedMessage, local: LocalTags | None = None) -> list[Tags]:
        """Tags of the messages this one replies to (thread inheritance).

        ``local`` holds the tags decided in the current pass (an ingest batch, a retag, late
        filing), by Message-ID and object id: those win over the catalog, which has not seen
        them yet or holds the old ones.
        """
        return self.parent_tags_of(parsed.thread_refs, local)

    def parent_tags_of(self, refs: Sequence[str], local: LocalTags | None = None) -> list[Tags]:
        """:meth:`parent_tags` for the Message-IDs a message refers to.

        Every message with each Message-ID counts (duplicates with different bytes are
        separate objects), in the order of ``refs`` and then of storing: each as decided in
        this pass if it was, else as the catalog has it.  So the answer depends on neither
        the chunking of a pass nor on which copy of a Message-ID was decided last.
        """
        if not refs or not self.cfg.tagging.thread_inheritance:
            return []
        local = local or {}
        wanted = list(dict.fromkeys(refs))
        stored = self.repo.catalog.tags_by_message_id(wanted)
        out: list[Tags] = []
        for ref in wanted:
            decided = local.get(ref, {})
            rows = stored.get(ref, ())
            out.extend(decided.get(oid) or Tags(client=c, matters=m) for oid, c, m in rows)
            seen = {oid for oid, _c, _m in rows}
            out.extend(tags for oid, tags in decided.items() if oid not in seen)  # not committed yet
        return out

    # -- queries -----------------------------------------------------------------
    def search(self, query: str, *, limit: int = 20, offset: int = 0, sort: str = "date") -> SearchResult:
        """Hits described by :class:`ArchiveHits` (sender, subject, date and tags from the catalog),
        with the number of stored messages the index has not reached (a partial index must
        not pass for a complete answer)."""
        result = self.index.search(query, limit=limit, offset=offset, sort=sort)  # type: ignore[arg-type]
        behind = self.repo.catalog.indexed_count(indexed=False)
        return replace(result, unindexed=behind) if behind else result

    def describe(self, oid: str) -> dict[str, Any]:
        """Everything the catalog knows about a message, for `show`."""
        row = self.repo.catalog.object(oid)
        if row is None:
            raise ArchiverError(f"No message with id {oid}.")
        meta = self.repo.catalog.message(oid) or {}
        tags = self.tags_of(oid)
        return {
            "id": oid,
            "size": row.size,
            "ingested_at": row.ingested_at,
            "disposed_at": row.disposed_at,
            "disposed_rule": row.disposed_rule,
            "client": tags.client,
            "matters": list(tags.matters),
            "provenance": self.repo.catalog.provenance(oid),
            **{k: v for k, v in meta.items() if k not in ("id", "indexed")},
        }

    def _metadata_problems(self, oid: str, raw: bytes) -> list[str]:
        """Compare the catalog's metadata that depends only on a message's bytes with a fresh parse.

        The ``messages`` table is parsed from the objects, not derived from the journal, so the
        journal cannot vouch for it; the objects can.  Dates and parse errors are left out (they
        depend on when the message arrived and on the parser's time budgets).
        """
        stored = self.repo.catalog.message(oid)
        if stored is None:
            return []
        wrong = metadata_differences(stored, self.parse(raw, self.repo.clock()), _PARSED_FIELDS)
        if not wrong:
            return []
        return [
            f"catalog table messages: the metadata of {oid} ({', '.join(wrong)}) does not match the "
            "message itself (the catalog was edited, or filled by another archiver version; "
            "`archiver reindex` parses every message again and rewrites it)."
        ]

    def verify(self, full: bool = False, progress: Progress = _no_progress, actor: str = "system") -> VerifyReport:
        """Verify the store (and the index against the catalog), then journal the run."""
        report = self.repo.verify(
            full=full, progress=lambda s, n: progress(s, n, None), inspect=self._metadata_problems
        )
        try:
            live = set(self.repo.catalog.live_ids())
            indexed = self.index.all_ids()
            if indexed - live:
                report.problem(
                    f"The index holds {len(indexed - live)} messages the archive does not: run `archiver reindex`."
                )
            missing = live - indexed
            # (one pass over every indexed id: only when something is missing at all)
            lost = sum(1 for i in self.repo.catalog.indexed_live_ids() if i in missing) if missing else 0
            if lost:
                report.notes.append(
                    f"{lost} messages the catalog marks as indexed are missing from the index (it was deleted "
                    "or altered): search and query holds miss them until the next import, sync or retention "
                    "run indexes them again, or `archiver reindex`."
                )
            if len(missing) > lost:
                report.notes.append(
                    f"{len(missing) - lost} messages are not indexed yet (the next write or `reindex` adds them)."
                )
        except Exception as exc:  # the index is a cache: a broken one is a note, never lost data
            report.notes.append(f"The index could not be checked ({exc}); `archiver reindex` rebuilds it.")
        try:
            with self.repo.transaction(actor) as tx:
                tx.event(
                    "verify",
                    {
                        "full": full,
                        "ok": report.ok,
                        "problems": len(report.problems),
                        "counts": report.counts,
                    },
                )
        except ArchiverError as exc:
            report.notes.append(f"The verification could not be recorded in the journal: {exc}")
        return report


def _segment_max(cfg: Config) -> int:
    return cfg.archive.segment_max_mb * 2**20


def _parts(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    """``items`` in lists of ``size`` (the last may be shorter), consumed lazily."""
    part: list[Any] = []
    for item in items:
        part.append(item)
        if len(part) == size:
            yield part
            part = []
    if part:
        yield part


class ArchiveHits:
    """The one HitSource (archiver.index.store) of the CLI, the web server and the benchmarks.

    The index stores only ids and body beginnings: a hit's sender, subject, date and tags
    come from the catalog, in one query per result page.  The caller serialises access to
    the repository, as for any other read (the web server holds its lock while searching).
    """

    def __init__(self, archive: Archive) -> None:
        self._archive = archive

    def describe(self, ids: Sequence[str]) -> Mapping[str, HitDisplay]:
        return self._archive.repo.catalog.hit_rows(ids)


def received_time(ingested_at: str, source_time: str | None = None, fetched_at: str | None = None) -> datetime:
    """What a re-parse takes as the time a stored message was received: what the ingest took.

    The normalizer dates a message with no usable Date by when it was received, and flags
    Dates far after it.  The ingest took the source's time (the file's, the server's
    INTERNALDATE) of the copy it stored, checked against the time it read that copy, which
    it records as the copy's ``fetched_at`` (:func:`archiver.clock.received_at`).  The
    catalog keeps both, so a re-parse (`show`, the web page, exports, reindex, a rebuilt
    catalog) decides the same and dates every message as the ingest did, not by the moment
    it was archived.  Archives older than that record fall back to the ingest time.
    """
    read = _time_or_none(fetched_at) or parse_iso(ingested_at)
    return received_at(_time_or_none(source_time), read)


def received_of(ingested_at: str, copies: Sequence[Mapping[str, Any]]) -> datetime:
    """:func:`received_time` of a message whose copies (``Catalog.provenance``, in order) are at hand."""
    first = copies[0] if copies else {}
    return received_time(ingested_at, first.get("internaldate"), first.get("fetched_at"))


def _time_or_none(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return parse_iso(text)
    except ValueError:
        return None
