"""Logging in and out, shared by the login page and ``POST /api/login``.

Every attempt, successful or not, is journalled with the user name as typed, the client
address and the outcome.  After ``web.max_failed_logins`` failures for one (user, address)
pair the pair is locked out for 15 minutes; while locked, the password is not even checked.
The failure message is the same for an unknown user and a wrong password.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request, Response

from archiver.web.access import Scope, scope_for
from archiver.web.auth import verify_password
from archiver.web.deps import client_address, state
from archiver.web.sessions import COOKIE_NAME, Session

BAD_CREDENTIALS = "Wrong user name or password."
LOCKED = "Too many failed logins from this address; try again in 15 minutes."


@dataclass(frozen=True, slots=True)
class LoginOutcome:
    session: Session | None = None
    scope: Scope | None = None
    error: str = ""
    status: int = 200


def set_session_cookie(request: Request, response: Response, value: str) -> None:
    web = state(request)
    response.set_cookie(
        COOKIE_NAME,
        value,
        max_age=int(web.cfg.web.session_hours * 3600),
        path="/",
        secure=web.cfg.web.secure_cookies,
        httponly=True,
        samesite="strict",
    )


def attempt_login(request: Request, username: str, password: str, response: Response) -> LoginOutcome:
    """Check the credentials; on success create the session and set its cookie on ``response``."""
    web = state(request)
    address = client_address(request)
    name = " ".join(username.split())[:200]
    record = {"username": name, "address": address}
    if web.limiter.locked(name, address):
        web.service.journal(name or "-", "login", {**record, "ok": False, "reason": "locked out"})
        return LoginOutcome(error=LOCKED, status=429)
    user = web.users.get(name)
    ok = verify_password(user.password_hash if user else None, password) and user is not None
    if not ok or user is None:
        web.limiter.failed(name, address)
        web.service.journal(name or "-", "login", {**record, "ok": False, "reason": "bad credentials"})
        return LoginOutcome(error=BAD_CREDENTIALS, status=401)
    web.limiter.succeeded(name, address)
    session, cookie = web.sessions.create(user.username)
    set_session_cookie(request, response, cookie)
    web.service.journal(user.username, "login", {**record, "ok": True, "role": user.role})
    return LoginOutcome(session=session, scope=scope_for(user, web.cfg.web.walls))


def logout_cookie(request: Request, response: Response) -> None:
    web = state(request)
    web.sessions.drop(request.cookies.get(COOKIE_NAME))
    response.delete_cookie(COOKIE_NAME, path="/", secure=web.cfg.web.secure_cookies, httponly=True, samesite="strict")
