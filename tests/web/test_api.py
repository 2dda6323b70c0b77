"""API tests: every endpoint, every role, CSRF, sessions, rate limiting, headers, the journal."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from archiver.web.app import SECURITY_HEADERS
from tests.web.conftest import BIDI_NAME, PASSWORD, WebArchiveFixture

Client = Callable[[str | None], TestClient]


def _wait_export(c: TestClient, job_id: str) -> dict[str, object]:
    import time

    for _ in range(400):
        job = c.get(f"/api/exports/{job_id}").json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.05)
    raise AssertionError("export did not finish")


# -- authentication -----------------------------------------------------------------------------


def test_anonymous_requests_are_refused(client_for: Client, web_archive: WebArchiveFixture) -> None:
    c = client_for(None)
    oid = web_archive.ids["acme"]
    for path in (
        "/api/me",
        "/api/search",
        f"/api/messages/{oid}",
        f"/api/messages/{oid}/raw",
        "/api/exports",
        "/api/audit",
        "/api/holds",
        f"/api/messages/{oid}/body.html",
    ):
        assert c.get(path).status_code == 401, path
    r = c.get("/search", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")


def test_login_sets_a_strict_httponly_cookie_and_me_works(client_for: Client) -> None:
    c = client_for(None)
    r = c.post("/api/login", json={"username": "carl", "password": PASSWORD})
    assert r.status_code == 200
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    me = c.get("/api/me").json()
    assert me["username"] == "carl" and me["role"] == "compliance" and "holds" in me["permissions"]


def test_secure_cookie_flag_when_configured(web_archive: WebArchiveFixture) -> None:
    app = web_archive.make_app(secure_cookies=True)
    with TestClient(app, base_url="https://testserver") as c:
        r = c.post("/api/login", json={"username": "ann", "password": PASSWORD})
        assert r.status_code == 200
        assert "secure" in r.headers["set-cookie"].lower()
        assert c.get("/api/me").status_code == 200


def test_insecure_cookies_refused_off_loopback(web_archive: WebArchiveFixture) -> None:
    from archiver.errors import ConfigError

    with pytest.raises(ConfigError):
        web_archive.make_app(secure_cookies=False, listen="0.0.0.0:8080")


def test_wrong_password_and_unknown_user_look_the_same(client_for: Client) -> None:
    c = client_for(None)
    a = c.post("/api/login", json={"username": "carl", "password": "nope"})
    b = c.post("/api/login", json={"username": "nobody-here", "password": "nope"})
    assert a.status_code == b.status_code == 401
    assert a.json() == b.json()


def test_login_requires_json(client_for: Client) -> None:
    c = client_for(None)
    r = c.post(
        "/api/login",
        content=json.dumps({"username": "ann", "password": PASSWORD}),
        headers={"content-type": "text/plain"},
    )
    assert r.status_code in (415, 422)


def test_rate_limit_locks_out_after_max_failures(web_archive: WebArchiveFixture) -> None:
    app = web_archive.make_app()  # fresh limiter
    with TestClient(app) as c:
        for _ in range(3):
            assert c.post("/api/login", json={"username": "aud", "password": "bad"}).status_code == 401
        # even the right password is refused while locked out
        r = c.post("/api/login", json={"username": "aud", "password": PASSWORD})
        assert r.status_code == 429
        # another user from the same address is not affected
        assert c.post("/api/login", json={"username": "carl", "password": PASSWORD}).status_code == 200
        events = c.get("/api/audit", params={"type": "login", "limit": 20})
        assert events.status_code == 403  # carl is compliance: no access log


def test_logins_are_journalled_success_and_failure(client_for: Client) -> None:
    c = client_for(None)
    c.post("/api/login", json={"username": "ann", "password": "wrong-once"})
    admin = client_for("ann")
    events = admin.get("/api/audit", params={"type": "login", "limit": 50}).json()["events"]
    outcomes = {(e["data"]["username"], e["data"]["ok"]) for e in events}
    assert ("ann", False) in outcomes and ("ann", True) in outcomes
    assert all(e["data"]["address"] for e in events)


def test_logout_needs_csrf_and_revokes_the_session(client_for: Client) -> None:
    c = client_for("carl")
    token = c.headers.pop("X-CSRF-Token")
    assert c.post("/api/logout").status_code == 403
    assert c.get("/api/me").status_code == 200
    assert c.post("/api/logout", headers={"X-CSRF-Token": token}).status_code == 200
    assert c.get("/api/me").status_code == 401


def test_forged_cookie_is_not_a_session(client_for: Client) -> None:
    c = client_for(None)
    c.cookies.set("archiver_session", "abc.def")
    assert c.get("/api/me").status_code == 401


# -- roles ----------------------------------------------------------------------------------------

ROLE_MATRIX = {
    # endpoint: users allowed (the others get 403)
    "search": {"ann", "carl", "aud", "vic", "wally", "mat"},
    "view": {"ann", "carl", "aud", "vic", "wally", "mat"},
    "export": {"ann", "carl", "aud", "wally", "mat"},
    "audit": {"ann", "aud", "mat"},
    "holds": {"ann", "carl", "wally"},
}


@pytest.mark.parametrize("user", ["ann", "carl", "aud", "vic", "wally", "mat"])
def test_role_matrix(user: str, client_for: Client, web_archive: WebArchiveFixture) -> None:
    c = client_for(user)
    oid = web_archive.ids["acme"]
    calls = {
        "search": lambda: c.get("/api/search", params={"q": "contract"}),
        "view": lambda: c.get(f"/api/messages/{oid}"),
        "export": lambda: c.get("/api/exports"),
        "audit": lambda: c.get("/api/audit"),
        "holds": lambda: c.get("/api/holds"),
    }
    for name, call in calls.items():
        status = call().status_code
        expected = 200 if user in ROLE_MATRIX[name] else 403
        assert status == expected, (user, name, status)
    start = c.post("/api/exports", json={"kind": "query", "value": "contract"})
    assert start.status_code == (202 if user in ROLE_MATRIX["export"] else 403)
    for page in ("/exports", "/holds", "/audit"):
        allowed = user in ROLE_MATRIX[page.strip("/") if page != "/exports" else "export"]
        assert c.get(page).status_code == (200 if allowed else 403), (user, page)


def test_viewer_sees_only_allowed_clients(client_for: Client, web_archive: WebArchiveFixture) -> None:
    vic, ann = client_for("vic"), client_for("ann")
    everything = ann.get("/api/search").json()
    mine = vic.get("/api/search").json()
    assert 0 < mine["total"] < everything["total"]
    assert {h["client"] for h in mine["hits"]} == {"acme"}
    assert [f["value"] for f in mine["facets"]["client"]] == ["acme"]
    assert vic.get(f"/api/messages/{web_archive.ids['walled']}").status_code == 404
    assert vic.get(f"/api/messages/{web_archive.ids['acme']}").status_code == 200


# -- search -------------------------------------------------------------------------------------


def test_search_filters_sort_pagination_and_highlights(client_for: Client) -> None:
    c = client_for("ann")
    r = c.get("/api/search", params={"q": "contract", "client": "acme"}).json()
    assert r["total"] >= 1 and all(h["client"] == "acme" for h in r["hits"])
    assert r["query"] == '(contract) AND client:"acme"'
    assert any("<mark>" in h["snippet_html"] for h in r["hits"])
    page1 = c.get("/api/search", params={"per_page": 5, "page": 1}).json()
    page2 = c.get("/api/search", params={"per_page": 5, "page": 2}).json()
    assert page1["total"] == page2["total"] > 5
    assert not {h["id"] for h in page1["hits"]} & {h["id"] for h in page2["hits"]}
    dates = [h["date"] for h in page1["hits"]]
    assert dates == sorted(dates, reverse=True)
    att = c.get("/api/search", params={"has_attachment": True}).json()
    assert att["total"] >= 2
    assert c.get("/api/search", params={"after": "2030-01-01"}).json()["total"] == 0
    rel = c.get("/api/search", params={"q": "contract", "sort": "relevance"})
    assert rel.status_code == 200


def test_hits_show_sender_subject_and_a_snippet_of_the_match(
    client_for: Client, web_archive: WebArchiveFixture
) -> None:
    """The API and the page describe hits from the catalog; snippets come from the index's body beginnings."""
    c = client_for("ann")
    (hit,) = c.get("/api/search", params={"q": '"contract draft"'}).json()["hits"]
    assert hit["id"] == web_archive.ids["acme"]
    assert hit["sender"] == "legal@acme.example" and hit["subject"] == "Acme contract 10234-0002"
    assert hit["to"] == ["counsel@firm.example"] and hit["client"] == "acme" and "10234-0002" in hit["matters"]
    assert hit["date"] == "2024-05-06T10:00:00+00:00" and hit["message_id"].endswith("@test.example>")
    assert "review the" in hit["snippet"]
    assert "<mark>contract</mark> <mark>draft</mark>" in hit["snippet_html"]
    page = c.get("/search", params={"q": '"contract draft"'}).text
    assert "Acme contract 10234-0002" in page and "legal@acme.example" in page
    assert "<mark>contract</mark> <mark>draft</mark>" in page


