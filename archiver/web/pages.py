"""Server-rendered pages (Jinja2): login, search, message, exports, holds, access log.

The pages call the same service functions as the API with the same scope, so they show
exactly what the API would return.  Downloads link to the API endpoints.
"""

from __future__ import annotations

import secrets
from datetime import date
from typing import Annotated, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from archiver.errors import ArchiverError
from archiver.store.catalog import EVENT_TYPES
from archiver.web.access import Scope
from archiver.web.deps import check_csrf, page_context, require, state
from archiver.web.exports import TooManyExports
from archiver.web.filters import SearchForm, build_query
from archiver.web.login import attempt_login, logout_cookie
from archiver.web.service import snippet_html
from archiver.web.sessions import LOGIN_CSRF_COOKIE, tokens_match

router = APIRouter(include_in_schema=False)

PER_PAGE = 20


def _safe_next(target: str) -> str:
    """Only local paths (no //host, no scheme) are followed after login."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/search"


def _login_page(request: Request, error: str = "", status: int = 200, next_url: str = "/search") -> Response:
    token = secrets.token_urlsafe(32)
    web = state(request)
    response = web.templates.TemplateResponse(
        request,
        "login.html",
        page_context(request, error=error, login_csrf=token, next_url=_safe_next(next_url)),
        status_code=status,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE, token, path="/login", secure=web.cfg.web.secure_cookies, httponly=True, samesite="strict"
    )
    return response


@router.get("/", response_class=RedirectResponse)
def home() -> RedirectResponse:
    return RedirectResponse("/search", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: Annotated[str, Query(max_length=500)] = "/search") -> Response:
    return _login_page(request, next_url=next)


@router.post("/login", response_class=HTMLResponse)
def login_submit(
    request: Request,
    username: Annotated[str, Form(max_length=200)] = "",
    password: Annotated[str, Form(max_length=1000)] = "",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=500)] = "/search",
) -> Response:
    if not tokens_match(request.cookies.get(LOGIN_CSRF_COOKIE), csrf_token):
        return _login_page(request, "The login form expired; please try again.", 400, next)
    redirect = RedirectResponse(_safe_next(next), status_code=303)
    outcome = attempt_login(request, username, password, redirect)
    if outcome.error:
        return _login_page(request, outcome.error, outcome.status, next)
    redirect.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return redirect


@router.post("/logout", dependencies=[Depends(check_csrf)])
def logout(request: Request) -> Response:
    response = RedirectResponse("/login", status_code=303)
    logout_cookie(request, response)
    return response


@router.get("/search", response_class=HTMLResponse)
def search_page(
    request: Request,
    scope: Annotated[Scope, Depends(require("search"))],
    q: Annotated[str, Query(max_length=5000)] = "",
    client: Annotated[str, Query(max_length=200)] = "",
    matter: Annotated[str, Query(max_length=200)] = "",
    source: Annotated[str, Query(max_length=200)] = "",
    after: Annotated[str, Query(max_length=10)] = "",
    before: Annotated[str, Query(max_length=10)] = "",
    has_attachment: Annotated[str, Query(max_length=5)] = "",
    sort: Literal["date", "relevance"] = "date",
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> Response:
    web = state(request)
    error = ""
    result = None
    try:
        form = SearchForm(
            q=q,
            client=client,
            matter=matter,
            source=source,
            after=date.fromisoformat(after) if after else None,
            before=date.fromisoformat(before) if before else None,
            has_attachment=has_attachment in ("1", "on", "true"),
        )
    except ValueError:
        form = SearchForm(q=q, client=client, matter=matter, source=source)
        error = "Dates must be given as YYYY-MM-DD."
    searched = any((q.strip(), client, matter, source, after, before, has_attachment))
    if not error and searched:
        try:
            query = build_query(form)
            result = web.service.search(
                scope,
                query,
                limit=PER_PAGE,
                offset=(page - 1) * PER_PAGE,
                sort=sort,
                journal={"typed": q[:2000], "filters": form.filters()},
            )
        except ArchiverError as exc:
            error = str(exc)
    params = {"q": q, "client": client, "matter": matter, "source": source, "after": after, "before": before}
    params = {k: v for k, v in params.items() if v}
    if has_attachment:
        params["has_attachment"] = "1"

    def link(**changes: object) -> str:
        merged: dict[str, object] = {**params, "sort": sort, "page": page, **changes}
        return "/search?" + urlencode({k: v for k, v in merged.items() if v not in ("", None)})

    pages = ((result.total + PER_PAGE - 1) // PER_PAGE) if result else 0
    return web.templates.TemplateResponse(
        request,
        "search.html",
        page_context(
            request,
            form=form,
            after=after,
            before=before,
            sort=sort,
            page=page,
            pages=pages,
            result=result,
            error=error,
            link=link,
            snippet_html=snippet_html,
            sources=web.service.sources(scope),
            choices=web.service.clients_and_matters(scope),
        ),
    )


@router.get("/messages/{message_id}", response_class=HTMLResponse)
def message_page(message_id: str, request: Request, scope: Annotated[Scope, Depends(require("view"))]) -> Response:
    web = state(request)
    view = web.service.message(scope, message_id)
    return web.templates.TemplateResponse(request, "message.html", page_context(request, view=view))


@router.get("/exports", response_class=HTMLResponse)
def exports_page(
    request: Request,
    scope: Annotated[Scope, Depends(require("export"))],
    q: Annotated[str, Query(max_length=5000)] = "",
    matter: Annotated[str, Query(max_length=200)] = "",
) -> Response:
    return _exports_page(request, scope, q=q, matter=matter)


def _exports_page(
    request: Request, scope: Scope, *, q: str = "", matter: str = "", error: str = "", status: int = 200
) -> Response:
    """The exports page: this user's jobs, newest first, and the form (pre-filled)."""
    web = state(request)
    jobs = [j.public() for j in reversed(web.exports.list(scope))]
    return web.templates.TemplateResponse(
        request,
        "exports.html",
        page_context(request, jobs=jobs, q=q, matter=matter, error=error),
        status_code=status,
    )


