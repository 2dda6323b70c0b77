"""Ethical walls: every way a walled-off user could reach a walled message, and that each is closed.

Each test first shows that an unwalled user DOES reach the message the same way, so a test
cannot pass just because the message is missing.
"""

from __future__ import annotations

import io
import json
import shutil
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from archiver.archive import Archive
from archiver.config import EthicalWall, WebUser
from archiver.model import Tags
from archiver.web.access import Scope, parse_allowed, scope_for
from archiver.web.service import WebArchive
from tests.web.conftest import ATTACHMENT_WORD, SECRET_WORD, WebArchiveFixture

Client = Callable[[str | None], TestClient]
# wally is walled from client globex; mat from matter 20871-0001 (the walled message is both).
WALLED_USERS = ("wally", "mat")


def _export_ids(c: TestClient, kind: str, value: str) -> list[str]:
    job = c.post("/api/exports", json={"kind": kind, "value": value})
    assert job.status_code == 202, job.text
    job_id = job.json()["id"]
    for _ in range(400):
        status = c.get(f"/api/exports/{job_id}").json()
        if status["status"] in ("done", "failed"):
            break
        time.sleep(0.05)
    if status["status"] == "failed" and "Nothing to export" in status["error"]:
        return []
    assert status["status"] == "done", status["error"]
    data = c.get(f"/api/exports/{job_id}/download").content
    zf = zipfile.ZipFile(io.BytesIO(data))
    manifest = json.loads(zf.read("manifest.json"))
    blob = json.dumps(manifest)
    return [name for name in zf.namelist()] + [blob]


@pytest.mark.parametrize("user", WALLED_USERS)
def test_search_results_and_totals(user: str, client_for: Client, web_archive: WebArchiveFixture) -> None:
    oid = web_archive.ids["walled"]
    assert client_for("carl").get("/api/search", params={"q": SECRET_WORD}).json()["total"] == 1
    c = client_for(user)
    for q in (SECRET_WORD, ATTACHMENT_WORD, "attachment:terms", f"id:{oid}", "client:globex OR matter:20871-0001"):
        r = c.get("/api/search", params={"q": q}).json()
        assert oid not in [h["id"] for h in r["hits"]], (user, q)
        if q != "client:globex OR matter:20871-0001":
            assert r["total"] == 0, (user, q)
    everything = c.get("/api/search", params={"per_page": 100}).json()
    assert oid not in [h["id"] for h in everything["hits"]]
    assert everything["total"] == len(everything["hits"])
    assert everything["total"] < client_for("carl").get("/api/search", params={"per_page": 100}).json()["total"]


@pytest.mark.parametrize("user", WALLED_USERS)
def test_facets_and_snippets(user: str, client_for: Client) -> None:
    carl = client_for("carl").get("/api/search", params={"q": "20871"}).json()
    assert any(f["value"] == "20871-0001" for f in carl["facets"]["matter"])
    r = client_for(user).get("/api/search", params={"q": "20871"}).json()
    matters = {f["value"]: f["count"] for f in r["facets"]["matter"]}
    assert "20871-0001" not in matters
    if user == "wally":
        assert "globex" not in {f["value"] for f in r["facets"]["client"]}
    for h in client_for(user).get("/api/search", params={"per_page": 100}).json()["hits"]:
        assert SECRET_WORD not in h["snippet"] and SECRET_WORD not in h["snippet_html"]
    # page: facet drop-downs and results
    page = client_for(user).get("/search", params={"q": "20871"}).text
    assert "20871-0001" not in page and SECRET_WORD not in page


