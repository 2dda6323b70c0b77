"""Retention decisions: pure functions of a message record, the rules, the holds and ``now``.

Nothing here reads the archive or the clock, so every decision can be tested across years in
milliseconds and explained afterwards.  Precedence (docs/retention.md):

1. a legal hold beats everything: a held message is kept whatever the rules say;
2. each copy of a message (one provenance row: a source, mailbox and folder it was found in)
   is governed by the rules that match it, or by the default rule when none does; among
   them the longest retention (the latest end) wins, and ``forever`` beats any date;
3. a message stored once but referenced by several copies (deduplication) ends only when the
   retention of every copy has ended: the latest end over its copies decides;
4. an event-based start (``matter_closed``) whose event has not happened keeps the message;
5. a compliance-mode default is a floor: it governs every copy alongside the rules that match
   it, so no rule added later (a catch-all governance rule, say) can end a message's retention
   before the default promised.

At the end the deciding rule's action applies: ``delete`` makes the message due for
disposal, ``review`` lists it for a person to approve.  When two rules end on the same day,
``review`` beats ``delete`` and compliance beats governance (the more careful one decides).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from fnmatch import fnmatchcase

from archiver.policies.rules import DefaultRule, Rule, RuleSet


class Decision(StrEnum):
    KEEP = "keep"
    DISPOSE = "dispose"
    REVIEW = "review"
    HOLD = "hold"


@dataclass(frozen=True, slots=True, kw_only=True)
class Copy:
    """One reference to a message: where it was found and when it arrived there."""

    source: str
    account: str = ""
    folder: str = ""
    #: IMAP keywords (non-system flags) on this copy, the nearest thing to labels we capture.
    labels: tuple[str, ...] = ()
    #: the server's INTERNALDATE, else when it was fetched, else when it was archived.
    received: datetime
    #: why ``received`` is not the source's own time (empty when it is), for the plan's reasons.
    received_note: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageRecord:
    """What retention needs to know about one stored message."""

    id: str
    client: str
    matters: tuple[str, ...] = ()
    #: the Date header (UTC), or the arrival time when it was bad or missing.
    sent: datetime
    from_domains: frozenset[str] = frozenset()
    to_domains: frozenset[str] = frozenset()
    copies: tuple[Copy, ...]
    #: names of the rules whose search query matches this message (evaluated through the index).
    query_rules: frozenset[str] = frozenset()
    #: the (client, matter) pairs it carries (archiver/policies/filing.py): its client with each
    #: matter, and each matter with the client owning it.  Empty: its client with each matter.
    filings: tuple[tuple[str, str], ...] = ()

    def pairs(self) -> tuple[tuple[str, str], ...]:
        return self.filings or tuple((self.client, m) for m in self.matters)


@dataclass(frozen=True, slots=True, kw_only=True)
class CopyOutcome:
    """How one copy's retention was decided."""

    source: str
    account: str
    folder: str
    rule: str
    start: datetime | None
    end: datetime | None
    note: str
    #: every rule that matched this copy (the default when none did, or when it is a compliance floor).
    matched: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """The decision for one message, with the rule that decided it and why."""

    id: str
    decision: Decision
    rule: str
    action: str
    mode: str
    #: when the retention ends (None: never, or waiting for an event).
    end: datetime | None
    reason: str
    holds: tuple[str, ...] = ()
    copies: tuple[CopyOutcome, ...] = field(default=())


AnyRule = Rule | DefaultRule


def _ci(values: Collection[str]) -> set[str]:
    return {v.casefold() for v in values}


def _glob_any(patterns: Sequence[str], value: str) -> bool:
    v = value.casefold()
    return any(fnmatchcase(v, p.casefold()) for p in patterns)


def _domain_any(patterns: Sequence[str], domains: Collection[str]) -> bool:
    return any(d == p or d.endswith("." + p) for p in patterns for d in domains)


