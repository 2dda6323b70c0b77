"""The policy review's findings about the rules: compliance floors, exact periods, adoption of an
edited file, strict YAML, values matching nothing, bounded periods, complete change lists."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from archiver.errors import PolicyError
from archiver.policies import apply as retention
from archiver.policies.retention import Copy, Decision, MessageRecord, decide
from archiver.policies.rules import Period, RuleSet, check_change, load_rules, parse_rules
from tests.policies.support import Env

T0 = datetime(2024, 3, 1, tzinfo=UTC)


def _msg(**kw: Any) -> MessageRecord:
    base: dict[str, Any] = {
        "id": "a" * 64,
        "client": "acme",
        "matters": ("10234-0001",),
        "sent": T0,
        "copies": (Copy(source="imap", account="dana@firm.example", folder="INBOX", received=T0),),
    }
    return MessageRecord(**{**base, **kw})


def _one(period: str, *, mode: str = "compliance", action: str = "review") -> RuleSet:
    return parse_rules(
        {"rules": [{"name": "c", "match": {"client": "acme"}, "period": period, "start": "sent", "mode": mode,
                    "action": action}]}
    )  # fmt: skip


# -- finding 2 -----------------------------------------------------------------------------------


def test_a_compliance_default_is_a_floor_no_governance_rule_undercuts() -> None:
    """Finding 2: a catch-all governance rule added later took every message out from under the default."""
    floor = {"period": "10y", "start": "sent", "action": "review", "mode": "compliance"}
    tidy = {"name": "tidy", "match": {"folder": "*"}, "period": "1d", "start": "sent", "action": "delete"}
    rules = parse_rules({"rules": [tidy], "default": floor})
    out = decide(_msg(), rules, T0 + timedelta(days=365 * 3))
    assert out.decision is Decision.KEEP and out.rule == "default"
    assert decide(_msg(), rules, datetime(2034, 3, 1, tzinfo=UTC)).decision is Decision.REVIEW
    # adding the rule is not refused, but it cannot dispose of anything before the floor
    assert any("'tidy' added" in c for c in check_change(parse_rules({"default": floor}), rules))
    # a governance default stays a fallback only: the matching rule decides
    gov = parse_rules({"rules": [tidy], "default": {**floor, "mode": "governance"}})
    assert decide(_msg(), gov, T0 + timedelta(days=2)).decision is Decision.DISPOSE


# -- finding 3 -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new"), [("6m", "183d"), ("2m", "61d"), ("4m", "122d"), ("1y", "365d"), ("26w", "6m"), ("30d", "1m")]
)
def test_a_compliance_period_in_another_unit_must_not_end_earlier_from_any_start(old: str, new: str) -> None:
    """Finding 3: 6m -> 183d passed an average-month comparison, yet ends a day early from 1 March."""
    with pytest.raises(PolicyError, match="cannot be shortened"):
        check_change(_one(old), _one(new))
    assert not Period.parse(new).never_shorter_than(Period.parse(old))


@pytest.mark.parametrize(("old", "new"), [("6m", "184d"), ("2m", "62d"), ("1y", "366d"), ("6m", "27w"), ("28d", "1m")])
def test_a_compliance_period_may_change_unit_when_it_is_never_shorter(old: str, new: str) -> None:
    assert check_change(_one(old), _one(new))  # accepted, and listed as a change


# -- finding 4 -----------------------------------------------------------------------------------


def test_an_edited_rules_file_is_not_adopted_until_accepted_by_someone(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding 4: the sweep adopted an edited file, journalled it as "daemon" and disposed under it."""
    count = "SELECT COUNT(*) FROM retention_rules"
    env.write_rules(default={"period": "10y", "start": "sent", "action": "review"}, accept=False)
    # plan is a dry run: nothing is journalled, even the first time
    r = env.run("retention", "plan", "--json")
    assert r.code == 0, r.err
    assert env.archive.repo.catalog.conn.execute(count).fetchone() == (0,)
    monkeypatch.setenv("ARCHIVER_ACTOR", "records-manager")
    r = env.run("retention", "rules", "accept")
    assert r.code == 0, r.err
    assert "'default' changed: period 'forever' -> '10y'" in r.out and "journalled with records-manager" in r.out
    monkeypatch.setenv("ARCHIVER_ACTOR", "someone-else")

    env.write_rules(default={"period": "1y", "start": "sent", "action": "delete"}, accept=False)
    with pytest.raises(PolicyError, match="differs from the journalled rules"):
        retention.apply(env.archive, datetime.now(UTC), actor="daemon")  # what the daemon's sweep calls
    assert env.disposed() == set()
    r = env.run("retention", "apply")
    assert r.code == 10 and "rules accept" in r.err
    # plan shows the rules in force, says the file differs and what would change, journals nothing
    r = env.run("retention", "plan", "--json")
    p = r.json()
    assert isinstance(p, dict) and p["dispose"] == [] and p["rules"]["file_differs"] is True
    assert any("'default' changed" in c for c in p["rules"]["pending_changes"])
    r = env.run("retention", "plan", "--proposed", "--json")
    p = r.json()
    assert isinstance(p, dict) and p["proposed"] is True and len(p["dispose"]) == p["counts"]["messages"] > 0
    assert env.archive.repo.catalog.conn.execute(count).fetchone() == (1,)
    # adoption is the explicit, attributed step; then the sweep runs the new rules
    monkeypatch.setenv("ARCHIVER_ACTOR", "records-manager")
    r = env.run("retention", "rules", "accept", "--json")
    out = r.json()
    assert isinstance(out, dict) and out["effect"]["after"]["dispose"] > out["effect"]["before"]["dispose"] == 0
    actors = env.archive.repo.catalog.conn.execute("SELECT actor FROM retention_rules ORDER BY seq").fetchall()
    assert actors == [("records-manager",), ("records-manager",)]
    assert retention.apply(env.archive, datetime.now(UTC), actor="daemon").disposed > 0


