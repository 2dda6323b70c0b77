"""Web users, argon2 password checks and login rate limiting.

Users come from ``web.users`` in the config and from ``web.users_file`` (a YAML file with a
``users:`` list in the same form, so password hashes can live outside the main config).
Unknown users are checked against a dummy hash so that response time does not reveal which
user names exist.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import yaml
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from pydantic import ValidationError

from archiver.config import WebConfig, WebUser
from archiver.errors import ConfigError

#: how long a (user, address) pair stays locked out after too many failures.
LOCKOUT_SECONDS = 15 * 60
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
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
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
    """Counts failed logins per (user name, client address); locks the pair out for 15 minutes.

    Kept in memory: a restart forgets the counts, which an attacker cannot trigger remotely.
    """

    def __init__(
        self, max_failures: int, *, window_s: float = LOCKOUT_SECONDS, now: Callable[[], float] = time.monotonic
    ):
        self.max_failures = max_failures
        self.window_s = window_s
        self._now = now
        self._failures: dict[tuple[str, str], list[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, str]) -> list[float]:
        cutoff = self._now() - self.window_s
        recent = [t for t in self._failures.get(key, []) if t > cutoff]
        if recent:
            self._failures[key] = recent
        else:
            self._failures.pop(key, None)
        return recent

    def locked(self, username: str, address: str) -> bool:
        with self._lock:
            return len(self._recent((username.lower(), address))) >= self.max_failures

    def failed(self, username: str, address: str) -> None:
        with self._lock:
            key = (username.lower(), address)
            self._failures[key] = [*self._recent(key), self._now()]

    def succeeded(self, username: str, address: str) -> None:
        with self._lock:
            self._failures.pop((username.lower(), address), None)
