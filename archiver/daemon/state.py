"""The daemon's per-job state in ``ARCHIVE/daemon-state.json``, for `archiver status`.

`status` runs in another process and must not need the passphrase, the
repository lock or a connection to the daemon, so the daemon writes what it knows
(each job's last start and end, result counts, last error, next run) to a small
JSON file, atomically (temporary file, fsync, rename): a reader sees the old or
the new state, never half of one.  The previous file is read at start, so the
history of the last runs survives a restart, and so the daemon can tell which
scheduled runs fell while it was not running (``previous_daemon``).

A run that failed has ``last_error`` set and leaves ``last_success`` where it was;
a scheduled run that did not happen (the worker was busy, the daemon was down) is
counted in ``skipped`` and described in ``last_skipped``, so neither is silent.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from pathlib import Path
from typing import Any

from archiver.clock import Clock, iso, system_clock
from archiver.logging import get_logger

log = get_logger("archiver.daemon")

STATE_NAME = "daemon-state.json"
#: the job ids, the keys of the state file's ``jobs`` (and the scheduler's job ids).
RETENTION_JOB = "retention"
VERIFY_JOB = "verify"


def sync_job_id(source: str) -> str:
    """The id of a source's sync job."""
    return f"sync:{source}"


def read_state(archive_path: Path) -> dict[str, Any] | None:
    """The last state a daemon wrote for this archive, or None if there is none (or it is unreadable)."""
    try:
        data = json.loads((archive_path / STATE_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class DaemonState:
    """Thread-safe: jobs (worker thread) and the scheduler's listener (its own thread) both update it."""

    def __init__(self, archive_path: Path, clock: Clock = system_clock) -> None:
        self.path = archive_path / STATE_NAME
        self.clock = clock
        self._lock = threading.Lock()
        previous = read_state(archive_path) or {}
        jobs = previous.get("jobs") if isinstance(previous.get("jobs"), dict) else {}
        #: what the previous daemon wrote about itself (``started_at``, ``stopped_at``), or {}.
        self.previous_daemon: dict[str, Any] = (
            dict(previous["daemon"]) if isinstance(previous.get("daemon"), dict) else {}
        )
        self.data: dict[str, Any] = {"version": 1, "daemon": {}, "jobs": jobs, "reload": None}
        for job in self.data["jobs"].values():
            if isinstance(job, dict):
                job["running"] = False  # a previous daemon's unfinished run is not running now
                job["next_run"] = None

    # -- daemon lifecycle -------------------------------------------------------------
    def started(self, *, pid: int, config: str, listen: str) -> None:
        with self._lock:
            self.data["daemon"] = {
                "pid": pid,
                "config": config,
                "listen": listen,
                "started_at": iso(self.clock()),
                "status": "running",
            }
            self._write()

    def set_status(self, status: str) -> None:
        with self._lock:
            self.data["daemon"]["status"] = status
            if status == "stopped":
                self.data["daemon"]["stopped_at"] = iso(self.clock())
                for job in self.data["jobs"].values():
                    job["next_run"] = None
            self._write()

    def reloaded(self, ok: bool, error: str | None = None) -> None:
        with self._lock:
            self.data["reload"] = {"at": iso(self.clock()), "ok": ok, "error": error}
            self._write()

    # -- jobs -------------------------------------------------------------------------
    def configure(self, jobs: dict[str, dict[str, Any]]) -> None:
        """The jobs of the current config (kind, source, schedule); others are dropped."""
        with self._lock:
            old = self.data["jobs"]
            self.data["jobs"] = {jid: {**old.get(jid, _empty()), **info} for jid, info in jobs.items()}
            self._write()

    def job_started(self, job_id: str) -> None:
        with self._lock:
            job = self._job(job_id)
            job.update(running=True, last_start=iso(self.clock()), progress=0)
            self._write()

    def job_progress(self, job_id: str, done: int) -> None:
        with self._lock:
            self._job(job_id)["progress"] = done
            self._write()

    def job_finished(
        self, job_id: str, *, result: dict[str, Any] | None, error: str | None, complete: bool = True
    ) -> None:
        """Record a finished run; ``complete`` is False when a stop request cut it short."""
        with self._lock:
            job = self._job(job_id)
            now = iso(self.clock())
            job.update(running=False, last_end=now, last_result=result, last_error=error, complete=complete)
            job.pop("progress", None)
            job["runs"] = int(job.get("runs") or 0) + 1
            if error:
                job["errors"] = int(job.get("errors") or 0) + 1
                job["last_error_at"] = now
            else:
                job["last_success"] = now
            self._write()

    def job_skipped(self, job_id: str, *, reason: str, scheduled: str | None, count: int = 1) -> None:
        """Record ``count`` scheduled runs that did not happen, and why (``Jobs.skipped``)."""
        with self._lock:
            job = self._job(job_id)
            job["skipped"] = int(job.get("skipped") or 0) + count
            job["last_skipped"] = {"at": iso(self.clock()), "scheduled": scheduled, "reason": reason, "count": count}
            self._write()

    def failing(self) -> dict[str, str]:
        """The jobs whose last run ended with an error, with that error (for /healthz and /readyz)."""
        with self._lock:
            return {
                jid: str(job["last_error"])
                for jid, job in self.data["jobs"].items()
                if isinstance(job, dict) and job.get("last_error")
            }

    def next_runs(self, times: dict[str, str | None]) -> None:
        with self._lock:
            changed = False
            for jid, when in times.items():
                job = self.data["jobs"].get(jid)
                if job is not None and job.get("next_run") != when:
                    job["next_run"] = when
                    changed = True
            if changed:
                self._write()

    def job(self, job_id: str) -> dict[str, Any]:
        with self._lock:
            return dict(self._job(job_id))

    def _job(self, job_id: str) -> dict[str, Any]:
        job: dict[str, Any] = self.data["jobs"].setdefault(job_id, _empty())
        return job

    def _write(self) -> None:
        self.data["updated_at"] = iso(self.clock())
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(self.data, fh, indent=2, sort_keys=True, default=str)
                fh.write("\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            # The state file is a report, not a record: a full disk must not stop the archiving.
            with contextlib.suppress(OSError):
                tmp.unlink()
            log.warning("cannot write the daemon state file", path=str(self.path), error=str(exc))


def _empty() -> dict[str, Any]:
    return {
        "running": False,
        "last_start": None,
        "last_end": None,
        "last_success": None,
        "last_result": None,
        "last_error": None,
        "errors": 0,
        "runs": 0,
        "skipped": 0,
        "last_skipped": None,
        "next_run": None,
    }
