"""Raw RFC 5322 bytes -> ``ParsedMessage``, best effort, never raising.

Why this split between the standard library and mail-parser
-----------------------------------------------------------
The ingest target is >= 1000 messages/s end-to-end on two cores, so parsing must cost well
under a millisecond for a typical message.  Measured on 3,000 Enron + SpamAssassin messages
(single process): ``email.parser.BytesParser(policy=compat32)`` ~22,000 msgs/s,
``policy.default`` ~4,900 msgs/s, and ``mailparser.parse_from_bytes`` ~2,400 msgs/s before any
of our own work.  mail-parser also decodes some parts with ``errors="ignore"``, silently
dropping text.  So:

* the MIME structure and payloads come from the stdlib ``compat32`` parser, and every text part
  is decoded here with its declared charset and a fallback chain (``text.decode_bytes``), so no
  text is dropped silently;
* mail-parser does what it does better than the stdlib: its RFC 5322 date interpreter
  (``mailparser.dates.parse_mail_date``, strict, with reasons; the lenient stdlib parser only
  rescues what it refuses) and its forensic address-list scanner
  (``mailparser.utils.get_addresses``: recovers mailboxes from broken lists that the stdlib
  turns into fragments), with ``email.utils.getaddresses`` for the entries it refuses (see
  ``_with_dropped``) or when it finds nothing;
* if the stdlib parse itself fails, the whole message goes through ``mailparser`` as a second
  opinion, and if that fails too, the result is the headers we could read plus a lossy decode of
  the bytes.

Result (single process, shared dev machine, so noisy): Enron ~4,600-7,500 msgs/s, SpamAssassin
~2,100-3,700 msgs/s (HTML-heavy).  Address lists are cached (they repeat), and plain lists of
bare addresses skip the full scan.

Every problem is a short string in ``parse_errors``; the raw bytes are stored regardless.
"""

from __future__ import annotations

import binascii
import email.utils
import hashlib
import re
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from email.errors import HeaderParseError
from email.header import Header, decode_header
from email.message import Message
from email.parser import BytesHeaderParser, BytesParser
from email.policy import Compat32, compat32
from functools import lru_cache
from typing import TypedDict

from mailparser.dates import parse_mail_date
from mailparser.utils import get_addresses

from archiver.model import Address, Attachment, ParsedMessage
from archiver.normalize import tnef
from archiver.normalize.attachments import extract_text
from archiver.normalize.text import clean_text, decode_bytes, html_to_text, normalize_charset

__all__ = ["decode_header_value", "parse_message"]

