"""Fixtures for the web tests: one archive with walled and malicious mail, users of every role,
the app (in-process client) and a real uvicorn server on a free loopback port."""

from __future__ import annotations

import http.server
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient

from archiver.config import Config, load_config
from archiver.web.auth import hash_password
from tests.conftest import PASSPHRASE, SAMPLE_MAILDIR, TAGGING

PASSWORD = "s3cret-pass"
#: a matter number that both acme and globex use (matter numbers are per client).
SHARED_MATTER = "20871-0003"
#: a source that feeds only globex (walled from wally) mail.
GLOBEX_SOURCE = "globex-feed"
#: an attachment name with a right-to-left override: shown as-is it reads "résumé exe.jpg".
BIDI_NAME = "r\u00e9sum\u00e9 \u202egpj.exe"
#: user -> (role, groups, allowed)
USERS: dict[str, tuple[str, list[str], list[str]]] = {
    "ann": ("admin", [], []),
    "carl": ("compliance", [], []),
    "aud": ("auditor", [], []),
    "vic": ("viewer", [], ["acme/*"]),
    "wally": ("compliance", ["conflicted"], []),
    "mat": ("auditor", [], []),
    # a viewer allowed one client's matter; acme has a matter of the same number
    "vg": ("viewer", [], [f"globex/{SHARED_MATTER}"]),
}
WALLS = [
    {"name": "globex-conflict", "groups": ["conflicted"], "clients": ["globex"]},
    {"name": "matter-wall", "users": ["mat"], "matters": ["20871-0001"]},
]
#: a word that appears only in the walled globex message (body and attachment).
SECRET_WORD = "walrusword"
ATTACHMENT_WORD = "zebrafishword"


class Canary:
    """A loopback HTTP server that records every request (nothing may ever reach it)."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        canary = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                canary.requests.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.end_headers()

            do_POST = do_GET

            def log_message(self, *_args: Any) -> None:
                return None

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _message(
    subject: str,
    sender: str,
    to: str,
    text: str,
    html: str | None = None,
    when: str = "Mon, 06 May 2024 10:00:00 +0000",
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = when
    msg["Message-ID"] = f"<{abs(hash(subject))}@test.example>"
    msg.set_content(text)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    return msg


def malicious_html(canary: str) -> str:
    return f"""<html><head>
