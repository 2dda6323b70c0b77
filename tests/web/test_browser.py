"""Browser tests in real headless Chromium (the Debian package), driven by Playwright.

Never runs ``playwright install``: the system browser at /usr/bin/chromium is launched
directly.  Screenshots of failing tests are saved under test-artifacts/.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.web.conftest import PASSWORD, LiveServer, WebArchiveFixture

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]

playwright_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")
if not Path(CHROMIUM).exists():
    pytest.skip(
        "Chromium is not installed (apt-get install chromium chromium-driver); browser tests skipped",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with playwright_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser: object, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    context = browser.new_context(accept_downloads=True)  # type: ignore[attr-defined]
    pg = context.new_page()
    yield pg
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.nodeid)
        pg.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    context.close()


def login(pg: object, server: LiveServer, user: str = "carl") -> None:
    pg.goto(server.url + "/search")  # type: ignore[attr-defined]
    assert "/login" in pg.url  # type: ignore[attr-defined]
    pg.fill("#username", user)  # type: ignore[attr-defined]
    pg.fill("#password", PASSWORD)  # type: ignore[attr-defined]
    pg.click("#login-button")  # type: ignore[attr-defined]
    pg.wait_for_url(re.compile(r".*/search.*"))  # type: ignore[attr-defined]


def test_login_search_open_download_export(
    page: object, live_server: LiveServer, web_archive: WebArchiveFixture, tmp_path: Path
) -> None:
    pg = page
    pg.goto(live_server.url + "/login")  # type: ignore[attr-defined]
    pg.fill("#username", "carl")  # type: ignore[attr-defined]
    pg.fill("#password", "wrong")  # type: ignore[attr-defined]
    pg.click("#login-button")  # type: ignore[attr-defined]
    assert "Wrong user name or password" in pg.text_content(".error")  # type: ignore[attr-defined]
    login(pg, live_server)
    pg.fill("#q", "contract")  # type: ignore[attr-defined]
    pg.click("#search-button")  # type: ignore[attr-defined]
    pg.wait_for_selector("#total")  # type: ignore[attr-defined]
    assert re.search(r"\d+ matching message", pg.text_content("#total"))  # type: ignore[attr-defined]
    assert pg.locator(".snippet mark").count() > 0  # type: ignore[attr-defined]
    pg.click(f"a[href='/messages/{web_archive.ids['acme']}']")  # type: ignore[attr-defined]
    pg.wait_for_selector("#subject")  # type: ignore[attr-defined]
    assert "Acme contract" in pg.text_content("#subject")  # type: ignore[attr-defined]
    with pg.expect_download() as info:  # type: ignore[attr-defined]
        pg.click("#download-raw")  # type: ignore[attr-defined]
    saved = tmp_path / "raw.eml"
    info.value.save_as(saved)
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == web_archive.ids["acme"]
    pg.goto(live_server.url + "/exports?q=client:acme")  # type: ignore[attr-defined]
    pg.click("#export-query-button")  # type: ignore[attr-defined]
    pg.wait_for_selector("a.download", timeout=30_000)  # the page reloads itself until done
    with pg.expect_download() as bundle:  # type: ignore[attr-defined]
        pg.click("a.download")  # type: ignore[attr-defined]
    out = tmp_path / "bundle.zip"
    bundle.value.save_as(out)
    import zipfile

    assert "manifest.json" in zipfile.ZipFile(out).namelist()


def test_malicious_html_runs_and_fetches_nothing(
    page: object, live_server: LiveServer, web_archive: WebArchiveFixture
) -> None:
    canary = web_archive.canary
    before = list(canary.requests)
    pg = page
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))  # type: ignore[attr-defined]
    login(pg, live_server)
    oid = web_archive.ids["malicious"]
    pg.goto(f"{live_server.url}/messages/{oid}")  # type: ignore[attr-defined]
    frame_el = pg.wait_for_selector("#html-body")  # type: ignore[attr-defined]
    assert frame_el.get_attribute("sandbox") == ""
    frame = frame_el.content_frame()
    frame.wait_for_selector("text=Quarterly numbers", timeout=10_000)
    assert "Quarterly numbers" in frame.text_content("body")
    # the sanitised overlay keeps no fixed positioning: the page's own links stay clickable
    pg.click("#download-raw", trial=True)  # type: ignore[attr-defined]
    # the top-level body document too (opened directly, not framed)
    pg2 = pg.context.new_page()  # type: ignore[attr-defined]
    pg2.goto(f"{live_server.url}/api/messages/{oid}/body.html")
    time.sleep(1.5)
    assert "pwned" not in pg.title() and "pwned" not in pg2.title()  # type: ignore[attr-defined]
    assert not errors
    pg2.close()
    assert canary.requests == before, f"remote content was fetched: {canary.requests[len(before) :]}"


def test_walled_user_gets_not_found_in_the_browser(
    page: object, live_server: LiveServer, web_archive: WebArchiveFixture
) -> None:
    pg = page
    login(pg, live_server, "wally")
    resp = pg.goto(f"{live_server.url}/messages/{web_archive.ids['walled']}")  # type: ignore[attr-defined]
    assert resp.status == 404
    assert "walrusword" not in pg.content()  # type: ignore[attr-defined]


def test_logout(page: object, live_server: LiveServer) -> None:
    pg = page
    login(pg, live_server)
    pg.click("#logout")  # type: ignore[attr-defined]
    pg.wait_for_url(re.compile(r".*/login.*"))  # type: ignore[attr-defined]
    pg.goto(live_server.url + "/search")  # type: ignore[attr-defined]
    assert "/login" in pg.url  # type: ignore[attr-defined]
