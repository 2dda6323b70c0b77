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
  turns into fragments), falling back to ``email.utils.getaddresses`` when it finds nothing;
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
from email.header import decode_header
from email.message import Message
from email.parser import BytesHeaderParser, BytesParser
from email.policy import compat32
from functools import lru_cache
from typing import TypedDict

from mailparser.dates import parse_mail_date
from mailparser.utils import get_addresses

from archiver.model import Address, Attachment, ParsedMessage
from archiver.normalize import tnef
from archiver.normalize.attachments import extract_text
from archiver.normalize.text import clean_text, decode_bytes, html_to_text

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
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MSGID = re.compile(r"<[^<>\s]*>")
_FOLD = re.compile(r"\r?\n(?=[ \t])|\r?\n")
_ATTACHMENT_TEXT_TYPES = frozenset({"text/plain", "text/csv", "text/html"})


# --- headers ----------------------------------------------------------------------------------


def _unfold(value: str) -> str:
    return _FOLD.sub("", value) if "\n" in value else value


def _header_str(value: object) -> str:
    """A compat32 header value as str; 8-bit bytes (kept as surrogates) decoded as utf-8/cp1252."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > _MAX_HEADER_CHARS:
        text = text[:_MAX_HEADER_CHARS]
    text = _unfold(text)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            # raw 8-bit header bytes: the parser kept them as surrogate escapes.
            text = decode_bytes(text.encode("utf-8", "surrogateescape"), "utf-8")[0]
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


def decode_header_value(value: object) -> str:
    """Decode RFC 2047 encoded words and raw 8-bit bytes in a header value; never raises.

    Each run of encoded words goes through ``email.header.decode_header`` on its own (so text
    between runs is never round-tripped through its raw-unicode-escape bytes), and each word is
    decoded with its charset through ``decode_bytes``' fallback chain: an unknown or wrong
    charset label costs accuracy, not text.
    """
    text = _header_str(value)
    if "=?" not in text:
        return clean_text(text)
    return clean_text(_ENCODED_RUN.sub(lambda m: _decode_run(m.group(0)), text))


_ADDR_SPEC = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.\-]+@[A-Za-z0-9.\-]+"
#: a plain comma-separated list of bare addresses (most of Enron): no need for a full scan.
_PLAIN_LIST = re.compile(rf"\s*{_ADDR_SPEC}\s*(?:,\s*{_ADDR_SPEC}\s*)*,?\s*")
#: nothing, or an empty group such as "undisclosed-recipients: ;" -- not an unreadable header.
_EMPTY_GROUP = re.compile(r"[\s,;]*|[^:<>@,]*:[\s;]*")


@lru_cache(maxsize=8192)
def _parse_address_list(raw: str) -> tuple[tuple[Address, ...], bool]:
    """(addresses, readable) for one unfolded address-list value; cached (lists repeat a lot)."""
    if _PLAIN_LIST.fullmatch(raw):
        addrs = (a.strip().lower() for a in raw.split(","))
        return tuple(Address(addr=a) for a in addrs if a), True
    pairs: list[tuple[str, str]] = []
    try:
        pairs = [(n, a) for n, a in get_addresses(raw) if a]
    except Exception:  # mail-parser is a second opinion here; the stdlib below still runs
        pairs = []
    if not pairs:
        try:
            pairs = [(n, a) for n, a in email.utils.getaddresses([raw]) if a.strip()]
        except Exception:
            pairs = []
    result: list[Address] = []
    for display, addr in pairs:
        addr = clean_text(addr.strip().strip("<>").strip().lower())
        if addr:
            result.append(Address(addr=addr, name=" ".join(decode_header_value(display).split())))
    return tuple(result), bool(result) or _EMPTY_GROUP.fullmatch(raw) is not None


def _addresses(values: Sequence[object], name: str, errors: list[str]) -> tuple[Address, ...]:
    """Parse one address field (all its occurrences); tolerate groups, garbage and encoded words."""
    raw = ", ".join(_header_str(v) for v in values)
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


def _parse_date(raw: str | None, received: datetime, errors: list[str]) -> tuple[datetime, bool]:
    if raw is None or not raw.strip():
        errors.append("missing Date header")
        return received, True
    value: datetime | None = None
    try:
        value = parse_mail_date(raw).value
    except Exception:
        value = None
    if value is None:
        # mail-parser is strict (no missing zone, 1-digit hours, "GMT+1"); the stdlib is lenient.
        try:
            value = email.utils.parsedate_to_datetime(raw)
        except Exception:
            value = None
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
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
    return value, False


# --- body -------------------------------------------------------------------------------------


class _Walker:
    """Collects body text, HTML and attachments from a parsed message tree (iteratively)."""

    def __init__(self, max_attachment_text_chars: int, errors: list[str], embed_depth: int = 0) -> None:
        self.max_text = max_attachment_text_chars
        self.errors = errors
        self.embed_depth = embed_depth
        self.plain: list[str] = []
        self.html: list[str] = []
        self.attachments: list[Attachment] = []
        #: bodies found inside winmail.dat parts, used when the message has no other body.
        self.tnef_bodies: list[str] = []
        self.defects: set[str] = set()

    def walk(self, root: Message) -> None:
        stack: list[Message] = [root]
        seen = 0
        while stack:
            part = stack.pop()
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
                    stack.extend(reversed([p for p in payload if isinstance(p, Message)]))
                continue
            self._leaf(part, ctype)

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
                    part[key] = _header_str(value)
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

    def _leaf(self, part: Message, ctype: str) -> None:
        payload = self._payload(part)
        if ctype in ("text/plain", "text/html") and not self._is_attachment(part):
            text = self._decode(part, payload)
            (self.plain if ctype == "text/plain" else self.html).append(text)
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
        if unpacked.body.strip():
            self.tnef_bodies.append(unpacked.body)

    def _embedded(self, part: Message, ctype: str) -> None:
        payload = part.get_payload()
        inner = payload[0] if isinstance(payload, list) and payload else None
        data = b""
        text = ""
        filename = self._filename(part)
        if isinstance(inner, Message):
            data = message_bytes(inner)
            subject = decode_header_value(_raw_headers(inner).get("subject", [""])[0])
            subject = " ".join(subject.split())
            if not filename and subject:
                filename = f"{subject[:100]}.eml"
            if self.embed_depth < _MAX_EMBED_DEPTH and self.max_text > 0:
                sub = _Walker(self.max_text, self.errors, self.embed_depth + 1)
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
        """The text parts, else the HTML parts as text, else a body found inside winmail.dat.

        Each is taken only when it holds text: Outlook in rich-text mode may send an empty
        text part next to the winmail.dat that carries the real body.
        """
        if self.plain:
            text = "\n\n".join(t.strip("\n") for t in self.plain if t.strip())
            if text or not self.tnef_bodies:
                return text
        if self.html:
            text = "\n\n".join(html_to_text(h) for h in self.html if h)
            if text.strip() or not self.tnef_bodies:
                return text
        return "\n\n".join(t.strip() for t in self.tnef_bodies)


# --- whole message ----------------------------------------------------------------------------


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
    apart.  (It yields a few more candidates than there are attachments: body parts, and
    the parts inside embedded messages.)  The files inside a winmail.dat come from
    :func:`tnef.unpack`, as for the walk.
    """
    for part in BytesParser(policy=compat32).parsebytes(raw).walk():
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


