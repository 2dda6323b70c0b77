"""Injected time.

Every component that needs "now" takes a ``Clock``, so tests move time across
years in milliseconds and retention decisions are reproducible.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


def iso(dt: datetime) -> str:
    """UTC timestamp as ISO 8601 with a Z, to the microsecond (journal and catalog format).

    Formatted by hand: it runs for every copy of every message the writer commits, and
    this is 40 % faster than ``strftime``, which also writes years before 1000 with fewer
    than four digits (which ``parse_iso`` could not read back).
    """
    d = dt if dt.tzinfo is UTC else dt.astimezone(UTC)
    return f"{d.year:04d}-{d.month:02d}-{d.day:02d}T{d.hour:02d}:{d.minute:02d}:{d.second:02d}.{d.microsecond:06d}Z"


def parse_iso(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


#: source times before this are a broken clock, not a date (Maildir files named 0, ...).
EPOCH_FLOOR = datetime(1980, 1, 1, tzinfo=UTC)


def received_at(source_time: datetime | None, now: datetime) -> datetime:
    """When a message reached its mailbox: the source's time when plausible, else ``now``.

    The normalizer dates a message with no usable Date by this, and flags Dates far after
    it, so a bogus source time (a Maildir file named by a broken clock) must not be
    trusted.  The ingest decides it from the copy it stores (``now``: the time of storing);
    a later re-parse decides it again from that first copy's recorded time and the
    ingest time, and so dates every message as the ingest did.
    """
    d = source_time
    if d is None or d.tzinfo is None or d < EPOCH_FLOOR or d > now + timedelta(days=1):
        return now
    # A plain UTC datetime: connector libraries' own tzinfo classes may not survive pickling
    # into the worker processes (a task a worker cannot unpickle is lost, and the pool waits).
    return d.astimezone(UTC)
