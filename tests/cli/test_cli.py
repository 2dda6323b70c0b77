"""The commands of the quick start, end to end through the CLI, on the tests' own sample mail."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

import pytest
import tantivy
import yaml

from archiver.index import schema as S
from tests.conftest import MALFORMED, SAMPLE_MAILDIR, CliResult, sha256
from tests.journal_files import read_records


def sample_files() -> list[Path]:
    return sorted(
        p
        for p in SAMPLE_MAILDIR.rglob("*")
        if p.is_file() and p.parent.name in ("cur", "new") and not p.name.startswith(".")
    )


def test_import_summary_and_rerun_adds_nothing(initialised: Callable[..., CliResult]) -> None:
    r = initialised("import", str(SAMPLE_MAILDIR), "--source", "legacy", "--json")
    s = r.json()
    assert isinstance(s, dict)
    unique = {sha256(p.read_bytes()) for p in sample_files()}
    assert s["imported"] == len(unique)
    assert s["imported"] + s["duplicates"] == len(sample_files())
    assert s["failed"] == 0
    again = initialised("import", str(SAMPLE_MAILDIR), "--source", "legacy", "--json").json()
    assert isinstance(again, dict) and again["imported"] == 0
    stats = initialised("stats", "--json").json()
    assert isinstance(stats, dict) and stats["messages"] == len(unique)


def test_show_raw_is_byte_exact_for_every_fixture(imported: Callable[..., CliResult]) -> None:
    for path in sample_files():
        data = path.read_bytes()
        r = imported("show", sha256(data), "--raw")
        assert r.code == 0, r.err
        assert sha256(r.raw) == sha256(data), path


def test_malformed_corpus_is_archived_byte_exact(initialised: Callable[..., CliResult]) -> None:
    files = sorted(p for p in MALFORMED.rglob("*") if p.is_file() and p.name != "README.txt")
    assert len(files) >= 40
    r = initialised("import", str(MALFORMED), "--source", "bad", "--json")
    s = r.json()
    assert isinstance(s, dict)
    nonempty = [p for p in files if p.stat().st_size > 0]
    stored = 0
    for p in nonempty:
        out = initialised("show", sha256(p.read_bytes()), "--raw")
        if out.code == 0:
            assert out.raw == p.read_bytes()
            stored += 1
    # everything that is a message is stored; what the connector refused is listed as failed
    assert stored + s["failed"] >= len(nonempty)
    assert stored >= len(nonempty) - 3
    assert s["parse_errors"] > 0
    assert initialised("verify", "--full").code == 0


def test_show_headers_and_json(imported: Callable[..., CliResult]) -> None:
    hit = imported("search", "subject:grievance", "--json").json_lines()[0]
    r = imported("show", str(hit["id"])[:12])
    assert r.code == 0
    assert "Subject" in r.out and "grievance" in r.out
    js = imported("show", str(hit["id"]), "--json").json()
    assert isinstance(js, dict) and js["client"] == "globex" and "20871-0003" in js["matters"]
    assert js["provenance"][0]["source"] == "legacy"


def test_search_json_fields_and_limit(imported: Callable[..., CliResult]) -> None:
    rows = imported("search", "client:acme", "--json", "--limit", "0").json_lines()
    assert rows, "acme mail expected in the sample"
    for row in rows:
        assert {"id", "message_id", "date", "from", "to", "subject", "client", "matters"} <= set(row)
        assert row["client"] == "acme"
    dates = [str(r["date"]) for r in rows]
    assert dates == sorted(dates, reverse=True)
    two = imported("search", "client:acme", "--json", "--limit", "2").json_lines()
    assert [r["id"] for r in two] == [r["id"] for r in rows[:2]]


#: unique words of the long memo below: one in the body's first 300 characters (stored in the
#: index for snippets), one past the first 3,000 bytes (indexed, never stored).
OPENING_WORD = "xylophonicmarmoset"
DEEP_WORD = "quixoticzebrafish"


@pytest.fixture
def long_memo(initialised: Callable[..., CliResult], tmp_path: Path) -> str:
    """Import one long message into a fresh archive; returns its id."""
    msg = EmailMessage()
    msg["From"] = "Dana Deep <dana@acme.example>"
    msg["To"] = "counsel@firm.example"
    msg["Subject"] = "Long memo"
    msg["Date"] = "Tue, 01 May 2001 10:00:00 +0000"
    msg["Message-ID"] = "<long-memo@acme.example>"
    filler = "Routine filler sentence about nothing much at all.\n" * 60
    msg.set_content(f"The {OPENING_WORD} opens this memo.\n{filler}Finally the {DEEP_WORD} clause matters.\n")
    raw = bytes(msg)
    assert raw.index(DEEP_WORD.encode()) > 3000
    folder = tmp_path / "memo"
    folder.mkdir()
    (folder / "memo.eml").write_bytes(raw)
    r = initialised("import", str(folder), "--source", "memo", "--json")
    assert r.code == 0, r.err
    return sha256(raw)


def test_hits_are_described_from_the_catalog(initialised: Callable[..., CliResult], long_memo: str) -> None:
    (row,) = initialised("search", OPENING_WORD, "--json").json_lines()
    assert row["id"] == long_memo
    assert OPENING_WORD in str(row["snippet"])
    # The index stores none of these: they come from the catalog.
    assert row["subject"] == "Long memo" and row["from"] == "Dana Deep <dana@acme.example>"
    assert row["to"] == ["counsel@firm.example"] and row["message_id"] == "<long-memo@acme.example>"
    assert row["date"] == "2001-05-01T10:00:00+00:00" and row["client"] == "acme"
    # A match past the stored beginning still finds the message; its snippet is the beginning.
    (deep,) = initialised("search", DEEP_WORD, "--json").json_lines()
    assert deep["id"] == long_memo and str(deep["snippet"]).startswith(f"The {OPENING_WORD} opens")


def test_the_index_stores_only_ids_and_body_beginnings(long_memo: str, config_file: Path) -> None:
    """tantivy's doc store (lz4) leaves lone values literal: the id and the opening are there, nothing else."""
    store = b"".join(p.read_bytes() for p in (config_file.parent / "archive" / "index").glob("*.store"))
    assert long_memo.encode() in store
    assert OPENING_WORD.encode() in store
    for text in (DEEP_WORD, "Long memo", "dana@acme.example", "long-memo@acme.example"):
        assert text.encode() not in store, text