def _fields(msg: Message, received: datetime, matter_header: str, errors: list[str]) -> _Fields:
    """Everything ParsedMessage takes from the header block."""
    raw = _raw_headers(msg)

    def get_all(name: str) -> list[str]:
        return raw.get(name, [])

    def first(name: str) -> str | None:
        values = raw.get(name)
        return values[0] if values else None

    raw_id = _header_str(first("message-id") or "")
    message_ids = _message_ids(raw_id)
    reply_ids = _message_ids(_header_str(first("in-reply-to") or ""))
    refs = " ".join(_header_str(v) for v in get_all("references"))
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
        decoded = decode_header_value(value).strip()
        headers.append((clean_text(name), decoded[:_MAX_SHOWN_HEADER_CHARS]))
        if key == matter_key and not explicit:
            explicit = " ".join(decoded.split())
    return _Fields(
        message_id=clean_text(message_ids[0] if message_ids else raw_id.strip()),
        in_reply_to=clean_text(reply_ids[0]) if reply_ids else "",
        references=tuple(clean_text(r) for r in _unique(_message_ids(refs))[-_MAX_REFERENCES:]),
        from_=_addresses(get_all("from"), "From", errors),
        to=_addresses(get_all("to"), "To", errors),
        cc=_addresses(get_all("cc"), "Cc", errors),
        bcc=_addresses(get_all("bcc"), "Bcc", errors),
        subject=" ".join(decode_header_value(first("subject") or "").split()),
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
    fields = _fields(msg, received, matter_header, errors)
    walker = _Walker(max_text, errors)
    walker.walk(msg)
    errors.extend(_defect_note(walker.defects))
    return ParsedMessage(
        **fields,
        body_text=walker.body_text(),
        body_html=clean_text(walker.html[0]) if walker.html else "",
        attachments=tuple(walker.attachments),
        parse_errors=tuple(dict.fromkeys(errors)),
    )


def _parse_with_mailparser(data: bytes, received: datetime, errors: list[str]) -> ParsedMessage:
    """Second opinion when the stdlib path failed: mail-parser's own walk (subject, body, date)."""
    import mailparser  # imported lazily: only this rare path needs the full parser

    parsed = mailparser.parse_from_bytes(data)
    raw_date = parsed.message.get("date") if parsed.message is not None else None
    date, fallback = _parse_date(None if raw_date is None else _header_str(raw_date), received, errors)
    body = "\n\n".join(str(t) for t in (parsed.text_plain or []))
    if not body:
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
