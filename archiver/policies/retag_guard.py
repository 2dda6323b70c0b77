"""What a retag would take out from under the legal holds and compliance rules that cover it.

Matter holds and ``client``/``matter`` rule criteria compare against a message's current
tags, and ``archiver retag`` rewrites the tags after a change to the tagging configuration
(a client renamed, a matter pattern narrowed).  Done blindly, that silently released matter
holds and moved mail out of compliance rules into a shorter default.  So before a retag, the
new tags are worked out without committing anything (``Archive.retag``'s own decisions,
``archiver.threads.retag_chunks``, parents before replies), and every message that would
leave a standing matter hold or a compliance rule in force is reported; the retag is refused
unless explicitly allowed, and an allowed one is journalled with what it uncovers.

The dry run parses every message once more, so it runs only when a standing matter hold or
a compliance rule with a ``client`` or ``matter`` criterion could be affected.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from archiver.errors import PolicyError
from archiver.model import Tags
from archiver.policies.filing import MatterOwners
from archiver.policies.holds import Hold, hold_matches, list_holds
from archiver.policies.journalled import rules_in_force
from archiver.policies.records import LoadedMessage, iter_records
from archiver.policies.retention import MessageRecord, rule_matches
from archiver.policies.rules import Rule
from archiver.threads import retag_chunks

if TYPE_CHECKING:
    from archiver.archive import Archive

#: messages named per hold or rule in the refusal (the JSON and the journal get them all).
_SHOWN = 5


@dataclass
class Uncovered:
    """Per standing matter hold and per compliance rule, the messages a retag would take from it."""

    holds: dict[str, list[str]] = field(default_factory=dict)
    rules: dict[str, list[str]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.holds or self.rules)

    def lines(self) -> list[str]:
        out = [f"{len(ids)} messages would leave the hold {case!r}" + _some(ids) for case, ids in self.holds.items()]
        out += [
            f"{len(ids)} messages would leave the compliance rule {name!r}" + _some(ids)
            for name, ids in self.rules.items()
        ]
        return out

    def to_json(self) -> dict[str, Any]:
        return {"holds": self.holds, "rules": self.rules}


def _some(ids: list[str]) -> str:
    return " (" + ", ".join(i[:12] for i in ids[:_SHOWN]) + (", …" if len(ids) > _SHOWN else "") + ")"


def _guarded(archive: Archive) -> tuple[list[Hold], list[Rule]]:
    """The matter holds standing and the compliance rules in force whose coverage depends on tags."""
    holds = [h for h in list_holds(archive.repo.catalog, active_only=True) if h.kind == "matter"]
    rules = [r for r in rules_in_force(archive).rules if r.mode == "compliance" and (r.match.client or r.match.matter)]
    return holds, rules


def new_tags(archive: Archive) -> dict[str, Tags]:
    """id -> tags for every message whose tags a retag would change, committing nothing.

    The decisions of ``Archive.retag`` itself (archiver.threads.retag_chunks), as a dry run.
    """
    with archive.workers() as w:
        return {
            oid: tags for chunk in retag_chunks(archive, w, committed=False) for oid, _parsed, tags in chunk.changed
        }


def _retagged(loaded: LoadedMessage, tags: Tags, owners: MatterOwners) -> MessageRecord:
    return dataclasses.replace(
        loaded.record, client=tags.client, matters=tags.matters, filings=owners.filings(tags.client, tags.matters)
    )


def retag_impact(archive: Archive) -> Uncovered:
    """What a retag under the current tagging configuration would take from holds and compliance rules."""
    holds, rules = _guarded(archive)
    out = Uncovered()
    if not holds and not rules:
        return out
    changed = new_tags(archive)
    owners = MatterOwners(archive.cfg.tagging)
    for loaded in iter_records(archive, {}, sorted(changed)):
        old = loaded.record
        new = _retagged(loaded, changed[old.id], owners)
        for h in holds:
            if hold_matches(h, client=old.client, matters=old.matters, addresses=()) and not hold_matches(
                h, client=new.client, matters=new.matters, addresses=()
            ):
                out.holds.setdefault(h.case, []).append(old.id)
        for r in rules:
            if any(rule_matches(r, old, c) and not rule_matches(r, new, c) for c in old.copies):
                out.rules.setdefault(r.name, []).append(old.id)
    return out


def refuse_or_record(archive: Archive, impact: Uncovered, *, allowed: bool, actor: str) -> None:
    """Refuse a retag that uncovers mail, or journal (with ``actor``) that it was allowed to."""
    if not impact:
        return
    if not allowed:
        raise PolicyError(
            "The retag was refused; nothing was retagged: "
            + "; ".join(impact.lines())
            + ". Change the tagging configuration back, or give --allow-release to retag anyway (journalled)."
        )
    with archive.repo.transaction(actor) as tx:
        tx.event("retag", {"rules": archive.tagger.fingerprint(), "override": True, "uncovered": impact.to_json()})