# -- finding 11 ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (
            "rules:\n  - name: k\n    match:\n      matter: [012345]\n    period: forever\n",
            r"line 4: matter: 012345 .*'012345'",
        ),
        ("rules:\n  - name: n\n    match: {client: [acme, no]}\n    period: 10y\n", r"line 3: client: no .*true/false"),
        (
            "rules:\n  - name: d\n    match: {client: acme}\n    period: 7y\n    period: 30d\n",
            r"line 5: .*'period' .*twice",
        ),
        ("rules: []\ndefault: {period: 7y}\nrules: []\n", r"line 3: .*'rules' .*twice \(first on line 1\)"),
        ("rules:\n  - {name: f, match: {folder: 2024-01-01}, period: 1y}\n", r"line 2: folder: 2024-01-01 .*a date"),
    ],
)
def test_yaml_coercions_and_duplicate_keys_are_refused_naming_the_line(tmp_path: Path, text: str, words: str) -> None:
    """Finding 11: `matter: 012345` became '5349', `no` became 'False', a second key replaced the first."""
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PolicyError, match=words):
        load_rules(path)


def test_match_values_given_as_numbers_are_refused_from_python_too() -> None:
    with pytest.raises(PolicyError, match="not text"):
        parse_rules({"rules": [{"name": "k", "match": {"matter": [12345]}, "period": "1y"}]})
    ok = parse_rules({"rules": [{"name": "k", "match": {"matter": ["012345"], "client": "no"}, "period": "1y"}]})
    assert ok.rules[0].match.matter == ["012345"] and ok.rules[0].match.client == ["no"]


# -- finding 12 ----------------------------------------------------------------------------------


def test_rule_values_that_match_nothing_are_reported_by_plan_and_apply(env: Env) -> None:
    """Finding 12: a typo in a client, domain or source left mail under the default without a word."""
    env.write_rules(
        {"name": "client-files", "match": {"client": ["acme", "globx"]}, "period": "forever"},
        {"name": "regulator", "match": {"from_domain": "sec.gv"}, "period": "forever"},
        {"name": "lit", "match": {"source": "legasy", "folder": "INBOX"}, "period": "forever"},
        default={"period": "1y", "start": "sent", "action": "delete"},
        accept=False,
    )
    r = env.run("retention", "plan", "--proposed")
    assert r.code == 0 and "client 'globx' matches no archived message" in r.err
    assert env.run("retention", "rules", "accept").code == 0
    p = retention.plan(env.archive, datetime(2040, 1, 1, tzinfo=UTC))
    for words in ("client 'globx'", "from_domain 'sec.gv'", "source 'legasy'", "rule 'regulator' matches no"):
        assert any(words in f for f in p.findings), (words, p.findings)
    assert not any("'acme'" in f or "'INBOX'" in f for f in p.findings)
    assert p.rule_counts["client-files"] > 0 and p.rule_counts["lit"] == 0
    r = env.run("retention", "plan")
    assert r.code == 0 and "client 'globx' matches no archived message" in r.err
    cert = retention.apply(env.archive, datetime.now(UTC), actor="t")
    assert any("globx" in f for f in cert.body["findings"])


def test_a_new_compliance_rule_with_a_value_matching_nothing_is_not_accepted_unasked(env: Env) -> None:
    """Finding 12: a compliance rule's match can never change, so a typo accepted once stays for good."""
    typo = {"name": "client-files", "match": {"client": ["acme", "globx"]}, "period": "forever", "mode": "compliance"}
    env.write_rules(typo, accept=False)
    r = env.run("retention", "rules", "accept")
    assert r.code == 10 and "client 'globx' matches no archived message" in r.err
    assert env.archive.repo.catalog.conn.execute("SELECT COUNT(*) FROM retention_rules").fetchone() == (0,)
    assert env.run("retention", "rules", "accept", "--allow-unmatched").code == 0


# -- finding 18 ----------------------------------------------------------------------------------


def test_periods_are_bounded_when_validated_and_never_crash_a_plan() -> None:
    """Finding 18: `period: 8000y` validated, then every plan crashed past the year 9999."""
    with pytest.raises(PolicyError, match=r"longer than 200 years.*forever"):
        _one("8000y")
    with pytest.raises(PolicyError, match="longer than 200 years"):
        parse_rules({"default": {"period": "80000d"}})
    assert _one("200y").rules[0].period == "200y"
    # rules journalled before the bound stay readable, and their ends never crash: they never come
    old = parse_rules(_one("200y").canonical() | {"rules": [{**_one("200y").canonical()["rules"][0], "period": "8000y"}]},
                      journalled=True)  # fmt: skip
    assert old.rules[0].span.add_to(T0) is None
    assert decide(_msg(), old, datetime(2500, 1, 1, tzinfo=UTC)).decision is Decision.KEEP


# -- finding 20 ----------------------------------------------------------------------------------


def test_compliance_changes_are_listed_for_the_journal() -> None:
    """Finding 20: a lengthened compliance rule, or one switched to delete, was journalled with `changes: []`."""
    longer = check_change(_one("7y"), _one("8y"))
    assert longer == ["compliance rule 'c' changed: period '7y' -> '8y'"]
    to_delete = check_change(_one("7y"), _one("7y", action="delete"))
    assert "compliance rule 'c' changed: action 'review' -> 'delete'" in to_delete
    assert any("without review" in c for c in to_delete)
