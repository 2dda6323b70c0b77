"""Config values to schedules: intervals, cron lines and listen addresses, with clear errors."""

from __future__ import annotations

from datetime import timedelta

import pytest

from archiver.daemon.schedules import parse_cron, parse_interval, parse_listen
from archiver.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("15m", 900), ("1h", 3600), ("1h30m", 5400), ("2d", 172800), ("1w", 604800), (" 5 m ", 300)],
)
def test_intervals(text: str, seconds: int) -> None:
    assert parse_interval(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "15", "m", "soon", "-5m", "1.5h", "0s", "10y"])
def test_bad_intervals_name_the_key(text: str) -> None:
    with pytest.raises(ConfigError, match=r"sources\.x\.interval"):
        parse_interval(text, "sources.x.interval")


def test_cron_is_utc_and_bad_lines_are_refused() -> None:
    trigger = parse_cron("0 3 * * *", "daemon.retention_schedule")
    assert str(trigger.timezone) == "UTC"
    with pytest.raises(ConfigError, match=r"daemon\.verify_schedule"):
        parse_cron("0 25 * * *", "daemon.verify_schedule")


def test_listen() -> None:
    assert parse_listen("127.0.0.1:9464") == ("127.0.0.1", 9464)
    assert parse_listen("[::1]:0") == ("::1", 0)
    for bad in ("9464", "localhost", "host:99999", "a:b"):
        with pytest.raises(ConfigError, match=r"daemon\.listen"):
            parse_listen(bad)
