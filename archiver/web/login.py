"""Logging in and out, shared by the login page and ``POST /api/login``.

Every attempt whose password is checked, successful or not, is journalled with the user name
as typed, the client address and the outcome, and so is an attempt refused because its
(user, address) pair is locked out.  Before any password is hashed, three limits apply
(``archiver.web.auth``): the pair's lockout after ``web.max_failed_logins`` failures, the user
name's back-off after as many failures from anywhere (skipped for a browser that has logged in
as that user before), and the number of password checks running at once.  The failure message
is the same for an unknown user and a wrong password.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fastapi import Request, Response

from archiver.web.access import Scope
from archiver.web.auth import LOCKOUT_SECONDS, credential_of, verify_password
from archiver.web.deps import client_address, state
from archiver.web.sessions import COOKIE_NAME, DEVICE_COOKIE, DEVICE_DAYS, Session

BAD_CREDENTIALS = "Wrong user name or password."
LOCKED = "Too many failed logins from this address; try again in 15 minutes."
BACKING_OFF = "Too many failed logins for this user; try again in {seconds} seconds."
BUSY = "The server is busy checking other logins; try again in a few seconds."


@dataclass(frozen=True, slots=True)
class LoginOutcome:
    session: Session | None = None
    scope: Scope | None = None
    error: str = ""
    status: int = 200
    #: seconds to send in Retry-After when the attempt was refused unchecked.
    retry_after: int = 0


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


def _set_device_cookie(request: Request, response: Response, username: str) -> None:
    web = state(request)
    response.set_cookie(
        DEVICE_COOKIE,
        web.sessions.device_cookie(username),
        max_age=DEVICE_DAYS * 86400,
        path="/",
        secure=web.cfg.web.secure_cookies,
        httponly=True,
        samesite="strict",
    )


def _refused(request: Request, name: str, address: str) -> LoginOutcome | None:
    """An answer for an attempt that must not be checked now (no password is hashed), or None.

    A locked-out pair is journalled (the usual sign of guessing); a back-off or a busy server
    is not, since refusing costs nothing and a journal record per refusal would let anyone
    fill the journal.
    """
    web = state(request)
    if web.limiter.locked(name, address):
        web.service.journal(
            name or "-", "login", {"username": name, "address": address, "ok": False, "reason": "locked out"}
        )
        return LoginOutcome(error=LOCKED, status=429, retry_after=LOCKOUT_SECONDS)
    known = web.sessions.device_user(request.cookies.get(DEVICE_COOKIE)) == name
    wait = math.ceil(web.limiter.backoff(name, known_device=known))
    if wait > 0:
        return LoginOutcome(error=BACKING_OFF.format(seconds=wait), status=429, retry_after=wait)
    return None


def attempt_login(request: Request, username: str, password: str, response: Response) -> LoginOutcome:
    """Check the credentials; on success create the session and set its cookie on ``response``."""
    web = state(request)
    address = client_address(request)
    name = " ".join(username.split())[:200]
    record = {"username": name, "address": address}
    refused = _refused(request, name, address)
    if refused is not None:
        return refused
    with web.gate.slot() as free:
        if not free:
            return LoginOutcome(error=BUSY, status=429, retry_after=2)
        accounts = web.accounts
        user = accounts.users.get(name)
        ok = verify_password(user.password_hash if user else None, password) and user is not None
    if not ok or user is None:
        web.limiter.failed(name, address)
        web.service.journal(name or "-", "login", {**record, "ok": False, "reason": "bad credentials"})
        return LoginOutcome(error=BAD_CREDENTIALS, status=401)
    web.limiter.succeeded(name, address)
    session, cookie = web.sessions.create(user.username, credential_of(user))
    set_session_cookie(request, response, cookie)
    _set_device_cookie(request, response, user.username)
    web.service.journal(user.username, "login", {**record, "ok": True, "role": user.role})
    return LoginOutcome(session=session, scope=accounts.scope(user))


def logout_cookie(request: Request, response: Response) -> None:
    web = state(request)
    web.sessions.drop(request.cookies.get(COOKIE_NAME))
    response.delete_cookie(COOKIE_NAME, path="/", secure=web.cfg.web.secure_cookies, httponly=True, samesite="strict")
