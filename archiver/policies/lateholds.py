"""Holds a disposal run's plan did not see, checked again right before each batch is destroyed.

The plan evaluates the holds standing when it starts; the batches come minutes later.  A
hold requested in between waits for the run's writer lock and announces itself through a
request file (archiver/policies/pending.py); one journalled by a writer the lock did not stop
(it cannot happen through the archive's own lock, but the check costs nothing) is in the
catalog.  Before each batch, both are evaluated on the batch's messages, and whatever they
cover is kept and listed as withheld in the certificate with the case named.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from archiver.logging import get_logger
from archiver.policies import pending
from archiver.policies.holds import Hold, hold_matches, list_holds, matching
from archiver.policies.records import iter_records

if TYPE_CHECKING:
    from archiver.archive import Archive

_log = get_logger("archiver.retention")


class LateHolds:
    """Finds, for a batch about to be disposed of, the messages holds placed or requested since the plan cover."""

    def __init__(self, planned: Iterable[Hold]) -> None:
        self._known = {(h.case, h.placed_at) for h in planned if h.active}

    def _new_holds(self, archive: Archive) -> tuple[list[tuple[Hold, str]], list[str]]:
        """(hold, how it came) for each hold the plan did not see, and the unreadable request files."""
        found = [
            (h, f"a hold placed during this run ({h.case!r} by {h.placed_by})")
            for h in list_holds(archive.repo.catalog, active_only=True)
            if (h.case, h.placed_at) not in self._known
        ]
        damaged = []
        for r in pending.pending(archive.repo.path):
            if not r.readable:
                damaged.append(str(r.path))
                continue
            hold = Hold(case=r.case, kind=r.kind, value=r.value, reason="", placed_at=r.requested_at,  # type: ignore[arg-type]
                        placed_by=r.actor)  # fmt: skip
            found.append((hold, f"a hold requested during this run ({r.case!r} by {r.actor} at {r.requested_at})"))
        return found, damaged

    def covering(self, archive: Archive, ids: Sequence[str]) -> dict[str, str]:
        """id -> why it must be kept, for the ids that a hold the plan did not see covers."""
        if not ids:
            return {}
        found, damaged = self._new_holds(archive)
        if damaged:
            _log.warning("pending_hold_request_unreadable", files=damaged)
            why = f"a hold request that cannot be read is waiting ({damaged[0]}); remove it once dealt with"
            return dict.fromkeys(ids, why)
        if not found:
            return {}
        query_ids = {i: matching(archive, h.value, ids) for i, (h, _why) in enumerate(found) if h.kind == "query"}
        out: dict[str, str] = {}
        for loaded in iter_records(archive, {}, ids):
            rec = loaded.record
            for i, (hold, why) in enumerate(found):
                if hold_matches(hold, client=rec.client, matters=rec.matters, addresses=loaded.addresses,
                                query_ids=query_ids.get(i, ()), oid=rec.id):  # fmt: skip
                    out[rec.id] = why
                    break
        return out
