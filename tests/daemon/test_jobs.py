"""The daemon's jobs in-process, on a real archive: verify and the retention sweep.

The cron schedules are days apart, so these run the job functions the scheduler
would call, with the real Archive, state file and metrics registry.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from archiver.archive import Archive
from archiver.config import load_config
from archiver.daemon.jobs import RETENTION_JOB, VERIFY_JOB, Jobs
from archiver.daemon.metrics import Metrics
from archiver.daemon.state import DaemonState, read_state
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
