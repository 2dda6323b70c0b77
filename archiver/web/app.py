"""The web application factory: ``create_app(cfg)`` -> a FastAPI app (ASGI).

The archive is opened once, at start-up, with the passphrase from the config; the routes
reach it only through ``WebArchive`` with the user's scope.  Every response carries the
security headers (CSP, no framing, no sniffing, no referrer) unless a route sets its own
(the sandboxed body frame).  Errors become JSON under ``/api`` and a page elsewhere; a
hidden or missing message is a 404 either way.
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from archiver import __version__
from archiver.archive import Archive
from archiver.config import Config, WebConfig
from archiver.errors import ArchiverError, ConfigError, LockedError, NotFoundError
from archiver.logging import get_logger
from archiver.web import api, pages
from archiver.web.access import wall_warnings
from archiver.web.auth import LoginLimiter, load_accounts
from archiver.web.deps import CsrfFailed, Forbidden, LoginRequired, WebState, page_context
from archiver.web.exports import ExportJobs, TooManyExports
from archiver.web.render import show_bidi
from archiver.web.service import Gone, WebArchive
from archiver.web.sessions import SessionStore, load_secret

HERE = Path(__file__).resolve().parent
log = get_logger("archiver.web")

#: the pages' policy: our own scripts and styles only, frames only from ourselves.
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": PAGE_CSP,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
}


#: sent on responses to HTTPS requests (directly, or through a trusted proxy's X-Forwarded-Proto).
HSTS = "max-age=31536000"


class SecurityHeaders:
    """Adds SECURITY_HEADERS (and no-store caching) to every HTTP response that lacks them.

    Strict-Transport-Security goes only on responses to requests that arrived over HTTPS: over
    plain HTTP (loopback development) browsers ignore it, and sent there it would say nothing.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = str(scope.get("path", "")).startswith("/static/")
        tls = scope.get("scheme") == "https"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for key, value in SECURITY_HEADERS.items():
                    if key not in headers:
                        headers[key] = value
                if tls and "strict-transport-security" not in headers:
                    headers["strict-transport-security"] = HSTS
                if "cache-control" not in headers:
                    headers["cache-control"] = "max-age=3600" if static else "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)


def is_loopback(listen: str) -> bool:
    host = listen.rpartition(":")[0].strip("[]") or listen
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _status_of(exc: ArchiverError) -> int:
    if isinstance(exc, LoginRequired):
        return 401
    if isinstance(exc, Forbidden | CsrfFailed):
        return 403
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, Gone):
        return 410
    if isinstance(exc, LockedError):
        return 503
    if isinstance(exc, TooManyExports):
        return 429
    return 400  # QueryError and every other mistake of the caller


def _error_response(request: Request, status: int, message: str) -> Response:
    path = request.url.path
    if path.startswith("/api/") or path == "/openapi.json":
        return JSONResponse({"detail": message}, status_code=status)
    if status == 401:
        target = path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
    web: WebState = request.app.state.web
    return web.templates.TemplateResponse(
        request, "error.html", page_context(request, status=status, message=message), status_code=status
    )


def uvicorn_options(web: WebConfig) -> dict[str, Any]:
    """What ``archiver serve`` and the daemon's web server both tell uvicorn about proxies.

    The client address (login lockout, the journal's login records) is the TCP peer's unless
    the peer is one of ``web.trusted_proxies``; only then are X-Forwarded-For and
    X-Forwarded-Proto believed.  Without this the two launchers disagreed: uvicorn's default
    trusts those headers from 127.0.0.1, so anything on the machine could choose its address.
    """
    trusted = list(web.trusted_proxies)
    return {
        "proxy_headers": bool(trusted),
        "forwarded_allow_ips": trusted,
        "server_header": False,
        "log_level": "warning",
    }


def create_app(cfg: Config, archive: Archive | None = None, *, export_dir: Path | None = None) -> FastAPI:
    """The ASGI app; opens the archive from ``cfg`` unless one is given (closed on shutdown if opened here)."""
    if not cfg.web.secure_cookies and not is_loopback(cfg.web.listen):
        raise ConfigError(
            "web.secure_cookies: false is only allowed when web.listen is a loopback address "
            "(plain-HTTP development); serve HTTPS (e.g. behind a reverse proxy) and keep it true."
        )
    accounts = load_accounts(cfg.web)
    for warning in wall_warnings(accounts.users, accounts.walls):
        log.warning(warning)
    own_archive = archive is None
    opened = archive or Archive.open(cfg)
    secret_file = cfg.web.session_secret_file or (cfg.archive.path / "web-session.key")
    service = WebArchive(opened)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.autoescape = True
    templates.env.filters["show_bidi"] = show_bidi
    folder = export_dir or cfg.web.export_dir
    web = WebState(
        cfg=cfg,
        service=service,
        accounts=accounts,
        sessions=SessionStore(load_secret(secret_file), cfg.web.session_hours * 3600),
        limiter=LoginLimiter(cfg.web.max_failed_logins),
        exports=ExportJobs(
            service, folder, per_user=cfg.web.max_exports_per_user, ttl_s=cfg.web.export_ttl_hours * 3600
        ),
        templates=templates,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        web.exports.close()
        if own_archive:
            opened.close()

    app = FastAPI(
        title="Mail archiver",
        version=__version__,
        description="Search, view and export archived mail within your role and ethical walls.",
        docs_url=None,  # Swagger UI would load scripts from a CDN
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.web = web
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.include_router(api.router)
    app.include_router(pages.router)

    @app.exception_handler(ArchiverError)
    async def archiver_error(request: Request, exc: ArchiverError) -> Response:
        return _error_response(request, _status_of(exc), str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return _error_response(request, exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in exc.errors()[:5]
        )
        return _error_response(request, 422, f"Invalid request: {problems}")

    return app
