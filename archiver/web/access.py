"""Roles and ethical walls: the ONE place that decides what a web user may do and see.

Every endpoint and page asks :func:`scope_for` for the user's :class:`Scope` and passes it to
the data layer (``archiver.web.service``), which applies it to searches, counts, facets, message
reads, downloads and exports alike.  Keeping the decision in one function means a new endpoint
cannot forget a wall: it has no other way to reach the archive.

Rules:

* Roles grant permissions (:data:`ROLE_PERMISSIONS`); walls never grant, they only take away.
* A wall applies to a user named in ``wall.users`` or sharing a group with ``wall.groups``;
  the user never sees a message whose client is walled or which carries a walled matter
  (a message filed under several matters is hidden if any one is walled).
* Wall entries and viewers' ``allowed`` entries share one form (:func:`parse_labels`):
  ``client/*`` is a client, ``client/matter`` is that client's matter only, and a bare
  entry is a client in ``wall.clients`` and a matter under any client in ``wall.matters``
  and in ``allowed`` (matter numbers are not unique across clients: a bare matter means
  every client's matter of that number, as it always has).
* Viewers see only messages of their ``allowed`` clients or matters; a viewer with nothing
  allowed sees nothing.
* Labels compare case-insensitively (the index stores them lower-cased).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from archiver.config import EthicalWall, WebUser
from archiver.index.restriction import NO_LABELS, Labels, Pair, Restriction

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

    ``only`` is None when the user is not restricted to a list (every role but viewer).
    """

    username: str
    role: str
    permissions: frozenset[str]
    exclude: Labels = NO_LABELS
    only: Labels | None = None

    def can(self, permission: Permission) -> bool:
        return permission in self.permissions

    @property
    def restricted(self) -> bool:
        return self.only is not None

    @property
    def whole_archive(self) -> bool:
        """No wall and no allowed list: everything this user is shown is about visible mail.

        Overviews that count or describe the whole archive (the access log, hold lists, live
        counts, relevance scores) are shown unchanged only to such users.
        """
        return self.only is None and self.exclude.empty

    @property
    def exclude_clients(self) -> tuple[str, ...]:
        return self.exclude.clients

    @property
    def exclude_matters(self) -> tuple[str, ...]:
        return self.exclude.matters

    def sees(self, client: str, matters: Iterable[str]) -> bool:
        """Whether a message filed under ``client`` and ``matters`` is visible to this user."""
        c = client.strip().lower()
        ms = {m.strip().lower() for m in matters}
        if self.exclude.matches(c, ms):
            return False
        return self.only is None or self.only.matches(c, ms)

    @property
    def restriction(self) -> Restriction:
        """This user's filter for MessageIndex.search/facets/matching_ids/count_matching."""
        return Restriction(self.exclude, self.only)


def walls_for(user: WebUser, walls: Iterable[EthicalWall]) -> list[EthicalWall]:
    """The walls that apply to ``user`` (by name or by group)."""
    groups = set(user.groups)
    return [w for w in walls if user.username in w.users or groups & set(w.groups)]


def _label(value: str) -> str:
    return value.strip().lower()


def parse_labels(entries: Iterable[str], bare: Literal["client", "matter"]) -> Labels:
    """``["acme/*", "globex/20871-0003", "20871-0001"]`` -> clients, matters and pairs.

    ``bare`` says what an entry without ``/`` names.  The forms are checked when the config
    loads (``archiver.config.check_label_entry``); an empty entry is skipped.
    """
    clients: set[str] = set()
    matters: set[str] = set()
    pairs: set[Pair] = set()
    for entry in entries:
        head, sep, tail = entry.strip().partition("/")
        if not head.strip():
            continue
        if sep and tail.strip() in ("*", ""):
            clients.add(_label(head))
        elif sep:
            pairs.add((_label(head), _label(tail)))
        elif bare == "client":
            clients.add(_label(head))
        else:
            matters.add(_label(head))
    return Labels(tuple(sorted(clients)), tuple(sorted(matters)), tuple(sorted(pairs)))


def _union(parts: Iterable[Labels]) -> Labels:
    clients: set[str] = set()
    matters: set[str] = set()
    pairs: set[Pair] = set()
    for part in parts:
        clients.update(part.clients)
        matters.update(part.matters)
        pairs.update(part.pairs)
    return Labels(tuple(sorted(clients)), tuple(sorted(matters)), tuple(sorted(pairs)))


def parse_allowed(allowed: Sequence[str]) -> Labels:
    """A viewer's ``allowed`` list (a bare entry is a matter under any client)."""
    return parse_labels(allowed, "matter")


def wall_labels(wall: EthicalWall) -> Labels:
    """What one wall bars (see :func:`parse_labels` for the forms)."""
    return _union((parse_labels(wall.clients, "client"), parse_labels(wall.matters, "matter")))


def scope_for(user: WebUser, walls: Iterable[EthicalWall]) -> Scope:
    """The user's permissions and visibility filters (see the module docstring)."""
    applying = walls_for(user, walls)
    return Scope(
        username=user.username,
        role=user.role,
        permissions=ROLE_PERMISSIONS.get(user.role, frozenset()),
        exclude=_union(wall_labels(w) for w in applying),
        only=parse_allowed(user.allowed) if user.role == "viewer" else None,
    )


def wall_warnings(users: Mapping[str, WebUser], walls: Iterable[EthicalWall]) -> list[str]:
    """Sentences about walls naming users or groups that no configured user has.

    A typo in a wall's user or group name makes the wall apply to nobody, silently; this is
    logged at start-up and on every reload so that the administrator sees it.
    """
    groups = {g for u in users.values() for g in u.groups}
    out: list[str] = []
    for wall in walls:
        for name in wall.users:
            if name not in users:
                out.append(f"web.walls {wall.name!r}: no web user is named {name!r}, so the wall does not apply to it.")
        for group in wall.groups:
            if group not in groups:
                out.append(f"web.walls {wall.name!r}: no web user is in the group {group!r}.")
        if not wall.users and not wall.groups:
            out.append(f"web.walls {wall.name!r} names no users and no groups, so it applies to nobody.")
        if not wall.clients and not wall.matters:
            out.append(f"web.walls {wall.name!r} names no clients and no matters, so it bars nothing.")
    return out
