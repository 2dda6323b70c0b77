"""Pure retention decisions across years: the clock is a parameter, so each test takes milliseconds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from archiver.errors import PolicyError
from archiver.policies.holds import Hold, hold_matches
from archiver.policies.retention import Copy, Decision, MessageRecord, decide
from archiver.policies.rules import Period, RuleSet, check_change, parse_rules

T0 = datetime(2020, 3, 15, 12, 0, tzinfo=UTC)


def at(years: float = 0, days: int = 0) -> datetime:
    return T0 + timedelta(days=round(365.25 * years) + days)


def rules(*rs: dict[str, Any], default: dict[str, Any] | None = None) -> RuleSet:
    data: dict[str, Any] = {"rules": list(rs)}
    if default is not None:
        data["default"] = default
    return parse_rules(data)


def msg(
    *,
    client: str = "acme",
    matters: tuple[str, ...] = ("10234-0001",),
    sent: datetime = T0,
    copies: tuple[Copy, ...] | None = None,
    from_domains: frozenset[str] = frozenset({"acme.example"}),
    to_domains: frozenset[str] = frozenset({"firm.example"}),
    query_rules: frozenset[str] = frozenset(),
) -> MessageRecord:
    return MessageRecord(
        id="a" * 64,
        client=client,
        matters=matters,
        sent=sent,
        from_domains=from_domains,
        to_domains=to_domains,
        copies=copies or (Copy(source="imap", account="dana@firm.example", folder="INBOX", received=sent),),
        query_rules=query_rules,
    )


def test_periods_parse_and_end_on_calendar_dates() -> None:
    assert Period.parse("6y").add_to(datetime(2020, 2, 29, tzinfo=UTC)) == datetime(2026, 2, 28, tzinfo=UTC)
    assert Period.parse("18m").add_to(datetime(2020, 8, 31, tzinfo=UTC)) == datetime(2022, 2, 28, tzinfo=UTC)
    assert Period.parse("90d").add_to(T0) == T0 + timedelta(days=90)
    assert Period.parse("2w").add_to(T0) == T0 + timedelta(days=14)
    assert Period.parse("forever").add_to(T0) is None
    for bad in ("7q", "y", "-1y", "1.5y", ""):
        with pytest.raises(ValueError):
            Period.parse(bad)


def test_period_ends_exactly_at_its_end() -> None:
    rs = rules(default={"period": "6y", "start": "sent", "action": "delete"})
    end = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
    assert decide(msg(), rs, end - timedelta(microseconds=1)).decision is Decision.KEEP
    out = decide(msg(), rs, end)
    assert out.decision is Decision.DISPOSE and out.rule == "default" and out.end == end


def test_received_start_uses_the_copy_arrival() -> None:
    rs = rules(default={"period": "1y", "start": "received", "action": "delete"})
    late = (Copy(source="imap", received=at(years=3)),)
    assert decide(msg(copies=late), rs, at(years=2)).decision is Decision.KEEP
    assert decide(msg(copies=late), rs, at(years=4.01)).decision is Decision.DISPOSE


def test_event_based_start_waits_for_the_matter_to_close() -> None:
    rs = rules(
        {"name": "files", "match": {"client": "acme"}, "period": "7y", "start": "matter_closed", "action": "delete"},
        default={"period": "1y", "start": "sent", "action": "delete"},
    )
    # open matter: kept however old (longest wins over the 1y default only because it matched)
    out = decide(msg(), rs, at(years=50))
    assert out.decision is Decision.KEEP and out.end is None and "open" in out.reason
    closed = {("acme", "10234-0001"): datetime(2030, 1, 1, tzinfo=UTC)}
    assert decide(msg(), rs, datetime(2036, 12, 31, tzinfo=UTC), closures=closed).decision is Decision.KEEP
    out = decide(msg(), rs, datetime(2037, 1, 1, tzinfo=UTC), closures=closed)
    assert out.decision is Decision.DISPOSE and out.rule == "files"
    # a message filed under two matters waits for both
    two = msg(matters=("10234-0001", "10234-0002"))
    assert decide(two, rs, at(years=50), closures=closed).decision is Decision.KEEP


def test_hold_beats_every_rule() -> None:
    rs = rules(default={"period": "30d", "start": "sent", "action": "delete"})
    out = decide(msg(), rs, at(years=10), holds=["Initech v Acme"])
    assert out.decision is Decision.HOLD and out.holds == ("Initech v Acme",)
    assert "otherwise dispose" in out.reason


def test_longest_retention_wins_and_forever_beats_dates() -> None:
    rs = rules(
        {"name": "short", "match": {"client": "acme"}, "period": "1y", "start": "sent", "action": "delete"},
        {
            "name": "long",
            "match": {"from_domain": "acme.example"},
            "period": "10y",
            "start": "sent",
            "action": "delete",
        },
        {"name": "other", "match": {"client": "globex"}, "period": "forever", "start": "sent"},
        default={"period": "2y", "start": "sent", "action": "delete"},
    )
    out = decide(msg(), rs, at(years=5))
    assert out.decision is Decision.KEEP and out.rule == "long"
    assert decide(msg(), rs, at(years=10.1)).rule == "long"
    rs2 = rules(
        {"name": "short", "match": {"client": "acme"}, "period": "1y", "start": "sent", "action": "delete"},
        {"name": "keep", "match": {"to_domain": "firm.example"}, "period": "forever", "start": "sent"},
    )
    out = decide(msg(), rs2, at(years=100))
    assert out.decision is Decision.KEEP and out.rule == "keep" and out.end is None


def test_same_end_review_beats_delete() -> None:
    rs = rules(
        {"name": "del", "match": {"client": "acme"}, "period": "1y", "start": "sent", "action": "delete"},
        {"name": "rev", "match": {"matter": "10234-*"}, "period": "12m", "start": "sent", "action": "review"},
    )
    out = decide(msg(), rs, at(years=2))
    assert out.decision is Decision.REVIEW and out.rule == "rev"


def test_default_applies_only_when_nothing_matches() -> None:
    rs = rules(
        {"name": "globex", "match": {"client": "globex"}, "period": "1y", "start": "sent", "action": "delete"},
        default={"period": "3y", "start": "sent", "action": "review"},
    )
    assert decide(msg(), rs, at(years=2)).decision is Decision.KEEP
    out = decide(msg(), rs, at(years=3.1))
    assert out.decision is Decision.REVIEW and out.rule == "default"
    assert decide(msg(client="globex"), rs, at(years=1.1)).rule == "globex"


def test_without_a_default_unmatched_mail_is_kept_forever() -> None:
    assert decide(msg(), RuleSet(), at(years=500)).decision is Decision.KEEP


def test_dedup_disposed_only_when_every_reference_ended() -> None:
    rs = rules(
        {"name": "junk", "match": {"folder": "Junk*"}, "period": "30d", "start": "received", "action": "delete"},
        {"name": "inbox", "match": {"folder": "INBOX"}, "period": "3y", "start": "received", "action": "delete"},
    )
    copies = (
        Copy(source="imap", account="a@firm.example", folder="Junk E-mail", received=T0),
        Copy(source="imap", account="b@firm.example", folder="INBOX", received=at(years=1)),
    )
    assert decide(msg(copies=copies[:1]), rs, at(days=31)).decision is Decision.DISPOSE
    out = decide(msg(copies=copies), rs, at(days=31))
    assert out.decision is Decision.KEEP and out.rule == "inbox" and len(out.copies) == 2
    assert decide(msg(copies=copies), rs, at(years=3.9)).decision is Decision.KEEP
    assert decide(msg(copies=copies), rs, at(years=4.01)).decision is Decision.DISPOSE


def test_match_criteria() -> None:
    base = {"period": "1y", "start": "sent", "action": "delete"}
    copy = Copy(source="corp-imap", account="Dana@Firm.example", folder="Sent Items", labels=("$Label1",), received=T0)
    m = msg(copies=(copy,), to_domains=frozenset({"mail.regulator.gov"}), query_rules=frozenset({"q"}))
    hits = {
        "source": {"source": "corp-*"},
        "account": {"account": "dana@firm.example"},
        "folder": {"folder": ["Sent*", "Outbox"]},
        "to": {"to_domain": "regulator.gov"},
        "label": {"label": "$label1"},
        "q": {"query": "subject:anything"},
        "all": {"client": "ACME", "matter": "10234-0001", "source": "corp-imap"},
    }
    misses = {
        "source2": {"source": "exchange"},
        "to2": {"to_domain": "other.gov"},
        "q2": {"query": "subject:other"},
        "and": {"client": "acme", "folder": "INBOX"},
    }
    for name, match in {**hits, **misses}.items():
        rs = rules({"name": name, "match": match, **base})
        assert (decide(m, rs, at(years=2)).rule == name) is (name in hits), name


def test_compliance_rules_cannot_be_weakened() -> None:
    old = rules(
        {"name": "files", "match": {"client": "acme"}, "period": "7y", "start": "sent", "mode": "compliance"},
        {"name": "gov", "match": {"client": "globex"}, "period": "2y", "start": "sent"},
    )
    ok = rules(
        {"name": "files", "match": {"client": "acme"}, "period": "100m", "start": "sent", "mode": "compliance"},
        {"name": "gov", "match": {"client": "globex"}, "period": "1y", "start": "sent"},
    )
    changes = check_change(old, ok)
    assert "governance rule 'gov' changed: period '2y' -> '1y'" in changes
    assert "compliance rule 'files' changed: period '7y' -> '100m'" in changes
    for bad, words in (
        ({"period": "6y"}, "cannot be shortened from 7y to 6y"),
        ({"period": "83m"}, "cannot be shortened"),
        ({"start": "received"}, "start cannot change"),
        ({"mode": "governance"}, "cannot be switched"),
        ({"match": {"client": ["acme", "x"]}}, "what it matches cannot change"),
    ):
        new = rules(
            {"name": "files", "match": {"client": "acme"}, "period": "7y", "start": "sent", "mode": "compliance", **bad}
        )
        with pytest.raises(PolicyError, match=words) as exc:
            check_change(old, new)
        assert "'files'" in str(exc.value)
    with pytest.raises(PolicyError, match="'files' is in compliance mode and cannot be removed"):
        check_change(old, rules({"name": "gov", "match": {"client": "globex"}, "period": "2y"}))


def test_invalid_rules_are_refused_naming_the_rule() -> None:
    cases = [
        ({"rules": [{"name": "a", "match": {"client": "x"}, "period": "6q"}]}, r"rule 'a' \(rules\[0\]\): period"),
        (
            {"rules": [{"name": "b", "match": {"client": "x"}, "period": "6y", "colour": "red"}]},
            "rule 'b'.*colour: unknown key",
        ),
        ({"rules": [{"name": "c", "match": {"client": "x"}, "period": "6y", "start": "opened"}]}, "rule 'c'.*start"),
        ({"rules": [{"name": "d", "match": {"query": "subject:("}, "period": "6y"}]}, "rule 'd'.*query"),
        ({"rules": [{"name": "e", "match": {}, "period": "6y"}]}, "rule 'e'.*match is empty"),
        ({"rules": [{"match": {"client": "x"}, "period": "6y"}]}, r"rules\[0\] \(unnamed\): name"),
        ({"rules": [{"name": "f", "match": {"client": "x"}, "period": 6}]}, "rule 'f'.*has no unit"),
        ({"default": {"period": "1y", "action": "shred"}}, "rule 'default': action"),
        (
            {"rules": [{"name": "g", "match": {"client": "x"}, "period": "1y"}] * 2},
            "two rules are named 'g'",
        ),
    ]
    for data, words in cases:
        with pytest.raises(PolicyError, match=words):
            parse_rules(data)


def test_holds_match_by_matter_custodian_and_query() -> None:
    def hold(kind: str, value: str, released: str | None = None) -> Hold:
        return Hold(case="c", kind=kind, value=value, reason="r", placed_at="", placed_by="", released_at=released)  # type: ignore[arg-type]

    kw: dict[str, Any] = {"client": "acme", "matters": ("10234-0001",), "addresses": {"dana@firm.example"}}
    assert hold_matches(hold("matter", "acme/10234-0001"), **kw)
    # the matter number decides, whatever client the message is filed under (over-holding only keeps mail)
    assert hold_matches(hold("matter", "globex/10234-0001"), **kw)
    assert hold_matches(hold("matter", "acme/10234-0001"), **{**kw, "client": "globex"})
    assert not hold_matches(hold("matter", "acme/10234-0002"), **kw)
    assert hold_matches(hold("custodian", "dana@firm.example"), **kw)
    assert not hold_matches(hold("custodian", "eve@firm.example"), **kw)
    assert hold_matches(hold("query", "x"), **kw, query_ids={"id1"}, oid="id1")
    assert not hold_matches(hold("query", "x"), **kw, query_ids={"id2"}, oid="id1")
    assert not hold_matches(hold("matter", "acme/10234-0001", released="2025-01-01"), **kw)


def test_shipped_rules_file_validates() -> None:
    from pathlib import Path

    from archiver.policies.rules import load_rules

    shipped = load_rules(Path(__file__).resolve().parents[2] / "retention_rules.yaml")
    assert [r.name for r in shipped.all_rules()] == ["client-matters", "regulatory", "bulk-mail", "junk", "default"]
    assert shipped.default.period == "6y"
