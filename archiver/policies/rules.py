"""Retention rules: load and validate ``retention_rules.yaml``, and guard compliance-mode rules.

The rules file is policy with legal weight, so it is read strictly: unknown keys, bad periods,
bad starts or actions, duplicate names and malformed search queries are refused with a sentence
naming the rule, and nothing is disposed under a file that does not validate.  The same model
is used for the copy of the rules kept in the journal, which is what compliance mode is checked
against: a compliance rule may only be lengthened, never shortened, narrowed or removed.

See docs/retention.md for the format and its semantics.
"""

from __future__ import annotations

import calendar
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from archiver.errors import PolicyError, QueryError
from archiver.index.query import parse_query
from archiver.store.journal import canonical
from archiver.strict_yaml import DuplicateKeyError, StrictLoader

DEFAULT_NAME = "default"
#: the longest period a rules file may give in calendar units: 200 years (2400 months, or as many days
#: as the longest 200 years hold).  Longer is ``forever``; without a bound, ``8000y`` validated and
#: then made every plan crash computing an end after the year 9999.
MAX_MONTHS = 2400
MAX_DAYS = 73_049
#: the Gregorian calendar repeats every 400 years: comparing two periods' ends for every start
#: day in one cycle compares them for every start day there is.
_CYCLE_START, _CYCLE_END = date(2000, 1, 1).toordinal(), date(2400, 1, 1).toordinal()
_PERIOD = re.compile(r"^\s*(\d{1,5})\s*([dwmy])\s*$", re.IGNORECASE)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")
Start = Literal["sent", "received", "matter_closed"]
Action = Literal["delete", "review"]
Mode = Literal["compliance", "governance"]


@dataclass(frozen=True, slots=True)
class Period:
    """A retention period in calendar units: ``months`` (years are 12) plus ``days`` (weeks are 7)."""

    months: int = 0
    days: int = 0
    forever: bool = False

    @classmethod
    def parse(cls, text: str) -> Period:
        """``90d``, ``4w``, ``18m``, ``6y`` or ``forever``; ValueError otherwise."""
        if text.strip().lower() == "forever":
            return cls(forever=True)
        m = _PERIOD.match(text)
        if not m:
            raise ValueError(f"{text!r} is not a period; write a number and a unit (90d, 4w, 18m, 6y) or forever")
        n, unit = int(m.group(1)), m.group(2).lower()
        if unit == "y":
            return cls(months=12 * n)
        if unit == "m":
            return cls(months=n)
        return cls(days=7 * n if unit == "w" else n)

    def add_to(self, start: datetime) -> datetime | None:
        """When a period starting at ``start`` ends (None: never).  Feb 29 + 1y is Feb 28.

        An end past the calendar's last year (only a period journalled before periods were
        bounded can reach it) is never: keeping longer is the safe reading.
        """
        if self.forever:
            return None
        month0 = start.month - 1 + self.months
        year, month = start.year + month0 // 12, month0 % 12 + 1
        try:
            day = min(start.day, calendar.monthrange(year, month)[1])
            return start.replace(year=year, month=month, day=day) + timedelta(days=self.days)
        except (ValueError, OverflowError):
            return None

    def too_long(self) -> bool:
        """Beyond what a rules file may give (MAX_MONTHS, MAX_DAYS); ``forever`` is never too long."""
        return not self.forever and (self.months > MAX_MONTHS or self.days > MAX_DAYS)

    def never_shorter_than(self, other: Period) -> bool:
        """Does this period end no earlier than ``other`` whatever day it starts on?

        Months and days do not convert: 6 months run 181 to 184 days, so ``183d`` is shorter
        than ``6m`` from 1 March.  When neither period is at least as long in both units, the
        ends are compared for every start day of a 400-year Gregorian cycle (exactly, not by
        an average month length).
        """
        if self.forever or other.forever:
            return self.forever
        if self.months >= other.months and self.days >= other.days:
            return True
        if self.months <= other.months and self.days <= other.days:
            return False  # shorter in one unit and not longer in the other: shorter from any start
        return _min_margin(self.months, self.days, other.months, other.days) >= 0


def _end_ordinal(start: date, months: int, days: int) -> int:
    month0 = start.month - 1 + months
    year, month = start.year + month0 // 12, month0 % 12 + 1
    return date(year, month, min(start.day, calendar.monthrange(year, month)[1])).toordinal() + days


