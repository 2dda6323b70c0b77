"""The policy review's findings about holds and matters: a matter carried under another client,
backdated closes, holds that cover nothing, retags that release holds, holds placed during a
sweep, and the history of a re-used case name."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from archiver.archive import Archive
from archiver.config import load_config
from archiver.policies import apply as retention
from archiver.policies import holds as H
from archiver.policies import matters as M
from archiver.policies import pending
from tests.conftest import TAGGING, CliResult
from tests.policies.support import Env, Y

DELETE_1Y = {"period": "1y", "start": "sent", "action": "delete"}
#: "Annual retention review 2024": client acme, matters 10234-0001 (acme's) and 20871-0003 (globex's).
REVIEW_SUBJECT = "Annual retention review 2024"


def _review_id(env: Env) -> str:
    (oid,) = env.ids("m.subject = ?", REVIEW_SUBJECT)
    return oid


# -- finding 1 -----------------------------------------------------------------------------------


def test_a_matter_hold_covers_the_matter_carried_under_another_client(env: Env) -> None:
    """Finding 1: a hold on globex/20871-0003 missed the acme-filed message that carries that matter."""
    env.write_rules(default=DELETE_1Y)
    review = _review_id(env)
    globex = env.ids("t.client = 'globex' AND t.matters LIKE '%20871-0003%'")
    r = env.run(
        "hold", "add", "--case", "Globex grievance", "--matter", "globex/20871-0003", "--reason", "lit", "--json"
    )
    assert r.code == 0, r.err
    assert r.json()["covered"] == len(globex) + 1  # type: ignore[index]
    p = retention.plan(env.archive, Y(2030))
    assert {i.id for i in p.held} == globex | {review}
    assert review not in {i.id for i in p.dispose}
    shown = env.run("matter", "show", "globex/20871-0003", "--json").json()
    assert isinstance(shown, dict) and shown["messages"] == len(globex) + 1


def test_client_and_matter_rules_and_closures_reach_the_matter_under_another_client(env: Env) -> None:
    """Finding 1: rule matching on client+matter and matter closures compared the message's own client only."""
    env.write_rules(
        {"name": "globex-files", "match": {"client": "globex", "matter": "20871-*"}, "period": "forever"},
        default=DELETE_1Y,
    )
    review = _review_id(env)
    p = retention.plan(env.archive, Y(2040))
    assert review not in {i.id for i in p.dispose}
    assert p.rule_counts["globex-files"] == len(env.ids("t.matters LIKE '%20871-%'"))

    env.write_rules(
        {"name": "files", "match": {"client": ["acme", "globex"]}, "period": "1y", "start": "matter_closed",
         "action": "delete"},
    )  # fmt: skip
    today = datetime.now(UTC).date()
    for ref in ("acme/10234-0001", "globex/20871-0003"):
        M.close_matter(env.archive, ref, today, actor="t", today=today)
    later = datetime(today.year + 2, 1, 1, tzinfo=UTC)
    assert review in {i.id for i in retention.plan(env.archive, later).dispose}


# -- finding 6 -----------------------------------------------------------------------------------


def test_a_first_matter_close_cannot_be_backdated_without_an_explicit_reason(env: Env) -> None:
    """Finding 6: `--date 2016-06-30` (meant 2026) was accepted for a matter with mail up to 2024."""
    typo = env.run("matter", "close", "acme/10234-0002", "--date", "2016-06-30")
    assert typo.code == 10 and "mail dated up to 2024-06-04" in typo.err
    long_ago = env.run("matter", "close", "acme/10234-0002", "--date", "2025-01-01")
    assert long_ago.code == 10 and "days ago" in long_ago.err
    assert env.run("matter", "close", "acme/10234-0002", "--date", "2024-12-31", "--allow-backdate").code == 10
    assert env.archive.repo.catalog.conn.execute("SELECT COUNT(*) FROM matter_events").fetchone() == (0,)
    r = env.run("matter", "close", "acme/10234-0002", "--date", "2024-12-31", "--allow-backdate",
                "--reason", "closing letter found in the paper file", "--json")  # fmt: skip
    assert r.code == 0, r.err
    (data,) = env.archive.repo.catalog.conn.execute("SELECT data FROM events WHERE type = 'matter_close'").fetchone()
    record = yaml.safe_load(data)
    assert record["date"] == "2024-12-31" and record["recorded_on"] == datetime.now(UTC).date().isoformat()
    assert record["newest_message"] == "2024-06-04" and record["reason"].startswith("closing letter")


