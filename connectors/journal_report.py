"""Unwrap Exchange journal reports: archive the original message, keep the real recipients and their roles.

Exchange journaling (on-premises and Exchange Online) delivers every journaled
message to a *journaling mailbox*, wrapped in a *journal report*: a message
carrying the header ``X-MS-Journal-Report`` whose body is ``multipart/mixed``
with

1. a text part, the *envelope*, one field per line, in the format Microsoft
   documents ("Journal report format", an ABNF; Exchange 2007 and later)::

       Sender: alice@example.com
       Subject: Q3 figures
       Message-Id: <1234@example.com>
       To: bob@example.com
       Cc: carol@example.com
       Bcc: dave@example.com
       To: erin@example.com, Expanded: sales@example.com
       Cc: fwd@example.com, Forwarded: frank@example.com

   Each recipient line is ``<p2-type>: <recipient> [, <redirection>: <source>]``:
   the P2 type (``To``, ``Cc``, ``Bcc``, or ``Recipient`` when Exchange could not
   verify how the recipient was addressed) says how the message was addressed;
   ``Expanded: dl`` says the recipient got it as a member of the distribution
   list ``dl``, ``Forwarded: user`` that it was redirected from ``user`` (an
   alternate recipient).  So ``To: erin, Expanded: sales`` is an *open* To
   recipient through a list, not a blind copy;

2. the original message attached as ``message/rfc822``.

The envelope is the only place Bcc recipients (and list members and forwarding
targets) are recorded: the original's own headers never name them.

Who may unwrap.  Anyone can send a message with an ``X-MS-Journal-Report``
header and an attachment of their choosing (Exchange's header firewall does
not strip it), so unwrapping replaces what was received with what the sender
chose.  The connectors therefore unwrap only in mailboxes configured as
journaling mailboxes, and :func:`unwrap_journal_report` accepts only a report
with the documented structure: exactly one envelope part that starts with the
``Sender``/``Subject``/``Message-Id`` lines and names at least one recipient,
exactly one attached original whose ``Message-ID`` is the envelope's, and, when
the caller gives the journal senders, a ``From`` among them.  Anything else is a
:class:`Kept` report: the caller archives the bytes exactly as received and
records why, so nothing is ever lost to a malformed or forged report.

What becomes searchable: the connectors put :func:`envelope_tokens` in
``Origin.envelope_recipients``.  That field is a flat list of strings in the
catalog (its consumers match bare addresses), so the roles travel as marker
tokens between the addresses: ``"to:"``, ``"bcc:"``, ``"to+expanded:"`` ...;
a marker has no ``@`` and so never matches an address.  :func:`envelope_roles`
reads them back; the index (``archiver.documents``) files each recipient under
its role, and only ``Bcc`` recipients (and ``Recipient`` ones the original names
nowhere) under ``bcc``.
"""

from __future__ import annotations

import base64
import binascii
import quopri
import re
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser, BytesParser
from email.utils import getaddresses

JOURNAL_HEADER = "X-MS-Journal-Report"

#: the P2 types of the journal report format, lower-cased; "recipient" = addressing not verified.
P2_TYPES = ("to", "cc", "bcc", "recipient")
#: how the categorizer redirected a recipient.
REDIRECTIONS = ("expanded", "forwarded")

_FIELD_LINE = re.compile(r"^\s*([A-Za-z-]+)\s*:\s*(.*?)\s*$")
_RECIPIENT_LINE = re.compile(
    r"^\s*(To|Cc|Bcc|Recipient)\s*:\s*(?P<addr>[^,\s]+)\s*(?:,\s*(?P<redir>Expanded|Forwarded)\s*:\s*(?P<src>[^,\s]+)\s*)?$",
    re.IGNORECASE,
)
_ADDRESS = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")
_HEADER_END = re.compile(rb"\r?\n\r?\n")


@dataclass(frozen=True, slots=True)
class EnvelopeRecipient:
    """One recipient line of the envelope, e.g. ``To: erin@x, Expanded: sales@x``."""

    #: how the message was addressed: one of :data:`P2_TYPES`.
    p2_type: str
    #: the recipient that received it, lower-cased.
    address: str
    #: "" or one of :data:`REDIRECTIONS`.
    redirection: str = ""
    #: the address redirected to ``address`` (the list, or the forwarding mailbox), lower-cased.
    source: str = ""


@dataclass(frozen=True, slots=True)
class Envelope:
    """The envelope part of a journal report."""

    sender: str
    subject: str
    message_id: str
    recipients: tuple[EnvelopeRecipient, ...]


