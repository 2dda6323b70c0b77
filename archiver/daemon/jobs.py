"""What the daemon's scheduled jobs do: sync one source, sweep retention, verify.

Every job runs in the scheduler's single worker thread against the one
:class:`~archiver.archive.Archive` the daemon opened (see ``service`` for why one
thread), binds its own logging context (contextvars do not follow work into
APScheduler's threads), records its outcome in the state file and the metrics,
and never lets an exception escape: a failing source is reported and retried on
its next run, it does not stop the daemon or the other sources.

A sync fails when anything in it failed: the pipeline reports an unreachable server,
a refused login or a missing path as a failure in its summary, not as an exception,
so a run "without an exception" is not a success.  Any failure of the summary
(``source_errors``, ``failed``) sets the run's ``last_error`` and leaves
``last_success`` and its metric where they were, so "no successful sync for N hours"
alerts fire while a custodian's mail is not archived.

Runs that did not happen are recorded too: the scheduler reports each skipped run
(``skipped``), and at start-up a retention sweep or verify that fell due while the
daemon was down is counted and run once (``catch_up``).

Shutdown is cooperative: ``stop`` is polled by the ingest pipeline between
batches, so a sync stops right after a committed batch (messages and checkpoint
in the same transaction) and the next run resumes exactly there.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from apscheduler.events import EVENT_JOB_MISSED
from apscheduler.triggers.cron import CronTrigger
from structlog.contextvars import bound_contextvars

from archiver.archive import Archive
from archiver.clock import Clock, iso, parse_iso, system_clock
from archiver.config import Config, SourceConfig
from archiver.daemon.metrics import Metrics
from archiver.daemon.schedules import missed_runs
from archiver.daemon.state import RETENTION_JOB, VERIFY_JOB, DaemonState, sync_job_id
from archiver.errors import ArchiverError
from archiver.logging import get_logger
from archiver.normalize.tagging import Tagger
from archiver.pipeline import IngestSummary, ingest
from archiver.sources import build_connector
from connectors.base import where_raised

log = get_logger("archiver.daemon")

ACTOR = "daemon"


def accounts_of(src: SourceConfig) -> list[str]:
    """The mailboxes a source reads, for the log context (file sources have none)."""
    if src.type == "imap":
        return [a.username for a in src.accounts]
    if src.type in ("ews", "graph"):
        return list(src.mailboxes)
    return []


def sync_error(summary: IngestSummary) -> str | None:
    """Why a sync run failed, or None when nothing in it failed.

    Whole failures (``source_errors``: a server unreachable, a login refused, a path
    missing) and messages that could not be fetched both count: either way mail that
    should be in the archive is not, and the run must not be reported as a success.
    """
    if not summary.failed and not summary.source_errors:
        return None
    parts = []
    if summary.source_errors:
        parts.append(f"{summary.source_errors} account(s), mailbox(es) or path(s) could not be read at all")
    messages = summary.failed - summary.source_errors
    if messages > 0:
        parts.append(f"{messages} message(s), folder(s) or path(s) could not be archived")
    text = " and ".join(parts)
    if summary.failures:
        first = summary.failures[0]
        text += f"; first: {first.get('location') or '?'}: {first.get('reason') or '?'}"
    return text


class Jobs:
    """The job functions APScheduler calls, with what they share."""

    def __init__(
        self,
        archive: Archive,
        state: DaemonState,
        metrics: Metrics,
        stop: threading.Event,
        clock: Clock = system_clock,
    ) -> None:
        self.archive = archive
        self.state = state
        self.metrics = metrics
        self.stop = stop
        self.clock = clock
        self._pending: Config | None = None
        self._guard = threading.Lock()
        self._running: set[str] = set()
        self._idle = threading.Condition(self._guard)

    # -- coordination with the main thread --------------------------------------------
    def use_config(self, cfg: Config) -> None:
        """Called on reload (main thread); the worker thread switches before its next job."""
        with self._guard:
            self._pending = cfg

    def running(self) -> list[str]:
        with self._guard:
            return sorted(self._running)

    def wait_idle(self, timeout: float) -> bool:
        """True once no job runs (queued jobs see ``stop`` and return at once)."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._running, timeout=timeout)

    @contextmanager
    def _run(self, job_id: str, **context: str) -> Iterator[bool]:
        """Bookkeeping around one job; yields False when the daemon is stopping (skip the work)."""
        with self._guard:
            skip = self.stop.is_set()
            if not skip:
                self._running.add(job_id)
                pending, self._pending = self._pending, None
        if skip:
            yield False
            return
        try:
            if pending is not None:
                # Only this thread uses the archive, so swapping its config here is race-free.
                self.archive.cfg = pending
                self.archive.tagger = Tagger(pending.tagging)
            self.metrics.job_running.labels(job_id).set(1)
            with bound_contextvars(job=job_id, **context):
                yield True
        finally:
            self.metrics.job_running.labels(job_id).set(0)
            with self._idle:
                self._running.discard(job_id)
                self._idle.notify_all()

    # -- the jobs -----------------------------------------------------------------------
    def sync(self, source: str) -> None:
        """One ingest pass over one source; stops at a committed batch when asked to."""
        job_id = sync_job_id(source)
        cfg_src = next((s for s in (self._pending or self.archive.cfg).sources if s.name == source), None)
        accounts = ",".join(accounts_of(cfg_src)) if cfg_src is not None else ""
        context = {"source": source, **({"account": accounts} if accounts else {})}
        with self._run(job_id, **context) as go:
            if not go:
                return
            src = next((s for s in self.archive.cfg.sources if s.name == source), None)
            if src is None:  # removed by a reload after this run was queued
                return
            self.state.job_started(job_id)
            log.info("sync started")
            error: str | None = None
            result: dict[str, Any] | None = None
            try:
                connector = build_connector(src)  # its exceptions end this source only (pipeline._guarded)
                summary = ingest(
                    self.archive,
                    connector,
                    actor=ACTOR,
                    stop=self.stop.is_set,
                    event="sync",
                    progress=lambda done, _bytes: self.state.job_progress(job_id, done),
                )
            except ArchiverError as exc:
                error = str(exc)
                log.error("sync failed", error=error)
            except Exception as exc:  # a bug or an unexpected fault: report it, keep the daemon up
                # the type and place, not the text: a library's message may quote a secret
                error = f"{type(exc).__name__} at {where_raised(exc)}"
                log.error("sync failed unexpectedly", error=error)
            else:
                result = {
                    "imported": summary.imported,
                    "duplicates": summary.duplicates,
                    "parse_errors": summary.parse_errors,
                    "failed": summary.failed,
                    "seconds": summary.seconds,
                    "failures": summary.failures[:20],
                }
                error = sync_error(summary)
                self.metrics.source_errors.labels(source).set(summary.source_errors)
                self.metrics.archived.labels(source).inc(summary.imported)
                self.metrics.duplicates.labels(source).inc(summary.duplicates)
                if summary.failed:
                    self.metrics.sync_errors.labels(source).inc(summary.failed)
                (log.error if error else log.info)(
                    "sync failed" if error else "sync finished",
                    imported=summary.imported,
                    duplicates=summary.duplicates,
                    failed=summary.failed,
                    source_errors=summary.source_errors,
                    parse_errors=summary.parse_errors,
                    seconds=summary.seconds,
                    stopped=self.stop.is_set(),
                    **({"error": error} if error else {}),
                )
            if result is None:  # no summary: the whole source failed before or outside the pipeline
                self.metrics.source_errors.labels(source).set(1)
            self.metrics.sync_ok.labels(source).set(0 if error else 1)
            if error is None:
                self.metrics.last_success.labels(source).set(self.clock().timestamp())
            elif result is None:
                self.metrics.sync_errors.labels(source).inc()
            self.metrics.syncs.labels(source).inc()
            self.state.job_finished(job_id, result=result, error=error, complete=not self.stop.is_set())
            self.refresh_gauges()

    def retention(self) -> None:
        """The retention sweep: dispose of what is due now, under the journalled rules."""
        with self._run(RETENTION_JOB) as go:
            if not go:
                return
            self.state.job_started(RETENTION_JOB)
            from archiver.policies.apply import apply as apply_retention

            error: str | None = None
            result: dict[str, Any] | None = None
            log.info("retention sweep started")
            try:
                cert = apply_retention(self.archive, now=self.clock(), actor=ACTOR, stop=self.stop.is_set)
                # The certificate's counts and where it was saved, not every disposed id.
                certificate = str(cert.path) if cert.path else None
                result = {"counts": cert.body.get("counts"), "certificate": certificate}
                log.info("retention sweep finished", certificate=certificate)
            except ArchiverError as exc:
                error = str(exc)
                log.error("retention sweep failed", error=error)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                log.exception("retention sweep failed unexpectedly", error=error)
            self.metrics.retention_runs.labels("error" if error else "ok").inc()
            self.metrics.retention_last_run.set(self.clock().timestamp())
            self.state.job_finished(RETENTION_JOB, result=result, error=error)
            self.refresh_gauges()

    def verify(self) -> None:
        """The scheduled verify (``daemon.verify_full`` decrypts everything); journalled like the CLI's."""
        with self._run(VERIFY_JOB) as go:
            if not go:
                return
            self.state.job_started(VERIFY_JOB)
            full = self.archive.cfg.daemon.verify_full
            log.info("verify started", full=full)
            error: str | None = None
            result: dict[str, Any] | None = None
            try:
                report = self.archive.verify(full=full, actor=ACTOR)
                result = {"ok": report.ok, "full": full, "problems": report.problems[:20], "counts": report.counts}
                if not report.ok:
                    error = f"verification failed with {len(report.problems)} problem(s): {report.problems[0]}"
                    log.error("verify failed", problems=report.problems[:20])
                else:
                    log.info("verify passed", counts=report.counts)
                self.metrics.verify_ok.set(1 if report.ok else 0)
            except ArchiverError as exc:
                error = str(exc)
                self.metrics.verify_ok.set(0)
                log.error("verify could not run", error=error)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                self.metrics.verify_ok.set(0)
                log.exception("verify failed unexpectedly", error=error)
            self.metrics.verify_last_run.set(self.clock().timestamp())
            self.state.job_finished(VERIFY_JOB, result=result, error=error)

    # -- runs that did not happen -------------------------------------------------------------
    def skipped(self, event: Any) -> None:
        """APScheduler listener (``schedules.SKIP_EVENTS``): record a run that did not happen.

        Called from the scheduler's thread (a run due while the job is still queued or
        running) or the worker's (a run past its misfire grace time, if one is ever set):
        the state file and the metrics are thread-safe.
        """
        job_id = str(event.job_id)
        if event.code == EVENT_JOB_MISSED:
            reason = "too_late"
            times = [event.scheduled_run_time]
        else:
            reason = "still_running" if job_id in self.running() else "waiting"
            times = list(event.scheduled_run_times or [])
        scheduled = iso(times[0]) if times else None
        self.record_skipped(job_id, reason, scheduled, max(1, len(times)))

    def record_skipped(self, job_id: str, reason: str, scheduled: str | None, count: int = 1) -> None:
        """Count ``count`` scheduled runs of ``job_id`` that did not happen (state file, metric, log)."""
        self.metrics.skipped.labels(job_id, reason).inc(count)
        self.state.job_skipped(job_id, reason=reason, scheduled=scheduled, count=count)
        # A sync due again while it still runs is routine (the running one fetches the same mail).
        (log.info if reason == "still_running" else log.warning)(
            "scheduled run skipped", job=job_id, reason=reason, scheduled=scheduled, count=count
        )

    def catch_up(self, triggers: Mapping[str, CronTrigger], now: datetime) -> set[str]:
        """At start-up: the cron jobs that fell due while no daemon ran, recorded; run each once now.

        A job's reference is its last start, else (it never started) the start of the
        previous daemon: no earlier daemon means a new installation, with nothing missed.
        An unfinished run (the daemon was killed during it) is not repeated, since a run
        that takes the daemon down would otherwise do so at every restart.
        """
        due: set[str] = set()
        since_daemon = self.state.previous_daemon.get("started_at")
        for job_id, trigger in triggers.items():
            reference = self.state.job(job_id).get("last_start") or since_daemon
            if not reference:
                continue
            try:
                since = parse_iso(str(reference))
            except ValueError:
                continue
            missed = missed_runs(trigger, since, now)
            if missed:
                self.record_skipped(job_id, "daemon_down", iso(missed[0]), len(missed))
                log.warning("running a scheduled job missed while the daemon was down", job=job_id)
                due.add(job_id)
        return due

    # -- gauges read from the archive -------------------------------------------------------
    def seed_gauges(self) -> None:
        """At start, before any job runs: gauges from the archive and the previous daemon's state.

        Otherwise /metrics would claim "the last verify failed" (0) and "never synced" until the
        next scheduled run, which may be days away.
        """
        self.refresh_gauges()
        for job_id, job in self.state.data["jobs"].items():
            if not job_id.startswith("sync:"):
                continue
            source = job_id[len("sync:") :]
            success = job.get("last_success")
            if success:
                self.metrics.last_success.labels(source).set(parse_iso(success).timestamp())
            if job.get("last_end"):
                self.metrics.sync_ok.labels(source).set(0 if job.get("last_error") else 1)
        verify = self.state.data["jobs"].get(VERIFY_JOB) or {}
        if verify.get("last_end"):
            self.metrics.verify_ok.set(1 if (verify.get("last_result") or {}).get("ok") else 0)
            self.metrics.verify_last_run.set(parse_iso(verify["last_end"]).timestamp())

    def refresh_gauges(self) -> None:
        """Messages held and disposed of, per rule, from the catalog (worker thread only)."""
        try:
            conn = self.archive.repo.catalog.conn
            live = conn.execute("SELECT COUNT(*) FROM objects WHERE disposed_at IS NULL").fetchone()[0]
            rows = conn.execute(
                "SELECT COALESCE(disposed_rule, ''), COUNT(*) FROM objects WHERE disposed_at IS NOT NULL GROUP BY 1"
            ).fetchall()
        except Exception as exc:  # metrics must never break a job
            log.warning("cannot read archive counts for the metrics", error=str(exc))
            return
        self.metrics.live_messages.set(live)
        for rule, count in rows:
            self.metrics.disposed.labels(rule or "unknown").set(count)
