"""What the two Exchange connectors (EWS and Graph) share about items, batches and folder names.

* :class:`RetryList`: items whose MIME content cannot be fetched.  A folder's
  checkpoint (EWS sync state, Graph delta link) covers every item before it, so
  holding it back until one bad item can be fetched would stop the folder for
  as long as that item exists: mail arriving later would never be archived.
  Instead the item goes into a list of its own, saved as a second checkpoint of
  the folder in the same transaction as the folder's position; every run tries
  the listed items again first, and each failure is reported again.  So the
  folder moves on and the bad item is neither lost nor forgotten.
* :class:`BatchCutter`: a folder page (up to ``batch_size``/``page_size``
  messages of up to 150 MB each) is cut into batches of at most ``max_bytes``,
  so memory holds about one bound's worth per batch instead of a whole page.
  Only the page's last batch carries the checkpoints: an interruption re-fetches
  the page, and the archive's dedup makes that harmless (at least once).  It also
  records the page's item events and failures, worded alike for both connectors.
* :func:`folder_segment`: folder display paths join names with ``/``, so a
  ``/`` (and the escape character ``\\``) inside a name is escaped; ``Smith/Jones``
  the folder is ``Smith\\/Jones``, not ``Smith`` -> ``Jones``.
"""

from __future__ import annotations

import json

from connectors.base import Batch, Checkpoint, RawMessage, SourceEvent, SourceFailure
from connectors.errors import TransientError

#: at most this many bad items are kept per folder; past it the folder stops until they can be fetched.
RETRY_LIMIT = 1000
#: default byte bound of one connector batch.
DEFAULT_MAX_BATCH_BYTES = 64 * 1024 * 1024


class RetryList:
    """The ids of a folder's items that could not be fetched, in order, with a note each (e.g. a received time).

    Saved as a JSON object ``{id: note}`` under ``key``; an unreadable saved
    value counts as empty (the items are then found again only if they change).
    """

    def __init__(self, key: str, saved: str | None) -> None:
        self.key = key
        self.items: dict[str, str] = {}
        self.changed = False
        if saved:
            try:
                value = json.loads(saved)
            except ValueError:
                value = None
            if isinstance(value, dict):
                self.items = {str(k): str(v) for k, v in value.items()}
            elif isinstance(value, list):
                self.items = {str(k): "" for k in value}

    @property
    def full(self) -> bool:
        return len(self.items) >= RETRY_LIMIT

    def add(self, item_id: str, note: str = "") -> bool:
        """Remember the item; True when it is new to the list (the caller then records an event)."""
        if item_id in self.items:
            return False
        self.items[item_id] = note
        self.changed = True
        return True

    def discard(self, item_id: str) -> None:
        if self.items.pop(item_id, None) is not None:
            self.changed = True

    def checkpoint(self) -> Checkpoint | None:
        """The list as a checkpoint when it changed since the last one handed out, else None."""
        if not self.changed:
            return None
        self.changed = False
        return Checkpoint(self.key, json.dumps(self.items, separators=(",", ":")))


class BatchCutter:
    """Collects one page's messages, events and failures; hands out a batch each time ``max_bytes`` is passed.

    ``account`` and ``folder`` are the mailbox and folder path the page comes from; they
    also name the item in the events and failures recorded here.
    """

    def __init__(self, account: str, folder: str, max_bytes: int) -> None:
        self.account = account
        self.folder = folder
        self.max_bytes = max(1, max_bytes)
        self.current = Batch(account=account, folder=folder)
        self._size = 0

    def add(self, message: RawMessage) -> Batch | None:
        """Add a message; returns the finished batch (without checkpoints) once it holds ``max_bytes`` or more."""
        self.current.messages.append(message)
        self._size += len(message.data)
        if self._size < self.max_bytes:
            return None
        full, self.current, self._size = self.current, Batch(account=self.account, folder=self.folder), 0
        return full

    def event(self, kind: str, item_id: str, **detail: str) -> None:
        """Record an event about one item of the folder (``message_vanished``, ``item_skipped`` ...)."""
        self.current.events.append(
            SourceEvent(kind, {"mailbox": self.account, "folder": self.folder, "id": item_id, **detail})
        )

    def unfetchable(
        self, retry: RetryList, where: str, noun: str, item_id: str, reason: str, *, permanent: bool, note: str = ""
    ) -> None:
        """An item whose MIME content could not be fetched: kept in ``retry`` and reported.

        Its first failure is also an ``item_skipped`` event; a retry list that grows to
        :data:`RETRY_LIMIT` stops the folder (a TransientError) until its items can be fetched.
        ``noun`` is what the connector calls an item (``item``, ``message``).
        """
        if retry.add(item_id, note):
            if retry.full:
                raise TransientError(
                    f"{len(retry.items)} {noun}s of this folder cannot be fetched; it waits until they can"
                )
            self.event("item_skipped", item_id, reason=reason)
        self.current.failures.append(
            SourceFailure(
                where,
                f"Mailbox {self.account}, folder {self.folder}, {noun} {item_id}: {reason}; "
                "kept in the folder's retry list and tried again next run",
                permanent=permanent,
            )
        )

    def finish(self, retry: RetryList, *checkpoints: Checkpoint) -> Batch:
        """The page's last batch, carrying ``checkpoints`` and the retry list when it changed."""
        last = self.current
        last.checkpoints.extend(checkpoints)
        if (cp := retry.checkpoint()) is not None:
            last.checkpoints.append(cp)
        return last


def folder_segment(name: str) -> str:
    """One folder name as a segment of a ``/``-joined display path (``\\`` and ``/`` escaped with ``\\``)."""
    return name.replace("\\", "\\\\").replace("/", "\\/")
