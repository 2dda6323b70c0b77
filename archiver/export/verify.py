"""Independent verifier of evidence bundles (docs/bundles.md).

It needs no archive, no passphrase and nothing else of this package: only the Python
standard library and the ``cryptography`` package (for Ed25519).  An auditor can copy this
one file and run ``python verify.py bundle.zip [--public-key FILE] [--json]``; that is why it
is one (long) file.

What it checks, and why each check matters (the names are those of CHECKS and the report):

1. ``zip``: every entry is a regular file with a safe relative name, no name appears twice
   or hides another once unzipped (case, Unicode normalisation, a file inside a file), every
   tool reads the names alike (no Info-ZIP Unicode Path field naming another file, non-ASCII
   names flagged UTF-8), and the file is exactly its entries, central directory and end
   record (no prepended entries, no trailing bytes, no comment).  The signature covers none
   of this, and unzip, streaming readers and review platforms do not read a zip the way
   Python's zipfile does;
2. ``signature`` and ``key``: ``signature.json`` carries the archive's Ed25519 public key, its
   fingerprint and a signature over the SHA-256 of ``manifest.json``'s exact bytes; with
   ``--public-key`` the key (and the archive) must be the ones the auditor got from the
   archive's owner (``archiver keys show --json``).  Without it the verdict is never a bare
   OK but ``SIGNATURE VALID, KEY NOT CONFIRMED``: anyone can sign a consistent bundle;
3. ``manifest``, ``rows``, ``extra``: every listed file, native and text has its size and
   hashes, the SHA-256 of a native is its message id and no message has two rows, nothing
   listed is missing and nothing unlisted is present; the Bates numbers are the prefix and
   ASCII digits, from 1, contiguous, at one width;
4. ``listings``: ``manifest.csv`` and ``loadfile.dat`` say exactly what ``manifest.json`` says;
5. ``proofs``: every journal record in ``proofs/journal.jsonl`` hashes to its ``hash``, the
   records of each message's transaction link from its ``ingest`` record to a ``commit``
   record whose signature (the archive's signed checkpoint) is valid, the ``ingest`` record
   names the native's SHA-256 and size, and the journal's ``init`` record names the key;
6. ``claims``: the header's count and Bates range, and custody.json's archive, case, key
   fingerprint, counts and Bates range, agree with the rows.

Every JSON document is read strictly (a key twice in one object is refused: parsers differ
on which value counts), and everything is read within bounds (MAX_* below), so a malformed
bundle or a zip bomb is a problem in one sentence, never a traceback or gigabytes of memory.

The format constants and the row flattening used by the writer live here, so the writer
and the verifier cannot drift apart.
"""

from __future__ import annotations

import argparse
import base64
import codecs
import csv
import hashlib
import io
import json
import os
import re
import stat
import struct
import sys
import unicodedata
import zipfile
import zlib
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

BUNDLE_FORMAT = "archiver-bundle/2"
#: bundles of format 1 prove each message's ingest record only, not its copies and filing.
FIRST_BUNDLE_FORMAT = "archiver-bundle/1"
SIGNATURE_CONTEXT = b"archiver/bundle/v1\x00"
CHECKPOINT_CONTEXT = b"archiver/checkpoint/v1\x00"
GENESIS = "0" * 64
MANIFEST_JSON = "manifest.json"
MANIFEST_CSV = "manifest.csv"
SIGNATURE = "signature.json"
CUSTODY = "custody.json"
LOADFILE = "loadfile.dat"
INDEX_HTML = "index.html"
PROOFS = "proofs/journal.jsonl"
#: files every bundle has besides natives and texts (the signature and manifest.json are not listed in it).
LISTED_FILES = (MANIFEST_CSV, LOADFILE, CUSTODY, INDEX_HTML, PROOFS)

#: (column name, row -> text) for manifest.csv and loadfile.dat, in order.
_J = "; ".join


def _distinct(values: Iterable[str]) -> str:
    return _J(dict.fromkeys(v for v in values if v))


COLUMNS: tuple[tuple[str, Callable[[dict[str, Any]], str]], ...] = (
    ("DocID", lambda r: r["doc_id"]),
    ("BegBates", lambda r: r["bates_begin"]),
    ("EndBates", lambda r: r["bates_end"]),
    ("BegAttach", lambda r: r["beg_attach"]),
    ("EndAttach", lambda r: r["end_attach"]),
    ("SHA256", lambda r: r["sha256"]),
    ("MessageID", lambda r: r["message_id"]),
    ("MIH", lambda r: r["mih"]),
    ("DateSent", lambda r: r["sent"]),
    ("DateReceived", lambda r: r["received"]),
    ("DateArchived", lambda r: r["archived_at"]),
    ("From", lambda r: r["from"]),
    ("To", lambda r: _J(r["to"])),
    ("CC", lambda r: _J(r["cc"])),
    ("BCC", lambda r: _J(r["bcc"])),
    ("Subject", lambda r: r["subject"]),
    ("Client", lambda r: r["client"]),
    ("Matters", lambda r: _J(r["matters"])),
    ("Custodian", lambda r: _distinct(p["account"] for p in r["provenance"])),
    ("Source", lambda r: _distinct(p["source"] for p in r["provenance"])),
    ("Folder", lambda r: _distinct(p["folder"] for p in r["provenance"])),
    ("Size", lambda r: str(r["size"])),
    ("MD5", lambda r: r["md5"]),
    ("SHA1", lambda r: r["sha1"]),
    ("NativePath", lambda r: r["native_path"]),
    ("TextPath", lambda r: r["text_path"]),
    ("TextSHA256", lambda r: r["text_sha256"]),
    ("Attachments", lambda r: _J(a["filename"] for a in r["attachments"])),
    ("IngestSeq", lambda r: str(r["ingest_seq"])),
    ("CommitSeq", lambda r: str(r["commit_seq"])),
)
COLUMN_NAMES = tuple(name for name, _ in COLUMNS)


def flat_row(row: dict[str, Any]) -> list[str]:
    """A manifest.json row as the values of one manifest.csv / loadfile.dat record."""
    return [fn(row) for _, fn in COLUMNS]


def canonical(obj: Any) -> bytes:
    """The journal's canonical JSON (docs/format.md 6.2)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def record_hash(rec: dict[str, Any]) -> str:
    """The hash a journal record must carry (docs/format.md 6.2); raises KeyError when a field is missing.

    Version 2 (``"v": 2``) hashes the record's header with the SHA-256 of its data, so the
    proofs can show a record that is not the exported messages' own without its data
    (``data_sha256`` instead).  Records without ``v`` are version 1 and hash their data
    whole.  Any other version gives "" and so never matches.
    """
    if "v" not in rec:
        return hashlib.sha256(
            canonical({k: rec[k] for k in ("actor", "data", "prev", "seq", "time", "type")})
        ).hexdigest()
    if type(rec["v"]) is not int or rec["v"] != 2 or ("data" in rec) == ("data_sha256" in rec):
        return ""
    body = {k: rec[k] for k in ("actor", "prev", "seq", "time", "type")}
    body["data_sha256"] = hashlib.sha256(canonical(rec["data"])).hexdigest() if "data" in rec else rec["data_sha256"]
    body["v"] = 2
    return hashlib.sha256(canonical(body)).hexdigest()


def checkpoint_message(archive_id: str, seq: int, prev: str, segment: int, end: int) -> bytes:
    """What a journal commit record's signature covers (docs/format.md 6.3)."""
    return CHECKPOINT_CONTEXT + f"{archive_id}\x00{seq}\x00{prev}\x00{segment}\x00{end}".encode()


def signature_message(archive_id: str, manifest_sha256: str) -> bytes:
    """What signature.json's signature covers: the archive and the SHA-256 of manifest.json."""
    return SIGNATURE_CONTEXT + archive_id.encode("utf-8") + b"\x00" + manifest_sha256.encode("ascii")


def fingerprint(public_key: bytes) -> str:
    """As `archiver keys show` prints it: SHA-256 of the raw key, hex, in groups of four."""
    digest = hashlib.sha256(public_key).hexdigest()
    return ":".join(digest[i : i + 4] for i in range(0, len(digest), 4))


