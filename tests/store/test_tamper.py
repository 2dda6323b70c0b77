"""Every kind of tampering makes `verify` exit non-zero and name what is wrong."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from archiver.store.journal import record_hash
from tests.conftest import SAMPLE_MAILDIR, CliResult
from tests.journal_files import read_records, write_records


@pytest.fixture
def archive_dir(initialised: Callable[..., CliResult], config_file: Path) -> Path:
    r = initialised("import", str(SAMPLE_MAILDIR), "--source", "demo", "--json")
    assert r.code == 0, r.err
    assert initialised("verify", "--full").code == 0
    return config_file.parent / "archive"


def verify(cli: Callable[..., CliResult], *extra: str) -> tuple[int, str]:
    r = cli("verify", "--json", *extra)
    data = r.json()
    assert isinstance(data, dict)
    return r.code, "\n".join(data["problems"])


def journal_lines(archive: Path) -> list[dict[str, Any]]:
    return read_records(archive)


def write_journal(archive: Path, recs: list[dict[str, Any]]) -> None:
    write_records(archive, recs)


def test_flipped_byte_in_segment(archive_dir: Path, initialised: Callable[..., CliResult]) -> None:
    seg = archive_dir / "segments" / "00000000.seg"
    data = bytearray(seg.read_bytes())
    data[len(data) // 2] ^= 0x01
    seg.write_bytes(bytes(data))
    code, problems = verify(initialised)
    assert code == 9
    assert "was altered" in problems and "Segment 0" in problems
    code, problems = verify(initialised, "--full")
    assert code == 9 and "failed decryption" in problems


def test_removed_journal_record(archive_dir: Path, initialised: Callable[..., CliResult]) -> None:
    recs = journal_lines(archive_dir)
    del recs[5]
    write_journal(archive_dir, recs)
    code, problems = verify(initialised)
    assert code == 9 and "expected sequence number 5" in problems


def test_edited_journal_record(archive_dir: Path, initialised: Callable[..., CliResult]) -> None:
    recs = journal_lines(archive_dir)
    ingest = next(r for r in recs if r["type"] == "ingest")
    ingest["data"]["client"] = "someone-else"  # type: ignore[index]
    write_journal(archive_dir, recs)
    code, problems = verify(initialised)
    assert code == 9 and "does not match its hash: it was edited" in problems


def test_rehashed_journal_breaks_signatures(archive_dir: Path, initialised: Callable[..., CliResult]) -> None:
    """An attacker who recomputes every hash still cannot forge the signed checkpoints."""
    recs = journal_lines(archive_dir)
    ingest = next(r for r in recs if r["type"] == "ingest")
    ingest["data"]["matters"] = ["99999-9999"]  # type: ignore[index]
    prev = "0" * 64
    for r in recs:
        r["prev"] = prev
        r["hash"] = record_hash(r)
        prev = str(r["hash"])
    write_journal(archive_dir, recs)
    code, problems = verify(initialised)
    assert code == 9 and "signature is invalid" in problems


def test_truncated_journal_tail(archive_dir: Path, initialised: Callable[..., CliResult]) -> None:
    recs = journal_lines(archive_dir)
    last_commits = [i for i, r in enumerate(recs) if r["type"] == "commit"]
    write_journal(archive_dir, recs[: last_commits[-3] + 1])
    code, problems = verify(initialised)
    assert code == 9 and "journal records were removed" in problems


@pytest.mark.parametrize(
    ("sql", "fragment"),
    [
        # the rows are stored in object_rows, copies and matter_rows; verify compares the views over them
        ("UPDATE object_rows SET client='other' WHERE id=(SELECT MIN(id) FROM object_rows)", "catalog table tags"),
        (
            "UPDATE object_rows SET record_sha256=x'00' WHERE id=(SELECT MAX(id) FROM object_rows)",
            "catalog table objects",
        ),
        (
            "DELETE FROM copies WHERE seq=(SELECT seq FROM copies ORDER BY seq LIMIT 1 OFFSET 2)",
            "catalog table provenance",
        ),
        ("INSERT INTO matter_rows VALUES ('1-1', (SELECT MIN(ingest_seq) FROM object_rows))", "catalog table matters"),
    ],
)
def test_edited_catalog_row(archive_dir: Path, initialised: Callable[..., CliResult], sql: str, fragment: str) -> None:
    conn = sqlite3.connect(archive_dir / "catalog.sqlite")
    conn.execute(sql)
    conn.commit()
    conn.close()
    code, problems = verify(initialised)
    assert code == 9 and fragment in problems


def test_deleted_data_key(archive_dir: Path, initialised: Callable[..., CliResult]) -> None:
    conn = sqlite3.connect(archive_dir / "keys.sqlite")
    conn.execute("DELETE FROM keys WHERE id = (SELECT MIN(id) FROM keys)")
    conn.commit()
    conn.close()
    code, problems = verify(initialised)
    assert code == 9 and "data key of message" in problems


def test_swapped_objects_detected(archive_dir: Path, initialised: Callable[..., CliResult]) -> None:
    """Moving a valid ciphertext to another object's place is caught (record hashes and AEAD binding)."""
    conn = sqlite3.connect(archive_dir / "catalog.sqlite")
    rows = conn.execute("SELECT offset, length FROM objects WHERE segment=0 ORDER BY offset LIMIT 2").fetchall()
    conn.close()
    seg = archive_dir / "segments" / "00000000.seg"
    data = bytearray(seg.read_bytes())
    (o1, l1), (o2, l2) = rows
    a, b = bytes(data[o1 : o1 + l1]), bytes(data[o2 : o2 + l2])
    if l1 == l2:
        data[o1 : o1 + l1], data[o2 : o2 + l2] = b, a
    else:
        # same-length swap impossible: overwrite the first object's payload with the second's tail bytes
        data[o1 + 48 : o1 + l1] = (b[48:] * 2)[: l1 - 48]
    seg.write_bytes(bytes(data))
    code, problems = verify(initialised)
    assert code == 9 and "altered" in problems


def test_clean_archive_verifies_and_is_journalled(archive_dir: Path, initialised: Callable[..., CliResult]) -> None:
    code, problems = verify(initialised, "--full")
    assert code == 0 and problems == ""
    recs = journal_lines(archive_dir)
    assert [r for r in recs if r["type"] == "verify"][-1]["data"]["ok"] is True  # type: ignore[index]


def test_edited_message_metadata_is_caught_by_full_verify(
    archive_dir: Path, initialised: Callable[..., CliResult]
) -> None:
    conn = sqlite3.connect(archive_dir / "catalog.sqlite")
    conn.execute(
        "UPDATE message_rows SET subject='nothing to see here' "
        "WHERE obj=(SELECT ingest_seq FROM object_rows WHERE id=(SELECT MIN(id) FROM messages))"
    )
    conn.commit()
    conn.close()
    code, problems = verify(initialised, "--full")
    assert code == 9 and "catalog table messages" in problems and "subject" in problems