def test_bad_query_is_a_400_with_a_sentence(client_for: Client) -> None:
    c = client_for("ann")
    r = c.get("/api/search", params={"q": "from:("})
    assert r.status_code == 400 and "detail" in r.json()
    r = c.get("/api/search", params={"q": "a) OR (b"})
    assert r.status_code == 400


def test_search_is_journalled_with_the_ids_shown(client_for: Client) -> None:
    c = client_for("aud")
    r = c.get("/api/search", params={"q": "contract"}).json()
    events = c.get("/api/audit", params={"type": "search", "actor": "aud", "limit": 1}).json()["events"]
    assert events[0]["actor"] == "web:aud"
    assert events[0]["data"]["ids"] == [h["id"] for h in r["hits"]]
    assert events[0]["data"]["typed"] == "contract"


# -- message view and downloads -----------------------------------------------------------------


def test_message_view_raw_and_attachment(client_for: Client, web_archive: WebArchiveFixture) -> None:
    import hashlib

    c = client_for("carl")
    oid = web_archive.ids["acme"]
    m = c.get(f"/api/messages/{oid}").json()
    assert m["client"] == "acme" and "10234-0002" in m["matters"]
    assert m["provenance"] and m["retention"]["decision"] in ("keep", "review", "dispose", "hold")
    raw = c.get(f"/api/messages/{oid}/raw")
    assert raw.status_code == 200 and hashlib.sha256(raw.content).hexdigest() == oid
    assert "attachment" in raw.headers["content-disposition"]
    att = m["attachments"][0]
    a = c.get(f"/api/messages/{oid}/attachments/{att['sha256']}")
    assert a.status_code == 200 and a.content == b"Draft contract text\n"
    assert a.headers["content-type"] == "application/octet-stream"
    assert c.get(f"/api/messages/{oid}/attachments/{'0' * 64}").status_code == 404
    page = c.get(f"/messages/{oid}")
    assert page.status_code == 200 and "draft.txt" in page.text
    events = client_for("ann").get("/api/audit", params={"actor": "carl", "limit": 10}).json()["events"]
    kinds = {(e["type"], e["data"].get("part")) for e in events}
    assert {("view", None), ("download", "raw"), ("download", "attachment")} <= kinds


