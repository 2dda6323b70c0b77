"""Holds and retention status for the message page and the compliance overview.

The decisions belong to ``archiver.policies`` (holds.py, retention.py, apply.py); this
module only asks them about one message, or lists the holds, and filters what a walled user
may learn.  A status that cannot be worked out (e.g. an invalid rules file) is shown as
"unknown" with the reason: a status display must never stop a message from being shown.
Call these under the WebArchive lock (they read the shared catalog connection).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from archiver.archive import Archive
from archiver.clock import iso
from archiver.policies.apply import HoldCheck, LoadedMessage, evaluate, iter_records, rules_path
from archiver.policies.holds import list_holds
from archiver.policies.retention import Outcome
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


def status(archive: Archive, oid: str, info: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The active holds covering one message, and its retention decision now.

    Both come from ``archiver.policies.apply`` (HoldCheck, evaluate), as a retention run
    would make them, leniently: a hold or rule query that cannot run covers nothing here.
    The message's record is loaded once, by ``evaluate`` (or alone when the rules cannot be read).
    """
    check = HoldCheck(archive, [oid], lenient=True)
    loaded: LoadedMessage | None = None
    decision: dict[str, Any] | None = None
    if info.get("disposed_at"):  # judged on the tags the catalog still has
        decision = {"decision": "disposed", "at": info["disposed_at"], "rule": info.get("disposed_rule")}
    else:
        try:
            rules = load_rules(rules_path(archive))
            found = next(evaluate(archive, rules, archive.repo.clock(), [oid], holds=check, lenient=True), None)
        except Exception as exc:  # shown, never raised: see the module docstring
            loaded = next(iter_records(archive, {}, [oid]), None)
            decision = {"decision": "unknown", "reason": f"{type(exc).__name__}: {exc}"[:300]}
        else:
            if found is not None:
                loaded, decision = found[0], _decision(found[1])
    client: str = str(info.get("client", ""))
    matters: Sequence[str] = list(info.get("matters", []))
    addresses: frozenset[str] = frozenset()
    if loaded is not None:
        client, matters, addresses = loaded.record.client, loaded.record.matters, loaded.addresses
    holds = [h.to_json() for h in check.covering(oid, client, matters, addresses)]
    return holds, decision


def _decision(outcome: Outcome) -> dict[str, Any]:
    return {
        "decision": outcome.decision.value,
        "rule": outcome.rule,
        "action": outcome.action,
        "mode": outcome.mode,
        "end": iso(outcome.end) if outcome.end else None,
        "reason": outcome.reason,
    }
