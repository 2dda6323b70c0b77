"""Rule values that match no archived message, and rules that match nothing at all.

A typo in a rule (``client: globx``, ``from_domain: sec.gv``, ``source: legasy``) is valid
YAML and a valid rule, and silently leaves the mail it was meant for under another rule,
often the shorter default.  So every plan, apply and accept reports each value of a rule's
``match`` that matches none of the archived messages' clients, matters, sources, accounts,
folders, domains or labels, and each rule that governs no message.  It is a report, not a
refusal: a rule may well be written for mail that is yet to arrive.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from archiver.policies.retention import MessageRecord, Outcome
from archiver.policies.rules import Rule, RuleSet

_KEYS = ("client", "matter", "source", "account", "folder", "from_domain", "to_domain", "label")


def _glob(pattern: str, value: str) -> bool:
    return fnmatchcase(value.casefold(), pattern.casefold())


def _domain(pattern: str, value: str) -> bool:
    return value == pattern or value.endswith("." + pattern)


def _equal(pattern: str, value: str) -> bool:
    return value.casefold() == pattern.casefold()


_COMPARE: dict[str, Callable[[str, str], bool]] = {
    "client": _equal,
    "matter": _glob,
    "source": _glob,
    "account": _glob,
    "folder": _glob,
    "from_domain": _domain,
    "to_domain": _domain,
    "label": _equal,
}


@dataclass
class RuleUsage:
    """What the archive's messages hold, per match key, and how many messages each rule matched."""

    seen: dict[str, set[str]] = field(default_factory=lambda: {k: set() for k in _KEYS})
    matched: dict[str, int] = field(default_factory=dict)

    def add(self, record: MessageRecord, outcome: Outcome) -> None:
        s = self.seen
        s["client"].update(c for c, _m in record.pairs())
        s["client"].add(record.client)
        s["matter"].update(record.matters)
        s["from_domain"].update(record.from_domains)
        s["to_domain"].update(record.to_domains)
        for c in record.copies:
            s["source"].add(c.source)
            s["account"].add(c.account)
            s["folder"].add(c.folder)
            s["label"].update(c.labels)
        for name in {n for co in outcome.copies for n in co.matched}:
            self.matched[name] = self.matched.get(name, 0) + 1

    def report(self, rules: RuleSet) -> list[str]:
        """One sentence per value that matches nothing, and per rule that matched no message."""
        out: list[str] = []
        for rule in rules.rules:
            out.extend(self._values(rule))
            if not self.matched.get(rule.name):
                out.append(f"rule {rule.name!r} matches no archived message")
        return out

    def _values(self, rule: Rule) -> Iterable[str]:
        for key in _KEYS:
            compare = _COMPARE[key]
            for value in getattr(rule.match, key):
                if not any(compare(value, have) for have in self.seen[key]):
                    yield f"rule {rule.name!r}: {key} {value!r} matches no archived message"
