"""Thread inheritance when a reply is imported before its parent.

The writer files a reply under its parent's matter only if the parent is already stored.
A mail tree is imported folder by folder, so a reply in ``Inbox`` often arrives before the
message it answers in ``Sent Items``: it would stay unfiled until someone ran ``retag``.
``LateParents`` remembers, during one import, the replies that found no parent with a
matter, notices when one of the Message-IDs they wait for arrives, and at the end re-decides
exactly those replies (and their own replies), oldest first, as ``retag`` would.

Memory is bounded: at most ``MAX_WAITING`` replies and ``MAX_REFS`` distinct Message-IDs they
refer to are remembered per import (some 40 MB at worst); replies beyond that are left to
``retag``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from archiver.model import ParsedMessage, Tags

if TYPE_CHECKING:
    from archiver.archive import Archive

#: how many waiting replies one import remembers ...
MAX_WAITING = 50_000
#: ... and how many distinct Message-IDs they may refer to in all (References can be long).
MAX_REFS = 200_000
#: tag changes per transaction at the end of an import.
CHUNK = 1000


@dataclass(frozen=True, slots=True)
class _Waiting:
    oid: str
    #: the reply's tags from its own rules alone (before inheritance).
    own: Tags
    refs: tuple[str, ...]
    message_id: str
    date: datetime


class LateParents:
    """Replies of one import still waiting for a parent with a matter (see the module docstring)."""

    def __init__(self, archive: Archive) -> None:
        self._archive = archive
        self._waiting: list[_Waiting] = []
        #: Message-IDs the waiting replies refer to.
        self._wanted: set[str] = set()
        #: wanted Message-IDs that were stored after a reply asked for them.
        self._arrived: set[str] = set()

    def stored(self, oid: str, parsed: ParsedMessage, own: Tags | None, tags: Tags) -> None:
        """Called for every new message with its own tags and the tags it was filed under."""
        if parsed.message_id in self._wanted:
            self._arrived.add(parsed.message_id)
        refs = tuple(r for r in (parsed.in_reply_to, *parsed.references) if r)
        if (
            own is None
            or tags.matters
            or not refs
            or not self._archive.cfg.tagging.thread_inheritance
            or len(self._waiting) >= MAX_WAITING
            or len(self._wanted) + len(refs) > MAX_REFS
        ):
            return
        self._waiting.append(_Waiting(oid, own, refs, parsed.message_id, parsed.date))
        self._wanted.update(refs)

    def file(self, actor: str) -> list[str]:
        """Re-decide the replies whose parent arrived later; returns the ids whose tags changed.

        Call after the import's last commit, under the lock.  The changes are journalled
        ``tag`` records; the caller re-indexes the changed messages.
        """
        if not self._arrived:
            return []
        archive = self._archive
        decided: dict[str, Tags] = {}
        changed: list[tuple[str, Tags]] = []
        for w in sorted(self._waiting, key=lambda w: w.date):
            if not any(r in self._arrived for r in w.refs):
                continue
            tags = archive.tagger.inherit(w.own, archive.parent_tags_of(w.refs, decided))
            if w.message_id:
                decided[w.message_id] = tags
            old = archive.tags_of(w.oid)
            if (old.client, old.matters) != (tags.client, tags.matters):
                changed.append((w.oid, tags))
                if w.message_id:
                    self._arrived.add(w.message_id)  # its own replies may inherit now
        for start in range(0, len(changed), CHUNK):
            with archive.repo.transaction(actor) as tx:
                for oid, tags in changed[start : start + CHUNK]:
                    tx.set_tags(oid, tags)
        return [oid for oid, _tags in changed]