@dataclass(frozen=True, slots=True)
class Unwrapped:
    """A well-formed journal report: the original's exact bytes and the envelope."""

    original: bytes
    envelope: Envelope

    @property
    def tokens(self) -> tuple[str, ...]:
        """The envelope recipients as ``Origin.envelope_recipients`` carries them (see the module docstring)."""
        return envelope_tokens(self.envelope.recipients)


@dataclass(frozen=True, slots=True)
class Kept:
    """A message with the journal header that is not unwrapped; it is archived as received."""

    reason: str


def is_journal_report(data: bytes) -> bool:
    """True when the top-level header block carries ``X-MS-Journal-Report``."""
    head = _split_head(data)[0]
    try:
        headers = BytesHeaderParser(policy=policy.compat32).parsebytes(head)
    except Exception:  # email never should raise, but bad input must not crash a sync
        return False
    return headers.get(JOURNAL_HEADER) is not None


def unwrap_journal_report(data: bytes, *, senders: Collection[str] = ()) -> Unwrapped | Kept | None:
    """The report's original and envelope; :class:`Kept` (with why) for a report not to unwrap; None for other mail.

    ``senders``: when given, the report's ``From`` must be one of these addresses
    (the organisation's Microsoft Exchange recipient, which sends journal reports).
    """
    if not is_journal_report(data):
        return None
    try:
        return _unwrap(data, {s.strip().lower() for s in senders if s.strip()})
    except Exception as exc:  # a malformed report is archived as is, never lost and never a crash
        return Kept(f"the report could not be read ({exc.__class__.__name__})")


def journal_copy(data: bytes, senders: Collection[str] = ()) -> tuple[bytes, tuple[str, ...], str]:
    """How a message of a journaling mailbox is archived: ``(bytes, envelope tokens, why it was kept or "")``.

    A well-formed report gives its original and envelope; a report kept as
    received gives its own bytes and the reason (the connector records it as an
    event); any other message gives its own bytes.
    """
    result = unwrap_journal_report(data, senders=senders)
    if isinstance(result, Unwrapped):
        return result.original, result.tokens, ""
    if isinstance(result, Kept):
        return data, (), result.reason
    return data, (), ""


def _unwrap(data: bytes, senders: set[str]) -> Unwrapped | Kept:
    head, body = _split_head(data)
    top = BytesHeaderParser(policy=policy.compat32).parsebytes(head)
    if senders:
        sender = _first_address(str(top.get("From", "")))
        if sender not in senders:
            return Kept(f"its sender {sender or '(none)'!r} is not one of the configured journal senders")
    if top.get_content_type() != "multipart/mixed":
        return Kept(f"it is {top.get_content_type()}, not multipart/mixed")
    boundary = top.get_boundary()
    if not boundary:
        return Kept("its multipart body has no boundary")
    originals: list[tuple[bytes, Message]] = []
    envelope_texts: list[str] = []
    for part in _split_multipart(body, boundary.encode("ascii", "replace")):
        part_head, part_body = _split_head(part)
        headers = BytesHeaderParser(policy=policy.compat32).parsebytes(part_head)
        ctype = headers.get_content_type()
        if ctype == "message/rfc822":
            originals.append((part_body, headers))
        elif ctype == "text/plain" and not originals and not envelope_texts:
            envelope_texts.append(_text_of(part))
    if len(originals) != 1:
        return Kept(f"it holds {len(originals)} attached messages instead of one")
    if not envelope_texts:
        return Kept("it has no envelope part before the attached message")
    envelope = parse_envelope(envelope_texts[0])
    if isinstance(envelope, Kept):
        return envelope
    original = _decode(*originals[0])
    if isinstance(original, Kept):
        return original
    if not original.strip():
        return Kept("the attached message is empty")
    original_id = _message_id(original)
    if original_id != envelope.message_id:
        return Kept(
            f"the envelope's Message-Id {envelope.message_id!r} is not the attached message's ({original_id!r})"
        )
    return Unwrapped(original, envelope)


