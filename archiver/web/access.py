"""Roles and ethical walls: the ONE place that decides what a web user may do and see.

Every endpoint and page asks :func:`scope_for` for the user's :class:`Scope` and passes it to
the data layer (``archiver.web.service``), which applies it to searches, counts, facets, message
reads, downloads and exports alike.  Keeping the decision in one function means a new endpoint
cannot forget a wall: it has no other way to reach the archive.

Rules:

* Roles grant permissions (:data:`ROLE_PERMISSIONS`); walls never grant, they only take away.
* A wall applies to a user named in ``wall.users`` or sharing a group with ``wall.groups``;
  the user never sees a message whose client is in ``wall.clients`` or which carries a matter
  in ``wall.matters`` (a message filed under several matters is hidden if any one is walled).
* Viewers see only messages of their ``allowed`` clients (``client/*``) or matters
  (``10234-0001`` or ``client/10234-0001``); a viewer with nothing allowed sees nothing.
* Labels compare case-insensitively (the index stores them lower-cased).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from archiver.config import EthicalWall, WebUser

Permission = Literal["search", "view", "download", "export", "holds", "audit", "admin"]

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "admin": frozenset({"search", "view", "download", "export", "holds", "audit", "admin"}),
    "compliance": frozenset({"search", "view", "download", "export", "holds"}),
    "auditor": frozenset({"search", "view", "download", "export", "audit"}),
    "viewer": frozenset({"search", "view", "download"}),
}


@dataclass(frozen=True, slots=True)
class Scope:
    """What one user may see: index filters plus the same rule for a single message.

    ``only_clients``/``only_matters`` are None when the user is not restricted to a list.
    """

    username: str
    role: str
    permissions: frozenset[str]
    exclude_clients: tuple[str, ...] = ()
    exclude_matters: tuple[str, ...] = ()
    only_clients: tuple[str, ...] | None = None
    only_matters: tuple[str, ...] | None = None

    def can(self, permission: Permission) -> bool:
        return permission in self.permissions

    @property
    def restricted(self) -> bool:
        return self.only_clients is not None or self.only_matters is not None

    def sees(self, client: str, matters: Iterable[str]) -> bool:
        """Whether a message filed under ``client`` and ``matters`` is visible to this user."""
        c = client.strip().lower()
        ms = {m.strip().lower() for m in matters}
        if c in self.exclude_clients or ms & set(self.exclude_matters):
            return False
        if self.restricted:
            return c in (self.only_clients or ()) or bool(ms & set(self.only_matters or ()))
        return True

    def index_filters(self) -> dict[str, Sequence[str] | None]:
        """Keyword arguments for MessageIndex.search/facets."""
        return {
            "exclude_clients": self.exclude_clients,
            "exclude_matters": self.exclude_matters,
            "only_clients": self.only_clients,
            "only_matters": self.only_matters,
        }


def walls_for(user: WebUser, walls: Iterable[EthicalWall]) -> list[EthicalWall]:
    """The walls that apply to ``user`` (by name or by group)."""
    groups = set(user.groups)
    return [w for w in walls if user.username in w.users or groups & set(w.groups)]


def _labels(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted({v.strip().lower() for v in values if v.strip()}))


def parse_allowed(allowed: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``["acme/*", "20871-0001", "globex/20871-0003"]`` -> (clients, matters)."""
    clients: list[str] = []
    matters: list[str] = []
    for entry in allowed:
        head, sep, tail = entry.strip().partition("/")
        if sep and tail.strip() in ("*", ""):
            clients.append(head)
        elif sep:
            matters.append(tail)
        else:
            matters.append(head)
    return _labels(clients), _labels(matters)


def scope_for(user: WebUser, walls: Iterable[EthicalWall]) -> Scope:
    """The user's permissions and visibility filters (see the module docstring)."""
    applying = walls_for(user, walls)
    only_clients: tuple[str, ...] | None = None
    only_matters: tuple[str, ...] | None = None
    if user.role == "viewer":
        only_clients, only_matters = parse_allowed(user.allowed)
    return Scope(
        username=user.username,
        role=user.role,
        permissions=ROLE_PERMISSIONS.get(user.role, frozenset()),
        exclude_clients=_labels(c for w in applying for c in w.clients),
        exclude_matters=_labels(m for w in applying for m in w.matters),
        only_clients=only_clients,
        only_matters=only_matters,
    )
