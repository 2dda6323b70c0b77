"""Holds and retention status for the message page and the compliance overview.

The decisions belong to ``archiver.policies`` (holds.py, retention.py, apply.py); this
module only asks them about one message, or lists the holds, and decides what a walled user
may learn of them (:func:`hold_visible`, :func:`shown_holds`).  A status that cannot be
worked out (e.g. an invalid rules file) is shown as "unknown" with the reason: a status
display must never stop a message from being shown.
Call these under the WebArchive lock (they read the shared catalog connection).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from archiver.archive import Archive
from archiver.clock import iso
from archiver.policies.apply import HoldCheck, LoadedMessage, evaluate, iter_records, rules_in_force
from archiver.policies.holds import list_holds
from archiver.policies.retention import Outcome
from archiver.web.access import Scope


def all_holds(archive: Archive) -> list[dict[str, Any]]:
    """Every hold, placed or released, newest first."""
    return [h.to_json() for h in reversed(list_holds(archive.repo.catalog))]


def _hidden_labels(scope: Scope) -> set[str]:
    """Every client and matter label a wall bars for ``scope`` (pairs contribute both parts)."""
    ex = scope.exclude
    return {*ex.clients, *ex.matters, *(part for pair in ex.pairs for part in pair)}


def names_hidden(scope: Scope, text: str) -> bool:
    """Whether ``text`` (a hold's query or custodian, a search as typed) names a walled label.

    A label counts as named when it appears as a whole word (``client:globex``, ``"globex"``,
    ``20871-0001``) or when a prefix in the text (``glob*``) would expand to it.  It errs on
    the side of hiding: a user whose list of allowed clients restricts them is told nothing.
    """
    if scope.whole_archive:
        return False
    if scope.restricted:
        return True
    lowered = text.lower()
    for label in _hidden_labels(scope):
        if re.search(rf"(?<![\w-]){re.escape(label)}(?![\w-])", lowered):
            return True
    prefixes = re.findall(r"([\w][\w.-]*)\*", lowered)
    return any(label.startswith(p) for p in prefixes for label in _hidden_labels(scope))


def hold_visible(scope: Scope, hold: dict[str, Any], covers_hidden: Callable[[dict[str, Any]], bool]) -> bool:
    """Whether ``scope`` may see this hold (its case, target and reason) in lists and on messages.

    * a matter hold: when the user sees that client's matter;
    * a custodian or query hold: never for a user restricted to an allowed list; for a walled
      user only when its target names no walled client or matter (:func:`names_hidden`) and
      ``covers_hidden(hold)`` says it covers no message the user may not see (its query text or
      custodian would otherwise tell what the walled mail is about, or who wrote it).
    """
    if scope.whole_archive:
        return True
    kind, value = str(hold.get("kind", "")), str(hold.get("value", ""))
    if kind == "matter":
        client, _sep, matter = value.partition("/")
        return scope.sees(client, (matter,))
    if scope.restricted or names_hidden(scope, value):
        return False
    return not covers_hidden(hold)


def custodian_query(address: str) -> str:
    """The search that finds the messages a custodian hold covers by address (sender, recipients, Bcc)."""
    quoted = address.replace('"', " ").strip()
    return " OR ".join(f'{field}:"{quoted}"' for field in ("from", "to", "cc", "bcc"))


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
            rules = rules_in_force(archive)  # what retention decides under, not the file being edited
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


def shown_holds(
    scope: Scope,
    holds: list[dict[str, Any]],
    retention: dict[str, Any] | None,
    covers_hidden: Callable[[dict[str, Any]], bool],
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The covering holds and the retention decision as this user may see them on a message.

    A user without the ``holds`` permission learns only that the message is held (the
    decision "hold"), never a case, target or reason; a walled user sees only the holds
    :func:`hold_visible` allows.  When a hold is withheld, the decision's reason ("held by
    CASE, ...; otherwise ...") loses its case names too.
    """
    shown = [h for h in holds if scope.can("holds") and hold_visible(scope, h, covers_hidden)]
    if len(shown) == len(holds) or retention is None:
        return shown, retention
    reason = str(retention.get("reason", ""))
    prefix = f"held by {', '.join(sorted(str(h['case']) for h in holds))}; "
    rest = reason[len(prefix) :] if reason.startswith(prefix) else ""
    return shown, {**retention, "reason": f"under legal hold; {rest}" if rest else "under legal hold"}


def _decision(outcome: Outcome) -> dict[str, Any]:
    return {
        "decision": outcome.decision.value,
        "rule": outcome.rule,
        "action": outcome.action,
        "mode": outcome.mode,
        "end": iso(outcome.end) if outcome.end else None,
        "reason": outcome.reason,
    }
