"""A config reload reaches the web UI: new users and walls apply, removed users and changed
passwords lose their sessions (in-process, and through the daemon's SIGHUP)."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path
from typing import Any

import httpx
import yaml
from fastapi.testclient import TestClient

from archiver.config import Config
from archiver.web.auth import hash_password
from tests.daemon.test_daemon import Daemon, _port_open, wait_for
from tests.web.conftest import PASSWORD, WebArchiveFixture, free_port

NEW_PASSWORD = "another-pass"


def _changed(web: dict[str, Any]) -> dict[str, Any]:
    """``web`` without wally, with a new password for ann and a wall barring carl from acme."""
    users = [u for u in web["users"] if u["username"] != "wally"]
    for u in users:
        if u["username"] == "ann":
            u["password_hash"] = hash_password(NEW_PASSWORD)
    return {
        **web,
        "users": users,
        "walls": [*web["walls"], {"name": "carl-acme", "users": ["carl"], "clients": ["acme"]}],
    }


def _login(c: TestClient | httpx.Client, user: str, password: str = PASSWORD) -> int:
    return c.post("/api/login", json={"username": user, "password": password}).status_code


def test_reconfigure_applies_users_and_walls_and_ends_stale_sessions(web_archive: WebArchiveFixture) -> None:
    app = web_archive.make_app()
    with TestClient(app) as wally, TestClient(app) as ann, TestClient(app) as carl:
        for c, user in ((wally, "wally"), (ann, "ann"), (carl, "carl")):
            assert _login(c, user) == 200
        assert carl.get("/api/search", params={"client": "acme"}).json()["total"] > 0
        data = yaml.safe_load(web_archive.config_path.read_text())
        new = Config.model_validate({**data, "web": _changed(data["web"])})
        assert app.state.web.reconfigure(new) == 2  # wally's and ann's sessions ended
        assert wally.get("/api/me").status_code == 401 and _login(wally, "wally") == 401
        assert ann.get("/api/me").status_code == 401 and _login(ann, "ann") == 401
        assert _login(ann, "ann", NEW_PASSWORD) == 200
        assert carl.get("/api/me").status_code == 200
        assert carl.get("/api/search", params={"client": "acme"}).json()["total"] == 0


def test_a_daemon_reload_reaches_its_web_ui(web_archive: WebArchiveFixture, tmp_path: Path) -> None:
    """F8: SIGHUP to a daemon with serve_web hands the new users and walls to the running web server."""
    shutil.copytree(web_archive.cfg.archive.path, tmp_path / "archive")
    port, web_port = free_port(), free_port()
    data = yaml.safe_load(web_archive.config_path.read_text())
    data["archive"]["path"] = str(tmp_path / "archive")
    data["daemon"] = {"listen": f"127.0.0.1:{port}", "serve_web": True, "shutdown_timeout_s": 30}
    data["logging"] = {"format": "json"}
    data["web"] = {**data["web"], "listen": f"127.0.0.1:{web_port}", "export_dir": str(tmp_path / "exports")}
    cfg = tmp_path / "archiver.yaml"
    cfg.write_text(yaml.safe_dump(data))
    d = Daemon(cfg, tmp_path / "daemon.log")
    base = f"http://127.0.0.1:{web_port}"
    try:
        wait_for("the web UI's port", lambda: _port_open(web_port), daemon=d)
        with httpx.Client(base_url=base) as wally, httpx.Client(base_url=base) as carl:
            assert _login(wally, "wally") == 200 and _login(carl, "carl") == 200
            assert carl.get("/api/search", params={"client": "acme"}).json()["total"] > 0
            cfg.write_text(yaml.safe_dump({**data, "web": _changed(data["web"])}))
            d.signal(signal.SIGHUP)
            wait_for("the reload", lambda: wally.get("/api/me").status_code == 401, timeout=30, daemon=d)
            assert _login(wally, "wally") == 401
            assert carl.get("/api/search", params={"client": "acme"}).json()["total"] == 0
        assert any(e.get("event") == "configuration reloaded" for e in d.logs())
    finally:
        assert d.stop() == 0
