"""Independent verifier of evidence bundles (docs/bundles.md).

It needs no archive, no passphrase and nothing else of this package: only the Python
standard library and the ``cryptography`` package (for Ed25519).  An auditor can copy this
one file and run ``python verify.py bundle.zip [--public-key FILE]``.

What it checks, and why each check matters:

1. the zip: every entry name is a safe relative path, no name appears twice (a second entry
   with the same name would shadow the first in most unzip tools);
2. the signature: ``signature.json`` carries the archive's Ed25519 public key and a signature
   over the SHA-256 of ``manifest.json``'s exact bytes; with ``--public-key`` the key must be
   the one the auditor got from the archive's owner (``archiver keys show``), otherwise its
   fingerprint is reported for the auditor to compare;
3. the manifest: every native's size, MD5, SHA-1 and SHA-256 are recomputed, the SHA-256 must
   equal the message id, every text file and every other listed file has its hash, nothing
   listed is missing and nothing unlisted is present; the Bates numbers are contiguous;
4. ``manifest.csv`` and ``loadfile.dat`` say exactly what ``manifest.json`` says;
5. the proofs: every journal record in ``proofs/journal.jsonl`` hashes to its ``hash``, the
   records of each message's transaction link from its ``ingest`` record to a ``commit``
   record whose signature (the archive's signed checkpoint) is valid, the ``ingest`` record
   names the native's SHA-256 and size, and the journal's ``init`` record names the key.

The format constants and the row flattening used by the writer live here, so the writer
and the verifier cannot drift apart.
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import io
import json
import re
import sys
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
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
        return hashlib.sha256(canonical({k: rec[k] for k in ("actor", "data", "prev", "seq", "time", "type")})).hexdigest()
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


def load_public_key(data: bytes) -> bytes:
    """A raw 32-byte Ed25519 key from a key file: `keys show --json` output, base64, PEM or raw bytes."""
    text = data.strip()
    try:
        doc = json.loads(text)
        if isinstance(doc, dict) and isinstance(doc.get("public_key"), str):
            text = doc["public_key"].encode()
    except ValueError:
        pass
    if text.startswith(b"-----BEGIN"):
        key = serialization.load_pem_public_key(text)
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("the PEM file does not hold an Ed25519 public key")
        return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    for line in text.splitlines():
        if line.lower().startswith(b"public_key:"):
            text = line.split(b":", 1)[1].strip()
    try:
        raw = base64.b64decode(text, validate=True)
        if len(raw) == 32:
            return raw
    except ValueError:
        pass
    if len(data) == 32:
        return data
    raise ValueError("not an Ed25519 public key (expected base64 of 32 bytes, PEM, or `keys show --json` output)")


@dataclass
class Report:
    """Every problem found (a sentence each), notes for the auditor, and counts."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    archive_id: str = ""
    public_key: str = ""
    fingerprint: str = ""
    limit: int = 500

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem(self, text: str) -> None:
        if len(self.problems) < self.limit:
            self.problems.append(text)
        elif len(self.problems) == self.limit:
            self.problems.append("(further problems not listed)")

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "problems": self.problems,
            "notes": self.notes,
            "counts": self.counts,
            "archive_id": self.archive_id,
            "public_key": self.public_key,
            "fingerprint": self.fingerprint,
        }


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


def _read_json(zf: zipfile.ZipFile, name: str, report: Report) -> Any:
    try:
        with zf.open(name) as fh:
            return json.load(fh)
    except KeyError:
        report.problem(f"{name} is missing from the bundle.")
    except (ValueError, UnicodeDecodeError) as exc:
        report.problem(f"{name} is not valid JSON ({exc}).")
    return None


def verify_bundle(path: str | IO[bytes], public_key: bytes | None = None) -> Report:
    """Check a bundle; every problem found is a sentence in the report (never raises for bad input)."""
    report = Report()
    try:
        zf = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        report.problem(f"The bundle cannot be opened as a zip file: {exc}.")
        return report
    with zf:
        try:
            _verify(zf, public_key, report)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            report.problem(f"The bundle is damaged: {exc}.")
    return report