@cache
def _min_margin(months_a: int, days_a: int, months_b: int, days_b: int) -> int:
    """The least (end of a - end of b) in days over every start day of a Gregorian cycle."""
    least = MAX_DAYS * 2
    for n in range(_CYCLE_START, _CYCLE_END):
        start = date.fromordinal(n)
        least = min(least, _end_ordinal(start, months_a, days_a) - _end_ordinal(start, months_b, days_b))
    return least


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _as_list(v: Any) -> Any:
    """One value or a list of values, as a list of text.

    Numbers and booleans are refused rather than turned into text: YAML reads ``012345`` as
    the octal number 5349 and ``no`` as false, so their text is no longer what was written.
    """
    if v is None:
        return []
    values = v if isinstance(v, list) else [v]
    for x in values:
        if not isinstance(x, str):
            raise ValueError(
                f"{x!r} is not text: write match values in quotes (for example '012345' or 'no'), "
                "since YAML reads unquoted numbers, dates and yes/no as something else"
            )
    return values


class Match(_Strict):
    """What a rule applies to: every key given must match (AND); a list under a key means any of them (OR).

    Names, domains, accounts and labels compare case-insensitively; ``matter``, ``source``,
    ``account`` and ``folder`` accept shell wildcards (``*``, ``?``); a domain also matches its
    subdomains.  ``label`` matches an IMAP keyword (a non-system flag) on the copy.
    """

    client: list[str] = []
    matter: list[str] = []
    source: list[str] = []
    account: list[str] = []
    folder: list[str] = []
    from_domain: list[str] = []
    to_domain: list[str] = []
    label: list[str] = []
    query: str | None = None

    @field_validator(
        "client", "matter", "source", "account", "folder", "from_domain", "to_domain", "label", mode="before"
    )
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return _as_list(v)

    @field_validator("client", "matter", "source", "account", "folder", "from_domain", "to_domain", "label")
    @classmethod
    def _no_blank(cls, v: list[str]) -> list[str]:
        if any(not x.strip() for x in v):
            raise ValueError("values must not be empty")
        return [x.strip() for x in v]

    @field_validator("from_domain", "to_domain")
    @classmethod
    def _domains(cls, v: list[str]) -> list[str]:
        out = []
        for d in v:
            d = d.lower().lstrip("@")
            if "@" in d or ("." not in d and d != "localhost"):
                raise ValueError(f"{d!r} is not a domain (write e.g. example.com)")
            out.append(d)
        return out

    @field_validator("query")
    @classmethod
    def _query(cls, v: str | None) -> str | None:
        if v is None:
            return None
        try:
            parse_query(v)
        except QueryError as exc:
            raise ValueError(f"the search query is invalid: {exc}") from None
        return v

    def is_empty(self) -> bool:
        return not any(getattr(self, k) for k in type(self).model_fields)


class _RuleBody(_Strict):
    description: str = ""
    period: str
    start: Start = "received"
    action: Action = "review"
    mode: Mode = "governance"

    @field_validator("period", mode="before")
    @classmethod
    def _period(cls, v: Any, info: ValidationInfo) -> Any:
        if isinstance(v, int):
            raise ValueError(f"{v} has no unit; write e.g. {v}d, {v}m or {v}y")
        if isinstance(v, str):
            span = Period.parse(v)
            # Rules already journalled stay readable whatever they say (their ends are computed
            # safely); a rules file may not give more than 200 years.
            if span.too_long() and not (info.context or {}).get("journalled"):
                raise ValueError(f"{v.strip()!r} is longer than 200 years; write forever to keep messages for good")
            return v.strip().lower()
        return v

    @property
    def span(self) -> Period:
        return Period.parse(self.period)


class Rule(_RuleBody):
    """A named rule: what it matches, how long, from when, and what happens at the end."""

    name: str
    match: Match

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError("a rule name is 1-80 letters, digits, '.', '_' or '-', starting with a letter or digit")
        if v == DEFAULT_NAME:
            raise ValueError(f"{DEFAULT_NAME!r} is reserved for the default rule (the `default:` section)")
        return v

    @model_validator(mode="after")
    def _matches_something(self) -> Rule:
        if self.match.is_empty():
            raise ValueError("match is empty: a rule must match something (the default rule covers the rest)")
        return self


class DefaultRule(_RuleBody):
    """Applies to every copy no named rule matches."""

    name: Literal["default"] = "default"


