"""The daemon's jobs in-process, on a real archive: syncs, verify, the retention sweep, skipped runs.

The cron schedules are days apart, so these run the job functions the scheduler
would call, with the real Archive, state file and metrics registry; the scheduler
test runs the daemon's real APScheduler set-up with stand-in job functions.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from apscheduler.triggers.interval import IntervalTrigger

from archiver.archive import Archive
from archiver.config import load_config
from archiver.daemon.health import HealthServer
from archiver.daemon.jobs import RETENTION_JOB, VERIFY_JOB, Jobs, sync_error
from archiver.daemon.metrics import Metrics
from archiver.daemon.schedules import new_scheduler, parse_cron
from archiver.daemon.state import STATE_NAME, DaemonState, read_state
from archiver.pipeline import IngestSummary
from tests.conftest import SAMPLE_MAILDIR, CliResult


@pytest.fixture
def jobs(initialised: Callable[..., CliResult], config_file: Path) -> Iterator[Jobs]:
    r = initialised("import", str(SAMPLE_MAILDIR), "--source", "sample")
    assert r.code == 0, r.err
    cfg = load_config(config_file)
    archive = Archive.open(cfg)
    try:
        yield Jobs(archive, DaemonState(cfg.archive.path), Metrics(cfg.archive.path), threading.Event())
    finally:
        archive.close()


def sample(jobs: Jobs, name: str, **labels: str) -> float | None:
    return jobs.metrics.registry.get_sample_value(name, labels or None)


def test_scheduled_verify_records_a_pass(jobs: Jobs) -> None:
    jobs.verify()
    assert sample(jobs, "archiver_verify_last_ok") == 1
    assert (sample(jobs, "archiver_verify_last_run_timestamp_seconds") or 0) > 0
    st = read_state(jobs.archive.repo.path)
    assert st is not None
    job = st["jobs"][VERIFY_JOB]
    assert job["last_result"]["ok"] is True and job["last_error"] is None and job["runs"] == 1


def test_scheduled_verify_reports_tampering(jobs: Jobs) -> None:
    segment = sorted((jobs.archive.repo.path / "segments").iterdir())[0]
    data = bytearray(segment.read_bytes())
    data[len(data) // 2] ^= 0xFF
    segment.write_bytes(bytes(data))
    jobs.verify()
    assert sample(jobs, "archiver_verify_last_ok") == 0
    job = jobs.state.job(VERIFY_JOB)
    assert job["last_result"]["ok"] is False and job["last_error"].startswith("verification failed")
    assert job["errors"] == 1


def test_retention_sweep_runs_and_is_recorded(jobs: Jobs) -> None:
    jobs.retention()
    job = jobs.state.job(RETENTION_JOB)
    assert job["last_error"] is None and job["runs"] == 1 and not job["running"]
    try:
        import archiver.policies.apply  # noqa: F401
    except ImportError:
        assert "skipped" in job["last_result"]
        assert sample(jobs, "archiver_retention_runs_total", outcome="skipped") == 1
        return
    # No rules file: nothing is due, nothing is disposed, and a certificate says so.
    assert job["last_result"]["counts"]["disposed"] == 0
    assert sample(jobs, "archiver_retention_runs_total", outcome="ok") == 1
    assert sample(jobs, "archiver_messages") == jobs.archive.repo.catalog.stats()["messages"]


def test_a_stopping_daemon_starts_no_job(jobs: Jobs) -> None:
    jobs.stop.set()
    jobs.verify()
    jobs.sync("sample")
    assert jobs.state.job(VERIFY_JOB)["runs"] == 0
    assert sample(jobs, "archiver_verify_last_run_timestamp_seconds") == 0


def test_a_restarted_daemon_reports_the_previous_verify(jobs: Jobs) -> None:
    jobs.verify()
    path = jobs.archive.repo.path
    again = Jobs(jobs.archive, DaemonState(path), Metrics(path), threading.Event())
    assert again.metrics.registry.get_sample_value("archiver_verify_last_ok") == 0
    again.seed_gauges()
    assert again.metrics.registry.get_sample_value("archiver_verify_last_ok") == 1
    assert again.metrics.registry.get_sample_value("archiver_messages") == jobs.archive.repo.catalog.stats()["messages"]


# -- finding: failed syncs recorded as successes -------------------------------------------


def use_sources(jobs: Jobs, config_file: Path, *sources: dict[str, Any]) -> None:
    """Give the running jobs a config with these sources (as a SIGHUP would)."""
    data = yaml.safe_load(config_file.read_text())
    data["sources"] = list(sources)
    config_file.write_text(yaml.safe_dump(data))
    jobs.use_config(load_config(config_file))


def test_a_sync_whose_path_is_gone_is_a_failure(jobs: Jobs, config_file: Path, tmp_path: Path) -> None:
    """A files source on an unmounted share: the pipeline reports it in the summary, not by raising."""
    use_sources(jobs, config_file, {"name": "share", "type": "files", "paths": [str(SAMPLE_MAILDIR)]})
    jobs.sync("share")
    ok = jobs.state.job("sync:share")
    assert ok["last_error"] is None and ok["last_success"]
    assert sample(jobs, "archiver_sync_last_ok", source="share") == 1
    good_time = sample(jobs, "archiver_last_successful_sync_timestamp_seconds", source="share")
    assert good_time

    use_sources(jobs, config_file, {"name": "share", "type": "files", "paths": [str(tmp_path / "unmounted")]})
    jobs.sync("share")
    job = jobs.state.job("sync:share")
    assert job["last_result"]["failed"] == 1
    assert job["last_error"] and "could not be archived" in job["last_error"] and "unmounted" in job["last_error"]
    assert job["errors"] == 1 and job["last_success"] == ok["last_success"]  # not moved forward
    assert sample(jobs, "archiver_last_successful_sync_timestamp_seconds", source="share") == good_time
    assert sample(jobs, "archiver_sync_last_ok", source="share") == 0
    assert "sync:share" in jobs.state.failing()


def test_a_connector_bug_fails_its_sync_without_its_text(
    jobs: Jobs, config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected exception inside a connector is that source's failure, named by type and
    place only: a library's message may quote a secret (imaplib quoted a password character)."""
    from connectors.files import FilesConnector

    def broken(self: Any, checkpoints: Any) -> Any:
        raise RuntimeError("login refused for password hunter2-secret")
        yield  # a generator, as connectors are

    monkeypatch.setattr(FilesConnector, "batches", broken)
    use_sources(jobs, config_file, {"name": "share", "type": "files", "paths": [str(SAMPLE_MAILDIR)]})
    jobs.sync("share")
    job = jobs.state.job("sync:share")
    assert job["last_error"] and "RuntimeError" in job["last_error"]
    assert "secret" not in json.dumps(job) and "sync:share" in jobs.state.failing()