#: headers kept in ParsedMessage.headers (plus the configured matter header).
_SHOWN_HEADERS = (
    "from", "to", "cc", "bcc", "subject", "date", "message-id", "in-reply-to", "references",
    "reply-to", "sender",
)  # fmt: skip
#: a header value longer than this is cut before decoding (a 10 MB To: line is an attack or a bug).
_MAX_HEADER_CHARS = 256 * 1024
#: cut for values kept in ParsedMessage.headers (for display).
_MAX_SHOWN_HEADER_CHARS = 16 * 1024
#: the header block of an oversized message is looked for in this many leading bytes.
_MAX_HEADER_BLOCK = 1024 * 1024
#: MIME parts read per message; the rest are flagged.
_MAX_PARTS = 2000
#: attached messages inside attached messages read for text.
_MAX_EMBED_DEPTH = 8
#: the longest body taken from inside a winmail.dat (characters).
_MAX_TNEF_BODY_CHARS = 10_000_000
_MAX_REFERENCES = 500
#: parts looked at for the charsets a message declares (see ``_DeclaredCharsets``).
_MAX_CHARSET_PARTS = 50
#: codecs the raw-header fallback covers already (see ``_header_codec``).
_HEADER_FALLBACK_CODECS = frozenset({"ascii", "cp1252", "iso8859-1", "latin-1"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MSGID = re.compile(r"<[^<>\s]*>")
_FOLD = re.compile(r"\r?\n(?=[ \t])|\r?\n")
_ATTACHMENT_TEXT_TYPES = frozenset({"text/plain", "text/csv", "text/html"})


# --- headers ----------------------------------------------------------------------------------


def _unfold(value: str) -> str:
    return _FOLD.sub("", value) if "\n" in value else value


class _DeclaredCharsets:
    """The charsets a message declares for its text, for raw 8-bit bytes in its headers.

    Headers have no charset of their own; a client that writes raw bytes there (instead of
    RFC 2047 encoded words) writes them in the charset it uses for the body, so that is the
    best guess after UTF-8.  Looked up only when a header needs it (rare), then kept.
    """

    __slots__ = ("_found", "_msg")

    def __init__(self, msg: Message) -> None:
        self._msg = msg
        self._found: tuple[str, ...] | None = None

    def codecs(self) -> tuple[str, ...]:
        if self._found is None:
            found: list[str] = []
            try:
                for index, part in enumerate(self._msg.walk()):
                    if index >= _MAX_CHARSET_PARTS:
                        break
                    if part.get_content_maintype() != "text":
                        continue
                    codec = normalize_charset(part.get_content_charset())
                    if codec is not None and codec not in found and _header_codec(codec):
                        found.append(codec)
            except Exception:  # a guess for a fallback: a broken part only costs the guess
                pass
            self._found = tuple(found)
        return self._found


def _header_codec(codec: str) -> bool:
    """Whether a declared charset is worth trying on raw header bytes that are not UTF-8.

    Not UTF-8/ASCII (already tried), nor cp1252/latin-1 (the last fallback reads stray bytes as
    cp1252 anyway, and keeps UTF-8 runs), nor UTF-7/16/32 (which "decode" any bytes into noise).
    """
    return codec not in _HEADER_FALLBACK_CODECS and not codec.startswith("utf")


def _decode_8bit(data: bytes, charsets: _DeclaredCharsets | None) -> str:
    """Raw 8-bit header bytes: UTF-8, else the first charset the message declares that reads
    them without error, else UTF-8 with each stray byte read as cp1252."""
    try:
        return clean_text(data.decode("utf-8"))
    except UnicodeDecodeError:
        pass
    for codec in charsets.codecs() if charsets is not None else ():
        try:
            return clean_text(data.decode(codec))
        except (UnicodeError, LookupError, ValueError):
            continue
    return decode_bytes(data, "utf-8")[0]


def _header_str(value: object, charsets: _DeclaredCharsets | None = None) -> str:
    """A compat32 header value as str; 8-bit bytes (kept as surrogates) decoded by ``_decode_8bit``."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > _MAX_HEADER_CHARS:
        text = text[:_MAX_HEADER_CHARS]
    text = _unfold(text)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            # raw 8-bit header bytes: the parser kept them as surrogate escapes.
            text = _decode_8bit(text.encode("utf-8", "surrogateescape"), charsets)
    return text


_ENCODED_WORD = r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?="
#: a run of RFC 2047 encoded words separated only by whitespace (which the RFC says to drop).
_ENCODED_RUN = re.compile(rf"{_ENCODED_WORD}(?:\s+{_ENCODED_WORD})*")


def _decode_run(run: str) -> str:
    try:
        chunks = decode_header(run)
    except (HeaderParseError, ValueError, binascii.Error, LookupError, AssertionError):
        return run
    out: list[str] = []
    for chunk, charset in chunks:
        if isinstance(chunk, str):
            out.append(chunk)
        else:
            out.append(decode_bytes(chunk, (charset or "utf-8").partition("*")[0])[0])
    return "".join(out)


def decode_header_value(value: object, charsets: _DeclaredCharsets | None = None) -> str:
    """Decode RFC 2047 encoded words and raw 8-bit bytes in a header value; never raises.

    Each run of encoded words goes through ``email.header.decode_header`` on its own (so text
    between runs is never round-tripped through its raw-unicode-escape bytes), and each word is
    decoded with its charset through ``decode_bytes``' fallback chain: an unknown or wrong
    charset label costs accuracy, not text.  Raw 8-bit bytes are read as UTF-8, else in one of
    the message's ``charsets``.
    """
    text = _header_str(value, charsets)
    if "=?" not in text:
        return clean_text(text)
    return clean_text(_ENCODED_RUN.sub(lambda m: _decode_run(m.group(0)), text))


_ADDR_SPEC = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.\-]+@[A-Za-z0-9.\-]+"
#: a plain list of bare addresses (most of Enron), comma- or (Outlook) semicolon-separated:
#: no need for a full scan.
_PLAIN_LIST = re.compile(rf"\s*{_ADDR_SPEC}\s*(?:[,;]\s*{_ADDR_SPEC}\s*)*[,;]?\s*")
#: nothing, or an empty group such as "undisclosed-recipients: ;" -- not an unreadable header.
_EMPTY_GROUP = re.compile(r"[\s,;]*|[^:<>@,]*:[\s;]*")


@lru_cache(maxsize=8192)
def _parse_address_list(raw: str) -> tuple[tuple[Address, ...], bool]:
    """(addresses, readable) for one unfolded address-list value; cached (lists repeat a lot)."""
    if _PLAIN_LIST.fullmatch(raw):
        addrs = (a.strip().lower() for a in (raw.replace(";", ",") if ";" in raw else raw).split(","))
        return tuple(Address(addr=a) for a in addrs if a), True
    pairs: list[tuple[str, str]] = []
    dropped: list[dict[str, object]] = []
    try:
        pairs = [(n, a) for n, a in get_addresses(raw, defects=dropped) if a]
    except Exception:  # mail-parser is a second opinion here; the stdlib below still runs
        pairs = []
    if not pairs:
        pairs = _stdlib_addresses(raw)
    elif any(not d.get("recovered") for d in dropped):
        pairs = _with_dropped(pairs, raw)
    result: list[Address] = []
    for display, addr in pairs:
        addr = clean_text(addr.strip().strip("<>").strip().lower())
        if addr:
            result.append(Address(addr=addr, name=" ".join(decode_header_value(display).split())))
    return tuple(result), bool(result) or _EMPTY_GROUP.fullmatch(raw) is not None


def _stdlib_addresses(raw: str) -> list[tuple[str, str]]:
    try:
        return [(n, a) for n, a in email.utils.getaddresses([raw]) if a.strip()]
    except Exception:
        return []


def _with_dropped(found: list[tuple[str, str]], raw: str) -> list[tuple[str, str]]:
    """mail-parser's mailboxes plus those it refused, as the stdlib reads them.

    mail-parser's scanner refuses every list entry that is not a valid RFC 5322 mailbox, and
    real mail has plenty that still name a recipient: ``j..doe@enron.com``, ``<.bill@enron.com>``,
    and whole lists separated by ``;`` (read as group ends: only the last entry is kept).  The
    stdlib reads those, so its mailboxes (``local@domain``; its fragments of broken entries have no
    ``@`` or an empty side) are added.  When they include everything mail-parser found, the
    stdlib's list is taken as it is, in header order; otherwise the new ones follow mail-parser's.
    Only lists with a refused entry come here, so the common case costs nothing more.
    """
    extra = [(n, a) for n, a in _stdlib_addresses(raw) if _is_mailbox(a)]
    seen = {a.strip().lower() for _, a in found}
    if seen <= {a.strip().lower() for _, a in extra}:
        return extra
    return found + [(n, a) for n, a in extra if a.strip().lower() not in seen]


def _is_mailbox(addr: str) -> bool:
    local, at, domain = addr.strip().rpartition("@")
    return bool(at and local.strip("<> ") and domain.strip("<> "))


def _addresses(
    values: Sequence[object], name: str, errors: list[str], charsets: _DeclaredCharsets
) -> tuple[Address, ...]:
    """Parse one address field (all its occurrences); tolerate groups, garbage and encoded words."""
    raw = ", ".join(_header_str(v, charsets) for v in values)
    if not raw.strip():
        return ()
    addresses, readable = _parse_address_list(raw)
    if not readable:
        errors.append(f"unreadable {name} header")
    return addresses


def _message_ids(value: str) -> list[str]:
    found = _MSGID.findall(value)
    if found:
        return found
    return [tok for tok in value.split() if "@" in tok]


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


#: a 12-hour clock time ("4:12:06 PM"); the stdlib would read the AM/PM as an unknown zone.
_TWELVE_HOUR = re.compile(r"\b(\d{1,2})(:\d{1,2}(?::\d{1,2})?)\s*([AaPp])\.?[Mm]\b\.?")
#: the date ends in a zone that does mean UTC, perhaps followed by a comment ("+0000 (GMT)").
_UTC_ZONE = re.compile(r"(?:[+-]0000|\b(?:GMT|UTC?|Z))(?:\s*\([^()]*\))*\s*$", re.IGNORECASE)


#: a four-digit year below 1000 ("01 Jan 0000"): the stdlib and mail-parser read the number as a
#: two-digit year and give 2000, a real-looking date for what is no date at all.
_ZERO_PADDED_YEAR = re.compile(r"\b\d{1,2}[\s-]+[A-Za-z]{3,9}\.?[\s-]+0\d{3}\b")


def _parse_date(raw: str | None, received: datetime, errors: list[str]) -> tuple[datetime, bool]:
    """The Date header in UTC and whether it fell back to ``received`` (flagged in ``errors``).

    A date read with a zone that is unknown ("CEST", "GMT+1", "+-0500"), or missing, is
    read as UTC (what RFC 5322 section 4.3 says of unknown zones) and kept, but flagged: its
    hour may be off by the sender's offset.
    """
    if raw is None or not raw.strip():
        errors.append("missing Date header")
        return received, True
    if _ZERO_PADDED_YEAR.search(raw):
        errors.append(f"bad date: {raw.strip()[:80]!r} (year before 1000)")
        return received, True
    value: datetime | None = None
    zone_known = True
    try:
        result = parse_mail_date(raw)
        value = result.value
        # mail-parser reads any unknown alphabetic zone (and "PM") as UTC and says nothing: offset 0
        # is checked against the zone tokens that do mean UTC (a short regex, for offset 0 only).
        if value is not None and result.timezone == "+0.0" and not _UTC_ZONE.search(raw):
            lenient, zone_known, twelve_hour = _lenient_date(raw)
            if lenient is not None and twelve_hour:
                value = lenient
    except Exception:
        value = None
    if value is None:
        # mail-parser is strict (no missing zone, 1-digit hours, AM/PM, "GMT+1"); the stdlib is lenient.
        value, zone_known, _twelve = _lenient_date(raw)
    shown = raw.strip()[:80]
    if value is None:
        errors.append(f"bad date: {shown!r}")
        return received, True
    try:
        value = value.astimezone(UTC)
    except (OverflowError, ValueError):
        errors.append(f"bad date: {shown!r}")
        return received, True
    if value < _EPOCH or value > received + timedelta(days=2):
        errors.append(f"bad date: {shown!r} (out of range)")
        return received, True
    if not zone_known:
        errors.append(f"date without a known zone, read as UTC: {shown!r}")
    return value, False


def _lenient_date(raw: str) -> tuple[datetime | None, bool, bool]:
    """(date, whether its zone was known, whether it had a 12-hour time) by the stdlib's lenient
    parser, 12-hour times made 24-hour.

    The stdlib takes the token after the time as the zone, so in "06:50:21 PM -0400" it reads
    "PM" as an unknown zone and drops the "-0400", and "4:12:06 PM" becomes 04:12: the AM/PM
    is folded into the hour first.  An unknown or missing zone is read as UTC and reported.
    """
    twelve = _TWELVE_HOUR.search(raw)
    if twelve is not None:
        hour = int(twelve.group(1))
        if 1 <= hour <= 12:
            hour = hour % 12 + (12 if twelve.group(3) in "Pp" else 0)
        raw = f"{raw[: twelve.start()]}{hour:02d}{twelve.group(2)}{raw[twelve.end() :]}"
    try:
        value = email.utils.parsedate_to_datetime(raw)  # naive when the zone is unknown or missing
    except Exception:
        return None, False, twelve is not None
    if value.tzinfo is not None:
        return value, True, twelve is not None
    return value.replace(tzinfo=UTC), _UTC_ZONE.search(raw) is not None, twelve is not None


# --- body -------------------------------------------------------------------------------------


def _holds_text(text: str) -> bool:
    """``bool(text.strip())`` without copying a large part."""
    return bool(text) and not text.isspace()


class _FoldedBoundaryError(Exception):
    """A multipart part whose boundary parameter was folded, so compat32 found none of its parts."""


#: where a body part sits among multipart/alternative choices: (alternative number, child index)
#: for each multipart/alternative above it, outermost first.
_AltPath = tuple[tuple[int, int], ...]


#: an inline text part: (is it HTML, its text, where it sits among alternatives).  A plain
#: tuple: it is built for every body part, and a NamedTuple costs a Python-level call.
_BodyPart = tuple[bool, str, _AltPath]


class _Walker:
    """Collects body text, HTML and attachments from a parsed message tree (iteratively)."""

    def __init__(
        self,
        max_attachment_text_chars: int,
        errors: list[str],
        embed_depth: int,
        charsets: _DeclaredCharsets,
        split_folded: bool = True,
    ) -> None:
        self.max_text = max_attachment_text_chars
        self.errors = errors
        self.embed_depth = embed_depth
        self.charsets = charsets
        #: raise _FoldedBoundaryError on a multipart left unsplit by a folded boundary (see _walk).
        self.split_folded = split_folded
        #: the inline text/plain and text/html parts, in message order.
        self.body: list[_BodyPart] = []
        #: multipart/alternative parts seen so far (each is numbered in _AltPath by this count).
        self.alternatives = 0
        self.attachments: list[Attachment] = []
        #: bodies found inside winmail.dat parts, used when the message has no other body.
        self.tnef_bodies: list[str] = []
        self.defects: set[str] = set()

    def walk(self, root: Message) -> None:
        """Read every part; raises ``_FoldedBoundaryError`` if a multipart's boundary was folded."""
        stack: list[tuple[Message, _AltPath]] = [(root, ())]
        seen = 0
        while stack:
            part, path = stack.pop()
            seen += 1
            if seen > _MAX_PARTS:
                self.errors.append(f"more than {_MAX_PARTS} MIME parts; the rest were not read")
                return
            for defect in getattr(part, "defects", ()):
                self.defects.add(type(defect).__name__)
            ctype = part.get_content_type()
            if ctype == "message/rfc822" or (ctype.startswith("message/") and self._is_attachment(part)):
                self._embedded(part, ctype)
                continue
            if part.is_multipart():
                payload = part.get_payload()
                if isinstance(payload, list):
                    children = [p for p in payload if isinstance(p, Message)]
                    if ctype == "multipart/alternative":
                        alt = self.alternatives
                        self.alternatives += 1
                        stack.extend((p, (*path, (alt, i))) for i, p in reversed(list(enumerate(children))))
                    else:
                        stack.extend((p, path) for p in reversed(children))
                continue
            if self.split_folded and ctype.startswith("multipart/") and _unsplit_folded(part):
                raise _FoldedBoundaryError
            self._leaf(part, ctype, path)

    @staticmethod
    def _is_attachment(part: Message) -> bool:
        disposition = (part.get_content_disposition() or "").lower()
        if disposition == "attachment":
            return True
        return disposition != "inline" and part.get_filename() is not None

    def _filename(self, part: Message) -> str:
        try:
            raw = _raw_headers(part)
            params = {k: raw[k][0] for k in ("content-disposition", "content-type") if k in raw}
            if not all(v.isascii() for v in params.values()):
                # 8-bit bytes in the parameters: decode them before the parameter parser sees
                # them, or compat32 would turn them into U+FFFD.
                part = Message()
                for key, value in params.items():
                    part[key] = _header_str(value, self.charsets)
            name = part.get_filename()
        except Exception:
            return ""
        return " ".join(decode_header_value(name).split()) if name else ""

    def _charset(self, part: Message) -> str | None:
        try:
            charset = part.get_content_charset()
        except Exception:
            return None
        return charset if isinstance(charset, str) else None

    def _payload(self, part: Message) -> bytes:
        payload, error = part_bytes(part)
        if error:
            self.errors.append(error)
        return payload

    def _decode(self, part: Message, payload: bytes) -> str:
        text, problem = decode_bytes(payload, self._charset(part))
        if problem:
            self.errors.append(problem)
        return text.replace("\r\n", "\n") if "\r" in text else text

    def _leaf(self, part: Message, ctype: str, path: _AltPath = ()) -> None:
        payload = self._payload(part)
        if ctype in ("text/plain", "text/html") and not self._is_attachment(part):
            text = self._decode(part, payload)
            is_html = ctype == "text/html"
            self.body.append((is_html, text, path))
            return
        filename = self._filename(part)
        if ctype in _ATTACHMENT_TEXT_TYPES and self.max_text > 0:
            text = self._decode(part, payload[: self.max_text * 4])
            if ctype == "text/html":
                text = html_to_text(text)
            self._attach(filename, ctype, payload, text[: self.max_text], "")
        else:
            self._attach_file(filename, ctype, payload, self._charset(part))
        if tnef.is_tnef(payload):
            self._tnef(payload)

    def _attach_file(self, filename: str, ctype: str, payload: bytes, charset: str | None) -> None:
        """An attachment with the text of documents, and of text sent as application/octet-stream
        (bounded in size, memory and time)."""
        text = error = ""
        if self.max_text > 0:
            text, error = extract_text(payload, ctype, filename, max_chars=self.max_text, charset=charset)
            if error:
                self.errors.append(f"attachment {(filename or ctype)[:80]!r}: {error}")
        self._attach(filename, ctype, payload, text, error)

    def _attach(self, filename: str, ctype: str, payload: bytes, text: str, error: str) -> None:
        self.attachments.append(
            Attachment(
                filename=filename,
                content_type=ctype,
                size=len(payload),
                sha256=hashlib.sha256(payload).hexdigest(),
                text=text,
                error=error,
            )
        )

    def _tnef(self, payload: bytes) -> None:
        """Outlook's winmail.dat: its files become attachments too, its body a fallback body."""
        room = _MAX_PARTS - len(self.attachments)
        unpacked = tnef.unpack(payload, max_body_chars=_MAX_TNEF_BODY_CHARS, max_files=room)
        if unpacked.error:
            self.errors.append(unpacked.error)
        for name, data in unpacked.files:
            self._attach_file(name, tnef.content_type_of(name), data, None)
        if _holds_text(unpacked.body):
            self.tnef_bodies.append(unpacked.body)

    def _embedded(self, part: Message, ctype: str) -> None:
        payload = part.get_payload()
        inner = payload[0] if isinstance(payload, list) and payload else None
        data = b""
        text = ""
        filename = self._filename(part)
        if isinstance(inner, Message):
            data = message_bytes(inner)
            inner_charsets = _DeclaredCharsets(inner)
            subject = decode_header_value(_raw_headers(inner).get("subject", [""])[0], inner_charsets)
            subject = " ".join(subject.split())
            if not filename and subject:
                filename = f"{subject[:100]}.eml"
            if self.embed_depth < _MAX_EMBED_DEPTH and self.max_text > 0:
                sub = _Walker(self.max_text, self.errors, self.embed_depth + 1, inner_charsets, self.split_folded)
                sub.walk(inner)
                text = f"{subject}\n\n{sub.body_text()}".strip()[: self.max_text]
        else:
            data = self._payload(part)
            text = self._decode(part, data)[: self.max_text] if self.max_text > 0 else ""
        self.attachments.append(
            Attachment(
                filename=filename,
                content_type=ctype,
                size=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
                text=clean_text(text),
            )
        )

    def body_text(self) -> str:
        """The inline text parts as a mail client shows them, else a body found inside winmail.dat.

        Every inline text/plain and text/html part counts, in order (a multipart/mixed of an
        HTML body and a plain-text footer shows both), except an HTML part that has a plain-text
        alternative with text in it: there the plain text is what we index best.  Only parts
        that hold text count: Outlook in rich-text mode may send an empty text part next to the
        winmail.dat that carries the real body, and some senders an empty plain alternative.
        """
        texts: list[str] = []
        for is_html, text, _path in self._shown() if self.alternatives else self.body:
            if not _holds_text(text):
                continue
            if not is_html:
                texts.append(text.strip("\n"))
            elif rendered := html_to_text(text):
                texts.append(rendered)
        if texts or not self.tnef_bodies:
            return "\n\n".join(texts)
        return "\n\n".join(t.strip() for t in self.tnef_bodies)

    def _shown(self) -> list[_BodyPart]:
        """The body parts without the HTML parts that have a plain-text alternative with text.

        An HTML part and a plain part are alternatives of each other when they sit in different
        children of one multipart/alternative (at any depth).  Plain parts are always kept (two
        plain alternatives both count, as before).  Only called for messages with alternatives.
        """
        #: alternative -> indexes of its children that hold a plain part with text.
        plain_in: dict[int, set[int]] = {}
        for is_html, text, path in self.body:
            if path and not is_html and _holds_text(text):
                for alt, index in path:
                    plain_in.setdefault(alt, set()).add(index)
        if not plain_in:
            return self.body
        return [
            (is_html, text, path)
            for is_html, text, path in self.body
            if not is_html or not any(plain_in.get(alt, set()) - {index} for alt, index in path)
        ]


# --- whole message ----------------------------------------------------------------------------


class _UnfoldingPolicy(Compat32):
    """compat32, except that header values are unfolded when read (RFC 5322 section 2.2.3).

    compat32 keeps the line break of a folded header in the value, so a folded boundary
    parameter (``boundary="simple<CRLF> boundary"``) never matches a delimiter line and the
    whole multipart becomes one opaque part.  ``policy.default`` unfolds but parses 4-5x slower,
    so this policy is used only to parse again a message in which that happened.
    """

    def header_fetch_parse(self, name: str, value: str) -> str | Header:  # type: ignore[override]  # as Compat32
        if "\n" in value or "\r" in value:
            value = _LINE_BREAK.sub("", value)
        return super().header_fetch_parse(name, value)


_LINE_BREAK = re.compile(r"\r\n?|\n")
_UNFOLDING = _UnfoldingPolicy()


def _unsplit_folded(part: Message) -> bool:
    """A multipart part that compat32 left unsplit because its boundary parameter was folded."""
    if part.get_content_maintype() != "multipart" or part.is_multipart():
        return False
    try:
        boundary = part.get_boundary()
    except Exception:
        return False
    return isinstance(boundary, str) and ("\n" in boundary or "\r" in boundary)


def _unfolded(data: bytes) -> Message | None:
    """``data`` parsed again with unfolded header values; None when the parts, once split,
    nest deeper than the stdlib parser can go."""
    try:
        return BytesParser(policy=_UNFOLDING).parsebytes(data)
    except RecursionError:
        return None


def _mime_trees(data: bytes) -> Iterator[Message]:
    """The compat32 parse of ``data``, and the unfolding re-parse if ``_walk`` would take that."""
    msg = BytesParser(policy=compat32).parsebytes(data)
    yield msg
    if any(_unsplit_folded(p) for p in msg.walk()) and (unfolded := _unfolded(data)) is not None:
        yield unfolded


def part_bytes(part: Message) -> tuple[bytes, str]:
    """A leaf part's decoded payload, or its undecoded text when decoding fails, and the
    problem ("" when none): the bytes an attachment's size and SHA-256 are taken of."""
    try:
        payload = part.get_payload(decode=True)
        error = ""
    except Exception as exc:
        payload, error = None, f"undecodable part {part.get_content_type()}: {type(exc).__name__}"
    if isinstance(payload, bytes):
        return payload, error
    raw = part.get_payload()
    return (raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else b""), error


def message_bytes(inner: Message) -> bytes:
    """An embedded message as its attachment is stored and hashed (never re-wrapped)."""
    try:
        return inner.as_bytes(policy=compat32.clone(max_line_length=0), unixfrom=False)
    except Exception:
        return str(inner).encode("utf-8", "surrogateescape")


def attachment_payloads(raw: bytes) -> Iterator[bytes]:
    """The bytes of every part the normalizer could list as an attachment, as it hashed them.

    The web's attachment download finds a part by the SHA-256 in the catalog; it gets
    the candidates here, from the same parser and the same :func:`part_bytes` and
    :func:`message_bytes` as the walk that computed the hashes, so the two cannot drift
    apart.  (It yields a few more candidates than there are attachments: body parts, the
    parts inside embedded messages, and, for a message with a folded boundary parameter,
    the parts of both parses, as the walk may hash either.)  The files inside a winmail.dat
    come from :func:`tnef.unpack`, as for the walk.
    """
    for part in (part for tree in _mime_trees(raw) for part in tree.walk()):
        if part.get_content_type().startswith("message/"):
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) and payload else None
            yield message_bytes(inner) if isinstance(inner, Message) else part_bytes(part)[0]
        elif not part.is_multipart():
            data = part_bytes(part)[0]
            yield data
            if tnef.is_tnef(data):  # the files inside winmail.dat are attachments too (see _Walker._tnef)
                yield from (inner for _name, inner in tnef.unpack(data, max_body_chars=0).files)


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _lossy(data: bytes, limit: int) -> str:
    return decode_bytes(data[:limit], "utf-8")[0]


def _header_block(data: bytes) -> tuple[bytes, bytes]:
    """Split raw bytes into (headers, body) without a MIME parse (for oversized or broken mail)."""
    head = data[:_MAX_HEADER_BLOCK]
    cut = [i for i in (head.find(b"\r\n\r\n"), head.find(b"\n\n")) if i >= 0]
    if not cut:
        return head, data[len(head) :]
    end = min(cut)
    sep = 4 if head[end : end + 4] == b"\r\n\r\n" else 2
    return data[:end], data[end + sep :]


def _raw_headers(msg: Message) -> dict[str, list[str]]:
    """Header values as the parser stored them (str; raw 8-bit bytes as surrogate escapes).

    ``Message.get`` under compat32 turns 8-bit values into ``Header`` objects whose ``str()``
    replaces those bytes with U+FFFD; the raw values let ``_header_str`` decode them instead.
    """
    out: dict[str, list[str]] = {}
    for name, value in msg.raw_items():
        out.setdefault(name.lower(), []).append(value if isinstance(value, str) else str(value))
    return out


class _Fields(TypedDict):
    message_id: str
    in_reply_to: str
    references: tuple[str, ...]
    from_: tuple[Address, ...]
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    bcc: tuple[Address, ...]
    subject: str
    date: datetime
    date_is_fallback: bool
    headers: tuple[tuple[str, str], ...]
    explicit_matter: str


def _fields(
    msg: Message, received: datetime, matter_header: str, errors: list[str], charsets: _DeclaredCharsets | None = None
) -> _Fields:
    """Everything ParsedMessage takes from the header block."""
    raw = _raw_headers(msg)
    if charsets is None:
        charsets = _DeclaredCharsets(msg)

    def get_all(name: str) -> list[str]:
        return raw.get(name, [])

    def first(name: str) -> str | None:
        values = raw.get(name)
        return values[0] if values else None

    raw_id = _header_str(first("message-id") or "", charsets)
    message_ids = _message_ids(raw_id)
    reply_ids = _message_ids(_header_str(first("in-reply-to") or "", charsets))
    refs = " ".join(_header_str(v, charsets) for v in get_all("references"))
    date_raw = first("date")
    date, date_is_fallback = _parse_date(None if date_raw is None else _header_str(date_raw), received, errors)
    wanted = set(_SHOWN_HEADERS)
    matter_key = matter_header.lower()
    wanted.add(matter_key)
    headers: list[tuple[str, str]] = []
    explicit = ""
    for name, value in msg.raw_items():
        key = name.lower()
        if key not in wanted:
            continue
        decoded = decode_header_value(value, charsets).strip()
        headers.append((clean_text(name), decoded[:_MAX_SHOWN_HEADER_CHARS]))
        if key == matter_key and not explicit:
            explicit = " ".join(decoded.split())
    return _Fields(
        message_id=clean_text(message_ids[0] if message_ids else raw_id.strip()),
        in_reply_to=clean_text(reply_ids[0]) if reply_ids else "",
        references=tuple(clean_text(r) for r in _unique(_message_ids(refs))[-_MAX_REFERENCES:]),
        from_=_addresses(get_all("from"), "From", errors, charsets),
        to=_addresses(get_all("to"), "To", errors, charsets),
        cc=_addresses(get_all("cc"), "Cc", errors, charsets),
        bcc=_addresses(get_all("bcc"), "Bcc", errors, charsets),
        subject=" ".join(decode_header_value(first("subject") or "", charsets).split()),
        date=date,
        date_is_fallback=date_is_fallback,
        headers=tuple(headers),
        explicit_matter=explicit,
    )


def _defect_note(defects: set[str]) -> list[str]:
    return [f"MIME defects: {', '.join(sorted(defects))}"] if defects else []


def _parse_stdlib(
    data: bytes,
    received: datetime,
    max_parse_bytes: int,
    max_text: int,
    matter_header: str,
    errors: list[str],
) -> ParsedMessage:
    if len(data) > max_parse_bytes:
        head, _ = _header_block(data)
        msg = BytesHeaderParser(policy=compat32).parsebytes(head)
        errors.append(f"too large to parse body ({len(data)} bytes)")
        fields = _fields(msg, received, matter_header, errors)
        return ParsedMessage(**fields, parse_errors=tuple(errors))
    try:
        msg = BytesParser(policy=compat32).parsebytes(data)
    except RecursionError:
        # the stdlib feed parser recurses once per nesting level; read headers and raw text.
        head, body = _header_block(data)
        msg = BytesHeaderParser(policy=compat32).parsebytes(head)
        errors.append("MIME nesting too deep; body read as raw text")
        fields = _fields(msg, received, matter_header, errors)
        return ParsedMessage(
            **fields,
            body_text=_lossy(body, max_parse_bytes),
            parse_errors=tuple(errors),
        )
    charsets = _DeclaredCharsets(msg)
    fields = _fields(msg, received, matter_header, errors, charsets)
    walker = _walk(msg, data, max_text, errors, charsets)
    errors.extend(_defect_note(walker.defects))
    return ParsedMessage(
        **fields,
        body_text=walker.body_text(),
        body_html=clean_text(next((text for is_html, text, _path in walker.body if is_html), "")),
        attachments=tuple(walker.attachments),
        parse_errors=tuple(dict.fromkeys(errors)),
    )


def _walk(msg: Message, data: bytes, max_text: int, errors: list[str], charsets: _DeclaredCharsets) -> _Walker:
    """Walk the parsed message; parse it again with unfolded headers if a boundary was folded.

    The check costs nothing in the common case: the walk raises only on a multipart part that
    compat32 could not split (rare in itself) whose boundary contains a line break.
    """
    mark = len(errors)
    walker = _Walker(max_text, errors, 0, charsets)
    try:
        walker.walk(msg)
        return walker
    except _FoldedBoundaryError:
        del errors[mark:]
    walker = _Walker(max_text, errors, 0, charsets, split_folded=False)
    unfolded = _unfolded(data)
    if unfolded is None:
        errors.append("folded boundary parameter: MIME nesting too deep to split the parts")
    walker.walk(unfolded or msg)
    return walker


def _parse_with_mailparser(data: bytes, received: datetime, errors: list[str]) -> ParsedMessage:
    """Second opinion when the stdlib path failed: mail-parser's own walk (subject, body, date)."""
    import mailparser  # imported lazily: only this rare path needs the full parser

    parsed = mailparser.parse_from_bytes(data)
    raw_date = parsed.message.get("date") if parsed.message is not None else None
    date, fallback = _parse_date(None if raw_date is None else _header_str(raw_date), received, errors)
    body = "\n\n".join(str(t) for t in (parsed.text_plain or []))
    if not _holds_text(body):  # an empty text part does not hide the HTML (see _Walker.body_text)
        body = "\n\n".join(html_to_text(str(t)) for t in (parsed.text_html or []))
    return ParsedMessage(
        message_id=clean_text(str(parsed.message_id or "")).strip(),
        subject=" ".join(clean_text(str(parsed.subject or "")).split()),
        date=date,
        date_is_fallback=fallback,
        body_text=clean_text(body),
        parse_errors=tuple(errors),
    )


def parse_message(
    data: bytes,
    *,
    received: datetime,
    max_parse_bytes: int = 50 * 2**20,
    max_attachment_text_chars: int = 200_000,
    matter_header: str = "X-Archive-Matter",
) -> ParsedMessage:
    """Parse raw message bytes.  Never raises: problems are listed in ``parse_errors``.

    ``received`` (when the archive got the message) is the fallback for a bad or missing Date.
    Messages over ``max_parse_bytes`` have only their headers parsed.
    """
    received = _as_utc(received)
    if not isinstance(data, bytes | bytearray | memoryview):
        data = str(data).encode("utf-8", "surrogateescape")
    data = bytes(data)
    if not data.strip():
        return ParsedMessage(date=received, date_is_fallback=True, parse_errors=("empty message",))
    errors: list[str] = []
    try:
        return _parse_stdlib(data, received, max_parse_bytes, max_attachment_text_chars, matter_header, errors)
    except Exception as exc:
        first = f"parser failed: {type(exc).__name__}: {str(exc)[:80]}"
    try:
        return _parse_with_mailparser(data[:max_parse_bytes], received, [first])
    except Exception as exc:
        second = f"mail-parser failed: {type(exc).__name__}: {str(exc)[:80]}"
    return ParsedMessage(
        date=received,
        date_is_fallback=True,
        body_text=_lossy(data, max_parse_bytes),
        parse_errors=(clean_text(first), clean_text(second)),
    )