def test_search_needs_no_passphrase(imported: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch) -> None:
    unlocked = imported("search", "client:acme", "--json", "--limit", "0").json_lines()
    monkeypatch.delenv("ARCHIVER_PASSPHRASE")
    r = imported("search", "client:acme", "--json", "--limit", "0")
    assert r.code == 0 and "Traceback" not in r.err
    assert r.json_lines() == unlocked and all(x["snippet"] for x in unlocked)


def test_an_index_built_by_an_older_version_is_rebuilt_by_the_next_import(
    imported: Callable[..., CliResult], config_file: Path
) -> None:
    before = imported("search", "client:acme", "--json", "--limit", "0").json_lines()
    assert before
    index = config_file.parent / "archive" / "index"
    shutil.rmtree(index)
    index.mkdir()
    old = tantivy.SchemaBuilder()  # the fields of the index before hits came from the catalog
    for name in (*(f for f in S.ALL_FIELDS if f != S.F_LEAD), "display"):
        old.add_text_field(name, stored=True)
    tantivy.Index(old.build(), path=str(index), reuse=False)
    r = imported("search", "client:acme")
    assert r.code == 1 and "run `archiver reindex`" in r.err and "Traceback" not in r.err
    r = imported("import", str(SAMPLE_MAILDIR), "--source", "legacy", "--json")
    assert r.code == 0, r.err
    assert r.json()["imported"] == 0
    assert imported("search", "client:acme", "--json", "--limit", "0").json_lines() == before