@router.post("/exports", dependencies=[Depends(check_csrf)])
def exports_start(
    request: Request,
    scope: Annotated[Scope, Depends(require("export"))],
    kind: Annotated[Literal["query", "matter"], Form()] = "query",
    value: Annotated[str, Form(max_length=5000)] = "",
) -> Response:
    value = value.strip()
    try:
        if not value:
            raise ArchiverError("Give a query or a matter to export.")
        if kind == "query":
            build_query(SearchForm(q=value))
        state(request).exports.start(scope, kind, value)
    except TooManyExports as exc:
        return _exports_page(request, scope, q=value if kind == "query" else "", error=str(exc), status=429)
    except ArchiverError as exc:
        return _exports_page(request, scope, q=value if kind == "query" else "", error=str(exc), status=400)
    return RedirectResponse("/exports", status_code=303)


@router.get("/holds", response_class=HTMLResponse)
def holds_page(request: Request, scope: Annotated[Scope, Depends(require("holds"))]) -> Response:
    web = state(request)
    live, disposed = web.service.message_counts(scope)
    rules = web.service.archive.cfg.retention.rules_file
    retention = {"live": live, "disposed": disposed, "rules_file": str(rules), "rules_present": rules.exists()}
    return web.templates.TemplateResponse(
        request, "holds.html", page_context(request, holds=web.service.holds(scope), retention=retention)
    )


@router.get("/audit", response_class=HTMLResponse)
def audit_page(
    request: Request,
    scope: Annotated[Scope, Depends(require("audit"))],
    type: Annotated[str, Query(max_length=50)] = "",
    actor: Annotated[str, Query(max_length=200)] = "",
    since: Annotated[str, Query(max_length=40)] = "",
    until: Annotated[str, Query(max_length=40)] = "",
    contains: Annotated[str, Query(max_length=200)] = "",
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> Response:
    web = state(request)
    per_page = 100
    total, events = web.service.events(
        scope,
        types=[type] if type else (),
        actor=actor,
        since=since,
        until=until,
        contains=contains,
        limit=per_page,
        offset=(page - 1) * per_page,
    )
    params = {
        k: v
        for k, v in {"type": type, "actor": actor, "since": since, "until": until, "contains": contains}.items()
        if v
    }
    return web.templates.TemplateResponse(
        request,
        "audit.html",
        page_context(
            request,
            events=events,
            total=total,
            page=page,
            pages=(total + per_page - 1) // per_page,
            filters=params,
            query=urlencode(params),
            types=sorted(EVENT_TYPES),
        ),
    )
