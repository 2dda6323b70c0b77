"""`archiver journal`: read the audit trail (the committed journal records), filtered.

Auditors and compliance officers ask "who exported what for case C", "every search by
this user last week", "when was this matter put on hold".  The journal holds the answer,
hash-chained and signed, but since it is stored compressed (one zstd frame per
transaction) it is no longer something to grep; this command reads it the one way the
archive does (`Journal.lines`), keeps only committed records, and filters.  With
``--json`` it prints the records exactly as stored (canonical JSON, one per line), so
the output can be re-hashed and checked against the chain by anyone.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from archiver.cli.common import open_archive, say, wants_json, write_out
from archiver.errors import UsageError
from archiver.store.journal import JournalError, canonical
from archiver.store.repository import Repository

#: record types that only carry the chain (shown with --all).
_PLUMBING = frozenset({"commit", "checkpoints", "checkpoint"})


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "journal",
        parents=[parent],
        help="print journal records (the audit trail), filtered",
        description="Prints committed journal records, oldest first. Filters combine with AND; "
        "--json prints each record exactly as stored, one per line.",
    )
    p.add_argument("--type", action="append", default=[], metavar="TYPE", help="record type (repeatable), e.g. export")
    p.add_argument("--actor", help="only records by this actor (e.g. web:alice, cli:root, system)")
    p.add_argument(
        "--id",
        dest="oid",
        metavar="ID",
        help="only records that name this message (its id, or a unique prefix of at least 8 digits, as for show)",
    )
    p.add_argument("--after", metavar="YYYY-MM-DD", help="records at or after this date (UTC)")
    p.add_argument("--before", metavar="YYYY-MM-DD", help="records before this date (UTC)")
    p.add_argument("--since-seq", type=int, default=0, metavar="N", help="records with seq >= N")
    p.add_argument("--limit", type=int, default=0, metavar="N", help="stop after N records (0 = all)")
    p.add_argument("--all", action="store_true", help="include commit and checkpoint records")
    p.set_defaults(func=run)


def _day(value: str | None, flag: str) -> str | None:
    """A date as the ISO prefix journal times compare against ("2024-01-31T00:00:00")."""
    if value is None:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    except ValueError:
        raise UsageError(f"{flag} takes a date as YYYY-MM-DD, not {value!r}.") from None


def _names(data: Any, oid: str) -> bool:
    """True when a record's data mentions the message id (ingest, copy, tag, dispose, view...)."""
    if isinstance(data, dict):
        return any(_names(v, oid) for v in data.values())
    if isinstance(data, list):
        return any(_names(v, oid) for v in data)
    return bool(data == oid)


def records(repo: Repository, args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    """The committed records that pass the filters.

    ``--id`` is resolved as `show` and `name` resolve theirs (Repository.resolve): a unique
    prefix or an upper-case id finds the same records as the full id, whereas records store
    only the full lower-case form.
    """
    oid = None if args.oid is None else repo.resolve(args.oid)
    after, before = _day(args.after, "--after"), _day(args.before, "--before")
    types = set(args.type)
    head = repo.catalog.head()
    shown = 0
    try:
        for line in repo.journal.committed(head):  # an uncommitted tail is never part of the trail
            rec = line.record
            if rec.get("seq", -1) < args.since_seq:
                continue
            kind = rec.get("type")
            if types and kind not in types:
                continue
            if not types and not args.all and kind in _PLUMBING:
                continue
            if args.actor is not None and rec.get("actor") != args.actor:
                continue
            when = str(rec.get("time", ""))
            if (after is not None and when < after) or (before is not None and when >= before):
                continue
            if oid is not None and not _names(rec.get("data"), oid):
                continue
            yield rec
            shown += 1
            if args.limit and shown >= args.limit:
                return
    except JournalError as exc:
        raise UsageError(f"The journal cannot be read past this point ({exc}); run `archiver verify`.") from None


def _summary(data: dict[str, Any]) -> str:
    """One line of a record's data: short values in full, long ones cut."""
    parts = []
    for key, value in data.items():
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        parts.append(f"{key}={text if len(text) <= 70 else text[:67] + '...'}")
    return " ".join(parts)


def run(args: argparse.Namespace) -> int:
    if args.limit < 0 or args.since_seq < 0:
        raise UsageError("--limit and --since-seq take a number of 0 or more.")
    with open_archive(args, need_keys=False) as archive:
        if wants_json(args):
            for rec in records(archive.repo, args):
                write_out(canonical(rec) + b"\n", flush=False)  # flushed by main at the end
            return 0
        n = 0
        for rec in records(archive.repo, args):
            n += 1
            say(
                f"{rec['seq']:>7}  {rec['time'][:19]}Z  {rec['type']:<14} {rec['actor']:<16} "
                f"{_summary(rec.get('data') or {})}"
            )
        if n == 0:
            say("no matching journal records")
    return 0
