"""Outlook's TNEF wrapper (``winmail.dat``): the files and the message body inside it.

Outlook sends mail in its "rich text" mode as a MIME part of type ``application/ms-tnef``
named ``winmail.dat``; the attachments the sender chose, and often the only copy of the
body (as compressed RTF), are inside it.  To any other reader the message has no body and
one opaque attachment.  An archive must let a searcher find those file names and their
text, and the body, so the normalizer lists each file inside as an attachment of its own,
next to ``winmail.dat`` itself (whose bytes are what the message holds).

The stream is read here, by hand, to MS-OXTNEF (attributes: level, id, length, data,
checksum; MAPI property lists inside two of them).  ``tnefparse`` was used first and
dropped: it trusts every count and length in the stream, so a few dozen hostile bytes made
it loop for minutes or fill gigabytes, and it copies the rest of the stream for every
attribute (quadratic time).  This reader checks every length against what is left, caps
the counts (``MAX_*``), never copies the stream, and does not descend into messages
nested inside (they are listed as files).  A damaged stream gives what could be read and
an error, never an exception.  The compressed-RTF body is expanded by ``compressed_rtf``,
for inputs of at most ``MAX_RTF_COMPRESSED`` bytes (its output is at most 8 times that).
"""

from __future__ import annotations

import codecs
import mimetypes
import struct
from dataclasses import dataclass, field

from archiver.normalize.attachments import extract_text
from archiver.normalize.text import html_to_text

#: every TNEF stream starts with these bytes (0x223E9F78, little-endian), then a 2-byte key.
SIGNATURE = b"\x78\x9f\x3e\x22"
#: files listed from one stream (the walker's own part limit applies too).
MAX_FILES = 500
#: attributes read from one stream.
MAX_ATTRIBUTES = 20_000
#: MAPI properties, and values of one multi-valued property, read from one attribute.
MAX_PROPERTIES = 5_000
#: the largest compressed RTF body that is expanded.
MAX_RTF_COMPRESSED = 256 * 1024

_LEVEL_MESSAGE, _LEVEL_ATTACHMENT = 1, 2
# attribute ids (low 16 bits of the attribute id, MS-OXTNEF 2.1.3.2)
_ATT_BODY = 0x800C
_ATT_ATTACH_DATA = 0x800F
_ATT_ATTACH_TITLE = 0x8010
_ATT_ATTACH_REND_DATA = 0x9002
_ATT_MAPI_PROPS = 0x9003
_ATT_ATTACHMENT = 0x9005
_ATT_OEM_CODEPAGE = 0x9007
# MAPI property ids and types (MS-OXPROPS, MS-OXCDATA 2.11.1)
_PR_BODY = 0x1000
_PR_RTF_COMPRESSED = 0x1009
_PR_BODY_HTML = 0x1013
_PR_INTERNET_CPID = 0x3FDE
_PR_DISPLAY_NAME = 0x3001
_PR_ATTACH_DATA = 0x3701
_PR_ATTACH_FILENAME = 0x3704
_PR_ATTACH_LONG_FILENAME = 0x3707
_PT_OBJECT, _PT_STRING8, _PT_UNICODE, _PT_BINARY = 0x000D, 0x001E, 0x001F, 0x0102
_MULTI = 0x1000
#: bytes a value of each fixed-size type takes in the stream (2-byte ones padded to 4).
_FIXED = {0x0000: 0, 0x0001: 0, 0x0002: 4, 0x0003: 4, 0x0004: 4, 0x0005: 8, 0x0006: 8, 0x0007: 8}
_FIXED |= {0x000A: 4, 0x000B: 4, 0x0014: 8, 0x0040: 8, 0x0048: 16}
_VARIABLE = frozenset({_PT_OBJECT, _PT_STRING8, _PT_UNICODE, _PT_BINARY})


class _Damaged(Exception):
    """The stream ends or contradicts itself at this point; what was read before stays."""


@dataclass(frozen=True, slots=True)
class Unpacked:
    """What a TNEF stream holds: (file name, bytes) of each attachment, and the body as text."""

    files: list[tuple[str, bytes]] = field(default_factory=list)
    body: str = ""
    error: str = ""


def is_tnef(payload: bytes) -> bool:
    """The signature decides, whatever the part's declared type or name."""
    return payload.startswith(SIGNATURE)


def content_type_of(filename: str) -> str:
    """TNEF gives no MIME types: guess from the name, as a mail client would."""
    return mimetypes.guess_type(filename, strict=False)[0] or "application/octet-stream"


