"""The journal's record encoding: one serialisation must give the canonical line and hash."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from archiver.export.verify import record_hash as proof_hash
from archiver.store.journal import GENESIS, canonical, data_digest, make_record, record_hash

DATA: list[dict[str, Any]] = [
    {},
    {"id": "ab" * 32, "prov": {"folder": "Inbox/Été", "flags": ["\\Seen"], "uid": None}},
    {"z": 1, "a": [1.5, True, None, {"y": '\u2028\n\t"\\', "b": "\U0001f4e7"}], "m": {"k": {"j": []}}},
    {"text": "\x00\x1f\x7f" + "\u00e9" * 3, "n": -(2**63), "big": 2**70},
]


@pytest.mark.parametrize("data", DATA)
@pytest.mark.parametrize("actor", ["system", 'jürgen "the" auditor', ""])
def test_line_is_canonical_json_of_the_record(data: dict[str, Any], actor: str) -> None:
    rec, line = make_record(
        seq=7, prev=GENESIS, time="2026-01-02T03:04:05.000006Z", type="ingest", actor=actor, data=data
    )
    assert line == canonical(rec) + b"\n"
    assert rec["hash"] == record_hash(rec)
    assert json.loads(line) == rec


def test_a_changed_field_changes_the_hash() -> None:
    base = dict(seq=1, prev=GENESIS, time="2026-01-02T03:04:05.000006Z", type="copy", actor="a", data={"x": 1})
    first, _ = make_record(**base)  # type: ignore[arg-type]
    for key, value in (("seq", 2), ("actor", "b"), ("type", "ingest"), ("data", {"x": 2}), ("time", "2027")):
        other, _ = make_record(**{**base, key: value})  # type: ignore[arg-type]
        assert other["hash"] != first["hash"], key


def test_a_record_proves_its_link_without_its_data() -> None:
    """Version 2: the hash covers ``data`` through its SHA-256, so a bundle can show a record
    of another message as its header and ``data_sha256`` and the chain still checks."""
    rec, _ = make_record(seq=3, prev=GENESIS, time="2026", type="ingest", actor="a", data={"id": "cd" * 32})
    assert rec["v"] == 2
    redacted = {k: v for k, v in rec.items() if k != "data"} | {"data_sha256": data_digest(rec["data"])}
    assert proof_hash(redacted) == rec["hash"] == proof_hash(rec)
    assert proof_hash(redacted | {"data_sha256": data_digest({"id": "ef" * 32})}) != rec["hash"]
    assert proof_hash(rec | {"data_sha256": redacted["data_sha256"]}) == ""  # never both
    # in the archive's own journal a record without its data is damage, not a record
    with pytest.raises(KeyError):
        record_hash(redacted)
    # relabelling the version never makes a record verify
    assert record_hash(rec | {"v": 3}) == "" and record_hash(rec | {"v": True}) == ""
    assert record_hash({k: v for k, v in rec.items() if k != "v"}) != rec["hash"]


def test_records_written_before_version_2_still_verify() -> None:
    """Journals written before the record version keep hashing the whole record (docs/format.md 6.2)."""
    old = {"actor": "system", "data": {"x": 1}, "prev": GENESIS, "seq": 0, "time": "2025", "type": "init"}
    digest = hashlib.sha256(canonical(old)).hexdigest()
    assert record_hash(old | {"hash": digest}) == digest
    assert record_hash(old | {"data": {"x": 2}}) != digest
