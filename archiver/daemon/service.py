"""The daemon's life: start, schedule, reload on SIGHUP, stop cleanly on SIGTERM/SIGINT.

Concurrency.  Every job runs in ONE worker thread (APScheduler's thread-pool
executor with ``max_workers=1``) against one shared :class:`Archive`.  The
archive is single-writer by construction: the repository's flock serialises
transactions between processes, but inside one process the Archive object (its
SQLite connections, its tantivy writer, which tantivy allows only once per
index) is not meant to be driven from two threads at once, and giving each job
its own Archive would make two jobs of this daemon fight over the index writer.
Sources are therefore synced one after the other; the parallelism that matters,
parsing and encryption, happens in the ingest pipeline's worker processes.  A
slow job delays the others but never overlaps itself, and a run held up behind it
runs late rather than never (``schedules.JOB_DEFAULTS``); a run that falls due while
the job is still queued or running is skipped and recorded, and a retention sweep or
verify missed while the daemon was down runs once at start-up (``Jobs.catch_up``).
The main thread only waits for signals; the HTTP endpoint reads the metrics registry
and the state, never the archive.

Signals.  The handlers only set flags; the main thread acts on them.  SIGTERM or
SIGINT: stop scheduling, set the stop event (the running sync ends after its
current batch is committed), wait up to ``daemon.shutdown_timeout_s`` and exit 0;
if a job does not reach a safe point in time the daemon exits 1 anyway, which
loses nothing (every batch is committed with its checkpoint; recovery cuts an
unfinished transaction).  SIGHUP: reload the config file; a config that does not
load or validate is refused, logged and recorded in the state file, and the
running one is kept.  The reload hooks (the web UI's, when ``daemon.serve_web``)
get the new config first and may refuse it the same way.

Every commit the jobs make is sealed by an Ed25519-signed checkpoint record in
the journal (the repository does this per transaction), so the daemon adds no
signing of its own.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_RUNNING

from archiver.archive import Archive
from archiver.clock import Clock, iso, system_clock
from archiver.config import Config, load_config
from archiver.daemon.health import HealthServer
from archiver.daemon.jobs import Jobs
from archiver.daemon.lock import DaemonLock
from archiver.daemon.metrics import Metrics
from archiver.daemon.schedules import Plan, new_scheduler, plan
from archiver.daemon.state import RETENTION_JOB, VERIFY_JOB, DaemonState
from archiver.errors import ArchiverError, ConfigError
from archiver.logging import get_logger, setup_logging
from archiver.store.repository import Repository

log = get_logger("archiver.daemon")


class Daemon:
    """One running daemon for the archive of ``cfg``."""

    def __init__(self, cfg: Config, *, log_format: str | None = None, clock: Clock = system_clock) -> None:
        self.cfg = cfg
        self.log_format = log_format
        self.clock = clock
        self.plan: Plan = plan(cfg)  # a bad interval or cron line stops us before anything starts
        self.stop_event = threading.Event()
        self._wake = threading.Event()
        self._signal: int | None = None
        self._reload = False
        self._stopping = False
        self.scheduler: BackgroundScheduler | None = None
        self.jobs: Jobs | None = None
        self.state: DaemonState | None = None
        #: called with a reloaded config before it is used, e.g. the web UI's users and walls;
        #: a ConfigError from one refuses the reload like an invalid file.
        self._reload_hooks: list[Callable[[Config], None]] = []

    # -- entry point ------------------------------------------------------------------
    def run(self) -> int:
        path = self.cfg.archive.path
        Repository.read_info(path)  # "no archive here" before creating a lock file in a missing folder
        lock = DaemonLock(path)
        lock.acquire()
        try:
            return self._run_locked()
        finally:
            lock.release()

    def _run_locked(self) -> int:
        cfg = self.cfg
        archive = Archive.open(cfg, clock=self.clock)
        self.state = state = DaemonState(cfg.archive.path, self.clock)
        metrics = Metrics(cfg.archive.path)
        self.jobs = jobs = Jobs(archive, state, metrics, self.stop_event, self.clock)
        host, port = self.plan.listen
        try:
            http = HealthServer(host, port, self._health, metrics.render)
        except BaseException:
            archive.close()
            raise
        try:
            self.scheduler = new_scheduler(jobs.skipped)
            self._schedule(self.plan, initial=True)
            jobs.seed_gauges()  # the worker thread has not started: the archive is still ours here
            previous = self._install_signals()
            state.started(pid=os.getpid(), config=str(cfg.origin or ""), listen=http.address)
            http.start()
            web = None
            if cfg.daemon.serve_web:
                from archiver.daemon.webserver import WebServer

                web = WebServer(cfg, archive)
                self._reload_hooks.append(web.reconfigure)
                web.start()
            self.scheduler.start()
            log.info(
                "daemon started",
                archive=str(cfg.archive.path),
                listen=http.address,
                sources=[s.source.name for s in self.plan.sources],
            )
            if not self.plan.sources:
                log.warning("no sources are configured: only the retention sweep and verify will run")
            try:
                self._loop()
                return self._shutdown()
            finally:
                if web is not None:
                    web.stop()
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
        finally:
            http.stop()
            if not jobs.running():
                archive.close()

    # -- scheduling --------------------------------------------------------------------
    def _schedule(self, new: Plan, *, initial: bool = False) -> None:
        """Make the scheduler's jobs match ``new``; unchanged sources keep their next run."""
        assert self.scheduler is not None and self.jobs is not None and self.state is not None
        sched, jobs = self.scheduler, self.jobs
        wanted = {sp.job_id: sp for sp in new.sources}
        old = {sp.job_id: sp for sp in self.plan.sources} if not initial else {}
        for job in sched.get_jobs():
            if job.id.startswith("sync:") and job.id not in wanted:
                sched.remove_job(job.id)
        now = datetime.now(UTC)
        for jid, sp in wanted.items():
            if sched.get_job(jid) is None:
                sched.add_job(
                    jobs.sync,
                    trigger=new.interval_trigger(sp),
                    args=[sp.source.name],
                    id=jid,
                    name=jid,
                    next_run_time=now,  # a new source is synced at once, then on its interval
                )
            elif jid not in old or old[jid].interval != sp.interval:
                sched.reschedule_job(jid, trigger=new.interval_trigger(sp))
        cron = {RETENTION_JOB: (jobs.retention, new.retention), VERIFY_JOB: (jobs.verify, new.verify)}
        late = jobs.catch_up({jid: trigger for jid, (_f, trigger) in cron.items()}, now) if initial else set()
        for jid, (func, trigger) in cron.items():
            at_once = {"next_run_time": now} if jid in late else {}  # missed while down: once, now
            sched.add_job(func, trigger=trigger, id=jid, name=jid, replace_existing=True, **at_once)
        info: dict[str, dict[str, Any]] = {
            jid: {"kind": "sync", "source": sp.source.name, "type": sp.source.type, "interval": sp.source.interval}
            for jid, sp in wanted.items()
        }
        info[RETENTION_JOB] = {"kind": "retention", "schedule": self.cfg.daemon.retention_schedule + " UTC"}
        info[VERIFY_JOB] = {
            "kind": "verify",
            "schedule": self.cfg.daemon.verify_schedule + " UTC",
            "full": self.cfg.daemon.verify_full,
        }
        self.state.configure(info)

    def _next_runs(self) -> None:
        assert self.scheduler is not None and self.state is not None
        times: dict[str, str | None] = {}
        for job in self.scheduler.get_jobs():
            when = getattr(job, "next_run_time", None)
            times[job.id] = iso(when) if when is not None else None
        self.state.next_runs(times)

    # -- signals and the main loop ----------------------------------------------------------
    def _install_signals(self) -> dict[int, Any]:
        previous: dict[int, Any] = {}
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            previous[sig] = signal.signal(sig, self._on_signal)
        return previous

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self._reload = True
        elif self._signal is None:
            self._signal = signum
        self._wake.set()

    def _loop(self) -> None:
        while True:
            self._wake.wait(1.0)
            self._wake.clear()
            if self._signal is not None:
                log.info("stop requested", signal=signal.Signals(self._signal).name)
                return
            if self._reload:
                self._reload = False
                self.reload()
            self._next_runs()

    def reload(self) -> None:
        """SIGHUP: load and validate the config file again; keep the old one if the new one is bad."""
        assert self.jobs is not None and self.state is not None
        origin = self.cfg.origin
        try:
            if origin is None:
                raise ConfigError("The daemon was started without a config file, so there is nothing to reload.")
            new = load_config(origin)
            new_plan = plan(new)
            if new.archive.path != self.cfg.archive.path:
                raise ConfigError(
                    f"archive.path cannot change while the daemon runs ({self.cfg.archive.path} -> "
                    f"{new.archive.path}); restart the daemon to use another archive."
                )
            _check_rules(new)
            for hook in self._reload_hooks:
                hook(new)
        except ArchiverError as exc:
            log.error("configuration reload refused; the running configuration is kept", error=str(exc))
            self.state.reloaded(False, str(exc))
            return
        if new.daemon.listen != self.cfg.daemon.listen:
            log.warning("daemon.listen changed: it takes effect when the daemon restarts", listen=new.daemon.listen)
        setup_logging(new.logging.level, self.log_format or new.logging.format)
        self.jobs.use_config(new)
        old_cfg, self.cfg = self.cfg, new
        try:
            self._schedule(new_plan)
        except Exception:
            self.cfg = old_cfg
            raise
        self.plan = new_plan
        self.state.reloaded(True)
        log.info("configuration reloaded", sources=[s.source.name for s in new_plan.sources])

    def _shutdown(self) -> int:
        assert self.scheduler is not None and self.jobs is not None and self.state is not None
        self._stopping = True
        self.state.set_status("stopping")
        self.stop_event.set()
        self.scheduler.shutdown(wait=False)
        timeout = self.cfg.daemon.shutdown_timeout_s
        running = self.jobs.running()
        if running:
            log.info("waiting for running jobs to reach a safe point", jobs=running, timeout_s=timeout)
        if not self.jobs.wait_idle(timeout):
            log.error(
                "jobs did not stop in time; exiting anyway (every committed batch is kept, "
                "the unfinished one is redone by the next run)",
                jobs=self.jobs.running(),
                timeout_s=timeout,
            )
            self.state.set_status("stopped")
            os._exit(1)  # the worker thread is stuck in a job; a normal exit would wait for it
        self.state.set_status("stopped")
        log.info("daemon stopped")
        return 0

    def _health(self) -> tuple[bool, dict[str, Any]]:
        sched = self.scheduler
        up = sched is not None and sched.state == STATE_RUNNING and not self._stopping
        detail: dict[str, Any] = {
            "status": "ok" if up else ("stopping" if self._stopping else "not running"),
            "pid": os.getpid(),
            "archive": str(self.cfg.archive.path),
            "running_jobs": self.jobs.running() if self.jobs else [],
            "failing": self.state.failing() if self.state else {},
        }
        if up and sched is not None:
            detail["jobs"] = {
                j.id: (iso(j.next_run_time) if getattr(j, "next_run_time", None) else None) for j in sched.get_jobs()
            }
        return up, detail


def _check_rules(cfg: Config) -> None:
    """Refuse a reload whose retention rules file does not load (the sweep would refuse it anyway)."""
    from archiver.policies.rules import load_rules

    try:
        load_rules(Path(cfg.retention.rules_file))
    except ArchiverError as exc:
        raise ConfigError(f"Retention rules: {exc}") from None
