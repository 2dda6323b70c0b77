"""Browser-started exports: a per-user limit, private files whatever the umask, old bundles
deleted (time to live, and at start-up), and failures that tell the user nothing of the server."""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from archiver.web.exports import ExportJobs
from tests.web.conftest import PASSWORD, WebArchiveFixture


def _client(app: FastAPI, user: str) -> TestClient:
    c = TestClient(app)
    r = c.post("/api/login", json={"username": user, "password": PASSWORD})
    assert r.status_code == 200, r.text
    c.headers["X-CSRF-Token"] = r.json()["csrf_token"]
    return c


def _wait(c: TestClient, job_id: str) -> dict[str, object]:
    for _ in range(400):
        job = c.get(f"/api/exports/{job_id}").json()
        if job["status"] in ("done", "failed"):
            return dict(job)
        time.sleep(0.05)
    raise AssertionError("export did not finish")


@contextmanager
def _umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def test_a_user_may_have_only_so_many_exports_queued(web_archive: WebArchiveFixture, tmp_path: Path) -> None:
    """F12: the third whole-archive export of a user waits for the others; other users are not held up."""
    app = web_archive.make_app(max_exports_per_user=2, export_dir=tmp_path / "exports")
    release = threading.Event()
    exports = app.state.web.exports
    exports._run = lambda _scope, _job_id: release.wait(30)  # jobs stay queued until released
    with TestClient(app):
        carl, ann = _client(app, "carl"), _client(app, "ann")
        try:
            for _ in range(2):
                assert carl.post("/api/exports", json={"kind": "query", "value": "size>=0"}).status_code == 202
            r = carl.post("/api/exports", json={"kind": "query", "value": "size>=0"})
            assert r.status_code == 429 and "at most 2" in r.json()["detail"]
            page = carl.post(
                "/exports", data={"kind": "query", "value": "size>=0", "csrf_token": carl.headers["X-CSRF-Token"]}
            )
            assert page.status_code == 429 and "at most 2" in page.text
            assert ann.post("/api/exports", json={"kind": "query", "value": "size>=0"}).status_code == 202
        finally:
            release.set()


def test_bundles_are_private_whatever_the_umask(web_archive: WebArchiveFixture, tmp_path: Path) -> None:
    """F12: decrypted mail on disk: the folder 0700, each bundle 0600, even under umask 022."""
    folder = tmp_path / "exports"
    with _umask(0o022):
        app = web_archive.make_app(export_dir=folder)
        with TestClient(app):
            carl = _client(app, "carl")
            job = carl.post("/api/exports", json={"kind": "query", "value": '"contract draft"'}).json()
            assert _wait(carl, job["id"])["status"] == "done"
            (bundle,) = folder.glob("export-*.zip")
            assert stat.S_IMODE(folder.stat().st_mode) == 0o700
            assert stat.S_IMODE(bundle.stat().st_mode) == 0o600


def test_a_shared_export_folder_is_refused_not_made_private(web_archive: WebArchiveFixture, tmp_path: Path) -> None:
    """web.export_dir: /tmp would have been chmodded 0700 (breaking it for everyone else)."""
    from archiver.errors import ConfigError
    from archiver.web.exports import ExportJobs

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    web = web_archive.make_app().state.web
    with pytest.raises(ConfigError, match="shared"):
        ExportJobs(web.service, shared)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777


def test_bundles_of_an_earlier_run_are_deleted_at_start_up(web_archive: WebArchiveFixture, tmp_path: Path) -> None:
    """F12: jobs live in memory, so an earlier server's bundles could never be downloaded again."""
    folder = tmp_path / "exports"
    folder.mkdir()
    old = [folder / f"export-{'ab' * 12}.zip", folder / f"export-{'cd' * 12}.zip.partial", folder / ".export-x1"]
    for path in old[:2]:
        path.write_bytes(b"old mail")
    old[2].mkdir()
    (folder / "notes.txt").write_text("not ours")
    app = web_archive.make_app(export_dir=folder)
    with TestClient(app):
        assert not any(p.exists() for p in old)
        assert (folder / "notes.txt").exists()


def test_finished_bundles_expire(app: FastAPI, tmp_path: Path) -> None:
    """F12: a bundle and its job are gone once the time to live has passed."""
    from archiver.web.access import scope_for

    web = app.state.web
    carl = scope_for(web.accounts.users["carl"], web.accounts.walls)
    clock = [time.time()]
    jobs = ExportJobs(web.service, tmp_path / "exports", ttl_s=3600, now=lambda: clock[0])
    try:
        job = jobs.start(carl, "query", '"contract draft"')
        for _ in range(400):
            done = jobs.get(carl, job.id)
            if done is not None and done.status in ("done", "failed"):
                break
            time.sleep(0.05)
        assert done is not None and done.status == "done", done
        assert Path(done.path).exists()
        clock[0] += 3599
        assert [j.id for j in jobs.list(carl)] == [job.id]
        clock[0] += 2
        assert jobs.list(carl) == [] and jobs.get(carl, job.id) is None
        assert not Path(done.path).exists()
    finally:
        jobs.close()


def test_a_failed_export_does_not_show_the_servers_error_text(
    web_archive: WebArchiveFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """F15: the exception text may name server paths; the user gets a sentence, the log the details."""
    import archiver.web.exports as exports

    def broken(*_args: object) -> Path:
        raise RuntimeError("cannot write /srv/secret/archive/segments/000042")

    monkeypatch.setattr(exports, "write_bundle", broken)
    app = web_archive.make_app(export_dir=tmp_path / "exports")
    with TestClient(app):
        carl = _client(app, "carl")
        job = carl.post("/api/exports", json={"kind": "query", "value": '"contract draft"'}).json()
        failed = _wait(carl, job["id"])
        assert failed["status"] == "failed"
        assert "/srv/secret" not in str(failed["error"]) and "RuntimeError" not in str(failed["error"])
        assert "internal error" in str(failed["error"])
