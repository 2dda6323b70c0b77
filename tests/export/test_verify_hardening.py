# ruff: noqa: F811 - the fixtures imported from test_bundle are taken as arguments
"""The bundle verifier against hostile bundles (the review of the evidence bundles, findings 1.1-3.2 and 5).

Most tampering here is re-signed with the archive's own key, as a dishonest or careless
signer could: the verifier must then still name what is wrong, since the signature only
says who vouched for the bundle, not that what they vouched for is consistent or safe to unzip.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import re
import shutil
import struct
import subprocess
import sys
import tracemalloc
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from archiver.archive import Archive
from archiver.config import load_config
from archiver.crypto.keys import Keys
from archiver.export import verify
from archiver.export.loadfile import dat_line
from archiver.export.verify import (
    CHECKS,
    COLUMN_NAMES,
    LISTED_FILES,
    ROWS_END,
    ROWS_START,
    STATUS_KEY_NOT_CONFIRMED,
    fingerprint,
    flat_row,
    signature_message,
    verify_bundle,
)
from tests.export.test_bundle import Cli, bundle, imported, read_json  # noqa: F401 - fixtures used by name

ROOT = Path(__file__).resolve().parents[2]
Rows = list[dict[str, Any]]


@pytest.fixture
def keys(bundle: Path, config_file: Path) -> Keys:
    """The archive's own signing key (after the bundle was exported)."""
    with Archive.open(load_config(config_file)) as archive:
        return archive.repo.require_keys()


@pytest.fixture
def key_file(imported: Cli, tmp_path: Path) -> Path:
    path = tmp_path / "key.json"
    path.write_text(imported("keys", "show", "--json").out)
    return path


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def entries(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {i.filename: zf.read(i.filename) for i in zf.infolist()}


def write_zip(dst: Path, items: list[tuple[str | zipfile.ZipInfo, bytes]]) -> Path:
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for name, data in items:
            zout.writestr(name, data)
    return dst


def copy_zip(
    src: Path, dst: Path, change: Callable[[zipfile.ZipInfo, bytes], list[tuple[str | zipfile.ZipInfo, bytes]]]
) -> Path:
    """Copy a zip entry by entry; ``change`` gives, for each entry, what to write in its place (its own copy: [])."""
    items: list[tuple[str | zipfile.ZipInfo, bytes]] = []
    with zipfile.ZipFile(src) as zin:
        for info in zin.infolist():
            data = zin.read(info.filename)
            fresh = zipfile.ZipInfo(info.filename, info.date_time)
            fresh.compress_type = zipfile.ZIP_DEFLATED
            items += change(fresh, data) or [(fresh, data)]
    return write_zip(dst, items)


def reseal(
    src: Path,
    dst: Path,
    keys: Keys,
    *,
    rows: Callable[[Rows, dict[str, bytes]], Rows] | None = None,
    header: Callable[[dict[str, Any]], None] | None = None,
    custody: Callable[[dict[str, Any]], None] | None = None,
    files: Callable[[dict[str, bytes]], None] | None = None,
    manifest_bytes: Callable[[bytes], bytes] | None = None,
    consistent_claims: bool = True,
) -> Path:
    """Rebuild a bundle after edits, with listings, hashes and a signature by the archive's own key.

    With ``consistent_claims`` the header's and custody.json's counts and Bates range are
    made to match the rows, so that only the edit under test can be wrong.
    """
    content = entries(src)
    doc = json.loads(content.pop("manifest.json"))
    content.pop("signature.json")
    table: Rows = doc.pop("messages")
    if rows:
        table = rows(table, content)
    cust = json.loads(content["custody.json"])
    if consistent_claims:
        first, last = (table[0]["doc_id"], table[-1]["doc_id"]) if table else ("", "")
        doc.update(count=len(table), bates_first=first, bates_last=last)
        cust["counts"] = {
            "selected": len(table) + len(cust["not_exported"]),
            "exported": len(table),
            "not_exported": len(cust["not_exported"]),
        }
        cust["bates"] = {"prefix": doc["bates_prefix"], "first": first, "last": last}
    if custody:
        custody(cust)
    content["custody.json"] = json.dumps(cust, ensure_ascii=False, indent=2).encode()
    if files:
        files(content)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMN_NAMES)
    for row in table:
        writer.writerow(flat_row(row))
    content["manifest.csv"] = ("\ufeff" + out.getvalue()).encode()
    dat = dat_line(COLUMN_NAMES) + "".join(dat_line(flat_row(r)) for r in table)
    content["loadfile.dat"] = ("\ufeff" + dat).encode()
    doc["files"] = [{"path": p, "size": len(content[p]), "sha256": sha(content[p])} for p in LISTED_FILES]
    if header:
        header(doc)
    body = (
        json.dumps(doc, ensure_ascii=False, indent=1)[:-2].encode()
        + b",\n"
        + ROWS_START
        + b"\n"
        + b",\n".join(json.dumps(r, ensure_ascii=False).encode() for r in table)
        + b"\n"
        + ROWS_END
        + b"\n}\n"
    )
    if manifest_bytes:
        body = manifest_bytes(body)
    digest = sha(body)
    signature = {
        "format": 1,
        "algorithm": "ed25519",
        "archive_id": doc["archive_id"],
        "public_key": base64.b64encode(keys.public_key).decode(),
        "fingerprint": fingerprint(keys.public_key),
        "signed_file": "manifest.json",
        "manifest_sha256": digest,
        "signature": base64.b64encode(keys.sign(signature_message(doc["archive_id"], digest))).decode(),
    }
    content["manifest.json"] = body
    content["signature.json"] = json.dumps(signature, indent=2).encode()
    return write_zip(dst, list(content.items()))


