"""Legal holds: placed and released as journal records, evaluated afresh at every plan and apply.

A hold names a case and covers messages by matter (``CLIENT/MATTER``), by custodian (an
address seen as sender, recipient, Bcc or envelope recipient, or the mailbox account a copy
was pulled from) or by search query.  Holds are never stored as a list of message ids: they
are evaluated each time retention runs, so a message archived after the hold was placed is
held as soon as it matches.  While any hold stands over a message, nothing disposes of it.

The journal keeps every change with the acting user; the catalog's ``holds`` table is derived
from it (docs/format.md, "hold" and "hold_release").
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from archiver.errors import PolicyError, QueryError
from archiver.index.query import parse_query
from archiver.store.catalog import Catalog

if TYPE_CHECKING:
    from archiver.archive import Archive

HoldKind = Literal["matter", "custodian", "query"]
KINDS: tuple[HoldKind, ...] = ("matter", "custodian", "query")
_CASE = re.compile(r"^[^\s/\\][^/\\]{0,119}$")


@dataclass(frozen=True, slots=True, kw_only=True)
class Hold:
    case: str
    kind: HoldKind
    value: str
    reason: str
    placed_at: str
    placed_by: str
    released_at: str | None = None
    released_by: str | None = None

    @property
    def active(self) -> bool:
        return self.released_at is None

    def to_json(self) -> dict[str, object]:
        return {
            "case": self.case,
            "kind": self.kind,
            "value": self.value,
            "reason": self.reason,
            "placed_at": self.placed_at,
            "placed_by": self.placed_by,
            "released_at": self.released_at,
            "released_by": self.released_by,
            "active": self.active,
        }


def parse_matter_ref(text: str) -> tuple[str, str]:
    """``CLIENT/MATTER`` -> (client, matter), with a sentence when it is not that."""
    client, sep, matter = text.strip().partition("/")
    if not sep or not client.strip() or not matter.strip() or "/" in matter:
        raise PolicyError(f"{text!r} is not CLIENT/MATTER (for example acme/10234-0007).")
    return client.strip(), matter.strip()


def normalise(kind: str, value: str) -> str:
    """Check a hold's target and put it in the form it is stored and compared in."""
    value = value.strip()
    if kind == "matter":
        client, matter = parse_matter_ref(value)
        return f"{client}/{matter}"
    if kind == "custodian":
        if not value or any(c.isspace() for c in value):
            raise PolicyError(f"{value!r} is not a custodian address (for example jeff@example.com).")
        return value.lower()
    if kind == "query":
        try:
            parse_query(value)
        except QueryError as exc:
            raise PolicyError(f"The hold's query is invalid: {exc}") from None
        return value
    raise PolicyError(f"Unknown hold kind {kind!r}; use one of {', '.join(KINDS)}.")


def hold_matches(
    hold: Hold,
    *,
    client: str,
    matters: Collection[str],
    addresses: Collection[str],
    query_ids: Collection[str] = (),
    oid: str = "",
) -> bool:
    """Does this hold cover a message?  (Pure: query holds take the ids their query found.)"""
    if not hold.active:
        return False
    if hold.kind == "matter":
        c, m = hold.value.split("/", 1)
        return client.casefold() == c.casefold() and m.casefold() in {x.casefold() for x in matters}
    if hold.kind == "custodian":
        return hold.value in addresses
    return oid in query_ids


def list_holds(catalog: Catalog, *, active_only: bool = False) -> list[Hold]:
    sql = (
        "SELECT case_name, kind, value, reason, placed_at, placed_by, released_at, released_by FROM holds"
        + (" WHERE released_at IS NULL" if active_only else "")
        + " ORDER BY placed_seq"
    )
    return [
        Hold(
            case=r[0],
            kind=r[1],
            value=r[2],
            reason=r[3],
            placed_at=r[4],
            placed_by=r[5],
            released_at=r[6],
            released_by=r[7],
        )
        for r in catalog.conn.execute(sql)
    ]


def get_hold(catalog: Catalog, case: str) -> Hold | None:
    for h in list_holds(catalog):
        if h.case == case:
            return h
    return None


def place_hold(archive: Archive, *, case: str, kind: str, value: str, reason: str, actor: str) -> Hold:
    """Journal a new hold; refused when a hold of that case name stands already."""
    case = case.strip()
    if not _CASE.match(case):
        raise PolicyError(f"{case!r} is not a usable case name (1-120 characters, no slashes).")
    if not reason.strip():
        raise PolicyError("A hold needs a reason (--reason), for the record.")
    value = normalise(kind, value)
    repo = archive.repo
    with repo.transaction(actor) as tx:
        existing = get_hold(repo.catalog, case)
        if existing is not None and existing.active:
            raise PolicyError(f"A hold named {case!r} already stands ({existing.kind} {existing.value}).")
        tx.event("hold", {"case": case, "kind": kind, "value": value, "reason": reason.strip()})
    hold = get_hold(repo.catalog, case)
    assert hold is not None
    return hold


def release_hold(archive: Archive, case: str, *, actor: str, reason: str = "") -> Hold:
    """Journal the release of a standing hold."""
    repo = archive.repo
    with repo.transaction(actor) as tx:
        existing = get_hold(repo.catalog, case)
        if existing is None:
            raise PolicyError(f"No hold named {case!r}; `archiver hold list` shows the holds.")
        if not existing.active:
            raise PolicyError(f"The hold {case!r} was already released on {existing.released_at}.")
        tx.event("hold_release", {"case": case, "reason": reason})
    hold = get_hold(repo.catalog, case)
    assert hold is not None
    return hold


#: up to this many ids, a query is matched with one id-scoped search each (``id:X AND (q)``)
#: instead of running it over the whole archive.
SCOPED_SEARCH_MAX = 50


def matching(archive: Archive, query: str, ids: Sequence[str] | None = None) -> set[str]:
    """The ids an index query (of a hold or rule) matches; with ``ids``, only among those.

    The index must be up to date (see apply.plan).  A page about one message, or an approval
    of a few, asks about those ids alone rather than searching everything.
    """
    if ids is None:
        return set(archive.index.matching_ids(query))
    if len(ids) <= SCOPED_SEARCH_MAX:
        return {i for i in ids if archive.index.matching_ids(f"id:{i} AND ({query})")}
    return set(archive.index.matching_ids(query)).intersection(ids)
