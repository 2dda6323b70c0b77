"""Connector-level sync against a real Dovecot: first, incremental, new mail, flags, folders, provenance."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from .dovecot import Dovecot
from .helpers import MailUser, connector_for, make_message, new_user, recording_factory, sync

pytestmark = pytest.mark.dovecot


def test_first_sync_fetches_every_folder_exactly(mail_user: MailUser) -> None:
    inbox = [make_message(f"inbox {i}") for i in range(5)]
    sub = [make_message("sub 1")]
    accented = [make_message("accented 1")]
    mail_user.append("INBOX", inbox)
    mail_user.append("Archive/Sub", sub)
    mail_user.append("Résumé", accented)

    run = sync(connector_for([mail_user], batch_size=2))

    assert not run.failures
    by_folder: dict[str, list[bytes]] = {}
    for m in run.messages:
        by_folder.setdefault(m.origin.folder, []).append(m.data)
    # bytes exactly as appended, folder names decoded from modified UTF-7
    assert by_folder == {"INBOX": inbox, "Archive/Sub": sub, "Résumé": accented}
    assert all(len(b.messages) <= 2 for b in run.batches)
    assert run.uids("INBOX") == [1, 2, 3, 4, 5]
    first = next(m.origin for m in run.messages if m.origin.folder == "INBOX")
    assert first.source == "test-imap"
    assert first.account == mail_user.username
    assert first.uidvalidity.isdigit()
    assert first.internaldate is not None and first.internaldate.tzinfo is not None
    # plain stdlib types: the pipeline pickles origins' dates into worker processes
    assert pickle.loads(pickle.dumps(first)) == first
    quoted_user = mail_user.username.replace("@", "%40")
    assert first.location == f"imap://{quoted_user}@127.0.0.1/INBOX;UIDVALIDITY={first.uidvalidity}/;UID=1"
    state = run.state(mail_user.username)
    assert state["last_uid"] == 5 and str(state["uidvalidity"]) == first.uidvalidity


def test_incremental_sync_and_new_mail_between_syncs(mail_user: MailUser) -> None:
    mail_user.append("INBOX", [make_message(f"old {i}") for i in range(3)])
    conn = connector_for([mail_user], batch_size=2)
    first = sync(conn)
    assert len(first.messages) == 3

    again = sync(conn, first.checkpoints)
    assert again.messages == []
    assert again.checkpoints == first.checkpoints

    new = [make_message("new 1"), make_message("new 2")]
    mail_user.append("INBOX", new)
    mail_user.append("Later", [make_message("new folder")])
    third = sync(conn, again.checkpoints)
    assert [m.data for m in third.messages if m.origin.folder == "INBOX"] == new
    assert third.uids("INBOX") == [4, 5]
    assert third.uids("Later") == [1]
    assert third.state(mail_user.username)["last_uid"] == 5


def test_flags_untouched_and_recorded(mail_user: MailUser) -> None:
    mail_user.append("INBOX", [make_message("unread")])
    mail_user.append("INBOX", [make_message("flagged")], flags=(b"\\Flagged",))
    before = mail_user.server_flags()
    assert all(b"\\Seen" not in f for f in before.values())
    commands: list[tuple[str, Any]] = []

    run = sync(connector_for([mail_user], client_factory=recording_factory(commands)))

    assert len(run.messages) == 2
    assert run.messages[1].origin.flags == ("\\Flagged",)
    after = mail_user.server_flags()
    assert after == before
    names = {name for name, _ in commands}
    assert names <= {"login", "list_folders", "select_folder", "search", "fetch", "logout", "shutdown"}
    assert all(readonly is True for name, readonly in commands if name == "select_folder")


def test_unchanged_folder_is_skipped_without_search(mail_user: MailUser) -> None:
    mail_user.append("INBOX", [make_message("one")])
    first = sync(connector_for([mail_user]))
    commands: list[tuple[str, Any]] = []
    second = sync(connector_for([mail_user], client_factory=recording_factory(commands)), first.checkpoints)
    assert second.messages == []
    assert "search" not in {name for name, _ in commands}
    assert "select_folder" in {name for name, _ in commands}


def test_folder_include_exclude(mail_user: MailUser) -> None:
    mail_user.append("INBOX", [make_message("in")])
    mail_user.append("Trash", [make_message("trash")])
    mail_user.append("Projects/A", [make_message("a")])
    mail_user.append("Projects/B", [make_message("b")])
    run = sync(connector_for([mail_user], include=["INBOX", "Projects/*", "Trash"], exclude=["Trash", "*/B"]))
    assert sorted(m.origin.folder for m in run.messages) == ["INBOX", "Projects/A"]


def test_same_message_in_two_folders_gives_two_origins(mail_user: MailUser) -> None:
    msg = make_message("copied")
    mail_user.append("INBOX", [msg])
    mail_user.append("Clients/Acme", [msg])
    run = sync(connector_for([mail_user]))
    copies = [m for m in run.messages if m.data == msg]
    assert sorted(m.origin.folder for m in copies) == ["Clients/Acme", "INBOX"]


def test_oversize_message_reported_every_run_until_archived(mail_user: MailUser) -> None:
    small = make_message("small")
    big = make_message("big", body="x" * 300_000)
    later = make_message("later")
    mail_user.append("INBOX", [small, big, later])

    capped = connector_for([mail_user], max_message_bytes=100_000)
    run1 = sync(capped)
    assert [m.data for m in run1.messages] == [small, later]
    assert len(run1.failures) == 1
    uidvalidity = run1.messages[0].origin.uidvalidity
    assert run1.failures[0].location.endswith(f"/INBOX;UIDVALIDITY={uidvalidity}/;UID=2")
    assert f"account {mail_user.username!r}, folder 'INBOX', UID 2" in run1.failures[0].reason
    assert "max_message_mb" in run1.failures[0].reason
    assert run1.state(mail_user.username)["last_uid"] == 3  # the folder is not stalled

    run2 = sync(capped, run1.checkpoints)  # still reported, never silently dropped
    assert run2.messages == [] and len(run2.failures) == 1

    raised = sync(connector_for([mail_user]), run2.checkpoints)
    assert [m.data for m in raised.messages] == [big]
    assert raised.failures == []
    assert "oversize" not in raised.state(mail_user.username)


def test_two_accounts_are_both_synced(dovecot: Dovecot) -> None:
    a, b = new_user(dovecot), new_user(dovecot)
    a.append("INBOX", [make_message("for a")])
    b.append("INBOX", [make_message("for b")])
    run = sync(connector_for([a, b]))
    assert sorted(m.origin.account for m in run.messages) == sorted([a.username, b.username])
