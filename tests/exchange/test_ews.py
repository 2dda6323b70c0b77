"""The EWS connector (real exchangelib) against the Exchange Web Services protocol emulator."""

from __future__ import annotations

import base64
import json
import time
from collections import Counter
from collections.abc import Generator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from connectors.base import Batch, Connector
from connectors.ews import EWS_ONLINE_SCOPE, EwsConnector, EwsSettings
from connectors.msauth import MsalSettings, TokenProvider

from .ews_emulator import EwsEmulator
from .http_emulator import IdentityServer
from .messages import make_journal_report, make_mime

ALICE = "alice@example.com"
BOB = "bob@example.com"


def connector(ews: EwsEmulator, mailboxes: tuple[str, ...] = (ALICE,), **kw: object) -> EwsConnector:
    params: dict[str, object] = {
        "name": "onprem",
        "mailboxes": mailboxes,
        "endpoint": ews.endpoint,
        "auth": "basic",
        "username": ews.username,
        "password": ews.password,
        "max_wait": 20.0,
        "timeout": 20.0,
    }
    params.update(kw)
    return EwsConnector(EwsSettings(**params))  # type: ignore[arg-type]


def run(conn: Connector, saved: dict[str, str]) -> list[Batch]:
    """One sync pass as the pipeline does it: each batch 'commits', then its checkpoints are saved."""
    out = []
    for batch in conn.batches(dict(saved)):
        out.append(batch)
        for cp in batch.checkpoints:
            saved[cp.key] = cp.value
    return out


def ids(batches: list[Batch]) -> list[str]:
    return [m.origin.uid for b in batches for m in b.messages]


def failures(batches: list[Batch]) -> list[str]:
    return [f"{f.location}: {f.reason}" for b in batches for f in b.failures]


