"""Prometheus metrics of the daemon, in a registry of its own.

The registry is not prometheus_client's global default, so nothing else that
happens to be imported in the process (and no second daemon object in a test)
adds or clashes with series.  Counters count from the daemon's start, as
Prometheus expects; gauges that describe the archive (size, disposed messages)
are read from the archive itself, so they are right after a restart too.
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics", "directory_size"]


def directory_size(path: Path) -> int:
    """Bytes of every regular file under ``path`` (what the archive takes on disk)."""
    total = 0
    stack = [path]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for e in entries:
            try:
                if e.is_dir(follow_symlinks=False):
                    stack.append(Path(e.path))
                elif e.is_file(follow_symlinks=False):
                    total += e.stat(follow_symlinks=False).st_size
            except OSError:
                continue
    return total


class Metrics:
    """Every series the daemon exports; jobs update them, /metrics renders them."""

    def __init__(self, archive_path: Path) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.archived = Counter(
            "archiver_messages_archived", "New messages archived, per source", ["source"], registry=r
        )
        self.duplicates = Counter(
            "archiver_messages_duplicate",
            "Messages fetched that were already archived, per source",
            ["source"],
            registry=r,
        )
        self.sync_errors = Counter(
            "archiver_sync_errors",
            "Failed sync runs and messages a source could not deliver, per source",
            ["source"],
            registry=r,
        )
        self.syncs = Counter("archiver_sync_runs", "Sync runs finished, per source", ["source"], registry=r)
        self.last_success = Gauge(
            "archiver_last_successful_sync_timestamp_seconds",
            "Unix time of the last sync run that ended without an error (nothing failed), per source",
            ["source"],
            registry=r,
        )
        self.sync_ok = Gauge(
            "archiver_sync_last_ok",
            "1 if the last sync run of the source ended without an error, else 0",
            ["source"],
            registry=r,
        )
        self.source_errors = Gauge(
            "archiver_source_errors",
            "Accounts, mailboxes or paths the last sync run could not read at all, per source",
            ["source"],
            registry=r,
        )
        self.archive_size = Gauge("archiver_archive_size_bytes", "Bytes the archive folder takes on disk", registry=r)
        self.archive_size.set_function(lambda: float(directory_size(archive_path)))
        self.live_messages = Gauge("archiver_messages", "Messages held (not disposed of)", registry=r)
        self.disposed = Gauge(
            "archiver_messages_disposed", "Messages disposed of, per retention rule", ["rule"], registry=r
        )
        self.retention_runs = Counter(
            "archiver_retention_runs", "Retention sweeps finished, by outcome", ["outcome"], registry=r
        )
        self.retention_last_run = Gauge(
            "archiver_retention_last_run_timestamp_seconds", "Unix time the last retention sweep ended", registry=r
        )
        self.verify_ok = Gauge("archiver_verify_last_ok", "1 if the last scheduled verify passed, else 0", registry=r)
        self.verify_last_run = Gauge(
            "archiver_verify_last_run_timestamp_seconds", "Unix time the last scheduled verify ended", registry=r
        )
        self.job_running = Gauge("archiver_job_running", "1 while a job runs", ["job"], registry=r)
        self.skipped = Counter(
            "archiver_job_runs_skipped",
            "Scheduled runs that did not happen, per job and reason (still_running: the previous run of "
            "the job had not ended; waiting: it was still queued behind another job; too_late: past its "
            "misfire grace time; daemon_down: due while the daemon was not running)",
            ["job", "reason"],
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
