"""The policy review's findings about retention runs: implausible arrival times, and runs that
are interrupted or told to stop part way."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from archiver.policies import apply as retention
from archiver.policies.records import copy_received
from archiver.store.repository import Repository
from tests.policies.support import Env

DELETE_1Y = {"period": "1y", "start": "sent", "action": "delete"}

# -- finding 5 -----------------------------------------------------------------------------------

BOARD = (
    b"From: Client <ceo@acme.example>\r\nTo: Dana <dana.whitfield@hartwell-pine.example>\r\n"
    b"Subject: Board minutes, please keep\r\nDate: Mon, 02 Jan 2023 10:00:00 +0000\r\n"
    b"Message-ID: <board-2023@acme.example>\r\n\r\nMinutes attached.\r\n"
)


def test_an_implausible_source_arrival_time_is_not_trusted_as_received(env: Env, tmp_path: Path) -> None:
    """Finding 5: a Maildir file named by a broken clock (1970) made new mail due under `start: received`."""
    maildir = tmp_path / "md2"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    (maildir / "cur" / "5.M1P1.oldtool:2,S").write_bytes(BOARD)
    assert env.run("import", str(maildir), "--source", "migrated").code == 0
    (board,) = env.ids("m.subject = 'Board minutes, please keep'")
    (raw,) = env.archive.repo.catalog.conn.execute(
        "SELECT internaldate FROM provenance WHERE id = ?", (board,)
    ).fetchone()
    assert raw.startswith("1970-01-01"), "the connector no longer takes the time from the file name"
    env.write_rules(
        {"name": "short-received", "match": {"source": "migrated"}, "period": "1y", "start": "received",
         "action": "delete"},
    )  # fmt: skip
    now = datetime.now(UTC)
    assert board not in {i.id for i in retention.plan(env.archive, now).dispose}
    later = {i.id: i for i in retention.plan(env.archive, now + timedelta(days=370)).dispose}
    assert "the source's time 1970-01-01 is before 1980, so when the archive first saw it" in later[board].reason


def test_copy_received_keeps_plausible_times_and_replaces_implausible_ones() -> None:
    seen = datetime(2025, 5, 1, 12, tzinfo=UTC)
    assert copy_received(datetime(2025, 4, 30, tzinfo=UTC), seen, seen) == (datetime(2025, 4, 30, tzinfo=UTC), "")
    assert copy_received(None, seen, seen - timedelta(hours=1)) == (seen, "")
    when, note = copy_received(datetime(2091, 1, 1, tzinfo=UTC), seen, seen)
    assert when == seen and "2091-01-01 is in the future" in note
    when, note = copy_received(datetime(1979, 12, 31, tzinfo=UTC), None, seen)
    assert when == seen and "before 1980" in note


# -- finding 13 ----------------------------------------------------------------------------------


class Killed(BaseException):
    """Stands for the process dying (the daemon's os._exit at its shutdown timeout, a kill, a power cut)."""


@contextmanager
def killed_after_disposal_commits(monkeypatch: pytest.MonkeyPatch, n: int) -> Iterator[None]:
    """The process dies right after the ``n``-th transaction holding disposals commits."""
    real = Repository.transaction
    seen = {"disposing": 0}

    @contextmanager
    def transaction(self: Repository, actor: str = "system") -> Iterator[Any]:
        with real(self, actor) as tx:
            yield tx
        if tx.disposed:
            seen["disposing"] += 1
            if seen["disposing"] == n:
                raise Killed

    monkeypatch.setattr(Repository, "transaction", transaction)
    with pytest.raises(Killed):
        yield
    monkeypatch.setattr(Repository, "transaction", real)


def _certificates(env: Env) -> list[dict[str, Any]]:
    folder = env.archive.repo.path / "certificates"
    return [json.loads(p.read_text())["certificate"] for p in sorted(folder.glob("*.json"))] if folder.exists() else []


def test_an_interrupted_apply_is_certified_and_its_text_purged_by_the_next_run(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding 13: a run killed between batches left disposals no certificate named, a failing
    verify, and the shredded messages' text in the index files."""
    env.write_rules(default=DELETE_1Y)
    monkeypatch.setattr(retention, "BATCH", 10)
    with killed_after_disposal_commits(monkeypatch, 2):
        retention.apply(env.archive, datetime.now(UTC), actor="daemon")
    env.close()
    orphans = env.disposed()
    assert len(orphans) == 20 and _certificates(env) == []
    conn = env.archive.repo.catalog.conn
    started = conn.execute("SELECT data FROM events WHERE type = 'disposition'").fetchall()
    assert [json.loads(d)["phase"] for (d,) in started] == ["started"]
    assert orphans <= set(json.loads(started[0][0])["ids"])

    # the rules change so that nothing more is due; a plan already cleans the index (verify passes)
    env.write_rules(default={"period": "forever"})
    assert retention.plan(env.archive, datetime.now(UTC)).dispose == []
    assert not env.archive.index.all_ids() & orphans and env.archive.index.deleted_docs_on_disk() == 0
    assert env.run("verify").code == 0

    cert = retention.apply(env.archive, datetime.now(UTC), actor="daemon")
    assert cert.disposed == 0
    recovered = [c for c in _certificates(env) if c["kind"] == "recovered"]
    assert len(recovered) == 1 and {d["id"] for d in recovered[0]["disposed"]} == orphans
    assert recovered[0]["recovered"]["run"]["planned"] == 34
    assert retention.apply(env.archive, datetime.now(UTC), actor="daemon").disposed == 0
    assert len([c for c in _certificates(env) if c["kind"] == "recovered"]) == 1
    assert env.run("verify", "--full").code == 0


def test_a_run_told_to_stop_ends_at_a_batch_boundary_with_a_certificate(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    env.write_rules(default=DELETE_1Y)
    monkeypatch.setattr(retention, "BATCH", 10)
    asked = iter([False, True])
    cert = retention.apply(env.archive, datetime.now(UTC), actor="daemon", stop=lambda: next(asked, True))
    assert cert.disposed == 10 and cert.body["stopped"]["remaining"] == 24
    assert env.archive.index.deleted_docs_on_disk() == 0
    rest = retention.apply(env.archive, datetime.now(UTC), actor="daemon")
    assert rest.disposed == 24 and not [c for c in _certificates(env) if c["kind"] == "recovered"]
    assert env.run("verify").code == 0