def test_unknown_and_malformed_ids_are_404(client_for: Client) -> None:
    c = client_for("ann")
    for ref in ("0" * 64, "zz", "../../etc/passwd", "ABC"):
        assert c.get(f"/api/messages/{ref}").status_code == 404, ref
        assert c.get(f"/api/messages/{ref}/raw").status_code == 404, ref


def test_html_body_is_sanitised_and_locked_down(client_for: Client, web_archive: WebArchiveFixture) -> None:
    c = client_for("ann")
    r = c.get(f"/api/messages/{web_archive.ids['malicious']}/body.html")
    assert r.status_code == 200
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "sandbox" in csp and "img-src data:" in csp
    assert r.headers["x-frame-options"] == "SAMEORIGIN"
    body = r.text.lower()
    canary = web_archive.canary.url
    for bad in (
        "<script",
        "onerror",
        "onload",
        "javascript:",
        "@import",
        "position",
        "<iframe",
        "<object",
        "<form",
        "<link",
        "<meta http-equiv",
        "<video",
        canary,
    ):
        assert bad not in body, bad
    assert "quarterly numbers" in body


def test_security_headers_on_every_response(client_for: Client, web_archive: WebArchiveFixture) -> None:
    c = client_for("ann")
    for path in (
        "/login",
        "/search",
        "/api/me",
        "/api/search",
        "/static/app.css",
        "/nope",
        "/openapi.json",
        f"/messages/{web_archive.ids['acme']}",
    ):
        r = c.get(path)
        for key in ("x-content-type-options", "referrer-policy", "content-security-policy", "x-frame-options"):
            assert key in r.headers, (path, key)
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["content-security-policy"] == SECURITY_HEADERS["content-security-policy"]


