"""Web users, argon2 password checks and login rate limiting (per pair, per user, and at once).

Users come from ``web.users`` in the config and from ``web.users_file`` (a YAML file with a
``users:`` list in the same form, so password hashes can live outside the main config).
Unknown users are checked against a dummy hash so that response time does not reveal which
user names exist.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from pydantic import ValidationError

from archiver import strict_yaml
from archiver.config import EthicalWall, WebConfig, WebUser
from archiver.errors import ConfigError
from archiver.web.access import Scope, scope_for

#: how long a (user, address) pair stays locked out after too many failures.
LOCKOUT_SECONDS = 15 * 60
#: the longest a user name's back-off after failures from many addresses grows to.
MAX_BACKOFF_S = 60.0
#: password checks (argon2) that may run at once.
LOGIN_CONCURRENCY = 4
_HASHER = PasswordHasher()
_DUMMY_HASH = _HASHER.hash("not a real password: equalises timing for unknown users")


def hash_password(password: str) -> str:
    """An argon2id hash for ``web.users[].password_hash``."""
    if not password:
        raise ConfigError("An empty password cannot be hashed; choose a password.")
    return _HASHER.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; a missing or malformed hash never matches."""
    try:
        return _HASHER.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def load_users(cfg: WebConfig) -> dict[str, WebUser]:
    """Every configured user by name; duplicate names are a configuration error."""
    users: list[WebUser] = list(cfg.users)
    if cfg.users_file is not None:
        users.extend(_read_users_file(cfg.users_file))
    out: dict[str, WebUser] = {}
    for user in users:
        if user.username in out:
            raise ConfigError(f"The web user {user.username!r} is defined twice; user names must be unique.")
        out[user.username] = user
    return out


def _read_users_file(path: Path) -> list[WebUser]:
    try:
        data = strict_yaml.load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"Cannot read the web users file {path}: {exc.strerror}.") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"The web users file {path} is not valid YAML: {exc}.") from None
    items = data.get("users") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise ConfigError(f"The web users file {path} must hold a mapping with a 'users:' list.")
    users = []
    for n, item in enumerate(items):
        try:
            users.append(WebUser.model_validate(item))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"The web users file {path}: user #{n + 1} is invalid ({problems}).") from None
    return users


class LoginLimiter:
    """Failed logins, counted two ways, so that guessing is slow and nobody can lock a user out.

    * Per (user name, client address): after ``max_failures`` failures within 15 minutes the
      pair is locked out until the oldest of them is 15 minutes old.  The address is the TCP
      peer's, or the one a trusted proxy reports (``web.trusted_proxies``).
    * Per user name, from any address: after ``max_failures`` failures each further attempt
      must wait 1, 2, 4, ... up to :data:`MAX_BACKOFF_S` seconds after the previous failure
      (password spraying and guessing from many addresses).  An attempt from a browser that
      has logged in as that user before (a signed device cookie) skips this wait, so that an
      attacker who keeps failing cannot keep the real user out.

    Unknown user names are counted like known ones (an answer must not tell them apart).  The
    counts live in memory, at most ``max_keys`` of each kind: expired ones are pruned as they
    go, and when more distinct names or addresses than that are failing at once, the oldest
    counts are forgotten.  A restart forgets everything, which an attacker cannot trigger.
    """

    def __init__(
        self,
        max_failures: int,
        *,
        window_s: float = LOCKOUT_SECONDS,
        max_keys: int = 10_000,
        now: Callable[[], float] = time.monotonic,
    ):
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_keys = max_keys
        self._now = now
        self._failures: dict[tuple[str, str], list[float]] = {}
        self._by_user: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, table: dict[Any, list[float]], key: Any) -> list[float]:
        cutoff = self._now() - self.window_s
        recent = [t for t in table.get(key, []) if t > cutoff]
        if recent:
            table[key] = recent
        else:
            table.pop(key, None)
        return recent

    def locked(self, username: str, address: str) -> bool:
        """Whether the (user, address) pair is locked out now."""
        with self._lock:
            return len(self._recent(self._failures, (username.lower(), address))) >= self.max_failures

    def backoff(self, username: str, *, known_device: bool = False) -> float:
        """Seconds the next attempt for ``username`` must still wait (0: it may be checked now)."""
        if known_device:
            return 0.0
        with self._lock:
            recent = self._recent(self._by_user, username.lower())
        over = len(recent) - self.max_failures
        if over < 0:
            return 0.0
        wait = min(float(2**over), MAX_BACKOFF_S)
        return max(0.0, recent[-1] + wait - self._now())

    def failed(self, username: str, address: str) -> None:
        with self._lock:
            key = (username.lower(), address)
            self._failures[key] = [*self._recent(self._failures, key), self._now()][-self.max_failures * 2 :]
            user = username.lower()
            self._by_user[user] = [*self._recent(self._by_user, user), self._now()][-64:]
            self._bound(self._failures)
            self._bound(self._by_user)

    def succeeded(self, username: str, address: str) -> None:
        with self._lock:
            self._failures.pop((username.lower(), address), None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._failures) + len(self._by_user)

    def _bound(self, table: dict[Any, list[float]]) -> None:
        """Keep ``table`` within ``max_keys``: drop expired counts, then the oldest (call under the lock)."""
        if len(table) <= self.max_keys:
            return
        for key in list(table):
            self._recent(table, key)
        if len(table) > self.max_keys:
            for key in sorted(table, key=lambda k: table[k][-1])[: len(table) - self.max_keys]:
                del table[key]


class PasswordGate:
    """At most ``limit`` password checks at once; beyond that an attempt is refused unchecked.

    Each argon2 check takes ~64 MiB and most of a CPU for ~0.1 s, on one of the threads shared
    with every other request: a flood of logins must be answered "busy" at once rather than
    queue for memory and workers.
    """

    def __init__(self, limit: int = LOGIN_CONCURRENCY) -> None:
        self._slots = threading.BoundedSemaphore(limit)

    @contextmanager
    def slot(self) -> Iterator[bool]:
        """Yields True while holding a slot, False (at once, holding nothing) when all are taken."""
        got = self._slots.acquire(blocking=False)
        try:
            yield got
        finally:
            if got:
                self._slots.release()


def credential_of(user: WebUser) -> str:
    """A fingerprint of the user's password hash, kept in their sessions: a new password ends them."""
    return hashlib.sha256(user.password_hash.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Accounts:
    """The users and walls in force; replaced as a whole when the daemon reloads its config."""

    users: Mapping[str, WebUser]
    walls: tuple[EthicalWall, ...]

    def user_of(self, username: str, credential: str) -> WebUser | None:
        """The user a session belongs to, if it still exists with the password it logged in with."""
        user = self.users.get(username)
        if user is None or not hmac.compare_digest(credential_of(user), credential):
            return None
        return user

    def scope(self, user: WebUser) -> Scope:
        return scope_for(user, self.walls)


def load_accounts(cfg: WebConfig) -> Accounts:
    """The users (``web.users`` and ``web.users_file``) and walls of ``cfg``; ConfigError when they do not load."""
    return Accounts(users=load_users(cfg), walls=tuple(cfg.walls))
