"""Repository: round trip, dedup, keys, recovery from an interrupted commit, catalog rebuild."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import zstandard

from archiver.errors import ArchiveExists, ArchiveNotFound, ArchiverError, IntegrityError, PassphraseError
from archiver.model import ProvenanceRow, Tags
from archiver.store.journal import canonical, encode_frame, record_hash
from archiver.store.objects import message_id_of
from archiver.store.repository import Repository
from tests.journal_files import journal_file, read_records, write_records

PW = "pw"


def prov(i: int, folder: str = "INBOX") -> ProvenanceRow:
    return ProvenanceRow(source="t", folder=folder, uid=str(i), location=f"m{i}", fetched_at=datetime.now(UTC))


def msg(i: int) -> bytes:
    return f"Subject: message {i}\r\nMessage-ID: <{i}@x>\r\n\r\nbody {i}\r\n".encode()


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    return Repository.create(tmp_path / "a", PW)


def _two_commits_then(tmp_path: Path, repo: Repository) -> tuple[int, Path]:
    """Two committed transactions; returns where the second one's frame starts, and the journal file."""
    with repo.transaction() as tx:
        tx.put_raw(msg(1), prov(1), Tags())
    start = repo.journal.size()
    with repo.transaction() as tx:
        tx.put_raw(msg(2), prov(2), Tags())
    repo.close()
    return start, journal_file(tmp_path / "a")


def _flip_a_byte_after(f: Path, start: int) -> bytes:
    """Flip one bit in the middle of the journal's bytes after ``start`` (its last frame); returns them all."""
    data = bytearray(f.read_bytes())
    data[start + (len(data) - start) // 2] ^= 0x10
    f.write_bytes(bytes(data))
    return bytes(data)


def _drop_catalog(tmp_path: Path) -> None:
    for p in (tmp_path / "a").glob("catalog.sqlite*"):
        p.unlink()


def test_round_trip_and_dedup(repo: Repository) -> None:
    with repo.transaction() as tx:
        ids = [tx.put_raw(msg(i), prov(i), Tags(client="c", matters=("m1",))) for i in range(5)]
        again = tx.put_raw(msg(0), prov(0, "Archive"), Tags())
    assert again == ids[0] == message_id_of(msg(0))
    for i, oid in enumerate(ids):
        assert repo.read_raw(oid) == msg(i)
    assert len(list(repo.catalog.live_ids())) == 5
    provs = repo.catalog.provenance(ids[0])
    assert [p["folder"] for p in provs] == ["INBOX", "Archive"]
    assert repo.catalog.tags(ids[1]) == ("c", ("m1",))
    # the same copy again adds no record at all
    before = repo.catalog.head().seq
    with repo.transaction() as tx:
        tx.put_raw(msg(0), prov(0), Tags())
    assert repo.catalog.head().seq == before
    assert repo.verify(full=True).ok


def test_ciphertext_is_not_plaintext(repo: Repository) -> None:
    secret = b"Subject: s\r\n\r\n" + b"TOP-SECRET-MERGER-PLAN " * 50
    with repo.transaction() as tx:
        tx.put_raw(secret, prov(1), Tags())
    for seg in (repo.path / "segments").iterdir():
        assert b"TOP-SECRET" not in seg.read_bytes()
    assert all("TOP-SECRET" not in json.dumps(r) for r in read_records(repo.path))


def test_wrong_passphrase_writes_nothing(repo: Repository, tmp_path: Path) -> None:
    repo.close()
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "a").rglob("*") if p.is_file()}
    with pytest.raises(PassphraseError, match="Wrong passphrase"):
        Repository.open(tmp_path / "a", "not it")
    after = {p: p.stat().st_mtime_ns for p in (tmp_path / "a").rglob("*") if p.is_file()}
    assert before == after


def test_create_refuses_existing_and_open_missing(repo: Repository, tmp_path: Path) -> None:
    with pytest.raises(ArchiveExists):
        Repository.create(tmp_path / "a", PW)
    with pytest.raises(ArchiveNotFound, match="archiver init"):
        Repository.open(tmp_path / "nowhere", PW)


def test_failed_transaction_leaves_nothing(repo: Repository) -> None:
    with pytest.raises(RuntimeError), repo.transaction() as tx:
        tx.put_raw(msg(1), prov(1), Tags())
        raise RuntimeError("boom")
    assert list(repo.catalog.live_ids()) == []
    assert repo.verify().ok