def test_malformed_query_is_a_clear_error(imported: Callable[..., CliResult]) -> None:
    r = imported("search", '(from:a@b.example AND "unclosed')
    assert r.code == 7
    assert "Traceback" not in r.err and "^" in r.err


def test_reindex_gives_identical_results(imported: Callable[..., CliResult], config_file: Path) -> None:
    queries = [
        "contract",
        "client:acme",
        "matter:20871-0003",
        "after:2021-01-01 before:2023-01-01",
        "NOT client:unfiled",
    ]
    before = {q: [r["id"] for r in imported("search", q, "--json", "--limit", "0").json_lines()] for q in queries}
    import shutil

    shutil.rmtree(config_file.parent / "archive" / "index")
    r = imported("reindex", "--json")
    assert r.code == 0, r.err
    after = {q: [r["id"] for r in imported("search", q, "--json", "--limit", "0").json_lines()] for q in queries}
    assert before == after
    assert any(before.values())


def test_reindex_skips_a_damaged_message_and_finishes(imported: Callable[..., CliResult], config_file: Path) -> None:
    from archiver.archive import Archive
    from archiver.config import load_config

    hits = imported("search", "NOT client:nobody", "--json", "--limit", "0").json_lines()
    damaged = str(hits[0]["id"])
    with Archive.open(load_config(config_file)) as archive:
        row = archive.repo.catalog.object(damaged)
        assert row is not None
        segment = archive.repo.segments.path(row.segment)
    data = bytearray(segment.read_bytes())
    data[row.offset + row.length - 20] ^= 0xFF  # inside the payload's ciphertext
    segment.write_bytes(bytes(data))
    r = imported("reindex", "--json")
    assert r.code == 0, r.err
    assert r.json()["processed"] == len(hits) - 1
    after = [x["id"] for x in imported("search", "NOT client:nobody", "--json", "--limit", "0").json_lines()]
    assert sorted(after) == sorted(str(x["id"]) for x in hits[1:])
    assert imported("verify").code != 0


def test_retag_after_rules_change(imported: Callable[..., CliResult], config_file: Path) -> None:
    assert not imported("search", "client:initech", "--json").json_lines()
    cfg = yaml.safe_load(config_file.read_text())
    cfg["tagging"]["clients"].insert(0, {"name": "initech", "domains": ["acme.example"]})
    cfg["tagging"]["clients"][1]["matter_prefixes"] = []
    config_file.write_text(yaml.safe_dump(cfg))
    r = imported("retag", "--json")
    assert r.code == 0, r.err
    out = r.json()
    assert isinstance(out, dict) and out["changed"] > 0
    assert imported("search", "client:initech", "--json").json_lines()
    assert any(r["type"] == "retag" for r in read_records(config_file.parent / "archive"))
    assert imported("verify").code == 0


def test_thread_inheritance_tags_replies(imported: Callable[..., CliResult]) -> None:
    """Replies without a matter number in them join their parent's matter."""
    rows = imported("search", "matter:10234-0002", "--json", "--limit", "0").json_lines()
    ids = {str(r["id"]) for r in rows}
    texts = [imported("show", i, "--json").json() for i in ids]
    assert any(
        "10234-0002" not in (str(t["subject"]) + str(t.get("body_text", ""))) for t in texts if isinstance(t, dict)
    )


def _eml(folder: Path, name: str, subject: str, message_id: str, day: int, **refs: str) -> None:
    msg = EmailMessage()
    msg["From"] = "counsel@firm.example" if refs else "legal@acme.example"
    msg["To"] = "someone@elsewhere.example"
    msg["Subject"] = subject
    msg["Date"] = f"Tue, {day:02d} May 2001 10:00:00 +0000"
    msg["Message-ID"] = message_id
    for header, value in refs.items():
        msg[header.replace("_", "-")] = value
    msg.set_content("See my notes.\n")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(bytes(msg))


