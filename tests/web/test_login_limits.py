"""Login limits: which client address counts (trusted proxies), the per-user back-off that cannot
lock a user out, the bound on password checks running at once, and the limiter's memory."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from archiver.web.auth import LOGIN_CONCURRENCY, LoginLimiter
from tests.web.conftest import PASSWORD, WebArchiveFixture, free_port


@contextmanager
def _serve(app: FastAPI, options: dict[str, Any]) -> Iterator[str]:
    """``app`` under a real uvicorn with ``options``, as the launchers start it."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, **options))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def _login_address(base: str, forwarded: str) -> str:
    """Fail one login with an X-Forwarded-For header; the address the journal recorded for it."""
    name = f"probe-{time.monotonic_ns()}"
    r = httpx.post(
        f"{base}/api/login", json={"username": name, "password": "x"}, headers={"X-Forwarded-For": forwarded}
    )
    assert r.status_code == 401
    ann = httpx.post(f"{base}/api/login", json={"username": "ann", "password": PASSWORD})
    events = httpx.get(f"{base}/api/audit", params={"type": "login", "contains": name}, cookies=ann.cookies).json()[
        "events"
    ]
    return str(events[0]["data"]["address"])


@pytest.mark.parametrize(("trusted", "expected"), [([], "127.0.0.1"), (["127.0.0.1"], "203.0.113.7")])
def test_x_forwarded_for_is_believed_only_from_trusted_proxies(
    trusted: list[str], expected: str, web_archive: WebArchiveFixture
) -> None:
    """F10: the address used for lockout and the journal is the peer's unless it is a trusted proxy."""
    from archiver.web.app import uvicorn_options

    app = web_archive.make_app(trusted_proxies=trusted)
    options = uvicorn_options(app.state.web.cfg.web)
    with _serve(app, options) as base:
        assert _login_address(base, "203.0.113.7") == expected


def test_both_launchers_use_the_trusted_proxies(
    web_archive: WebArchiveFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`archiver serve` and the daemon's web server hand uvicorn the same proxy settings."""
    import uvicorn
    import yaml

    from archiver.archive import Archive
    from archiver.cli.main import main
    from archiver.config import load_config
    from archiver.daemon.webserver import WebServer

    data = yaml.safe_load(web_archive.config_path.read_text())
    data["web"]["trusted_proxies"] = ["10.1.2.3", "192.0.2.0/24"]
    path = tmp_path / "archiver.yaml"
    path.write_text(yaml.safe_dump(data))
    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(kw))
    assert main(["--config", str(path), "serve"]) == 0
    assert seen["proxy_headers"] is True and seen["forwarded_allow_ips"] == ["10.1.2.3", "192.0.2.0/24"]
    for cfg, proxies in ((web_archive.cfg, False), (load_config(path), True)):
        with Archive.open(cfg) as archive:
            web = WebServer(cfg, archive)
            try:
                assert web.server.config.proxy_headers is proxies
            finally:
                web.app.state.web.exports.close()
                web.archive.close()


def test_per_user_backoff_grows_and_skips_known_devices() -> None:
    clock = [1000.0]
    limiter = LoginLimiter(3, now=lambda: clock[0])
    for n in range(3):
        limiter.failed("carl", f"198.51.100.{n}")
    assert limiter.backoff("carl") == 1.0 and limiter.backoff("ann") == 0.0
    assert limiter.backoff("carl", known_device=True) == 0.0
    assert not limiter.locked("carl", "198.51.100.0")  # no single address is locked out
    limiter.failed("carl", "198.51.100.9")
    assert limiter.backoff("CARL") == 2.0
    clock[0] += 2.5
    assert limiter.backoff("carl") == 0.0
    for n in range(20):
        limiter.failed("carl", f"203.0.113.{n}")
    assert limiter.backoff("carl") == 60.0  # capped
    clock[0] += 16 * 60  # the failures age out of the window
    assert limiter.backoff("carl") == 0.0


def test_backoff_refuses_new_browsers_but_not_the_users_own(web_archive: WebArchiveFixture) -> None:
    """F10: failures for carl from many addresses slow guessing down, yet carl's own browser gets in."""
    app = web_archive.make_app()
    with TestClient(app) as own, TestClient(app) as other:
        assert own.post("/api/login", json={"username": "carl", "password": PASSWORD}).status_code == 200
        for n in range(3):
            app.state.web.limiter.failed("carl", f"198.51.100.{n}")
        r = other.post("/api/login", json={"username": "carl", "password": PASSWORD})
        assert r.status_code == 429 and "for this user" in r.json()["detail"]
        assert int(r.headers["retry-after"]) >= 1
        # the same answer for a user name that does not exist
        for n in range(3):
            app.state.web.limiter.failed("nobody-here", f"198.51.100.{n}")
        assert other.post("/api/login", json={"username": "nobody-here", "password": "x"}).json() == {
            "detail": r.json()["detail"]
        }
        assert own.post("/api/login", json={"username": "carl", "password": PASSWORD}).status_code == 200


def test_login_flood_is_refused_without_hashing(
    web_archive: WebArchiveFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """F11: when every password-check slot is taken, a login is answered 429 at once, unchecked."""
    import archiver.web.login as login

    calls: list[str] = []
    real = login.verify_password
    monkeypatch.setattr(login, "verify_password", lambda h, p: calls.append(p) or real(h, p))
    app = web_archive.make_app()
    with TestClient(app) as c, ExitStack() as held:
        slots = [held.enter_context(app.state.web.gate.slot()) for _ in range(LOGIN_CONCURRENCY)]
        assert all(slots)
        started = time.monotonic()
        r = c.post("/api/login", json={"username": "ann", "password": PASSWORD})
        assert r.status_code == 429 and "busy" in r.json()["detail"] and r.headers["retry-after"]
        assert calls == [] and time.monotonic() - started < 1
        held.close()
        assert c.post("/api/login", json={"username": "ann", "password": PASSWORD}).status_code == 200
        assert calls == [PASSWORD]


def test_limiter_memory_is_bounded_and_pruned() -> None:
    """F11: one entry per typed name must not grow forever."""
    clock = [0.0]
    limiter = LoginLimiter(3, max_keys=50, now=lambda: clock[0])
    for n in range(1000):
        limiter.failed(f"user-{n}", f"203.0.113.{n % 250}")
        clock[0] += 0.01
    assert len(limiter) <= 100
    # the newest counts are the ones kept
    for _ in range(2):
        limiter.failed("user-999", "203.0.113.249")
    assert limiter.locked("user-999", "203.0.113.249")
    clock[0] += 16 * 60
    limiter.failed("fresh", "192.0.2.1")
    for n in range(60):
        limiter.failed(f"late-{n}", "192.0.2.2")
    assert not limiter.locked("user-999", "203.0.113.249")
    assert len(limiter) <= 100