# -- exports ------------------------------------------------------------------------------------


def test_export_query_and_matter_then_download(client_for: Client) -> None:
    c = client_for("carl")
    assert c.post("/api/exports", json={"kind": "query", "value": "from:("}).status_code == 400
    job = c.post("/api/exports", json={"kind": "query", "value": "client:acme"}).json()
    done = _wait_export(c, str(job["id"]))
    assert done["status"] == "done" and int(str(done["messages"])) > 0, done
    r = c.get(f"/api/exports/{job['id']}/download")
    assert r.status_code == 200
    names = zipfile.ZipFile(io.BytesIO(r.content)).namelist()
    assert "manifest.json" in names
    m = c.post("/api/exports", json={"kind": "matter", "value": "acme/10234-0002"}).json()
    assert _wait_export(c, str(m["id"]))["status"] == "done"
    # another user cannot see or download carl's export
    other = client_for("ann")
    assert other.get(f"/api/exports/{job['id']}").status_code == 404
    assert other.get(f"/api/exports/{job['id']}/download").status_code == 404
    events = other.get("/api/audit", params={"type": "export", "actor": "carl", "limit": 5}).json()["events"]
    assert events and events[0]["actor"] == "web:carl"


def test_export_needs_csrf(client_for: Client) -> None:
    c = client_for("carl")
    c.headers.pop("X-CSRF-Token")
    assert c.post("/api/exports", json={"kind": "query", "value": "contract"}).status_code == 403
    assert (
        c.post(
            "/api/exports", json={"kind": "query", "value": "contract"}, headers={"X-CSRF-Token": "forged"}
        ).status_code
        == 403
    )


# -- audit log, holds ---------------------------------------------------------------------------


def test_audit_filters(client_for: Client) -> None:
    c = client_for("ann")
    c.get("/api/search", params={"q": "uniquefilterword"})
    r = c.get("/api/audit", params={"type": "search", "contains": "uniquefilterword"}).json()
    assert r["total"] >= 1 and all(e["type"] == "search" for e in r["events"])
    none = c.get("/api/audit", params={"actor": "no-such-actor-xyz"}).json()
    assert none["total"] == 0
    page = c.get("/audit", params={"type": "search"})
    assert page.status_code == 200 and "uniquefilterword" in page.text


def test_holds_overview_hides_walled_matter_holds(
    client_for: Client, web_archive: WebArchiveFixture, app: FastAPI
) -> None:
    from archiver.policies.holds import place_hold

    service = app.state.web.service
    with service.lock:
        place_hold(
            service.archive,
            case="globex-case",
            kind="matter",
            value="globex/20871-0001",
            reason="litigation",
            actor="test",
        )
        place_hold(
            service.archive, case="acme-case", kind="matter", value="acme/10234-0002", reason="audit", actor="test"
        )
    carl = {h["case"] for h in client_for("carl").get("/api/holds").json()}
    wally = {h["case"] for h in client_for("wally").get("/api/holds").json()}
    assert {"globex-case", "acme-case"} <= carl
    assert "acme-case" in wally and "globex-case" not in wally
    m = client_for("carl").get(f"/api/messages/{web_archive.ids['acme']}").json()
    assert [h["case"] for h in m["holds"]] == ["acme-case"]
    assert m["retention"]["decision"] == "hold"
    page = client_for("carl").get("/holds")
    assert "globex-case" in page.text
    assert "globex-case" not in client_for("wally").get("/holds").text