def found(path: Path, key: Keys | None = None, **kw: Any) -> list[str]:
    """The problems of a bundle, checked against the archive's key when given."""
    return verify_bundle(str(path), key.public_key if key else None, **kw).problems


def one(problems: list[str], pattern: str) -> str:
    hits = [p for p in problems if re.search(pattern, p)]
    assert hits, (pattern, problems)
    return hits[0]


def test_a_resealed_honest_bundle_verifies(bundle: Path, keys: Keys, tmp_path: Path) -> None:
    """The helper the other tests build on adds no problem of its own, and an honest bundle passes every check."""
    report = verify_bundle(str(reseal(bundle, tmp_path / "r.zip", keys)), keys.public_key)
    assert report.problems == [] and report.status == "OK"
    assert all(c["result"] == "passed" for c in report.checklist()), report.checklist()


# -- 1.1 zip name metadata ------------------------------------------------------------------


def unicode_path(raw_name: bytes, name: str) -> bytes:
    data = b"\x01" + struct.pack("<I", zlib.crc32(raw_name)) + name.encode()
    return struct.pack("<HH", 0x7075, len(data)) + data


def test_a_unicode_path_field_that_renames_a_native_is_refused(bundle: Path, keys: Keys, tmp_path: Path) -> None:
    """Info-ZIP unzip writes an entry under its 0x7075 name: two natives would swap places on disk."""
    rows = read_json(bundle, "manifest.json")["messages"]
    a, b = rows[0]["native_path"], rows[1]["native_path"]

    def swap(info: zipfile.ZipInfo, data: bytes) -> list[tuple[str | zipfile.ZipInfo, bytes]]:
        if info.filename in (a, b):
            info.extra = unicode_path(info.filename.encode(), b if info.filename == a else a)
        return [(info, data)]

    problems = found(copy_zip(bundle, tmp_path / "swap.zip", swap), keys)
    assert one(problems, re.escape(repr(a)) + ".*Unicode Path field naming " + re.escape(repr(b)))
    assert one(problems, re.escape(repr(b)) + ".*Unicode Path field naming " + re.escape(repr(a)))

    def same(info: zipfile.ZipInfo, data: bytes) -> list[tuple[str | zipfile.ZipInfo, bytes]]:
        info.extra = unicode_path(info.filename.encode(), info.filename)  # agrees with the name: harmless
        return [(info, data)]

    assert found(copy_zip(bundle, tmp_path / "same.zip", same), keys) == []

    def other_field(info: zipfile.ZipInfo, data: bytes) -> list[tuple[str | zipfile.ZipInfo, bytes]]:
        if info.filename == a:
            info.extra = struct.pack("<HH", 0x6375, 5) + b"\x01abcd"  # Info-ZIP Unicode Comment
        return [(info, data)]

    assert one(found(copy_zip(bundle, tmp_path / "other.zip", other_field), keys), "extra field of type 0x6375")