def test_a_sync_of_an_unreachable_imap_server_is_a_failure(
    jobs: Jobs, config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The review's case: nothing listens, the failure's location is the account, not the source name."""
    monkeypatch.setenv("ALICE_PW", "x")
    imap = {
        "name": "firm-imap",
        "type": "imap",
        "host": "127.0.0.1",
        "port": 1,
        "tls": "none",
        "retries": 0,
        "timeout_s": 3,
        "accounts": [{"username": "alice@example.com", "password_env": "ALICE_PW"}],
    }
    use_sources(jobs, config_file, imap)
    jobs.sync("firm-imap")
    job = jobs.state.job("sync:firm-imap")
    assert job["last_error"] and job["last_success"] is None and job["errors"] == 1
    assert sample(jobs, "archiver_last_successful_sync_timestamp_seconds", source="firm-imap") is None
    assert sample(jobs, "archiver_sync_last_ok", source="firm-imap") == 0
    assert sample(jobs, "archiver_source_errors", source="firm-imap") == 1


def test_messages_that_could_not_be_archived_fail_the_run() -> None:
    assert sync_error(IngestSummary(imported=5, duplicates=2)) is None
    partial = IngestSummary(imported=5, failed=1, failures=[{"location": "exo:jeff/Inbox", "reason": "HTTP 500"}])
    expected = "1 message(s), folder(s) or path(s) could not be archived; first: exo:jeff/Inbox: HTTP 500"
    assert sync_error(partial) == expected
    whole = IngestSummary(failed=3, source_errors=1, failures=[{"location": "imap://a@h", "reason": "refused"}])
    text = sync_error(whole)
    assert text and text.startswith("1 account(s), mailbox(es) or path(s) could not be read at all and 2 message(s),")


def _get(port: int, path: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_health_reports_a_failing_job(jobs: Jobs, config_file: Path, tmp_path: Path) -> None:
    """/healthz stays 200 (a restart cannot fix a mail server) but says degraded; /readyz is 503."""
    server = HealthServer(
        "127.0.0.1", 0, lambda: (True, {"status": "ok", "failing": jobs.state.failing()}), jobs.metrics.render
    )
    server.start()
    try:
        port = int(server.address.rsplit(":", 1)[1])
        assert _get(port, "/healthz") == (200, {"status": "ok", "failing": {}})
        assert _get(port, "/readyz")[0] == 200
        use_sources(jobs, config_file, {"name": "share", "type": "files", "paths": [str(tmp_path / "gone")]})
        jobs.sync("share")
        code, body = _get(port, "/healthz")
        assert code == 200 and body["status"] == "degraded" and "sync:share" in body["failing"]
        assert _get(port, "/readyz")[0] == 503
    finally:
        server.stop()


# -- finding: scheduled runs skipped silently, missed runs never made up ---------------------


def wait_until(what: str, pred: Callable[[], Any], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_runs_held_up_behind_a_long_job_run_late_and_skips_are_recorded(jobs: Jobs) -> None:
    """The daemon's scheduler: one worker thread, a sync far longer than any grace time."""
    gate, ran = threading.Event(), []

    def long_sync() -> None:
        with jobs._run("sync:big") as go:
            if go:
                ran.append("sync:big")
                gate.wait(30)

    sched = new_scheduler(jobs.skipped)
    now = datetime.now(UTC)
    sched.add_job(long_sync, IntervalTrigger(seconds=1), id="sync:big", next_run_time=now)
    sched.add_job(lambda: ran.append(RETENTION_JOB), IntervalTrigger(seconds=1), id=RETENTION_JOB)
    sched.start()
    try:
        wait_until("the long sync to start", lambda: "sync:big" in ran)
        # A verify whose time came two hours ago and is still queued behind the sync: the old
        # one-hour grace time dropped exactly such a run, with only an APScheduler warning.
        sched.add_job(
            lambda: ran.append(VERIFY_JOB),
            IntervalTrigger(days=7),
            id=VERIFY_JOB,
            next_run_time=now - timedelta(hours=2),
        )
        wait_until(
            "runs that fell due while the sync ran",
            lambda: jobs.state.job(RETENTION_JOB).get("skipped") and jobs.state.job("sync:big").get("skipped"),
        )
        assert RETENTION_JOB not in ran and VERIFY_JOB not in ran
        gate.set()
        wait_until("the held-up runs", lambda: RETENTION_JOB in ran and VERIFY_JOB in ran)
    finally:
        gate.set()
        sched.shutdown(wait=True)
    retention = jobs.state.job(RETENTION_JOB)
    assert retention["last_skipped"]["reason"] == "waiting"  # queued behind another job
    assert jobs.state.job("sync:big")["last_skipped"]["reason"] == "still_running"
    assert (sample(jobs, "archiver_job_runs_skipped_total", job=RETENTION_JOB, reason="waiting") or 0) >= 1
    assert sample(jobs, "archiver_job_runs_skipped_total", job=VERIFY_JOB, reason="too_late") is None
    st = read_state(jobs.archive.repo.path)
    assert st is not None and st["jobs"][RETENTION_JOB]["skipped"] == retention["skipped"]


def restarted(jobs: Jobs, state: dict[str, Any]) -> Jobs:
    """Jobs of a daemon started on an archive whose state file holds ``state``."""
    path = jobs.archive.repo.path
    (path / STATE_NAME).write_text(json.dumps(state))
    return Jobs(jobs.archive, DaemonState(path), Metrics(path), threading.Event())


def test_a_sweep_missed_while_the_daemon_was_down_is_counted_and_run_once(jobs: Jobs) -> None:
    triggers = {RETENTION_JOB: parse_cron("0 3 * * *", "r"), VERIFY_JOB: parse_cron("0 4 * * 0", "v")}
    now = datetime(2026, 1, 8, 12, 0, tzinfo=UTC)  # a Thursday
    again = restarted(
        jobs,
        {
            "daemon": {"started_at": "2026-01-01T00:00:00.000000Z", "stopped_at": "2026-01-05T09:00:00.000000Z"},
            "jobs": {
                RETENTION_JOB: {"last_start": "2026-01-05T03:00:00.100000Z", "runs": 4},
                VERIFY_JOB: {"last_start": "2026-01-04T04:00:00.200000Z", "runs": 1},  # Sunday's ran
            },
        },
    )
    assert again.catch_up(triggers, now) == {RETENTION_JOB}  # 6, 7 and 8 January at 03:00: one run now
    job = again.state.job(RETENTION_JOB)
    assert job["skipped"] == 3
    assert job["last_skipped"]["reason"] == "daemon_down"
    assert job["last_skipped"]["scheduled"] == "2026-01-06T03:00:00.000000Z"
    labels = {"job": RETENTION_JOB, "reason": "daemon_down"}
    assert again.metrics.registry.get_sample_value("archiver_job_runs_skipped_total", labels) == 3
    assert again.state.job(VERIFY_JOB).get("skipped", 0) == 0

    # A job that never started: counted from the previous daemon's start.
    never = restarted(jobs, {"daemon": {"started_at": "2026-01-07T00:00:00.000000Z"}, "jobs": {}})
    assert never.catch_up(triggers, now) == {RETENTION_JOB}
    # No daemon ever ran on this archive: a new installation has missed nothing.
    fresh = restarted(jobs, {})
    assert fresh.catch_up(triggers, now) == set()