def _valid(public_key: bytes, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except Exception:
        return False
    return True


#: Limits on what the verifier holds in memory, so that a hostile bundle (a zip bomb: a few
#: megabytes that inflate to gigabytes) is refused instead of exhausting the machine.  Each is
#: far above what the writer produces (signature.json ~500 bytes, a manifest header a few
#: kilobytes, a row or a journal record a few kilobytes, custody.json ~200 bytes per message
#: not exported).  Natives, texts and the listed files are only ever streamed.
MAX_SIGNATURE_BYTES = 64 << 10
MAX_CUSTODY_BYTES = 64 << 20
MAX_HEADER_BYTES = 1 << 20
MAX_WHOLE_MANIFEST_BYTES = 16 << 20
MAX_LINE_BYTES = 16 << 20
MAX_KEY_FILE_BYTES = 64 << 10


class JSONRefused(ValueError):
    """JSON that parsers read differently (duplicate keys, NaN), or nested too deeply to read."""


class _TooDeep(JSONRefused):
    pass


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise JSONRefused(f"the key {key!r} appears twice in one object")
        obj[key] = value
    return obj


def _no_constant(name: str) -> Any:
    raise JSONRefused(f"{name} is not a JSON value")


def _loads(data: bytes | str) -> Any:
    """Strict JSON, as every parser reads it alike; raises ValueError (never RecursionError).

    Python keeps the last of two equal keys and other parsers the first, so a manifest row or
    a signature with a key twice could show an auditor's own tool one value and this verifier
    another: refused.  ``NaN`` and ``Infinity`` are not JSON either.  Nesting deeper than the
    interpreter's recursion limit makes ``json`` raise RecursionError; that is bad input too.
    """
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        return json.loads(text, object_pairs_hook=_unique_pairs, parse_constant=_no_constant)
    except RecursionError:
        raise _TooDeep("it is nested too deeply") from None


@dataclass(frozen=True)
class ExpectedKey:
    """The key an auditor got from the archive's owner, and the archive it belongs to when the file says."""

    public_key: bytes
    archive_id: str | None = None


def _raw_key(text: bytes) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ValueError("its public_key is not the base64 of a 32-byte Ed25519 key")
    return raw


def _checked_key(key: bytes, archive_id: Any, algorithm: Any, given_fingerprint: Any) -> ExpectedKey:
    """A key file's fields, refused when they contradict each other (an edited or mixed-up file)."""
    if algorithm not in (None, "ed25519"):
        raise ValueError(f"it names the algorithm {algorithm!r}, not ed25519")
    if given_fingerprint is not None and given_fingerprint != fingerprint(key):
        raise ValueError("its fingerprint is not that of its public_key")
    if archive_id is not None and not (isinstance(archive_id, str) and archive_id):
        raise ValueError("its archive_id is not an archive id")
    return ExpectedKey(key, archive_id)


def load_expected_key(data: bytes) -> ExpectedKey:
    """The key (and archive id) from a key file: `keys show --json` or `keys show` output, base64, PEM or raw bytes.

    `archiver keys show` names the archive as well as the key; the verifier then checks that
    the bundle claims that archive, so a key file of one archive cannot confirm another's bundle.
    """
    text = data.strip()
    if text.startswith(b"{"):
        try:
            doc = _loads(text)
        except ValueError as exc:
            if len(data) == 32:
                return ExpectedKey(data)
            raise ValueError(f"it is not valid JSON ({exc})") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("public_key"), str):
            raise ValueError("the JSON holds no public_key")
        key = _raw_key(doc["public_key"].encode())
        return _checked_key(key, doc.get("archive_id"), doc.get("algorithm"), doc.get("fingerprint"))
    if text.startswith(b"-----BEGIN"):
        try:
            pem = serialization.load_pem_public_key(text)
        except Exception as exc:  # ValueError, or UnsupportedAlgorithm for a key type it does not know
            raise ValueError(f"the PEM file cannot be read ({exc})") from None
        if not isinstance(pem, Ed25519PublicKey):
            raise ValueError("the PEM file does not hold an Ed25519 public key")
        return ExpectedKey(pem.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))
    fields: dict[str, str] = {}
    for line in text.splitlines():  # `archiver keys show` without --json: "name: value" lines
        name, sep, value = line.partition(b":")
        if sep and name.strip().isascii():
            fields[name.strip().lower().decode()] = value.strip().decode("utf-8", "replace")
    if "public_key" in fields:
        key = _raw_key(fields["public_key"].encode())
        return _checked_key(key, fields.get("archive_id"), fields.get("algorithm"), fields.get("fingerprint"))
    try:
        return ExpectedKey(_raw_key(text))
    except ValueError:
        pass
    if len(data) == 32:
        return ExpectedKey(data)
    raise ValueError("not an Ed25519 public key (expected base64 of 32 bytes, PEM, or `keys show --json` output)")


#: What the verifier checks (docs/bundles.md section 8), in the order the report lists them:
#: (name, what it covers).  Every problem belongs to one of them.
CHECKS: tuple[tuple[str, str], ...] = (
    ("zip", "the zip: regular files with safe names, one per name, no bytes outside the entries"),
    ("signature", "signature.json: a valid Ed25519 signature over manifest.json"),
    ("key", "the signing key is the archive's (--public-key)"),
    ("manifest", "manifest.json: format, archive, and the hash of every listed file"),
    ("rows", "every row's native and text file, unique messages, Bates numbers from 1"),
    ("extra", "no file that the manifest does not list"),
    ("listings", "manifest.csv and loadfile.dat say what manifest.json says"),
    ("proofs", "journal proofs: a signed checkpoint of the archive covers every message"),
    ("claims", "the header's and custody.json's counts, Bates range, case and key agree with the rows"),
)
STATUS_OK = "OK"
STATUS_KEY_NOT_CONFIRMED = "SIGNATURE VALID, KEY NOT CONFIRMED"
STATUS_FAILED = "FAILED"


@dataclass
class Report:
    """Every problem found (a sentence each), notes for the auditor, counts, what was checked and what the bundle claims.

    A bundle without problems is only as trustworthy as its key: anyone can make a
    consistent, validly signed bundle with a key of their own.  So the verdict is ``OK`` only
    when the key was confirmed against one the auditor got from the archive's owner
    (``--public-key``); otherwise it is ``SIGNATURE VALID, KEY NOT CONFIRMED``.
    """

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    archive_id: str = ""
    public_key: str = ""
    fingerprint: str = ""
    limit: int = 500
    key_confirmed: bool = False
    #: what the bundle says of itself (manifest header, custody.json), for the auditor to read.
    claims: dict[str, Any] = field(default_factory=dict)
    #: the check (a name of CHECKS) that problems are counted against now.
    section: str = "zip"
    reached: set[str] = field(default_factory=set)
    failures: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def status(self) -> str:
        if self.problems:
            return STATUS_FAILED
        return STATUS_OK if self.key_confirmed else STATUS_KEY_NOT_CONFIRMED

    def begin(self, section: str) -> None:
        """Count problems from now on against the check ``section``, which has now been run."""
        self.section = section
        self.reached.add(section)

    def problem(self, text: str) -> None:
        self.reached.add(self.section)
        self.failures[self.section] = self.failures.get(self.section, 0) + 1
        if len(self.problems) < self.limit:
            self.problems.append(text)
        elif len(self.problems) == self.limit:
            self.problems.append("(further problems not listed)")

    def checklist(self) -> list[dict[str, Any]]:
        """Each check with its result: passed, failed, not confirmed (the key, without --public-key) or not checked."""
        out: list[dict[str, Any]] = []
        for name, what in CHECKS:
            failed = self.failures.get(name, 0)
            if failed:
                result = "failed"
            elif name == "key" and not self.key_confirmed:
                result = "not confirmed" if name in self.reached else "not checked"
            else:
                result = "passed" if name in self.reached else "not checked"
            out.append({"check": name, "what": what, "result": result, "problems": failed})
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "status": self.status,
            "key_confirmed": self.key_confirmed,
            "problems": self.problems,
            "notes": self.notes,
            "counts": self.counts,
            "archive_id": self.archive_id,
            "public_key": self.public_key,
            "fingerprint": self.fingerprint,
            "checks": self.checklist(),
            "claims": self.claims,
        }


def render(report: Report) -> list[str]:
    """The report for people: what the bundle claims, each check with its result, the problems, the verdict.

    The claims come first because they are what the auditor is asked to rely on (the case,
    the selection, how many messages, the Bates range); the checklist then says which of
    them the verifier could confirm, and the last line is the verdict.
    """
    c = report.claims
    lines = ["The bundle says (its signer's words; the checks below test them):"]

    def add(label: str, value: Any) -> None:
        if value not in (None, ""):
            lines.append(f"  {label}: {value}")

    add("case", c.get("case"))
    selection = c.get("selection")
    if isinstance(selection, dict):
        add("selection", f"{selection.get('kind')}: {selection.get('value')}")
    add("reason", c.get("reason"))
    when = [str(c["created"])] if c.get("created") else []
    when += [f"by {c['exported_by']}"] if c.get("exported_by") else []
    when += [f"on {c['host']}"] if c.get("host") else []
    add("exported", " ".join(when))
    if c.get("count") is not None:
        bates = f", Bates {c.get('bates_first')} to {c.get('bates_last')}" if c.get("bates_first") else ""
        add("messages", f"{c.get('count')}{bates}")
    add("not exported", c.get("not_exported"))
    add("archive", c.get("archive_id") or report.archive_id)
    if report.fingerprint:
        if report.key_confirmed:
            add("signing key", f"{report.fingerprint} (confirmed: the key given with --public-key)")
        else:
            add("signing key", f"{report.fingerprint} (NOT CONFIRMED: no --public-key was given)")
    lines.append("Checks:")
    marks = {"passed": "ok", "failed": "FAILED", "not confirmed": "NOT CONFIRMED", "not checked": "not checked"}
    for item in report.checklist():
        n = item["problems"]
        lines.append(f"  [{marks[item['result']]}] {item['what']}" + (f": {n} problem(s)" if n else ""))
    lines += [f"PROBLEM: {p}" for p in report.problems]
    lines += [f"note: {n}" for n in report.notes]
    counts = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in report.counts.items())
    verdict = report.status + (f" ({len(report.problems)} problems)" if report.problems else "")
    lines.append(verdict + (f": {counts}" if counts else ""))
    return lines


