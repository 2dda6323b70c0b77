"""The contract between connectors and the archive.

A connector turns a mail source into a stream of :class:`Batch` objects.  Each
batch holds raw messages exactly as received, the provenance of every copy, and
optionally checkpoints: opaque ``(key, value)`` pair the pipeline saves in
the catalog *only after* the batch is committed to the store.  On the next run
the connector receives the saved checkpoints and resumes from them.  Because the
store deduplicates by content, re-fetching a batch after a crash is harmless:
at-least-once delivery plus dedup gives exactly-once effect.
"""

from __future__ import annotations

import functools
import re
import traceback
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import PurePath
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Origin:
    """Where one copy of a message came from (one provenance row).

    ``location`` is a human-readable locator (a file path, ``mbox#offset``,
    an IMAP ``folder;UID=n``).  ``envelope_recipients`` carries the real
    recipients from an Exchange journal report (Bcc included).
    """

    source: str
    account: str = ""
    folder: str = ""
    uid: str = ""
    uidvalidity: str = ""
    internaldate: datetime | None = None
    flags: tuple[str, ...] = ()
    location: str = ""
    envelope_recipients: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RawMessage:
    """The exact bytes of one message and where they came from."""

    data: bytes
    origin: Origin


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """An opaque resume token, saved by the pipeline after the batch commits."""

    key: str
    value: str


@dataclass(frozen=True, slots=True)
class SourceFailure:
    """A part of the source that could not be read; the rest continues."""

    location: str
    reason: str
    permanent: bool = True
    #: a whole account, mailbox or source could not be read (unreachable, login refused),
    #: not one message or folder: `sync` then exits 11, the source error code.
    whole: bool = False


@dataclass(frozen=True, slots=True)
class SourceEvent:
    """Something the journal should record (e.g. a UIDVALIDITY change)."""

    kind: str
    detail: Mapping[str, str]


@dataclass(slots=True)
class Batch:
    """A unit of work the pipeline commits atomically before saving ``checkpoints``."""

    messages: list[RawMessage] = field(default_factory=list)
    #: saved, in order, only after every message of the batch is committed.
    checkpoints: list[Checkpoint] = field(default_factory=list)
    failures: list[SourceFailure] = field(default_factory=list)
    events: list[SourceEvent] = field(default_factory=list)
    #: account/folder the batch belongs to, for per-folder summaries.
    account: str = ""
    folder: str = ""


def folder_selected(path: str, include: Iterable[str], exclude: Iterable[str]) -> bool:
    """Folder filter of every connector: included by a pattern and not excluded by one (exclude wins).

    Patterns know only ``*`` (any run of characters, ``/`` included) and ``?`` (one character);
    everything else, ``[`` and ``]`` included, matches itself.  fnmatch's ``[...]`` classes
    made ``[Gmail]/Spam`` a pattern for ``G/Spam``, ``m/Spam`` ..., so Gmail's folders could be
    neither excluded nor included by name, and an include that matched nothing archived
    nothing without a word.  ``INBOX`` (the first level of a path) matches in any case,
    as RFC 3501 has it for IMAP; any other part of a name is case-sensitive.
    """
    return any(folder_matches(path, p) for p in include) and not any(folder_matches(path, p) for p in exclude)


def folder_matches(path: str, pattern: str) -> bool:
    """One folder pattern against one folder path (see :func:`folder_selected`)."""
    return _pattern(_fold_inbox(pattern)).fullmatch(_fold_inbox(path)) is not None


def unmatched_patterns(paths: Iterable[str], patterns: Iterable[str]) -> list[str]:
    """The patterns that match none of ``paths``: connectors warn about these.

    An include pattern that matches no folder is almost always a typo or a folder that
    was renamed, and it silently archives nothing from that mailbox.
    """
    names = list(paths)
    return [p for p in patterns if not any(folder_matches(n, p) for n in names)]


def _fold_inbox(name: str) -> str:
    """``Inbox``, ``inbox/Sub``, ``inbox.Sub`` -> ``INBOX...``: only INBOX is case-insensitive."""
    if name[:5].upper() == "INBOX" and (len(name) == 5 or name[5] in "/."):
        return "INBOX" + name[5:]
    return name


@functools.lru_cache(maxsize=1024)
def _pattern(pattern: str) -> re.Pattern[str]:
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.DOTALL)


def where_raised(exc: BaseException) -> str:
    """``file.py:123 in function`` of the innermost frame: enough to find a bug, no message text."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "unknown place"
    last = frames[-1]
    return f"{PurePath(last.filename).name}:{last.lineno} in {last.name}"


@runtime_checkable
class Connector(Protocol):
    """A mail source.  ``checkpoints`` maps checkpoint keys to saved values."""

    name: str

    def batches(self, checkpoints: Mapping[str, str]) -> Iterator[Batch]:
        """Yield batches; resume from ``checkpoints`` where they apply."""
        ...
