"""Retention end to end on a real archive: plan, apply, holds, matters, review, certificates, refusals.

Time is injected into plan/apply (``now``), so years pass in milliseconds; the CLI's `apply` uses
the real clock, which the sample mail (2019-2024) is old enough for.
"""

from __future__ import annotations

import base64
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from archiver.config import load_config
from archiver.errors import NotFoundError, PolicyError
from archiver.policies import apply as retention
from archiver.store.segments import Location
from tests.conftest import SAMPLE_MAILDIR
from tests.policies.support import Env, Y, dictionary_terms

NEWSLETTER_WORD = "proportionality"  # only in the sample newsletter's body


UNFILED_1Y = {"name": "unfiled", "match": {"client": "unfiled"}, "period": "1y", "start": "sent", "action": "delete"}


def test_disposed_message_is_shredded_unsearchable_and_verify_passes(env: Env) -> None:
    env.write_rules(UNFILED_1Y)
    unfiled = env.ids("t.client = 'unfiled'")
    newsletter = env.ids("m.subject LIKE 'This week:%'")
    assert len(newsletter) == 1 and newsletter <= unfiled
    (nid,) = newsletter
    a = env.archive
    assert a.search("Proportionality").total == 1
    assert dictionary_terms(a, NEWSLETTER_WORD) == [(NEWSLETTER_WORD, 1)]
    row = a.repo.catalog.object(nid)
    assert row is not None

    cert = retention.apply(a, Y(2040), actor="tester")
    assert cert.disposed == len(unfiled) and set(cert.ids) == unfiled == env.disposed()
    assert all(d["rule"] == "unfiled" for d in cert.body["disposed"])

    # unreadable even with the keys: the data key is gone, the ciphertext is noise to the master key
    with pytest.raises(NotFoundError, match=r"disposed of on .* under rule 'unfiled'"):
        a.repo.read_raw(nid)
    assert a.repo.keystore.get(nid) is None
    rec = a.repo.segments.read(Location(row.segment, row.offset, row.length))
    master = a.repo.require_keys().master
    with pytest.raises(Exception):  # noqa: B017 - any failure to decrypt will do
        AESGCM(master).decrypt(rec.payload[:12], rec.payload[12:], b"archiver/object/v1\x00" + bytes.fromhex(nid))
    # gone from search and physically gone from the index files
    assert a.search("Proportionality").total == 0
    assert not (a.index.all_ids() & unfiled)
    assert a.index.deleted_docs_on_disk() == 0
    assert dictionary_terms(a, NEWSLETTER_WORD) == []
    # everything else is still there and readable
    assert a.search("Initech").total > 0

    shown = env.run("show", nid, "--json")
    assert shown.code == 8
    info = shown.json()
    assert isinstance(info, dict) and info["disposed_rule"] == "unfiled" and info["disposed_at"]
    text = env.run("show", nid)
    assert text.code == 8 and "under rule 'unfiled'" in text.err
    v = env.run("verify", "--full", "--json")
    assert v.code == 0, v.out
    # a second apply disposes of nothing more
    assert retention.apply(env.archive, Y(2040), actor="tester").disposed == 0


def test_certificate_is_signed_saved_journalled_and_checkable(env: Env, tmp_path: Path) -> None:
    env.write_rules(UNFILED_1Y)
    cert = retention.apply(env.archive, Y(2040), actor="tester")
    assert cert.path is not None and cert.path.parent.name == "certificates"
    doc = json.loads(cert.path.read_text())
    assert doc["certificate"]["counts"]["disposed"] == cert.disposed > 0
    assert doc["certificate"]["archive_id"] == env.archive.repo.archive_id
    assert retention.verify_certificate(doc, env.archive.repo.public_key) == []
    assert retention.check_against_archive(env.archive, doc) == []
    events = env.archive.repo.catalog.conn.execute(
        "SELECT actor, json_extract(data, '$.phase') FROM events WHERE type='disposition' ORDER BY seq"
    ).fetchall()
    assert events == [("tester", "started"), ("tester", None)]  # the run's start, then its certificate

    r = env.run("retention", "certificate", "verify", str(cert.path))
    assert r.code == 0 and r.out.startswith("OK"), r.out + r.err
    key = env.run("keys", "show", "--json").json()
    assert isinstance(key, dict)
    r = env.run("retention", "certificate", "verify", str(cert.path), "--public-key", str(key["public_key"]))
    assert r.code == 0, r.err

    forged = dict(doc, certificate={**doc["certificate"], "disposed": doc["certificate"]["disposed"][1:]})
    forged["certificate"]["counts"] = {**forged["certificate"]["counts"], "disposed": cert.disposed - 1}
    bad = tmp_path / "forged.json"
    bad.write_text(json.dumps(forged))
    r = env.run("retention", "certificate", "verify", str(bad), "--json")
    assert r.code == 9
    out = r.json()
    assert isinstance(out, dict) and any("signature" in p for p in out["problems"])


