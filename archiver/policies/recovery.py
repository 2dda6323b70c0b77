"""Finishing a disposal run that was interrupted, and keeping the index free of shredded text.

A run disposes in batches: each batch's ``dispose`` tombstones are committed (and the keys
destroyed), then its documents are deleted from the index; the index segments are rewritten
(``merge_and_gc``) and the certificate issued once all batches are done.  A run killed in
between (the daemon's shutdown timeout, a kill, a power cut) used to leave disposals that no
certificate ever named, an index that made ``verify`` fail, and the plaintext of shredded
mail in the index files.  So:

* a run journals its start first (a ``disposition`` record with ``"phase": "started"``, its
  kind, rules fingerprint and the ids it means to dispose of);
* every plan and apply makes the index hold exactly the live messages, and rewrites its
  segments whenever it held documents of disposed messages: the ones it just deleted, or
  those of disposals no certificate names yet;
* the next apply or approve first certifies the disposals no certificate names (kind
  ``recovered``), pointing at the start record of the run they came from.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from archiver.clock import iso
from archiver.logging import get_logger
from archiver.model import IndexDoc
from archiver.policies.certificates import Certificate, Run, issue

if TYPE_CHECKING:
    from archiver.archive import Archive

_log = get_logger("archiver.retention")


def journal_start(archive: Archive, *, kind: str, actor: str, as_of: datetime, rules_fingerprint: str,
                  ids: Sequence[str]) -> None:  # fmt: skip
    """Journal that a disposal run is about to dispose of ``ids`` (so an interruption is visible)."""
    with archive.repo.transaction(actor) as tx:
        tx.event(
            "disposition",
            {
                "phase": "started",
                "kind": kind,
                "as_of": iso(as_of),
                "rules_fingerprint": rules_fingerprint,
                "count": len(ids),
                "ids": list(ids),
            },
        )


def _last_certified_seq(archive: Archive) -> int:
    row = archive.repo.catalog.conn.execute(
        "SELECT MAX(seq) FROM events WHERE type = 'disposition' AND json_extract(data, '$.certificate') IS NOT NULL"
    ).fetchone()
    return int(row[0] or 0)


def uncertified(archive: Archive) -> list[dict[str, Any]]:
    """The disposals journalled after the last certificate: those of an interrupted run."""
    rows = archive.repo.catalog.conn.execute(
        "SELECT seq, time, data FROM events WHERE type = 'dispose' AND seq > ? ORDER BY seq",
        (_last_certified_seq(archive),),
    )
    out = []
    for seq, when, data in rows:
        d = json.loads(data)
        out.append({"id": d["id"], "sha256": d.get("sha256", d["id"]), "rule": d.get("rule", ""), "end": None,
                    "disposed_at": when, "seq": seq})  # fmt: skip
    return out


def _started_record(archive: Archive, before: int) -> dict[str, Any] | None:
    """The start record of the run whose disposals begin at ``before`` (its seq, kind and planned count)."""
    row = archive.repo.catalog.conn.execute(
        "SELECT seq, time, actor, data FROM events WHERE type = 'disposition' AND seq < ? "
        "AND json_extract(data, '$.phase') = 'started' ORDER BY seq DESC LIMIT 1",
        (before,),
    ).fetchone()
    if row is None or row[0] < _last_certified_seq(archive):
        return None
    d = json.loads(row[3])
    return {"seq": row[0], "time": row[1], "actor": row[2], "kind": d.get("kind"), "planned": d.get("count"),
            "rules_fingerprint": d.get("rules_fingerprint")}  # fmt: skip


def reconcile_index(archive: Archive) -> int:
    """Make the index hold exactly the live messages the catalog says it holds.

    A disposed message still in it (a crash between the two steps) is deleted.  A live
    message the catalog marks as indexed but the index lacks (the index folder deleted,
    which docs/format.md allows, or documents removed) is marked unindexed, for
    ``catch_up`` to index again: query holds are evaluated through the index, and a
    message missing from it would otherwise escape every one of them.  Returns how many
    documents were deleted.
    """
    catalog = archive.repo.catalog
    live = set(catalog.live_ids())
    try:
        in_index = archive.index.all_ids()
    except Exception:
        in_index = set()  # no usable index: catch_up rebuilds it
    stale = in_index - live
    if stale:
        archive.index.delete(stale)
        archive.index.commit()
    missing = [i for i in catalog.indexed_live_ids() if i not in in_index]
    if missing:
        _log.warning("index_missing_messages", count=len(missing))
        catalog.mark_indexed(missing, 0)
    return len(stale)


def _reload_docs(archive: Archive) -> Any:
    def reload(ids: Sequence[str]) -> list[IndexDoc]:
        with archive.workers() as w:
            return archive.docs_for([(oid, p) for oid, p, _err in archive.reparse(ids, w) if p is not None])

    return reload


def purge_index(archive: Archive, *, shredded: bool = False) -> None:
    """Reconcile the index, and rewrite its segments when it held disposed messages' documents.

    ``shredded``: documents of disposed messages were deleted from it since its segments were
    last rewritten (a run's own disposals, or an interrupted run's).  Deleted documents keep
    their words and stored text on disk until their segment is rewritten.
    """
    stale = reconcile_index(archive)
    if stale or shredded or uncertified(archive):
        archive.index.merge_and_gc(_reload_docs(archive))


def recover_disposals(archive: Archive, *, actor: str, now: datetime) -> Certificate | None:
    """Certify (kind ``recovered``) the disposals an interrupted run committed without a certificate."""
    orphans = uncertified(archive)
    if not orphans:
        return None
    _log.warning("disposition_recovered", count=len(orphans))
    purge_index(archive, shredded=True)
    run = _started_record(archive, orphans[0]["seq"])
    disposed = [{k: v for k, v in o.items() if k != "seq"} for o in orphans]
    extra = {"recovered": {"run": run, "note": "disposals committed by a run that ended before its certificate"}}
    return issue(
        archive,
        Run(kind="recovered", actor=actor, as_of=now, started_at=iso(archive.repo.clock()),
            rules_fingerprint=str((run or {}).get("rules_fingerprint") or ""), counts={}, extra=extra),
        disposed,
        [],
    )  # fmt: skip