def _hashes(zf: zipfile.ZipFile, name: str) -> tuple[int, str, str, str]:
    md5, sha1, sha256, size = hashlib.md5(), hashlib.sha1(), hashlib.sha256(), 0
    with zf.open(name) as fh:
        while chunk := fh.read(1 << 20):
            size += len(chunk)
            md5.update(chunk)
            sha1.update(chunk)
            sha256.update(chunk)
    return size, md5.hexdigest(), sha1.hexdigest(), sha256.hexdigest()


def _unsafe(name: str) -> bool:
    parts = name.split("/")
    return (
        name.startswith("/")
        or "\\" in name
        or bool(re.match(r"^[A-Za-z]:", name))
        or any(p in ("", ".", "..") for p in parts)
        or any(ord(c) < 32 for c in name)
    )


@dataclass
class _Zip:
    """The open bundle: which entries are regular files that can be read, and which were refused unread."""

    zf: zipfile.ZipFile
    files: set[str]
    #: entries already named as problems (directories, links, encrypted, unknown compression): never opened.
    unreadable: set[str]

    def missing(self, name: str) -> bool:
        """Whether ``name`` is not in the zip at all (an unreadable entry was named already)."""
        return name not in self.files and name not in self.unreadable


#: what _read_json returns for a file it could not read (the problem is reported); JSON null is None.
_NOT_READ: Any = object()


def _read_json(z: _Zip, name: str, limit: int, report: Report) -> Any:
    """A whole JSON file of the bundle, or _NOT_READ; one larger than ``limit`` is refused unread (a zip bomb)."""
    if name not in z.files:
        if z.missing(name):
            report.problem(f"{name} is missing from the bundle.")
        return _NOT_READ
    size = z.zf.getinfo(name).file_size
    if size > limit:
        report.problem(
            f"{name} holds {size:,} bytes, more than the {limit:,} this verifier reads of it; it was not read."
        )
        return _NOT_READ
    try:
        with z.zf.open(name) as fh:
            return _loads(fh.read(limit + 1))
    except ValueError as exc:
        report.problem(f"{name} is not valid JSON ({exc}).")
    return _NOT_READ


def _lines(fh: IO[bytes], limit: int) -> Iterator[bytes | None]:
    """The lines of ``fh`` (each with its LF); None stands for a line longer than ``limit``, whose bytes are skipped.

    Reading a line must not take unbounded memory: a zip bomb's "line" is gigabytes of
    spaces.  A line is held as its pieces until its end is found, and dropped as soon as
    it is longer than ``limit``, so at most about ``limit`` bytes are held.
    """
    pieces: list[bytes] = []
    held = 0
    skipping = False
    while chunk := fh.read(1 << 20):
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            if skipping:
                skipping = False
            elif held + end + 1 - start > limit:
                yield None
            else:
                yield b"".join([*pieces, chunk[start : end + 1]]) if pieces else chunk[start : end + 1]
            pieces, held = [], 0
            start = end + 1
        if start < len(chunk) and not skipping:
            if held + len(chunk) - start > limit:
                yield None
                skipping = True
                pieces, held = [], 0
            else:
                pieces.append(chunk[start:])
                held += len(chunk) - start
    if pieces:
        yield b"".join(pieces)


def _text_lines(fh: IO[bytes], limit: int) -> Iterator[str]:
    """The lines of a UTF-8 text file (a leading byte-order mark dropped); ValueError for one longer than ``limit``."""
    first = True
    for line in _lines(fh, limit):
        if line is None:
            raise ValueError(f"a line is longer than {limit:,} bytes")
        if first and line.startswith(codecs.BOM_UTF8):
            line = line[len(codecs.BOM_UTF8) :]
        first = False
        yield line.decode("utf-8")


# -- the zip itself --------------------------------------------------------------------------
# Python's zipfile, like most readers, goes by the central directory at the end of the file
# and takes its names from the entries' name fields.  Other tools do not: Info-ZIP unzip
# prefers an Info-ZIP Unicode Path extra field's name, decodes names without the UTF-8 flag
# as it likes, prints an archive comment as a banner; streaming readers go by the local
# headers from offset 0.  Nothing of that is covered by the signature, so the verifier
# refuses whatever would let another tool see other files or names than it checked.

_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")
_END = struct.Struct("<4sHHHHIIH")
_END64_LOCATOR = struct.Struct("<4sIQI")
_END64 = struct.Struct("<4sQHHIIQQQQ")
_UTF8_FLAG = 0x800
_ENCRYPTED_FLAGS = 0x41  # bit 0: encrypted; bit 6: strong encryption
_DESCRIPTOR_FLAG = 0x08
_READABLE_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
#: extra fields that carry no name and no content: ZIP64 sizes, NTFS times, extended timestamp, Unix owner.
_HARMLESS_EXTRA = frozenset({0x0001, 0x000A, 0x5455, 0x7875})
_UNICODE_PATH_EXTRA = 0x7075
_DOS_DIRECTORY = 0x10


class _LayoutError(Exception):
    """The zip's records are not where they must be; the sentence says how."""


def _raw_name(info: zipfile.ZipInfo) -> bytes:
    """The entry's name as stored (zipfile decodes UTF-8 when flagged, else cp437, which round-trips)."""
    return info.orig_filename.encode("utf-8" if info.flag_bits & _UTF8_FLAG else "cp437")


def _extra_fields(extra: bytes) -> list[tuple[int, bytes]] | None:
    """The (id, data) fields of an extra block, or None when it is malformed."""
    fields: list[tuple[int, bytes]] = []
    i = 0
    while i < len(extra):
        if i + 4 > len(extra):
            return None
        ident, size = struct.unpack_from("<HH", extra, i)
        if i + 4 + size > len(extra):
            return None
        fields.append((ident, extra[i + 4 : i + 4 + size]))
        i += 4 + size
    return fields


def _unicode_path(data: bytes, raw_name: bytes) -> str | None:
    """The name an Info-ZIP Unicode Path field gives, or None when it does not belong to ``raw_name``."""
    if len(data) < 5 or data[0] != 1 or int.from_bytes(data[1:5], "little") != zlib.crc32(raw_name):
        return None
    try:
        return data[5:].decode("utf-8")
    except UnicodeDecodeError:
        return None


def _extra_problems(extra: bytes, raw_name: bytes, name: str) -> list[str]:
    """How an entry's extra fields could make an unzip tool see another name or file than ``name`` (clauses)."""
    fields = _extra_fields(extra)
    if fields is None:
        return ["has malformed extra fields"]
    out: list[str] = []
    for ident, data in fields:
        if ident == _UNICODE_PATH_EXTRA:
            other = _unicode_path(data, raw_name)
            if other is None:
                out.append("has an Info-ZIP Unicode Path field that does not belong to its name")
            elif other != name:
                out.append(f"has an Info-ZIP Unicode Path field naming {other!r}: unzip would write it under that name")
        elif ident not in _HARMLESS_EXTRA:
            out.append(
                f"has an extra field of type 0x{ident:04x}, which bundles never carry "
                "(unzip tools may take another name or attributes from it)"
            )
    return out


def _entry_kind(info: zipfile.ZipInfo) -> str:
    """'file', 'directory', 'symbolic link' or 'special file', from the external attributes and the name."""
    if info.create_system == 3:  # Unix: the high 16 bits are st_mode
        kind = stat.S_IFMT(info.external_attr >> 16)
        if kind == stat.S_IFLNK:
            return "symbolic link"
        if kind == stat.S_IFDIR:
            return "directory"
        if kind not in (0, stat.S_IFREG):
            return "special file"
    if info.filename.endswith("/") or info.external_attr & _DOS_DIRECTORY:
        return "directory"
    return "file"