def unpack(payload: bytes, *, max_body_chars: int, max_files: int = MAX_FILES) -> Unpacked:
    """The files and body inside a TNEF stream.  Never raises."""
    reader = _Reader(max(0, min(max_files, MAX_FILES)))
    error = ""
    try:
        reader.read(memoryview(payload))
    except _Damaged as exc:
        error = f"winmail.dat (TNEF) is damaged: {exc}"
    except (ValueError, LookupError, struct.error) as exc:
        error = f"winmail.dat (TNEF) could not be read: {type(exc).__name__}"
    if reader.problem and not error:
        error = f"winmail.dat (TNEF) is damaged: {reader.problem}"
    files = [a.file(n) for n, a in enumerate(reader.attachments, 1) if a.data is not None]
    if reader.dropped:
        error = error or f"winmail.dat (TNEF) holds more than {len(files)} files; the rest are not listed"
    body = _body(reader, max_body_chars) if max_body_chars > 0 else ""
    return Unpacked(files=files, body=body, error=error)


@dataclass
class _Attachment:
    title: str = ""
    long_name: str = ""
    short_name: str = ""
    display_name: str = ""
    #: None until the stream gives the file's bytes (an attachment without them is not listed).
    data: bytes | None = None

    def file(self, n: int) -> tuple[str, bytes]:
        name = self.long_name or self.title or self.short_name or self.display_name
        return (name.strip() or f"attachment-{n}", self.data or b"")


class _Reader:
    """One pass over a stream's attributes (MS-OXTNEF 2.1.3.1), every read bounds-checked."""

    def __init__(self, max_files: int) -> None:
        self.max_files = max_files
        self.codepage = "cp1252"
        self.internet_codepage = ""
        self.attachments: list[_Attachment] = []
        self.dropped = False
        self.plain: bytes | str | None = None
        self.html: bytes | str | None = None
        self.rtf: bytes | None = None
        #: the first damage found inside an attribute (reading went on with the next one).
        self.problem = ""

    def read(self, data: memoryview) -> None:
        if bytes(data[:4]) != SIGNATURE or len(data) < 6:
            raise _Damaged("no TNEF signature")
        at = 6  # signature and key
        current: _Attachment | None = None
        for _ in range(MAX_ATTRIBUTES):
            if at >= len(data):
                return
            if len(data) - at < 11:
                raise _Damaged(f"an attribute is cut short at byte {at}")
            level = data[at]
            (attr_id, length) = struct.unpack_from("<II", data, at + 1)
            start, end = at + 9, at + 9 + length
            if end + 2 > len(data):
                raise _Damaged(f"the attribute at byte {at} runs past the end of the stream")
            value = data[start:end]
            at = end + 2  # the checksum is not checked: a wrong one changes nothing we read
            ident = attr_id & 0xFFFF
            try:
                if level == _LEVEL_MESSAGE:
                    self._message_attribute(ident, value)
                elif level == _LEVEL_ATTACHMENT:
                    if ident == _ATT_ATTACH_REND_DATA or current is None:
                        current = self._new_attachment()
                    self._attachment_attribute(current, ident, value)
            except _Damaged as exc:  # inside one attribute: the next one is still where it says
                self.problem = self.problem or f"{exc} (attribute at byte {start - 9})"
        raise _Damaged(f"more than {MAX_ATTRIBUTES} attributes")

    def _new_attachment(self) -> _Attachment:
        if len(self.attachments) >= self.max_files:
            self.dropped = True
            return _Attachment()  # read and dropped, so that later attributes stay in step
        self.attachments.append(_Attachment())
        return self.attachments[-1]

    def _message_attribute(self, ident: int, value: memoryview) -> None:
        if ident == _ATT_OEM_CODEPAGE and len(value) >= 4:
            self.codepage = _codec(struct.unpack_from("<I", value)[0]) or self.codepage
        elif ident == _ATT_BODY:
            self.plain = bytes(value)
        elif ident == _ATT_MAPI_PROPS:
            for prop_id, prop_type, values in _properties(value):
                first = values[0] if values else None
                if first is None:
                    continue
                if prop_id == _PR_INTERNET_CPID and isinstance(first, int):
                    self.internet_codepage = _codec(first)
                elif prop_id == _PR_BODY and prop_type in (_PT_STRING8, _PT_UNICODE):
                    self.plain = first if isinstance(first, str | bytes) else None
                elif prop_id == _PR_BODY_HTML and isinstance(first, str | bytes):
                    self.html = first
                elif prop_id == _PR_RTF_COMPRESSED and isinstance(first, bytes):
                    self.rtf = first

    def _attachment_attribute(self, att: _Attachment, ident: int, value: memoryview) -> None:
        if ident == _ATT_ATTACH_TITLE:
            att.title = _decode8(bytes(value), self.codepage)
        elif ident == _ATT_ATTACH_DATA:
            if att.data is None:  # PR_ATTACH_DATA, when there is one, is the file itself
                att.data = bytes(value)
        elif ident == _ATT_ATTACHMENT:
            for prop_id, prop_type, values in _properties(value):
                first = values[0] if values else None
                if prop_id == _PR_ATTACH_DATA and isinstance(first, bytes):
                    # Wins over attAttachData, which for an embedded message (PT_OBJECT, whose
                    # value starts with a 16-byte interface id) is only a rendering stub.
                    att.data = first[16:] if prop_type == _PT_OBJECT else first
                elif isinstance(first, str | bytes) and prop_type in (_PT_STRING8, _PT_UNICODE):
                    text = first if isinstance(first, str) else _decode8(first, self.codepage)
                    if prop_id == _PR_ATTACH_LONG_FILENAME:
                        att.long_name = text
                    elif prop_id == _PR_ATTACH_FILENAME:
                        att.short_name = text
                    elif prop_id == _PR_DISPLAY_NAME:
                        att.display_name = text


