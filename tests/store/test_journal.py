"""The journal's record encoding: one serialisation must give the canonical line and hash."""

from __future__ import annotations

import json
from typing import Any

import pytest

from archiver.store.journal import GENESIS, canonical, make_record, record_hash

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