def _check_entries(zf: zipfile.ZipFile, report: Report) -> _Zip:
    """Every entry must be a regular file, with a safe name that every unzip tool reads alike, and readable.

    The writer puts only regular files in a bundle, with names unique ignoring case and
    Unicode normalisation, and never a file where another entry needs a folder (see
    policies/naming.UniqueNamer).  Anything else would, once unzipped, put a file under
    another name, hide a listed file behind a folder or a link, or leave bytes unchecked.
    """
    files: set[str] = set()
    unreadable: set[str] = set()
    paths: dict[str, str] = {}  # NFC-casefolded path -> the first entry name with it
    not_folders: dict[str, str] = {}  # the same, for entries that are not directories
    for info in zf.infolist():
        name = info.filename
        shown = repr(name)
        kind = _entry_kind(info)
        path = name[:-1] if name.endswith("/") else name
        if kind != "file":
            report.problem(
                f"The zip entry {shown} is a {kind}; a bundle holds only regular files "
                "(unzipped, it would take the place of whatever file has its name)."
            )
        if info.orig_filename != name:
            report.problem(f"The zip entry {info.orig_filename!r} has a NUL character in its name.")
        elif _unsafe(path or "/"):
            report.problem(f"The zip entry {shown} is not a safe relative path.")
        raw = _raw_name(info)
        if not info.flag_bits & _UTF8_FLAG and not raw.isascii():
            report.problem(
                f"The zip entry {shown} has a non-ASCII name not marked as UTF-8 (general purpose bit 11): "
                "unzip tools decode such a name each their own way, not as the manifest gives it."
            )
        for clause in _extra_problems(info.extra, raw, name):
            report.problem(f"The zip entry {shown} {clause}.")
        if info.comment:
            report.problem(f"The zip entry {shown} carries a comment, which nothing signs.")
        if info.flag_bits & _ENCRYPTED_FLAGS:
            report.problem(
                f"The zip entry {shown} is encrypted; a bundle's entries never are, and it cannot be checked."
            )
            unreadable.add(name)
        elif info.compress_type not in _READABLE_METHODS:
            report.problem(
                f"The zip entry {shown} uses compression method {info.compress_type}, which bundles never use "
                "(only stored and deflate); it cannot be checked."
            )
            unreadable.add(name)
        elif kind != "file":
            unreadable.add(name)
        else:
            files.add(name)
        key = unicodedata.normalize("NFC", path).casefold()
        if kind != "directory":
            not_folders.setdefault(key, name)
        seen = paths.get(key)
        if seen is None:
            paths[key] = name
        elif seen == name:
            report.problem(f"The zip holds two entries named {shown}: one hides the other.")
        else:
            report.problem(
                f"The zip entries {seen!r} and {shown} are the same path once unzipped (they differ only in "
                "case, Unicode normalisation or a trailing '/'): one hides the other."
            )
    for key, name in paths.items():
        parts = key.split("/")
        for i in range(1, len(parts)):
            above = not_folders.get("/".join(parts[:i]))
            if above is not None:
                report.problem(f"The zip entry {name!r} lies inside {above!r}, which is a file: it cannot be unzipped.")
                break
    files -= unreadable  # a readable entry that shares its name with an unreadable one is not read either
    return _Zip(zf, files, unreadable)


def _read_at(fh: IO[bytes], offset: int, size: int) -> bytes:
    fh.seek(offset)
    data = fh.read(size)
    if len(data) != size:
        raise _LayoutError(f"The zip file ends inside a record at offset {offset}.")
    return data


def _check_layout(fh: IO[bytes], zf: zipfile.ZipFile, report: Report) -> None:
    """Every byte of the file must be an entry, the central directory or the end record, each where it belongs.

    Bytes in front of the first entry are what a streaming reader meets first (a forged
    native there is invisible to a reader that goes by the central directory), an archive
    comment is unsigned text unzip prints as a banner, and bytes after the end record or
    between entries are data nothing checks.
    """
    try:
        for text in _layout_problems(fh, zf):
            report.problem(text)
    except _LayoutError as exc:
        report.problem(str(exc))


def _layout_problems(fh: IO[bytes], zf: zipfile.ZipFile) -> Iterator[str]:
    end = fh.seek(0, io.SEEK_END) - _END.size
    if end < 0:
        raise _LayoutError("The file is too short to be a zip.")
    sig, disk, cd_disk, here, total, cd_size, cd_offset, comment = _END.unpack(_read_at(fh, end, _END.size))
    if sig != b"PK\x05\x06" or comment:
        if zf.comment:
            yield (
                f"The zip carries an archive comment ({len(zf.comment)} bytes): text that nothing signs and that "
                "unzip prints as if it were part of the bundle."
            )
        else:
            yield "The zip file has bytes after its end record, which no entry accounts for."
        return
    if end >= _END64_LOCATOR.size and _read_at(fh, end - _END64_LOCATOR.size, 4) == b"PK\x06\x07":
        _sig, z_disk, z_offset, z_disks = _END64_LOCATOR.unpack(_read_at(fh, end - _END64_LOCATOR.size, 20))
        start = end - _END64_LOCATOR.size - _END64.size
        if start < 0 or z_offset != start or z_disk or z_disks != 1:
            raise _LayoutError("The zip file's ZIP64 end record is not where its locator says.")
        sig, size64, _made, _need, disk, cd_disk, here, total, cd_size, cd_offset = _END64.unpack(
            _read_at(fh, start, _END64.size)
        )
        if sig != b"PK\x06\x06" or size64 != _END64.size - 12:
            raise _LayoutError("The zip file's ZIP64 end record is malformed.")
        end = start
    infos = zf.infolist()
    if disk or cd_disk or here != total:
        raise _LayoutError("The zip file claims to span several disks.")
    if total != len(infos):
        raise _LayoutError(f"The zip's end record counts {total} entries; its central directory lists {len(infos)}.")
    if cd_offset + cd_size != end:
        extra = end - cd_size - cd_offset
        raise _LayoutError(
            f"The zip file has {extra} bytes in front of its entries that the central directory does not "
            "account for (data put before the zip, which streaming readers take for its first entries)."
            if extra > 0
            else "The zip's central directory is not where its end record puts it."
        )
    pos = 0
    for info in sorted(infos, key=lambda i: i.header_offset):
        if info.header_offset != pos:
            raise _LayoutError(
                f"The zip file has {info.header_offset - pos} bytes at offset {pos} that belong to no entry."
                if info.header_offset > pos
                else f"The zip's entries overlap at offset {info.header_offset}."
            )
        pos = yield from _local_entry(fh, info)
    if pos != cd_offset:
        raise _LayoutError(
            f"The zip file has {cd_offset - pos} bytes after its last entry that belong to no entry."
            if cd_offset > pos
            else "The zip's last entry runs into its central directory."
        )


def _local_entry(fh: IO[bytes], info: zipfile.ZipInfo) -> Generator[str, None, int]:
    """Problems of one entry's local header against its central directory record; returns where the entry ends."""
    off = info.header_offset
    shown = repr(info.filename)
    sig, _need, flags, method, _time, _date, crc, csize, usize, nlen, xlen = _LOCAL_HEADER.unpack(
        _read_at(fh, off, _LOCAL_HEADER.size)
    )
    if sig != b"PK\x03\x04":
        raise _LayoutError(f"The zip has no local header where its central directory puts {shown}.")
    name = _read_at(fh, off + _LOCAL_HEADER.size, nlen)
    extra = _read_at(fh, off + _LOCAL_HEADER.size + nlen, xlen)
    if name != _raw_name(info):
        yield f"The local header of the zip entry {shown} names it {name!r}: a reader of local headers sees another file."
    if flags != info.flag_bits or method != info.compress_type:
        yield f"The local header of the zip entry {shown} gives other flags or another compression method."
    central = _extra_problems(info.extra, _raw_name(info), info.filename)  # named by _check_entries already
    for clause in _extra_problems(extra, name, info.filename):
        if clause not in central:
            yield f"The zip entry {shown} {clause} (in its local header)."
    zip64 = next((data for ident, data in _extra_fields(extra) or [] if ident == 0x0001), None)
    data_start = off + _LOCAL_HEADER.size + nlen + xlen
    tail = 0
    if flags & _DESCRIPTOR_FLAG:  # CRC and sizes follow the data
        at = data_start + info.compress_size
        skip = 4 if _read_at(fh, at, 4) == b"PK\x07\x08" else 0
        layout = struct.Struct("<IQQ" if zip64 is not None else "<III")
        crc, csize, usize = layout.unpack(_read_at(fh, at + skip, layout.size))
        tail = skip + layout.size
    elif zip64 is not None and 0xFFFFFFFF in (usize, csize):
        sizes, used = [usize, csize], 0
        for k in (0, 1):
            if sizes[k] == 0xFFFFFFFF:
                if len(zip64) < used + 8:
                    raise _LayoutError(f"The ZIP64 field of the zip entry {shown} is malformed.")
                sizes[k] = int.from_bytes(zip64[used : used + 8], "little")
                used += 8
        usize, csize = sizes
    if (crc, csize, usize) != (info.CRC, info.compress_size, info.file_size):
        yield f"The local header of the zip entry {shown} gives another checksum or size than the central directory."
    return int(data_start + info.compress_size + tail)