def test_a_non_ascii_name_without_the_utf8_flag_is_refused(bundle: Path, keys: Keys, tmp_path: Path) -> None:
    """Python reads such a name as cp437, unzip tools each their own way: NativePath would not resolve."""
    name, placeholder, cp437 = "natives/\u00e9t\u00e9.eml", "natives/xtx.eml", b"natives/\x82t\x82.eml"

    def rename(table: Rows, content: dict[str, bytes]) -> Rows:
        content[name] = content.pop(table[0]["native_path"])
        table[0]["native_path"] = name
        return table

    flagged = reseal(bundle, tmp_path / "utf8.zip", keys, rows=rename)
    assert found(flagged, keys) == []  # the writer's way: the UTF-8 flag set

    def hide(content: dict[str, bytes]) -> None:
        content[placeholder] = content.pop(name)  # written under an ASCII name of the same length...

    raw = reseal(bundle, tmp_path / "cp.zip", keys, rows=rename, files=hide).read_bytes()
    assert raw.count(placeholder.encode()) == 2  # ...then its local and central name patched to cp437 bytes
    unflagged = tmp_path / "cp437.zip"
    unflagged.write_bytes(raw.replace(placeholder.encode(), cp437))
    with zipfile.ZipFile(unflagged) as zf:
        assert name in zf.namelist()  # what Python (and so the old verifier) sees: the manifest's name
    problem = one(found(unflagged, keys), "not marked as UTF-8")
    assert name in problem and "bit 11" in problem


# -- 1.2 directory entries and shadowing ----------------------------------------------------


def test_directory_entries_are_refused(bundle: Path, keys: Keys, tmp_path: Path) -> None:
    def directory(name: str) -> zipfile.ZipInfo:
        info = zipfile.ZipInfo(name)
        info.external_attr = (0o40755 << 16) | 0x10
        return info

    added: list[tuple[str | zipfile.ZipInfo, bytes]] = [
        (directory("../../escape-dir/"), b""),
        (directory("/abs-dir/"), b""),
        (zipfile.ZipInfo("natives/hidden-payload/"), b"Subject: never verified\n\n" * 100),
    ]
    problems = found(write_zip(tmp_path / "d.zip", [*entries(bundle).items(), *added]), keys)
    for name in ("../../escape-dir/", "/abs-dir/", "natives/hidden-payload/"):
        one(problems, re.escape(repr(name)) + " is a directory")
    one(problems, re.escape(repr("../../escape-dir/")) + " is not a safe relative path")
    one(problems, re.escape(repr("/abs-dir/")) + " is not a safe relative path")


def test_entries_that_shadow_listed_files_are_refused(bundle: Path, keys: Keys, tmp_path: Path) -> None:
    """A folder, a link, a case variant or a file inside a file would replace or hide a listed file once unzipped."""
    native = read_json(bundle, "manifest.json")["messages"][0]["native_path"]
    link = zipfile.ZipInfo("natives/elsewhere.eml")
    link.external_attr = 0o120777 << 16
    before: list[tuple[str | zipfile.ZipInfo, bytes]] = [(native + "/", b""), ("manifest.json/", b"")]
    after: list[tuple[str | zipfile.ZipInfo, bytes]] = [
        ("MANIFEST.JSON", b"{}"),
        (native + "/inner.eml", b"x"),
        (link, b"/etc/passwd"),
    ]
    problems = found(write_zip(tmp_path / "s.zip", [*before, *entries(bundle).items(), *after]), keys)
    one(problems, re.escape(repr(native + "/")) + " is a directory")
    one(problems, re.escape(repr("manifest.json/")) + " is a directory")
    one(problems, "'manifest.json/' and 'manifest.json' are the same path")
    one(problems, "'manifest.json/' and 'MANIFEST.JSON' are the same path|'MANIFEST.JSON'.* same path")
    one(problems, re.escape(repr(native + "/inner.eml")) + " lies inside " + re.escape(repr(native)))
    one(problems, "'natives/elsewhere.eml' is a symbolic link")


# -- 1.3 bytes outside the entries ----------------------------------------------------------


