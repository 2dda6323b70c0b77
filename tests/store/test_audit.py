"""Group commit of audit events: every caller's record is committed before it returns, and
concurrent callers share transactions."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from archiver.store.audit import GroupCommit
from archiver.store.repository import Repository
from tests.journal_files import read_records


def test_concurrent_events_are_all_journalled_in_fewer_commits(tmp_path: Path) -> None:
    repo = Repository.create(tmp_path / "a", "pw")
    lock = threading.Lock()
    commits: list[int] = []

    def commit(events: list[tuple[str, str, dict[str, object]]]) -> None:
        with lock, repo.transaction(actor="web") as tx:
            for actor, type_, data in events:
                tx.event(type_, data, actor=actor)
        commits.append(len(events))

    group = GroupCommit(commit)
    seen_after_return: list[bool] = []

    def worker(n: int) -> None:
        for i in range(20):
            group.submit(f"user{n}", "search", {"n": n, "i": i})
            # the caller's own record is in the journal when submit returns
            seen_after_return.append(any(r["data"] == {"n": n, "i": i} for r in read_records(repo.path)))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    recs = read_records(repo.path)
    searches = [r for r in recs if r["type"] == "search"]
    assert len(searches) == 160 and all(seen_after_return)
    assert {r["actor"] for r in searches} == {f"user{n}" for n in range(8)}
    assert sum(commits) == 160 and len(commits) < 160, "concurrent callers must share commits"
    assert repo.verify().ok


def test_a_failed_commit_raises_in_every_caller() -> None:
    def commit(_events: list[tuple[str, str, dict[str, object]]]) -> None:
        raise OSError("disk full")

    group = GroupCommit(commit)
    with pytest.raises(OSError, match="disk full"):
        group.submit("u", "view", {})
