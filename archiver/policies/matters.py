"""Matter lifecycle: closing and reopening a matter, the events that start ``matter_closed`` periods.

Both are journal records with the acting user (``matter_close`` with the date the matter
closed, ``matter_reopen``), derived into the catalog's ``matter_events`` table.  The latest
event of a matter decides: a reopened matter has no close date, so its messages are kept
until it closes again.  Client and matter compare case-insensitively, and a message carries
a matter under its own client and under the client owning the matter (filing.py).

A close date starts every ``matter_closed`` period of the matter's mail, compliance ones
included, so a wrong one disposes of evidence early.  A close is therefore refused, unless
explicitly allowed with a reason, when it names a matter no archived message carries (a
typo), when it is earlier than the matter's newest message, or when it lies more than
``MAX_BACKDATE_DAYS`` in the past; the record keeps both the close date and the day it was
entered, and the newest message's date.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from archiver.errors import PolicyError
from archiver.policies.filing import MatterOwners, same
from archiver.policies.holds import parse_matter_ref
from archiver.policies.records import dt
from archiver.policies.retention import Closures
from archiver.store.catalog import Catalog

if TYPE_CHECKING:
    from archiver.archive import Archive

#: a close dated further back than this needs ``allow_backdate`` (and a reason).
MAX_BACKDATE_DAYS = 90


def closures(catalog: Catalog) -> Closures:
    """(client, matter), casefolded -> when it closed (midnight UTC), or None when its latest event is a reopen."""
    out: dict[tuple[str, str], datetime | None] = {}
    for client, matter, event, day in catalog.conn.execute(
        "SELECT client, matter, event, date FROM matter_events ORDER BY seq"
    ):
        when = None
        if event == "close" and day:
            d = date.fromisoformat(day)
            when = datetime(d.year, d.month, d.day, tzinfo=UTC)
        out[(client.casefold(), matter.casefold())] = when
    return out


def _carriers(archive: Archive, client: str, matter: str) -> list[tuple[str, str]]:
    """(id, date) of the live messages carrying CLIENT/MATTER: filed under that matter number, and
    under that client or the matter belongs to that client by the tagging configuration."""
    owner = MatterOwners(archive.cfg.tagging).owner(matter)
    owned = owner is not None and same(owner, client)
    rows = archive.repo.catalog.conn.execute(
        "SELECT m.id, t.client, COALESCE(r.date, '') FROM matters m JOIN tags t ON t.id = m.id "
        "JOIN object_rows o ON o.id = m.id LEFT JOIN message_rows r ON r.obj = o.ingest_seq "
        "WHERE m.matter = ? COLLATE NOCASE AND o.disposed_at IS NULL",
        (matter,),
    )
    return [(oid, day) for oid, c, day in rows if owned or same(c, client)]


def _canonical(archive: Archive, client: str, matter: str) -> tuple[str, str]:
    """The spelling the configuration and the archive use for a client and matter typed in another case."""
    conn = archive.repo.catalog.conn
    configured = MatterOwners(archive.cfg.tagging).clients.get(client.casefold())
    if configured is None:
        row = conn.execute("SELECT client FROM tags WHERE client = ? COLLATE NOCASE LIMIT 1", (client,)).fetchone()
        configured = row[0] if row else client
    row = conn.execute("SELECT matter FROM matters WHERE matter = ? COLLATE NOCASE LIMIT 1", (matter,)).fetchone()
    return configured, row[0] if row else matter


def _latest_event(catalog: Catalog, client: str, matter: str) -> Any:
    return catalog.conn.execute(
        "SELECT event, date, time, actor FROM matter_events WHERE client = ? COLLATE NOCASE "
        "AND matter = ? COLLATE NOCASE ORDER BY seq DESC LIMIT 1",
        (client, matter),
    ).fetchone()


def matter_state(archive: Archive, client: str, matter: str) -> dict[str, Any]:
    """Open or closed (and since when, by whom), and how many live messages carry the matter."""
    client, matter = _canonical(archive, client, matter)
    row = _latest_event(archive.repo.catalog, client, matter)
    messages = len(_carriers(archive, client, matter))
    state = {"client": client, "matter": matter, "messages": messages, "state": "open", "closed_on": None}
    if row is not None:
        state.update({"state": "closed" if row[0] == "close" else "open", "changed_at": row[2], "changed_by": row[3]})
        if row[0] == "close":
            state["closed_on"] = row[1]
    return state


def _check_close(
    archive: Archive, client: str, matter: str, on: date, today: date, *, allow_empty: bool, allow_backdate: bool
) -> str | None:
    """Refuse a close date that would shorten retention by mistake; returns the newest message's day."""
    where = f"{client}/{matter}"
    row = archive.repo.catalog.conn.execute(
        "SELECT MAX(date) FROM matter_events WHERE client = ? COLLATE NOCASE AND matter = ? COLLATE NOCASE "
        "AND event = 'close'",
        (client, matter),
    ).fetchone()
    if row and row[0] and on.isoformat() < row[0]:
        # Backdating a close would shorten every matter_closed period, compliance ones included.
        raise PolicyError(
            f"The matter {where} was already closed on {row[0]}; it cannot be closed on an "
            f"earlier date ({on.isoformat()}), which would shorten its retention periods."
        )
    carriers = _carriers(archive, client, matter)
    if not carriers and not allow_empty:
        raise PolicyError(
            f"No archived message is filed under {where}; nothing was closed. Check the client and matter "
            "(`archiver matter show`), or give --allow-empty to close a matter that has no mail."
        )
    days = [d.date() for _oid, text in carriers if (d := dt(text)) is not None]
    newest = max(days) if days else None
    if allow_backdate:
        return newest.isoformat() if newest else None
    if newest is not None and on < newest:
        raise PolicyError(
            f"The matter {where} has mail dated up to {newest.isoformat()}, after the close date "
            f"{on.isoformat()}; nothing was closed. If it really closed then, give --allow-backdate with --reason."
        )
    if (today - on).days > MAX_BACKDATE_DAYS:
        raise PolicyError(
            f"{on.isoformat()} is more than {MAX_BACKDATE_DAYS} days ago; nothing was closed. A close date "
            "starts the matter's retention periods, so a date that far back needs --allow-backdate with --reason."
        )
    return newest.isoformat() if newest else None