def test_holds_beat_rules_and_cover_later_mail(env: Env, tmp_path: Path) -> None:
    env.write_rules(
        {
            "name": "all",
            "match": {"client": ["acme", "globex", "unfiled"]},
            "period": "1y",
            "start": "sent",
            "action": "delete",
        }
    )
    matter = env.ids("t.client='acme' AND t.matters LIKE '%10234-0001%'")
    marsh = "%elena.marsh@globex.example%"
    custodian = env.ids(
        "(m.from_addr LIKE ? OR m.to_addrs LIKE ? OR m.cc_addrs LIKE ? OR m.bcc_addrs LIKE ?)", *[marsh] * 4
    )
    assert custodian > env.ids("m.from_addr = 'elena.marsh@globex.example'")  # recipients count too
    assert matter and custodian
    assert (
        env.run("hold", "add", "--case", "Initech", "--matter", "acme/10234-0001", "--reason", "litigation").code == 0
    )
    assert (
        env.run("hold", "add", "--case", "Marsh", "--custodian", "Elena.Marsh@globex.example", "--reason", "r").code
        == 0
    )
    r = env.run("hold", "add", "--case", "Lunch", "--query", "subject:lunch OR subject:zanzibar", "--reason", "r")
    assert r.code == 0, r.err
    dup = env.run("hold", "add", "--case", "Lunch", "--query", "x", "--reason", "r")
    assert dup.code == 10 and "already stands" in dup.err
    lunch = env.ids("m.subject = 'Lunch Friday?'")

    # a message archived after the hold was placed that matches it is held too
    late = tmp_path / "late.eml"
    late.write_bytes(
        b"From: someone@else.example\r\nTo: x@y.example\r\nSubject: Zanzibar trip\r\n"
        b"Date: Mon, 01 Jan 2018 10:00:00 +0000\r\nMessage-ID: <late@else.example>\r\n\r\nhello\r\n"
    )
    assert env.run("import", str(late), "--source", "late").code == 0
    zanzibar = env.ids("m.subject = 'Zanzibar trip'")
    assert len(zanzibar) == 1

    held = matter | custodian | lunch | zanzibar
    p = retention.plan(env.archive, Y(2040))
    assert {i.id for i in p.held} == held
    assert not {i.id for i in p.dispose} & held
    cert = retention.apply(env.archive, Y(2040), actor="tester")
    assert cert.disposed > 0 and not set(cert.ids) & held
    assert not env.disposed() & held

    listed = env.run("hold", "list", "--json").json()
    assert isinstance(listed, dict) and {h["case"] for h in listed["holds"]} == {"Initech", "Marsh", "Lunch"}
    assert all(h["placed_by"] for h in listed["holds"])
    assert env.run("hold", "release", "Initech").code == 0
    assert env.run("hold", "release", "Initech").code == 10
    cert = retention.apply(env.archive, Y(2040), actor="tester")
    assert set(cert.ids) == matter - custodian - lunch
    assert env.run("verify").code == 0