def _verify(zf: zipfile.ZipFile, expected_key: bytes | None, report: Report) -> None:
    names = [i.filename for i in zf.infolist() if not i.is_dir()]
    seen: set[str] = set()
    for name in names:
        if name in seen:
            report.problem(f"The zip holds two entries named {name!r}: one hides the other.")
        seen.add(name)
        if _unsafe(name):
            report.problem(f"The zip entry {name!r} is not a safe relative path.")
    present = set(names)
    _verify_signature(zf, present, expected_key, report)
    opened = _open_manifest(zf, report)
    if opened is None:
        return
    manifest, rows = opened
    if manifest.get("format") not in (FIRST_BUNDLE_FORMAT, BUNDLE_FORMAT):
        report.problem(
            f"manifest.json has format {manifest.get('format')!r}; this verifier reads {FIRST_BUNDLE_FORMAT} "
            f"and {BUNDLE_FORMAT}."
        )
        return
    if report.archive_id and manifest.get("archive_id") != report.archive_id:
        report.problem("manifest.json names another archive than signature.json.")
    expected: set[str] = {MANIFEST_JSON, SIGNATURE}
    for entry in manifest.get("files", []):
        name = entry.get("path", "")
        expected.add(name)
        if name not in present:
            report.problem(f"{name} is listed in the manifest but missing from the bundle.")
            continue
        size, _m, _s1, sha = _hashes(zf, name)
        if sha != entry.get("sha256") or size != entry.get("size"):
            report.problem(f"{name} was changed: its SHA-256 does not match the manifest.")
    for required in LISTED_FILES:
        if required not in expected:
            report.problem(f"manifest.json does not list {required}.")
    # One pass over the rows: each is checked against its files, its manifest.csv and
    # loadfile.dat records and the proofs as it is read, so memory does not grow with them.
    proofs = _Proofs.load(zf, manifest, report)
    listings = [x for x in (_Listing.open(zf, MANIFEST_CSV, report), _Listing.open(zf, LOADFILE, report)) if x]
    bates = _Bates(str(manifest.get("bates_prefix", "")))
    count = 0
    try:
        for count, row in enumerate(rows, 1):
            if not _verify_row(zf, row, count, present, expected, bates, report):
                continue
            for listing in listings:
                listing.check(row, count, report)
            if proofs is not None:
                proofs.check(row, report)
    finally:
        for listing in listings:
            listing.finish(count, report)
    for name in sorted(present - expected):
        report.problem(f"{name} is in the bundle but not in the manifest (an added file).")
    if proofs is not None:
        proofs.finish(report)
    report.counts["messages"] = count
    report.counts["files"] = len(present)


#: the line before the first row, and the line after the last, in the writer's manifest.json
#: (export/bundle.py writes them from these constants).
ROWS_START = b' "messages": ['
ROWS_END = b" ]"


def _open_manifest(zf: zipfile.ZipFile, report: Report) -> tuple[dict[str, Any], Iterator[Any]] | None:
    """manifest.json's header and its rows: streamed in the writer's layout (a row a line), else loaded whole.

    Streaming keeps a bundle of 100,000 messages verifiable in bounded memory; any other
    layout (a re-serialised manifest, which also breaks the signature) is read whole, so
    the rows are the same either way.
    """
    if MANIFEST_JSON not in zf.namelist():
        report.problem(f"{MANIFEST_JSON} is missing from the bundle.")
        return None
    header = _streamable_header(zf)
    if header is not None:
        return header, _stream_rows(zf)
    manifest = _read_json(zf, MANIFEST_JSON, report)
    if not isinstance(manifest, dict):
        if manifest is not None:
            report.problem("manifest.json is not a JSON object.")
        return None
    rows = manifest.get("messages")
    if not isinstance(rows, list):
        report.problem("manifest.json has no list of messages.")
        return None
    return manifest, iter(rows)


