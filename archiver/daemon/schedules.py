"""Config values -> APScheduler triggers, with errors that name the key at fault.

The config stores intervals (``15m``) and cron lines as plain strings, so that a
typo is reported by the daemon at start or on reload, naming the source or the
key, instead of surfacing as an APScheduler traceback.  Cron lines mean what crontab
means: APScheduler 3.x numbers weekdays from Monday (its ``from_crontab`` takes
``0 4 * * 0`` as Mondays, not Sundays), so the weekday field is translated to day
names first (``crontab_weekdays``).  A cron line must also fire:
``0 3 30 2 *`` (30 February) is valid syntax that APScheduler accepts and never runs,
which would leave retention or verify silently unscheduled.  The triggers are pure:
the same checks run before a reloaded config replaces the running one.

The scheduler itself is made here too (``new_scheduler``), because how it treats a
run that cannot start on time is a scheduling decision: see ``JOB_DEFAULTS``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from archiver.config import Config, SourceConfig, parse_listen
from archiver.daemon.state import sync_job_id
from archiver.errors import ConfigError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+)\s*([smhdw])")
_WHOLE = re.compile(r"(?:\d+\s*[smhdw]\s*)+")

#: a cron line must fire within this long of now (the rarest valid line, 29 February, fires every 4 years).
CRON_HORIZON = timedelta(days=5 * 366)

#: How every job is scheduled, deliberately (APScheduler 3.x):
#:
#: * ``misfire_grace_time=None``: a run that could not start on time (the one worker
#:   thread was busy with a long sync, a first import, a slow server) runs as soon as the
#:   thread is free, however late.  With a grace time APScheduler drops it with only a
#:   warning, and a retention sweep or weekly verify would silently not happen.
#: * ``coalesce=True`` and ``max_instances=1``: a job is queued at most once.  A run that
#:   falls due while the previous one is still queued or running is skipped (it would do
#:   the same work); the daemon records each such skip (``Jobs.skipped``).
JOB_DEFAULTS: dict[str, Any] = {"coalesce": True, "max_instances": 1, "misfire_grace_time": None}
#: APScheduler's events for a run that did not happen (reported to the listener of ``new_scheduler``).
SKIP_EVENTS = EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES


def parse_interval(text: str, key: str = "interval") -> timedelta:
    """``30s``, ``15m``, ``1h``, ``1h30m``, ``2d``, ``1w`` -> a positive timedelta."""
    value = str(text).strip().lower()
    if not value or not _WHOLE.fullmatch(value):
        raise ConfigError(
            f"{key}: {text!r} is not a duration; write a number and a unit (s, m, h, d, w), e.g. 30s, 15m, 1h or 1h30m."
        )
    seconds = sum(int(n) * _UNITS[u] for n, u in _PART.findall(value))
    if seconds <= 0:
        raise ConfigError(f"{key}: {text!r} is zero; the interval must be at least 1s.")
    return timedelta(seconds=seconds)


_CRON_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _cron_day(text: str) -> int:
    """``0``-``7`` (0 and 7 are Sunday) or a day name, as 0 (Sunday) to 7."""
    t = text.strip().lower()
    if t.isdigit() and int(t) <= 7:
        return int(t)
    if t in _CRON_DAYS:
        return _CRON_DAYS.index(t)
    raise ValueError(f"{text!r} is not a weekday (0-7, 0 and 7 being Sunday, or sun-sat)")


def crontab_weekdays(field: str) -> str:
    """A crontab weekday field (``0``, ``1-5``, ``sat,sun``, ``*/2``, ``5-7``) as APScheduler day names.

    crontab counts from Sunday (0, also 7); APScheduler 3.x counts from Monday, so
    passing the numbers through would move every weekly job by a day.  Names mean the
    same to both.
    """
    if field.strip() == "*":
        return "*"
    days: set[int] = set()
    for part in field.split(","):
        span, slash, step_text = part.partition("/")
        if slash and not (step_text.isdigit() and int(step_text) > 0):
            raise ValueError(f"{part!r}: the step after '/' must be a positive number")
        step = int(step_text) if slash else 1
        if span.strip() == "*":
            first, last = 0, 6
        elif "-" in span:
            a, b = span.split("-", 1)
            first, last = _cron_day(a), _cron_day(b)
        else:
            first = _cron_day(span)
            last = 7 if slash else first  # "1/2": from Monday on, every other day
        if first > last:
            raise ValueError(f"{part!r}: a range must go from the earlier day to the later one")
        days.update(d % 7 for d in range(first, last + 1, step))
    return ",".join(_CRON_DAYS[d] for d in sorted(days))


def parse_cron(text: str, key: str, now: datetime | None = None) -> CronTrigger:
    """A five-field crontab line (minute hour day month weekday), evaluated in UTC, that fires.

    A line naming a date that does not exist (``0 3 30 2 *``, ``0 4 31 4 *``) parses, and
    APScheduler would schedule it with no next run at all: refused here, naming the key,
    as is one whose next run is more than ``CRON_HORIZON`` away.
    """
    try:
        fields = str(text).split()
        if len(fields) == 5:
            fields[4] = crontab_weekdays(fields[4])
        trigger = CronTrigger.from_crontab(" ".join(fields), timezone=UTC)
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"{key}: {text!r} is not a valid cron line (minute hour day month weekday, UTC): {exc}."
        ) from None
    now = now or datetime.now(UTC)
    first = trigger.get_next_fire_time(None, now)
    if first is None or first > now + CRON_HORIZON:
        raise ConfigError(
            f"{key}: {text!r} never fires (no such date, or none within 5 years; note that a day of the "
            "month and a weekday must both match); write a line that names a date that exists, e.g. '0 3 * * *'."
        )
    return trigger


def missed_runs(trigger: CronTrigger, since: datetime, now: datetime, limit: int = 1000) -> list[datetime]:
    """The fire times of ``trigger`` after ``since`` and up to ``now`` (at most ``limit``)."""
    out: list[datetime] = []
    when = trigger.get_next_fire_time(since, since)
    while when is not None and when <= now and len(out) < limit:
        out.append(when)
        when = trigger.get_next_fire_time(when, when)
    return out


def new_scheduler(on_skipped: Callable[[Any], None]) -> BackgroundScheduler:
    """The daemon's scheduler: one worker thread (see ``service``), ``JOB_DEFAULTS``, UTC.

    ``on_skipped`` is called with APScheduler's event for every run that did not happen
    (``SKIP_EVENTS``), so that it is recorded instead of only logged by APScheduler.
    """
    scheduler = BackgroundScheduler(
        executors={"default": ThreadPoolExecutor(max_workers=1)}, job_defaults=dict(JOB_DEFAULTS), timezone=UTC
    )
    scheduler.add_listener(on_skipped, SKIP_EVENTS)
    return scheduler


@dataclass(frozen=True)
class SourcePlan:
    """One source and how often it is synced."""

    source: SourceConfig
    interval: timedelta

    @property
    def job_id(self) -> str:
        return sync_job_id(self.source.name)


@dataclass(frozen=True)
class Plan:
    """Everything the daemon schedules, derived from (and validated against) one config."""

    sources: tuple[SourcePlan, ...]
    retention: CronTrigger
    verify: CronTrigger
    listen: tuple[str, int]

    def interval_trigger(self, sp: SourcePlan) -> IntervalTrigger:
        return IntervalTrigger(seconds=int(sp.interval.total_seconds()), timezone=UTC)


def plan(cfg: Config) -> Plan:
    """Validate the schedule-related parts of ``cfg``; raises ConfigError naming the first bad key."""
    sources = tuple(
        SourcePlan(src, parse_interval(src.interval, f"sources.{src.name}.interval")) for src in cfg.sources
    )
    return Plan(
        sources=sources,
        retention=parse_cron(cfg.daemon.retention_schedule, "daemon.retention_schedule"),
        verify=parse_cron(cfg.daemon.verify_schedule, "daemon.verify_schedule"),
        listen=parse_listen(cfg.daemon.listen),
    )