#: what a malformed bundle can make the standard library raise while it is read; each becomes
#: a problem (the verifier never fails with a traceback, and never passes a bundle it could not read).
_MALFORMED: tuple[type[BaseException], ...] = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    OSError,
    EOFError,
    ValueError,
    LookupError,
    TypeError,
    AttributeError,
    RuntimeError,  # also RecursionError and NotImplementedError (zipfile: unknown compression)
    MemoryError,
    struct.error,
    zlib.error,
)


def verify_bundle(
    path: str | os.PathLike[str] | IO[bytes], public_key: bytes | None = None, *, archive_id: str | None = None
) -> Report:
    """Check a bundle; every problem found is a sentence in the report (never raises for bad input).

    ``public_key`` is the archive's key as the auditor got it from the archive's owner, and
    ``archive_id`` the archive it belongs to (both from `archiver keys show --json`): without
    the key, the report can at best say the bundle is consistent and signed by the key it
    carries, which anyone can arrange.
    """
    report = Report()
    try:
        fh: IO[bytes] = open(path, "rb") if isinstance(path, (str, os.PathLike)) else path  # noqa: SIM115
    except OSError as exc:
        report.problem(f"The bundle cannot be read: {exc.strerror or exc}.")
        return report
    try:
        try:
            zf = zipfile.ZipFile(fh)
        except _MALFORMED as exc:
            report.problem(f"The bundle cannot be opened as a zip file: {exc or type(exc).__name__}.")
            return report
        with zf:
            try:
                _verify(fh, zf, public_key, archive_id, report)
            except _MALFORMED as exc:
                report.problem(
                    f"The bundle is damaged or malformed and was not checked further: {exc or type(exc).__name__}."
                )
    finally:
        if fh is not path:
            fh.close()
    return report


def _verify(
    fh: IO[bytes], zf: zipfile.ZipFile, expected_key: bytes | None, expected_archive: str | None, report: Report
) -> None:
    report.begin("zip")
    _check_layout(fh, zf, report)
    z = _check_entries(zf, report)
    report.begin("signature")
    _verify_signature(z, expected_key, expected_archive, report)
    report.begin("manifest")
    opened = _open_manifest(z, report)
    if opened is None:
        return
    manifest, rows = opened
    _note_claims(manifest, None, report)
    if manifest.get("format") not in (FIRST_BUNDLE_FORMAT, BUNDLE_FORMAT):
        report.problem(
            f"manifest.json has format {manifest.get('format')!r}; this verifier reads {FIRST_BUNDLE_FORMAT} "
            f"and {BUNDLE_FORMAT}."
        )
        return
    if report.archive_id and manifest.get("archive_id") != report.archive_id:
        report.problem("manifest.json names another archive than signature.json.")
    expected, intact = _verify_listed(z, manifest, report)
    prefix = manifest.get("bates_prefix", "")
    if not isinstance(prefix, str):
        report.problem("manifest.json's bates_prefix is not text.")
        prefix = ""
    # One pass over the rows: each is checked against its files, its manifest.csv and
    # loadfile.dat records and the proofs as it is read, so memory does not grow with them.
    report.begin("proofs")
    proofs = _Proofs.load(z, manifest, report)
    report.begin("listings")
    listings = [x for x in (_Listing.open(z, MANIFEST_CSV, report), _Listing.open(z, LOADFILE, report)) if x]
    bates = _Bates(prefix)
    messages: set[str] = set()
    count = 0
    try:
        for count, row in enumerate(rows, 1):
            report.begin("rows")
            if not _verify_row(z, row, count, expected, bates, messages, report):
                bates.skip(count)
                for listing in listings:  # keep them in step with the rows
                    listing.skip(report)
                continue
            report.begin("listings")
            for listing in listings:
                listing.check(row, count, report)
            if proofs is not None:
                report.begin("proofs")
                proofs.check(row, report)
    finally:
        report.begin("listings")
        for listing in listings:
            listing.finish(count, report)
    report.begin("rows")
    bates.finish(count, report)
    report.begin("extra")
    for name in sorted(z.files - expected):
        report.problem(f"{name} is in the bundle but not in the manifest (an added file).")
    if proofs is not None:
        report.begin("proofs")
        proofs.finish(report)
    report.begin("claims")
    _check_claims(z, manifest, count, bates, CUSTODY in intact, report)
    report.counts["messages"] = count
    report.counts["files"] = len(z.files)


def _verify_listed(z: _Zip, manifest: dict[str, Any], report: Report) -> tuple[set[str], set[str]]:
    """Check every file manifest.json lists by size, then SHA-256.

    Returns the names listed (plus manifest.json and signature.json) and those of them that
    are as listed.  The size is compared first, from the zip's directory, so a listed file
    padded to gigabytes is refused without being inflated.
    """
    expected: set[str] = {MANIFEST_JSON, SIGNATURE}
    intact: set[str] = set()
    files = manifest.get("files", [])
    if not isinstance(files, list):
        report.problem("manifest.json's files is not a list.")
        files = []
    for n, entry in enumerate(files, 1):
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("path"), str)
            and type(entry.get("size")) is int
            and isinstance(entry.get("sha256"), str)
        ):
            report.problem(f"manifest.json's files entry {n} is not an object with a path, a size and a sha256.")
            continue
        name, size = entry["path"], entry["size"]
        if name in expected:
            report.problem(f"manifest.json lists {name} twice.")
            continue
        expected.add(name)
        if name not in z.files:
            if z.missing(name):
                report.problem(f"{name} is listed in the manifest but missing from the bundle.")
            continue
        actual = z.zf.getinfo(name).file_size
        if actual != size:
            report.problem(f"{name} was changed: it holds {actual:,} bytes; the manifest lists {size:,}.")
        elif _hashes(z.zf, name)[3] != entry["sha256"]:
            report.problem(f"{name} was changed: its SHA-256 does not match the manifest.")
        else:
            intact.add(name)
    for required in LISTED_FILES:
        if required not in expected:
            report.problem(f"manifest.json does not list {required}.")
    return expected, intact


#: the line before the first row, and the line after the last, in the writer's manifest.json
#: (export/bundle.py writes them from these constants).
ROWS_START = b' "messages": ['
ROWS_END = b" ]"


def _open_manifest(z: _Zip, report: Report) -> tuple[dict[str, Any], Iterator[Any]] | None:
    """manifest.json's header and its rows: streamed in the writer's layout (a row a line), else loaded whole.

    Streaming keeps a bundle of 100,000 messages verifiable in bounded memory; any other
    layout (a re-serialised manifest, which also breaks the signature) is read whole, so
    the rows are the same either way, up to MAX_WHOLE_MANIFEST_BYTES.
    """
    if MANIFEST_JSON not in z.files:
        if z.missing(MANIFEST_JSON):
            report.problem(f"{MANIFEST_JSON} is missing from the bundle.")
        return None
    header = _streamable_header(z.zf)
    if header is not None:
        return header, _stream_rows(z.zf)
    manifest = _read_json(z, MANIFEST_JSON, MAX_WHOLE_MANIFEST_BYTES, report)
    if not isinstance(manifest, dict):
        if manifest is not _NOT_READ:
            report.problem("manifest.json is not a JSON object.")
        return None
    rows = manifest.get("messages")
    if not isinstance(rows, list):
        report.problem("manifest.json has no list of messages.")
        return None
    return manifest, iter(rows)


def _streamable_header(zf: zipfile.ZipFile) -> dict[str, Any] | None:
    """The header object when manifest.json has the writer's layout exactly, else None.

    Lines are read with a bound (MAX_LINE_BYTES, the header MAX_HEADER_BYTES in all): a
    manifest that exceeds them is not in the writer's layout.
    """
    head: list[bytes] = []
    head_size = 0
    state = "header"
    last_row = b""
    with zf.open(MANIFEST_JSON) as fh:
        for raw in _lines(fh, MAX_LINE_BYTES):
            if raw is None:
                return None
            line = raw[:-1] if raw.endswith(b"\n") else raw
            if state == "header":
                if line == ROWS_START:
                    state = "rows"
                else:
                    head_size += len(raw)
                    if head_size > MAX_HEADER_BYTES:
                        return None
                    head.append(raw)
            elif state == "rows":
                if line == ROWS_END:
                    if last_row.endswith(b","):
                        return None
                    state = "close"
                elif not line.startswith(b"{") or (last_row and not last_row.endswith(b"},")):
                    return None
                else:
                    last_row = line
            elif state == "close":
                if line != b"}":
                    return None
                state = "end"
            elif line.strip():
                return None
    if state != "end" or (last_row and not last_row.endswith(b"}")):
        return None
    try:
        doc = _loads(b"".join(head).rstrip().rstrip(b",") + b"\n}")
    except ValueError:
        return None
    return doc if isinstance(doc, dict) and "messages" not in doc else None


