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
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from archiver.errors import PolicyError, QueryError
from archiver.index.query import parse_query
from archiver.store.journal import canonical

DEFAULT_NAME = "default"
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
        """When a period starting at ``start`` ends (None: never).  Feb 29 + 1y is Feb 28."""
        if self.forever:
            return None
        month0 = start.month - 1 + self.months
        year, month = start.year + month0 // 12, month0 % 12 + 1
        day = min(start.day, calendar.monthrange(year, month)[1])
        return start.replace(year=year, month=month, day=day) + timedelta(days=self.days)

    def approx_days(self) -> float:
        """Length for comparing periods of different units (an average month); infinite for forever."""
        return float("inf") if self.forever else self.months * 30.436875 + self.days


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _as_list(v: Any) -> Any:
    if v is None:
        return []
    if isinstance(v, (str, int)):
        return [str(v)]
    if isinstance(v, list):
        return [str(x) if isinstance(x, (str, int)) else x for x in v]
    return v


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
    def _period(cls, v: Any) -> Any:
        if isinstance(v, int):
            raise ValueError(f"{v} has no unit; write e.g. {v}d, {v}m or {v}y")
        if isinstance(v, str):
            Period.parse(v)
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


def parse_rules(data: Any, where: str = "the rules data") -> RuleSet:
    """Validate already-loaded data; PolicyError naming each bad rule otherwise."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PolicyError(f"The retention rules in {where} must be a mapping with `rules:` and `default:` keys.")
    try:
        return RuleSet.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(_describe_error(data, exc, where)) from None


def load_rules(path: Path) -> RuleSet:
    """Read and validate a rules file.  A missing file means no rules: every message is kept."""
    if not path.exists():
        return RuleSet()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"The retention rules file {path} cannot be read: {exc}.") from None
    except yaml.YAMLError as exc:
        raise PolicyError(f"The retention rules file {path} is not valid YAML: {exc}.") from None
    return parse_rules(data, str(path))


def check_change(old: RuleSet, new: RuleSet) -> list[str]:
    """Refuse changes that would weaken a compliance-mode rule; returns the governance changes.

    A compliance rule (the default included) may only be made longer, or have its description
    or end action changed: removing it, shortening its period, changing its start or what it
    matches, or switching it to governance mode would let messages go earlier than promised.
    """
    problems: list[str] = []
    changes: list[str] = []
    new_by_name = {r.name: r for r in new.all_rules()}
    for o in old.all_rules():
        n = new_by_name.get(o.name)
        if o.mode != "compliance":
            if n is None:
                changes.append(f"governance rule {o.name!r} removed")
            elif n.model_dump() != o.model_dump():
                changes.append(f"governance rule {o.name!r} changed")
            continue
        if n is None:
            problems.append(f"rule {o.name!r} is in compliance mode and cannot be removed")
            continue
        if n.mode != "compliance":
            problems.append(f"rule {o.name!r} is in compliance mode and cannot be switched to governance")
        if n.span.approx_days() < o.span.approx_days():
            problems.append(
                f"rule {o.name!r} is in compliance mode: its period cannot be shortened from {o.period} to {n.period}"
            )
        if n.start != o.start:
            problems.append(
                f"rule {o.name!r} is in compliance mode: its start cannot change from {o.start} to {n.start}"
            )
        if isinstance(o, Rule) and isinstance(n, Rule) and n.match != o.match:
            problems.append(f"rule {o.name!r} is in compliance mode: what it matches cannot change")
    for n in new.all_rules():
        if old.rule(n.name) is None:
            changes.append(f"rule {n.name!r} added")
    if problems:
        raise PolicyError(
            "The retention rules were refused (compliance mode; nothing was changed or disposed): "
            + "; ".join(problems)
            + ". Restore those rules as journalled (`archiver retention rules` shows them); they may only be lengthened."
        )
    return changes
