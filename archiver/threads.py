"""Thread inheritance when a reply is imported before its parent.

The writer files a reply under its parent's matter only if the parent is already stored.
A mail tree is imported folder by folder, so a reply in ``Inbox`` often arrives before the
message it answers in ``Sent Items``: it would stay unfiled until someone ran ``retag``.
``LateParents`` re-decides such replies, oldest first, as ``retag`` would, once the parent
is there:

* **In the same import**, it remembers the replies that found no parent with a matter,
  notices when one of the Message-IDs they refer to arrives, and at the end re-decides
  exactly those replies (and their own replies).
* **In a later import** (the daemon's next sync, another source), every Message-ID stored is
  looked up among the replies already archived without a matter, by their direct parent
  (In-Reply-To, else the last of References; an index of the catalog,
  ``Catalog.replies_without_matter``).  Those found are decrypted and parsed again, tagged
  with their parent's tags, and their own replies looked up in turn (at most ``MAX_WAVES``
  generations).  A reply whose only link to the newcomer is an earlier entry of References
  is left to ``retag``.

Memory is bounded: at most ``MAX_WAITING`` replies of each kind and ``MAX_REFS`` distinct
Message-IDs they refer to are remembered per import (some 40 MB at worst); replies beyond
that are left to ``retag``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from archiver.model import ParsedMessage, Tags

if TYPE_CHECKING:
    from archiver.archive import Archive
    from archiver.workers import Workers

#: how many waiting replies one import remembers ...
MAX_WAITING = 50_000
#: ... and how many distinct Message-IDs they may refer to in all (References can be long).
MAX_REFS = 200_000
#: tag changes per transaction at the end of an import.
CHUNK = 1000
#: stored Message-IDs looked up among earlier replies at a time.
PROBE_EVERY = 500
#: generations of earlier replies followed down a thread when their parent arrives.
MAX_WAVES = 20


@dataclass(frozen=True, slots=True)
class _Waiting:
    oid: str
    #: the reply's tags from its own rules alone (before inheritance).
    own: Tags
    refs: tuple[str, ...]
    message_id: str
    date: datetime


class LateParents:
    """Replies still waiting for a parent with a matter (see the module docstring)."""

    def __init__(self, archive: Archive) -> None:
        self._archive = archive
        self._on = archive.cfg.tagging.thread_inheritance
        self._waiting: list[_Waiting] = []
        #: Message-IDs the waiting replies refer to.
        self._wanted: set[str] = set()
        #: wanted Message-IDs that were stored after a reply asked for them.
        self._arrived: set[str] = set()
        #: Message-IDs stored since the last look among earlier replies.
        self._stored_ids: list[str] = []
        #: replies of earlier imports whose parent arrived in this one (ids, in order found).
        self._earlier: dict[str, None] = {}

    def stored(self, oid: str, parsed: ParsedMessage, own: Tags | None, tags: Tags) -> None:
        """Called for every new message with its own tags and the tags it was filed under."""
        if not self._on:
            return
        if parsed.message_id:
            if parsed.message_id in self._wanted:
                self._arrived.add(parsed.message_id)
            self._stored_ids.append(parsed.message_id)
            if len(self._stored_ids) >= PROBE_EVERY:
                self._probe()
        refs = tuple(r for r in (parsed.in_reply_to, *parsed.references) if r)
        if (
            own is None
            or tags.matters
            or not refs
            or len(self._waiting) >= MAX_WAITING
            or len(self._wanted) + len(refs) > MAX_REFS
        ):
            return
        self._waiting.append(_Waiting(oid, own, refs, parsed.message_id, parsed.date))
        self._wanted.update(refs)

    def _probe(self) -> None:
        """Look the Message-IDs stored lately up among the archived replies without a matter."""
        ids, self._stored_ids = self._stored_ids, []
        for oid in self._archive.repo.catalog.replies_without_matter(ids):
            if len(self._earlier) >= MAX_WAITING:
                return
            self._earlier[oid] = None

    def file(self, actor: str, workers: Workers) -> list[str]:
        """Re-decide the replies whose parent arrived; returns the ids whose tags changed.

        Call after the import's last commit, under the lock, with the import's workers
        (earlier replies are decrypted and parsed again).  The changes are journalled
        ``tag`` records; the caller re-indexes the changed messages.
        """
        if not self._on:
            return []
        self._probe()
        archive = self._archive
        in_run = {w.oid for w in self._waiting}
        earlier: dict[str, _Waiting] = {}
        queue = [oid for oid in self._earlier if oid not in in_run]
        if not self._arrived and not queue:
            return []
        changed: dict[str, Tags] = {}
        for _wave in range(MAX_WAVES):
            earlier.update(self._reopen(queue, workers))
            decided: dict[str, Tags] = {}
            refiled: list[str] = []
            for w in sorted([*self._waiting, *earlier.values()], key=lambda w: w.date):
                if w.oid not in earlier and not any(r in self._arrived for r in w.refs):
                    continue
                tags = archive.tagger.inherit(w.own, archive.parent_tags_of(w.refs, decided))
                if w.message_id:
                    decided[w.message_id] = tags
                old = archive.tags_of(w.oid)
                if (old.client, old.matters) == (tags.client, tags.matters):
                    changed.pop(w.oid, None)
                    continue
                changed[w.oid] = tags
                if w.message_id and w.message_id not in self._arrived:
                    self._arrived.add(w.message_id)  # its own replies may inherit now
                    refiled.append(w.message_id)
            found = archive.repo.catalog.replies_without_matter(refiled)
            queue = [oid for oid in dict.fromkeys(found) if oid not in in_run and oid not in earlier]
            queue = queue[: max(0, MAX_WAITING - len(earlier))]
            if not queue:
                break
        items = list(changed.items())
        for start in range(0, len(items), CHUNK):
            with archive.repo.transaction(actor) as tx:
                for oid, tags in items[start : start + CHUNK]:
                    tx.set_tags(oid, tags)
        return list(changed)

    def _reopen(self, ids: Sequence[str], workers: Workers) -> dict[str, _Waiting]:
        """Earlier replies parsed again, with their tags from their own rules alone."""
        out: dict[str, _Waiting] = {}
        archive = self._archive
        for oid, parsed, _err in archive.reparse(ids, workers):
            if parsed is None:  # unreadable now: verify reports it; its tags stay as they are
                continue
            refs = tuple(r for r in (parsed.in_reply_to, *parsed.references) if r)
            out[oid] = _Waiting(oid, archive.tagger.tag(parsed), refs, parsed.message_id, parsed.date)
        return out
