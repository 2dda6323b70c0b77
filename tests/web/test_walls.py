"""Ethical walls: every way a walled-off user could reach a walled message, and that each is closed.

Each test first shows that an unwalled user DOES reach the message the same way, so a test
cannot pass just because the message is missing.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from archiver.archive import Archive
from archiver.config import EthicalWall, WebUser
from archiver.model import Tags
from archiver.web.access import Labels, Scope, parse_allowed, scope_for, wall_warnings
from archiver.web.service import WebArchive
from tests.web.conftest import (
    ATTACHMENT_WORD,
    GLOBEX_SOURCE,
    PASSWORD,
    SECRET_WORD,
    SHARED_MATTER,
    WebArchiveFixture,
)

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
    assert parse_allowed(["acme/*", "globex/20871-0001", "3"]) == Labels(
        clients=("acme",), matters=("3",), pairs=(("globex", "20871-0001"),)
    )
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


# -- the review's findings: leaks around the walls ----------------------------------------------


@contextmanager
def _holds(app: FastAPI, *holds: tuple[str, str, str, str]) -> Iterator[None]:
    """Place (case, kind, value, reason) holds for the duration of a test, then release them."""
    from archiver.policies.holds import place_hold, release_hold

    service = app.state.web.service
    with service.lock:
        for case, kind, value, reason in holds:
            place_hold(service.archive, case=case, kind=kind, value=value, reason=reason, actor="test")
    try:
        yield
    finally:
        with service.lock:
            for case, *_rest in holds:
                release_hold(service.archive, case, actor="test", reason="test over")


def test_access_log_is_filtered_through_the_readers_walls(
    client_for: Client, web_archive: WebArchiveFixture, app: FastAPI
) -> None:
    """F2: mat (auditor, walled from 20871-0001) reads the log after carl used the walled message."""
    oid = web_archive.ids["walled"]
    carl = client_for("carl")
    assert carl.get("/api/search", params={"q": SECRET_WORD}).json()["total"] == 1
    sha = carl.get(f"/api/messages/{oid}").json()["attachments"][0]["sha256"]
    assert carl.get(f"/api/messages/{oid}/attachments/{sha}").status_code == 200
    with _holds(app, ("Globex walrus probe", "query", f"body:{SECRET_WORD}", "subpoena")):
        aud = client_for("aud").get("/api/audit", params={"contains": oid[:16], "limit": 1000}).json()
        assert aud["total"] >= 2  # an unwalled auditor sees the view and the download
        mat = client_for("mat")
        events = mat.get("/api/audit", params={"actor": "carl", "limit": 1000}).json()["events"]
        events += mat.get("/api/audit", params={"type": "hold", "limit": 1000}).json()["events"]
        assert any(e["type"] == "view" for e in events) and any(e["type"] == "hold" for e in events)
        blob = json.dumps(events)
        for secret in (oid, SECRET_WORD, "terms.txt", sha, "Globex walrus probe"):
            assert secret not in blob, secret
        assert any("withheld" in e["data"] for e in events)
        # "contains" is matched against what mat is shown, so it cannot test hidden data
        # (the walled users' own searches for the secret word, with no results, stay listed)
        for probe in (oid[:16], "terms.txt", sha[:16], "walrus probe"):
            assert mat.get("/api/audit", params={"contains": probe}).json()["total"] == 0, probe
        page = mat.get("/audit", params={"actor": "carl"}).text
        assert oid not in page and SECRET_WORD not in page
    # what mat may see stays visible: carl's search for an acme message
    carl.get("/api/search", params={"q": '"contract draft"'})
    shown = mat.get("/api/audit", params={"type": "search", "actor": "carl", "limit": 1}).json()["events"][0]
    assert shown["data"]["typed"] == '"contract draft"' and shown["data"]["ids"] == [web_archive.ids["acme"]]


def test_viewer_allowed_client_matter_keeps_the_client(client_for: Client, web_archive: WebArchiveFixture) -> None:
    """F3: vg may see globex/20871-0003, not acme's matter of the same number."""
    shared = web_archive.ids["shared"]
    ann = client_for("ann")
    acme_hit = ann.get(f"/api/messages/{shared}").json()
    assert acme_hit["client"] == "acme" and SHARED_MATTER in acme_hit["matters"]
    globex = ann.get("/api/search", params={"client": "globex", "matter": SHARED_MATTER}).json()
    assert globex["total"] >= 1
    vg = client_for("vg")
    mine = vg.get("/api/search", params={"per_page": 100}).json()
    assert mine["total"] == globex["total"]
    assert {h["client"] for h in mine["hits"]} == {"globex"}
    assert all(SHARED_MATTER in h["matters"] for h in mine["hits"])
    for path in (f"/api/messages/{shared}", f"/api/messages/{shared}/raw"):
        assert vg.get(path).status_code == 404, path
    assert vg.get(f"/api/messages/{mine['hits'][0]['id']}").status_code == 200
    # an unqualified matter keeps its meaning: every client's matter of that number
    scope = scope_for(WebUser(username="v", password_hash="x", role="viewer", allowed=[SHARED_MATTER]), [])
    assert scope.sees("acme", [SHARED_MATTER]) and scope.sees("globex", [SHARED_MATTER])
    pair = scope_for(WebUser(username="v", password_hash="x", role="viewer", allowed=["globex/" + SHARED_MATTER]), [])
    assert pair.sees("globex", [SHARED_MATTER]) and not pair.sees("acme", ["10234-0001", SHARED_MATTER])


