"""The daemon as a real process: schedules, /healthz and /metrics, status, lock, SIGHUP, SIGTERM.

Each test starts `python -m archiver.cli.main --config CFG daemon` on a Maildir it
writes itself, with a one-second sync interval and a free loopback port, and talks
to it only from outside: HTTP, signals, `archiver status`, the catalog file.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import PASSPHRASE, archiver_exe, run_process, sha256

SOURCE = "mail"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def add_mail(maildir: Path, start: int, n: int, *, body_words: int = 30) -> set[str]:
    """Write n distinct messages into maildir/new; returns their ids (SHA-256)."""
    for folder in ("cur", "new", "tmp"):
        (maildir / folder).mkdir(parents=True, exist_ok=True)
    ids = set()
    for i in range(start, start + n):
        body = " ".join(f"word{(i * 7 + k) % 101}" for k in range(body_words))
        data = (
            f"From: sender{i % 13}@acme.example\r\nTo: counsel@firm.example\r\n"
            f"Subject: daemon test {i}\r\nMessage-ID: <{i}.daemon@example.com>\r\n"
            f"Date: Tue, 3 Apr 2001 09:{i % 60:02d}:00 +0000\r\n\r\n{body}\r\n"
        ).encode()
        tmp = maildir / "tmp" / f"{986300000 + i}.M{i}P9.host"
        tmp.write_bytes(data)
        tmp.rename(maildir / "new" / tmp.name)  # Maildir delivery: tmp, then rename into new
        ids.add(sha256(data))
    return ids


def write_config(path: Path, tmp: Path, port: int, *, batch_size: int = 500, **daemon: Any) -> None:
    cfg = {
        "archive": {"path": str(tmp / "archive")},
        "ingest": {"workers": 2},
        "logging": {"level": "info", "format": "json"},
        "daemon": {"listen": f"127.0.0.1:{port}", "shutdown_timeout_s": 30, **daemon},
        "sources": [
            {
                "name": SOURCE,
                "type": "files",
                "paths": [str(tmp / "Maildir")],
                "interval": "1s",
                "batch_size": batch_size,
            }
        ],
    }
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")


class Daemon:
    """A daemon subprocess with its log in a file (a pipe could fill up and block it)."""

    def __init__(self, config: Path, log: Path) -> None:
        self.log_path = log
        self._log = open(log, "ab")  # noqa: SIM115 (closed in stop)
        env = {**os.environ, "ARCHIVER_PASSPHRASE": PASSPHRASE}
        self.proc = subprocess.Popen(
            [*archiver_exe(), "--config", str(config), "daemon", "--json-logs"],
            stdout=self._log,
            stderr=self._log,
            env=env,
        )

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._log.close()

    def logs(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"event": line, "unparsed": True})
        return out


def wait_for(what: str, pred: Callable[[], Any], timeout: float = 60, daemon: Daemon | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        if daemon is not None and daemon.proc.poll() is not None:
            raise AssertionError(f"the daemon exited ({daemon.proc.returncode}) while waiting for {what}")
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def state(archive: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads((archive / "daemon-state.json").read_text())
    except (OSError, ValueError):
        return {}
    return data


def sync_state(archive: Path) -> dict[str, Any]:
    job: dict[str, Any] = state(archive).get("jobs", {}).get(f"sync:{SOURCE}", {})
    return job


def catalog_counts(archive: Path) -> tuple[set[str], int]:
    """(ids of the stored objects, provenance rows)."""
    conn = sqlite3.connect(archive / "catalog.sqlite")
    try:
        ids = {r[0] for r in conn.execute("SELECT id FROM objects")}
        prov = conn.execute("SELECT COUNT(*) FROM provenance").fetchone()[0]
        return ids, int(prov)
    finally:
        conn.close()


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def metric(text: str, name: str, **labels: str) -> float | None:
    want = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")
    for line in text.splitlines():
        if line.startswith(want + " "):
            return float(line.split()[-1])
    return None


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Path, Path, int]]:
    """(config, archive folder, port) with an initialised archive and an empty Maildir."""
    port = free_port()
    cfg = tmp_path / "archiver.yaml"
    write_config(cfg, tmp_path, port)
    (tmp_path / "Maildir").mkdir()
    r = run_process(["--config", str(cfg), "init"])
    assert r.returncode == 0, r.stderr
    yield cfg, tmp_path / "archive", port


def test_daemon_syncs_on_schedule_serves_health_and_metrics(setup: tuple[Path, Path, int], tmp_path: Path) -> None:
    cfg, archive, port = setup
    maildir = tmp_path / "Maildir"
    first = add_mail(maildir, 0, 5)
    d = Daemon(cfg, tmp_path / "daemon.log")
    try:
        wait_for("the first sync", lambda: catalog_counts(archive)[0] >= first, daemon=d)

        _code, body = wait_for("/healthz", lambda: http_get(port, "/healthz")[0] == 200 and http_get(port, "/healthz"))
        health = json.loads(body)
        assert health["status"] == "ok"
        assert {"sync:mail", "retention", "verify"} <= set(health["jobs"])
        assert health["jobs"]["retention"] and health["jobs"]["verify"]  # the cron jobs are scheduled

        # The catalog shows the messages at the commit; the metrics once the run has ended.
        text = wait_for(
            "the metrics of the first run",
            lambda: (
                (t := http_get(port, "/metrics")[1])
                and metric(t, "archiver_messages_archived_total", source=SOURCE) == 5
                # the archive gauges are refreshed when the run ends, a moment after the counters
                and metric(t, "archiver_messages") == 5
                and t
            ),
        )
        assert (metric(text, "archiver_last_successful_sync_timestamp_seconds", source=SOURCE) or 0) > time.time() - 120
        assert (metric(text, "archiver_archive_size_bytes") or 0) > 0
        assert metric(text, "archiver_messages") == 5
        assert http_get(port, "/nothing")[0] == 404

        # New mail is picked up by a later run, without restarting anything.
        second = add_mail(maildir, 100, 3)
        wait_for("the new mail", lambda: catalog_counts(archive)[0] >= first | second, daemon=d)
        wait_for(
            "the metric to count it",
            lambda: metric(http_get(port, "/metrics")[1], "archiver_messages_archived_total", source=SOURCE) == 8,
        )

        # The state file is written when a run ends, a moment after its metrics.
        wait_for("the second run to be recorded", lambda: int(sync_state(archive).get("runs") or 0) >= 2, daemon=d)

        # `archiver status` from another process, without the passphrase.
        env = {k: v for k, v in os.environ.items() if k != "ARCHIVER_PASSPHRASE"}
        r = subprocess.run(
            [*archiver_exe(), "--config", str(cfg), "status", "--json"], capture_output=True, env=env, timeout=60
        )
        assert r.returncode == 0, r.stderr
        st = json.loads(r.stdout)
        assert st["daemon"]["running"] is True and st["daemon"]["pid"] == d.proc.pid
        src = st["sources"][0]
        assert src["name"] == SOURCE and src["last_success"] and src["next_run"] and src["errors"] == 0
        assert src["runs"] >= 2
        assert st["retention"]["next_run"] and st["verify"]["next_run"]
        text_status = run_process(["--config", str(cfg), "status"])
        assert text_status.returncode == 0 and b"daemon: running" in text_status.stdout

        # A second daemon on the same archive is refused with a clear error.
        r2 = run_process(["--config", str(cfg), "daemon"])
        assert r2.returncode == 6, r2.stderr
        assert b"Another archiver daemon" in r2.stderr and str(d.proc.pid).encode() in r2.stderr
    finally:
        assert d.stop() == 0
    logs = d.logs()
    finished = [e for e in logs if e.get("event") == "sync finished"]
    assert finished and all(e["source"] == SOURCE and e["job"] == "sync:mail" for e in finished)
    assert any(str(e.get("logger", "")).startswith("apscheduler") for e in logs)  # routed into the same stream
    assert any(e.get("event") == "daemon stopped" for e in logs)
    r = run_process(["--config", str(cfg), "status", "--json"])
    assert json.loads(r.stdout)["daemon"]["running"] is False


def test_sighup_with_invalid_config_keeps_the_old_one(setup: tuple[Path, Path, int], tmp_path: Path) -> None:
    cfg, archive, port = setup
    maildir = tmp_path / "Maildir"
    first = add_mail(maildir, 0, 2)
    d = Daemon(cfg, tmp_path / "daemon.log")
    try:
        wait_for("the first sync", lambda: catalog_counts(archive)[0] >= first, daemon=d)
        good = cfg.read_text()
        data = yaml.safe_load(good)
        data["sources"][0]["interval"] = "soon"
        cfg.write_text(yaml.safe_dump(data))
        d.signal(signal.SIGHUP)
        reload = wait_for("the reload to be refused", lambda: state(archive).get("reload"), daemon=d)
        assert reload["ok"] is False and "sources.mail.interval" in reload["error"]
        cfg.write_text("archive: [not, a, mapping")  # not even YAML
        d.signal(signal.SIGHUP)
        wait_for("the second refusal", lambda: "not valid YAML" in (state(archive)["reload"]["error"] or ""), daemon=d)

        # Retention rules that do not load are refused the same way.
        cfg.write_text(good)
        rules = tmp_path / "retention_rules.yaml"
        rules.write_text("rules:\n  - name: short\n    period: soon\n")
        d.signal(signal.SIGHUP)
        wait_for("the rules refusal", lambda: "Retention rules" in (state(archive)["reload"]["error"] or ""), daemon=d)
        rules.unlink()

        # Still running on the old config: new mail is archived, health is ok.
        second = add_mail(maildir, 50, 2)
        wait_for("mail after the refused reloads", lambda: catalog_counts(archive)[0] >= first | second, daemon=d)
        assert http_get(port, "/healthz")[0] == 200

        # A valid config is taken: a new source appears in the schedule.
        data = yaml.safe_load(good)
        other = tmp_path / "Other"
        add_mail(other, 900, 1)
        data["sources"].append({"name": "other", "type": "files", "paths": [str(other)], "interval": "1h"})
        cfg.write_text(yaml.safe_dump(data))
        d.signal(signal.SIGHUP)
        wait_for("the good reload", lambda: (state(archive).get("reload") or {}).get("ok") is True, daemon=d)
        wait_for("the new source's first sync", lambda: len(catalog_counts(archive)[0]) == 5, daemon=d)
        assert "sync:other" in json.loads(http_get(port, "/healthz")[1])["jobs"]
    finally:
        assert d.stop() == 0
    refused = [e for e in d.logs() if "reload refused" in str(e.get("event"))]
    assert len(refused) == 3 and all(e["level"] == "error" for e in refused)


def test_sigterm_during_sync_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    port = free_port()
    cfg = tmp_path / "archiver.yaml"
    write_config(cfg, tmp_path, port, batch_size=50)
    archive = tmp_path / "archive"
    expected = add_mail(tmp_path / "Maildir", 0, 3000, body_words=200)
    assert run_process(["--config", str(cfg), "init"]).returncode == 0

    d = Daemon(cfg, tmp_path / "daemon1.log")
    wait_for("a sync under way", lambda: (sync_state(archive).get("progress") or 0) >= 100, daemon=d, timeout=120)
    d.signal(signal.SIGTERM)
    started = time.monotonic()
    code = d.stop(timeout=60)
    assert code == 0
    assert time.monotonic() - started < 30  # daemon.shutdown_timeout_s
    job = sync_state(archive)
    assert job["complete"] is False, "the sync finished before SIGTERM: make the Maildir bigger"
    partial, prov = catalog_counts(archive)
    assert 0 < len(partial) < len(expected) and partial <= expected
    assert prov == len(partial)
    assert job["last_result"]["imported"] == len(partial)

    r = run_process(["--config", str(cfg), "verify", "--full", "--json"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["ok"] is True

    # The next start completes the import: every message once, each with one provenance row.
    d2 = Daemon(cfg, tmp_path / "daemon2.log")
    try:
        wait_for("the rest of the import", lambda: catalog_counts(archive)[0] == expected, daemon=d2, timeout=240)
        wait_for(
            "a complete run", lambda: sync_state(archive).get("complete") is True and not sync_state(archive)["running"]
        )
    finally:
        assert d2.stop() == 0
    ids, prov = catalog_counts(archive)
    assert ids == expected and prov == len(expected)
    r = run_process(["--config", str(cfg), "verify", "--full", "--json"])
    assert r.returncode == 0 and json.loads(r.stdout)["ok"] is True


def test_bad_schedule_is_refused_at_start(setup: tuple[Path, Path, int]) -> None:
    cfg, _archive, _port = setup
    data = yaml.safe_load(cfg.read_text())
    data["daemon"]["retention_schedule"] = "every night"
    cfg.write_text(yaml.safe_dump(data))
    r = run_process(["--config", str(cfg), "daemon"])
    assert r.returncode == 3 and b"daemon.retention_schedule" in r.stderr
    data["daemon"]["retention_schedule"] = "0 3 * * *"
    data["sources"][0]["interval"] = "0s"
    cfg.write_text(yaml.safe_dump(data))
    r = run_process(["--config", str(cfg), "daemon"])
    assert r.returncode == 3 and b"sources.mail.interval" in r.stderr


def test_a_cron_line_that_never_fires_stops_the_daemon_at_start(setup: tuple[Path, Path, int]) -> None:
    cfg, _archive, _port = setup
    data = yaml.safe_load(cfg.read_text())
    data["daemon"]["retention_schedule"] = "0 3 30 2 *"  # 30 February
    cfg.write_text(yaml.safe_dump(data))
    r = run_process(["--config", str(cfg), "daemon"])
    assert r.returncode == 3 and b"daemon.retention_schedule" in r.stderr and b"never fires" in r.stderr


def test_a_sweep_missed_while_the_daemon_was_down_runs_at_start(setup: tuple[Path, Path, int], tmp_path: Path) -> None:
    """The daemon was stopped over the sweep's time: it is recorded and made up once at start,
    while a verify that is not overdue waits for its time."""
    cfg, archive, port = setup
    now = datetime.now(UTC)
    stamp = "%Y-%m-%dT%H:%M:%S.000000Z"
    (archive / "daemon-state.json").write_text(
        json.dumps(
            {
                "version": 1,
                "daemon": {"started_at": (now - timedelta(days=10)).strftime(stamp), "status": "stopped"},
                "jobs": {
                    "retention": {"last_start": (now - timedelta(days=3)).strftime(stamp), "runs": 4, "errors": 0},
                    "verify": {"last_start": (now - timedelta(minutes=1)).strftime(stamp), "runs": 1, "errors": 0},
                },
            }
        )
    )
    d = Daemon(cfg, tmp_path / "daemon.log")
    try:
        wait_for("the missed sweep", lambda: state(archive)["jobs"]["retention"].get("runs") == 5, daemon=d)
        retention = state(archive)["jobs"]["retention"]
        assert retention["last_skipped"]["reason"] == "daemon_down" and retention["skipped"] in (2, 3)
        skipped = metric(
            http_get(port, "/metrics")[1], "archiver_job_runs_skipped_total", job="retention", reason="daemon_down"
        )
        assert skipped == retention["skipped"]
        status = json.loads(run_process(["--config", str(cfg), "status", "--json"]).stdout)
        assert status["retention"]["last_skipped"]["reason"] == "daemon_down"
        assert status["verify"]["runs"] == 1 and not status["verify"].get("skipped")  # not overdue: not run
    finally:
        assert d.stop() == 0


def test_status_without_a_daemon(setup: tuple[Path, Path, int]) -> None:
    cfg, _archive, _port = setup
    r = run_process(["--config", str(cfg), "status", "--json"])
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)
    assert st["daemon"]["running"] is False
    assert st["sources"][0]["name"] == SOURCE and st["sources"][0]["last_end"] is None


def test_shutdown_is_bounded_by_the_timeout(tmp_path: Path) -> None:
    """A job that cannot reach a safe point in time does not hold the stop up; nothing is lost."""
    port = free_port()
    cfg = tmp_path / "archiver.yaml"
    write_config(cfg, tmp_path, port, batch_size=1000, shutdown_timeout_s=0.05)
    archive = tmp_path / "archive"
    expected = add_mail(tmp_path / "Maildir", 0, 3000, body_words=200)
    assert run_process(["--config", str(cfg), "init"]).returncode == 0
    d = Daemon(cfg, tmp_path / "daemon.log")
    wait_for("a sync under way", lambda: sync_state(archive).get("running"), daemon=d, timeout=120)
    started = time.monotonic()
    code = d.stop(timeout=30)
    assert time.monotonic() - started < 10
    assert code in (0, 1)  # 1: forced, the batch in hand was abandoned (uncommitted)
    if code == 1:
        assert any(e.get("event", "").startswith("jobs did not stop in time") for e in d.logs())
    r = run_process(["--config", str(cfg), "verify", "--full", "--json"])
    assert r.returncode == 0 and json.loads(r.stdout)["ok"] is True, r.stdout + r.stderr
    ids, prov = catalog_counts(archive)
    assert ids <= expected and prov == len(ids)


def test_daemon_serves_the_web_ui_when_asked(tmp_path: Path) -> None:
    """daemon.serve_web starts the web UI beside the scheduler and stops it on SIGTERM."""
    port, web_port = free_port(), free_port()
    cfg = tmp_path / "archiver.yaml"
    write_config(cfg, tmp_path, port, serve_web=True)
    data = yaml.safe_load(cfg.read_text())
    data["web"] = {"listen": f"127.0.0.1:{web_port}", "secure_cookies": False}
    cfg.write_text(yaml.safe_dump(data))
    (tmp_path / "Maildir").mkdir()
    assert run_process(["--config", str(cfg), "init"]).returncode == 0
    d = Daemon(cfg, tmp_path / "daemon.log")
    try:
        wait_for("the web UI's port", lambda: _port_open(web_port), daemon=d)
        status, body = http_get(web_port, "/login")
        assert status == 200 and "password" in body.lower()
        assert http_get(port, "/healthz")[0] == 200
    finally:
        assert d.stop() == 0
    assert not _port_open(web_port), "the web UI must stop with the daemon"


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0
