"""Reading the archive's messages as retention records: tags, filings, copies and their dates.

One streaming merge join over the catalog (objects, tags, metadata, provenance), shared by
plans, approvals, hold coverage and the web's message page, so that all of them see a
message the same way:

* its (client, matter) pairs, with each matter's owning client (archiver/policies/filing.py);
* each copy's arrival time, the source's own time only when it is plausible.  A Maildir file
  named by a broken clock (``5.M1P1.host``) or an IMAP INTERNALDATE of 1970 would otherwise
  make brand-new mail due under every ``start: received`` rule.  The ingest already judges
  source times this way (archiver.clock.received_at); here an implausible one is replaced by
  the time the archive first saw the copy, and the record says so.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from archiver.clock import EPOCH_FLOOR, parse_iso, received_at
from archiver.policies.filing import MatterOwners
from archiver.policies.retention import Copy, MessageRecord
from archiver.store.catalog import in_chunks

if TYPE_CHECKING:
    from archiver.archive import Archive

_OBJECTS_SQL = (
    "SELECT o.id, o.ingested_at, t.client, t.matters, m.date, m.from_addr, m.to_addrs, m.cc_addrs, m.bcc_addrs,"
    " m.subject FROM objects o LEFT JOIN tags t ON t.id = o.id LEFT JOIN message_rows m ON m.obj = o.ingest_seq"
    " WHERE o.disposed_at IS NULL {where} ORDER BY o.id"
)
_PROV_SQL = (
    "SELECT p.id, p.source, p.account, p.folder, p.internaldate, p.fetched_at, p.flags, p.envelope_recipients"
    " FROM provenance p JOIN objects o ON o.id = p.id WHERE o.disposed_at IS NULL {where} ORDER BY p.id, p.seq"
)


@dataclass(frozen=True, slots=True)
class LoadedMessage:
    record: MessageRecord
    addresses: frozenset[str]
    subject: str
    date: str


def dt(text: str | None) -> datetime | None:
    """A catalog time as an aware datetime (None when missing or unreadable)."""
    if not text:
        return None
    try:
        d = parse_iso(text)
    except ValueError:
        return None
    return d if d.tzinfo else d.replace(tzinfo=UTC)


def domain_of(addr: str) -> str:
    return addr.rpartition("@")[2].lower() if "@" in addr else ""


def copy_received(internaldate: datetime | None, fetched: datetime | None, ingested: datetime) -> tuple[datetime, str]:
    """When a copy reached its mailbox, and a note when that is not the source's own time.

    The source's time counts when it is plausible: not before 1980 and not after the archive
    saw the copy (a day of clock skew allowed).  Otherwise the copy counts from when the
    archive first saw it (its fetch, else the message's first archiving), which keeps it at
    least as long as the truth would.
    """
    seen = max(fetched or ingested, ingested)
    if internaldate is None:
        return fetched or ingested, ""
    when = received_at(internaldate, seen)
    if when is seen and internaldate != seen:
        why = "before 1980" if internaldate < EPOCH_FLOOR else "in the future"
        return seen, (
            f" (the source's time {internaldate.date().isoformat()} is {why}, so when the archive first saw it)"
        )
    return when, ""


def iter_records(
    archive: Archive, query_rules: dict[str, set[str]], ids: Sequence[str] | None = None
) -> Iterator[LoadedMessage]:
    """Every live message (or those in ``ids``) as a MessageRecord, streaming (a merge join by id)."""
    conn = archive.repo.catalog.conn
    owners = MatterOwners(archive.cfg.tagging)
    if ids is not None:
        for chunk, marks in in_chunks(ids):
            yield from _merge(
                conn.execute(_OBJECTS_SQL.format(where=f"AND o.id IN ({marks})"), chunk),
                conn.execute(_PROV_SQL.format(where=f"AND p.id IN ({marks})"), chunk),
                query_rules,
                owners,
            )
        return
    yield from _merge(
        conn.execute(_OBJECTS_SQL.format(where="")), conn.execute(_PROV_SQL.format(where="")), query_rules, owners
    )


def _copies(rows: Sequence[Any], ingested: datetime) -> tuple[list[Copy], list[str], set[str]]:
    """The copies of one message, its envelope recipients and the mailbox accounts it was pulled for."""
    copies: list[Copy] = []
    envelope: list[str] = []
    accounts: set[str] = set()
    for _id, source, account, folder, internaldate, fetched_at, flags_j, env_j in rows:
        envelope.extend(str(x).lower() for x in json.loads(env_j or "[]"))
        if account:
            accounts.add(str(account).lower())
        labels = tuple(f for f in json.loads(flags_j or "[]") if not str(f).startswith("\\"))
        received, note = copy_received(dt(internaldate), dt(fetched_at), ingested)
        copies.append(
            Copy(source=source, account=account, folder=folder, labels=labels, received=received, received_note=note)
        )
    return copies, envelope, accounts


def _merge(
    objects: Iterable[Any], provs: Iterable[Any], query_rules: dict[str, set[str]], owners: MatterOwners
) -> Iterator[LoadedMessage]:
    prov_iter = iter(provs)
    pending = next(prov_iter, None)
    for oid, ingested_at, client, matters_json, date, from_addr, to_j, cc_j, bcc_j, subject in objects:
        rows = []
        while pending is not None and pending[0] < oid:
            pending = next(prov_iter, None)
        while pending is not None and pending[0] == oid:
            rows.append(pending)
            pending = next(prov_iter, None)
        ingested = dt(ingested_at) or datetime.fromtimestamp(0, UTC)
        copies, envelope, addresses = _copies(rows, ingested)
        recipients = [a[0] for j in (to_j, cc_j, bcc_j) if j for a in json.loads(j)] + envelope
        to_domains: set[str] = set()
        for r in recipients:
            addresses.add(r.lower())
            if domain := domain_of(r):
                to_domains.add(domain)
        if from_addr:
            addresses.add(from_addr.lower())
        client = client or "unfiled"
        matters = tuple(json.loads(matters_json)) if matters_json else ()
        record = MessageRecord(
            id=oid,
            client=client,
            matters=matters,
            sent=dt(date) or ingested,
            from_domains=frozenset({domain_of(from_addr)} if from_addr and domain_of(from_addr) else ()),
            to_domains=frozenset(to_domains),
            copies=tuple(copies),
            query_rules=frozenset(name for name, hit in query_rules.items() if oid in hit),
            filings=owners.filings(client, matters),
        )
        yield LoadedMessage(record, frozenset(addresses), subject or "", date or "")
