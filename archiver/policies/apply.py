"""Applying retention to an archive: plan (a dry run), apply (dispose of what is due), approve (review).

Disposal is crypto-shredding (docs/retention.md): for each message due, a ``dispose``
tombstone (id, hash, rule, reason) is journalled and, once committed, its wrapped data key is
destroyed (``Transaction.dispose``), so the ciphertext left in the append-only segments can
never be decrypted again; the message is deleted from the index and the index segments that
held it are rewritten (``merge_and_gc``) so its text is physically gone.  Each apply ends with
a disposition certificate signed with the archive's Ed25519 key (certificates.py).

Decisions are made under the journalled rules only (journalled.py): the rules file is a
proposal until ``accept_rules`` adopts it, and ``apply``/``approve`` refuse while it differs.
``plan`` journals nothing; it may show what the file would do (``proposed``).

Before deciding anything, plan and apply bring the index up to date (query rules and query
holds are evaluated through it).  Everything happens under the archive's writer lock, so no
ingest or hold change interleaves with a decision; a hold requested meanwhile is honoured
batch by batch (lateholds.py), an interrupted run is certified by the next (recovery.py), and
``stop`` ends a run at a batch boundary with a certificate for what it did.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from archiver.clock import iso
from archiver.errors import ArchiverError, NotFoundError, PolicyError
from archiver.logging import get_logger
from archiver.policies.certificates import (
    Certificate,
    Run,
    check_against_archive,
    issue,
    load_certificate,
    verify_certificate,
)
from archiver.policies.confirm import confirm
from archiver.policies.holds import Hold, hold_matches, list_holds, matching
from archiver.policies.journalled import (
    journal_rules,
    last_journalled_rules,
    require_unchanged,
    rules_in_force,
    rules_path,
    rules_state,
)
from archiver.policies.lateholds import LateHolds
from archiver.policies.matters import closures as matter_closures
from archiver.policies.records import LoadedMessage, iter_records
from archiver.policies.recovery import journal_start, purge_index, recover_disposals
from archiver.policies.retention import Decision, Outcome, decide
from archiver.policies.rules import RuleSet, check_change
from archiver.policies.unmatched import RuleUsage

if TYPE_CHECKING:
    from archiver.archive import Archive

#: what this module defines, and the names others reach through it (the CLI, the web's message page, tests).
__all__ = [
    "BATCH",
    "Acceptance",
    "Certificate",
    "HoldCheck",
    "LoadedMessage",
    "Plan",
    "PlanItem",
    "accept_rules",
    "apply",
    "approve",
    "check_against_archive",
    "evaluate",
    "iter_records",
    "last_journalled_rules",
    "load_certificate",
    "plan",
    "review",
    "rules_in_force",
    "rules_path",
    "verify_certificate",
]

BATCH = 500
_log = get_logger("archiver.retention")


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanItem:
    """One message in a plan, with what decided it."""

    id: str
    decision: str
    rule: str
    action: str
    mode: str
    end: str | None
    reason: str
    holds: tuple[str, ...] = ()
    subject: str = ""
    date: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "decision": self.decision,
            "rule": self.rule,
            "action": self.action,
            "mode": self.mode,
            "end": self.end,
            "reason": self.reason,
            "holds": list(self.holds),
            "subject": self.subject,
            "date": self.date,
        }


@dataclass
class Plan:
    """What retention would do at ``as_of``: due messages, review items, and what holds keep."""

    as_of: datetime
    rules_fingerprint: str
    rules_file: str
    dispose: list[PlanItem] = field(default_factory=list)
    review: list[PlanItem] = field(default_factory=list)
    #: messages a hold keeps although their retention has ended (the holds' effect).
    held: list[PlanItem] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    #: the standing holds the plan was decided under.
    holds: list[Hold] = field(default_factory=list)
    #: what the index answered to each query of the standing holds and rules (query -> ids):
    #: confirm.confirm checks the messages due against the same queries on their own.
    index_matches: dict[str, set[str]] = field(default_factory=dict)
    #: how many messages each rule matched (a copy of them, at least).
    rule_counts: dict[str, int] = field(default_factory=dict)
    #: rule values and rules that match no archived message (unmatched.py).
    findings: list[str] = field(default_factory=list)
    #: planned under the rules file rather than the journalled rules (``plan --proposed``).
    proposed: bool = False
    #: the rules in force and the rules file (journalled.RulesState.to_json).
    rules: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "as_of": iso(self.as_of),
            "rules_file": self.rules_file,
            "rules_fingerprint": self.rules_fingerprint,
            "proposed": self.proposed,
            "rules": self.rules,
            "counts": self.counts,
            "rule_counts": self.rule_counts,
            "findings": self.findings,
            "dispose": [i.to_json() for i in self.dispose],
            "review": [i.to_json() for i in self.review],
            "held": [i.to_json() for i in self.held],
            "holds": [h.to_json() for h in self.holds if h.active],
        }


# -- deciding ---------------------------------------------------------------------------------


def _prepare(archive: Archive, *rulesets: RuleSet) -> None:
    """Under the lock: recover, and bring the index up to date (query holds and rules run through it)."""
    archive.repo.recover()
    purge_index(archive)
    archive.catch_up()
    if _has_queries(archive, rulesets) and (left := archive.repo.catalog.unindexed(1)):
        raise PolicyError(
            f"Message {left[0][:12]} (and perhaps others) could not be indexed, so the query holds and "
            "rules cannot be checked against it: nothing was decided. Run `archiver verify --full` and "
            "`archiver reindex`."
        )


def _has_queries(archive: Archive, rulesets: Sequence[RuleSet]) -> bool:
    """Do any standing holds or retention rules select messages by search query?"""
    holds = list_holds(archive.repo.catalog, active_only=True)
    return any(h.kind == "query" for h in holds) or any(
        r.match.query is not None for rules in rulesets for r in rules.rules
    )


class HoldCheck:
    """Which active holds cover a message: the holds read once, each query hold run once.

    ``ids`` limits the query holds' searches to those messages (see :func:`matching`).
    ``lenient`` (the web's message page) lets a query that cannot run cover nothing instead
    of failing: a status display must not stop a message from being shown.  A retention
    run is strict, since a hold it cannot evaluate must stop it.
    """

    def __init__(self, archive: Archive, ids: Sequence[str] | None = None, *, lenient: bool = False) -> None:
        self.holds = list_holds(archive.repo.catalog, active_only=True)
        self._ids = {h.case: _matching(archive, h.value, ids, lenient) for h in self.holds if h.kind == "query"}

    def query_matches(self) -> dict[str, set[str]]:
        """The ids the index matched for each query hold, by query."""
        return {h.value: self._ids[h.case] for h in self.holds if h.kind == "query"}

    def covering(self, oid: str, client: str, matters: Sequence[str], addresses: Collection[str]) -> list[Hold]:
        return [
            h
            for h in self.holds
            if hold_matches(
                h, client=client, matters=matters, addresses=addresses, query_ids=self._ids.get(h.case, ()), oid=oid
            )
        ]


def _matching(archive: Archive, query: str, ids: Sequence[str] | None, lenient: bool) -> set[str]:
    try:
        return matching(archive, query, ids)
    except ArchiverError:
        if lenient:
            return set()
        raise


def evaluate(
    archive: Archive,
    rules: RuleSet,
    now: datetime,
    ids: Sequence[str] | None = None,
    *,
    holds: HoldCheck | None = None,
    lenient: bool = False,
    answers: dict[str, set[str]] | None = None,
) -> Iterator[tuple[LoadedMessage, Outcome]]:
    """The retention decision for every live message (or those in ``ids``), holds included.

    The one place a decision is made: the plan, approvals and the web's message page all
    come here.  ``holds`` reuses a HoldCheck made for the same ``ids``; ``lenient`` as there.
    ``answers`` receives what the index matched for each hold and rule query, for a disposal
    to re-check the messages against (confirm.confirm) without searching again.
    """
    check = holds if holds is not None else HoldCheck(archive, ids, lenient=lenient)
    by_query = {q: _matching(archive, q, ids, lenient) for r in rules.rules if (q := r.match.query) is not None}
    qrules = {r.name: by_query[r.match.query] for r in rules.rules if r.match.query is not None}
    if answers is not None:
        answers.update(check.query_matches())
        answers.update(by_query)
    closed = matter_closures(archive.repo.catalog)
    for loaded in iter_records(archive, qrules, ids):
        rec = loaded.record
        held = [h.case for h in check.covering(rec.id, rec.client, rec.matters, loaded.addresses)]
        yield loaded, decide(rec, rules, now, closures=closed, holds=held)


def _item(loaded: LoadedMessage, out: Outcome) -> PlanItem:
    return PlanItem(
        id=out.id,
        decision=out.decision.value,
        rule=out.rule,
        action=out.action,
        mode=out.mode,
        end=iso(out.end) if out.end else None,
        reason=out.reason,
        holds=out.holds,
        subject=loaded.subject,
        date=loaded.date,
    )


def _build_plan(archive: Archive, rules: RuleSet, now: datetime) -> Plan:
    """Decide every live message under ``rules`` (the index and holds already prepared)."""
    check = HoldCheck(archive)
    plan = Plan(as_of=now, rules_fingerprint=rules.fingerprint, rules_file=str(rules_path(archive)), holds=check.holds)
    counts = {"messages": 0, "keep": 0, "dispose": 0, "review": 0, "hold": 0, "held_past_end": 0, "waiting": 0}
    usage = RuleUsage()
    for loaded, out in evaluate(archive, rules, now, holds=check, answers=plan.index_matches):
        usage.add(loaded.record, out)
        counts["messages"] += 1
        counts[out.decision.value] += 1
        if out.end is None and _waiting(out):
            counts["waiting"] += 1
        if out.decision is Decision.DISPOSE:
            plan.dispose.append(_item(loaded, out))
        elif out.decision is Decision.REVIEW:
            plan.review.append(_item(loaded, out))
        elif out.decision is Decision.HOLD and out.end is not None and out.end <= now:
            counts["held_past_end"] += 1
            plan.held.append(_item(loaded, out))
    plan.counts = counts
    plan.rule_counts = {r.name: usage.matched.get(r.name, 0) for r in rules.all_rules()}
    plan.findings = usage.report(rules)
    return plan


def _waiting(out: Outcome) -> bool:
    """Kept because an event (a matter closing) has not happened yet."""
    return any(c.start is None for c in out.copies)


def plan(archive: Archive, now: datetime, actor: str = "system", *, proposed: bool = False) -> Plan:
    """A dry run at ``now``: what would be disposed (and under which rule), reviewed, and kept by holds.

    Under the journalled rules; ``proposed`` plans under the rules file instead, to see what
    accepting it would do.  Nothing is journalled (``actor`` is kept for the callers' sake);
    the index is brought up to date, as every reader of it would.
    """
    del actor
    with archive.repo.lock():
        state = rules_state(archive)
        rules = state.in_force
        if proposed:
            if state.file_rules is None:
                raise PolicyError(state.file_error or f"The rules file {state.file} cannot be read.")
            rules = state.file_rules
        _prepare(archive, rules)
        p = _build_plan(archive, rules, now)
        p.proposed, p.rules = proposed, state.to_json()
        return p


def review(archive: Archive, now: datetime, actor: str = "system") -> list[PlanItem]:
    """Messages whose retention ended under a ``review`` rule, waiting for a person's approval."""
    return plan(archive, now, actor).review


# -- adopting a rules file --------------------------------------------------------------------


@dataclass
class Acceptance:
    """What accepting the rules file changed: the rules, and the plan's counts before and after."""

    fingerprint: str
    changes: list[str]
    before: dict[str, int]
    after: dict[str, int]
    findings: list[str]
    unchanged: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "unchanged": self.unchanged,
            "changes": self.changes,
            "effect": {"before": self.before, "after": self.after},
            "findings": self.findings,
        }


def _new_compliance_findings(old: RuleSet, new: RuleSet, findings: Sequence[str]) -> list[str]:
    """The findings about compliance rules this acceptance adds: once journalled, what they
    match can never change, so a typo in one would be kept for good."""
    added = [r.name for r in new.rules if r.mode == "compliance" and old.rule(r.name) is None]
    return [f for f in findings if any(f.startswith(f"rule {name!r}") for name in added)]


def accept_rules(archive: Archive, now: datetime, actor: str, *, allow_unmatched: bool = False) -> Acceptance:
    """Adopt the rules file as the rules in force, journalled with ``actor``, what changed and its effect.

    Refused when the file does not validate or would weaken a compliance rule (rules.check_change),
    and, unless ``allow_unmatched``, when a new compliance rule has values matching no archived
    message (unmatched.py).
    """
    with archive.repo.lock():
        state = rules_state(archive)
        new = state.file_rules
        if new is None:
            raise PolicyError(state.file_error or f"The rules file {state.file} cannot be read.")
        if not state.differs:
            return Acceptance(fingerprint=new.fingerprint, changes=[], before={}, after={}, findings=[], unchanged=True)
        changes = check_change(state.in_force, new)
        _prepare(archive, state.in_force, new)
        before = _build_plan(archive, state.in_force, now)
        after = _build_plan(archive, new, now)
        frozen = _new_compliance_findings(state.in_force, new, after.findings)
        if frozen and not allow_unmatched:
            raise PolicyError(
                "The rules file was not accepted: " + "; ".join(frozen) + ". A compliance rule's match can never "
                "change once accepted: correct the value, or give --allow-unmatched if it is meant for mail to come."
            )
        effect = {"as_of": iso(now), "before": before.counts, "after": after.counts, "findings": after.findings}
        journal_rules(archive, new, changes, actor=actor, effect=effect)
        return Acceptance(new.fingerprint, changes, before.counts, after.counts, after.findings)


# -- disposing --------------------------------------------------------------------------------


def _dispose_batch(archive: Archive, batch: Sequence[PlanItem], kind: str, actor: str) -> list[dict[str, Any]]:
    """Journal the tombstones of ``batch`` (the keys go at the commit) and delete its documents."""
    repo = archive.repo
    with repo.transaction(actor) as tx:
        for it in batch:
            tx.dispose(it.id, it.rule, f"{kind}: retention ended {it.end[:10] if it.end else '-'} ({it.reason})")
    ids = [it.id for it in batch]
    archive.index.delete(ids)
    archive.index.commit()
    rows = repo.catalog.objects(ids)
    return [{"id": it.id, "sha256": it.id, "rule": it.rule, "end": it.end,
             "disposed_at": row.disposed_at if (row := rows.get(it.id)) else None} for it in batch]  # fmt: skip


def _withhold(kept: Mapping[str, str]) -> list[dict[str, str]]:
    for oid, why in kept.items():
        _log.warning("disposal_withheld", id=oid, reason=why)
    return [{"id": oid, "reason": why} for oid, why in kept.items()]


def _dispose(
    archive: Archive,
    items: Sequence[PlanItem],
    run: Run,
    *,
    index_matches: Mapping[str, Collection[str]],
    planned_holds: Sequence[Hold],
    stop: Callable[[], bool] | None = None,
) -> Certificate:
    """Shred ``items`` in batches, purge the index, then sign, journal and save the certificate.

    Each batch is first confirmed by the messages themselves (:mod:`archiver.policies.confirm`)
    and checked against holds the plan did not see (:mod:`archiver.policies.lateholds`); what
    fails either is kept and listed.  ``stop`` is asked before each batch: a run told to stop
    ends there, with a certificate for what it disposed of.
    """
    if items:
        journal_start(archive, kind=run.kind, actor=run.actor, as_of=run.as_of,
                      rules_fingerprint=run.rules_fingerprint, ids=[it.id for it in items])  # fmt: skip
    late = LateHolds(planned_holds)
    disposed: list[dict[str, Any]] = []
    withheld: list[dict[str, str]] = []
    left = list(items)
    with archive.workers() as workers:  # one pool for the whole run, not one per batch
        while left and not (stop is not None and stop()):
            batch, left = left[:BATCH], left[BATCH:]
            confirmation = confirm(archive, [it.id for it in batch], index_matches, workers)
            kept = dict(confirmation.kept)
            kept.update(late.covering(archive, confirmation.due))
            withheld.extend(_withhold(kept))
            due = [it for it in batch if it.id not in kept]
            if due:
                disposed.extend(_dispose_batch(archive, due, run.kind, run.actor))
    if disposed:  # the plan's preparation left the index reconciled; only this run's deletions are new
        purge_index(archive, shredded=True)
    extra = dict(run.extra)
    if left:
        _log.warning("disposition_stopped", remaining=len(left))
        extra["stopped"] = {"remaining": len(left), "note": "stopped at a batch boundary; the next run goes on"}
    return issue(archive, dataclasses.replace(run, extra=extra), disposed, withheld)


def _begin_disposal(archive: Archive, actor: str, now: datetime) -> RuleSet:
    """What every disposing command does first, under the lock: verify, refuse a changed rules
    file, certify what an interrupted run left uncertified, and prepare (:func:`_prepare`).
    Returns the rules in force.

    The holds, tags, copies and earlier disposals a plan reads are the catalog's copies of
    the signed journal; `verify` compares them (and the segments and keys) with it.  An
    edited catalog, say a deleted hold row, must stop a disposal, not steer it.
    """
    archive.repo.recover()
    archive.repo.require_verified("Nothing was disposed", PolicyError)
    rules = require_unchanged(archive, "disposed").in_force
    recover_disposals(archive, actor=actor, now=now)
    _prepare(archive, rules)
    return rules


def apply(
    archive: Archive, now: datetime, actor: str = "system", *, stop: Callable[[], bool] | None = None
) -> Certificate:
    """Dispose of every message whose retention has ended at ``now`` under a ``delete`` rule.

    Held messages and review items are not touched.  Returns the signed certificate
    (``.disposed`` is the count), which is journalled and saved under ``certificates/``.
    ``stop`` (the daemon's shutdown flag) ends the run at the next batch boundary.
    """
    with archive.repo.lock():
        started = iso(archive.repo.clock())
        p = _build_plan(archive, _begin_disposal(archive, actor, now), now)
        counts = {k: p.counts[k] for k in ("messages", "review", "hold", "held_past_end")}
        run = Run(kind="retention", actor=actor, as_of=now, started_at=started, rules_fingerprint=p.rules_fingerprint,
                  counts=counts, extra={"findings": p.findings} if p.findings else {})  # fmt: skip
        return _dispose(archive, p.dispose, run, index_matches=p.index_matches, planned_holds=p.holds, stop=stop)


def _approvable(
    found: Mapping[str, tuple[LoadedMessage, Outcome]], wanted: Sequence[str], rule: str
) -> tuple[list[PlanItem], list[str]]:
    """The items ``approve`` may dispose of, and why the others may not be."""
    problems = []
    items = []
    for oid in dict.fromkeys(wanted):
        if oid not in found:
            problems.append(f"{oid[:12]} was already disposed of")
            continue
        loaded, out = found[oid]
        if out.decision is Decision.HOLD:
            problems.append(f"{oid[:12]} is under legal hold ({', '.join(out.holds)})")
        elif out.decision is not Decision.REVIEW:
            problems.append(f"{oid[:12]} is not awaiting review ({out.reason})")
        elif out.rule != rule:
            problems.append(f"{oid[:12]} is awaiting review under rule {out.rule!r}, not {rule!r}")
        else:
            items.append(_item(loaded, out))
    return items, problems


def approve(archive: Archive, ids: Sequence[str], rule: str, *, now: datetime, actor: str) -> Certificate:
    """Dispose of reviewed messages; each must be due for review under ``rule`` right now.

    Refused as a whole (nothing disposed) when any id is held, not yet due, decided by another
    rule, or unknown: compliance periods cannot be cut short by approving early.
    """
    with archive.repo.lock():
        started = iso(archive.repo.clock())
        rules = _begin_disposal(archive, actor, now)
        if rules.rule(rule) is None:
            raise PolicyError(f"There is no retention rule named {rule!r} in the journalled rules.")
        wanted = [archive.repo.resolve(i) for i in ids]
        answers: dict[str, set[str]] = {}
        check = HoldCheck(archive, wanted)
        found = {
            loaded.record.id: (loaded, out)
            for loaded, out in evaluate(archive, rules, now, wanted, holds=check, answers=answers)
        }
        items, problems = _approvable(found, wanted, rule)
        if problems:
            raise PolicyError("Nothing was disposed: " + "; ".join(problems) + ".")
        if not items:
            raise NotFoundError("No messages to approve.")
        run = Run(kind="review-approved", actor=actor, as_of=now, started_at=started,
                  rules_fingerprint=rules.fingerprint, counts={"approved": len(items)}, extra={})  # fmt: skip
        return _dispose(archive, items, run, index_matches=answers, planned_holds=check.holds)
