"""Thread inheritance when a reply is imported before its parent.

The writer files a reply under its parents' matters only if they are already stored.
A mail tree is imported folder by folder, so a reply in ``Inbox`` often arrives before the
message it answers in ``Sent Items``: it would stay unfiled (or miss the matter of one of
its parents) until someone ran ``retag``.  ``LateParents`` re-decides such replies, oldest
first, as ``retag`` would, once a parent is there:

* **In the same import**, it remembers the replies with no matter of their own, notices
  when one of the Message-IDs they refer to arrives, and at the end re-decides exactly
  those replies (and their own replies).
* **In a later import** (the daemon's next sync, another source), every Message-ID stored
  with tags to pass on is looked up among the replies already archived without a matter,
  by their direct parent (In-Reply-To, else the last of References; an index of the
  catalog, ``Catalog.replies_to``).  Those found are decrypted and parsed again (in
  chunks), and re-decided; the replies to any that change follow, round after round (at
  most ``MAX_WAVES``, one per level of a chain).  Left to ``retag``: a reply whose only
  link to the newcomer is an earlier entry of References (indexing every reference of
  every message would cost the catalog far more than the direct parent does), and a reply
  archived with a matter, which a later parent could add to (the catalog does not tell an
  inherited matter from a reply's own, and re-parsing every reply with a matter whose
  parent comes late, common when subjects carry matter numbers, would cost more).

A reply takes the tags of every message it refers to, each as decided in this filing or
else as the catalog has it, every copy of a Message-ID included (``Archive.parent_tags_of``),
so the result is what ``retag`` decides; tests/cli/test_cli.py checks that ``retag`` then
changes nothing.

Memory is bounded: at most ``MAX_WAITING`` replies, and ``MAX_REFS`` Message-IDs they refer
to, are held of each kind per import (some 80 MB at worst); replies beyond that are left to
``retag``, as are the replies of an import killed between its last commit and this filing
(its re-run stores nothing new, so finds nothing to look up).

``retag_chunks`` is ``retag`` itself: every message re-decided oldest first, parents before
replies.  ``Archive.retag`` commits what it yields, and the retag guard
(archiver/policies/retag_guard.py) takes it as a dry run, so both decide alike.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from archiver.model import UNFILED, ParsedMessage, Tags

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
#: rounds of re-deciding replies down a thread (each round: the replies to those just changed;
#: a chain of replies linked only by In-Reply-To takes one round per level).
MAX_WAVES = 500
#: earlier replies decrypted and parsed at a time.
REOPEN_CHUNK = 500


@dataclass(frozen=True, slots=True)
class _Waiting:
    oid: str
    #: the reply's tags from its own rules alone (before inheritance).
    own: Tags
    refs: tuple[str, ...]
    message_id: str
    date: datetime


class LateParents:
    """Replies whose tags may change when a message they refer to arrives (see the module docstring)."""

    def __init__(self, archive: Archive) -> None:
        self._archive = archive
        self._on = archive.cfg.tagging.thread_inheritance
        #: by object id, in the order they were stored.
        self._waiting: dict[str, _Waiting] = {}
        #: Message-IDs the waiting replies refer to.
        self._wanted: set[str] = set()
        #: wanted Message-IDs that were stored after a reply asked for them.
        self._arrived: set[str] = set()
        #: Message-IDs stored since the last look among earlier replies (of messages with tags
        #: to pass on: a parent with neither matter nor client changes no reply).
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
            if _passes_on(tags):
                self._stored_ids.append(parsed.message_id)
                if len(self._stored_ids) >= PROBE_EVERY:
                    self._probe()
        refs = parsed.thread_refs
        if (
            own is None
            or own.matters  # its own matter wins over any parent's
            or not refs
            or len(self._waiting) >= MAX_WAITING
            or len(self._wanted) + len(refs) > MAX_REFS
        ):
            return
        self._waiting[oid] = _Waiting(oid, own, refs, parsed.message_id, parsed.date)
        self._wanted.update(refs)

    def _probe(self) -> None:
        """Look the Message-IDs stored lately up among the archived replies to them."""
        ids, self._stored_ids = self._stored_ids, []
        for oid in self._archive.repo.catalog.replies_to(ids, without_matter=True):
            if len(self._earlier) >= MAX_WAITING:
                return
            if oid not in self._waiting:  # a reply of this import, already remembered
                self._earlier[oid] = None

    def file(self, actor: str, workers: Workers) -> list[str]:
        """Re-decide the replies whose parent arrived; returns the ids whose tags changed.

        A work list: the replies a newcomer answers are decided oldest first; a reply whose
        decision changes puts the replies to it (remembered ones, and archived ones looked up
        by their parent) on the next round, until nothing changes (at most ``MAX_WAVES``
        rounds).  Decisions of earlier rounds stand for the later ones, so a reply dated
        before the reply it answers is still filed.  Call after the import's last commit,
        under the lock, with the import's workers (earlier replies are decrypted and parsed
        again).  The changes are journalled ``tag`` records; the caller re-indexes them.
        """
        if not self._on:
            return []
        self._probe()
        archive = self._archive
        items = dict(self._waiting)
        answered_by: dict[str, list[str]] = {}  # Message-ID -> ids of the known replies to it
        for w in self._waiting.values():
            for ref in w.refs:
                answered_by.setdefault(ref, []).append(w.oid)
        work = {w.oid for w in self._waiting.values() if any(r in self._arrived for r in w.refs)}
        queue = list(self._earlier)
        earlier_refs = 0  # references held for earlier replies (their own MAX_REFS budget)
        skipped: set[str] = set()
        decided: dict[str, dict[str, Tags]] = {}  # Message-ID -> object id -> tags (LocalTags)
        stored_tags: dict[str, tuple[str, tuple[str, ...]]] = {}
        final: dict[str, Tags] = {}
        for _round in range(MAX_WAVES):
            for w in self._reopen(queue, workers):
                if earlier_refs + len(w.refs) > MAX_REFS:
                    skipped.add(w.oid)  # memory bound: left to retag, and not parsed again
                    continue
                earlier_refs += len(w.refs)
                items[w.oid] = w
                work.add(w.oid)
                for ref in w.refs:
                    answered_by.setdefault(ref, []).append(w.oid)
            if not work:
                break
            todo = sorted((items[oid] for oid in work), key=lambda w: w.date)
            stored_tags.update(archive.repo.catalog.tags_of([w.oid for w in todo if w.oid not in stored_tags]))
            work, passed_on = set(), []
            for w in todo:
                tags = archive.tagger.inherit(w.own, archive.parent_tags_of(w.refs, decided))
                earlier = decided.get(w.message_id, {}).get(w.oid)
                before = (earlier.client, earlier.matters) if earlier is not None else stored_tags.get(w.oid)
                if w.message_id:
                    decided.setdefault(w.message_id, {})[w.oid] = tags
                if w.message_id and before != (tags.client, tags.matters):
                    # changed (from what was stored, or from an earlier round): its replies may too
                    work.update(answered_by.get(w.message_id, ()))
                    if _passes_on(tags):
                        passed_on.append(w.message_id)
                if stored_tags.get(w.oid) == (tags.client, tags.matters):
                    final.pop(w.oid, None)
                else:
                    final[w.oid] = tags
            room = MAX_WAITING - (len(items) - len(self._waiting))
            found = archive.repo.catalog.replies_to(passed_on, without_matter=True)
            queue = [oid for oid in dict.fromkeys(found) if oid not in items and oid not in skipped][: max(0, room)]
        changed = list(final.items())
        for start in range(0, len(changed), CHUNK):
            with archive.repo.transaction(actor) as tx:
                for oid, tags in changed[start : start + CHUNK]:
                    tx.set_tags(oid, tags)
        return list(final)

    def _reopen(self, ids: Sequence[str], workers: Workers) -> Iterator[_Waiting]:
        """Earlier replies parsed again (in chunks: only the small records stay), with their
        tags from their own rules alone."""
        archive = self._archive
        for start in range(0, len(ids), REOPEN_CHUNK):
            for oid, parsed, _err in archive.reparse(ids[start : start + REOPEN_CHUNK], workers):
                if parsed is None:  # unreadable now: verify reports it; its tags stay as they are
                    continue
                refs = parsed.thread_refs
                yield _Waiting(oid, archive.tagger.tag(parsed), refs, parsed.message_id, parsed.date)


def _passes_on(tags: Tags) -> bool:
    """Whether a parent with these tags can change a reply's (a matter, or at least a client)."""
    return bool(tags.matters) or tags.client != UNFILED