def _matched_pairs(rule: Rule, msg: MessageRecord) -> list[tuple[str, str]]:
    """The (client, matter) pairs of the message that a rule naming both client and matter matches."""
    clients = _ci(rule.match.client)
    return [(c, x) for c, x in msg.pairs() if c.casefold() in clients and _glob_any(rule.match.matter, x)]


def _filing_matches(rule: Rule, msg: MessageRecord) -> bool:
    """The rule's ``client`` and ``matter`` criteria (either may be absent)."""
    m = rule.match
    if m.client and m.matter:
        return bool(_matched_pairs(rule, msg))
    if m.client:
        return msg.client.casefold() in _ci(m.client)
    return not m.matter or any(_glob_any(m.matter, x) for x in msg.matters)


def rule_matches(rule: Rule, msg: MessageRecord, copy: Copy) -> bool:
    """True when every criterion of the rule's match holds for this copy of the message.

    ``client`` alone is the message's client; ``client`` with ``matter`` match a matter the
    message carries under that client, its own or the one owning the matter (filing.py).
    """
    m = rule.match
    if not _filing_matches(rule, msg):
        return False
    if m.source and not _glob_any(m.source, copy.source):
        return False
    if m.account and not _glob_any(m.account, copy.account):
        return False
    if m.folder and not _glob_any(m.folder, copy.folder):
        return False
    if m.from_domain and not _domain_any(m.from_domain, msg.from_domains):
        return False
    if m.to_domain and not _domain_any(m.to_domain, msg.to_domains):
        return False
    if m.label and not (_ci(m.label) & _ci(copy.labels)):
        return False
    return not (m.query is not None and rule.name not in msg.query_rules)


#: (client, matter), both casefolded -> when the matter closed, or None when it was reopened
#: (its latest event is a reopen); a matter with no event is absent.
Closures = Mapping[tuple[str, str], datetime | None]


def _closed_on(pairs: Sequence[tuple[str, str]], closures: Closures) -> datetime | None:
    """When the matter of ``pairs`` (one matter under each client it is carried under) closed.

    Closed under any of them counts, unless it was reopened under one of them; the latest
    close date decides.
    """
    dates = []
    for c, x in pairs:
        key = (c.casefold(), x.casefold())
        if key in closures:
            when = closures[key]
            if when is None:
                return None
            dates.append(when)
    return max(dates) if dates else None


def _start(rule: AnyRule, msg: MessageRecord, copy: Copy, closures: Closures) -> tuple[datetime | None, str]:
    if rule.start == "sent":
        return msg.sent, "sent"
    if rule.start == "received":
        return copy.received, f"received{copy.received_note}"
    pairs = list(msg.pairs())
    if isinstance(rule, Rule) and rule.match.matter:
        pairs = (
            _matched_pairs(rule, msg) if rule.match.client else [p for p in pairs if _glob_any(rule.match.matter, p[1])]
        )
    by_matter: dict[str, list[tuple[str, str]]] = {}
    for c, x in pairs:
        by_matter.setdefault(x.casefold(), []).append((c, x))
    if not by_matter:
        return None, "no matter to close (kept until filed under a matter that closes)"
    dates = []
    for group in by_matter.values():
        when = _closed_on(group, closures)
        if when is None:
            return None, f"matter {group[0][0]}/{group[0][1]} is open (kept until it closes)"
        dates.append(when)
    closed = max(dates)
    if msg.sent > closed:
        # Mail dated after the close (a late message, or a close date entered too early) counts from its own date.
        return msg.sent, "sent (after its matter closed)"
    return closed, "matter closed"


def _rank(end: datetime | None, rule: AnyRule) -> tuple[datetime | None, int, int]:
    """The key ``_later`` compares: (end, review?, compliance?)."""
    return end, int(rule.action == "review"), int(rule.mode == "compliance")