def _streamable_header(zf: zipfile.ZipFile) -> dict[str, Any] | None:
    """The header object when manifest.json has the writer's layout exactly, else None."""
    head: list[bytes] = []
    state = "header"
    last_row = b""
    with zf.open(MANIFEST_JSON) as fh:
        for raw in fh:
            line = raw[:-1] if raw.endswith(b"\n") else raw
            if state == "header":
                if line == ROWS_START:
                    state = "rows"
                else:
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
        doc = json.loads(b"".join(head).rstrip().rstrip(b",") + b"\n}")
    except ValueError:
        return None
    return doc if isinstance(doc, dict) and "messages" not in doc else None


def _stream_rows(zf: zipfile.ZipFile) -> Iterator[Any]:
    """The rows of a manifest whose layout _streamable_header accepted (a row that is not JSON: None)."""
    with zf.open(MANIFEST_JSON) as fh:
        for raw in fh:
            if raw.rstrip(b"\n") == ROWS_START:
                break
        for raw in fh:
            line = raw.rstrip(b"\n")
            if line == ROWS_END:
                return
            try:
                yield json.loads(line[:-1] if line.endswith(b",") else line)
            except ValueError:
                yield None


def _verify_signature(zf: zipfile.ZipFile, present: set[str], expected_key: bytes | None, report: Report) -> str | None:
    sig = _read_json(zf, SIGNATURE, report)
    if MANIFEST_JSON not in present:
        report.problem("manifest.json is missing from the bundle.")
        return None
    manifest_sha256 = _hashes(zf, MANIFEST_JSON)[3]
    if not isinstance(sig, dict):
        return manifest_sha256
    try:
        key = base64.b64decode(str(sig.get("public_key", "")), validate=True)
        signature = base64.b64decode(str(sig.get("signature", "")), validate=True)
    except ValueError:
        report.problem("signature.json holds a malformed public key or signature.")
        return manifest_sha256
    report.archive_id = str(sig.get("archive_id", ""))
    report.public_key = base64.b64encode(key).decode()
    report.fingerprint = fingerprint(key) if len(key) == 32 else ""
    if sig.get("algorithm") != "ed25519" or len(key) != 32:
        report.problem("signature.json does not hold an Ed25519 public key.")
        return manifest_sha256
    if expected_key is not None and expected_key != key:
        report.problem(
            f"The bundle was signed with key {fingerprint(key)}, not the expected key {fingerprint(expected_key)}."
        )
    elif expected_key is None:
        report.notes.append(
            f"Signing key fingerprint {report.fingerprint}: compare it with `archiver keys show` "
            "from the archive's owner (or pass --public-key)."
        )
    if sig.get("manifest_sha256") != manifest_sha256:
        report.problem("manifest.json was changed: its SHA-256 differs from the one signed.")
    if not _valid(key, signature, signature_message(report.archive_id, manifest_sha256)):
        report.problem("The signature over manifest.json is not valid for the included public key.")
    return manifest_sha256


_BATES = re.compile(r"^(.*?)(\d+)$")


_ROW_KEYS = frozenset(
    {"doc_id", "sha256", "size", "md5", "sha1", "native_path", "text_path", "text_sha256", "ingest_seq"}
)