def _late_parent_tree(tmp_path: Path) -> Path:
    """A reply and a reply to it in ``a-inbox``, imported before the message they answer in ``z-sent``."""
    tree = tmp_path / "tree"
    _eml(tree / "a-inbox", "1.eml", "Re: Re: terms", "<c@firm.example>", 3, In_Reply_To="<b@firm.example>")
    _eml(tree / "a-inbox", "2.eml", "Re: terms", "<b@firm.example>", 2, References="<a@acme.example>")
    _eml(tree / "z-sent", "1.eml", "Terms for 10234-0007", "<a@acme.example>", 1)
    return tree


def test_replies_imported_before_their_parent_join_its_matter(
    initialised: Callable[..., CliResult], tmp_path: Path
) -> None:
    """Folders are imported in order, so both replies are stored before the message they answer."""
    tree = _late_parent_tree(tmp_path)
    r = initialised("import", str(tree), "--source", "tree", "--json")
    assert r.code == 0, r.err
    rows = initialised("search", "matter:10234-0007", "--json", "--limit", "0").json_lines()
    assert sorted(str(x["subject"]) for x in rows) == ["Re: Re: terms", "Re: terms", "Terms for 10234-0007"]
    assert {x["client"] for x in rows} == {"acme"}
    assert initialised("retag", "--json").json()["changed"] == 0  # the import already agrees with retag