def close_matter(
    archive: Archive,
    ref: str,
    on: date,
    *,
    actor: str,
    today: date,
    allow_empty: bool = False,
    allow_backdate: bool = False,
    reason: str = "",
) -> dict[str, Any]:
    """Journal that a matter closed on ``on`` (not in the future); returns its new state.

    The record keeps the close date, the day it was entered and the matter's newest message
    date, and whether a backdate was allowed and why.
    """
    client, matter = _canonical(archive, *parse_matter_ref(ref))
    if on > today:
        raise PolicyError(f"{on.isoformat()} is in the future: a matter can only be closed on a past or present date.")
    if allow_backdate and not reason.strip():
        raise PolicyError("--allow-backdate needs a --reason, for the record.")
    with archive.repo.transaction(actor) as tx:
        newest = _check_close(
            archive, client, matter, on, today, allow_empty=allow_empty, allow_backdate=allow_backdate
        )
        data: dict[str, Any] = {
            "client": client,
            "matter": matter,
            "date": on.isoformat(),
            "recorded_on": today.isoformat(),
            "newest_message": newest,
        }
        if allow_backdate:
            data.update({"backdate_allowed": True, "reason": reason.strip()})
        tx.event("matter_close", data)
    return matter_state(archive, client, matter)


def reopen_matter(archive: Archive, ref: str, *, actor: str) -> dict[str, Any]:
    """Journal that a closed matter is open again (its ``matter_closed`` periods stop running)."""
    client, matter = _canonical(archive, *parse_matter_ref(ref))
    with archive.repo.transaction(actor) as tx:
        if matter_state(archive, client, matter)["state"] != "closed":
            raise PolicyError(f"The matter {client}/{matter} is not closed; there is nothing to reopen.")
        tx.event("matter_reopen", {"client": client, "matter": matter})
    return matter_state(archive, client, matter)