def parse_envelope(text: str) -> Envelope | Kept:
    """The envelope part, checked against the documented format (Sender, Subject, Message-Id, recipients)."""
    lines = [line for line in text.splitlines() if line.strip()]
    fields: list[tuple[str, str]] = []
    for line in lines[:3]:
        m = _FIELD_LINE.match(line)
        fields.append((m.group(1).lower(), m.group(2)) if m else ("", ""))
    if [name for name, _ in fields] != ["sender", "subject", "message-id"]:
        return Kept("its envelope does not start with the Sender, Subject and Message-Id lines")
    recipients: list[EnvelopeRecipient] = []
    for line in lines[3:]:
        m = _RECIPIENT_LINE.match(line)
        if m is None:
            continue  # extended fields such as On-Behalf-Of, and lines of a long subject
        addr, src = m.group("addr").lower(), (m.group("src") or "").lower()
        if not _ADDRESS.match(addr) or (src and not _ADDRESS.match(src)):
            return Kept(f"its envelope line {line.strip()[:200]!r} does not name SMTP addresses")
        recipients.append(EnvelopeRecipient(m.group(1).lower(), addr, (m.group("redir") or "").lower(), src))
    if not recipients:
        return Kept("its envelope names no recipient")
    return Envelope(
        sender=fields[0][1].strip().lower(),
        subject=fields[1][1],
        message_id=_normalise_id(fields[2][1]),
        recipients=tuple(recipients),
    )


def envelope_tokens(recipients: Iterable[EnvelopeRecipient]) -> tuple[str, ...]:
    """Recipients as a flat list: a role marker (``"to:"``, ``"cc+forwarded:"``), the recipient, then the source."""
    out: list[str] = []
    for r in recipients:
        out.append(f"{r.p2_type}+{r.redirection}:" if r.redirection else f"{r.p2_type}:")
        out.append(r.address)
        if r.source:
            out.append(r.source)
    return tuple(out)


def envelope_roles(tokens: Iterable[object]) -> Iterator[tuple[str, str]]:
    """``(role, address)`` pairs from ``Origin.envelope_recipients``; the role is one of :data:`P2_TYPES`.

    The source of a redirection shares its line's role (a list addressed in To,
    a mailbox addressed in Cc whose mail was forwarded).  Addresses before any
    marker (copies archived before roles were kept) have the role "recipient".
    """
    role = "recipient"
    for token in tokens:
        text = str(token).strip().lower()
        if not text:
            continue
        if "@" not in text and text.endswith(":"):
            p2 = text[:-1].partition("+")[0]
            role = p2 if p2 in P2_TYPES else "recipient"
            continue
        yield role, text


def _first_address(value: str) -> str:
    pairs = getaddresses([value])
    return pairs[0][1].strip().lower() if pairs else ""


def _normalise_id(value: str) -> str:
    return value.strip().strip("<>").strip()


def _message_id(original: bytes) -> str:
    headers = BytesHeaderParser(policy=policy.compat32).parsebytes(_split_head(original)[0])
    return _normalise_id(str(headers.get("Message-ID", "") or ""))


def _split_head(data: bytes) -> tuple[bytes, bytes]:
    """Header block and body: split at the first empty line (CRLF or LF)."""
    if data.startswith((b"\r\n", b"\n")):
        return b"", data[2 if data.startswith(b"\r\n") else 1 :]
    m = _HEADER_END.search(data)
    if not m:
        return data, b""
    return data[: m.start()] + b"\n", data[m.end() :]


def _split_multipart(body: bytes, boundary: bytes) -> list[bytes]:
    """The body parts of a multipart body, byte-exact.

    RFC 2046: the line break before a delimiter belongs to the delimiter, not to the part.
    """
    delim = re.compile(rb"(?:^|\r?\n)--" + re.escape(boundary) + rb"(--)?[ \t]*(?:\r?\n|$)")
    parts: list[bytes] = []
    start: int | None = None
    for m in delim.finditer(body):
        if start is not None:
            parts.append(body[start : m.start()])
        if m.group(1):  # close delimiter
            start = None
            break
        start = m.end()
    if start is not None:  # no close delimiter: take the rest, as mail clients do
        parts.append(body[start:])
    return parts


def _decode(payload: bytes, headers: Message) -> bytes | Kept:
    """message/rfc822 must be 7bit/8bit/binary (RFC 2046); some gateways base64 it anyway.

    A payload that does not decode is not "the original": the report is kept as received.
    """
    cte = str(headers.get("Content-Transfer-Encoding", "")).strip().lower()
    if cte == "base64":
        try:
            return base64.b64decode(b"".join(payload.split()), validate=True)
        except (binascii.Error, ValueError):
            return Kept("its attached message is not valid base64")
    if cte == "quoted-printable":
        return quopri.decodestring(payload)
    return payload


def _text_of(part: bytes) -> str:
    msg = BytesParser(policy=policy.default).parsebytes(part)
    if isinstance(msg, EmailMessage):
        try:
            content = msg.get_content()
        except (LookupError, ValueError, AssertionError):
            raw = msg.get_payload(decode=True)
            content = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else ""
        return content if isinstance(content, str) else ""
    return ""