def test_bytes_outside_the_entries_are_refused(bundle: Path, keys: Keys, tmp_path: Path) -> None:
    genuine = bundle.read_bytes()
    native = read_json(bundle, "manifest.json")["messages"][0]["native_path"]
    forged = io.BytesIO()
    with zipfile.ZipFile(forged, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(native, b"Subject: [FORGED]\n\nwhat a streaming reader sees first\n")
    local = forged.getvalue()[: forged.getvalue().find(b"PK\x01\x02")]
    cases = {
        "prefix": (local + genuine, r"\d+ bytes in front of its entries"),
        "trailing": (genuine + b"HIDDEN PAYLOAD " * 10, "bytes after its end record"),
    }
    for label, (data, pattern) in cases.items():
        path = tmp_path / f"{label}.zip"
        path.write_bytes(data)
        problems = found(path, keys)
        assert len(problems) == 1 and re.search(pattern, problems[0]), (label, problems)

    commented = tmp_path / "comment.zip"
    shutil.copy(bundle, commented)
    with zipfile.ZipFile(commented, "a") as zf:
        zf.comment = b"Certified complete production of all responsive documents -- Counsel"
    problems = found(commented, keys)
    assert len(problems) == 1 and "archive comment" in problems[0], problems

    renamed = bytearray(genuine)  # the first local header names another file than the central directory
    assert renamed[:4] == b"PK\x03\x04" and renamed[30:37] == b"natives"
    renamed[30] = ord("N")
    path = tmp_path / "local.zip"
    path.write_bytes(bytes(renamed))
    one(found(path, keys), "local header of the zip entry .* names it b'Natives")


def test_a_zip64_end_record_is_accepted(tmp_path: Path) -> None:
    """A bundle of more than 32,767 messages has more than 65,535 entries, and so a ZIP64 end record."""
    path = tmp_path / "many.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for n in range(0x10000):
            zf.writestr(f"natives/{n}.eml", b"")
    assert b"PK\x06\x06" in path.read_bytes()[-200:]
    report = verify_bundle(str(path))
    assert not [p for p in report.problems if "zip" in p.lower()], report.problems[:5]
    assert next(c for c in report.checklist() if c["check"] == "zip")["result"] == "passed"


# -- 1.5 the key ----------------------------------------------------------------------------


def test_without_a_public_key_the_verdict_is_not_a_bare_ok(bundle: Path, imported: Cli, key_file: Path) -> None:
    r = imported("bundle", "verify", str(bundle))
    assert r.code == 0, r.out
    lines = r.out.splitlines()
    assert lines[-1].startswith(STATUS_KEY_NOT_CONFIRMED + ":"), lines[-1]
    assert not any(line.startswith("OK") for line in lines)
    report = json.loads(imported("bundle", "verify", str(bundle), "--json").out)
    assert report["key_confirmed"] is False and report["status"] == STATUS_KEY_NOT_CONFIRMED
    assert next(c for c in report["checks"] if c["check"] == "key")["result"] == "not confirmed"

    r = imported("bundle", "verify", str(bundle), "--public-key", str(key_file))
    assert r.code == 0 and r.out.splitlines()[-1].startswith("OK:"), r.out
    report = json.loads(imported("bundle", "verify", str(bundle), "--public-key", str(key_file), "--json").out)
    assert report["key_confirmed"] is True and report["status"] == "OK"


def test_fingerprint_fields_must_be_the_fingerprint_of_the_key_carried(
    bundle: Path, keys: Keys, tmp_path: Path
) -> None:
    """A forger's bundle may write the genuine fingerprint where an auditor reads it; it must be the key's."""
    other = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def claim(name: str, data: bytes) -> bytes:
        if name != "signature.json":
            return data
        doc = json.loads(data)
        doc["fingerprint"] = fingerprint(other)
        return json.dumps(doc).encode()

    with zipfile.ZipFile(bundle) as zin:
        items = [(n, claim(n, zin.read(n))) for n in zin.namelist()]
    problem = one(found(write_zip(tmp_path / "sig.zip", list(items)), keys), "signature.json gives the fingerprint")
    assert fingerprint(other) in problem and fingerprint(keys.public_key) in problem

    def custody(doc: dict[str, Any]) -> None:
        doc["public_key_fingerprint"] = fingerprint(other)

    problems = found(reseal(bundle, tmp_path / "cust.zip", keys, custody=custody), keys)
    assert len(problems) == 1 and "custody.json gives the signing key's fingerprint" in problems[0], problems


def test_a_key_file_from_keys_show_json_has_its_archive_checked(
    bundle: Path, imported: Cli, key_file: Path, tmp_path: Path
) -> None:
    info = json.loads(key_file.read_text())
    other_archive = tmp_path / "other-archive.json"
    other_archive.write_text(json.dumps({**info, "archive_id": "00000000-0000-0000-0000-000000000000"}))
    r = imported("bundle", "verify", str(bundle), "--public-key", str(other_archive))
    assert r.code == 9 and "not from the expected archive '00000000-0000-0000-0000-000000000000'" in r.out, r.out
    assert r.out.splitlines()[-1].startswith("FAILED")

    mixed_up = tmp_path / "mixed-up.json"  # a fingerprint that is not its public_key's: the file was edited
    mixed_up.write_text(json.dumps({**info, "fingerprint": "0000:" + info["fingerprint"][5:]}))
    r = imported("bundle", "verify", str(bundle), "--public-key", str(mixed_up))
    assert r.code == 2 and "fingerprint is not that of its public_key" in r.err, r.err

    text_output = tmp_path / "key.txt"  # `keys show` without --json names the archive too
    text_output.write_text(imported("keys", "show").out)
    report = json.loads(imported("bundle", "verify", str(bundle), "--public-key", str(text_output), "--json").out)
    assert report["key_confirmed"] is True, report


# -- 1.6 claims against rows, and duplicate JSON keys ---------------------------------------


def test_header_and_custody_claims_must_match_the_rows(bundle: Path, keys: Keys, tmp_path: Path) -> None:
    """Signed with the genuine key: 4 rows under a header and custody that claim the complete 19."""
    rows = read_json(bundle, "manifest.json")["messages"]

    def shorten(table: Rows, content: dict[str, bytes]) -> Rows:
        for row in table[4:]:
            del content[row["native_path"]], content[row["text_path"]]
        return table[:4]

    def complete(doc: dict[str, Any]) -> None:
        doc["case"] += " -- COMPLETE production"

    short = reseal(bundle, tmp_path / "short.zip", keys, rows=shorten, header=complete, consistent_claims=False)
    problems = found(short, keys)
    one(problems, f"header says it holds {len(rows)} messages; it holds 4")
    one(problems, f"Bates range 'ABC000001' to '{rows[-1]['doc_id']}'; the rows run from 'ABC000001' to 'ABC000004'")
    one(problems, f"custody.json says {len(rows)} messages were exported; the bundle holds 4")
    one(problems, "custody.json's case .* is not manifest.json's")

    def other_range(doc: dict[str, Any]) -> None:
        doc["bates"]["last"] = "ABC000099"

    one(found(reseal(bundle, tmp_path / "br.zip", keys, custody=other_range), keys), "custody.json's Bates prefix")

    def unbalanced(doc: dict[str, Any]) -> None:
        doc["counts"]["selected"] += 1  # one selected message neither exported nor listed as not exported

    one(found(reseal(bundle, tmp_path / "sel.zip", keys, custody=unbalanced), keys), "counts do not add up")


def renumber(table: Rows, prefix: str, start: int, width: int) -> Rows:
    for n, row in enumerate(table, start):
        doc = f"{prefix}{n:0{width}d}"
        row.update(doc_id=doc, bates_begin=doc, bates_end=doc, beg_attach=doc, end_attach=doc)
    return table


def test_bates_numbers_start_at_one_at_the_documented_width(bundle: Path, keys: Keys, tmp_path: Path) -> None:
    late = reseal(bundle, tmp_path / "late.zip", keys, rows=lambda t, _c: renumber(t, "ABC", 5, 6))
    assert found(late, keys) == ["manifest row 1: the Bates numbers start at ABC000005, not at 1."]
    wide = reseal(bundle, tmp_path / "wide.zip", keys, rows=lambda t, _c: renumber(t, "ABC", 1, 8))
    one(found(wide, keys), "The Bates numbers have 8 digits; a bundle of \\d+ messages numbers with 6")

    def ragged(table: Rows, _content: dict[str, bytes]) -> Rows:
        renumber(table, "ABC", 1, 6)
        return renumber(table[:1], "ABC", 1, 7) + table[1:]

    one(found(reseal(bundle, tmp_path / "ragged.zip", keys, rows=ragged), keys), "has 6 digits; the first has 7")

    def arabic(table: Rows, _content: dict[str, bytes]) -> Rows:
        for row in table:
            digits = row["doc_id"][3:].translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
            doc = "ABC" + digits
            row.update(doc_id=doc, bates_begin=doc, bates_end=doc, beg_attach=doc, end_attach=doc)
        return table

    one(found(reseal(bundle, tmp_path / "ar.zip", keys, rows=arabic), keys), "is not a Bates number with prefix 'ABC'")


def test_a_message_listed_twice_is_refused(bundle: Path, keys: Keys, tmp_path: Path) -> None:
    def twice(table: Rows, content: dict[str, bytes]) -> Rows:
        again = dict(table[0], native_path="natives/again.eml", text_path="text/again.txt")
        content["natives/again.eml"] = content[table[0]["native_path"]]
        content["text/again.txt"] = content[table[0]["text_path"]]
        return renumber([*table, again], "ABC", 1, 6)

    problems = found(reseal(bundle, tmp_path / "twice.zip", keys, rows=twice), keys)
    assert len(problems) == 1 and "has a row already" in problems[0], problems


def test_duplicate_json_keys_are_refused_in_every_file(bundle: Path, keys: Keys, tmp_path: Path) -> None:
    """Python keeps a duplicate key's last value, other parsers the first: an auditor's tool would read another row."""

    def row_twice(body: bytes) -> bytes:
        return body.replace(b'"subject": ', b'"subject": "Nothing to see", "subject": ', 1)

    problems = found(reseal(bundle, tmp_path / "row.zip", keys, manifest_bytes=row_twice), keys)
    assert problems[0] == "manifest.json row 1 cannot be read: the key 'subject' appears twice in one object."
    assert not any("Bates" in p or "manifest.csv" in p for p in problems), problems  # the next rows are in step

    def header_twice(body: bytes) -> bytes:
        return body.replace(b'\n "case": ', b'\n "case": "Another case",\n "case": ', 1)

    one(found(reseal(bundle, tmp_path / "head.zip", keys, manifest_bytes=header_twice), keys), "'case' appears twice")

    def proof_twice(content: dict[str, bytes]) -> None:
        lines = content["proofs/journal.jsonl"].split(b"\n")
        i = next(n for n, line in enumerate(lines) if b'"type":"ingest"' in line)
        lines[i] = b'{"time":"2000-01-01T00:00:00.000000Z",' + lines[i][1:]  # the last "time" is the real one
        content["proofs/journal.jsonl"] = b"\n".join(lines)

    problem = one(found(reseal(bundle, tmp_path / "proof.zip", keys, files=proof_twice), keys), "proofs/journal.jsonl")
    assert "'time' appears twice" in problem

    def custody_twice(content: dict[str, bytes]) -> None:
        content["custody.json"] = content["custody.json"].replace(b'\n  "case": ', b'\n  "case": "X",\n  "case": ', 1)

    one(found(reseal(bundle, tmp_path / "c.zip", keys, files=custody_twice), keys), "custody.json is not valid JSON")

    signature = entries(bundle)
    signature["signature.json"] = signature["signature.json"].replace(
        b'"fingerprint": ', b'"fingerprint": "0000", "fingerprint": ', 1
    )
    one(found(write_zip(tmp_path / "s.zip", list(signature.items())), keys), "signature.json is not valid JSON")


# -- 2.1 a prefix ending in a digit ---------------------------------------------------------


def test_a_bates_prefix_ending_in_a_digit_verifies(imported: Cli, tmp_path: Path) -> None:
    for n, prefix in enumerate(("SMITH2024", "ACME-\u0661")):
        out = tmp_path / f"p{n}.zip"
        r = imported("export", "--query", "client:globex", "--case", "V", "--out", str(out), "--bates-prefix", prefix)
        assert r.code == 0, r.err
        report = verify_bundle(str(out))
        assert report.problems == [], report.problems
        assert read_json(out, "manifest.json")["messages"][0]["doc_id"] == f"{prefix}000001"


# -- 3.1 malformed bundles ------------------------------------------------------------------


def patch_first_entry(src: Path, dst: Path, local_at: int, central_at: int, value: bytes, *, bits: bool) -> Path:
    data = bytearray(src.read_bytes())
    central = data.find(b"PK\x01\x02")
    for at in (local_at, central + central_at):
        if bits:
            data[at] |= value[0]
        else:
            data[at : at + len(value)] = value
    dst.write_bytes(bytes(data))
    return dst


def malformed(bundle: Path, tmp_path: Path) -> Iterator[tuple[str, Path, str]]:
    """(label, bundle, what the problem says) for each way a bundle can be malformed."""
    yield (
        "encrypted",
        patch_first_entry(bundle, tmp_path / "enc.zip", 6, 8, b"\x01", bits=True),
        "is encrypted",
    )
    yield (
        "deflate64",
        patch_first_entry(bundle, tmp_path / "m9.zip", 8, 10, struct.pack("<H", 9), bits=False),
        "compression method 9",
    )

    def manifest(edit: Callable[[dict[str, Any]], None]) -> Callable[[str, bytes], bytes]:
        def change(name: str, data: bytes) -> bytes:
            if name != "manifest.json":
                return data
            doc = json.loads(data)
            edit(doc)
            return json.dumps(doc).encode()

        return change

    def rewritten(name: str, change: Callable[[str, bytes], bytes]) -> Path:
        with zipfile.ZipFile(bundle) as zin:
            return write_zip(tmp_path / name, [(n, change(n, zin.read(n))) for n in zin.namelist()])

    yield "files [5]", rewritten("fb.zip", manifest(lambda d: d["files"].insert(0, 5))), "files entry 1 is not"
    yield "files 5", rewritten("fi.zip", manifest(lambda d: d.update(files=5))), "files is not a list"
    yield "rows 5", rewritten("ri.zip", manifest(lambda d: d.update(messages=[5]))), "row 1 is not a JSON object"
    yield (
        "deep signature",
        rewritten("deep.zip", lambda n, d: b"[" * 50_000 if n == "signature.json" else d),
        "signature.json is not valid JSON .*nested too deeply",
    )
    yield (
        "null signature",
        rewritten("null.zip", lambda n, d: b"null" if n == "signature.json" else d),
        "signature.json is not a JSON object",
    )

    def deep_proof(name: str, data: bytes) -> bytes:
        return data + b'{"seq":' + b"[" * 50_000 + b"\n" if name == "proofs/journal.jsonl" else data

    yield "deep proof", rewritten("dp.zip", deep_proof), "nested too deeply; the proofs were not read"

    def deep_row(name: str, data: bytes) -> bytes:  # a row in the writer's layout, so it is streamed
        return data.replace(b"\n ]\n}", b',\n{"a":' + b"[" * 50_000 + b"}\n ]\n}") if name == "manifest.json" else data

    yield "deep row", rewritten("dr.zip", deep_row), r"row \d+ cannot be read: it is nested too deeply"


def test_malformed_bundles_are_sentences_not_tracebacks(
    bundle: Path, imported: Cli, tmp_path: Path, key_file: Path
) -> None:
    for label, path, pattern in malformed(bundle, tmp_path):
        report = verify_bundle(str(path))  # raised before: RuntimeError, NotImplementedError, TypeError...
        assert not report.ok, label
        one(report.problems, pattern)
        r = imported("bundle", "verify", str(path), "--public-key", str(key_file))
        assert r.code == 9 and "Traceback" not in r.out + r.err, (label, r.code, r.err[-500:])


# -- 3.2 zip bombs --------------------------------------------------------------------------


def test_a_padded_bundle_is_refused_without_inflating_it(bundle: Path, tmp_path: Path) -> None:
    """signature.json and custody.json are read whole only up to a bound, lines only up to a bound."""
    pad = 20 << 20  # more than a line may hold; inflates from about 20 KiB

    def padding(*names: str) -> Callable[[zipfile.ZipInfo, bytes], list[tuple[str | zipfile.ZipInfo, bytes]]]:
        def change(info: zipfile.ZipInfo, data: bytes) -> list[tuple[str | zipfile.ZipInfo, bytes]]:
            if info.filename not in names:
                return []
            if info.filename == "signature.json":
                return [(info, b" " * (64 << 20) + data)]  # still valid JSON, but 64 MiB of it
            if info.filename == "manifest.json":  # a line of spaces in the header
                return [(info, data.replace(b"\n", b"\n" + b" " * pad + b"\n", 1))]
            return [(info, b" " * pad + data)]

        return change

    for label, names, patterns in (
        (
            "signature and proofs",
            ("signature.json", "proofs/journal.jsonl", "custody.json"),
            [
                "signature.json holds [0-9,]+ bytes, more than the 65,536",
                "proofs/journal.jsonl line 1 is longer than",
                "custody.json was changed: it holds",
            ],
        ),
        ("manifest", ("manifest.json",), ["manifest.json holds [0-9,]+ bytes, more than the 16,777,216"]),
    ):
        padded = copy_zip(bundle, tmp_path / "bomb.zip", padding(*names))
        assert padded.stat().st_size < 2 * bundle.stat().st_size + (1 << 20)
        tracemalloc.start()
        try:
            report = verify_bundle(str(padded))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 48 << 20, (label, f"{peak:,} bytes")
        for pattern in patterns:
            one(report.problems, pattern)


def test_a_native_padded_beyond_its_listed_size_is_refused_unread(bundle: Path, tmp_path: Path) -> None:
    native = read_json(bundle, "manifest.json")["messages"][0]["native_path"]

    def pad(info: zipfile.ZipInfo, data: bytes) -> list[tuple[str | zipfile.ZipInfo, bytes]]:
        return [(info, data + b" " * (64 << 20))] if info.filename == native else []

    padded = copy_zip(bundle, tmp_path / "n.zip", pad)
    opened: list[str] = []
    real_hashes = verify._hashes

    def spy(zf: zipfile.ZipFile, name: str) -> tuple[int, str, str, str]:
        opened.append(name)
        return real_hashes(zf, name)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(verify, "_hashes", spy)
        problems = verify_bundle(str(padded)).problems
    assert problems == [
        f"{read_json(bundle, 'manifest.json')['messages'][0]['doc_id']}: the native file {native} was changed "
        "(its size does not match the manifest)."
    ]
    assert native not in opened


# -- 5. what the report says ----------------------------------------------------------------


def test_the_report_says_what_was_checked_and_what_the_bundle_claims(
    bundle: Path, imported: Cli, key_file: Path, tmp_path: Path
) -> None:
    rows = read_json(bundle, "manifest.json")["messages"]
    r = imported("bundle", "verify", str(bundle), "--public-key", str(key_file))
    assert r.code == 0, r.out
    for text in (
        "case: Smith v. Acme",
        "selection: query: client:acme",
        "reason: subpoena 42",
        f"messages: {len(rows)}, Bates ABC000001 to {rows[-1]['doc_id']}",
        "not exported: 0",
        "(confirmed: the key given with --public-key)",
        "Checks:",
    ):
        assert text in r.out, (text, r.out)
    assert r.out.count("  [ok] ") == len(CHECKS), r.out

    report = json.loads(imported("bundle", "verify", str(bundle), "--public-key", str(key_file), "--json").out)
    assert [c["check"] for c in report["checks"]] == [name for name, _ in CHECKS]
    assert all(c["result"] == "passed" for c in report["checks"])
    claims = report["claims"]
    assert claims["case"] == "Smith v. Acme" and claims["count"] == len(rows)
    assert claims["selection"] == {"kind": "query", "value": "client:acme"}
    assert (claims["bates_first"], claims["bates_last"]) == ("ABC000001", rows[-1]["doc_id"])

    target = rows[0]["native_path"]
    changed = copy_zip(bundle, tmp_path / "c.zip", lambda i, d: [(i, d + b"x")] if i.filename == target else [])
    report = json.loads(imported("bundle", "verify", str(changed), "--json").out)
    results = {c["check"]: c["result"] for c in report["checks"]}
    assert results["rows"] == "failed" and results["key"] == "not confirmed" and results["proofs"] == "passed"
    assert report["status"] == "FAILED"


def test_the_standalone_verifier_runs_alone_and_exits_as_documented(
    bundle: Path, key_file: Path, tmp_path: Path
) -> None:
    alone = tmp_path / "alone"
    alone.mkdir()
    script = shutil.copy(ROOT / "archiver" / "export" / "verify.py", alone / "verify.py")
    broken = copy_zip(bundle, tmp_path / "b.zip", lambda i, d: [(i, d + b"x")] if i.filename == "index.html" else [])

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-I", str(script), *args], cwd=alone, capture_output=True, text=True, check=False
        )

    good = run(str(bundle))
    assert good.returncode == 0 and good.stdout.splitlines()[-1].startswith(STATUS_KEY_NOT_CONFIRMED), good
    pinned = run(str(bundle), "--public-key", str(key_file))
    assert pinned.returncode == 0 and pinned.stdout.splitlines()[-1].startswith("OK:"), pinned
    assert "[ok] " in pinned.stdout and "case: Smith v. Acme" in pinned.stdout
    assert json.loads(run(str(bundle), "--json").stdout)["key_confirmed"] is False
    bad = run(str(broken))
    assert bad.returncode == 1 and "index.html was changed" in bad.stdout, bad
    no_key = run(str(bundle), "--public-key", str(tmp_path / "missing.json"))
    assert no_key.returncode == 2 and "cannot read the public key" in no_key.stderr
    docs = (ROOT / "docs" / "bundles.md").read_text()
    assert re.search(r"`python verify.py`[^.]*exits 0[^.]*1[^.]*2", docs), "docs/bundles.md: the standalone exit codes"
    assert re.search(r"`archiver bundle verify` exits 0[^.]*9", docs)