def test_mail_dated_after_its_matter_closed_counts_from_its_own_date(env: Env) -> None:
    env.write_rules(
        {"name": "files", "match": {"client": "acme"}, "period": "1y", "start": "matter_closed", "action": "delete"}
    )
    assert env.run("matter", "close", "acme/10234-0002", "--date", "2021-03-01", "--allow-backdate",
                   "--reason", "test").code == 0  # fmt: skip
    due = {i.id for i in retention.plan(env.archive, Y(2023)).dispose}
    assert due and due == env.ids("t.matters = '[\"10234-0002\"]' AND m.date < '2022'")


# -- finding 7 -----------------------------------------------------------------------------------


def test_holds_that_cover_nothing_are_refused_and_coverage_is_reported(env: Env) -> None:
    """Finding 7: a matter typo, an address in angle brackets and a bare domain were 'active' and held nothing."""
    env.write_rules(default=DELETE_1Y)
    typo = env.run("hold", "add", "--case", "Initech", "--matter", "acme/10234-01", "--reason", "lit")
    assert typo.code == 10 and "covers no archived message" in typo.err
    domain = env.run("hold", "add", "--case", "AcmeDomain", "--custodian", "acme.example", "--reason", "subpoena")
    assert domain.code == 10 and "--query 'from:acme.example" in domain.err
    bracketed = env.run(
        "hold", "add", "--case", "Jordan", "--custodian", "<Jordan.Blake@acme.example>", "--reason", "subpoena"
    )
    assert bracketed.code == 0, bracketed.err
    assert "custodian jordan.blake@acme.example" in bracketed.out
    jordan = env.ids("m.from_addr = 'jordan.blake@acme.example' OR m.to_addrs LIKE '%jordan.blake@acme.example%'")
    assert f"It covers {len(jordan)} archived messages now" in bracketed.out
    assert jordan <= {i.id for i in retention.plan(env.archive, Y(2040)).held}
    future = env.run("hold", "add", "--case", "Future", "--matter", "acme/10234-0099", "--reason", "r", "--allow-empty")
    assert future.code == 0 and "covers 0" in future.out
    wrong_client = env.run("hold", "add", "--case", "W", "--matter", "globex/10234-0002", "--reason", "r", "--json")
    assert wrong_client.code == 0
    out = wrong_client.json()
    assert isinstance(out, dict) and out["covered"] > 0 and any("under client 'acme'" in w for w in out["warnings"])
    # matter close: an unknown matter is refused, and the client's case does not matter
    assert env.run("matter", "close", "acme/10234-09", "--date", date.today().isoformat()).code == 10
    r = env.run("matter", "close", "Acme/10234-0002", "--date", date.today().isoformat(), "--json")
    assert r.code == 0, r.err
    assert r.json() == {**r.json(), "client": "acme", "state": "closed", "messages": 6}  # type: ignore[dict-item]


# -- finding 8 -----------------------------------------------------------------------------------


def _retag_config(tmp_path: Path, env: Env, tagging: dict[str, Any]) -> Path:
    cfg = yaml.safe_load(env.config.read_text(encoding="utf-8"))
    path = tmp_path / "retag.yaml"
    path.write_text(yaml.safe_dump({**cfg, "tagging": tagging}), encoding="utf-8")
    return path