def _later(a: tuple[datetime | None, int, int], b: tuple[datetime | None, int, int]) -> bool:
    """Is retention a longer than b?  (end, review?, compliance?): None is forever."""
    if (a[0] is None) != (b[0] is None):
        return a[0] is None
    if a[0] is not None and b[0] is not None and a[0] != b[0]:
        return a[0] > b[0]
    return a[1:] > b[1:]


def decide_copy(msg: MessageRecord, copy: Copy, rules: RuleSet, closures: Closures) -> tuple[CopyOutcome, AnyRule]:
    """The retention of one copy: the longest of the rules that match it (or the default).

    A compliance-mode default takes part for every copy: otherwise a rule added later that
    matches everything would take all mail out from under it.
    """
    matching: list[AnyRule] = [r for r in rules.rules if rule_matches(r, msg, copy)]
    if not matching or rules.default.mode == "compliance":
        matching.append(rules.default)
    best: tuple[tuple[datetime | None, int, int], AnyRule, datetime | None, str] | None = None
    for r in matching:
        start, note = _start(r, msg, copy, closures)
        end = None if start is None else r.span.add_to(start)
        key = _rank(end, r)
        if best is None or _later(key, best[0]):
            best = (key, r, start, note)
    assert best is not None
    (end, _, _), rule, start, note = best
    if rule.span.forever:
        note = "kept forever"
    return (
        CopyOutcome(
            source=copy.source,
            account=copy.account,
            folder=copy.folder,
            rule=rule.name,
            start=start,
            end=end,
            note=note,
            matched=tuple(r.name for r in matching),
        ),
        rule,
    )


def decide(
    msg: MessageRecord,
    rules: RuleSet,
    now: datetime,
    *,
    closures: Closures | None = None,
    holds: Sequence[str] = (),
) -> Outcome:
    """Keep, dispose, review or hold one message at ``now``; see the module docstring."""
    closures = closures or {}
    copies = msg.copies
    outcomes: list[tuple[CopyOutcome, AnyRule]] = [decide_copy(msg, c, rules, closures) for c in copies]
    if not outcomes:  # a message always has a copy; be safe: the default with the sent date
        start = msg.sent
        outcomes = [
            (
                CopyOutcome(
                    source="",
                    account="",
                    folder="",
                    rule=rules.default.name,
                    start=start,
                    end=rules.default.span.add_to(start),
                    note="no copy recorded",
                ),
                rules.default,
            )
        ]
    best_co, best_rule = outcomes[0]
    for co, r in outcomes[1:]:
        if _later(_rank(co.end, r), _rank(best_co.end, best_rule)):
            best_co, best_rule = co, r
    end = best_co.end
    where = f" (copy in {best_co.source}:{best_co.account}/{best_co.folder})" if len(outcomes) > 1 else ""
    if end is None:
        decision, reason = Decision.KEEP, f"rule {best_rule.name!r}: {best_co.note}{where}"
    elif end > now:
        decision = Decision.KEEP
        reason = (
            f"rule {best_rule.name!r}: {best_rule.period} from {best_co.note}, ends {end.date().isoformat()}{where}"
        )
    else:
        decision = Decision.DISPOSE if best_rule.action == "delete" else Decision.REVIEW
        reason = (
            f"rule {best_rule.name!r}: {best_rule.period} from {best_co.note}, ended {end.date().isoformat()}{where}"
        )
    if holds:
        reason = f"held by {', '.join(sorted(holds))}; otherwise {decision.value}: {reason}"
        decision = Decision.HOLD
    return Outcome(
        id=msg.id,
        decision=decision,
        rule=best_rule.name,
        action=best_rule.action,
        mode=best_rule.mode,
        end=end,
        reason=reason,
        holds=tuple(sorted(holds)),
        copies=tuple(co for co, _ in outcomes),
    )


def is_due(outcome: Outcome, now: datetime) -> bool:
    """True when the retention has ended at ``now`` (whatever holds say)."""
    return outcome.end is not None and outcome.end <= now
