# ruff: noqa: F811 - the fixtures imported from test_bundle are taken as arguments
"""The proofs of a bundle: they prove each message's copies and filing from the signed journal,
and they say nothing of the other messages whose records share its transactions."""

from __future__ import annotations

import json
import sqlite3
import zipfile
from pathlib import Path

import pytest

from archiver.archive import Archive
from archiver.config import load_config
from archiver.export.verify import verify_bundle
from archiver.store.repository import Repository
from tests.export.test_bundle import Cli, bundle, imported, read_json  # noqa: F401 - fixtures used by name


def all_ids(config_file: Path) -> dict[str, str]:
    """Every stored message's id and client."""
    with Archive.open(load_config(config_file)) as archive:
        return dict(archive.repo.catalog.conn.execute("SELECT id, client FROM tags"))


def test_proofs_hold_nothing_of_messages_outside_the_bundle(bundle: Path, config_file: Path) -> None:
    stored = all_ids(config_file)
    exported = {row["sha256"] for row in read_json(bundle, "manifest.json")["messages"]}
    others = set(stored) - exported
    assert exported and others, "the sample must hold messages of other clients in the same import"
    with zipfile.ZipFile(bundle) as zf:
        proofs = [json.loads(line) for line in zf.read("proofs/journal.jsonl").splitlines()]
        everything = b"".join(zf.read(name) for name in zf.namelist())
    hidden = [r for r in proofs if "data" not in r]
    assert hidden, "the export's transactions hold other messages' records, shown without their data"
    assert all(r["v"] == 2 and len(r["data_sha256"]) == 64 for r in hidden)
    for r in proofs:
        if "data" in r and r["type"] in ("ingest", "copy", "tag"):
            assert r["data"]["id"] in exported
    # no id, client name or file path of another message anywhere in the bundle
    for oid in others:
        assert oid.encode() not in everything
    assert b"globex" not in everything
    assert verify_bundle(str(bundle)).ok
    assert "disposed messages" in read_json(bundle, "custody.json")["query_note"]


def catalog(config_file: Path) -> sqlite3.Connection:
    return sqlite3.connect(config_file.parent / "archive" / "catalog.sqlite")


def test_export_refuses_a_catalog_edited_behind_the_journal(imported: Cli, config_file: Path, tmp_path: Path) -> None:
    """The manifest's custodians and matters come from the catalog; an edited catalog must not be signed."""
    with catalog(config_file) as db:
        db.execute("UPDATE copies SET account = 'ceo@acme.example', folder = 'CEO/Personal'")
    out = tmp_path / "edited.zip"
    r = imported("export", "--query", "client:acme", "--case", "C", "--out", str(out))
    assert r.code == 9, r.err
    assert "Nothing was exported: the archive does not verify" in r.err
    assert not out.exists()


def test_verifier_checks_copies_and_filing_against_the_journal(
    imported: Cli, config_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should an edited catalog reach a signed bundle anyway (an older writer, a bug), the
    verifier compares each row's copies, received time, client and matters with the proofs."""
    with catalog(config_file) as db:
        target = db.execute("SELECT id FROM object_rows WHERE client = 'acme' ORDER BY id LIMIT 1").fetchone()[0]
        db.execute("UPDATE object_rows SET client = 'acme', matters = '[\"99999-0001\"]' WHERE id = ?", (target,))
        db.execute(
            "UPDATE copies SET account = 'ceo@acme.example', internaldate = 978307200000000"
            " WHERE obj = (SELECT ingest_seq FROM object_rows WHERE id = ?)",
            (target,),
        )
    monkeypatch.setattr(Repository, "require_verified", lambda *_a, **_k: None)
    out = tmp_path / "signed-anyway.zip"
    r = imported("export", "--query", "client:acme", "--case", "C", "--out", str(out), "--bates-prefix", "X")
    assert r.code == 0, r.err
    rows = {row["sha256"]: row["doc_id"] for row in read_json(out, "manifest.json")["messages"]}
    report = verify_bundle(str(out))
    doc = rows[target]
    assert any(p.startswith(f"{doc}: its copies") for p in report.problems), report.problems
    assert any(p.startswith(f"{doc}: its received time") for p in report.problems), report.problems
    assert any(p.startswith(f"{doc}: its client and matters") for p in report.problems), report.problems
    assert all(p.startswith(f"{doc}:") for p in report.problems), report.problems


def test_matter_export_lists_what_carries_the_matter_under_another_client(
    imported: Cli, config_file: Path, tmp_path: Path
) -> None:
    """Names compare as holds compare them (case-insensitive); messages carrying the matter
    under another client are not disclosed, not even their ids, but custody.json counts them."""
    with catalog(config_file) as db:
        rows = db.execute("SELECT id, client FROM tags t JOIN matters m USING (id) WHERE m.matter = '20871-0003'")
        owners = dict(rows.fetchall())
    assert "globex" in owners.values() and "acme" in owners.values(), owners
    out = tmp_path / "m.zip"
    r = imported("export", "--matter", "GLOBEX/20871-0003", "--case", "C", "--out", str(out), "--json")
    assert r.code == 0, r.err
    exported = {row["sha256"] for row in read_json(out, "manifest.json")["messages"]}
    assert exported == {oid for oid, client in owners.items() if client == "globex"}
    custody = read_json(out, "custody.json")
    acme = [oid for oid, client in owners.items() if client == "acme"]
    assert custody["notes"] == [
        f"{len(acme)} other message(s) carry matter 20871-0003 but are filed under other clients; "
        "they are not part of this selection (names and ids withheld)"
    ]
    everything = b"".join(zipfile.ZipFile(out).read(n) for n in zipfile.ZipFile(out).namelist())
    assert b"acme" not in everything and not any(oid.encode() in everything for oid in acme)
    c = custody["counts"]
    assert c["selected"] == c["exported"] + c["not_exported"]


def test_unknown_ids_and_nothing_to_export_are_explained(imported: Cli, config_file: Path, tmp_path: Path) -> None:
    from archiver.export.bundle import Selection, export_bundle

    with Archive.open(load_config(config_file)) as archive:
        real = archive.repo.catalog.conn.execute("SELECT id FROM objects ORDER BY id LIMIT 1").fetchone()[0]
        result = export_bundle(archive, Selection("ids", "f", [real, "e" * 64]), case="C", out=tmp_path / "a.zip")
        assert result.exported == 1 and result.not_exported == [{"id": "e" * 64, "reason": "not in the archive"}]
        with archive.repo.transaction("test") as tx:
            tx.dispose(real, rule="test-rule")
    ids = tmp_path / "ids.txt"
    ids.write_text(real + "\n")
    r = imported("export", "--ids", str(ids), "--case", "C", "--out", str(tmp_path / "b.zip"))
    assert r.code == 8 and "test-rule" in r.err and real[:12] in r.err, r.err


def test_an_unwritable_destination_is_one_sentence_and_no_record(imported: Cli) -> None:
    """/proc refuses new files even to root (the tests may run as root, who passes permission checks)."""
    r = imported("export", "--query", "client:acme", "--case", "C", "--out", "/proc/bundle.zip")
    assert r.code == 1 and "Cannot write the bundle /proc/bundle.zip" in r.err, r.err
    assert "Traceback" not in r.err and "nothing was exported" in r.err
    assert imported("journal", "--type", "export", "--json").out.strip() in ("", "[]")