def test_uncommitted_tail_is_discarded(repo: Repository) -> None:
    """Simulate a crash after data and journal records were written but before the commit record."""
    with repo.transaction() as tx:
        tx.put_raw(msg(1), prov(1), Tags())
    seg_size = repo.segments.path(0).stat().st_size
    jsize = repo.journal.size()
    # a torn write: segment bytes and a half journal line with no commit
    with open(repo.segments.path(0), "ab") as fh:
        fh.write(b"OBJ\x01" + b"\0" * 100)
    with open(repo.journal.path, "ab") as fh:
        fh.write(encode_frame([{"actor": "x", "data": {}, "prev": "0" * 64, "type": "ingest"}])[:-9])
    report = repo.verify()
    assert report.ok, report.problems
    with repo.transaction() as tx:
        tx.put_raw(msg(2), prov(2), Tags())
    assert repo.segments.path(0).stat().st_size > seg_size
    assert repo.journal.size() > jsize
    assert repo.read_raw(message_id_of(msg(2))) == msg(2)
    assert repo.verify(full=True).ok


def test_committed_journal_not_yet_in_catalog_is_applied(repo: Repository, tmp_path: Path) -> None:
    """Crash between the journal fsync and the catalog commit: the next writer applies the records."""
    with repo.transaction() as tx:
        tx.put_raw(msg(1), prov(1), Tags())
    head = repo.catalog.head()
    seg = repo.catalog.segment_end()
    with repo.transaction() as tx:
        tx.put_raw(msg(2), prov(2), Tags())
    # roll the catalog back to the earlier head, as if step 4 never happened
    c = repo.catalog.conn
    gone = message_id_of(msg(2))
    c.execute("DELETE FROM copies WHERE obj=(SELECT ingest_seq FROM object_rows WHERE id=?)", (gone,))
    c.execute("DELETE FROM object_rows WHERE id=?", (gone,))  # its tags are columns of object_rows
    for k, v in (("journal_seq", head.seq), ("journal_hash", head.hash), ("journal_offset", head.offset)):
        repo.catalog.set_meta(k, str(v))
    repo.catalog.set_meta("segment", str(seg[0]))
    repo.catalog.set_meta("segment_end", str(seg[1]))
    repo.close()
    r2 = Repository.open(tmp_path / "a", PW)  # recovery runs on open
    assert r2.catalog.head().offset == r2.journal.size()
    assert r2.read_raw(message_id_of(msg(2))) == msg(2)
    assert r2.verify(full=True).ok


def test_catalog_is_rebuilt_from_journal(repo: Repository, tmp_path: Path) -> None:
    with repo.transaction() as tx:
        for i in range(3):
            tx.put_raw(msg(i), prov(i), Tags(client="acme", matters=("1",)))
        tx.checkpoint("files:x", "1:2")
    repo.close()
    _drop_catalog(tmp_path)
    r2 = Repository.open(tmp_path / "a", PW)
    assert sorted(r2.catalog.live_ids()) == sorted(message_id_of(msg(i)) for i in range(3))
    assert r2.catalog.checkpoints() == {"files:x": "1:2"}
    assert r2.catalog.tags(message_id_of(msg(0))) == ("acme", ("1",))
    assert r2.verify(full=True).ok


def test_segments_roll_over(tmp_path: Path) -> None:
    repo = Repository.create(tmp_path / "a", PW, segment_max_bytes=2000)
    import os

    with repo.transaction() as tx:
        for i in range(20):
            tx.put_raw(msg(i) + os.urandom(300), prov(i), Tags())
    assert len(repo.segments.numbers()) > 3
    assert repo.verify(full=True).ok


def test_journal_records_hold_no_content(repo: Repository) -> None:
    with repo.transaction() as tx:
        tx.put_raw(b"Subject: Project Falcon\r\n\r\nsecret body", prov(1), Tags())
    lines = [json.dumps(r) for r in read_records(repo.path)]
    assert all("Falcon" not in line and "secret body" not in line for line in lines)
    assert json.loads(lines[-1])["type"] == "commit"