class RuleSet(_Strict):
    """A whole rules file.  Without a ``default`` section unmatched messages are kept forever."""

    version: Literal[1] = 1
    rules: list[Rule] = []
    default: DefaultRule = Field(default_factory=lambda: DefaultRule(period="forever", mode="governance"))

    @field_validator("rules")
    @classmethod
    def _unique(cls, v: list[Rule]) -> list[Rule]:
        seen: set[str] = set()
        for r in v:
            if r.name in seen:
                raise ValueError(f"two rules are named {r.name!r}; names must be unique")
            seen.add(r.name)
        return v

    def all_rules(self) -> list[Rule | DefaultRule]:
        return [*self.rules, self.default]

    def rule(self, name: str) -> Rule | DefaultRule | None:
        for r in self.all_rules():
            if r.name == name:
                return r
        return None

    def canonical(self) -> dict[str, Any]:
        """The rules as plain JSON data (what the journal keeps)."""
        return self.model_dump(mode="json")

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(canonical(self.canonical())).hexdigest()


def _describe_error(data: Any, exc: ValidationError, where: str) -> str:
    """Turn pydantic's errors into lines that name the rule (by name when it has one)."""
    lines = [f"The retention rules in {where} are invalid; nothing was changed or disposed:"]
    rules = data.get("rules") if isinstance(data, dict) else None
    for err in exc.errors():
        loc = [p for p in err["loc"] if not str(p).startswith("function-")]
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (see docs/retention.md for the keys a rule may have)"
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif err["type"] == "literal_error":
            msg = f"{msg} (got {err.get('input')!r})"
        if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
            i = loc[1]
            name = None
            if isinstance(rules, list) and i < len(rules) and isinstance(rules[i], dict):
                name = rules[i].get("name")
            who = f"rule {name!r} (rules[{i}])" if name else f"rules[{i}] (unnamed)"
            field = ".".join(str(p) for p in loc[2:]) or "(the rule)"
            lines.append(f"  {who}: {field}: {msg}")
        elif loc and loc[0] == "default":
            field = ".".join(str(p) for p in loc[1:]) or "(the rule)"
            lines.append(f"  rule 'default': {field}: {msg}")
        else:
            lines.append(f"  {'.'.join(str(p) for p in loc) or '(top level)'}: {msg}")
    return "\n".join(lines)


def parse_rules(data: Any, where: str = "the rules data", *, journalled: bool = False) -> RuleSet:
    """Validate already-loaded data; PolicyError naming each bad rule otherwise.

    ``journalled`` reads rules back from the journal: what was adopted once stays readable
    (a period longer than files may now give included), so it can still be compared with.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PolicyError(f"The retention rules in {where} must be a mapping with `rules:` and `default:` keys.")
    try:
        return RuleSet.model_validate(data, context={"journalled": journalled})
    except ValidationError as exc:
        raise PolicyError(_describe_error(data, exc, where)) from None


class _RulesLoader(StrictLoader):
    """The strict loader (a key given twice is refused, see archiver/strict_yaml.py), used with
    :func:`_check_match_values` for what YAML would otherwise silently change in a rules file."""


_STR_TAG = "tag:yaml.org,2002:str"
_READ_AS = {
    "tag:yaml.org,2002:int": "a number",
    "tag:yaml.org,2002:float": "a number",
    "tag:yaml.org,2002:bool": "true/false",
    "tag:yaml.org,2002:null": "nothing (null)",
    "tag:yaml.org,2002:timestamp": "a date",
}


class _RulesFileError(Exception):
    """A problem at a line of the rules file (turned into a PolicyError naming the file)."""

    def __init__(self, line: int, problem: str) -> None:
        super().__init__(f"line {line}: {problem}")


def _mapping_items(node: yaml.Node) -> Iterator[tuple[str, yaml.Node]]:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                yield str(key.value), value


def _check_match_values(root: yaml.Node) -> None:
    """Refuse match values YAML does not read as the text written (``012345``, ``no``, ``2024-01-01``)."""
    for key, rules in _mapping_items(root):
        if key != "rules" or not isinstance(rules, yaml.SequenceNode):
            continue
        for rule in rules.value:
            for field, match in _mapping_items(rule):
                if field != "match":
                    continue
                for criterion, value in _mapping_items(match):
                    values = value.value if isinstance(value, yaml.SequenceNode) else [value]
                    for v in values:
                        if isinstance(v, yaml.ScalarNode) and v.tag != _STR_TAG and v.tag in _READ_AS:
                            raise _RulesFileError(
                                v.start_mark.line + 1,
                                f"{criterion}: {v.value} is read by YAML as {_READ_AS[v.tag]}, not as the text "
                                f"written; put it in quotes: '{v.value}'",
                            )


def read_rules_yaml(text: str) -> Any:
    """Load a rules file's YAML strictly (see _RulesLoader and _check_match_values); _RulesFileError otherwise."""
    loader = _RulesLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_match_values(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def load_rules(path: Path) -> RuleSet:
    """Read and validate a rules file.  A missing file means no rules: every message is kept."""
    if not path.exists():
        return RuleSet()
    try:
        data = read_rules_yaml(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"The retention rules file {path} cannot be read: {exc}.") from None
    except (_RulesFileError, DuplicateKeyError) as exc:
        raise PolicyError(
            f"The retention rules file {path} was refused ({exc}); nothing was changed or disposed."
        ) from None
    except yaml.YAMLError as exc:
        raise PolicyError(f"The retention rules file {path} is not valid YAML: {exc}.") from None
    return parse_rules(data, str(path))


_FIELDS = ("period", "start", "action", "mode", "description")


def _field_changes(o: Rule | DefaultRule, n: Rule | DefaultRule) -> list[str]:
    """What changed in one rule, field by field (``match`` as a whole)."""
    out = [f"{f} {getattr(o, f)!r} -> {getattr(n, f)!r}" for f in _FIELDS if getattr(o, f) != getattr(n, f)]
    if isinstance(o, Rule) and isinstance(n, Rule) and n.match != o.match:
        out.append(f"match {_match_text(o.match)} -> {_match_text(n.match)}")
    return out


def _match_text(m: Match) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in m.model_dump(exclude_defaults=True).items()) + "}"


