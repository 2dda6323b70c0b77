"""The JSON API (``/api/...``), described by the OpenAPI document at ``/openapi.json``.

Authentication is the same session cookie as the pages (``POST /api/login``); every
state-changing call needs the ``X-CSRF-Token`` header returned by login and ``/api/me``.
Downloads (raw message, attachments, the HTML body frame, export bundles) are here too, and
the pages link to them.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, Field, StringConstraints

from archiver.model import SearchHit
from archiver.web.access import Scope
from archiver.web.deps import check_csrf, require, scope_of, state
from archiver.web.filters import SearchForm, build_query
from archiver.web.login import attempt_login, logout_cookie
from archiver.web.render import FRAME_CSP, frame_document, strip_bidi
from archiver.web.service import Hidden, MessageView, snippet_html

router = APIRouter(prefix="/api", tags=["api"])

MessageId = Annotated[str, Field(max_length=200)]


class LoginIn(BaseModel):
    username: str = Field(max_length=200)
    password: str = Field(max_length=1000)


class Me(BaseModel):
    username: str
    role: str
    permissions: list[str]
    csrf_token: str


class Hit(BaseModel):
    id: str
    message_id: str
    date: str
    sender: str
    to: list[str]
    subject: str
    client: str
    matters: list[str]
    snippet: str
    snippet_html: str
    #: BM25 relevance, only with sort=relevance for users who see the whole archive (null otherwise).
    score: float | None = None


class FacetCount(BaseModel):
    value: str
    count: int


class SearchOut(BaseModel):
    query: str
    #: the order used: "relevance" is honoured only for users without walls or an allowed list.
    sort: str
    total: int
    page: int
    per_page: int
    hits: list[Hit]
    facets: dict[str, list[FacetCount]]


class AttachmentOut(BaseModel):
    filename: str
    content_type: str
    size: int
    sha256: str
    error: str = ""


class MessageOut(BaseModel):
    id: str
    size: int
    ingested_at: str
    disposed_at: str | None
    client: str
    matters: list[str]
    subject: str
    date: str | None
    sender: list[str]
    to: list[str]
    cc: list[str]
    headers: list[tuple[str, str]]
    text: str
    has_html: bool
    attachments: list[AttachmentOut]
    parse_errors: list[str]
    provenance: list[dict[str, Any]]
    #: the covering holds you may read (none without the holds permission).
    holds: list[dict[str, Any]]
    #: whether any legal hold covers the message.
    on_hold: bool
    retention: dict[str, Any] | None


class ExportIn(BaseModel):
    kind: Literal["query", "matter"] = "query"
    #: the query text (kind=query) or the matter number (kind=matter); surrounding blanks are dropped first.
    value: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=5000)]


class ExportOut(BaseModel):
    id: str
    kind: str
    value: str
    status: str
    created: str
    messages: int
    error: str
    filename: str


class EventOut(BaseModel):
    seq: int
    type: str
    time: str
    actor: str
    data: dict[str, Any]


class EventsOut(BaseModel):
    total: int
    events: list[EventOut]


class HoldOut(BaseModel):
    case: str
    kind: str
    value: str
    reason: str = ""
    placed_at: str | None = None
    placed_by: str | None = None
    released_at: str | None = None
    released_by: str | None = None
    active: bool = True


class Ok(BaseModel):
    ok: bool = True


def hit_out(h: SearchHit, scored: bool) -> Hit:
    return Hit(
        id=h.id,
        message_id=h.message_id,
        date=h.date.isoformat(),
        sender=h.from_,
        to=list(h.to),
        subject=h.subject,
        client=h.client,
        matters=list(h.matters),
        snippet=h.snippet,
        snippet_html=snippet_html(h),
        score=h.score if scored else None,
    )


def message_out(view: MessageView) -> MessageOut:
    info, p = view.info, view.parsed
    return MessageOut(
        id=info["id"],
        size=info["size"],
        ingested_at=info["ingested_at"],
        disposed_at=info.get("disposed_at"),
        client=info["client"],
        matters=info["matters"],
        subject=p.subject if p else str(info.get("subject", "")),
        date=p.date.isoformat() if p else info.get("date"),
        sender=[str(a) for a in p.from_] if p else [],
        to=[str(a) for a in p.to] if p else [],
        cc=[str(a) for a in p.cc] if p else [],
        headers=list(p.headers) if p else [],
        text=p.body_text if p else "",
        has_html=bool(p and p.body_html),
        attachments=[
            AttachmentOut(filename=a.filename, content_type=a.content_type, size=a.size, sha256=a.sha256, error=a.error)
            for a in (p.attachments if p else ())
        ],
        parse_errors=list(p.parse_errors) if p else [],
        provenance=[{k: v for k, v in row.items()} for row in info.get("provenance", [])],
        holds=view.holds,
        on_hold=view.on_hold,
        retention=view.retention,
    )


@router.post("/login", response_model=Me, responses={401: {}, 415: {}, 429: {}})
def api_login(body: LoginIn, request: Request, response: Response) -> Me | JSONResponse:
    """Log in; JSON only (a cross-site form cannot send JSON, which protects this from CSRF)."""
    if not request.headers.get("content-type", "").startswith("application/json"):
        return JSONResponse({"detail": "Send the credentials as application/json."}, status_code=415)
    outcome = attempt_login(request, body.username, body.password, response)
    if outcome.error:
        headers = {"Retry-After": str(outcome.retry_after)} if outcome.retry_after else None
        return JSONResponse({"detail": outcome.error}, status_code=outcome.status, headers=headers)
    assert outcome.session is not None and outcome.scope is not None
    return Me(
        username=outcome.scope.username,
        role=outcome.scope.role,
        permissions=sorted(outcome.scope.permissions),
        csrf_token=outcome.session.csrf,
    )


@router.post("/logout", response_model=Ok, dependencies=[Depends(check_csrf)])
def api_logout(request: Request, response: Response) -> Ok:
    logout_cookie(request, response)
    return Ok()


@router.get("/me", response_model=Me)
def api_me(request: Request, scope: Annotated[Scope, Depends(scope_of)]) -> Me:
    return Me(
        username=scope.username,
        role=scope.role,
        permissions=sorted(scope.permissions),
        csrf_token=request.state.session.csrf,
    )


@router.get("/search", response_model=SearchOut)
def api_search(
    scope: Annotated[Scope, Depends(require("search"))],
    request: Request,
    q: Annotated[str, Query(max_length=5000)] = "",
    client: Annotated[str, Query(max_length=200)] = "",
    matter: Annotated[str, Query(max_length=200)] = "",
    source: Annotated[str, Query(max_length=200)] = "",
    after: date | None = None,
    before: date | None = None,
    has_attachment: bool = False,
    sort: Literal["date", "relevance"] = "date",
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=100)] = 20,
    facets: bool = True,
) -> SearchOut:
    """Search with the CLI's query language plus filters; hits, total and facets respect walls."""
    form = SearchForm(
        q=q, client=client, matter=matter, source=source, after=after, before=before, has_attachment=has_attachment
    )
    query = build_query(form)
    result = state(request).service.search(
        scope,
        query,
        limit=per_page,
        offset=(page - 1) * per_page,
        sort=sort,
        facets=facets,
        journal={"typed": form.q[:2000], "filters": form.filters()},
    )
    return SearchOut(
        query=query,
        sort=result.sort,
        total=result.total,
        page=page,
        per_page=per_page,
        hits=[hit_out(h, result.sort == "relevance") for h in result.hits],
        facets={k: [FacetCount(value=v, count=n) for v, n in vs] for k, vs in result.facets.items()},
    )


