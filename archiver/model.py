"""Frozen records shared by every layer.

Keyword-only, typed fields (Mailpile's positional record fields were a lesson):
a record is built once and never mutated.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final


def _rebuild(cls: type[Compact], values: tuple[Any, ...]) -> Any:
    """Unpickle a :class:`Compact` record: its fields by name, in field order."""
    return cls(**dict(zip(_field_names(cls), values, strict=True)))


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type[Compact]) -> tuple[str, ...]:
    """The record's fields (inherited ones included), looked up once per class."""
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]
    return names


class Compact:
    """Base of the frozen records that cross between worker processes.

    A frozen, slotted dataclass pickles through ``dataclasses``' generic ``__setstate__``,
    which looks its fields up again for every object; the parser workers send back a
    ParsedMessage with dozens of Address records per message, and the single writer that
    unpickles them is the ingest bottleneck.  Pickling the values as a plain tuple halves
    the unpickling cost (and shortens the pickle).
    """

    __slots__: tuple[str, ...] = ()

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), tuple(getattr(self, name) for name in _field_names(type(self)))))


@dataclass(frozen=True, slots=True, kw_only=True)
class Address(Compact):
    """One mailbox: ``addr`` is lower-cased ``local@domain``; ``name`` the display name."""

    addr: str
    name: str = ""

    @property
    def domain(self) -> str:
        return self.addr.rpartition("@")[2]

    @property
    def local(self) -> str:
        return self.addr.rpartition("@")[0] if "@" in self.addr else self.addr

    def __str__(self) -> str:
        return f"{self.name} <{self.addr}>" if self.name else self.addr


@dataclass(frozen=True, slots=True, kw_only=True)
class Attachment(Compact):
    """A non-body MIME part.  ``text`` is the extracted text when it could be read."""

    filename: str
    content_type: str
    size: int
    sha256: str
    text: str = ""
    #: why the text could not be extracted, if it could not ("" when fine or not text-like).
    error: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ParsedMessage(Compact):
    """What the normalizer could read of a message.

    Parsing is best-effort: ``parse_errors`` lists what went wrong, and every field
    has a usable default, so a message that cannot be parsed at all still yields a
    ``ParsedMessage`` (and its raw bytes are stored regardless).
    """

    message_id: str = ""
    in_reply_to: str = ""
    references: tuple[str, ...] = ()
    from_: tuple[Address, ...] = ()
    to: tuple[Address, ...] = ()
    cc: tuple[Address, ...] = ()
    bcc: tuple[Address, ...] = ()
    subject: str = ""
    #: sent date in UTC; falls back to the received time (flagged) when bad or missing.
    date: datetime
    date_is_fallback: bool = False
    body_text: str = ""
    body_html: str = ""
    attachments: tuple[Attachment, ...] = ()
    #: selected headers as (name, decoded value) in message order, for `show`.
    headers: tuple[tuple[str, str], ...] = ()
    parse_errors: tuple[str, ...] = ()
    #: an explicit matter/client header value, if present (X-Archive-Matter etc.).
    explicit_matter: str = ""

    @property
    def thread_refs(self) -> tuple[str, ...]:
        """The Message-IDs this message answers (In-Reply-To, then References): thread inheritance."""
        return tuple(r for r in (self.in_reply_to, *self.references) if r)


UNFILED = "unfiled"


@dataclass(frozen=True, slots=True, kw_only=True)
class Tags(Compact):
    """The client and matters a message is filed under; ``unfiled`` when no rule matched."""

    client: str = UNFILED
    matters: tuple[str, ...] = ()
    #: which rules produced this (for explaining a tag), e.g. ("domain:acme.com", "thread").
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ProvenanceRow:
    """One copy of a message as seen in a source (the archive's view of connectors.base.Origin)."""

    source: str
    account: str = ""
    folder: str = ""
    uid: str = ""
    uidvalidity: str = ""
    internaldate: datetime | None = None
    flags: tuple[str, ...] = ()
    location: str = ""
    envelope_recipients: tuple[str, ...] = ()
    fetched_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class IndexDoc:
    """Everything the full-text index holds about one message (derived data; it stores only the id and the body's beginning)."""

    id: str
    message_id: str
    from_: tuple[Address, ...]
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    bcc: tuple[Address, ...]
    subject: str
    body: str
    attachment_names: tuple[str, ...]
    attachment_text: str
    date: datetime
    client: str
    matters: tuple[str, ...]
    sources: tuple[str, ...]
    folders: tuple[str, ...]
    size: int
    has_attachments: bool


#: how many recipients a search hit shows (every one is searchable).
HIT_RECIPIENTS: Final = 20
#: the date of a hit whose message has no metadata (or no description at all).
NO_DATE: Final = datetime.fromtimestamp(0, UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class HitDisplay:
    """What a search hit shows of a message besides its snippet.

    The index stores only ids and body beginnings, so these come from the catalog (``Catalog.hit_rows``);
    the defaults describe a message the catalog knows nothing about.
    """

    message_id: str = ""
    #: sent date, UTC.
    date: datetime = NO_DATE
    #: the first From mailbox as "Name <addr>" (or the bare address).
    from_: str = ""
    #: the first HIT_RECIPIENTS To mailboxes, displayed like ``from_``.
    to: tuple[str, ...] = ()
    subject: str = ""
    client: str = ""
    matters: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchHit:
    """One search result."""

    id: str
    message_id: str
    date: datetime
    from_: str
    to: tuple[str, ...]
    subject: str
    client: str
    matters: tuple[str, ...]
    snippet: str = ""
    #: (start, end) character ranges of ``snippet`` that matched the query, for highlighting
    #: (archiver.index.store.highlight_html renders them as escaped HTML with <mark>).
    highlights: tuple[tuple[int, int], ...] = ()
    score: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchResult:
    total: int
    hits: tuple[SearchHit, ...] = field(default_factory=tuple)
    #: stored messages the index has not reached yet (an interrupted import): the results
    #: may lack them until the next write or `reindex`, and the caller says so.
    unindexed: int = 0
