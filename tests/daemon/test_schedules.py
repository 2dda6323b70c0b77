"""Config values to schedules: intervals, cron lines and listen addresses, with clear errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from archiver.daemon.schedules import crontab_weekdays, missed_runs, parse_cron, parse_interval, parse_listen
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


@pytest.mark.parametrize("line", ["0 3 30 2 *", "0 4 31 4 *", "0 0 31 6 *", "0 0 31 2,4,6,9,11 *"])
def test_a_cron_line_that_never_fires_is_refused(line: str) -> None:
    """30 February is valid syntax: APScheduler would accept it and never run the sweep."""
    with pytest.raises(ConfigError, match=r"daemon\.retention_schedule: .* never fires"):
        parse_cron(line, "daemon.retention_schedule")


def test_a_rare_cron_line_within_the_horizon_is_kept() -> None:
    now = datetime(2026, 3, 1, tzinfo=UTC)
    trigger = parse_cron("0 0 29 2 *", "daemon.verify_schedule", now=now)  # every leap day
    assert trigger.get_next_fire_time(None, now) == datetime(2028, 2, 29, tzinfo=UTC)


@pytest.mark.parametrize(
    ("line", "weekdays"),
    [
        ("0 4 * * 0", {"Sun"}),
        ("0 4 * * 7", {"Sun"}),
        ("0 9 * * 1-5", {"Mon", "Tue", "Wed", "Thu", "Fri"}),
        ("0 9 * * 5-7", {"Fri", "Sat", "Sun"}),
        ("0 9 * * */2", {"Sun", "Tue", "Thu", "Sat"}),
        ("0 9 * * sat,SUN", {"Sat", "Sun"}),
        ("0 9 * * *", {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"}),
    ],
)
def test_cron_weekdays_count_from_sunday_as_crontab_does(line: str, weekdays: set[str]) -> None:
    """APScheduler 3.x's from_crontab counts weekdays from Monday: the default weekly verify
    (``0 4 * * 0``, Sundays) ran on Mondays."""
    trigger = parse_cron(line, "daemon.verify_schedule")
    when, seen = datetime(2026, 1, 1, tzinfo=UTC), set()
    for _ in range(14):
        nxt = trigger.get_next_fire_time(None, when)
        assert nxt is not None
        seen.add(nxt.strftime("%a"))
        when = nxt + timedelta(minutes=1)
    assert seen == weekdays


@pytest.mark.parametrize("field", ["8", "5-1", "*/0", "funday"])
def test_bad_weekdays_are_refused(field: str) -> None:
    with pytest.raises(ValueError):
        crontab_weekdays(field)
    with pytest.raises(ConfigError, match=r"daemon\.verify_schedule"):
        parse_cron(f"0 4 * * {field}", "daemon.verify_schedule")


def test_missed_runs_are_the_fire_times_after_the_last_start() -> None:
    trigger = parse_cron("0 3 * * *", "daemon.retention_schedule")
    last = datetime(2026, 1, 5, 3, 0, 0, 100_000, tzinfo=UTC)  # Monday's sweep started
    assert missed_runs(trigger, last, datetime(2026, 1, 5, 23, tzinfo=UTC)) == []
    assert missed_runs(trigger, last, datetime(2026, 1, 7, 3, tzinfo=UTC)) == [
        datetime(2026, 1, 6, 3, tzinfo=UTC),
        datetime(2026, 1, 7, 3, tzinfo=UTC),
    ]


def test_listen() -> None:
    assert parse_listen("127.0.0.1:9464") == ("127.0.0.1", 9464)
    assert parse_listen("[::1]:0") == ("::1", 0)
    for bad in ("9464", "localhost", "host:99999", "a:b"):
        with pytest.raises(ConfigError, match=r"daemon\.listen"):
            parse_listen(bad)