def test_late_replies_beyond_the_memory_bound_are_left_to_retag(
    initialised: Callable[..., CliResult], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("archiver.threads.MAX_WAITING", 0)
    tree = _late_parent_tree(tmp_path)
    assert initialised("import", str(tree), "--source", "tree", "--json").code == 0
    assert len(initialised("search", "matter:10234-0007", "--json").json_lines()) == 1
    assert initialised("retag", "--json").json()["changed"] == 2
    assert len(initialised("search", "matter:10234-0007", "--json").json_lines()) == 3


@pytest.mark.parametrize("bound", ["MAX_REFS", "MAX_WAITING"])
def test_replies_the_memory_bounds_left_out_are_found_in_the_catalog(
    initialised: Callable[..., CliResult], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bound: str
) -> None:
    """With room for one remembered reference (or reply), the other reply is found by its parent's
    Message-ID (replies found in the catalog have a budget of their own)."""
    monkeypatch.setattr(f"archiver.threads.{bound}", 1)
    tree = _late_parent_tree(tmp_path)
    assert initialised("import", str(tree), "--source", "tree", "--json").code == 0
    assert len(initialised("search", "matter:10234-0007", "--json").json_lines()) == 3
    assert initialised("retag", "--json").json()["changed"] == 0


def test_replies_archived_in_an_earlier_import_join_a_parent_that_arrives_later(
    initialised: Callable[..., CliResult], tmp_path: Path
) -> None:
    """The inbox is synced today, the sent folder tomorrow: no retag needed.  The reply linked by
    References alone and the reply to that reply (In-Reply-To) both follow."""
    tree = _late_parent_tree(tmp_path)
    _eml(tree / "a-inbox", "3.eml", "Re: terms 55555-0001", "<own@firm.example>", 4, In_Reply_To="<a@acme.example>")
    assert initialised("import", str(tree / "a-inbox"), "--source", "inbox", "--json").code == 0
    assert initialised("search", "matter:10234-0007", "--json").json_lines() == []
    r = initialised("import", str(tree / "z-sent"), "--source", "sent", "--json")
    assert r.code == 0, r.err
    rows = initialised("search", "matter:10234-0007", "--json", "--limit", "0").json_lines()
    assert sorted(str(x["subject"]) for x in rows) == ["Re: Re: terms", "Re: terms", "Terms for 10234-0007"]
    assert {x["client"] for x in rows} == {"acme"}
    (own,) = initialised("search", "matter:55555-0001", "--json").json_lines()
    assert own["subject"] == "Re: terms 55555-0001"  # a reply with a matter of its own keeps it
    assert initialised("retag", "--json").json()["changed"] == 0
    tags = [r for r in read_records(tmp_path / "archive") if r["type"] == "tag"]
    assert len(tags) == 2 and all(r["actor"] for r in tags)
    assert initialised("verify").code == 0


def _subjects_by_matter(cli: Callable[..., CliResult]) -> dict[str, list[str]]:
    rows = cli("search", "NOT client:nobody", "--json", "--limit", "0").json_lines()
    out: dict[str, list[str]] = {}
    for row in rows:
        for matter in row["matters"] or ["-"]:
            out.setdefault(str(matter), []).append(str(row["subject"]))
    return {k: sorted(v) for k, v in out.items()}


def test_a_reply_to_two_threads_takes_the_parent_that_arrived(
    initialised: Callable[..., CliResult], tmp_path: Path
) -> None:
    """X refers to A (re-decided in the same pass, no matter) and to P (stored, with a matter):
    both references count, as retag would have it."""
    tree = tmp_path / "tree"
    _eml(tree / "inbox", "a.eml", "Re: hello", "<a@firm.example>", 2, In_Reply_To="<q@acme.example>")
    _eml(
        tree / "inbox", "x.eml", "Re: terms", "<x@firm.example>", 4,
        In_Reply_To="<p@acme.example>", References="<a@firm.example> <p@acme.example>",
    )  # fmt: skip
    _eml(tree / "sent", "q.eml", "hello", "<q@acme.example>", 1)
    _eml(tree / "sent", "p.eml", "Terms for 10234-0007", "<p@acme.example>", 3)
    assert initialised("import", str(tree / "inbox"), "--source", "inbox").code == 0
    assert initialised("import", str(tree / "sent"), "--source", "sent").code == 0
    assert _subjects_by_matter(initialised)["10234-0007"] == ["Re: terms", "Terms for 10234-0007"]
    assert initialised("retag", "--json").json()["changed"] == 0


def test_a_reply_dated_before_the_reply_it_answers_is_filed_too(
    initialised: Callable[..., CliResult], tmp_path: Path
) -> None:
    """Clock skew: E2 answers E1 but carries an earlier Date; both join P's matter when P arrives."""
    tree = tmp_path / "tree"
    _eml(tree / "i1", "e1.eml", "Re: terms", "<e1@firm.example>", 5, In_Reply_To="<p@acme.example>")
    _eml(tree / "i1", "e2.eml", "Re: Re: terms", "<e2@firm.example>", 4, In_Reply_To="<e1@firm.example>")
    _eml(tree / "i2", "p.eml", "Terms for 10234-0007", "<p@acme.example>", 1)
    assert initialised("import", str(tree / "i1"), "--source", "i1").code == 0
    assert initialised("import", str(tree / "i2"), "--source", "i2").code == 0
    assert _subjects_by_matter(initialised)["10234-0007"] == ["Re: Re: terms", "Re: terms", "Terms for 10234-0007"]
    assert initialised("retag", "--json").json()["changed"] == 0


def test_replies_of_this_import_do_not_use_up_room_for_earlier_ones(
    initialised: Callable[..., CliResult], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With room for one reply of each kind, the remembered reply W and the earlier reply E both get filed."""
    monkeypatch.setattr("archiver.threads.MAX_WAITING", 1)
    tree = tmp_path / "tree"
    _eml(tree / "i1", "e.eml", "Re: terms", "<e@firm.example>", 4, In_Reply_To="<z@acme.example>")
    _eml(tree / "i2" / "a", "w.eml", "Re: hello", "<w@firm.example>", 2, In_Reply_To="<q@acme.example>")
    _eml(tree / "i2" / "b", "q.eml", "hello 10234-0001", "<q@acme.example>", 1)
    _eml(tree / "i2" / "b", "z.eml", "Terms for 10234-0007", "<z@acme.example>", 3)
    assert initialised("import", str(tree / "i1"), "--source", "i1").code == 0
    assert initialised("import", str(tree / "i2"), "--source", "i2").code == 0
    by_matter = _subjects_by_matter(initialised)
    assert by_matter["10234-0001"] == ["Re: hello", "hello 10234-0001"]
    assert by_matter["10234-0007"] == ["Re: terms", "Terms for 10234-0007"]
    assert initialised("retag", "--json").json()["changed"] == 0


def test_a_reply_with_one_inherited_matter_takes_a_second_parents_too(
    initialised: Callable[..., CliResult], tmp_path: Path
) -> None:
    """R answers P1 (filed first, matter 0001) and refers to P2 (matter 0007, stored later in the
    same import): R ends up under both, as retag decides."""
    tree = tmp_path / "tree"
    _eml(tree / "a", "p1.eml", "Memo 10234-0001", "<p1@acme.example>", 1)
    refs = "<p2@acme.example> <p1@acme.example>"
    _eml(tree / "a", "r.eml", "Re: both", "<r@firm.example>", 3, In_Reply_To="<p1@acme.example>", References=refs)
    _eml(tree / "z", "p2.eml", "Terms for 10234-0007", "<p2@acme.example>", 2)
    assert initialised("import", str(tree), "--source", "t").code == 0
    by_matter = _subjects_by_matter(initialised)
    assert "Re: both" in by_matter["10234-0001"] and "Re: both" in by_matter["10234-0007"]
    assert initialised("retag", "--json").json()["changed"] == 0


def test_every_copy_of_a_message_id_counts_as_a_parent(initialised: Callable[..., CliResult], tmp_path: Path) -> None:
    """Two different messages share a Message-ID, one with a matter: the reply inherits it,
    whichever copy was decided last."""
    tree = tmp_path / "tree"
    _eml(tree / "a", "1.eml", "Terms for 10234-0007", "<d@acme.example>", 2)
    _eml(tree / "a", "2.eml", "Terms (resent)", "<d@acme.example>", 1)
    _eml(tree / "b", "r.eml", "Re: terms", "<r@firm.example>", 3, In_Reply_To="<d@acme.example>")
    assert initialised("import", str(tree), "--source", "t").code == 0
    assert "Re: terms" in _subjects_by_matter(initialised)["10234-0007"]
    assert initialised("retag", "--json").json()["changed"] == 0


def test_a_long_chain_of_replies_follows_a_late_root(initialised: Callable[..., CliResult], tmp_path: Path) -> None:
    """23 replies, each answering the one before, archived a day before the message they all
    descend from: the whole chain is filed (one round per level)."""
    tree = tmp_path / "tree"
    parent = "<p@acme.example>"
    for k in range(1, 24):
        _eml(tree / "a", f"{k:02d}.eml", "Re: terms", f"<r{k}@firm.example>", 2, In_Reply_To=parent)
        parent = f"<r{k}@firm.example>"
    _eml(tree / "z", "p.eml", "Terms for 10234-0007", "<p@acme.example>", 1)
    assert initialised("import", str(tree / "a"), "--source", "a").code == 0
    assert initialised("import", str(tree / "z"), "--source", "z").code == 0
    assert len(_subjects_by_matter(initialised)["10234-0007"]) == 24
    assert initialised("retag", "--json").json()["changed"] == 0


def test_errors_without_tracebacks(cli: Callable[..., CliResult], tmp_path: Path) -> None:
    r = cli("stats")
    assert r.code == 4 and "archiver init" in r.err
    r = cli("stats", config=tmp_path / "missing.yaml")
    assert r.code == 3 and "does not exist" in r.err
    r = cli("stats", config=None)
    assert r.code == 3 and "ARCHIVER_CONFIG" in r.err
    assert cli("init").code == 0
    r = cli("init")
    assert r.code == 4 and "already exists" in r.err
    r = cli("show", "zzzz")
    assert r.code == 8
    r = cli("import", str(tmp_path / "no-such-dir"), "--json")
    assert r.code == 1
    out = r.json()
    assert isinstance(out, dict) and out["failed"] == 1
    for res in (r,):
        assert "Traceback" not in res.err


def test_wrong_passphrase(imported: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARCHIVER_PASSPHRASE", "wrong")
    r = imported("verify")
    assert r.code == 5 and "Wrong passphrase" in r.err


def test_keys_show(imported: Callable[..., CliResult]) -> None:
    info = imported("keys", "show", "--json").json()
    assert isinstance(info, dict) and len(str(info["fingerprint"]).replace(":", "")) == 64


def test_deleted_index_is_rebuilt_on_next_write(imported: Callable[..., CliResult], config_file: Path) -> None:
    import shutil

    n = len(imported("search", "NOT client:nobody", "--json", "--limit", "0").json_lines())
    shutil.rmtree(config_file.parent / "archive" / "index")
    import sqlite3

    conn = sqlite3.connect(config_file.parent / "archive" / "catalog.sqlite")
    conn.execute("UPDATE message_rows SET indexed=0")
    conn.commit()
    conn.close()
    assert imported("import", str(SAMPLE_MAILDIR), "--source", "legacy").code == 0
    assert len(imported("search", "NOT client:nobody", "--json", "--limit", "0").json_lines()) == n


def test_same_files_under_another_source_add_provenance_only(imported: Callable[..., CliResult]) -> None:
    before = imported("stats", "--json").json()
    r = imported("import", str(SAMPLE_MAILDIR), "--source", "second", "--json").json()
    assert isinstance(r, dict) and isinstance(before, dict)
    assert r["imported"] == 0 and r["duplicates"] == len(sample_files())
    after = imported("stats", "--json").json()
    assert isinstance(after, dict)
    assert after["messages"] == before["messages"]
    assert after["copies"] == before["copies"] + len(sample_files())
    assert len(imported("search", "source:second", "--json", "--limit", "0").json_lines()) == before["messages"]


def test_a_dateless_message_keeps_its_received_date_everywhere(
    initialised: Callable[..., CliResult], tmp_path: Path
) -> None:
    """Dated by the Maildir file's time at import; `show`, search after `reindex`, and the
    export name all agree with that, not with the moment the message was archived."""
    maildir = tmp_path / "md"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    msg = maildir / "cur" / "1262304000.M1P1.host:2,S"
    msg.write_bytes(b"From: a@x.example\r\nTo: b@y.example\r\nSubject: undated memo\r\n\r\nhello\r\n")
    os.utime(msg, (1262304000, 1262304000))  # 2010-01-01
    assert initialised("import", str(maildir)).code == 0
    (hit,) = initialised("search", "before:2011-01-01", "--json").json_lines()
    shown = initialised("show", str(hit["id"]), "--json").json()
    assert isinstance(shown, dict) and str(shown["date"]).startswith("2010-01-01") and shown["date_is_fallback"]
    catalog = tmp_path / "archive" / "catalog.sqlite"
    query = "SELECT date, date_fallback FROM message_rows"
    with contextlib.closing(sqlite3.connect(catalog)) as db:
        assert db.execute(query).fetchall() == [("2010-01-01T00:00:00+00:00", 1)]
    assert initialised("reindex").code == 0  # which rewrites the parsed metadata, but not this date
    with contextlib.closing(sqlite3.connect(catalog)) as db:
        assert db.execute(query).fetchall() == [("2010-01-01T00:00:00+00:00", 1)]
    assert [h["id"] for h in initialised("search", "before:2011-01-01", "--json").json_lines()] == [hit["id"]]
    assert initialised("search", "after:2011-01-01", "--json").json_lines() == []
    for stale in catalog.parent.glob("catalog.sqlite*"):  # rebuilt from the journal: the date too
        stale.unlink()
    assert initialised("reindex").code == 0
    with contextlib.closing(sqlite3.connect(catalog)) as db:
        assert db.execute(query).fetchall() == [("2010-01-01T00:00:00+00:00", 1)]


def test_a_date_just_after_the_source_time_stays_valid_on_every_reparse(
    initialised: Callable[..., CliResult], tmp_path: Path
) -> None:
    """The source's time may be up to a day ahead (clock skew) and the Date two more days: valid
    at import, so it must stay valid for `show` and after `reindex`, not fall back."""
    now = datetime.now(UTC)
    sent = now + timedelta(days=2, hours=12)
    maildir = tmp_path / "md"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    ahead = int((now + timedelta(hours=20)).timestamp())
    msg = maildir / "cur" / f"{ahead}.M1P1.host:2,S"  # Maildir names carry the delivery time
    msg.write_bytes(f"From: a@x.example\r\nSubject: skewed\r\nDate: {format_datetime(sent)}\r\n\r\nhello\r\n".encode())
    assert initialised("import", str(maildir)).code == 0
    (hit,) = initialised("search", "subject:skewed", "--json").json_lines()
    shown = initialised("show", str(hit["id"]), "--json").json()
    assert isinstance(shown, dict) and shown["date"] == hit["date"] and not shown["date_is_fallback"]
    assert initialised("reindex").code == 0
    after = initialised("search", f"after:{sent.date().isoformat()}", "--json").json_lines()
    assert [h["id"] for h in after] == [hit["id"]]


def test_search_takes_huge_limits_and_offsets(imported: Callable[..., CliResult]) -> None:
    every = imported("search", "client:acme", "--json", "--limit", "0").json_lines()
    for flag, value in (("--limit", "5000000000"), ("--limit", "99999999999999999999")):
        r = imported("search", "client:acme", "--json", flag, value)
        assert r.code == 0, r.err
        assert [x["id"] for x in r.json_lines()] == [x["id"] for x in every]
    far = imported("search", "client:acme", "--json", "--offset", "4294967296")
    assert far.code == 0 and far.json_lines() == []


def test_search_says_when_stored_messages_are_not_indexed(imported: Callable[..., CliResult], config_file: Path) -> None:
    from archiver.archive import Archive
    from archiver.config import load_config

    with Archive.open(load_config(config_file)) as archive:
        some = sorted(archive.repo.catalog.live_ids())[:3]
        archive.repo.catalog.mark_indexed(some, 0)
    r = imported("search", "client:acme", "--json")
    assert r.code == 0 and "3 stored messages are not in the search index yet" in r.err
    assert imported("search", "client:acme").err.count("not in the search index") == 1


def test_import_skips_the_archive_folder_and_refuses_an_empty_path(
    initialised: Callable[..., CliResult], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`import .` from the folder holding the archive imports the mail, not the archive's files."""
    mail = tmp_path / "mail"
    shutil.copytree(SAMPLE_MAILDIR, mail)
    monkeypatch.chdir(tmp_path)  # holds archive/ (the test config's) and mail/
    r = initialised("import", ".", "--json")  # the config file is the one thing that is not mail
    s = r.json()
    assert isinstance(s, dict) and s["imported"] > 0
    assert [Path(f["location"]).name for f in s["failures"]] == ["archiver.yaml"], s["failures"]
    own = initialised("import", str(tmp_path / "archive"), "--json")
    assert own.code == 1 and "archiver archive folder" in own.out
    empty = initialised("import", "")
    assert empty.code == 2 and "empty path" in empty.err