@pytest.mark.parametrize("user", WALLED_USERS)
def test_direct_urls_are_404_not_403(user: str, client_for: Client, web_archive: WebArchiveFixture) -> None:
    oid = web_archive.ids["walled"]
    carl = client_for("carl")
    m = carl.get(f"/api/messages/{oid}").json()
    sha = m["attachments"][0]["sha256"]
    paths = (
        f"/api/messages/{oid}",
        f"/api/messages/{oid}/raw",
        f"/api/messages/{oid}/attachments/{sha}",
        f"/api/messages/{oid}/body.html",
        f"/messages/{oid}",
    )
    for path in paths[:3] + paths[4:]:
        assert carl.get(path).status_code == 200, path
    c = client_for(user)
    for path in paths:
        r = c.get(path)
        assert r.status_code == 404, (user, path, r.status_code)
        assert SECRET_WORD not in r.text and ATTACHMENT_WORD not in r.text
    # the 404 for a walled message is the same as for a message that does not exist
    missing = c.get(f"/api/messages/{'f' * 64}").json()["detail"].replace("f" * 64, "X")
    walled = c.get(f"/api/messages/{oid}").json()["detail"].replace(oid, "X")
    assert missing == walled


@pytest.mark.parametrize("user", WALLED_USERS)
def test_exports_never_contain_walled_messages(user: str, client_for: Client, web_archive: WebArchiveFixture) -> None:
    oid = web_archive.ids["walled"]
    carl_files = _export_ids(client_for("carl"), "query", SECRET_WORD)
    assert any(oid in f for f in carl_files)
    c = client_for(user)
    for kind, value in (("query", SECRET_WORD), ("query", "size>=0"), ("matter", "globex/20871-0001")):
        files = _export_ids(c, kind, value)
        assert not any(oid in f for f in files), (user, kind, value)


def test_wall_applies_on_matter_of_another_client(client_for: Client) -> None:
    """mat is walled from matter 20871-0001 only: other globex matters stay visible."""
    r = client_for("mat").get("/api/search", params={"client": "globex"}).json()
    assert r["total"] > 0
    assert all("20871-0001" not in h["matters"] for h in r["hits"])


def test_scope_rules() -> None:
    user = WebUser(username="u", password_hash="x", role="viewer", groups=["g"], allowed=["acme/*", "20871-0003"])
    walls = [
        EthicalWall(name="a", groups=["g"], matters=["10234-0001"]),
        EthicalWall(name="b", users=["someone-else"], clients=["acme"]),
    ]
    scope = scope_for(user, walls)
    assert isinstance(scope, Scope)
    assert scope.exclude_matters == ("10234-0001",) and scope.exclude_clients == ()
    assert scope.sees("ACME", ["10234-0002"])
    assert not scope.sees("acme", ["10234-0001"])
    assert scope.sees("globex", ["20871-0003"])
    assert not scope.sees("globex", ["20871-0001"])
    assert not scope.can("export")
    assert parse_allowed(["acme/*", "globex/20871-0001", "3"]) == (("acme",), ("20871-0001", "3"))
    nobody = scope_for(WebUser(username="v", password_hash="x", role="viewer"), [])
    assert not nobody.sees("acme", [])
    admin = scope_for(WebUser(username="a", password_hash="x", role="admin", allowed=["acme/*"]), [])
    assert admin.sees("globex", []) and not admin.restricted


def test_an_index_lagging_behind_a_retag_does_not_leak(web_archive: WebArchiveFixture, tmp_path: Path) -> None:
    """The catalog files a message under the walled client; the index, not updated yet, still says acme."""
    copy = tmp_path / "archive"
    shutil.copytree(web_archive.cfg.archive.path, copy)
    cfg = web_archive.cfg.model_copy(update={"archive": web_archive.cfg.archive.model_copy(update={"path": copy})})
    wally = scope_for(next(u for u in cfg.web.users if u.username == "wally"), cfg.web.walls)
    oid = web_archive.ids["acme"]
    with Archive.open(cfg) as archive:
        web = WebArchive(archive)
        assert [h.id for h in web.search(wally, '"contract draft"').hits] == [oid]
        with archive.repo.transaction() as tx:
            tx.set_tags(oid, Tags(client="globex"))
        assert archive.index.search('"contract draft" AND client:acme').total == 1  # the index lags
        page = web.search(wally, '"contract draft"')
        assert page.hits == () and page.total == 0
        # an unwalled user still finds it, filed under the catalog's client
        carl = scope_for(next(u for u in cfg.web.users if u.username == "carl"), cfg.web.walls)
        (hit,) = web.search(carl, '"contract draft"').hits
        assert (hit.id, hit.client) == (oid, "globex")
