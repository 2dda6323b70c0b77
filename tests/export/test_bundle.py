"""Evidence bundles of the sample maildir: they verify, and every kind of tampering is named."""

from __future__ import annotations

import base64
import csv
import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from archiver.archive import Archive
from archiver.config import load_config
from archiver.export.loadfile import ENCODING, read_dat
from archiver.export.verify import COLUMN_NAMES, flat_row, signature_message, verify_bundle
from tests.conftest import SAMPLE_MAILDIR, CliResult
from tests.journal_files import read_records

Cli = Callable[..., CliResult]


@pytest.fixture
def imported(initialised: Cli) -> Cli:
    r = initialised("import", str(SAMPLE_MAILDIR))
    assert r.code == 0, r.err
    return initialised


@pytest.fixture
def bundle(imported: Cli, tmp_path: Path) -> Path:
    out = tmp_path / "acme.zip"
    r = imported(
        "export", "--query", "client:acme", "--case", "Smith v. Acme", "--out", str(out),
        "--bates-prefix", "ABC", "--reason", "subpoena 42", "--json",
    )  # fmt: skip
    assert r.code == 0, r.err
    return out


def read_json(zip_path: Path, name: str) -> Any:
    with zipfile.ZipFile(zip_path) as zf:
        return json.loads(zf.read(name))