def _properties(data: memoryview) -> list[tuple[int, int, list[int | str | bytes]]]:
    """A MAPI property list (MS-OXTNEF 2.1.3.4): (id, type, values) of each property.

    Values are ints for fixed-size types (the first 4 bytes; we only need code pages), str
    for PT_UNICODE, bytes for PT_STRING8, PT_BINARY and PT_OBJECT.  Counts are checked
    against the bytes left before anything is read, so no count can make this loop long.
    """
    out: list[tuple[int, int, list[int | str | bytes]]] = []
    at = 0
    budget = MAX_PROPERTIES  # values read in all, so that counts cannot multiply
    (count,) = _unpack("<I", data, at)
    at += 4
    if count > min(MAX_PROPERTIES, (len(data) - at) // 4):
        raise _Damaged(f"a MAPI property list claims {count} properties")
    for _ in range(count):
        prop_type, prop_id = _unpack("<HH", data, at)
        at += 4
        if prop_id >= 0x8000:  # a named property: GUID, kind, then an id or a name
            at += 16
            (kind,) = _unpack("<I", data, at)
            at += 4
            if kind == 0:
                at += 4
            else:
                (name_len,) = _unpack("<I", data, at)
                at += 4 + _padded(name_len)
        base, multi = prop_type & ~_MULTI, bool(prop_type & _MULTI)
        values: list[int | str | bytes] = []
        if base in _VARIABLE or multi:
            (n,) = _unpack("<I", data, at)
            at += 4
            if n > min(budget, max(0, len(data) - at)):
                raise _Damaged(f"a MAPI property claims {n} values")
        else:
            n = 1
        budget -= n
        if budget < 0:
            raise _Damaged(f"more than {MAX_PROPERTIES} MAPI values in one attribute")
        for _ in range(n):
            if base in _VARIABLE:
                (size,) = _unpack("<I", data, at)
                at += 4
                if at + size > len(data):
                    raise _Damaged("a MAPI property value runs past its attribute")
                raw = bytes(data[at : at + size])
                at += _padded(size)
                values.append(raw.decode("utf-16-le", "replace").rstrip("\x00") if base == _PT_UNICODE else raw)
            elif base in _FIXED:
                size = _FIXED[base]
                if at + size > len(data):
                    raise _Damaged("a MAPI property value runs past its attribute")
                if size >= 4:
                    values.append(struct.unpack_from("<I", data, at)[0])
                at += size
            else:
                raise _Damaged(f"unknown MAPI property type {prop_type:#06x}")
        out.append((prop_id, base, values))
    return out


def _unpack(fmt: str, data: memoryview, at: int) -> tuple[int, ...]:
    if at + struct.calcsize(fmt) > len(data):
        raise _Damaged("a MAPI property list is cut short")
    return struct.unpack_from(fmt, data, at)


def _padded(n: int) -> int:
    return (n + 3) & ~3


def _codec(codepage: int) -> str:
    """A Windows code page number as a Python codec name ("" when Python has none)."""
    names = {65001: "utf-8", 1200: "utf-16-le", 20127: "ascii", 28591: "latin-1"}
    name = names.get(codepage, f"cp{codepage}")
    try:
        return codecs.lookup(name).name
    except LookupError:
        return ""


def _decode8(raw: bytes, codec: str) -> str:
    return raw.rstrip(b"\x00").decode(codec or "cp1252", "replace")


def _body(reader: _Reader, max_chars: int) -> str:
    """Plain body if there is one, else the HTML one as text, else the RTF one as text."""
    if reader.plain:
        text = reader.plain if isinstance(reader.plain, str) else _decode8(reader.plain, reader.codepage)
        return text[:max_chars]
    if reader.html:
        codec = reader.internet_codepage or reader.codepage
        markup = reader.html if isinstance(reader.html, str) else _decode8(reader.html, codec)
        return html_to_text(markup)[:max_chars]
    if reader.rtf and len(reader.rtf) <= MAX_RTF_COMPRESSED:
        from compressed_rtf import decompress

        try:
            rtf = bytes(decompress(reader.rtf))
        except Exception:  # a damaged or hostile body: the files are still listed
            return ""
        text, _error = extract_text(rtf, "application/rtf", "body.rtf", max_chars=max_chars)
        return text
    return ""