@pytest.mark.parametrize(
    "wall",
    [
        {"matters": ["globex/20871-0001"]},
        {"clients": ["globex/*"]},
        {"matters": ["globex/*"]},
        {"clients": ["globex/20871-0001"]},
    ],
)
def test_walls_in_the_qualified_forms_are_enforced(wall: dict[str, list[str]], web_archive: WebArchiveFixture) -> None:
    """F4: a wall written like `allowed` or a hold (client/matter, client/*) bars what it names."""
    oid = web_archive.ids["walled"]
    walls = [EthicalWall(name="qualified", users=["aud"], **wall)]
    app = web_archive.make_app(walls=walls)
    with TestClient(app) as c:
        assert c.post("/api/login", json={"username": "aud", "password": PASSWORD}).status_code == 200
        assert c.get("/api/search", params={"q": SECRET_WORD}).json()["total"] == 0
        assert c.get(f"/api/messages/{oid}").status_code == 404
        acme = c.get("/api/search", params={"q": '"contract draft"'}).json()
        assert acme["total"] == 1  # the rest stays visible
        if "globex/*" in str(wall):
            assert c.get("/api/search", params={"client": "globex"}).json()["total"] == 0


def test_wall_entries_that_are_not_labels_are_a_config_error_naming_them(tmp_path: Path) -> None:
    from archiver.config import parse_config
    from archiver.errors import ConfigError

    for bad in ("globex/20871/0001", "/20871-0001", "*"):
        with pytest.raises(ConfigError, match=re.escape(repr(bad))):
            parse_config(
                {
                    "archive": {"path": str(tmp_path)},
                    "web": {"walls": [{"name": "w", "users": ["a"], "matters": [bad]}]},
                }
            )


def test_walls_naming_unknown_users_or_groups_are_warned_about() -> None:
    users = {"ann": WebUser(username="ann", password_hash="x", role="admin", groups=["lit"])}
    walls = [
        EthicalWall(name="typo", users=["anne"], groups=["litt"], clients=["globex"]),
        EthicalWall(name="fine", users=["ann"], groups=["lit"], clients=["globex"]),
    ]
    warnings = wall_warnings(users, walls)
    assert any("'typo'" in w and "'anne'" in w for w in warnings)
    assert any("'typo'" in w and "'litt'" in w for w in warnings)
    assert not any("'fine'" in w for w in warnings)


def test_query_and_custodian_holds_naming_walled_mail_are_hidden(client_for: Client, app: FastAPI) -> None:
    """F5: wally (walled from globex) must not learn of holds about globex mail."""
    holds = (
        ("Globex merger probe", "query", f"client:globex AND body:{SECRET_WORD}", "SEC subpoena re Globex merger"),
        ("Globex CEO custodian", "custodian", "ceo@globex.example", "globex ceo"),
        ("Walrus words", "query", f"body:{SECRET_WORD}", "covers only walled mail"),
        ("Acme drafts", "query", '"contract draft"', "acme only"),
    )
    with _holds(app, *holds):
        carl = {h["case"] for h in client_for("carl").get("/api/holds").json()}
        assert {h[0] for h in holds} <= carl
        wally = client_for("wally")
        listed = wally.get("/api/holds").json()
        assert "Acme drafts" in {h["case"] for h in listed}
        blob = json.dumps(listed) + wally.get("/holds").text
        for case, _kind, value, reason in holds[:3]:
            assert case not in blob and value not in blob and reason not in blob


def test_relevance_scores_are_not_shown_to_walled_users(client_for: Client) -> None:
    """F6: BM25 scores count hidden messages; walled users get date order and no score."""
    carl = client_for("carl").get("/api/search", params={"q": "contract", "sort": "relevance"}).json()
    assert all(isinstance(h["score"], float) and h["score"] > 0 for h in carl["hits"])
    assert carl["sort"] == "relevance"
    for user in ("wally", "mat", "vic"):
        r = client_for(user).get("/api/search", params={"q": "contract", "sort": "relevance"}).json()
        assert r["hits"], user
        assert all(h["score"] is None for h in r["hits"]), user
        assert r["sort"] == "date", user
        dates = [h["date"] for h in r["hits"]]
        assert dates == sorted(dates, reverse=True)


def test_live_count_and_sources_are_scoped(client_for: Client) -> None:
    """F7: the overview's live count is what wally can find; a globex-only source is not offered."""
    wally = client_for("wally")
    total = wally.get("/api/search", params={"per_page": 1}).json()["total"]
    everything = client_for("carl").get("/api/search", params={"per_page": 1}).json()["total"]
    assert total < everything

    def live(page: str) -> int:
        m = re.search(r"<th>Live messages</th><td>(\d+)</td>", page)
        assert m is not None
        return int(m.group(1))

    assert live(client_for("carl").get("/holds").text) == everything
    assert live(wally.get("/holds").text) == total
    assert f'value="{GLOBEX_SOURCE}"' in client_for("carl").get("/search").text
    page = wally.get("/search").text
    assert f'value="{GLOBEX_SOURCE}"' not in page and 'value="import"' in page


def test_covering_holds_are_only_named_to_users_with_the_holds_permission(
    client_for: Client, web_archive: WebArchiveFixture, app: FastAPI
) -> None:
    """F13: vic (viewer) learns that an acme message is held, not the case, target or reason."""
    oid = web_archive.ids["acme"]
    with _holds(app, ("Acme custodian case", "custodian", "legal@acme.example", "confidential reason")):
        carl = client_for("carl").get(f"/api/messages/{oid}").json()
        assert "Acme custodian case" in [h["case"] for h in carl["holds"]]
        vic = client_for("vic")
        r = vic.get(f"/api/messages/{oid}")
        assert r.status_code == 200
        m = r.json()
        assert m["holds"] == [] and m["on_hold"] is True and m["retention"]["decision"] == "hold"
        page = vic.get(f"/messages/{oid}").text
        for text in (r.text, page):
            assert "Acme custodian case" not in text and "confidential reason" not in text
        assert "under legal hold" in page