@dataclass(frozen=True)
class _BadRow:
    """A manifest row that could not be read, and why."""

    reason: str


def _stream_rows(zf: zipfile.ZipFile) -> Iterator[Any]:
    """The rows of a manifest whose layout _streamable_header accepted (a row that cannot be read: a _BadRow)."""
    with zf.open(MANIFEST_JSON) as fh:
        lines = _lines(fh, MAX_LINE_BYTES)
        for raw in lines:
            if raw is not None and raw.rstrip(b"\n") == ROWS_START:
                break
        for raw in lines:
            if raw is None:
                yield _BadRow(f"it is longer than {MAX_LINE_BYTES:,} bytes")
                continue
            line = raw.rstrip(b"\n")
            if line == ROWS_END:
                return
            try:
                yield _loads(line[:-1] if line.endswith(b",") else line)
            except ValueError as exc:
                yield _BadRow(str(exc))


def _verify_signature(z: _Zip, expected_key: bytes | None, expected_archive: str | None, report: Report) -> None:
    """signature.json: a version-1 Ed25519 signature of manifest.json, consistent in every field; the key confirmed.

    ``fingerprint`` is what an auditor compares by eye with the owner's, so it must be the
    fingerprint of the key the bundle really carries, not just any text.
    """
    sig = _read_json(z, SIGNATURE, MAX_SIGNATURE_BYTES, report)
    if MANIFEST_JSON not in z.files:
        report.problem("The signature cannot be checked: manifest.json is missing or unreadable.")
        return
    manifest_sha256 = _hashes(z.zf, MANIFEST_JSON)[3]
    if sig is _NOT_READ:
        return
    if not isinstance(sig, dict):
        report.problem("signature.json is not a JSON object.")
        return
    try:
        key = base64.b64decode(str(sig.get("public_key", "")), validate=True)
        signature = base64.b64decode(str(sig.get("signature", "")), validate=True)
    except ValueError:
        report.problem("signature.json holds a malformed public key or signature.")
        return
    if not isinstance(sig.get("archive_id"), str):
        report.problem("signature.json does not name the archive.")
    report.archive_id = str(sig.get("archive_id", ""))
    report.public_key = base64.b64encode(key).decode()
    report.fingerprint = fingerprint(key) if len(key) == 32 else ""
    if sig.get("algorithm") != "ed25519" or len(key) != 32:
        report.problem("signature.json does not hold an Ed25519 public key.")
        return
    if type(sig.get("format")) is not int or sig.get("format") != 1 or sig.get("signed_file") != MANIFEST_JSON:
        report.problem("signature.json is not a format 1 signature of manifest.json.")
    if sig.get("fingerprint") != report.fingerprint:
        report.problem(
            f"signature.json gives the fingerprint {sig.get('fingerprint')!r}, but the key it holds has the "
            f"fingerprint {report.fingerprint}."
        )
    report.begin("key")
    if expected_key is not None:
        confirmed = True
        if expected_key != key:
            confirmed = False
            report.problem(
                f"The bundle was signed with key {fingerprint(key)}, not the expected key {fingerprint(expected_key)}."
            )
        if expected_archive is not None and expected_archive != report.archive_id:
            confirmed = False
            report.problem(
                f"The bundle says it is from archive {report.archive_id!r}, not from the expected archive "
                f"{expected_archive!r} (the key file's archive_id)."
            )
        report.key_confirmed = confirmed
    else:
        report.notes.append(
            f"Signing key fingerprint {report.fingerprint}: the key is NOT CONFIRMED. Compare it with "
            "`archiver keys show` from the archive's owner, or pass --public-key; anyone can sign a "
            "consistent bundle with a key of their own."
        )
    report.begin("signature")
    if sig.get("manifest_sha256") != manifest_sha256:
        report.problem("manifest.json was changed: its SHA-256 differs from the one signed.")
    if not _valid(key, signature, signature_message(report.archive_id, manifest_sha256)):
        report.problem("The signature over manifest.json is not valid for the included public key.")


_ROW_KEYS = frozenset(
    {"doc_id", "sha256", "size", "md5", "sha1", "native_path", "text_path", "text_sha256", "ingest_seq"}
)
#: row fields that must be text (size must be an integer): the checks compare and look them up.
_ROW_TEXT = ("doc_id", "sha256", "md5", "sha1", "native_path", "text_path", "text_sha256")
_DIGITS = re.compile(r"[0-9]+")