def test_torn_final_commit_line_is_uncommitted(repo: Repository, tmp_path: Path) -> None:
    """A commit record cut short before its newline was never acknowledged: recovery drops it."""
    good, f = _two_commits_then(tmp_path, repo)
    # roll the catalog back and tear the last line (the commit record) two bytes short
    f.write_bytes(f.read_bytes()[:-2])
    _drop_catalog(tmp_path)
    r2 = Repository.open(tmp_path / "a", PW)
    assert r2.journal.size() == good
    assert not r2.catalog.has_object(message_id_of(msg(2)))
    assert r2.keystore.get(message_id_of(msg(2))) is None, "the uncommitted object's key must be dropped"
    assert r2.verify(full=True).ok


def test_undecodable_file_name_in_provenance(repo: Repository) -> None:
    name = b"/mail/caf\xe9.eml".decode("utf-8", "surrogateescape")
    with repo.transaction() as tx:
        oid = tx.put_raw(msg(9), ProvenanceRow(source="t", location=name), Tags())
    assert repo.catalog.provenance(oid)[0]["location"] == "/mail/caf\\xe9.eml"
    assert repo.verify().ok


def test_dispose_crypto_shreds(repo: Repository, tmp_path: Path) -> None:
    with repo.transaction() as tx:
        keep = tx.put_raw(msg(1), prov(1), Tags())
        gone = tx.put_raw(msg(2), prov(2), Tags())
    wrapped = repo.keystore.get(gone)
    assert wrapped is not None
    with repo.transaction("officer") as tx:
        tx.dispose(gone, rule="six-years")
    from archiver.errors import NotFoundError

    with pytest.raises(NotFoundError, match="six-years"):
        repo.read_raw(gone)
    assert repo.keystore.get(gone) is None
    assert repo.read_raw(keep) == msg(1)
    # even with the master key and the old ciphertext, nothing decrypts without the wrapped key
    row = repo.catalog.object(gone)
    assert row is not None and row.disposed_at
    assert repo.catalog.message(gone) is None
    keys_db = (tmp_path / "a" / "keys.sqlite").read_bytes()
    assert wrapped not in keys_db, "secure_delete must overwrite the key on disk"
    wal = tmp_path / "a" / "keys.sqlite-wal"
    assert not wal.exists() or wrapped not in wal.read_bytes()
    assert repo.verify(full=True).ok


def test_a_disposed_message_that_arrives_again_is_stored_again(repo: Repository, tmp_path: Path) -> None:
    """A copy delivered after disposal (a custodian's mailbox under a hold) is new evidence: it
    is stored anew under a new key and ingest record, not dropped as a duplicate of nothing."""
    with repo.transaction() as tx:
        gone = tx.put_raw(msg(1), prov(1), Tags())
    with repo.transaction("officer") as tx:
        tx.dispose(gone, rule="junk")
    assert repo.keystore.get(gone) is None
    # read again where it was disposed of (an mbox that grew, a folder read again): only a copy
    with repo.transaction() as tx:
        tx.put_raw(msg(1), prov(5), Tags())
    assert repo.keystore.get(gone) is None and repo.catalog.object(gone).disposed_at  # type: ignore[union-attr]
    # found in a new place: stored again, the places it was seen in kept
    with repo.transaction() as tx:
        assert tx.put_raw(msg(1), prov(7, folder="Custodian/INBOX"), Tags()) == gone
    assert repo.read_raw(gone) == msg(1)
    row = repo.catalog.object(gone)
    assert row is not None and not row.disposed_at
    assert [p["folder"] for p in repo.catalog.provenance(gone)] == ["INBOX", "INBOX", "Custodian/INBOX"]
    ingests = [r for r in read_records(tmp_path / "a") if r["type"] == "ingest"]
    assert [r["data"]["id"] for r in ingests] == [gone, gone]
    assert repo.verify(full=True).ok
    # the catalog rebuilt from the journal alone agrees
    repo.close()
    _drop_catalog(tmp_path)
    again = Repository.open(tmp_path / "a", PW)
    assert again.read_raw(gone) == msg(1) and again.verify().ok


def test_an_uncommitted_second_copy_of_a_disposed_message_leaves_no_key(repo: Repository) -> None:
    with repo.transaction() as tx:
        gone = tx.put_raw(msg(1), prov(1), Tags())
    with repo.transaction() as tx:
        tx.dispose(gone, rule="junk")
    with pytest.raises(RuntimeError), repo.transaction() as tx:
        tx.put_raw(msg(1), prov(2, folder="Custodian/INBOX"), Tags())
        assert tx.keys, "a new place: stored again, with a new key"
        raise RuntimeError("crash before the commit")
    assert repo.keystore.get(gone) is None
    assert repo.verify().ok


