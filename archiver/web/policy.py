"""Holds and retention status for the message page and the compliance overview.

The decisions belong to ``archiver.policies`` (holds.py, retention.py, apply.py); this
module only asks them about one message, or lists the holds, and filters what a walled user
may learn.  A status that cannot be worked out (e.g. an invalid rules file) is shown as
"unknown" with the reason: a status display must never stop a message from being shown.
Call these under the WebArchive lock (they read the shared catalog connection).
"""

from __future__ import annotations

from typing import Any

from archiver.archive import Archive
from archiver.clock import iso
from archiver.errors import ArchiverError
from archiver.policies.apply import iter_records, rules_path
from archiver.policies.holds import Hold, hold_matches, list_holds, matching
from archiver.policies.matters import closures as matter_closures
from archiver.policies.retention import decide
from archiver.policies.rules import load_rules
from archiver.web.access import Scope


def all_holds(archive: Archive) -> list[dict[str, Any]]:
    """Every hold, placed or released, newest first."""
    return [h.to_json() for h in reversed(list_holds(archive.repo.catalog))]


def hold_visible(scope: Scope, hold: dict[str, Any]) -> bool:
    """A hold naming a walled client or matter is not shown to that user (it would reveal the matter).

    Custodian and query holds name no client or matter; viewers (restricted to a list)
    see only matter holds inside their list.
    """
    kind, value = str(hold.get("kind", "")), str(hold.get("value", ""))
    if kind == "matter":
        client, _sep, matter = value.partition("/")
        return scope.sees(client, (matter,))
    return not scope.restricted


def _matches_query(archive: Archive, oid: str, query: str) -> bool:
    """Does a query (hold or rule) cover this one message?  A query that cannot run covers nothing here."""
    try:
        return bool(matching(archive, query, [oid]))
    except ArchiverError:
        return False


def _active_holds_for(
    archive: Archive, oid: str, client: str, matters: list[str], addresses: frozenset[str]
) -> list[Hold]:
    out = []
    for hold in list_holds(archive.repo.catalog, active_only=True):
        query_ids = {oid} if hold.kind == "query" and _matches_query(archive, oid, hold.value) else set()
        if hold_matches(hold, client=client, matters=matters, addresses=addresses, query_ids=query_ids, oid=oid):
            out.append(hold)
    return out


def holds_for(archive: Archive, oid: str, info: dict[str, Any]) -> list[dict[str, Any]]:
    """The active holds covering one message."""
    loaded = next(iter_records(archive, {}, [oid]), None)
    addresses = loaded.addresses if loaded is not None else frozenset()
    return [
        h.to_json()
        for h in _active_holds_for(archive, oid, str(info.get("client", "")), list(info.get("matters", [])), addresses)
    ]


def retention_for(
    archive: Archive, oid: str, info: dict[str, Any], holds: list[dict[str, Any]]
) -> dict[str, Any] | None:
    """The retention decision for one message now (rule, end, action), as retention would make it."""
    if info.get("disposed_at"):
        return {"decision": "disposed", "at": info["disposed_at"], "rule": info.get("disposed_rule")}
    try:
        rules = load_rules(rules_path(archive))
        query_rules = {
            r.name: {oid}
            for r in rules.rules
            if r.match.query is not None and _matches_query(archive, oid, r.match.query)
        }
        loaded = next(iter_records(archive, query_rules, [oid]), None)
        if loaded is None:
            return None
        outcome = decide(
            loaded.record,
            rules,
            archive.repo.clock(),
            closures=matter_closures(archive.repo.catalog),
            holds=[str(h["case"]) for h in holds],
        )
    except Exception as exc:  # shown, never raised: see the module docstring
        return {"decision": "unknown", "reason": f"{type(exc).__name__}: {exc}"[:300]}
    return {
        "decision": outcome.decision.value,
        "rule": outcome.rule,
        "action": outcome.action,
        "mode": outcome.mode,
        "end": iso(outcome.end) if outcome.end else None,
        "reason": outcome.reason,
    }