class _Bates:
    """Checks that DocIDs are the bundle's prefix and ASCII digits, numbered 1, 2, 3... at one width.

    The prefix is matched literally (a prefix may end in a digit, e.g. SMITH2024), and the
    width must be what the writer uses: max(6, digits of the count).
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.next = 1  # the number the next row must have
        self.width: int | None = None
        #: the first and last rows' DocIDs; None when that row could not be read.
        self.first_doc: str | None = ""
        self.last_doc: str | None = ""

    def check(self, doc: str, i: int, report: Report) -> None:
        if i == 1:
            self.first_doc = doc
        self.last_doc = doc
        digits = doc[len(self.prefix) :] if doc.startswith(self.prefix) else ""
        if not _DIGITS.fullmatch(digits):
            report.problem(f"manifest row {i}: DocID {doc!r} is not a Bates number with prefix {self.prefix!r}.")
            return
        number = int(digits)
        if self.width is None:
            self.width = len(digits)
        elif len(digits) != self.width:
            report.problem(
                f"manifest row {i}: Bates number {doc} has {len(digits)} digits; the first has {self.width}."
            )
        if number != self.next:
            if i == 1:
                report.problem(f"manifest row {i}: the Bates numbers start at {doc}, not at 1.")
            else:
                report.problem(f"manifest row {i}: Bates number {doc} does not follow the previous one.")
        self.next = number + 1

    def skip(self, i: int) -> None:
        """Row ``i`` could not be read; it takes a number too, and the rows after it are checked as if it had it."""
        self.next += 1
        if i == 1:
            self.first_doc = None
        self.last_doc = None

    def finish(self, count: int, report: Report) -> None:
        want = max(6, len(str(count)))
        if self.width is not None and self.width != want:
            report.problem(
                f"The Bates numbers have {self.width} digits; a bundle of {count} messages numbers with {want}."
            )


def _verify_row(
    z: _Zip,
    row: Any,
    i: int,
    expected: set[str],
    bates: _Bates,
    messages: set[str],
    report: Report,
) -> bool:
    """Check one manifest row against its native and text files; False when it cannot be checked further."""
    if isinstance(row, _BadRow):
        report.problem(f"manifest.json row {i} cannot be read: {row.reason}.")
        return False
    if not isinstance(row, dict):
        report.problem(f"manifest.json row {i} is not a JSON object.")
        return False
    missing = _ROW_KEYS - row.keys()
    if missing:
        report.problem(f"manifest.json row {i} lacks {', '.join(sorted(missing))}.")
        return False
    wrong = [k for k in _ROW_TEXT if not isinstance(row[k], str)] + ([] if type(row["size"]) is int else ["size"])
    if wrong:
        report.problem(f"manifest.json row {i}: {', '.join(wrong)} not of the documented type.")
        return False
    doc = row["doc_id"]
    bates.check(doc, i, report)
    for key in ("bates_begin", "bates_end", "beg_attach", "end_attach"):
        if row.get(key) != doc:
            report.problem(f"manifest row {i} ({doc}): {key} is {row.get(key)!r}, not its DocID.")
    if row["sha256"] in messages:
        report.problem(f"{doc}: message {row['sha256']} has a row already; a bundle lists each message once.")
    messages.add(row["sha256"])
    native, text = row["native_path"], row["text_path"]
    for p in (native, text):
        if p in expected:
            report.problem(f"manifest row {i} ({doc}): {p} is listed twice.")
        expected.add(p)
    if native in z.files:
        if z.zf.getinfo(native).file_size != row["size"]:  # refused before it is inflated
            report.problem(f"{doc}: the native file {native} was changed (its size does not match the manifest).")
        elif _hashes(z.zf, native) != (row["size"], row["md5"], row["sha1"], row["sha256"]):
            report.problem(f"{doc}: the native file {native} was changed (its hashes do not match the manifest).")
    elif z.missing(native):
        report.problem(f"{doc}: the native file {native} is missing from the bundle.")
    if text in z.files:
        if _hashes(z.zf, text)[3] != row["text_sha256"]:
            report.problem(f"{doc}: the text file {text} was changed.")
    elif z.missing(text):
        report.problem(f"{doc}: the text file {text} is missing from the bundle.")
    return True


def _dat_records(stream: Iterable[str]) -> Iterator[list[str]]:
    field_sep, quote, newline = "\x14", "\u00fe", "\u00ae"
    for raw in stream:
        line = raw[:-2] if raw.endswith("\r\n") else raw.rstrip("\n")
        if not (len(line) >= 2 and line[0] == quote and line[-1] == quote):
            raise ValueError("a record does not start and end with the quote character")
        yield [v.replace(newline, "\n") for v in line[1:-1].split(quote + field_sep + quote)]


def _dat_value(v: str) -> str:
    v = v.replace("\r\n", "\n").replace("\r", "\n").replace("\u00ae", "\n")
    return v.replace("\x14", "\ufffd").replace("\u00fe", "\ufffd")


class _Listing:
    """manifest.csv or loadfile.dat, read one record per manifest row, in step with the rows."""

    def __init__(self, name: str, fh: IO[bytes], records: Iterator[Sequence[str]]) -> None:
        self.name = name
        self.fh = fh
        self.records = records
        self.seen = 0
        self.broken = False
        self.short = False

    @classmethod
    def open(cls, z: _Zip, name: str, report: Report) -> _Listing | None:
        """The listing positioned after its header; lines are read with a bound (a line of a zip bomb is gigabytes)."""
        dat = name == LOADFILE
        if name not in z.files:
            return None  # reported as missing or unreadable already
        fh = z.zf.open(name)
        lines = _text_lines(fh, MAX_LINE_BYTES)
        records: Iterator[Sequence[str]] = _dat_records(lines) if dat else csv.reader(lines)
        try:
            header = next(records, None)
        except (csv.Error, ValueError) as exc:
            report.problem(f"{name} cannot be read: {exc}.")
            fh.close()
            return None
        if header is None or tuple(header) != COLUMN_NAMES:
            report.problem(f"{name} does not have the documented {'fields' if dat else 'columns'}.")
            fh.close()
            return None
        return cls(name, fh, records)

    def _next(self, report: Report) -> Sequence[str] | None:
        try:
            rec = next(self.records, None)
        except (csv.Error, ValueError) as exc:
            report.problem(f"{self.name} cannot be read: {exc}.")
            self.broken = True
            return None
        if rec is not None:
            self.seen += 1
        return rec

    def skip(self, report: Report) -> None:
        """Pass over the record of a manifest row that could not be read, so the next rows meet their own."""
        if not (self.broken or self.short) and self._next(report) is None:
            self.short = not self.broken

    def check(self, row: dict[str, Any], n: int, report: Report) -> None:
        if self.broken or self.short:
            return
        rec = self._next(report)
        if rec is None:
            self.short = not self.broken
            return
        try:
            want = flat_row(row)
        except (KeyError, TypeError, AttributeError):
            report.problem(f"manifest.json row {n} lacks fields that {self.name} lists.")
            return
        if self.name == LOADFILE:
            want = [_dat_value(v) for v in want]
        if list(rec) != want:
            diff = [c for c, a, b in zip(COLUMN_NAMES, rec, want, strict=False) if a != b] or ["(field count)"]
            report.problem(f"{self.name} record {n} ({want[0]}) differs from manifest.json in {', '.join(diff)}.")

    def finish(self, rows: int, report: Report) -> None:
        try:
            while not self.broken and not self.short:
                rec = self._next(report)
                if rec is None:
                    break
                report.problem(f"{self.name} has a record ({rec[0] if rec else '?'}) that manifest.json does not.")
            if self.short or (not self.broken and self.seen < rows):
                report.problem(f"{self.name} has {self.seen} records; manifest.json has {rows} messages.")
        finally:
            self.fh.close()


def _claim(value: Any) -> Any:
    """A claimed value as the report shows it: text and numbers as they are, anything else as None."""
    return value if isinstance(value, str | int) and not isinstance(value, bool) else None


def _note_claims(manifest: dict[str, Any], custody: dict[str, Any] | None, report: Report) -> None:
    """Copy what the bundle says of itself into the report, for the auditor to read next to the checks."""
    c = report.claims
    if custody is None:
        for key in ("format", "archive_id", "case", "created", "count", "bates_prefix", "bates_first", "bates_last"):
            c[key] = _claim(manifest.get(key))
        return
    selection = custody.get("selection")
    if isinstance(selection, dict):
        c["selection"] = {"kind": _claim(selection.get("kind")), "value": _claim(selection.get("value"))}
    c["reason"] = _claim(custody.get("reason"))
    c["exported_by"] = _claim(custody.get("user"))
    c["host"] = _claim(custody.get("host"))
    counts = custody.get("counts")
    c["not_exported"] = _claim(counts.get("not_exported")) if isinstance(counts, dict) else None


def _check_claims(
    z: _Zip, manifest: dict[str, Any], count: int, bates: _Bates, custody_intact: bool, report: Report
) -> None:
    """What manifest.json's header and custody.json claim must be what the rows are.

    An auditor reads "19 messages, ABC000001 to ABC000019" in the header or custody.json; a
    bundle whose signer wrote that over 4 rows is inconsistent, whoever signed it.  A
    custody.json that is not as manifest.json lists it was named as changed and is not read.
    """
    if type(manifest.get("count")) is not int or manifest.get("count") != count:
        report.problem(f"manifest.json's header says it holds {manifest.get('count')!r} messages; it holds {count}.")
    first, last = (bates.first_doc, bates.last_doc) if count else ("", "")
    rows_say = (("bates_first", first), ("bates_last", last))  # None: that row could not be read (named already)
    if any(want is not None and manifest.get(key) != want for key, want in rows_say):
        report.problem(
            f"manifest.json's header gives the Bates range {manifest.get('bates_first')!r} to "
            f"{manifest.get('bates_last')!r}; the rows run from {first!r} to {last!r}."
        )
    if not custody_intact:
        return  # named as missing or changed by the files check
    custody = _read_json(z, CUSTODY, MAX_CUSTODY_BYTES, report)
    if custody is _NOT_READ:
        return
    if not isinstance(custody, dict):
        report.problem("custody.json is not a JSON object.")
        return
    _note_claims(manifest, custody, report)
    for key in ("archive_id", "case"):
        if custody.get(key) != manifest.get(key):
            report.problem(f"custody.json's {key} {custody.get(key)!r} is not manifest.json's {manifest.get(key)!r}.")
    if report.fingerprint and custody.get("public_key_fingerprint") != report.fingerprint:
        report.problem(
            f"custody.json gives the signing key's fingerprint as {custody.get('public_key_fingerprint')!r}; "
            f"the bundle's key has the fingerprint {report.fingerprint}."
        )
    counts, listed = custody.get("counts"), custody.get("not_exported")
    if not (
        isinstance(counts, dict) and all(type(counts.get(k)) is int for k in ("selected", "exported", "not_exported"))
    ):
        report.problem("custody.json's counts are not the documented selected, exported and not_exported numbers.")
    else:
        if counts["exported"] != count:
            report.problem(f"custody.json says {counts['exported']} messages were exported; the bundle holds {count}.")
        if not isinstance(listed, list) or counts["not_exported"] != len(listed):
            n = len(listed) if isinstance(listed, list) else "no"
            report.problem(f"custody.json counts {counts['not_exported']} messages not exported but lists {n}.")
        if counts["selected"] != counts["exported"] + counts["not_exported"]:
            report.problem(
                f"custody.json's counts do not add up: {counts['selected']} selected, {counts['exported']} "
                f"exported, {counts['not_exported']} not exported."
            )
    claimed = custody.get("bates")
    header = {
        "prefix": manifest.get("bates_prefix"),
        "first": manifest.get("bates_first"),
        "last": manifest.get("bates_last"),
    }
    if not isinstance(claimed, dict) or {k: claimed.get(k) for k in header} != header:
        report.problem("custody.json's Bates prefix and range differ from manifest.json's.")


class _Proofs:
    """proofs/journal.jsonl, checked once, then asked per row whether a signed checkpoint covers it.

    Only what the per-row checks need is kept of each record (type, hash, time, and the
    ingested id and size), not the records themselves; of the records about an exported
    message (``ingest``, ``copy``, ``tag``) their provenance and filing too.  Records that
    are not the exported messages' own come without their data (version 2: header and
    ``data_sha256``), which is enough to follow the chain through them.
    """

    def __init__(
        self,
        recs: dict[int, tuple[str, str, str, Any, Any]],
        covered: dict[int, int],
        about: dict[str, list[tuple[int, str, dict[str, Any]]]],
        checks_filing: bool,
    ) -> None:
        self.recs = recs
        self.covered = covered
        self.about = about
        self.checks_filing = checks_filing

    @classmethod
    def load(cls, z: _Zip, manifest: dict[str, Any], report: Report) -> _Proofs | None:
        """Read and check the proofs in one bounded pass; None when they are missing or were not read.

        A missing file is named by the files check, an unreadable entry by the zip check.  A
        line of gigabytes (a zip bomb) or nesting too deep to parse stops the reading: the
        proofs are then not read at all, and only that is reported.  A record with a key twice
        or a NaN (parsers disagree on what it says) is named, then read as Python reads it.
        """
        if PROOFS not in z.files:
            return None
        archive_id = str(manifest.get("archive_id", ""))
        try:
            key = base64.b64decode(report.public_key, validate=True)
        except ValueError:
            key = b""
        recs: dict[int, tuple[str, str, str, Any, Any]] = {}
        about: dict[str, list[tuple[int, str, dict[str, Any]]]] = {}
        commits: dict[int, bool] = {}  # seq -> signature valid
        init_data: dict[str, Any] | None = None  # what recs does not keep of the init record
        # The records' problems, reported once the file is read: after the lines strict JSON
        # refuses, and not at all when the reading stops.
        later: list[str] = []
        with z.zf.open(PROOFS) as fh:
            for n, line in enumerate(_lines(fh, MAX_LINE_BYTES), 1):
                if line is None:
                    report.problem(
                        f"proofs/journal.jsonl line {n} is longer than {MAX_LINE_BYTES:,} bytes, far more than a "
                        "journal record takes; the proofs were not read."
                    )
                    return None
                try:
                    rec = _loads(line)
                except _TooDeep as exc:
                    report.problem(f"proofs/journal.jsonl line {n}: {exc}; the proofs were not read.")
                    return None
                except JSONRefused as exc:
                    report.problem(f"proofs/journal.jsonl line {n}: {exc}.")
                    rec = None
                except ValueError:
                    rec = None
                try:
                    if rec is None:  # json.loads may still read it: the last of two keys, a byte-order mark
                        rec = json.loads(line)
                    seq = rec["seq"]
                    ok = isinstance(seq, int) and record_hash(rec) == rec["hash"]
                except (ValueError, KeyError, TypeError, AttributeError):
                    later.append(f"proofs/journal.jsonl line {n} is not a journal record.")
                    continue
                if not ok:
                    later.append(f"proofs/journal.jsonl record {seq}: its content does not match its hash.")
                    continue
                if seq in recs:
                    later.append(f"proofs/journal.jsonl holds record {seq} twice.")
                shown = rec.get("data")  # absent in a record shown without its data
                data: dict[str, Any] = shown if isinstance(shown, dict) else {}
                recs[seq] = (
                    rec["type"],
                    rec["prev"],
                    rec["hash"],
                    rec.get("time"),
                    (data.get("id"), data.get("size")),
                )
                if rec["type"] in ("ingest", "copy", "tag") and isinstance(data.get("id"), str):
                    about.setdefault(data["id"], []).append((seq, rec["type"], data))
                if seq == 0:
                    init_data = data
                if rec["type"] == "commit":
                    try:
                        sig = base64.b64decode(str(data.get("signature", "")), validate=True)
                        msg = checkpoint_message(archive_id, seq, rec["prev"], int(data["segment"]), int(data["end"]))
                    except (ValueError, KeyError, TypeError):
                        sig, msg = b"", b""
                    commits[seq] = _valid(key, sig, msg)
        for text in later:
            report.problem(text)
        init, first_commit = recs.get(0), recs.get(1)  # (type, prev, hash, ...)
        if (
            init is None
            or init_data is None
            or init[0] != "init"
            or init[1] != GENESIS
            or init_data.get("public_key") != report.public_key
            or init_data.get("archive_id") != archive_id
        ):
            report.problem("The proofs' journal init record is missing or does not name the bundle's archive and key.")
        elif first_commit is None or first_commit[0] != "commit" or first_commit[1] != init[2]:
            report.problem("The proofs lack the commit record that closes the journal's init record.")
        # A record is covered when a chain of linked records leads from it to a validly signed commit.
        covered: dict[int, int] = {}
        for seq in sorted(recs, reverse=True):
            if seq in commits:
                if commits[seq]:
                    covered[seq] = seq
                else:
                    report.problem(f"proofs: the signed checkpoint at journal record {seq} has an invalid signature.")
            elif seq + 1 in covered and recs[seq + 1][1] == recs[seq][2]:  # the next record's prev is this hash
                covered[seq] = covered[seq + 1]
        return cls(recs, covered, about, manifest.get("format") != FIRST_BUNDLE_FORMAT)

    def check(self, row: dict[str, Any], report: Report) -> None:
        doc, seq = row["doc_id"], row.get("ingest_seq")
        rec = self.recs.get(seq) if isinstance(seq, int) else None
        if rec is None or rec[0] != "ingest":
            report.problem(f"{doc}: the proofs do not hold the journal record that ingested it (record {seq}).")
            return
        time, (oid, size) = rec[3], rec[4]
        if oid != row["sha256"] or size != row["size"]:
            report.problem(f"{doc}: the journal's ingest record {seq} names another message than the native.")
        if time != row.get("archived_at"):
            report.problem(f"{doc}: the archive time in the manifest differs from the journal's ingest record.")
        if seq not in self.covered or self.covered[seq] != row.get("commit_seq"):
            report.problem(f"{doc}: no signed checkpoint in the proofs covers its ingest record {seq}.")
        if self.checks_filing:
            self._check_filing(doc, row, report)

    def _check_filing(self, doc: str, row: dict[str, Any], report: Report) -> None:
        """The row's copies, received time, client and matters must be the journal's.

        The writer takes them from the archive's catalog, a copy of the journal that
        someone with write access to the archive folder could edit; the proofs hold the
        signed originals: every ``ingest``/``copy`` record of the message (its copies) and
        every ``tag`` record (its filing, the last one counting).
        """
        proven = sorted((s, t, d) for s, t, d in self.about.get(str(row.get("sha256")), ()) if s in self.covered)
        copies: list[dict[str, Any]] = [_as_dict(d.get("prov")) for _s, t, d in proven if t != "tag"]
        shown = [{k: p.get(k) or "" for k in PROVENANCE_KEYS} for p in copies]
        if shown != row.get("provenance"):
            report.problem(
                f"{doc}: its copies (custodian, folder, location) differ from the journal's records of them."
            )
        received = next((p["internaldate"] for p in copies if p.get("internaldate")), None)
        if not _same_instant(received, row.get("received")):
            report.problem(f"{doc}: its received time differs from the journal's record of its first copy.")
        filed = [d for _s, t, d in proven if t in ("ingest", "tag")]
        if filed and (filed[-1].get("client"), filed[-1].get("matters")) != (row.get("client"), row.get("matters")):
            report.problem(f"{doc}: its client and matters differ from the journal's last filing of it.")

    def finish(self, report: Report) -> None:
        report.counts["journal_records"] = len(self.recs)
        report.counts["signed_checkpoints"] = sum(1 for s, c in self.covered.items() if s == c)


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


#: the provenance fields a manifest row shows of each copy (bundle.py writes them, in this order).
PROVENANCE_KEYS = ("source", "account", "folder", "uid", "location")


def _same_instant(journal: Any, shown: Any) -> bool:
    """Whether the manifest's ``received`` (or its absence) is the journal's internaldate."""
    if not journal or not shown:
        return not journal and not shown
    try:
        a = datetime.fromisoformat(str(journal).replace("Z", "+00:00"))
        b = datetime.fromisoformat(str(shown).replace("Z", "+00:00"))
    except ValueError:
        return False
    if a.tzinfo is None or b.tzinfo is None:
        return False
    return a.replace(microsecond=0) == b.replace(microsecond=0)


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _visible(text: str) -> str:
    """``text`` with control characters written as ``\\xNN``: names and cases come from the bundle, and
    escape sequences in them must not act on the auditor's terminal."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone use: `python verify.py bundle.zip [--public-key FILE] [--json]`.

    Exit 0 when every check passes (the verdict is ``OK`` with --public-key, ``SIGNATURE
    VALID, KEY NOT CONFIRMED`` without), 1 on any problem, 2 when the command line or the key
    file is wrong.  `archiver bundle verify` exits 9 instead of 1, the archiver's code for a
    failed verification.
    """
    p = argparse.ArgumentParser(description="Verify an archiver evidence bundle without the archive.")
    p.add_argument("bundle")
    p.add_argument(
        "--public-key", metavar="FILE", help="the archive's key: `archiver keys show --json` output, base64 or PEM"
    )
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    expected = None
    if args.public_key:
        try:
            with open(args.public_key, "rb") as fh:
                expected = load_expected_key(fh.read(MAX_KEY_FILE_BYTES))
        except (OSError, ValueError) as exc:
            print(_visible(f"verify: cannot read the public key {args.public_key}: {exc}"), file=sys.stderr)
            return 2
    report = verify_bundle(
        args.bundle,
        expected.public_key if expected else None,
        archive_id=expected.archive_id if expected else None,
    )
    if args.json:
        print(json.dumps(report.as_dict(), ensure_ascii=False))
    else:
        for line in render(report):
            print(_visible(line))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