def populate(ews: EwsEmulator, address: str = ALICE) -> dict[str, bytes]:
    ews.add_mailbox(address, has_archive=True)
    projects = ews.add_folder(address, "inbox", "Projects")
    old = ews.add_folder(address, "archivemsgfolderroot", "2019")
    ews.add_message(address, "calendar", b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n")  # not mail: never archived
    placed = {}
    for n, where in enumerate(["inbox", "inbox", "inbox", "sentitems", "deleteditems", projects.id, old.id]):
        data = make_mime(n)
        placed[ews.add_message(address, where, data)] = data
    return placed


def test_first_sync_all_mail_folders_and_archive_byte_exact(ews: EwsEmulator) -> None:
    placed = populate(ews)
    conn = connector(ews)
    assert isinstance(conn, Connector)
    saved: dict[str, str] = {}
    batches = run(conn, saved)
    assert failures(batches) == []
    got = {m.origin.uid: m for b in batches for m in b.messages}
    assert set(got) == set(placed)
    assert all(got[i].data == placed[i] for i in placed)
    assert {m.origin.folder for m in got.values()} == {
        "Inbox",
        "Sent Items",
        "Deleted Items",
        "Inbox/Projects",
        "Online Archive/2019",
    }
    assert all(m.origin.account == ALICE and m.origin.source == "onprem" for m in got.values())
    inbox = ews.folder(ALICE, "inbox")
    assert f"ews:onprem:{ALICE}:{inbox.id}" in saved
    assert not any(ews.folder(ALICE, "calendar").id in k for k in saved)


def test_folder_patterns_and_no_archive(ews: EwsEmulator) -> None:
    populate(ews)
    batches = run(connector(ews, include_archive=False, exclude=("Deleted Items", "Inbox/*")), {})
    assert {m.origin.folder for b in batches for m in b.messages} == {"Inbox", "Sent Items"}


def test_incremental_sync_only_new_and_deletes_ignored(ews: EwsEmulator) -> None:
    placed = populate(ews)
    conn = connector(ews)
    saved: dict[str, str] = {}
    run(conn, saved)
    fetched = ews.mime_fetched
    ews.delete_message(ALICE, "inbox", next(iter(placed)))
    new1 = ews.add_message(ALICE, "inbox", make_mime(50))
    new2 = ews.add_message(ALICE, "sentitems", make_mime(51))
    batches = run(conn, saved)
    assert sorted(ids(batches)) == sorted([new1, new2])
    assert ews.mime_fetched == fetched + 2
    assert ids(run(conn, saved)) == []


def test_bounded_passes_one_batch_each(ews: EwsEmulator) -> None:
    ews.add_mailbox(ALICE)
    placed = {ews.add_message(ALICE, "inbox", make_mime(n)) for n in range(11)}
    saved: dict[str, str] = {}
    batches = run(connector(ews, batch_size=4, fetch_chunk=3), saved)
    inbox = [b for b in batches if b.folder == "Inbox"]
    assert [len(b.messages) for b in inbox] == [4, 4, 3]
    assert len({b.checkpoints[0].value for b in inbox}) == 3  # a new sync state per pass
    assert Counter(ids(batches)) == Counter(placed)
    assert ews.operations.count("SyncFolderItems") >= 3


def test_server_busy_back_off_is_honoured(ews: EwsEmulator) -> None:
    placed = populate(ews)
    ews.server_busy(1, operation="SyncFolderItems", back_off_ms=1000)
    ews.server_busy(1, operation="GetItem", back_off_ms=1000)
    start = time.monotonic()
    batches = run(connector(ews), {})
    assert time.monotonic() - start >= 2.0
    assert ews.busy_served == 2
    assert failures(batches) == []
    assert set(ids(batches)) == set(placed)


def test_back_off_beyond_max_wait_fails_the_folder_transiently(ews: EwsEmulator) -> None:
    placed = populate(ews)
    ews.server_busy(1, operation="SyncFolderItems", back_off_ms=3_600_000)
    saved: dict[str, str] = {}
    start = time.monotonic()
    batches = run(connector(ews, max_wait=5.0), saved)
    assert time.monotonic() - start < 30
    fails = [f for b in batches for f in b.failures]
    assert len(fails) == 1 and not fails[0].permanent and ALICE in fails[0].location
    again = run(connector(ews), saved)
    assert set(ids(batches)) | set(ids(again)) == set(placed)


def test_invalid_sync_state_resyncs_without_duplicates(ews: EwsEmulator) -> None:
    placed = populate(ews)
    conn = connector(ews)
    saved: dict[str, str] = {}
    run(conn, saved)
    ews.invalidate_sync_states()
    new = ews.add_message(ALICE, "inbox", make_mime(70))
    batches = run(conn, saved)
    seen = Counter(ids(batches))
    assert set(seen) == set(placed) | {new}
    assert max(seen.values()) == 1
    assert any(e.kind == "sync_state_invalid" for b in batches for e in b.events)
    assert ids(run(conn, saved)) == []


def test_kill_mid_sync_then_resume_loses_nothing(ews: EwsEmulator) -> None:
    ews.add_mailbox(ALICE)
    placed = {ews.add_message(ALICE, "inbox", make_mime(n)) for n in range(8)}
    placed |= {ews.add_message(ALICE, "sentitems", make_mime(n)) for n in range(8, 12)}
    conn = connector(ews, batch_size=3)
    saved: dict[str, str] = {}
    seen: list[str] = []
    gen = conn.batches(dict(saved))
    assert isinstance(gen, Generator)
    committed = 0
    while committed < 2:
        b = next(gen)
        seen += [m.origin.uid for m in b.messages]
        for cp in b.checkpoints:
            saved[cp.key] = cp.value
        committed += bool(b.messages)
    next(gen)  # fetched, never committed: the process dies here
    gen.close()
    seen += ids(run(conn, saved))
    assert set(seen) == placed
    assert len(seen) == len(placed)


def test_wrong_password_fails_fast_for_each_mailbox(ews: EwsEmulator) -> None:
    populate(ews)
    ews.add_mailbox(BOB)
    start = time.monotonic()
    batches = run(connector(ews, mailboxes=(ALICE, BOB), password="wrong"), {})
    assert time.monotonic() - start < 15  # not retried as "throttling" for max_wait
    fails = [f for b in batches for f in b.failures]
    assert [f.location for f in fails] == [f"onprem:{ALICE}", f"onprem:{BOB}"]
    assert all("refused the credentials" in f.reason and f.permanent for f in fails)
    assert "wrong" not in " ".join(f.reason for f in fails)


def test_denied_mailbox_fails_other_continues(ews: EwsEmulator) -> None:
    populate(ews)
    ews.add_mailbox(BOB)
    bob_msg = ews.add_message(BOB, "inbox", make_mime(99))
    ews.mailboxes[ALICE].denied = True
    batches = run(connector(ews, mailboxes=(ALICE, "nobody@example.com", BOB)), {})
    fails = [f for b in batches for f in b.failures]
    assert len(fails) == 2
    assert ALICE in fails[0].location and "ErrorImpersonateUserDenied" in fails[0].reason
    assert "ApplicationImpersonation" in fails[0].reason
    assert "nobody@example.com" in fails[1].location and "ErrorNonExistentMailbox" in fails[1].reason
    # finding 13: a mailbox that does not exist is not reported as a missing permission
    assert "no mailbox with this address" in fails[1].reason and "ApplicationImpersonation" not in fails[1].reason
    assert ids(batches) == [bob_msg]


def test_journal_report_is_unwrapped_in_a_journaling_mailbox(ews: EwsEmulator) -> None:
    ews.add_mailbox("journal@example.com")
    original = make_mime(8)
    report = make_journal_report(original, to="bob@example.com", cc="carol@example.com", bcc="dave@example.com")
    ews.add_message("journal@example.com", "inbox", report)
    conn = connector(ews, mailboxes=(), journal_mailboxes=("journal@example.com",))
    [msg] = [m for b in run(conn, {}) for m in b.messages]
    assert msg.data == original
    assert msg.origin.envelope_recipients[:6] == (
        "to:",
        "bob@example.com",
        "cc:",
        "carol@example.com",
        "bcc:",
        "dave@example.com",
    )
    assert msg.origin.envelope_recipients[6:9] == ("to+expanded:", "erin@example.com", "sales@example.com")


def test_journal_header_elsewhere_is_archived_as_received(ews: EwsEmulator) -> None:
    """Finding 2: outside the journaling mailboxes a message with the journal header is what was received."""
    ews.add_mailbox(ALICE)
    ews.add_mailbox("journal@example.com")
    report = make_journal_report(make_mime(8), to="bob@example.com", cc="", bcc="judge@court.example")
    ews.add_message(ALICE, "inbox", report)
    conn = connector(ews, mailboxes=(ALICE,), journal_mailboxes=("journal@example.com",), include_archive=False)
    [msg] = [m for b in run(conn, {}) for m in b.messages]
    assert msg.data == report and msg.origin.envelope_recipients == ()


def test_unreadable_report_in_journaling_mailbox_is_kept_and_flagged(ews: EwsEmulator) -> None:
    """Finding 12: a report whose original is damaged base64 is archived as received, with an event saying why."""
    ews.add_mailbox("journal@example.com")
    original = make_mime(8)
    encoded = base64.encodebytes(original)
    report = make_journal_report(original, to="bob@example.com", cc="", bcc="dave@example.com").replace(
        b"Content-Type: message/rfc822\r\n", b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n"
    )
    report = report.replace(original, encoded[:40] + b"!" + encoded[40:])
    ews.add_message("journal@example.com", "inbox", report)
    batches = run(connector(ews, mailboxes=("journal@example.com",), journal_mailboxes=("journal@example.com",)), {})
    [msg] = [m for b in batches for m in b.messages]
    assert msg.data == report and msg.origin.envelope_recipients == ()
    [event] = [e for b in batches for e in b.events if e.kind == "journal_report_kept"]
    assert "base64" in event.detail["reason"] and event.detail["id"] == msg.origin.uid


@pytest.mark.parametrize("code", ["ErrorMimeContentConversionFailed", "ErrorInternalServerError"])
def test_bad_item_is_retried_later_and_its_folder_moves_on(ews: EwsEmulator, code: str) -> None:
    """Finding 1: an item whose MIME content never comes does not stop its folder, nor its chunk's good items."""
    ews.add_mailbox(ALICE)
    good1 = ews.add_message(ALICE, "inbox", make_mime(1))
    poison = ews.add_message(ALICE, "inbox", make_mime(2))
    good2 = ews.add_message(ALICE, "inbox", make_mime(3))
    ews.fail_item(poison, code)
    conn = connector(ews, batch_size=2, include_archive=False)
    saved: dict[str, str] = {}
    first = run(conn, saved)
    assert set(ids(first)) == {good1, good2}  # the good item of the poison's GetItem request too
    fails = [f for b in first for f in b.failures]
    assert len(fails) == 1 and poison in fails[0].reason and code in fails[0].reason
    assert "retry list" in fails[0].reason
    assert [e.detail["id"] for b in first for e in b.events if e.kind == "item_skipped"] == [poison]
    inbox = ews.folder(ALICE, "inbox").id
    assert json.loads(saved[f"ews:onprem:{ALICE}:{inbox}:retry"]) == {poison: ""}
    later = ews.add_message(ALICE, "inbox", make_mime(4))
    second = run(conn, saved)
    assert ids(second) == [later]  # mail arriving after the bad item is archived
    assert len(failures(second)) == 1 and not [e for b in second for e in b.events if e.kind == "item_skipped"]
    ews.heal_item(poison)
    third = run(conn, saved)
    assert ids(third) == [poison] and failures(third) == []
    assert json.loads(saved[f"ews:onprem:{ALICE}:{inbox}:retry"]) == {}
    assert ids(run(conn, saved)) == []


def test_received_time_comes_from_the_server(ews: EwsEmulator) -> None:
    """Finding 9: retention rules counted from receipt need the item's DateTimeReceived."""
    ews.add_mailbox(ALICE)
    ews.add_message(ALICE, "inbox", make_mime(1), received="2019-05-14T15:01:00Z")
    [msg] = [m for b in run(connector(ews, include_archive=False), {}) for m in b.messages]
    assert msg.origin.internaldate == datetime(2019, 5, 14, 15, 1, tzinfo=UTC)
    assert type(msg.origin.internaldate) is datetime  # a plain datetime, not exchangelib's subclass


def test_archive_access_denied_is_reported(ews: EwsEmulator) -> None:
    """Finding 7: an online archive the account may not open is a failure and an event, not a silent skip."""
    placed = populate(ews)
    ews.mailboxes[ALICE].archive_denied = True
    batches = run(connector(ews), {})
    fails = [f for b in batches for f in b.failures]
    assert len(fails) == 1 and fails[0].location == f"onprem:{ALICE}/Online Archive" and fails[0].permanent
    assert "ErrorAccessDenied" in fails[0].reason and "include_archive" in fails[0].reason
    assert [e.kind for b in batches for e in b.events] == ["archive_unreachable"]
    assert len(set(ids(batches))) == len(placed) - 1  # everything outside the archive


def test_batches_are_bounded_by_bytes(ews: EwsEmulator) -> None:
    """Finding 6: a SyncFolderItems request's items are cut into batches of bounded size; the last has the state."""
    ews.add_mailbox(ALICE)
    placed = {ews.add_message(ALICE, "inbox", make_mime(n) + b"x" * 3000) for n in range(7)}
    saved: dict[str, str] = {}
    batches = [b for b in run(connector(ews, include_archive=False, max_batch_bytes=7000), saved) if b.messages]
    assert [len(b.messages) for b in batches] == [3, 3, 1]
    assert [len(b.checkpoints) for b in batches] == [0, 0, 1]
    assert Counter(ids(batches)) == Counter(placed)


def test_folder_names_with_a_slash_are_escaped(ews: EwsEmulator) -> None:
    """Finding 13: the folder "Smith/Jones" is not the folder Jones inside Smith."""
    ews.add_mailbox(ALICE)
    odd = ews.add_folder(ALICE, "inbox", "Smith/Jones")
    smith = ews.add_folder(ALICE, "inbox", "Smith")
    nested = ews.add_folder(ALICE, smith.id, "Jones")
    ews.add_message(ALICE, odd.id, make_mime(1))
    ews.add_message(ALICE, nested.id, make_mime(2))
    batches = run(connector(ews, include_archive=False, exclude=("Inbox/Smith/*",)), {})
    assert {m.origin.folder for b in batches for m in b.messages} == {"Inbox/Smith\\/Jones"}


@pytest.fixture
def identity(tls_material: tuple[Path, Path]) -> Iterator[IdentityServer]:
    server = IdentityServer(tls_material, "contoso-tenant", "ews-app").start()
    server.identity.client_secret = "app-secret"
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def ews_tls(tls_material: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> Iterator[EwsEmulator]:
    """The EWS emulator over HTTPS (OAuth bearer tokens are only ever sent over TLS)."""
    # exchangelib's requests sessions trust REQUESTS_CA_BUNDLE, as documented for private CAs.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_material[0]))
    emu = EwsEmulator(tls=tls_material).start()
    try:
        yield emu
    finally:
        emu.stop()


def _ews_tokens(identity: IdentityServer, verify: str) -> TokenProvider:
    """Tokens for the EWS app of the emulated identity platform, TLS verified against ``verify``."""
    return TokenProvider(
        MsalSettings(
            tenant="contoso-tenant",
            client_id="ews-app",
            scopes=(EWS_ONLINE_SCOPE,),
            client_secret="app-secret",
            authority=identity.identity.authority,
            verify=verify,
        )
    )


def test_oauth_token_from_msal(ews_tls: EwsEmulator, identity: IdentityServer, tls_material: tuple[Path, Path]) -> None:
    ews = ews_tls
    placed = populate(ews)
    ews.identity = identity.identity

    conn = EwsConnector(
        EwsSettings(name="online", mailboxes=(ALICE,), endpoint=ews.endpoint, auth="oauth", max_wait=20.0),
        _ews_tokens(identity, str(tls_material[0])),
    )
    batches = run(conn, {})
    assert failures(batches) == []
    assert set(ids(batches)) == set(placed)
    assert identity.identity.scopes_seen[0] == EWS_ONLINE_SCOPE
    # a refused token: a clear failure per mailbox, nothing crashes
    ews.add_mailbox(BOB)
    identity.identity.refuse = "AADSTS7000222: The provided client secret keys are expired."
    refused = EwsConnector(
        EwsSettings(name="online2", mailboxes=(ALICE, BOB), endpoint=ews.endpoint, auth="oauth"),
        _ews_tokens(identity, str(tls_material[0])),
    )
    fails = [f for b in run(refused, {}) for f in b.failures]
    assert [f.location for f in fails] == [f"online2:{ALICE}", f"online2:{BOB}"]
    assert all("AADSTS7000222" in f.reason and f.permanent for f in fails)


def test_oauth_setup_problem_fails_each_mailbox(ews_tls: EwsEmulator, identity: IdentityServer, tmp_path: Path) -> None:
    """Finding 3: a CA file that does not exist is a sentence per mailbox, not an exception ending the sync."""
    ews_tls.add_mailbox(ALICE)
    tokens = _ews_tokens(identity, str(tmp_path / "no-such-ca.pem"))
    conn = EwsConnector(
        EwsSettings(name="online", mailboxes=(ALICE, BOB), endpoint=ews_tls.endpoint, auth="oauth"), tokens
    )
    fails = [f for b in run(conn, {}) for f in b.failures]
    assert [f.location for f in fails] == [f"online:{ALICE}", f"online:{BOB}"]
    assert all("no-such-ca.pem" in f.reason and "does not exist" in f.reason for f in fails)