def test_journal_is_one_compressed_frame_per_transaction(repo: Repository) -> None:
    """The journal file is zstd frames (readable by zstdcat), each ending with its commit record."""
    with repo.transaction() as tx:
        for i in range(30):
            tx.put_raw(msg(i), prov(i), Tags())
    data = journal_file(repo.path).read_bytes()
    assert journal_file(repo.path).name == "journal.jsonl.zst" and data.startswith(zstandard.FRAME_HEADER)
    frames = {}
    for line in repo.journal.lines():
        frames.setdefault(line.offset, []).append(line.record)
    assert len(frames) == 2  # init, then the 30 messages
    assert all(recs[-1]["type"] == "commit" for recs in frames.values())
    plain = zstandard.ZstdDecompressor().decompressobj(read_across_frames=True).decompress(data)
    assert plain.count(b"\n") == sum(len(v) for v in frames.values())
    assert len(data) < len(plain) / 3


def test_damaged_committed_frame_is_not_cut_as_a_torn_write(repo: Repository, tmp_path: Path) -> None:
    """A flipped byte in a committed frame with commits after it is damage: recovery refuses to cut it."""
    with repo.transaction() as tx:
        tx.put_raw(msg(1), prov(1), Tags())
    start = repo.journal.size()
    with repo.transaction() as tx:
        tx.put_raw(msg(2), prov(2), Tags())
    with repo.transaction() as tx:
        tx.put_raw(msg(3), prov(3), Tags())
    repo.close()
    f = journal_file(tmp_path / "a")
    data = bytearray(f.read_bytes())
    data[start + 20] ^= 0x40
    f.write_bytes(bytes(data))
    _drop_catalog(tmp_path)
    r2 = Repository.open(tmp_path / "a", PW)  # rebuilds what it can; the damage stays for verify
    assert journal_file(tmp_path / "a").stat().st_size == len(data), "committed records must never be cut"
    report = r2.verify()
    assert not report.ok and any("damaged" in p for p in report.problems), report.problems
    with pytest.raises(IntegrityError, match="damaged"), r2.transaction() as tx:
        tx.put_raw(msg(4), prov(4), Tags())


def test_plain_journal_of_an_older_archive_still_works(repo: Repository, tmp_path: Path) -> None:
    """Archives written before compression keep their JSON-lines journal, read and appended as such."""
    with repo.transaction() as tx:
        tx.put_raw(msg(1), prov(1), Tags())
    recs = read_records(repo.path)
    repo.close()
    folder = tmp_path / "a" / "journal"
    (folder / "journal.jsonl").write_bytes(b"".join(canonical(r) + b"\n" for r in recs))
    (folder / "journal.jsonl.zst").unlink()
    _drop_catalog(tmp_path)
    r2 = Repository.open(tmp_path / "a", PW)
    with r2.transaction() as tx:
        tx.put_raw(msg(2), prov(2), Tags())
    assert not (folder / "journal.jsonl.zst").exists()
    lines = (folder / "journal.jsonl").read_text().splitlines()
    assert len(lines) == len(recs) + 2 and json.loads(lines[-1])["type"] == "commit"
    assert r2.read_raw(message_id_of(msg(2))) == msg(2)
    assert r2.verify(full=True).ok


def test_a_decompressed_copy_next_to_the_journal_is_not_taken_for_it(repo: Repository, tmp_path: Path) -> None:
    """`zstdcat journal.jsonl.zst > journal.jsonl` in the journal folder must not change what the archive reads."""
    with repo.transaction() as tx:
        tx.put_raw(msg(1), prov(1), Tags())
    repo.close()
    folder = tmp_path / "a" / "journal"
    stale = read_records(tmp_path / "a")[:2]
    (folder / "journal.jsonl").write_bytes(b"".join(canonical(r) + b"\n" for r in stale))
    r2 = Repository.open(tmp_path / "a", PW)
    assert r2.journal.path.name == "journal.jsonl.zst"
    with r2.transaction() as tx:
        tx.put_raw(msg(2), prov(2), Tags())
    assert r2.verify().ok
    assert (folder / "journal.jsonl").read_bytes().count(b"\n") == 2, "the copy is left alone"