def test_a_retag_that_releases_holds_or_compliance_coverage_is_refused(
    env: Env, tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    """Finding 8: renaming a client or changing matter patterns and retagging silently released mail."""
    env.write_rules({"name": "acme-files", "match": {"client": "acme"}, "period": "forever", "mode": "compliance"},
                    default=DELETE_1Y)  # fmt: skip
    assert env.run("hold", "add", "--case", "Initech", "--matter", "acme/10234-0001", "--reason", "lit").code == 0
    renamed = [{**c, "name": "acme-corp"} if c["name"] == "acme" else c for c in TAGGING["clients"]]
    no_matters = {"clients": [{k: v for k, v in c.items() if k != "matter_prefixes"} for c in TAGGING["clients"]],
                  "matter_patterns": ["ZZZ-NEVER-\\d+"]}  # fmt: skip
    before = retention.plan(env.archive, Y(2040))
    env.close()
    for tagging, words in (({"clients": renamed}, "compliance rule 'acme-files'"), (no_matters, "hold 'Initech'")):
        r = cli("retag", config=_retag_config(tmp_path, env, tagging))
        assert r.code == 10 and words in r.err and "nothing was retagged" in r.err, r.err
    after = retention.plan(env.archive, Y(2040))
    assert {i.id for i in after.dispose} == {i.id for i in before.dispose}
    assert env.archive.repo.catalog.conn.execute("SELECT COUNT(*) FROM events WHERE type = 'retag'").fetchone() == (0,)
    env.close()
    r = cli("retag", "--allow-release", config=_retag_config(tmp_path, env, {"clients": renamed}))
    assert r.code == 0 and "would leave the compliance rule 'acme-files'" in r.err
    (data,) = env.archive.repo.catalog.conn.execute(
        "SELECT data FROM events WHERE type = 'retag' AND json_extract(data, '$.override')"
    ).fetchone()
    assert "acme-files" in data


# -- finding 9 -----------------------------------------------------------------------------------


def test_a_hold_requested_during_a_sweep_stops_the_disposal_of_what_it_covers(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding 9: `hold add` waited for the sweep's lock and was placed after the sweep disposed of its mail."""
    env.write_rules(default=DELETE_1Y)
    jordan = env.ids("m.from_addr LIKE 'jordan.blake@%' OR m.to_addrs LIKE '%jordan.blake@%'")
    assert jordan
    placed: dict[str, Any] = {}
    told: list[str] = []

    def place() -> None:
        other = Archive.open(load_config(env.config))
        try:
            placed["hold"] = H.place_hold(
                other, case="LIT", kind="custodian", value="jordan.blake@acme.example", reason="litigation notice",
                actor="counsel", on_wait=lambda: told.append("waiting"),
            )  # fmt: skip
        finally:
            other.close()

    real_confirm = retention.confirm
    folder = env.archive.repo.path / pending.FOLDER

    def slow_confirm(*args: Any, **kwargs: Any) -> Any:
        if "thread" not in placed:  # the first batch: a compliance officer places a hold now
            placed["thread"] = threading.Thread(target=place)
            placed["thread"].start()
            deadline = time.monotonic() + 20
            while not list(folder.glob("*.json")) and time.monotonic() < deadline:
                time.sleep(0.05)
        return real_confirm(*args, **kwargs)

    monkeypatch.setattr(retention, "confirm", slow_confirm)
    cert = retention.apply(env.archive, datetime.now(UTC), actor="daemon")
    placed["thread"].join(60)
    assert not set(cert.ids) & jordan and not env.disposed() & jordan
    withheld = {w["id"]: w["reason"] for w in cert.body["withheld"]}
    assert set(withheld) == jordan and all("'LIT'" in why for why in withheld.values())
    hold = placed["hold"]
    assert told == ["waiting"] and hold.waited_s > 0 and "waited" in hold.warnings[0]
    assert hold.covered == len(jordan) and not list(folder.glob("*.json"))


def test_a_late_hold_check_is_cheap_when_nothing_is_pending(env: Env) -> None:
    env.write_rules(default=DELETE_1Y)
    cert = retention.apply(env.archive, datetime.now(UTC), actor="t")
    assert cert.disposed == len(env.disposed()) > 0 and cert.body["withheld"] == []


# -- finding 19 ----------------------------------------------------------------------------------


def test_hold_list_all_keeps_the_history_of_a_reused_case_name(env: Env) -> None:
    """Finding 19: re-using a case name replaced the old hold row and its release."""
    assert (
        env.run("hold", "add", "--case", "Smith v Acme", "--matter", "acme/10234-0002", "--reason", "first").code == 0
    )
    assert env.run("hold", "release", "Smith v Acme", "--reason", "settled").code == 0
    r = env.run(
        "hold", "add", "--case", "Smith v Acme", "--custodian", "jordan.blake@acme.example", "--reason", "appeal"
    )
    assert r.code == 0, r.err
    listed = env.run("hold", "list", "--all", "--json").json()
    assert isinstance(listed, dict)
    holds = listed["holds"]
    assert [(h["kind"], h["reason"], h["active"]) for h in holds] == [
        ("matter", "first", False),
        ("custodian", "appeal", True),
    ]
    assert holds[0]["released_at"] and holds[0]["released_by"]
    active = env.run("hold", "list", "--json").json()
    assert isinstance(active, dict) and [h["kind"] for h in active["holds"]] == ["custodian"]
    assert env.run("hold", "release", "Smith v Acme").code == 0
    assert env.run("verify").code == 0
