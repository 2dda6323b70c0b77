"""Server-side sessions behind a signed cookie, and their CSRF tokens.

The cookie carries only a random session id signed with the server secret (itsdangerous), so
a stolen or forged value is useless once the session is gone: logging out, expiry and a
restart revoke it.  Each session has its own CSRF token, which every state-changing form
(hidden ``csrf_token`` field) and API call (``X-CSRF-Token`` header) must echo.
"""

from __future__ import annotations

import hmac
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from itsdangerous import BadSignature, Signer, TimestampSigner

from archiver.errors import ConfigError

COOKIE_NAME = "archiver_session"
#: double-submit cookie protecting the login form (there is no session yet).
LOGIN_CSRF_COOKIE = "archiver_login_csrf"
#: signed "this browser has logged in as USER" cookie: it exempts the user's own browsers from
#: the per-user login back-off (archiver.web.auth.LoginLimiter), so that back-off cannot lock them out.
DEVICE_COOKIE = "archiver_device"
DEVICE_DAYS = 30


@dataclass(frozen=True, slots=True)
class Session:
    sid: str
    username: str
    csrf: str
    expires: float
    #: fingerprint of the password hash the user logged in with (archiver.web.auth.credential_of).
    credential: str = ""


def load_secret(path: Path) -> bytes:
    """The cookie-signing secret from ``path``, created (0600, 32 random bytes) when absent."""
    try:
        data = path.read_bytes().strip()
        if len(data) >= 32:
            return data
        raise ConfigError(f"The session secret file {path} holds fewer than 32 bytes; delete it to regenerate it.")
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise ConfigError(f"Cannot read the session secret file {path}: {exc.strerror}.") from None
    secret = secrets.token_hex(32).encode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secret + b"\n")
    except FileExistsError:
        return load_secret(path)
    except OSError as exc:
        raise ConfigError(f"Cannot create the session secret file {path}: {exc.strerror}.") from None
    return secret


class SessionStore:
    """Live sessions in memory; thread-safe."""

    def __init__(self, secret: bytes, lifetime_s: float, now: Callable[[], float] = time.time) -> None:
        self._signer = Signer(secret, salt="archiver-session")
        self._device_signer = TimestampSigner(secret, salt="archiver-device")
        self._lifetime = lifetime_s
        self._now = now
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, username: str, credential: str = "") -> tuple[Session, str]:
        """A new session and the cookie value naming it."""
        session = Session(
            secrets.token_urlsafe(32), username, secrets.token_urlsafe(32), self._now() + self._lifetime, credential
        )
        with self._lock:
            self._purge()
            self._sessions[session.sid] = session
        return session, self._signer.sign(session.sid.encode()).decode()

    def get(self, cookie: str | None) -> Session | None:
        if not cookie:
            return None
        try:
            sid = self._signer.unsign(cookie.encode()).decode()
        except (BadSignature, UnicodeError):
            return None
        with self._lock:
            session = self._sessions.get(sid)
            if session is not None and session.expires <= self._now():
                del self._sessions[sid]
                return None
            return session

    def drop(self, cookie: str | None) -> None:
        session = self.get(cookie)
        if session is not None:
            with self._lock:
                self._sessions.pop(session.sid, None)

    def retain(self, keep: Callable[[Session], bool]) -> int:
        """Drop every session for which ``keep`` is false (users removed, passwords changed); how many."""
        with self._lock:
            gone = [sid for sid, session in self._sessions.items() if not keep(session)]
            for sid in gone:
                del self._sessions[sid]
        return len(gone)

    def device_cookie(self, username: str) -> str:
        """The value of :data:`DEVICE_COOKIE` after ``username`` logged in on this browser."""
        return self._device_signer.sign(username.encode("utf-8")).decode()

    def device_user(self, cookie: str | None) -> str | None:
        """The user name a device cookie vouches for, if it is genuine and younger than DEVICE_DAYS."""
        if not cookie:
            return None
        try:
            return self._device_signer.unsign(cookie.encode(), max_age=DEVICE_DAYS * 86400).decode("utf-8")
        except (BadSignature, UnicodeError):
            return None

    def _purge(self) -> None:
        now = self._now()
        for sid in [s for s, v in self._sessions.items() if v.expires <= now]:
            del self._sessions[sid]


def tokens_match(expected: str | None, given: str | None) -> bool:
    """Constant-time comparison of two CSRF tokens; missing never matches."""
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())