def test_damaged_last_frame_is_not_cut_when_the_catalog_is_missing(repo: Repository, tmp_path: Path) -> None:
    """A flipped byte in the last (committed) frame is not a torn write: with no catalog to say
    whether it was committed, recovery changes nothing and writers refuse, keeping every key."""
    start, f = _two_commits_then(tmp_path, repo)
    data = _flip_a_byte_after(f, start)
    segment = (tmp_path / "a" / "segments").iterdir().__next__().read_bytes()
    _drop_catalog(tmp_path)
    r2 = Repository.open(tmp_path / "a", None)  # a reader: no passphrase
    assert f.read_bytes() == bytes(data), "the journal must not be cut"
    assert (tmp_path / "a" / "segments").iterdir().__next__().read_bytes() == segment
    assert r2.keystore.get(message_id_of(msg(2))) is not None, "a committed message's key must survive"
    r2.close()
    r3 = Repository.open(tmp_path / "a", PW)
    report = r3.verify()
    assert not report.ok and any("damaged" in p for p in report.problems), report.problems
    with pytest.raises(IntegrityError, match=r"catalog.*missing"), r3.transaction() as tx:
        tx.put_raw(msg(4), prov(4), Tags())
    assert r3.keystore.get(message_id_of(msg(2))) is not None


def test_zero_filled_last_frame_is_a_torn_write(repo: Repository, tmp_path: Path) -> None:
    """A crash can leave an appended range as zeros: that frame was never acknowledged, so it is cut."""
    start, f = _two_commits_then(tmp_path, repo)
    data = f.read_bytes()
    f.write_bytes(data[: start + 8] + b"\0" * (len(data) - start - 8))
    _drop_catalog(tmp_path)
    r2 = Repository.open(tmp_path / "a", PW)
    assert f.stat().st_size == start
    assert not r2.catalog.has_object(message_id_of(msg(2)))
    assert r2.read_raw(message_id_of(msg(1))) == msg(1)
    assert r2.verify(full=True).ok


def test_an_edited_segment_end_in_the_catalog_cuts_no_committed_bytes(repo: Repository, tmp_path: Path) -> None:
    """Recovery takes the committed end from the journal before cutting, not from the unsigned catalog."""
    _two_commits_then(tmp_path, repo)
    r2 = Repository.open(tmp_path / "a", PW)
    committed = r2.catalog.segment_end()
    r2.catalog.set_meta("segment_end", "16")
    report = r2.verify(full=True)
    assert any("committed segment end" in p for p in report.problems), report.problems
    for i in (1, 2):
        assert r2.read_raw(message_id_of(msg(i))) == msg(i)
    with r2.transaction() as tx:
        tx.put_raw(msg(3), prov(3), Tags())
    assert r2.catalog.segment_end() > committed, "the next commit records the true end again"
    assert r2.verify(full=True).ok


def test_an_edited_record_count_in_the_newest_commit_is_reported(repo: Repository, tmp_path: Path) -> None:
    """The newest commit's ``records`` is not under its signature; verify counts the records instead."""
    _two_commits_then(tmp_path, repo)
    recs = read_records(tmp_path / "a")
    commit = recs[-1]
    assert commit["type"] == "commit"
    commit["data"]["records"] = 99
    commit["hash"] = record_hash(commit)
    write_records(tmp_path / "a", recs)
    _drop_catalog(tmp_path)
    report = Repository.open(tmp_path / "a", PW).verify()
    assert any("says its transaction has 99 records" in p for p in report.problems), report.problems


def test_a_record_whose_data_is_swapped_for_its_digest_is_damage(repo: Repository, tmp_path: Path) -> None:
    """Only a bundle's proofs show records without their data; in the journal it is damage,
    reported by verify (with the catalog, and rebuilding it), never a traceback."""
    _two_commits_then(tmp_path, repo)
    recs = read_records(tmp_path / "a")
    ingest = next(r for r in recs if r["type"] == "ingest")
    ingest["data_sha256"] = hashlib.sha256(canonical(ingest.pop("data"))).hexdigest()
    write_records(tmp_path / "a", recs)
    report = Repository.open(tmp_path / "a", PW).verify()
    assert not report.ok and any("does not match its hash" in p for p in report.problems), report.problems