@dataclass
class RetagChunk:
    """One chunk of a retag: the messages whose tags change (with their parse), and the unreadable ones."""

    #: messages decided so far, this chunk included, of ``total``.
    processed: int
    total: int
    changed: list[tuple[str, ParsedMessage, Tags]] = field(default_factory=list)
    #: "id: error" of each message that could not be decrypted and parsed (its tags stay).
    failed: list[str] = field(default_factory=list)


def retag_chunks(
    archive: Archive, workers: Workers, *, chunk_size: int = 1000, committed: bool
) -> Iterator[RetagChunk]:
    """Re-apply the tagging rules to every live message, oldest first (parents before replies), by chunks.

    Each message sees the tags decided before it for its parents (``Archive.parent_tags``).
    ``committed``: the caller commits each chunk's changes before taking the next, so only the
    current chunk's decisions are kept and memory stays bounded (the order is kept as 8-byte
    catalog row numbers).  Otherwise (a dry run) the changed decisions of every chunk are kept,
    since the catalog still has the old ones; an unchanged message's tags are the catalog's.
    """
    catalog = archive.repo.catalog
    order = array("q", catalog.live_rows_by_date())
    local: dict[str, dict[str, Tags]] = {}
    done = 0
    for start in range(0, len(order), chunk_size):
        chunk = catalog.ids_of_rows(order[start : start + chunk_size].tolist())
        before = catalog.tags_of(chunk)
        if committed:
            local = {}
        done += len(chunk)
        out = RetagChunk(processed=done, total=len(order))
        for oid, parsed, err in archive.reparse(chunk, workers):
            if parsed is None:
                out.failed.append(f"{oid}: {err}")
                continue
            tags = archive.tagger.tag(parsed, parent_tags=archive.parent_tags(parsed, local))
            changed = before.get(oid) != (tags.client, tags.matters)
            if parsed.message_id and (committed or changed):
                local.setdefault(parsed.message_id, {})[oid] = tags
            if changed:
                out.changed.append((oid, parsed, tags))
        yield out