def test_dedup_message_waits_for_every_reference(env: Env, tmp_path: Path) -> None:
    # the same mail archived again from a second place: one object, two provenance rows each
    shutil.copytree(SAMPLE_MAILDIR, tmp_path / "copy")
    r = env.run("import", str(tmp_path / "copy"), "--source", "second", "--json")
    assert r.code == 0 and r.json()["imported"] == 0  # type: ignore[index]
    sources = env.archive.repo.catalog.conn.execute("SELECT COUNT(DISTINCT source) FROM provenance").fetchone()
    assert sources == (2,)
    env.write_rules(
        {"name": "legacy", "match": {"source": "legacy"}, "period": "1y", "start": "sent", "action": "delete"},
        {"name": "second", "match": {"source": "second"}, "period": "30y", "start": "sent", "action": "delete"},
    )
    p = retention.plan(env.archive, Y(2040))
    assert p.dispose == [] and p.counts["keep"] == p.counts["messages"] > 0
    p = retention.plan(env.archive, Y(2060))
    assert {i.rule for i in p.dispose} == {"second"} and len(p.dispose) == p.counts["messages"]


def test_event_based_start_with_matter_close_and_reopen(env: Env) -> None:
    env.write_rules(
        {"name": "files", "match": {"client": "acme"}, "period": "6y", "start": "matter_closed", "action": "delete"}
    )
    m1 = env.ids("t.client='acme' AND t.matters = '[\"10234-0001\"]'")
    assert retention.plan(env.archive, Y(2100)).dispose == []
    future = env.run("matter", "close", "acme/10234-0001", "--date", "2999-01-01")
    assert future.code == 10 and "future" in future.err
    r = env.run(
        "matter", "close", "acme/10234-0001", "--date", "2025-06-30", "--allow-backdate", "--reason", "test", "--json"
    )
    assert r.code == 0, r.err
    assert r.json()["closed_on"] == "2025-06-30"  # type: ignore[index]
    assert retention.plan(env.archive, Y(2031, 6, 29)).dispose == []
    p = retention.plan(env.archive, Y(2031, 6, 30))
    assert {i.id for i in p.dispose} == m1
    assert env.run("matter", "reopen", "acme/10234-0001").code == 0
    assert env.run("matter", "reopen", "acme/10234-0001").code == 10
    assert retention.plan(env.archive, Y(2100)).dispose == []
    # Backdating a new close would shorten the periods: refused, and nothing changes.
    back = env.run("matter", "close", "acme/10234-0001", "--date", "2020-01-01")
    assert back.code == 10 and "earlier date" in back.err
    assert retention.plan(env.archive, Y(2100)).dispose == []
    rows = env.archive.repo.catalog.conn.execute("SELECT event, actor FROM matter_events ORDER BY seq").fetchall()
    assert [r[0] for r in rows] == ["close", "reopen"] and all(r[1] for r in rows)
    assert env.run("verify").code == 0


def test_review_items_wait_for_approval_under_their_rule(env: Env) -> None:
    env.write_rules(
        {"name": "unfiled-review", "match": {"client": "unfiled"}, "period": "1y", "start": "sent", "action": "review"},
        {"name": "globex", "match": {"client": "globex"}, "period": "50y", "start": "sent", "action": "review"},
    )
    unfiled = env.ids("t.client = 'unfiled'")
    now = datetime.now(UTC)
    items = retention.review(env.archive, now)
    assert {i.id for i in items} == unfiled
    assert retention.apply(env.archive, now, actor="t").disposed == 0
    one, *rest = sorted(unfiled)
    with pytest.raises(PolicyError, match="not 'globex'"):
        retention.approve(env.archive, [one], "globex", now=now, actor="t")
    globex = sorted(env.ids("t.client = 'globex'"))[0]
    with pytest.raises(PolicyError, match="not awaiting review") as exc:
        retention.approve(env.archive, [one, globex], "unfiled-review", now=now, actor="t")
    assert "Nothing was disposed" in str(exc.value) and env.disposed() == set()

    r = env.run("retention", "review", "--json")
    assert r.code == 0 and {i["id"] for i in r.json()["review"]} == unfiled  # type: ignore[index]
    r = env.run("retention", "approve", one[:12], "--rule", "unfiled-review", "--json")
    assert r.code == 0, r.err
    assert env.disposed() == {one}
    assert {i.id for i in retention.review(env.archive, now)} == set(rest)


