"""Request-level plumbing shared by the API and the pages: who is asking, and may they.

Every route gets its :class:`~archiver.web.access.Scope` from :func:`scope_of` (which calls
the one authorisation function, ``access.scope_for``) and checks its permission with
:func:`require`.  State-changing requests must carry the session's CSRF token.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.templating import Jinja2Templates

from archiver.config import Config, WebUser
from archiver.errors import ArchiverError
from archiver.web.access import Permission, Scope, scope_for
from archiver.web.auth import LoginLimiter
from archiver.web.exports import ExportJobs
from archiver.web.service import WebArchive
from archiver.web.sessions import COOKIE_NAME, Session, SessionStore, tokens_match

CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"


class LoginRequired(ArchiverError):
    """Log in first."""


class Forbidden(ArchiverError):
    """Your role does not allow this."""


class CsrfFailed(ArchiverError):
    """The form or request was missing its CSRF token; reload the page and try again."""


@dataclass
class WebState:
    """Everything the routes share; one per app."""

    cfg: Config
    service: WebArchive
    users: dict[str, WebUser]
    sessions: SessionStore
    limiter: LoginLimiter
    exports: ExportJobs
    templates: Jinja2Templates


def state(request: Request) -> WebState:
    web: WebState = request.app.state.web
    return web


def session_of(request: Request) -> Session | None:
    return state(request).sessions.get(request.cookies.get(COOKIE_NAME))


def scope_of(request: Request) -> Scope:
    """The logged-in user's scope, recomputed from the current config on every request."""
    session = session_of(request)
    if session is None:
        raise LoginRequired()
    web = state(request)
    user = web.users.get(session.username)
    if user is None:  # removed from the config since logging in
        web.sessions.drop(request.cookies.get(COOKIE_NAME))
        raise LoginRequired()
    request.state.session = session
    return scope_for(user, web.cfg.web.walls)


def require(permission: Permission) -> Callable[[Request], Scope]:
    """A dependency: the scope, when it has ``permission``; 403 otherwise."""

    def dependency(request: Request) -> Scope:
        scope = scope_of(request)
        if not scope.can(permission):
            raise Forbidden(f"The {scope.role} role may not use this ({permission}).")
        return scope

    return dependency


async def check_csrf(request: Request) -> None:
    """The session's CSRF token must come back in the header or the form."""
    session = session_of(request)
    given = request.headers.get(CSRF_HEADER)
    if given is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        value = form.get(CSRF_FIELD)
        given = value if isinstance(value, str) else None
    if session is None or not tokens_match(session.csrf, given):
        raise CsrfFailed()


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def page_context(request: Request, **extra: Any) -> dict[str, Any]:
    """What every template gets: the user (if any), their CSRF token, and the extras."""
    session = session_of(request)
    scope = None
    if session is not None:
        user = state(request).users.get(session.username)
        scope = scope_for(user, state(request).cfg.web.walls) if user else None
    return {"request": request, "scope": scope, "csrf": session.csrf if session else "", **extra}