def _compliance_problems(o: Rule | DefaultRule, n: Rule | DefaultRule | None) -> list[str]:
    """Why ``n`` would weaken the compliance rule ``o`` (empty: it does not)."""
    if n is None:
        return [f"rule {o.name!r} is in compliance mode and cannot be removed"]
    problems = []
    if n.mode != "compliance":
        problems.append(f"rule {o.name!r} is in compliance mode and cannot be switched to governance")
    if not n.span.never_shorter_than(o.span):
        problems.append(
            f"rule {o.name!r} is in compliance mode: its period cannot be shortened from {o.period} to {n.period}"
            " (it must end no earlier for every start day)"
        )
    if n.start != o.start:
        problems.append(f"rule {o.name!r} is in compliance mode: its start cannot change from {o.start} to {n.start}")
    if isinstance(o, Rule) and isinstance(n, Rule) and n.match != o.match:
        problems.append(f"rule {o.name!r} is in compliance mode: what it matches cannot change")
    return problems


def check_change(old: RuleSet, new: RuleSet) -> list[str]:
    """Refuse changes that would weaken a compliance-mode rule; returns every change, for the journal.

    A compliance rule (the default included) may only be made longer (for every start day), or
    have its description or end action changed: removing it, shortening its period, changing
    its start or what it matches, or switching it to governance mode would let messages go
    earlier than promised.  Every change is listed, compliance ones included, and an action
    turned from review to delete is named as such: it ends the review of those messages.
    """
    problems: list[str] = []
    changes: list[str] = []
    new_by_name = {r.name: r for r in new.all_rules()}
    for o in old.all_rules():
        n = new_by_name.get(o.name)
        if o.mode == "compliance":
            problems.extend(_compliance_problems(o, n))
        if n is None:
            changes.append(f"{o.mode} rule {o.name!r} removed")
            continue
        fields = _field_changes(o, n)
        if fields:
            changes.append(f"{o.mode} rule {o.name!r} changed: {'; '.join(fields)}")
        if o.mode == "compliance" and o.action == "review" and n.action == "delete":
            changes.append(
                f"compliance rule {o.name!r} now disposes without review at its end (action review -> delete)"
            )
    for n in new.all_rules():
        if old.rule(n.name) is None:
            changes.append(f"{n.mode} rule {n.name!r} added ({n.period} from {n.start}, then {n.action})")
    if problems:
        raise PolicyError(
            "The retention rules were refused (compliance mode; nothing was changed or disposed): "
            + "; ".join(problems)
            + ". Restore those rules as journalled (`archiver retention rules` shows them); they may only be lengthened."
        )
    return changes