def test_invalid_rules_file_is_refused_and_nothing_disposed(env: Env) -> None:
    env.rules.write_text(
        "rules:\n  - name: oops\n    match: {client: unfiled}\n    period: 1 year\n    action: delete\n",
        encoding="utf-8",
    )
    for args in (("retention", "plan", "--proposed"), ("retention", "rules", "accept")):
        r = env.run(*args)
        assert r.code == 10 and "rule 'oops'" in r.err and "period" in r.err, r.err
    env.rules.write_text("rules: [unclosed\n", encoding="utf-8")
    assert env.run("retention", "apply").code == 10
    assert env.disposed() == set()


def test_compliance_period_cannot_be_shortened_against_the_journal(env: Env) -> None:
    rule = {
        "name": "keep-7",
        "match": {"client": "unfiled"},
        "period": "7y",
        "start": "sent",
        "action": "delete",
        "mode": "compliance",
    }
    env.write_rules(rule, accept=False)
    assert env.run("retention", "rules", "accept", "--json").code == 0
    env.write_rules({**rule, "period": "1y"}, accept=False)
    r = env.run("retention", "rules", "accept")
    assert r.code == 10 and "'keep-7'" in r.err and "cannot be shortened" in r.err
    assert env.run("retention", "apply").code == 10
    assert env.disposed() == set()
    env.write_rules(accept=False)  # removing it is refused too
    assert "cannot be removed" in env.run("retention", "rules", "accept").err
    env.write_rules({**rule, "period": "8y"}, accept=False)  # lengthening is fine, and journalled
    assert env.run("retention", "rules", "accept").code == 0
    shown = env.run("retention", "rules", "--json").json()
    assert isinstance(shown, dict) and shown["rules"]["rules"][0]["period"] == "8y"
    n = env.archive.repo.catalog.conn.execute("SELECT COUNT(*) FROM retention_rules").fetchone()[0]
    assert n == 2
    assert env.run("verify").code == 0


def test_cli_plan_and_apply_use_the_clock(env: Env) -> None:
    env.write_rules(UNFILED_1Y)
    unfiled = env.ids("t.client = 'unfiled'")
    r = env.run("retention", "plan", "--as-of", "2019-01-01", "--json")
    assert r.code == 0 and r.json()["dispose"] == []  # type: ignore[index]
    r = env.run("retention", "plan", "--json")
    assert {i["id"] for i in r.json()["dispose"]} == unfiled  # type: ignore[index]
    assert env.run("retention", "plan").code == 0
    refused = env.run("retention", "apply", "--as-of", "2099-01-01")
    assert refused.code == 2 and "real clock" in refused.err
    assert env.disposed() == set()
    r = env.run("retention", "apply", "--json")
    assert r.code == 0, r.err
    out = r.json()
    assert isinstance(out, dict) and out["certificate"]["counts"]["disposed"] == len(unfiled)
    assert Path(out["path"]).exists()
    assert env.disposed() == unfiled


def test_daemon_entry_point_signature(env: Env) -> None:
    env.write_rules(UNFILED_1Y)
    result = retention.apply(env.archive, now=datetime.now(UTC), actor="daemon")
    assert result.disposed == len(env.disposed()) > 0
    assert base64.b64decode(result.signature)


ALL_1Y = {"name": "all", "match": {"client": ["acme", "globex", "unfiled"]}, "period": "1y", "start": "sent",
          "action": "delete"}  # fmt: skip


@pytest.mark.parametrize("loss", ["index folder deleted", "documents deleted"])
def test_a_lost_index_does_not_let_retention_dispose_of_query_held_mail(env: Env, loss: str) -> None:
    """Query holds are evaluated through the index, which may be deleted (it is derived data):
    what the catalog marks as indexed but the index lacks is indexed again before any decision."""
    env.write_rules(ALL_1Y)
    lunch = env.ids("m.subject = 'Lunch Friday?'")
    assert lunch
    assert env.run("hold", "add", "--case", "Lunch", "--query", "subject:lunch", "--reason", "r").code == 0
    env.close()
    index_dir = load_config(env.config).archive.path / "index"
    if loss == "index folder deleted":
        shutil.rmtree(index_dir)
    else:
        archive = env.archive
        archive.index.delete(sorted(lunch))
        archive.index.commit()
        env.close()
    p = retention.plan(env.archive, Y(2040))
    assert {i.id for i in p.held} >= lunch
    cert = retention.apply(env.archive, Y(2040), actor="tester")
    assert cert.disposed > 0 and not set(cert.ids) & lunch
    assert env.ids("m.subject = 'Lunch Friday?'") == lunch


