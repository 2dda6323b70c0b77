"""`archiver journal`: the committed audit trail, filtered, as stored."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

from archiver.store.journal import encode_frame, record_hash
from tests.conftest import CliResult


def test_json_records_are_the_stored_chain(imported: Callable[..., CliResult]) -> None:
    recs = imported("journal", "--all", "--json").json_lines()
    assert [r["seq"] for r in recs] == list(range(len(recs)))
    for before, rec in itertools.pairwise(recs):
        assert rec["prev"] == before["hash"]
    assert all(rec["hash"] == record_hash(rec) for rec in recs)
    assert recs[-1]["type"] == "commit"


def test_filters(imported: Callable[..., CliResult]) -> None:
    everything = imported("journal", "--json").json_lines()
    assert everything and not any(r["type"] in ("commit", "checkpoints") for r in everything)
    [imp] = imported("journal", "--type", "import", "--json").json_lines()
    assert imp["data"]["source"] == "legacy" and imp["data"]["imported"] > 0  # type: ignore[index]
    ingests = [r for r in everything if r["type"] == "ingest"]
    oid = str(ingests[3]["data"]["id"])  # type: ignore[index]
    about = imported("journal", "--id", oid, "--json").json_lines()
    # its ingest record, and a tag record if it is a reply filed when its parent came later
    assert [r["seq"] for r in about] == [r["seq"] for r in everything if r["data"].get("id") == oid]  # type: ignore[union-attr]
    assert about[0]["seq"] == ingests[3]["seq"] and {r["type"] for r in about} <= {"ingest", "tag"}
    assert imported("journal", "--actor", "nobody-at-all", "--json").json_lines() == []
    assert imported("journal", "--after", "2999-01-01", "--json").json_lines() == []
    assert len(imported("journal", "--before", "2999-01-01", "--json").json_lines()) == len(everything)
    assert len(imported("journal", "--limit", "2", "--json").json_lines()) == 2
    since = imported("journal", "--since-seq", str(imp["seq"]), "--all", "--json").json_lines()
    assert since[0]["seq"] == imp["seq"]


def test_text_output_and_bad_dates(imported: Callable[..., CliResult]) -> None:
    r = imported("journal", "--type", "import")
    assert r.code == 0 and "import" in r.out and "source=legacy" in r.out
    bad = imported("journal", "--after", "31/01/2024")
    assert bad.code == 2 and "YYYY-MM-DD" in bad.err and "Traceback" not in bad.err


def test_records_past_the_last_commit_are_not_shown(imported: Callable[..., CliResult], config_file: Path) -> None:
    """A complete frame without a commit record is not part of the trail (recovery cuts it on open)."""
    before = imported("journal", "--all", "--json").json_lines()
    archive = config_file.parent / "archive"
    last = before[-1]
    fake = {
        "actor": "x",
        "data": {},
        "prev": last["hash"],
        "seq": last["seq"] + 1,
        "time": "2030-01-01T00:00:00Z",
        "type": "export",
    }
    fake["hash"] = record_hash(fake)
    with open(archive / "journal" / "journal.jsonl.zst", "ab") as fh:
        fh.write(encode_frame([fake]))  # a complete frame, but no commit record: never committed
    after = imported("journal", "--all", "--json").json_lines()
    assert after == before
