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

from itsdangerous import BadSignature, Signer

from archiver.errors import ConfigError

COOKIE_NAME = "archiver_session"
#: double-submit cookie protecting the login form (there is no session yet).
LOGIN_CSRF_COOKIE = "archiver_login_csrf"


@dataclass(frozen=True, slots=True)
class Session:
    sid: str
    username: str
    csrf: str
    expires: float


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
        self._lifetime = lifetime_s
        self._now = now
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, username: str) -> tuple[Session, str]:
        """A new session and the cookie value naming it."""
        session = Session(secrets.token_urlsafe(32), username, secrets.token_urlsafe(32), self._now() + self._lifetime)
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

    def _purge(self) -> None:
        now = self._now()
        for sid in [s for s, v in self._sessions.items() if v.expires <= now]:
            del self._sessions[sid]


def tokens_match(expected: str | None, given: str | None) -> bool:
    """Constant-time comparison of two CSRF tokens; missing never matches."""
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())