def test_the_pre_export_check_holds_the_writer_lock(repo: Repository, tmp_path: Path) -> None:
    """require_verified compares the catalog with the journal: a commit by another writer (the
    daemon's sync) between the two reads looked like an edited catalog and refused an export."""
    import threading
    import time

    with repo.transaction() as tx:
        tx.put_raw(msg(1), prov(1), Tags())
    other = Repository.open(tmp_path / "a", PW)
    started, committed = threading.Event(), threading.Event()
    real_verify = repo.verify

    def slow_verify(*a: Any, **k: Any) -> Any:
        started.set()
        time.sleep(0.5)  # another writer tries to commit meanwhile
        assert not committed.is_set(), "a commit landed while the catalog was being compared"
        return real_verify(*a, **k)

    def write() -> None:
        started.wait(5)
        with other.transaction() as tx:
            tx.put_raw(msg(2), prov(2), Tags())
        committed.set()

    writer = threading.Thread(target=write)
    writer.start()
    repo.verify = slow_verify  # type: ignore[method-assign]
    repo.require_verified("Nothing was exported")
    writer.join(10)
    assert committed.is_set()


def test_keystore_rows_of_the_wrong_type_are_reported_not_crashed_on(repo: Repository, tmp_path: Path) -> None:
    _two_commits_then(tmp_path, repo)
    r2 = Repository.open(tmp_path / "a", PW)
    oid = message_id_of(msg(1))
    r2.keystore.conn.execute("INSERT INTO keys VALUES ('junk', x'00')")
    r2.keystore.conn.execute(
        "UPDATE keys SET wrapped = CAST(wrapped AS TEXT) WHERE id = ?", (bytes.fromhex(oid),)
    )
    report = r2.verify()
    assert any("which is not a message id" in p for p in report.problems), report.problems
    full = r2.verify(full=True)  # the key stored as TEXT holds the same bytes: still read, not a crash
    assert full.problems == report.problems
    assert r2.read_raw(oid) == msg(1)


def test_a_reader_does_not_wait_for_a_writer_between_journal_and_catalog(repo: Repository, tmp_path: Path) -> None:
    """Mid-commit the catalog is behind the journal; a reader opening then must not queue for the lock."""
    import threading

    with repo.transaction() as tx:
        tx.put_raw(msg(1), prov(1), Tags())
    opened: list[Repository] = []
    with repo.lock():
        with open(repo.journal.path, "ab") as fh:  # what a writer has appended and not yet applied
            fh.write(encode_frame([{"actor": "x", "data": {}, "prev": "0" * 64, "type": "ingest"}])[:-9])
        t = threading.Thread(target=lambda: opened.append(Repository.open(tmp_path / "a", None)), daemon=True)
        t.start()
        t.join(10)
        assert opened, "the reader waited for the writer's lock"
        assert opened[0].catalog.has_object(message_id_of(msg(1)))
    opened[0].close()
    assert repo.verify().ok


def test_an_interrupt_just_after_commit_is_not_hidden_by_a_failed_rollback(repo: Repository) -> None:
    """Ctrl-C landing right after COMMIT finished must surface as itself (exit 130), not as
    'cannot rollback - no transaction is active'."""

    class InterruptAfterCommit:
        def __init__(self, conn: Any) -> None:
            self.conn = conn

        def __getattr__(self, name: str) -> Any:
            return getattr(self.conn, name)

        def execute(self, sql: str, *args: Any) -> Any:
            out = self.conn.execute(sql, *args)
            if sql == "COMMIT":
                raise KeyboardInterrupt
            return out

    repo.keystore.conn = InterruptAfterCommit(repo.keystore.conn)  # type: ignore[assignment]
    with pytest.raises(KeyboardInterrupt):
        repo.keystore.put_many([("ab" * 32, b"k")])
    assert repo.keystore.get("ab" * 32) == b"k"


def test_writers_refuse_to_append_after_a_damaged_last_transaction(repo: Repository, tmp_path: Path) -> None:
    """Damage to the last applied frame is not buried under new, validly chained records."""
    start, f = _two_commits_then(tmp_path, repo)
    data = _flip_a_byte_after(f, start)
    r2 = Repository.open(tmp_path / "a", PW)  # the catalog is intact: it has applied that frame
    with pytest.raises(IntegrityError, match=r"committed transaction.* is damaged"), r2.transaction() as tx:
        tx.put_raw(msg(3), prov(3), Tags())
    assert f.read_bytes() == bytes(data)
    assert not r2.catalog.has_object(message_id_of(msg(3)))


