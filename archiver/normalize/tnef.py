"""Outlook's TNEF wrapper (``winmail.dat``): the files and the message body inside it.

Outlook sends mail in its "rich text" mode as a MIME part of type ``application/ms-tnef``
named ``winmail.dat``; the attachments the sender chose, and often the only copy of the
body (as compressed RTF), are inside it.  To any other reader the message has no body and
one opaque attachment.  An archive must let a searcher find those file names and their
text, and the body, so the normalizer unpacks the part with ``tnefparse`` (and
``compressed_rtf`` for the RTF body) and lists each file as an attachment of its own,
next to ``winmail.dat`` itself (whose bytes are what the message holds).

Parsing is best-effort like the rest of the normalizer: a damaged stream gives what could
be read and an error, never an exception.  Nested TNEF (a message attached inside one) is
listed as an opaque file.
"""

from __future__ import annotations

import logging
import mimetypes
from dataclasses import dataclass, field

from tnefparse import TNEF

from archiver.normalize.attachments import extract_text
from archiver.normalize.text import decode_bytes, html_to_text

#: every TNEF stream starts with these bytes (0x223E9F78, little-endian).
SIGNATURE = b"\x78\x9f\x3e\x22"
#: tnefparse warns about checksums and unknown attributes on its own logger: routine for
#: real-world winmail.dat, and reported here as one parse error instead.
logging.getLogger("tnefparse").setLevel(logging.ERROR)


@dataclass(frozen=True, slots=True)
class Unpacked:
    """What a TNEF stream holds: (file name, bytes) of each attachment, and the body as text."""

    files: list[tuple[str, bytes]] = field(default_factory=list)
    body: str = ""
    error: str = ""


def is_tnef(payload: bytes) -> bool:
    """The signature decides, whatever the part's declared type or name."""
    return payload.startswith(SIGNATURE)


def unpack(payload: bytes, *, max_body_chars: int) -> Unpacked:
    """The files and body inside a TNEF stream.  Never raises."""
    try:
        tnef = TNEF(payload, do_checksum=False)
    except Exception as exc:  # a third-party parser on hostile input: anything may come out
        return Unpacked(error=f"winmail.dat (TNEF) could not be read: {type(exc).__name__}")
    files: list[tuple[str, bytes]] = []
    for n, att in enumerate(tnef.attachments, 1):
        data = att.data if isinstance(att.data, bytes) else b""
        try:
            name = str(att.long_filename() or "").strip("\x00").strip()
        except Exception:
            name = ""
        files.append((name or f"attachment-{n}", data))
    return Unpacked(files=files, body=_body(tnef, max_body_chars))


def content_type_of(filename: str) -> str:
    """TNEF gives no MIME types: guess from the name, as a mail client would."""
    return mimetypes.guess_type(filename, strict=False)[0] or "application/octet-stream"


def _body(tnef: TNEF, max_chars: int) -> str:
    """Plain body if there is one, else the HTML one as text, else the RTF one as text."""
    try:
        if tnef.body:
            return _text(tnef.body)[:max_chars]
        if tnef.htmlbody:
            return html_to_text(_text(tnef.htmlbody))[:max_chars]
        rtf = tnef.rtfbody
        if isinstance(rtf, bytes) and rtf.lstrip().startswith(b"{\\rtf"):
            text, _error = extract_text(rtf, "application/rtf", "body.rtf", max_chars=max_chars)
            return text
    except Exception:  # an undecodable body is left out; the files are still listed
        return ""
    return ""


def _text(value: object) -> str:
    if isinstance(value, str):
        return value.strip("\x00")
    if isinstance(value, bytes):
        return decode_bytes(value.rstrip(b"\x00"), None)[0]
    return ""