class _Bates:
    """Checks that DocIDs are Bates numbers with the bundle's prefix, each one after the last."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.last: int | None = None

    def check(self, doc: str, i: int, report: Report) -> None:
        m = _BATES.match(doc)
        if not m or m.group(1) != self.prefix:
            report.problem(f"manifest row {i}: DocID {doc!r} is not a Bates number with prefix {self.prefix!r}.")
            return
        number = int(m.group(2))
        if self.last is not None and number != self.last + 1:
            report.problem(f"manifest row {i}: Bates number {doc} does not follow the previous one.")
        self.last = number


def _verify_row(
    zf: zipfile.ZipFile,
    row: Any,
    i: int,
    present: set[str],
    expected: set[str],
    bates: _Bates,
    report: Report,
) -> bool:
    """Check one manifest row against its native and text files; False when it cannot be checked further."""
    if not isinstance(row, dict):
        report.problem(f"manifest.json row {i} is not a JSON object.")
        return False
    missing = _ROW_KEYS - row.keys()
    if missing:
        report.problem(f"manifest.json row {i} lacks {', '.join(sorted(missing))}.")
        return False
    doc = str(row["doc_id"])
    bates.check(doc, i, report)
    native, text = str(row["native_path"]), str(row["text_path"])
    for p in (native, text):
        if p in expected:
            report.problem(f"manifest row {i} ({doc}): {p} is listed twice.")
        expected.add(p)
    if native not in present:
        report.problem(f"{doc}: the native file {native} is missing from the bundle.")
    else:
        size, md5, sha1, sha256 = _hashes(zf, native)
        if (size, md5, sha1, sha256) != (row["size"], row["md5"], row["sha1"], row["sha256"]):
            report.problem(f"{doc}: the native file {native} was changed (its hashes do not match the manifest).")
    if text not in present:
        report.problem(f"{doc}: the text file {text} is missing from the bundle.")
    elif _hashes(zf, text)[3] != row["text_sha256"]:
        report.problem(f"{doc}: the text file {text} was changed.")
    return True


def _dat_records(stream: IO[str]) -> Iterator[list[str]]:
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
    def open(cls, zf: zipfile.ZipFile, name: str, report: Report) -> _Listing | None:
        dat = name == LOADFILE
        try:
            fh = zf.open(name)
        except KeyError:
            return None  # reported as missing already
        text = io.TextIOWrapper(fh, encoding="utf-8-sig", newline="")
        records: Iterator[Sequence[str]] = _dat_records(text) if dat else csv.reader(text)
        try:
            header = next(records, None)
        except (csv.Error, ValueError, UnicodeDecodeError) as exc:
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
        except (csv.Error, ValueError, UnicodeDecodeError) as exc:
            report.problem(f"{self.name} cannot be read: {exc}.")
            self.broken = True
            return None
        if rec is not None:
            self.seen += 1
        return rec

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
    def load(cls, zf: zipfile.ZipFile, manifest: dict[str, Any], report: Report) -> _Proofs | None:
        archive_id = str(manifest.get("archive_id", ""))
        try:
            key = base64.b64decode(report.public_key, validate=True)
        except ValueError:
            key = b""
        recs: dict[int, tuple[str, str, str, Any, Any]] = {}
        about: dict[str, list[tuple[int, str, dict[str, Any]]]] = {}
        commits: dict[int, bool] = {}  # seq -> signature valid
        init_data: dict[str, Any] | None = None  # what recs does not keep of the init record
        try:
            fh = zf.open(PROOFS)
        except KeyError:
            return None
        with fh:
            for n, line in enumerate(fh, 1):
                try:
                    rec = json.loads(line)
                    seq = rec["seq"]
                    ok = isinstance(seq, int) and record_hash(rec) == rec["hash"]
                except (ValueError, KeyError, TypeError, AttributeError):
                    report.problem(f"proofs/journal.jsonl line {n} is not a journal record.")
                    continue
                if not ok:
                    report.problem(f"proofs/journal.jsonl record {seq}: its content does not match its hash.")
                    continue
                if seq in recs:
                    report.problem(f"proofs/journal.jsonl holds record {seq} twice.")
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
            report.problem(f"{doc}: its copies (custodian, folder, location) differ from the journal's records of them.")
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


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone use: `python verify.py bundle.zip [--public-key FILE] [--json]`; exit 1 on any problem."""
    p = argparse.ArgumentParser(description="Verify an archiver evidence bundle without the archive.")
    p.add_argument("bundle")
    p.add_argument("--public-key", metavar="FILE")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    key = None
    if args.public_key:
        try:
            with open(args.public_key, "rb") as fh:
                key = load_public_key(fh.read())
        except (OSError, ValueError) as exc:
            print(f"verify: cannot read the public key {args.public_key}: {exc}", file=sys.stderr)
            return 2
    report = verify_bundle(args.bundle, key)
    if args.json:
        print(json.dumps(report.as_dict(), ensure_ascii=False))
    else:
        for line in report.problems:
            print(f"PROBLEM: {line}")
        for line in report.notes:
            print(f"note: {line}")
        print("OK" if report.ok else f"FAILED: {len(report.problems)} problem(s)")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
