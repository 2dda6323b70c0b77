"""Group commit for access-audit events.

Every search, view and download in the web UI must be in the journal before its
answer leaves the server, and each journal commit costs an fsync.  Under
concurrent load the callers that arrive while one commit is in flight are
gathered into the next transaction: one fsync then serves many requests, and
every caller still returns only after its own record is durable (nothing is
acknowledged before it is logged).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Event = tuple[str, str, dict[str, Any]]  # (actor, type, data)


@dataclass
class _Group:
    events: list[Event] = field(default_factory=list)
    leader_taken: bool = False
    done: bool = False
    error: BaseException | None = None


class GroupCommit:
    """Leader/follower batching: the first caller of a group commits everything queued by then."""

    def __init__(self, commit: Callable[[list[Event]], None]) -> None:
        self._commit = commit
        self._cv = threading.Condition()
        self._writing = threading.Lock()
        self._open = _Group()

    def submit(self, actor: str, type_: str, data: dict[str, Any]) -> None:
        """Journal one event; returns when it is committed (raises what the commit raised)."""
        with self._cv:
            group = self._open
            group.events.append((actor, type_, data))
            leader = not group.leader_taken
            group.leader_taken = True
        if leader:
            with self._writing:  # while the previous group commits, followers join this one
                with self._cv:
                    self._open = _Group()
                try:
                    self._commit(group.events)
                except BaseException as exc:
                    group.error = exc
                with self._cv:
                    group.done = True
                    self._cv.notify_all()
        else:
            with self._cv:
                while not group.done:
                    self._cv.wait()
        if group.error is not None:
            raise group.error
