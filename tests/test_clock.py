"""The timestamp format of the journal and catalog."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from archiver.clock import iso, parse_iso


@pytest.mark.parametrize(
    ("when", "text"),
    [
        (datetime(2001, 5, 1, 12, 0, tzinfo=UTC), "2001-05-01T12:00:00.000000Z"),
        (datetime(2001, 5, 1, 1, 2, 3, 45, tzinfo=timezone(timedelta(hours=2))), "2001-04-30T23:02:03.000045Z"),
        (datetime(999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), "0999-12-31T23:59:59.999999Z"),
    ],
)
def test_iso_is_utc_to_the_microsecond_and_reads_back(when: datetime, text: str) -> None:
    assert iso(when) == text
    assert parse_iso(text) == when