@router.get("/messages/{message_id}", response_model=MessageOut, responses={404: {}})
def api_message(
    message_id: MessageId, scope: Annotated[Scope, Depends(require("view"))], request: Request
) -> MessageOut:
    return message_out(state(request).service.message(scope, message_id))


@router.get("/messages/{message_id}/raw", response_class=Response, responses={404: {}, 410: {}})
def api_raw(message_id: MessageId, scope: Annotated[Scope, Depends(require("download"))], request: Request) -> Response:
    """The original message bytes (.eml), exactly as archived."""
    oid, raw = state(request).service.raw(scope, message_id)
    return Response(
        raw,
        media_type="message/rfc822",
        headers={"Content-Disposition": f'attachment; filename="{oid}.eml"'},
    )


@router.get("/messages/{message_id}/attachments/{sha256}", response_class=Response, responses={404: {}})
def api_attachment(
    message_id: MessageId,
    sha256: Annotated[str, Field(max_length=200)],
    scope: Annotated[Scope, Depends(require("download"))],
    request: Request,
) -> Response:
    """One attachment, always as a download (never rendered by the browser)."""
    meta, data = state(request).service.attachment(scope, message_id, sha256)
    name = strip_bidi(meta.filename) or f"attachment-{meta.sha256[:12]}"
    ascii_name = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in name)
    return Response(
        data,
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}",
        },
    )