def rewrite(
    src: Path, dst: Path, change: Callable[[str, bytes], bytes | None], add: dict[str, bytes] | None = None
) -> Path:
    """Copy a zip entry by entry; ``change`` returns new bytes, or None to drop the entry."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = change(info.filename, zin.read(info.filename))
            if data is not None:
                zout.writestr(info.filename, data)
        for name, data in (add or {}).items():
            zout.writestr(name, data)
    return dst


def first_native(path: Path) -> str:
    return str(read_json(path, "manifest.json")["messages"][0]["native_path"])


def problems(path: Path, **kw: Any) -> list[str]:
    report = verify_bundle(str(path), **kw)
    assert not report.ok
    return report.problems


def test_bundle_verifies_and_has_everything(bundle: Path, imported: Cli) -> None:
    r = imported("bundle", "verify", str(bundle), "--json")
    assert r.code == 0, r.out
    report = json.loads(r.out)
    assert report["ok"] and report["counts"]["messages"] > 5
    manifest = read_json(bundle, "manifest.json")
    rows = manifest["messages"]
    with zipfile.ZipFile(bundle) as zf:
        names = set(zf.namelist())
        for row in rows:
            assert row["native_path"].startswith("natives/") and row["native_path"].endswith(".eml")
            assert row["text_path"].startswith("text/")
            assert row["client"] == "acme"
            import hashlib

            raw = zf.read(row["native_path"])
            assert hashlib.sha256(raw).hexdigest() == row["sha256"]
            if row["message_id"]:
                assert row["message_id"].startswith("<")
                assert row["mih"] == hashlib.md5(row["message_id"].encode()).hexdigest()
    for name in ("manifest.csv", "manifest.json", "loadfile.dat", "custody.json", "index.html",
                 "proofs/journal.jsonl", "signature.json"):  # fmt: skip
        assert name in names
    custody = read_json(bundle, "custody.json")
    assert custody["case"] == "Smith v. Acme" and custody["reason"] == "subpoena 42"
    assert custody["counts"]["exported"] == len(rows)
    assert custody["tool"]["version"] and custody["archive_id"] == manifest["archive_id"]
    keys = imported("keys", "show", "--json").json()
    assert report["fingerprint"] == keys["fingerprint"]  # type: ignore[index]


def test_bates_numbers_are_contiguous(bundle: Path) -> None:
    rows = read_json(bundle, "manifest.json")["messages"]
    assert [r["doc_id"] for r in rows] == [f"ABC{n:06d}" for n in range(1, len(rows) + 1)]
    assert all(r["bates_begin"] == r["bates_end"] == r["doc_id"] for r in rows)


def test_manifest_csv_and_load_file_parse_back(bundle: Path) -> None:
    rows = read_json(bundle, "manifest.json")["messages"]
    with zipfile.ZipFile(bundle) as zf:
        raw_dat = zf.read("loadfile.dat")
        csv_rows = list(csv.reader(io.StringIO(zf.read("manifest.csv").decode("utf-8-sig"), newline="")))
    assert raw_dat.startswith(b"\xef\xbb\xbf\xc3\xbe")  # UTF-8 BOM, then the quote character þ
    assert b"\xc3\xbe\x14\xc3\xbe" in raw_dat  # þ¶þ between fields
    records = list(read_dat(io.TextIOWrapper(io.BytesIO(raw_dat), encoding=ENCODING, newline="")))
    assert len(records) == len(rows)
    for rec, row in zip(records, rows, strict=True):
        assert list(rec) == list(COLUMN_NAMES)
        assert rec["SHA256"] == row["sha256"] and rec["BegBates"] == row["doc_id"]
        assert rec["Subject"] == row["subject"] and rec["NativePath"] == row["native_path"]
    assert tuple(csv_rows[0]) == COLUMN_NAMES
    assert csv_rows[1:] == [flat_row(r) for r in rows]


def test_index_html_escapes_and_links(bundle: Path) -> None:
    with zipfile.ZipFile(bundle) as zf:
        page = zf.read("index.html").decode()
    rows = read_json(bundle, "manifest.json")["messages"]
    assert page.count("<tr><td>ABC") == len(rows)
    assert "natives/" in page and "<script" not in page


def test_changed_byte_in_native_is_named(bundle: Path, tmp_path: Path) -> None:
    target = first_native(bundle)

    def flip(name: str, data: bytes) -> bytes:
        return data[:-3] + bytes([data[-3] ^ 1]) + data[-2:] if name == target else data

    found = problems(rewrite(bundle, tmp_path / "t.zip", flip))
    assert any(target in p and "changed" in p for p in found), found


def test_removed_file_is_named(bundle: Path, tmp_path: Path) -> None:
    target = first_native(bundle)
    found = problems(rewrite(bundle, tmp_path / "t.zip", lambda n, d: None if n == target else d))
    assert any(target in p and "missing" in p for p in found), found
    found = problems(rewrite(bundle, tmp_path / "u.zip", lambda n, d: None if n == "custody.json" else d))
    assert any("custody.json" in p and "missing" in p for p in found), found


def test_added_file_is_named(bundle: Path, tmp_path: Path) -> None:
    found = problems(
        rewrite(bundle, tmp_path / "t.zip", lambda n, d: d, add={"natives/extra.eml": b"Subject: x\n\nhi"})
    )
    assert any("natives/extra.eml" in p and "not in the manifest" in p for p in found), found


def test_edited_manifest_rows_are_named(bundle: Path, tmp_path: Path) -> None:
    def edit_csv(name: str, data: bytes) -> bytes:
        return data.replace(b"ABC000002,", b"ABC000009,", 1) if name == "manifest.csv" else data

    found = problems(rewrite(bundle, tmp_path / "t.zip", edit_csv))
    assert any("manifest.csv" in p and "record 2" in p for p in found), found

    def edit_json(name: str, data: bytes) -> bytes:
        if name != "manifest.json":
            return data
        doc = json.loads(data)
        doc["messages"][0]["subject"] = "nothing to see here"
        return json.dumps(doc).encode()

    found = problems(rewrite(bundle, tmp_path / "u.zip", edit_json))
    assert any("manifest.json was changed" in p for p in found), found
    assert any("manifest.csv record 1" in p and "Subject" in p for p in found), found


def test_wrong_signature_or_key_is_named(bundle: Path, tmp_path: Path, imported: Cli) -> None:
    def bad_sig(name: str, data: bytes) -> bytes:
        if name != "signature.json":
            return data
        doc = json.loads(data)
        sig = bytearray(base64.b64decode(doc["signature"]))
        sig[0] ^= 1
        doc["signature"] = base64.b64encode(bytes(sig)).decode()
        return json.dumps(doc).encode()

    found = problems(rewrite(bundle, tmp_path / "t.zip", bad_sig))
    assert any("signature over manifest.json is not valid" in p for p in found), found

    # a forger re-signs the manifest with a key of their own: the proofs and the expected key expose it
    other = Ed25519PrivateKey.generate()
    other_pub = other.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def resign(name: str, data: bytes) -> bytes:
        if name != "signature.json":
            return data
        doc = json.loads(data)
        doc["public_key"] = base64.b64encode(other_pub).decode()
        doc["signature"] = base64.b64encode(
            other.sign(signature_message(doc["archive_id"], doc["manifest_sha256"]))
        ).decode()
        return json.dumps(doc).encode()

    forged = rewrite(bundle, tmp_path / "f.zip", resign)
    found = problems(forged)
    assert any("init record" in p for p in found), found
    assert any("invalid signature" in p for p in found), found

    keyfile = tmp_path / "key.json"
    keyfile.write_text(imported("keys", "show", "--json").out)
    r = imported("bundle", "verify", str(forged), "--public-key", str(keyfile))
    assert r.code == 9 and "not the expected key" in r.out
    r = imported("bundle", "verify", str(bundle), "--public-key", str(keyfile))
    assert r.code == 0, r.out


def test_tampered_proof_is_named(bundle: Path, tmp_path: Path) -> None:
    def edit(name: str, data: bytes) -> bytes:
        if name != "proofs/journal.jsonl":
            return data
        lines = data.splitlines(keepends=True)
        for i, line in enumerate(lines):
            rec = json.loads(line)
            if rec["type"] == "ingest":
                rec["time"] = "2000-01-01T00:00:00.000000Z"  # backdating the message
                lines[i] = json.dumps(rec).encode() + b"\n"
                break
        return b"".join(lines)

    found = problems(rewrite(bundle, tmp_path / "t.zip", edit))
    assert any("does not match its hash" in p for p in found), found


def test_disposed_messages_are_not_exported_and_export_is_journalled(
    imported: Cli, config_file: Path, tmp_path: Path
) -> None:
    cfg = load_config(config_file)
    with Archive.open(cfg) as archive:
        ids = [r[0] for r in archive.repo.catalog.conn.execute(
            "SELECT id FROM matters WHERE matter = '10234-0001' ORDER BY id")]  # fmt: skip
        assert len(ids) >= 3
        gone = ids[0]
        with archive.repo.transaction("test") as tx:
            tx.dispose(gone, rule="test-rule")
        archive.index.delete([gone])  # the store leaves the index to its caller
        archive.index.commit()
    out = tmp_path / "m.zip"
    r = imported("export", "--matter", "acme/10234-0001", "--case", "C1", "--out", str(out), "--json")
    assert r.code == 0, r.err
    summary = r.json()
    assert [x["id"] for x in summary["not_exported"]] == [gone]  # type: ignore[index]
    rows = read_json(out, "manifest.json")["messages"]
    assert gone not in {row["sha256"] for row in rows} and len(rows) == len(ids) - 1
    custody = read_json(out, "custody.json")
    assert custody["not_exported"][0]["id"] == gone and "disposed" in custody["not_exported"][0]["reason"]
    assert verify_bundle(str(out)).ok
    exports = [r for r in read_records(config_file.parent / "archive") if r["type"] == "export"]
    assert len(exports) == 1
    data = exports[0]["data"]
    assert data["case"] == "C1" and data["exported"] == len(rows) and data["not_exported"] == 1
    assert data["ids"] == [row["sha256"] for row in rows]  # in Bates order
    assert data["manifest_sha256"] == json.loads(zipfile.ZipFile(out).read("signature.json"))["manifest_sha256"]
    assert imported("verify").code == 0


def test_ids_file_and_refusals(imported: Cli, tmp_path: Path, bundle: Path) -> None:
    rows = read_json(bundle, "manifest.json")["messages"]
    ids = tmp_path / "ids.txt"
    ids.write_text(f"# two messages and a stranger\n{rows[0]['sha256']}\n{rows[1]['sha256'][:12]}\n{'f' * 64}\n")
    out = tmp_path / "ids.zip"
    r = imported("export", "--ids", str(ids), "--case", "C2", "--out", str(out), "--json")
    assert r.code == 0, r.err
    assert len(read_json(out, "manifest.json")["messages"]) == 2
    assert len(r.json()["not_exported"]) == 1  # type: ignore[index]
    again = imported("export", "--ids", str(ids), "--case", "C2", "--out", str(out))
    assert again.code == 2 and "already exists" in again.err
    none = imported("export", "--query", "zzzznotthere", "--case", "C3", "--out", str(tmp_path / "n.zip"))
    assert none.code == 8 and not (tmp_path / "n.zip").exists()
    assert not list(tmp_path.glob("*.partial"))


def test_not_a_zip_is_a_problem_not_a_crash(tmp_path: Path, initialised: Cli) -> None:
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip at all")
    r = initialised("bundle", "verify", str(junk))
    assert r.code == 9 and "zip" in r.out


def test_manifest_rows_are_streamed_in_the_writers_layout_and_read_whole_otherwise(
    bundle: Path, tmp_path: Path
) -> None:
    """Both ways of reading manifest.json find the same problems; the writer's layout is streamed."""
    from archiver.export.verify import _streamable_header

    with zipfile.ZipFile(bundle) as zf:
        header = _streamable_header(zf)
    assert header is not None and header["count"] == len(read_json(bundle, "manifest.json")["messages"])

    def lines_edit(name: str, data: bytes) -> bytes:  # keeps the layout: streamed
        if name != "manifest.json":
            return data
        lines = data.split(b"\n")
        i = next(n for n, x in enumerate(lines) if x.startswith(b'{"doc_id"'))
        lines[i + 1] = lines[i + 1].replace(b'"size": ', b'"size": 1', 1)
        return b"\n".join(lines)

    def whole_edit(name: str, data: bytes) -> bytes:  # one line: read whole
        if name != "manifest.json":
            return data
        doc = json.loads(data)
        doc["messages"][1]["size"] = int(str(1) + str(doc["messages"][1]["size"]))
        return json.dumps(doc).encode()

    streamed, whole = rewrite(bundle, tmp_path / "s.zip", lines_edit), rewrite(bundle, tmp_path / "w.zip", whole_edit)
    with zipfile.ZipFile(streamed) as zs, zipfile.ZipFile(whole) as zw:
        assert _streamable_header(zs) is not None and _streamable_header(zw) is None
    a = {p for p in problems(streamed) if "signature" not in p and "manifest.json was changed" not in p}
    b = {p for p in problems(whole) if "signature" not in p and "manifest.json was changed" not in p}
    assert a == b and any("native file" in p and "was changed" in p for p in a), (a, b)


def test_query_export_includes_messages_the_index_had_not_reached(imported: Cli, config_file: Path, tmp_path: Path) -> None:
    """An import killed after its commit but before indexing leaves stored, unindexed messages:
    a query export indexes them first instead of leaving them out of the bundle."""
    with Archive.open(load_config(config_file)) as archive:
        acme = [r[0] for r in archive.repo.catalog.conn.execute("SELECT id FROM tags WHERE client = 'acme'")]
        assert len(acme) >= 3
        archive.index.delete(acme[:2])
        archive.index.commit()
        archive.repo.catalog.mark_indexed(acme[:2], 0)
    out = tmp_path / "late.zip"
    r = imported("export", "--query", "client:acme", "--case", "C2", "--out", str(out), "--json")
    assert r.code == 0, r.err
    rows = read_json(out, "manifest.json")["messages"]
    assert {row["sha256"] for row in rows} == set(acme)
