"""Legal holds: placed and released as journal records, evaluated afresh at every plan and apply.

A hold names a case and covers messages by matter (``CLIENT/MATTER``), by custodian (an
address seen as sender, recipient, Bcc or envelope recipient, or the mailbox account a copy
was pulled from) or by search query.  Holds are never stored as a list of message ids: they
are evaluated each time retention runs, so a message archived after the hold was placed is
held as soon as it matches.  While any hold stands over a message, nothing disposes of it.

A matter hold covers every message filed under that matter number, whatever client the
message itself is filed under: a message carries one client but may carry several clients'
matters, and a retag may move its client.  Erring that way can only keep mail.

A hold is for evidence someone means to keep, so placing one that covers nothing (a typo in
a matter, ``<jeff@example.com>`` in brackets, a bare domain) is refused unless asked for
(``allow_empty``: a hold for mail yet to come); the coverage is reported either way.  A hold
requested while a retention run holds the writer lock is announced to that run first
(archiver/policies/pending.py) and the caller is told it waited.

The journal keeps every change with the acting user; the catalog's ``holds`` table is derived
from it (docs/format.md, "hold" and "hold_release").  The history (``hold list --all``) is
read from the journalled events, where a case name used again keeps each earlier hold.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from email.utils import parseaddr
from typing import TYPE_CHECKING, Literal

from archiver.errors import LockedError, PolicyError, QueryError
from archiver.index.query import parse_query
from archiver.policies import pending
from archiver.policies.filing import MatterOwners, same
from archiver.policies.records import iter_records
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


def custodian_address(text: str) -> str:
    """The address a custodian hold is for, from what was typed; PolicyError when it is not one.

    ``Jeff <jeff@example.com>``, ``<jeff@example.com>`` and ``mailto:jeff@example.com`` all
    mean ``jeff@example.com`` (held as typed, they held nothing).  A bare domain is refused:
    a custodian is a person's mailbox, and a domain held that way covered nothing.
    """
    value = text.strip()
    _name, addr = parseaddr(value)
    addr = (addr or value).strip().strip("<>").strip()
    if addr.lower().startswith("mailto:"):
        addr = addr[len("mailto:") :]
    local, at, domain = addr.partition("@")
    if not at:
        raise PolicyError(
            f"{text!r} is not a custodian address (for example jeff@example.com). To hold a whole domain, use "
            f"--query 'from:{addr} OR to:{addr} OR cc:{addr} OR bcc:{addr}'."
        )
    if not local or not domain or "@" in domain or any(c.isspace() or c in "<>,;" for c in addr):
        raise PolicyError(f"{text!r} is not a custodian address (for example jeff@example.com).")
    return addr.lower()


def normalise(kind: str, value: str) -> str:
    """Check a hold's target and put it in the form it is stored and compared in."""
    value = value.strip()
    if kind == "matter":
        client, matter = parse_matter_ref(value)
        return f"{client}/{matter}"
    if kind == "custodian":
        return custodian_address(value)
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
    """Does this hold cover a message?  (Pure: query holds take the ids their query found.)

    A matter hold compares the matter number alone (see the module docstring); ``client``
    is the message's, kept for the callers' sake.
    """
    if not hold.active:
        return False
    if hold.kind == "matter":
        m = hold.value.split("/", 1)[1].casefold()
        return any(x.casefold() == m for x in matters)
    if hold.kind == "custodian":
        return hold.value in addresses
    return oid in query_ids


def list_holds(catalog: Catalog, *, active_only: bool = False) -> list[Hold]:
    """The standing holds (from the catalog's holds table), or with ``active_only=False`` every
    hold ever placed, oldest first, read from the journalled hold and release events."""
    if active_only:
        rows = catalog.conn.execute(
            "SELECT case_name, kind, value, reason, placed_at, placed_by FROM holds"
            " WHERE released_at IS NULL ORDER BY placed_seq"
        )
        return [Hold(case=r[0], kind=r[1], value=r[2], reason=r[3], placed_at=r[4], placed_by=r[5]) for r in rows]
    return list(_history(catalog))


def _history(catalog: Catalog) -> Iterator[Hold]:
    """Every hold with its release, replayed from the events table in journal order."""
    placed: list[Hold] = []
    rows = catalog.conn.execute(
        "SELECT type, time, actor, data FROM events WHERE type IN ('hold', 'hold_release') ORDER BY seq"
    )
    for type_, when, actor, data in rows:
        d = json.loads(data)
        if type_ == "hold":
            placed.append(
                Hold(
                    case=d["case"],
                    kind=d["kind"],
                    value=d["value"],
                    reason=d.get("reason", ""),
                    placed_at=when,
                    placed_by=actor,
                )
            )
            continue
        for i in range(len(placed) - 1, -1, -1):
            if placed[i].case == d["case"] and placed[i].active:
                placed[i] = replace(placed[i], released_at=when, released_by=actor)
                break
    yield from placed


def get_hold(catalog: Catalog, case: str) -> Hold | None:
    """The latest hold placed under this case name (the standing one when there is one)."""
    found = [h for h in list_holds(catalog) if h.case == case]
    return found[-1] if found else None


