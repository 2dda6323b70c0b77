"""Request-level plumbing shared by the API and the pages: who is asking, and may they.

Every route gets its :class:`~archiver.web.access.Scope` from :func:`scope_of` (which calls
the one authorisation function, ``access.scope_for``) and checks its permission with
:func:`require`.  State-changing requests must carry the session's CSRF token.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from starlette.templating import Jinja2Templates

from archiver.config import Config, WebConfig, WebUser
from archiver.errors import ArchiverError
from archiver.logging import get_logger
from archiver.web.access import Permission, Scope, wall_warnings
from archiver.web.auth import Accounts, LoginLimiter, PasswordGate, load_accounts
from archiver.web.exports import ExportJobs
from archiver.web.service import WebArchive
from archiver.web.sessions import COOKIE_NAME, Session, SessionStore, tokens_match

log = get_logger("archiver.web")

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
    """Everything the routes share; one per app.

    ``cfg`` is the configuration the server started with (listen address, cookies, session
    length, exports); ``accounts``, the users and walls, is replaced as a whole by
    :meth:`reconfigure` when the daemon reloads its config, and read once per request.
    """

    cfg: Config
    service: WebArchive
    accounts: Accounts
    sessions: SessionStore
    limiter: LoginLimiter
    exports: ExportJobs
    templates: Jinja2Templates
    gate: PasswordGate = field(default_factory=PasswordGate)

    def reconfigure(self, cfg: Config) -> int:
        """Use the users and walls of ``cfg`` from the next request on; returns how many sessions ended.

        The sessions of users who are gone, or whose password changed, end at once (a session
        remembers a fingerprint of the password it logged in with).  A ConfigError (say an
        unreadable ``web.users_file``) leaves everything as it was.  The other ``web`` settings
        are the server's and need a restart; each changed one is logged.
        """
        accounts = load_accounts(cfg.web)
        self.accounts = accounts
        ended = self.sessions.retain(lambda s: accounts.user_of(s.username, s.credential) is not None)
        for warning in wall_warnings(accounts.users, accounts.walls):
            log.warning(warning)
        for key in sorted(_RESTART_KEYS):
            if getattr(cfg.web, key) != getattr(self.cfg.web, key):
                log.warning(f"web.{key} changed: it takes effect when the web server restarts")
        log.info("web users and walls reloaded", users=len(accounts.users), walls=len(accounts.walls), ended=ended)
        return ended


#: web settings a running server keeps until it restarts (users, users_file and walls reload).
_RESTART_KEYS = set(WebConfig.model_fields) - {"users", "users_file", "walls"}


def state(request: Request) -> WebState:
    web: WebState = request.app.state.web
    return web


def session_of(request: Request) -> Session | None:
    return state(request).sessions.get(request.cookies.get(COOKIE_NAME))


def user_of(request: Request) -> tuple[Session, WebUser] | None:
    """The session and its user, while the user exists with the password the session logged in with."""
    session = session_of(request)
    if session is None:
        return None
    web = state(request)
    user = web.accounts.user_of(session.username, session.credential)
    if user is None:  # removed from the config, or a new password, since logging in
        web.sessions.drop(request.cookies.get(COOKIE_NAME))
        return None
    return session, user


def scope_of(request: Request) -> Scope:
    """The logged-in user's scope, computed from the users and walls in force on every request."""
    found = user_of(request)
    if found is None:
        raise LoginRequired()
    request.state.session = found[0]
    return state(request).accounts.scope(found[1])


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
    found = user_of(request)
    scope = state(request).accounts.scope(found[1]) if found else None
    return {"request": request, "scope": scope, "csrf": found[0].csrf if found else "", **extra}