def test_message_page_shows_a_query_hold_as_a_retention_run_would(
    client_for: Client, web_archive: WebArchiveFixture, app: FastAPI
) -> None:
    """The page's holds and decision come from the retention code: a query hold covers the
    messages its query finds, and only those, and makes their decision "hold"."""
    from archiver.policies.holds import place_hold, release_hold

    service = app.state.web.service
    with service.lock:
        place_hold(service.archive, case="query-case", kind="query", value='"Malicious"', reason="probe", actor="t")
    try:
        held = client_for("carl").get(f"/api/messages/{web_archive.ids['malicious']}").json()
        other = client_for("carl").get(f"/api/messages/{web_archive.ids['acme']}").json()
        assert [h["case"] for h in held["holds"]] == ["query-case"]
        assert held["retention"]["decision"] == "hold"
        assert "query-case" not in [h["case"] for h in other["holds"]]
    finally:
        with service.lock:
            release_hold(service.archive, "query-case", actor="t", reason="test over")
    after = client_for("carl").get(f"/api/messages/{web_archive.ids['malicious']}").json()
    assert after["holds"] == [] and after["retention"]["decision"] != "hold"


# -- small gaps (review F14, F15) -----------------------------------------------------------------


def test_bidi_controls_in_attachment_names_are_shown_visibly(
    client_for: Client, web_archive: WebArchiveFixture
) -> None:
    """F14: "résumé \\u202egpj.exe" must not display as "résumé exe.jpg" nor be saved under that name."""
    c = client_for("carl")
    oid = web_archive.ids["shared"]
    (att,) = c.get(f"/api/messages/{oid}").json()["attachments"]
    assert att["filename"] == BIDI_NAME  # the API gives the name exactly
    page = c.get(f"/messages/{oid}").text
    assert "\u202e" not in page and "r\u00e9sum\u00e9 [U+202E]gpj.exe" in page
    disposition = c.get(f"/api/messages/{oid}/attachments/{att['sha256']}").headers["content-disposition"]
    assert "%E2%80%AE" not in disposition.upper() and "\u202e" not in disposition
    assert "gpj.exe" in disposition


def test_whitespace_only_export_value_is_refused(client_for: Client) -> None:
    c = client_for("carl")
    for kind in ("query", "matter"):
        r = c.post("/api/exports", json={"kind": kind, "value": "   \t "})
        assert r.status_code == 422, (kind, r.status_code)


def test_empty_audit_type_filters_nothing(client_for: Client) -> None:
    c = client_for("ann")
    everything = c.get("/api/audit", params={"limit": 1}).json()["total"]
    assert everything > 0
    assert c.get("/api/audit", params={"type": "", "limit": 1}).json()["total"] == everything


def test_hsts_is_sent_over_https_only(web_archive: WebArchiveFixture) -> None:
    app = web_archive.make_app(secure_cookies=True)
    with TestClient(app, base_url="https://testserver") as tls, TestClient(app) as plain:
        for path in ("/login", "/api/me", "/static/app.css"):
            assert tls.get(path).headers["strict-transport-security"].startswith("max-age="), path
            assert "strict-transport-security" not in plain.get(path).headers, path


def test_message_page_decides_under_the_rules_in_force_not_the_edited_file(
    client_for: Client, web_archive: WebArchiveFixture, app: FastAPI
) -> None:
    """Retention decides under the journalled rules until someone accepts an edited file; the
    page must show what a run would do, not what the file being edited says."""
    from datetime import UTC, datetime

    from archiver.policies.apply import accept_rules, rules_path

    service = app.state.web.service
    path = rules_path(service.archive)
    path.write_text("version: 1\ndefault: {period: 1d, start: sent, action: delete}\n", encoding="utf-8")
    oid = web_archive.ids["malicious"]  # a message no other test leaves under a hold
    before = client_for("carl").get(f"/api/messages/{oid}").json()["retention"]["decision"]
    assert before != "dispose"
    try:
        with service.lock:
            accept_rules(service.archive, datetime.now(UTC), "test")
        assert client_for("carl").get(f"/api/messages/{oid}").json()["retention"]["decision"] == "dispose"
    finally:  # the app is shared by later tests: keep everything again
        path.write_text("version: 1\ndefault: {period: forever}\n", encoding="utf-8")
        with service.lock:
            accept_rules(service.archive, datetime.now(UTC), "test")