@dataclass
class PlacedHold:
    """A hold just placed, what it covers now, and what the caller should be told."""

    hold: Hold
    covered: int
    waited_s: float = 0.0
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {**self.hold.to_json(), "covered": self.covered, "waited_s": round(self.waited_s, 1),
                "warnings": self.warnings}  # fmt: skip


def covered_by(archive: Archive, hold: Hold) -> list[str]:
    """The live messages a hold covers now (query holds through the index, which must be current)."""
    if hold.kind == "query":
        live = set(archive.repo.catalog.live_ids())
        return sorted(live.intersection(archive.index.matching_ids(hold.value)))
    if hold.kind == "matter":  # the matter number alone decides (hold_matches): one indexed lookup
        rows = archive.repo.catalog.conn.execute(
            "SELECT DISTINCT m.id FROM matters m JOIN object_rows o ON o.id = m.id "
            "WHERE m.matter = ? COLLATE NOCASE AND o.disposed_at IS NULL ORDER BY m.id",
            (hold.value.split("/", 1)[1],),
        )
        return [r[0] for r in rows]
    return [
        m.record.id
        for m in iter_records(archive, {})
        if hold_matches(hold, client=m.record.client, matters=m.record.matters, addresses=m.addresses)
    ]


def _matter_warnings(archive: Archive, value: str) -> list[str]:
    """Doubts about a matter hold's client part (the matter number alone decides what it covers)."""
    client, matter = value.split("/", 1)
    owners = MatterOwners(archive.cfg.tagging)
    known = {
        *owners.clients.values(),
        *(r[0] for r in archive.repo.catalog.conn.execute("SELECT DISTINCT client FROM tags")),
    }
    out = []
    if not any(same(client, k) for k in known):
        out.append(f"{client!r} is not a client of the tagging configuration or of any archived message")
    owner = owners.owner(matter)
    if owner is not None and not same(owner, client):
        out.append(f"the tagging configuration files matter {matter} under client {owner!r}, not {client!r}")
    return out


@contextmanager
def _writer_lock(archive: Archive, announce: pending.PendingHold, on_wait: Callable[[], None]) -> Iterator[float]:
    """The writer lock for placing a hold; yields how long it had to wait.

    When another process (a retention run, an import) holds the lock, the request is written
    first (archiver/policies/pending.py), so that a disposal under way keeps what it covers.
    """
    repo = archive.repo
    with ExitStack() as stack:
        try:
            stack.enter_context(repo.lock(wait_s=0))
            waited = 0.0
        except LockedError:
            path = pending.request(
                repo.path, case=announce.case, kind=announce.kind, value=announce.value, actor=announce.actor
            )
            stack.callback(pending.withdraw, path)
            on_wait()
            started = time.monotonic()
            stack.enter_context(repo.lock())
            waited = time.monotonic() - started
        yield waited


def place_hold(
    archive: Archive,
    *,
    case: str,
    kind: str,
    value: str,
    reason: str,
    actor: str,
    allow_empty: bool = False,
    on_wait: Callable[[], None] = lambda: None,
) -> PlacedHold:
    """Journal a new hold; refused when a hold of that case name stands already, or when it
    covers no archived message and ``allow_empty`` is not given (see the module docstring)."""
    case = case.strip()
    if not _CASE.match(case):
        raise PolicyError(f"{case!r} is not a usable case name (1-120 characters, no slashes).")
    if not reason.strip():
        raise PolicyError("A hold needs a reason (--reason), for the record.")
    value = normalise(kind, value)
    repo = archive.repo
    announce = pending.PendingHold(path=repo.path, case=case, kind=kind, value=value, actor=actor, requested_at="")
    with _writer_lock(archive, announce, on_wait) as waited:
        existing = get_hold(repo.catalog, case)
        if existing is not None and existing.active:
            raise PolicyError(f"A hold named {case!r} already stands ({existing.kind} {existing.value}).")
        repo.recover()
        if kind == "query":
            archive.catch_up()
        draft = Hold(case=case, kind=kind, value=value, reason=reason, placed_at="", placed_by=actor)  # type: ignore[arg-type]
        covered = len(covered_by(archive, draft))
        warnings = _matter_warnings(archive, value) if kind == "matter" else []
        if not covered and not allow_empty:
            doubts = f" ({'; '.join(warnings)})" if warnings else ""
            raise PolicyError(
                f"The hold {case!r} ({kind} {value}) covers no archived message{doubts}; nothing was placed. "
                "Check the spelling, or give --allow-empty to hold mail that is yet to arrive."
            )
        with repo.transaction(actor) as tx:
            tx.event("hold", {"case": case, "kind": kind, "value": value, "reason": reason.strip()})
    hold = get_hold(repo.catalog, case)
    assert hold is not None
    if waited:
        warnings.insert(0, f"waited {waited:.0f} s for another process writing to the archive (a retention run or an "
                        "import); a retention run under way was told of this hold before each batch it disposed of")  # fmt: skip
    return PlacedHold(hold=hold, covered=covered, waited_s=waited, warnings=warnings)


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
