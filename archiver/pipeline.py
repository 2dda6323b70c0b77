"""One ingest pass: connector -> normalize -> store -> index -> checkpoint.

For each batch a connector yields, new messages are parsed and sealed in worker
processes (the next batch is prepared while the current one is written), tagged
here (thread inheritance needs the catalog), committed to the store in one
transaction together with the batch's checkpoints, and then indexed.  Because
checkpoints commit atomically with the messages, a crash anywhere loses nothing
and the next run resumes where the last commit left off; re-fetched messages are
recognised by their SHA-256 and only gain provenance.  The index is brought up to
date from the catalog's ``indexed`` flags, so a crash between the store commit
and the index commit is repaired by the next run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from archiver.archive import Archive, LocalTags
from archiver.clock import received_at
from archiver.documents import index_doc
from archiver.errors import ArchiverError
from archiver.logging import get_logger
from archiver.model import IndexDoc, ParsedMessage, ProvenanceRow, Tags
from archiver.prefetch import prefetch
from archiver.sources import unexpected
from archiver.store.objects import message_id_of
from archiver.store.repository import prov_dict, safe_text
from archiver.threads import LateParents
from archiver.workers import Workers, prepare, train
from connectors.base import Batch, Connector, Origin, where_raised
from connectors.errors import ConnectorError

log = get_logger("archiver.pipeline")

#: index commits are batched: at most this many messages or seconds between commits.
INDEX_COMMIT_EVERY = 5000
INDEX_COMMIT_SECONDS = 30.0
#: the summary lists at most this many failures (memory stays bounded on a tree of junk files).
MAX_LISTED_FAILURES = 1000
#: a batch the workers have not finished by then means a lost task: fail loudly, never hang.
WORKER_TIMEOUT_S = 3600.0


@dataclass
class FolderSummary:
    imported: int = 0
    duplicates: int = 0
    parse_errors: int = 0
    failed: int = 0


@dataclass
class IngestSummary:
    imported: int = 0
    duplicates: int = 0
    parse_errors: int = 0
    failed: int = 0
    #: sources that failed as a whole (a server unreachable, a login refused): exit 11.
    source_errors: int = 0
    bytes: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    folders: dict[str, FolderSummary] = field(default_factory=dict)
    seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["folders"] = {k: asdict(v) for k, v in self.folders.items()}
        return out


ProgressFn = Callable[[int, int], None]


def origin_to_provenance(o: Origin, fetched_at: Any) -> ProvenanceRow:
    return ProvenanceRow(
        source=o.source,
        account=o.account,
        folder=o.folder,
        uid=o.uid,
        uidvalidity=o.uidvalidity,
        internaldate=o.internaldate,
        flags=o.flags,
        location=o.location,
        envelope_recipients=o.envelope_recipients,
        fetched_at=fetched_at,
    )


class _Indexer:
    """Batches index additions and commits them every few thousand messages."""

    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self.pending: list[str] = []  # ids only: the documents are already in tantivy's writer
        self.last = time.monotonic()

    def add(self, docs: list[IndexDoc]) -> None:
        """Add documents of objects this ingest stored (so none can be in the index already)."""
        if docs:
            self.archive.index.add(docs, replace=False)
            self.pending.extend(d.id for d in docs)
        if len(self.pending) >= INDEX_COMMIT_EVERY or time.monotonic() - self.last > INDEX_COMMIT_SECONDS:
            self.flush(release=False)

    def flush(self, release: bool = True) -> None:
        """Commit the index; intermediate flushes keep the writer, the last one releases it."""
        if self.pending:
            self.archive.index.commit(release=release)
            self.archive.repo.catalog.mark_indexed(self.pending)
            self.pending = []
        elif release:
            self.archive.index.commit()  # a writer kept by an earlier flush is released here
        self.last = time.monotonic()


def ingest(
    archive: Archive,
    connector: Connector,
    *,
    actor: str = "system",
    progress: ProgressFn | None = None,
    stop: Callable[[], bool] | None = None,
    event: str = "import",
) -> IngestSummary:
    """Pull every batch from ``connector`` into the archive; returns what happened.

    ``stop`` is polled between batches (the daemon's graceful shutdown): the pass
    ends at a committed batch.
    """
    summary = IngestSummary()
    started = time.monotonic()
    repo = archive.repo
    with repo.lock(), archive.workers() as workers:
        repo.recover()
        archive.catch_up(workers)
        indexer = _Indexer(archive)
        late = LateParents(archive)
        checkpoints = repo.catalog.checkpoints()
        compress_with_dictionary = archive.cfg.archive.compression_dictionary
        training: Any = None  # a compression dictionary being built by a worker
        prepared: _Prepared | None = None
        # The source runs a batch ahead in its own thread: reading files and waiting on servers
        # overlap with the commits here (archiver/prefetch.py).
        batches = prefetch(lambda: connector.batches(checkpoints), depth=1, name="archiver-source")
        try:
            for group in _groups(_guarded(connector, batches, summary), archive.cfg.ingest.batch_size):
                if compress_with_dictionary:
                    training = _train(repo, workers, training, actor)
                job = _submit(repo, workers, group, repo.current_dictionary())
                if prepared is not None:
                    _commit(archive, prepared, summary, indexer, late, actor, progress)
                prepared = job
                if stop is not None and stop():
                    break
            if prepared is not None:
                _commit(archive, prepared, summary, indexer, late, actor, progress)
            if training is not None:
                repo.add_dictionary(training.get(timeout=WORKER_TIMEOUT_S), actor)
        finally:
            batches.close()  # stops the source's thread and closes its generator (logout) there
            indexer.flush()
        # Replies stored before their parents: filed now, re-indexed by the catch-up below.
        refiled = late.file(actor, workers)
        if refiled:
            repo.catalog.mark_indexed(refiled, 0)
            log.info("replies filed under parents stored after them", messages=len(refiled))
        archive.catch_up(workers)
        if summary.imported or summary.failed or summary.events:
            with repo.transaction(actor) as tx:
                tx.event(
                    event,
                    {
                        "source": getattr(connector, "name", ""),
                        "imported": summary.imported,
                        "duplicates": summary.duplicates,
                        "parse_errors": summary.parse_errors,
                        "failed": summary.failed,
                    },
                )
    summary.seconds = round(time.monotonic() - started, 3)
    return summary


def _train(repo: Any, workers: Workers, training: Any, actor: str) -> Any:
    """Start building a compression dictionary in a worker when one is due; journal it once built.

    Returns the job still running, or None.  Messages sealed meanwhile use the dictionary
    before it (or none): any committed dictionary decompresses what was sealed with it.
    """
    if training is None:
        sample = repo.dictionary_sample()
        return workers.submit_one(train, sample) if sample is not None else None
    if training.ready():
        repo.add_dictionary(training.get(timeout=WORKER_TIMEOUT_S), actor)
        return None
    return training


def _guarded(connector: Connector, batches: Iterator[Batch], summary: IngestSummary) -> Iterator[Batch]:
    """The connector's batches; any exception from the source ends this source as a reported
    failure (``sync`` exits 11), never a crash, so the sources after it are still synced.

    A ``ConnectorError`` or an ``ArchiverError`` (a sentence meant for the user) is reported
    with its text.  Anything else (a bug, a UnicodeError from a library) is reported by its
    type and the place it was raised, not its text: a library's message may quote a secret
    (imaplib's UnicodeEncodeError quoted a password character).
    """
    name = getattr(connector, "name", "")
    try:
        yield from batches
    except (ConnectorError, ArchiverError) as exc:
        reason = str(exc)
        log.error("source failed", source=name, error=reason)
    except Exception as exc:
        reason = unexpected(name, exc)
        log.error("source failed unexpectedly", source=name, error=type(exc).__name__, at=where_raised(exc))
    else:
        return
    summary.failed += 1
    summary.source_errors += 1
    summary.failures.append({"location": name, "reason": reason})


#: a group of batches stops growing at this many message bytes (see _groups).
GROUP_MAX_BYTES = 32 * 1024 * 1024

#: a group of batches, each batch's (message index, id) pairs, and the workers' pending result.
#: and when the group was read (the copies' fetched_at, and the "received" time of messages
#: whose source gives none: a re-parse finds both in the catalog, see archive.received_time).
_Prepared = tuple[list[Batch], list[list[tuple[int, str]]], Any, datetime]


def _groups(batches: Iterable[Batch], max_messages: int, max_bytes: int = GROUP_MAX_BYTES) -> Iterator[list[Batch]]:
    """Consecutive batches joined until the next would pass ``max_messages`` or ``max_bytes``.

    Connectors cut a batch at every folder (summaries and events are per folder), and a
    mail tree has many small folders (the Enron release: ~650 for 13k messages).  One
    transaction per folder meant one fsync round (segment, keys, journal) and one signed
    commit per folder; joined, a transaction holds ``ingest.batch_size`` messages again.
    The byte bound keeps a group of big messages from holding more memory than one
    connector batch did.  Each batch keeps its own checkpoints, failures, events and
    per-folder counts; a batch is never split.
    """
    group: list[Batch] = []
    count = size = 0
    for batch in batches:
        n, b = len(batch.messages), sum(len(m.data) for m in batch.messages)
        if group and (count + n > max_messages or size + b > max_bytes):
            yield group
            group, count, size = [], 0, 0
        group.append(batch)
        count += n
        size += b
    if group:
        yield group


def _submit(repo: Any, workers: Workers, group: list[Batch], dictionary: int) -> _Prepared:
    """Hash every message; send the ones not yet stored to the workers for parsing and sealing
    (compressed with dictionary number ``dictionary``, 0 for none)."""
    hashed = [[(i, message_id_of(msg.data)) for i, msg in enumerate(b.messages)] for b in group]
    stored = repo.catalog.already_stored(
        [(oid, _place(b.messages[i].origin)) for b, pairs in zip(group, hashed, strict=True) for i, oid in pairs]
    )
    tasks: list[tuple[bytes, str, Any, int]] = []
    seen: set[str] = set()
    now = repo.clock()
    for batch, pairs in zip(group, hashed, strict=True):
        for i, oid in pairs:
            if oid in seen or oid in stored:
                continue
            seen.add(oid)
            tasks.append(
                (batch.messages[i].data, oid, received_at(batch.messages[i].origin.internaldate, now), dictionary)
            )
    return group, hashed, (workers.submit(prepare, tasks) if tasks else None), now


def _place(origin: Any) -> tuple[str, str, str]:
    """Where a copy was found, as the catalog's provenance records it (source, account, folder)."""
    return (safe_text(origin.source), safe_text(origin.account), safe_text(origin.folder))


def _commit(
    archive: Archive,
    prepared: _Prepared,
    summary: IngestSummary,
    indexer: _Indexer,
    late: LateParents,
    actor: str,
    progress: ProgressFn | None,
) -> None:
    group, hashed, job, now = prepared
    repo = archive.repo
    results = job.get(timeout=WORKER_TIMEOUT_S) if job is not None else []
    by_id = {sealed.id: (parsed, sealed, tags) for parsed, sealed, tags in results}
    # The batches were checked against the catalog before the previous group committed.
    if by_id:
        committed_meanwhile = repo.catalog.existing(list(by_id), live=True)
        by_id = {k: v for k, v in by_id.items() if k not in committed_meanwhile}
    local_tags: dict[str, dict[str, Tags]] = {}
    new_docs: dict[str, tuple[int, ParsedMessage, Tags, list[dict[str, Any]]]] = {}
    grown: list[str] = []
    with repo.transaction(actor) as tx:
        for batch, pairs in zip(group, hashed, strict=True):
            fs = summary.folders.setdefault(_folder_key(batch), FolderSummary())
            for i, oid in pairs:
                msg = batch.messages[i]
                pd = prov_dict(origin_to_provenance(msg.origin, now))
                if oid in by_id and oid not in tx.new_ids:
                    parsed, sealed, own_tags = by_id[oid]
                    tags = _final_tags(archive, parsed, own_tags, local_tags)
                    late.stored(oid, parsed, own_tags, tags)
                    if parsed.message_id:
                        local_tags.setdefault(parsed.message_id, {})[oid] = tags
                    tx.put(sealed, pd, tags, parsed, known_new=True)
                    new_docs[oid] = (sealed.size, parsed, tags, [pd])
                    summary.imported += 1
                    fs.imported += 1
                    summary.bytes += sealed.size
                    if parsed.parse_errors:
                        summary.parse_errors += 1
                        fs.parse_errors += 1
                    continue
                summary.duplicates += 1
                fs.duplicates += 1
                if tx.add_copy(oid, pd):
                    if oid in new_docs:
                        new_docs[oid][3].append(pd)
                    else:
                        grown.append(oid)
            for ev in batch.events:
                data = {"kind": ev.kind, "account": batch.account, "folder": batch.folder, **dict(ev.detail)}
                tx.event("source_event", data)
                summary.events.append(data)
            for cp in batch.checkpoints:
                tx.checkpoint(cp.key, cp.value)
    for batch in group:
        fs = summary.folders.setdefault(_folder_key(batch), FolderSummary())
        for f in batch.failures:
            summary.failed += 1
            summary.source_errors += f.whole
            fs.failed += 1
            if len(summary.failures) < MAX_LISTED_FAILURES:  # all are logged; the summary lists the first ones
                summary.failures.append({"location": f.location, "reason": f.reason})
            log.warning("not imported", location=f.location, reason=f.reason)
    if grown:
        # Earlier messages seen in a new place: their source/folder facets changed.
        repo.catalog.mark_indexed(grown, 0)
    indexer.add([index_doc(oid, size, p, t, provs) for oid, (size, p, t, provs) in new_docs.items()])
    if progress is not None:
        progress(summary.imported + summary.duplicates + summary.failed, summary.bytes)


def _folder_key(batch: Batch) -> str:
    return "/".join(x for x in (batch.account, batch.folder) if x) or "-"


def _final_tags(archive: Archive, parsed: ParsedMessage, own: Tags | None, local: LocalTags) -> Tags:
    """The worker's tags, unless the message has no matter of its own and a parent to inherit from."""
    if own is not None and (own.matters or not archive.cfg.tagging.thread_inheritance):
        return own
    parents = archive.parent_tags(parsed, local)
    if own is None:
        return archive.tagger.tag(parsed, parent_tags=parents)
    return archive.tagger.inherit(own, parents)
