"""Config values -> APScheduler triggers, with errors that name the key at fault.

The config stores intervals (``15m``) and cron lines as plain strings, so that a
typo is reported by the daemon at start or on reload, naming the source or the
key, instead of surfacing as an APScheduler traceback.  Everything here is pure:
the same checks run before a reloaded config replaces the running one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, timedelta

from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from archiver.config import Config, SourceConfig, parse_listen
from archiver.daemon.state import sync_job_id
from archiver.errors import ConfigError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+)\s*([smhdw])")
_WHOLE = re.compile(r"(?:\d+\s*[smhdw]\s*)+")


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


def parse_cron(text: str, key: str) -> CronTrigger:
    """A five-field crontab line (minute hour day month weekday), evaluated in UTC."""
    try:
        return CronTrigger.from_crontab(str(text), timezone=UTC)
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"{key}: {text!r} is not a valid cron line (minute hour day month weekday, UTC): {exc}."
        ) from None


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
