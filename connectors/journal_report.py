"""Unwrap Exchange journal reports: archive the original message, keep the real recipients.

Exchange journaling (on-premises and Exchange Online) delivers every journaled
message wrapped in a *journal report*: a message carrying the header
``X-MS-Journal-Report`` whose body is ``multipart/mixed`` with

1. a text part, the *envelope*, one field per line::

       Sender: alice@example.com
       Subject: Q3 figures
       Message-Id: <1234@example.com>
       To: bob@example.com
       Cc: carol@example.com
       Bcc: dave@example.com
       To: sales@example.com, Expanded: erin@example.com
       To: frank@example.com, Forwarded: grace@example.com

2. the original message attached as ``message/rfc822``.

The envelope is the only place Bcc recipients (and the members a distribution
list expanded to, and forwarding targets) are recorded: the original's own
headers never name them.  :func:`unwrap_journal_report` returns the attached
original's exact bytes (so its SHA-256 equals that of the same message fetched
from a mailbox, and dedup merges both copies) together with every address on
the envelope's ``To:``, ``Cc:``, ``Bcc:`` and ``Recipient:`` lines, including
``Expanded:``/``Forwarded:`` annotations, lower-cased.

What becomes searchable: the connectors put these addresses in
``Origin.envelope_recipients``; the index adds every envelope recipient that is
not already in the original's To or Cc to the message's ``bcc`` field, so
``bcc:dave@example.com`` finds a message Dave received as a blind copy.

A message that is not a journal report, or a report whose original cannot be
found, yields ``None``: the caller then archives the bytes as they are, so
nothing is ever lost to a malformed report.
"""

from __future__ import annotations

import base64
import binascii
import quopri
import re
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser, BytesParser

JOURNAL_HEADER = "X-MS-Journal-Report"

#: envelope fields whose addresses are recipients of the journaled message.
_RECIPIENT_FIELDS = ("to", "cc", "bcc", "recipient")
_FIELD_LINE = re.compile(r"^\s*([A-Za-z-]+)\s*:\s*(.*)$")
_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")
_HEADER_END = re.compile(rb"\r?\n\r?\n")


def is_journal_report(data: bytes) -> bool:
    """True when the top-level header block carries ``X-MS-Journal-Report``."""
    head = _split_head(data)[0]
    try:
        headers = BytesHeaderParser(policy=policy.compat32).parsebytes(head)
    except Exception:  # email never should raise, but bad input must not crash a sync
        return False
    return headers.get(JOURNAL_HEADER) is not None


def unwrap_journal_report(data: bytes) -> tuple[bytes, tuple[str, ...]] | None:
    """``(original message bytes, envelope recipients)`` for a journal report, else ``None``."""
    if not is_journal_report(data):
        return None
    try:
        return _unwrap(data)
    except Exception:  # a malformed report is archived as is, never lost and never a crash
        return None


def _unwrap(data: bytes) -> tuple[bytes, tuple[str, ...]] | None:
    head, body = _split_head(data)
    top = BytesHeaderParser(policy=policy.compat32).parsebytes(head)
    if top.get_content_maintype() != "multipart":
        return None
    boundary = top.get_boundary()
    if not boundary:
        return None
    original: bytes | None = None
    envelope_text: str | None = None
    for part in _split_multipart(body, boundary.encode("ascii", "replace")):
        part_head, part_body = _split_head(part)
        headers = BytesHeaderParser(policy=policy.compat32).parsebytes(part_head)
        ctype = headers.get_content_type()
        if ctype == "message/rfc822" and original is None:
            original = _decode_if_needed(part_body, headers)
        elif ctype == "text/plain" and envelope_text is None:
            envelope_text = _text_of(part)
    if original is None or not original.strip():
        return None
    return original, envelope_recipients(envelope_text or "")


def envelope_recipients(text: str) -> tuple[str, ...]:
    """Addresses on the envelope's recipient lines, lower-cased, in order, without repeats."""
    seen: dict[str, None] = {}
    for line in text.splitlines():
        m = _FIELD_LINE.match(line)
        if not m or m.group(1).lower() not in _RECIPIENT_FIELDS:
            continue
        for addr in _ADDRESS.findall(m.group(2)):
            seen.setdefault(addr.lower().rstrip("."), None)
    return tuple(seen)


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


def _decode_if_needed(payload: bytes, headers: Message) -> bytes:
    """message/rfc822 must be 7bit/8bit/binary (RFC 2046); some gateways base64 it anyway."""
    cte = str(headers.get("Content-Transfer-Encoding", "")).strip().lower()
    if cte == "base64":
        try:
            return base64.b64decode(b"".join(payload.split()), validate=True)
        except (binascii.Error, ValueError):
            return payload
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
