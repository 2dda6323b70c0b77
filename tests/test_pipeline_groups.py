"""Small per-folder batches share transactions (one signed commit per ingest.batch_size messages)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import yaml

from archiver.pipeline import _groups
from connectors.base import Batch, RawMessage
from tests.conftest import CliResult
from tests.journal_files import read_records


def batch(folder: str, n: int) -> Batch:
    return Batch(messages=[RawMessage(b"x", None) for _ in range(n)], folder=folder)  # type: ignore[arg-type]


def test_groups_are_bounded_by_bytes_too() -> None:
    big = [Batch(messages=[RawMessage(b"x" * 400, None)], folder=f) for f in "abcd"]  # type: ignore[arg-type]
    groups = list(_groups(iter(big), 100, max_bytes=1000))
    assert [[b.folder for b in g] for g in groups] == [["a", "b"], ["c", "d"]]
    huge = [Batch(messages=[RawMessage(b"x" * 5000, None)], folder="z")]  # type: ignore[arg-type]
    assert [len(g) for g in _groups(iter(huge), 100, max_bytes=1000)] == [1], "never split, never dropped"


def test_groups_join_batches_up_to_the_limit_and_keep_them_apart() -> None:
    batches = [batch("a", 3), batch("b", 3), batch("c", 3), batch("d", 9), batch("e", 1)]
    groups = list(_groups(iter(batches), 7))
    assert [[b.folder for b in g] for g in groups] == [["a", "b"], ["c"], ["d"], ["e"]]
    assert [b for g in groups for b in g] == batches  # nothing dropped, order kept


def write_tree(root: Path, folders: int, per_folder: int) -> None:
    for f in range(folders):
        d = root / f"folder{f}"
        d.mkdir(parents=True)
        for m in range(per_folder):
            (d / f"{m}.").write_bytes(
                f"From: a{f}@example.com\r\nTo: b@example.com\r\nSubject: f{f} m{m}\r\n"
                f"Message-ID: <{f}.{m}@example.com>\r\n\r\nbody {f} {m}\r\n".encode()
            )


def test_many_small_folders_commit_in_few_transactions(
    initialised: Callable[..., CliResult], tmp_path: Path, config_file: Path
) -> None:
    cfg = yaml.safe_load(config_file.read_text())
    cfg.setdefault("ingest", {})["batch_size"] = 25
    config_file.write_text(yaml.safe_dump(cfg))
    write_tree(tmp_path / "tree", folders=12, per_folder=4)
    r = initialised("import", str(tmp_path / "tree"), "--source", "t", "--json")
    assert r.code == 0, r.err
    out = r.json()
    assert isinstance(out, dict) and out["imported"] == 48
    archive = config_file.parent / "archive"
    commits = [x for x in read_records(archive) if x["type"] == "commit"]
    ingest_commits = [c for c in commits if c["data"]["records"] > 1]
    assert 2 <= len(ingest_commits) <= 3, "48 messages in 12 folders, 25 a transaction"
    folders = out["folders"]  # the summary keeps one entry per folder
    assert isinstance(folders, dict) and len(folders) == 12
    assert sorted(v["imported"] for v in folders.values()) == [4] * 12
    assert initialised("verify").code == 0