def test_retention_refuses_when_a_message_cannot_be_indexed_under_a_query_hold(env: Env) -> None:
    env.write_rules(ALL_1Y)
    assert env.run("hold", "add", "--case", "Lunch", "--query", "subject:lunch", "--reason", "r").code == 0
    archive = env.archive
    victim = sorted(env.ids("1=1"))[0]
    row = archive.repo.catalog.object(victim)
    assert row is not None
    seg = archive.repo.segments.path(row.segment)
    data = bytearray(seg.read_bytes())
    data[row.offset + row.length - 5] ^= 0x01  # its ciphertext no longer authenticates
    seg.write_bytes(bytes(data))
    archive.repo.catalog.mark_indexed([victim], 0)
    with pytest.raises(PolicyError, match="could not be indexed"):
        retention.plan(archive, Y(2040))
    with pytest.raises(PolicyError, match="does not verify"):  # apply checks the store before anything
        retention.apply(archive, Y(2040), actor="tester")
    assert not env.disposed()


def test_an_import_rebuilds_a_deleted_index(env: Env, tmp_path: Path) -> None:
    before = env.run("search", "subject:lunch", "--json").out
    assert "Lunch" in before
    shutil.rmtree(load_config(env.config).archive.path / "index")
    late = tmp_path / "late.eml"
    late.write_bytes(b"From: a@b.example\r\nSubject: later\r\nMessage-ID: <l@b>\r\n\r\nhi\r\n")
    assert env.run("import", str(late), "--source", "late").code == 0
    assert env.run("search", "subject:lunch", "--json").out == before


def test_a_deleted_hold_row_stops_retention_instead_of_steering_it(env: Env) -> None:
    """The catalog's holds are a copy of the signed journal's: apply verifies before disposing."""
    env.write_rules(ALL_1Y)
    assert env.run("hold", "add", "--case", "Lunch", "--query", "subject:lunch", "--reason", "r").code == 0
    env.archive.repo.catalog.conn.execute("DELETE FROM holds")
    with pytest.raises(PolicyError, match=r"does not verify.*holds"):
        retention.apply(env.archive, Y(2040), actor="tester")
    assert not env.disposed()


def test_metadata_or_index_edits_do_not_steer_a_disposal(env: Env) -> None:
    """What the catalog's messages table and the index say is checked against the messages themselves."""
    import dataclasses

    env.write_rules(ALL_1Y)
    lunch = sorted(env.ids("m.subject = 'Lunch Friday?'"))
    assert lunch
    assert env.run("hold", "add", "--case", "Lunch", "--query", "subject:lunch", "--reason", "r").code == 0
    archive = env.archive
    # the index no longer shows the held message's subject, so the plan thinks it is not held
    with archive.workers() as w:
        parsed = [(oid, p) for oid, p, _e in archive.reparse(lunch, w) if p is not None]
    archive.index.add([dataclasses.replace(d, subject="quarterly figures") for d in archive.docs_for(parsed)])
    archive.index.commit()
    # and a message sent in December 2024 gets an old date in the catalog, so it looks due in January 2025
    recent = sorted(env.ids("m.date >= '2024-06-01'"))[0]
    archive.repo.catalog.conn.execute(
        "UPDATE message_rows SET date='2001-01-01T00:00:00Z' WHERE obj=(SELECT ingest_seq FROM object_rows WHERE id=?)",
        (recent,),
    )
    planned = {i.id for i in retention.plan(archive, Y(2025)).dispose}
    assert set(lunch) <= planned and recent in planned, "the edits do mislead the plan"
    cert = retention.apply(archive, Y(2025), actor="tester")
    withheld = {w["id"]: w["reason"] for w in cert.body["withheld"]}
    assert set(withheld) == {*lunch, recent}
    assert "subject:lunch" in withheld[lunch[0]] and "date" in withheld[recent]
    assert not env.disposed() & {*lunch, recent}
    assert cert.body["counts"]["withheld"] == len(lunch) + 1
