"""Injected time.

Every component that needs "now" takes a ``Clock``, so tests move time across
years in milliseconds and retention decisions are reproducible.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


def iso(dt: datetime) -> str:
    """UTC timestamp as ISO 8601 with a Z, to the microsecond (journal and catalog format)."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))