<style>@import url({canary}/import.css); body {{ background: url({canary}/bg.png); }}</style>
<link rel="stylesheet" href="{canary}/link.css">
<script>document.title = "pwned"; fetch("{canary}/fetch");</script>
<meta http-equiv="refresh" content="0; url={canary}/refresh">
</head><body>
<p id="greeting">Quarterly numbers attached for 10234-0001.</p>
<img src="{canary}/pixel.png" onerror="document.title='pwned-onerror'; fetch('{canary}/onerror')">
<img src="x" onerror="document.title='pwned-onerror2'">
<div style="position:fixed; top:0; left:0; width:100%; height:100%; background:url({canary}/overlay.png); z-index:9999">Click here to log in again</div>
<svg onload="fetch('{canary}/svg')"><image href="{canary}/svgimg.png"/></svg>
<iframe src="{canary}/frame"></iframe>
<object data="{canary}/object"></object>
<a href="javascript:fetch('{canary}/js-link')">a link</a>
<a href="{canary}/remote-link">remote</a>
<form action="{canary}/form"><input name="x"><button>go</button></form>
<video src="{canary}/video.mp4" autoplay></video>
<p style="color: red; position: absolute">styled</p>
</body></html>"""


def write_fixture_mail(folder: Path, canary: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    mal = _message(
        "Malicious HTML 10234-0001",
        "mallory@acme.example",
        "counsel@firm.example",
        "Quarterly numbers attached for 10234-0001.",
        malicious_html(canary),
    )
    (folder / "malicious.eml").write_bytes(bytes(mal))
    walled = _message(
        "Globex merger 20871-0001",
        "ceo@globex.example",
        "counsel@firm.example",
        f"The {SECRET_WORD} plan for 20871-0001 stays confidential.",
    )
    walled.add_attachment(
        f"Term sheet: {ATTACHMENT_WORD}\n".encode(), maintype="text", subtype="plain", filename="terms.txt"
    )
    (folder / "walled.eml").write_bytes(bytes(walled))
    acme = _message(
        "Acme contract 10234-0002",
        "legal@acme.example",
        "counsel@firm.example",
        "Please review the contract draft for 10234-0002.",
    )
    acme.add_attachment(b"Draft contract text\n", maintype="text", subtype="plain", filename="draft.txt")
    (folder / "acme.eml").write_bytes(bytes(acme))
    shared = _message(
        "Acme side deal", "legal@acme.example", "counsel@firm.example", f"acmesidedeal terms for {SHARED_MATTER}."
    )
    shared["X-Archive-Matter"] = f"acme/{SHARED_MATTER}"
    shared.add_attachment(b"payload\n", maintype="application", subtype="octet-stream", filename=BIDI_NAME)
    (folder / "acme-shared-matter.eml").write_bytes(bytes(shared))


def write_globex_feed(folder: Path) -> None:
    """Mail of the walled client only, imported under its own source (GLOBEX_SOURCE)."""
    folder.mkdir(parents=True, exist_ok=True)
    feed = _message(
        "Globex feed 20871-0002", "cfo@globex.example", "counsel@firm.example", "quarterly globexfeedword numbers"
    )
    (folder / "feed.eml").write_bytes(bytes(feed))


@dataclass
class WebArchiveFixture:
    config_path: Path
    cfg: Config
    canary: Canary
    ids: dict[str, str] = field(default_factory=dict)

    def make_app(self, **web_overrides: Any) -> FastAPI:
        from archiver.web.app import create_app

        cfg = self.cfg
        if web_overrides:
            cfg = cfg.model_copy(update={"web": cfg.web.model_copy(update=web_overrides)})
        return create_app(cfg)


@pytest.fixture(scope="session")
def canary() -> Iterator[Canary]:
    c = Canary()
    yield c
    c.close()


@pytest.fixture(scope="session")
def web_archive(tmp_path_factory: pytest.TempPathFactory, canary: Canary) -> Iterator[WebArchiveFixture]:
    from archiver.archive import Archive
    from archiver.cli.main import main

    os.environ["ARCHIVER_PASSPHRASE"] = PASSPHRASE
    root = tmp_path_factory.mktemp("web")
    mail = root / "mail"
    write_fixture_mail(mail, canary.url)
    pw_hash = hash_password(PASSWORD)
    cfg = {
        "archive": {"path": str(root / "archive")},
        "tagging": TAGGING,
        "ingest": {"workers": 1},
        "web": {
            "secure_cookies": False,
            "max_failed_logins": 3,
            "export_dir": str(root / "exports"),
            "users": [
                {"username": u, "password_hash": pw_hash, "role": r, "groups": g, "allowed": a}
                for u, (r, g, a) in USERS.items()
            ],
            "walls": WALLS,
        },
    }
    path = root / "archiver.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    assert main([f"--config={path}", "init"]) == 0
    assert main([f"--config={path}", "import", str(SAMPLE_MAILDIR)]) == 0
    assert main([f"--config={path}", "import", str(mail)]) == 0
    write_globex_feed(root / "feed")
    assert main([f"--config={path}", "import", "--source", GLOBEX_SOURCE, str(root / "feed")]) == 0
    loaded = load_config(path)
    fx = WebArchiveFixture(path, loaded, canary)
    with Archive.open(loaded) as archive:
        for name, word in (
            ("malicious", "Malicious"),
            ("walled", SECRET_WORD),
            ("acme", "contract draft"),
            ("shared", "acmesidedeal"),
            ("feed", "globexfeedword"),
        ):
            hits = archive.search(f'"{word}"', limit=5).hits
            assert len(hits) == 1, (name, hits)
            fx.ids[name] = hits[0].id
    yield fx


@pytest.fixture(scope="session")
def app(web_archive: WebArchiveFixture) -> Iterator[FastAPI]:
    application = web_archive.make_app()
    with TestClient(application):  # runs the lifespan (closes exports and the archive at the end)
        yield application


@pytest.fixture
def client_for(app: FastAPI) -> Callable[[str | None], TestClient]:
    """A TestClient logged in as ``user`` (None: anonymous); its csrf token in .headers."""
    made: list[TestClient] = []

    def make(user: str | None) -> TestClient:
        c = TestClient(app)
        made.append(c)
        if user is not None:
            r = c.post("/api/login", json={"username": user, "password": PASSWORD})
            assert r.status_code == 200, r.text
            c.headers["X-CSRF-Token"] = r.json()["csrf_token"]
        return c

    yield make  # type: ignore[misc]
    for c in made:
        c.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Expose each phase's report on the item (the browser fixture screenshots failures)."""
    outcome = yield
    rep = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{rep.when}", rep)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    url: str
    app: FastAPI


@pytest.fixture(scope="session")
def live_server(web_archive: WebArchiveFixture) -> Iterator[LiveServer]:
    """The app under a real uvicorn on a free loopback port, in a thread."""
    import uvicorn

    application = web_archive.make_app()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(application, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    yield LiveServer(f"http://127.0.0.1:{port}", application)
    server.should_exit = True
    thread.join(timeout=20)
