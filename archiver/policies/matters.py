"""Matter lifecycle: closing and reopening a matter, the events that start ``matter_closed`` periods.

Both are journal records with the acting user (``matter_close`` with the date the matter
closed, ``matter_reopen``), derived into the catalog's ``matter_events`` table.  The latest
event of a matter decides: a reopened matter has no close date, so its messages are kept
until it closes again.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from archiver.errors import PolicyError
from archiver.policies.holds import parse_matter_ref
from archiver.store.catalog import Catalog

if TYPE_CHECKING:
    from archiver.archive import Archive


def closures(catalog: Catalog) -> dict[tuple[str, str], datetime]:
    """(client, matter) -> when it closed (midnight UTC), for matters whose latest event is a close."""
    rows = catalog.conn.execute(
        "SELECT client, matter, event, date FROM matter_events e WHERE seq = "
        "(SELECT MAX(seq) FROM matter_events f WHERE f.client = e.client AND f.matter = e.matter)"
    ).fetchall()
    out: dict[tuple[str, str], datetime] = {}
    for client, matter, event, day in rows:
        if event == "close" and day:
            d = date.fromisoformat(day)
            out[(client, matter)] = datetime(d.year, d.month, d.day, tzinfo=UTC)
    return out


def matter_state(catalog: Catalog, client: str, matter: str) -> dict[str, Any]:
    row = catalog.conn.execute(
        "SELECT event, date, time, actor FROM matter_events WHERE client=? AND matter=? ORDER BY seq DESC LIMIT 1",
        (client, matter),
    ).fetchone()
    messages = catalog.conn.execute(
        "SELECT COUNT(*) FROM matters m JOIN tags t ON t.id = m.id JOIN objects o ON o.id = m.id "
        "WHERE m.matter=? AND t.client=? AND o.disposed_at IS NULL",
        (matter, client),
    ).fetchone()[0]
    state = {"client": client, "matter": matter, "messages": int(messages), "state": "open", "closed_on": None}
    if row is not None:
        state.update({"state": "closed" if row[0] == "close" else "open", "changed_at": row[2], "changed_by": row[3]})
        if row[0] == "close":
            state["closed_on"] = row[1]
    return state


def close_matter(archive: Archive, ref: str, on: date, *, actor: str, today: date) -> dict[str, Any]:
    """Journal that a matter closed on ``on`` (not in the future); returns its new state."""
    client, matter = parse_matter_ref(ref)
    if on > today:
        raise PolicyError(f"{on.isoformat()} is in the future: a matter can only be closed on a past or present date.")
    with archive.repo.transaction(actor) as tx:
        row = archive.repo.catalog.conn.execute(
            "SELECT MAX(date) FROM matter_events WHERE client=? AND matter=? AND event='close'", (client, matter)
        ).fetchone()
        if row and row[0] and on.isoformat() < row[0]:
            # Backdating a close would shorten every matter_closed period, compliance ones included.
            raise PolicyError(
                f"The matter {client}/{matter} was already closed on {row[0]}; it cannot be closed on an "
                f"earlier date ({on.isoformat()}), which would shorten its retention periods."
            )
        tx.event("matter_close", {"client": client, "matter": matter, "date": on.isoformat()})
    return matter_state(archive.repo.catalog, client, matter)


def reopen_matter(archive: Archive, ref: str, *, actor: str) -> dict[str, Any]:
    """Journal that a closed matter is open again (its ``matter_closed`` periods stop running)."""
    client, matter = parse_matter_ref(ref)
    with archive.repo.transaction(actor) as tx:
        if matter_state(archive.repo.catalog, client, matter)["state"] != "closed":
            raise PolicyError(f"The matter {client}/{matter} is not closed; there is nothing to reopen.")
        tx.event("matter_reopen", {"client": client, "matter": matter})
    return matter_state(archive.repo.catalog, client, matter)