@router.get("/messages/{message_id}/body.html", response_class=Response, responses={404: {}})
def api_body(message_id: MessageId, scope: Annotated[Scope, Depends(require("view"))], request: Request) -> Response:
    """The sanitised HTML body, for a sandboxed iframe: no scripts, nothing fetched."""
    body = state(request).service.html_body(scope, message_id)
    return Response(
        frame_document(body),
        media_type="text/html",
        headers={"Content-Security-Policy": FRAME_CSP, "X-Frame-Options": "SAMEORIGIN"},
    )


@router.post("/exports", response_model=ExportOut, status_code=202, dependencies=[Depends(check_csrf)])
def api_export_start(
    body: ExportIn, scope: Annotated[Scope, Depends(require("export"))], request: Request
) -> ExportOut:
    """Start an evidence-bundle export of a query's or a matter's messages (within the user's walls)."""
    value = body.value.strip()
    if body.kind == "query":
        build_query(SearchForm(q=value))  # a malformed query is refused now, not in the background
    job = state(request).exports.start(scope, body.kind, value)
    return ExportOut(**job.public())


@router.get("/exports", response_model=list[ExportOut])
def api_exports(scope: Annotated[Scope, Depends(require("export"))], request: Request) -> list[ExportOut]:
    return [ExportOut(**j.public()) for j in state(request).exports.list(scope)]


@router.get("/exports/{job_id}", response_model=ExportOut, responses={404: {}})
def api_export(
    job_id: Annotated[str, Field(max_length=100)], scope: Annotated[Scope, Depends(require("export"))], request: Request
) -> ExportOut:
    job = state(request).exports.get(scope, job_id)
    if job is None:
        raise Hidden("No such export.")
    return ExportOut(**job.public())


@router.get("/exports/{job_id}/download", response_class=FileResponse, responses={404: {}, 409: {}})
def api_export_download(
    job_id: Annotated[str, Field(max_length=100)], scope: Annotated[Scope, Depends(require("export"))], request: Request
) -> Response:
    web = state(request)
    job = web.exports.get(scope, job_id)
    if job is None:
        raise Hidden("No such export.")
    if job.status != "done" or not job.path:
        return JSONResponse({"detail": f"The export is {job.status}; download it when it is done."}, status_code=409)
    web.service.journal(scope.username, "download", {"part": "export", "job": job.id, "file": job.public()["filename"]})
    return FileResponse(job.path, media_type="application/zip", filename=job.public()["filename"])


@router.get("/audit", response_model=EventsOut)
def api_audit(
    scope: Annotated[Scope, Depends(require("audit"))],
    request: Request,
    type: Annotated[list[str] | None, Query(max_length=50)] = None,
    actor: Annotated[str, Query(max_length=200)] = "",
    since: Annotated[str, Query(max_length=40)] = "",
    until: Annotated[str, Query(max_length=40)] = "",
    contains: Annotated[str, Query(max_length=200)] = "",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> EventsOut:
    """The journal's events (logins, searches, views, downloads, exports, ...), newest first.

    A user under a wall sees every event, but its details only as far as they concern mail
    within the walls (the rest is listed in the event's ``withheld``); ``type=`` with no value
    filters nothing."""
    total, events = state(request).service.events(
        scope,
        types=type or (),
        actor=actor,
        since=since,
        until=until,
        contains=contains,
        limit=limit,
        offset=offset,
    )
    return EventsOut(total=total, events=[EventOut(**e) for e in events])


@router.get("/holds", response_model=list[HoldOut])
def api_holds(scope: Annotated[Scope, Depends(require("holds"))], request: Request) -> list[HoldOut]:
    """Legal holds (placed and released), except those that name or cover mail behind the user's walls."""
    return [HoldOut.model_validate(h) for h in state(request).service.holds(scope)]