def test_a_fresh_process_appends_after_an_intact_journal(repo: Repository, tmp_path: Path) -> None:
    _two_commits_then(tmp_path, repo)
    r2 = Repository.open(tmp_path / "a", PW)
    with r2.transaction() as tx:
        tx.put_raw(msg(3), prov(3), Tags())
    assert r2.verify(full=True).ok


def _interrupted_init(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run an init that a Ctrl-C stops just after the key file is written."""
    import archiver.store.repository as R

    real = R.create_keyfile

    def interrupted(*args: Any, **kw: Any) -> Any:
        real(*args, **kw)
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(R, "create_keyfile", interrupted)
        with pytest.raises(KeyboardInterrupt):
            Repository.create(path, PW)


def test_an_interrupted_init_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _interrupted_init(tmp_path / "a", monkeypatch)
    assert list(tmp_path.iterdir()) == [], "no half-built archive, no hidden build folder"
    (tmp_path / "a").mkdir()  # an empty folder made by the admin is fine too
    Repository.create(tmp_path / "a", PW).close()
    assert Repository.open(tmp_path / "a", PW).verify().ok


def test_init_on_a_file_or_an_uncreatable_folder_is_a_sentence(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(ArchiveExists, match="is a file"):
        Repository.create(tmp_path / "f", PW)
    with pytest.raises(ArchiverError, match="Cannot create the archive folder"):
        Repository.create(tmp_path / "f" / "sub", PW)


def test_a_crash_between_the_dispose_commit_and_the_key_deletion_is_finished_by_recovery(
    repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from archiver.store.keystore import Keystore

    with repo.transaction() as tx:
        gone = tx.put_raw(msg(2), prov(2), Tags())

    def crash(self: Keystore, ids: Any) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(Keystore, "destroy", crash)
    with pytest.raises(KeyboardInterrupt), repo.transaction("officer") as tx:
        tx.dispose(gone, rule="six-years")
    monkeypatch.undo()
    assert repo.keystore.get(gone) is not None, "the crash came after the catalog commit, before step 5"
    repo.close()
    r2 = Repository.open(tmp_path / "a", None)  # any open recovers, a reader's too
    assert r2.keystore.get(gone) is None
    assert r2.verify().ok


def test_init_in_an_existing_folder_or_through_a_link_keeps_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An admin-made folder (own owner, ACLs, a mount point) or a symbolic link to one is built in
    place; an interrupted build there is reported by other commands and cleared by the next init."""
    import archiver.store.repository as R

    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    _interrupted_init(tmp_path / "link", monkeypatch)
    (tmp_path / "real" / "archive.json").write_text("{}")  # as if the build got that far
    with pytest.raises(ArchiveNotFound, match="interrupted"):
        Repository.open(tmp_path / "link", PW)
    Repository.create(tmp_path / "link", PW).close()
    assert (tmp_path / "link").is_symlink() and (tmp_path / "real" / "archive.json").exists()
    assert not (tmp_path / "real" / R.INIT_MARKER).exists()
    assert Repository.open(tmp_path / "link", PW).verify().ok


def _big_checkpoints(repo: Repository, n: int, size: int) -> None:
    """Transactions whose journal frames are about ``size`` bytes each (random hex compresses to half)."""
    import secrets

    for i in range(n):
        with repo.transaction() as tx:
            tx.checkpoint(f"big:{i}", secrets.token_hex(size))


def test_the_tail_check_finds_damage_in_a_journal_larger_than_its_window(repo: Repository, tmp_path: Path) -> None:
    _big_checkpoints(repo, 12, 200_000)  # about 2.4 MB of frames, more than the window
    start, f = _two_commits_then(tmp_path, repo)
    _flip_a_byte_after(f, start)
    r2 = Repository.open(tmp_path / "a", PW)
    with pytest.raises(IntegrityError, match=r"damaged|altered"), r2.transaction() as tx:
        tx.put_raw(msg(3), prov(3), Tags())


def test_a_last_frame_larger_than_the_window_is_not_taken_for_damage(repo: Repository, tmp_path: Path) -> None:
    _big_checkpoints(repo, 1, 3_000_000)  # one frame of about 3 MB
    repo.close()
    r2 = Repository.open(tmp_path / "a", PW)
    with r2.transaction() as tx:
        tx.put_raw(msg(1), prov(1), Tags())
    assert r2.verify().ok
