"""Compression dictionaries: what they may hold, how objects use them, tampering, crashes."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from archiver.archive import Archive
from archiver.config import load_config
from archiver.errors import IntegrityError
from archiver.model import ProvenanceRow, Tags
from archiver.pipeline import ingest
from archiver.store import dictionary as D
from archiver.store.repository import Repository
from archiver.store.segments import CODEC_ZSTD, CODEC_ZSTD_DICT, Location
from connectors.files import FilesConnector
from tests.journal_files import read_records

PW = "pw"
BOILERPLATE = (
    b"Mime-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=us-ascii\r\n"
    b"Content-Transfer-Encoding: 7bit\r\n"
    b"X-Mailer: Example Mail Client 4.2 (build 1234)\r\n"
    b"X-Disclaimer: This e-mail and any attachments are confidential to Example LLP.\r\n"
)


def msg(i: int, secret: bool = False) -> bytes:
    extra = b"The unique settlement figure is 7,654,321 dollars.\r\n" if secret else b""
    return (
        f"Subject: Shared subject line for every message\r\nMessage-ID: <{i}@example.com>\r\n".encode()
        + BOILERPLATE
        + b"\r\nHello,\r\n"
        + extra
        + f"message number {i}\r\n".encode()
        + b"Kind regards, the Example LLP records team\r\n"
    )


def prov(i: int) -> ProvenanceRow:
    return ProvenanceRow(source="t", folder="INBOX", uid=str(i), location=f"m{i}", fetched_at=datetime.now(UTC))


def codecs(repo: Repository) -> dict[str, int]:
    out = {}
    for oid in repo.catalog.live_ids():
        row = repo.catalog.object(oid)
        assert row is not None
        out[oid] = repo.segments.read(Location(row.segment, row.offset, row.length)).codec
    return out


def filled(tmp_path: Path, n: int = 30) -> Repository:
    """A new repository holding messages 0 .. n-1."""
    repo = Repository.create(tmp_path / "a", PW)
    with repo.transaction() as tx:
        for i in range(n):
            tx.put_raw(msg(i), prov(i), Tags())
    return repo


@pytest.fixture
def small_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """Train after 30 messages instead of 1,000 (the threshold stays 10 messages)."""
    monkeypatch.setattr(D, "TRAIN_AT", 30)


def test_build_keeps_only_lines_common_to_enough_messages() -> None:
    samples = [msg(i, secret=i < D.MIN_MESSAGES - 1) for i in range(100)]
    trained = D.build(samples)
    assert trained is not None
    assert trained.sample == 100 and trained.min_messages == D.MIN_MESSAGES
    assert b"X-Disclaimer: This e-mail" in trained.content
    assert b"Kind regards, the Example LLP records team" in trained.content
    # in 9 of 100 messages: below the threshold of 10, so never in the dictionary
    assert b"settlement figure" not in trained.content
    # subjects are content even when a whole thread shares one
    assert b"Shared subject line" not in trained.content
    assert b"message number" not in trained.content  # each such line is unique
    # the share rule wins on big samples: 1% of 3,000 is 30 messages
    assert D.threshold(3000) == 30
    assert D.build([msg(i) for i in range(D.MIN_MESSAGES - 1)]) is None


def test_objects_after_training_use_the_dictionary_and_read_back(tmp_path: Path, small_training: None) -> None:
    repo = Repository.create(tmp_path / "a", PW)
    with repo.transaction() as tx:
        before = [tx.put_raw(msg(i), prov(i), Tags()) for i in range(30)]
    assert repo.train_dictionary() == 1
    assert repo.train_dictionary() == 1  # not due again until the archive has grown GROWTH times
    with repo.transaction() as tx:
        after = [tx.put_raw(msg(i), prov(i), Tags()) for i in range(30, 40)]
    found = codecs(repo)
    assert {found[o] for o in before} == {CODEC_ZSTD}
    assert {found[o] for o in after} == {CODEC_ZSTD_DICT}
    (record,) = [r for r in read_records(repo.path) if r["type"] == "dictionary"]
    assert record["data"]["number"] == 1 and record["data"]["sample"] == 30
    report = repo.verify(full=True)
    assert report.ok, report.problems
    assert report.counts["dictionaries"] == 1
    repo.close()
    # a fresh process reads the dictionary from disk
    again = Repository.open(tmp_path / "a", PW)
    for i, oid in enumerate(before + after):
        assert again.read_raw(oid) == msg(i)
    assert again.current_dictionary() == 1


def test_dictionary_is_encrypted(tmp_path: Path, small_training: None) -> None:
    repo = filled(tmp_path)
    repo.train_dictionary()
    data = D.path_of(repo.dictionaries.root, 1).read_bytes()
    assert data.startswith(D.FILE_MAGIC)
    assert b"Example LLP" not in data


def test_tampered_or_missing_dictionary_is_reported(tmp_path: Path, small_training: None) -> None:
    repo = filled(tmp_path)
    repo.train_dictionary()
    with repo.transaction() as tx:
        oid = tx.put_raw(msg(99), prov(99), Tags())
    path = D.path_of(repo.dictionaries.root, 1)
    original = path.read_bytes()
    flipped = bytearray(original)
    flipped[-20] ^= 1
    path.write_bytes(bytes(flipped))
    fresh = Repository.open(tmp_path / "a", PW)
    report = fresh.verify()
    assert not report.ok
    assert any("dictionary 1" in p and "altered" in p for p in report.problems), report.problems
    with pytest.raises(IntegrityError, match="cannot be decompressed"):
        fresh.read_raw(oid)
    path.unlink()
    report = Repository.open(tmp_path / "a", PW).verify()
    assert any("Compression dictionary 1 is missing" in p for p in report.problems), report.problems
    path.write_bytes(original)
    assert Repository.open(tmp_path / "a", PW).verify(full=True).ok


def test_crash_before_the_commit_leaves_an_unused_file_that_is_never_overwritten(
    tmp_path: Path, small_training: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = filled(tmp_path)
    real_write = D.write

    def write_then_crash(*args: object) -> Path:
        real_write(*args)  # type: ignore[arg-type]
        raise OSError("simulated crash after the file, before the journal commit")

    monkeypatch.setattr(D, "write", write_then_crash)
    with pytest.raises(OSError, match="simulated crash"):
        repo.train_dictionary()
    monkeypatch.setattr(D, "write", real_write)
    leftover = D.path_of(repo.dictionaries.root, 1)
    assert leftover.exists()
    assert not [r for r in read_records(repo.path) if r["type"] == "dictionary"]
    reopened = Repository.open(tmp_path / "a", PW)
    assert reopened.current_dictionary() == 0
    report = reopened.verify()
    assert report.ok and any("dictionary 1 is not recorded" in n for n in report.notes)
    # the next training takes number 2 and leaves file 1 alone
    stamp = leftover.stat().st_mtime_ns, leftover.read_bytes()
    assert reopened.train_dictionary() == 2
    assert (leftover.stat().st_mtime_ns, leftover.read_bytes()) == stamp
    with pytest.raises(FileExistsError):
        D.write(reopened.dictionaries.root, reopened.require_keys().master, 2, b"other content")


def _write_maildir(root: Path, n: int) -> None:
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (root / "cur" / f"{i:05d}.host:2,S").write_bytes(msg(i))


def _archive(tmp_path: Path, **archive: object) -> Archive:
    cfg_path = tmp_path / "archiver.yaml"
    settings = {
        "archive": {"path": str(tmp_path / "arc"), **archive},
        "ingest": {"batch_size": 60, "workers": 2},
    }
    cfg_path.write_text(yaml.safe_dump(settings), encoding="utf-8")
    return Archive.init(load_config(cfg_path))


def test_import_trains_between_batches_and_workers_read_it_back(tmp_path: Path, small_training: None) -> None:
    """Groups of 60 go to the worker pool: sealing and reindexing with the dictionary run in workers."""
    _write_maildir(tmp_path / "mail", 300)
    archive = _archive(tmp_path)
    try:
        summary = ingest(archive, FilesConnector("t", [tmp_path / "mail"], batch_size=60))
        assert summary.imported == 300
        used = codecs(archive.repo)
        # Due at 30 and at 4 x 30 messages; the second is only started once the first is built,
        # which on a loaded machine can be after the last group: then there is one.
        assert archive.repo.current_dictionary() in (1, 2)
        with_dict = sum(1 for c in used.values() if c == CODEC_ZSTD_DICT)
        assert 0 < with_dict < 300
        archive.reindex()
        assert archive.index.count() == 300
        assert archive.search('"message number 299"').total == 1
        assert archive.verify(full=True).ok
    finally:
        archive.close()


def test_dictionaries_can_be_switched_off(tmp_path: Path, small_training: None) -> None:
    _write_maildir(tmp_path / "mail", 200)
    archive = _archive(tmp_path, compression_dictionary=False)
    try:
        ingest(archive, FilesConnector("t", [tmp_path / "mail"], batch_size=60))
        assert set(codecs(archive.repo).values()) == {CODEC_ZSTD}
        assert not (archive.repo.path / D.DIR_NAME).exists()
    finally:
        archive.close()


def test_too_few_common_lines_waits_for_the_archive_to_grow(tmp_path: Path, small_training: None) -> None:
    repo = Repository.create(tmp_path / "a", PW)
    unique = [f"X-Serial: {i}\r\n\r\nonly line of message {i}\r\n".encode() for i in range(130)]
    with repo.transaction() as tx:
        for i, raw in enumerate(unique[:30]):
            tx.put_raw(raw, prov(i), Tags())
    assert repo.train_dictionary() == 0
    assert not (repo.path / D.DIR_NAME).exists()
    with repo.transaction() as tx:
        for i, raw in enumerate(unique[30:119], start=30):
            tx.put_raw(raw, prov(i), Tags())
    assert repo.dictionary_sample() is None  # 119 < 4 x 30: not tried again yet
    with repo.transaction() as tx:
        tx.put_raw(unique[119], prov(119), Tags())
    sample = repo.dictionary_sample()
    assert sample is not None and len(sample) == 120


def test_a_dictionary_another_process_committed_is_used_at_once(tmp_path: Path, small_training: None) -> None:
    first = filled(tmp_path)
    second = Repository.open(tmp_path / "a", PW)  # e.g. the daemon next to a CLI import
    assert second.current_dictionary() == 0
    assert first.train_dictionary() == 1
    assert second.current_dictionary() == 1
    with second.transaction() as tx:
        oid = tx.put_raw(msg(500), prov(500), Tags())
    assert codecs(second)[oid] == CODEC_ZSTD_DICT
    assert first.read_raw(oid) == msg(500)


def test_a_rebuilt_catalog_knows_the_dictionaries(tmp_path: Path, small_training: None) -> None:
    repo = filled(tmp_path)
    repo.train_dictionary()
    with repo.transaction() as tx:
        oid = tx.put_raw(msg(77), prov(77), Tags())
    repo.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{tmp_path / 'a' / 'catalog.sqlite'}{suffix}").unlink(missing_ok=True)
    rebuilt = Repository.open(tmp_path / "a", PW)  # replays the journal
    assert rebuilt.current_dictionary() == 1
    assert rebuilt.read_raw(oid) == msg(77)
    assert rebuilt.verify(full=True).ok
