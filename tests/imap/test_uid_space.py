"""The UID space against a real Dovecot: a server restored from a backup, and folders whose UID
list does not fit in one reply line."""

from __future__ import annotations

import imaplib
import shutil
from typing import Any

import pytest

from .helpers import MailUser, connector_for, make_message, recording_factory, sync

pytestmark = pytest.mark.dovecot


def _restore(user: MailUser, backup: Any) -> None:
    """Put the user's mail home back as it was at ``backup`` (Maildir, dovecot-uidlist, indexes)."""
    server = user.server
    home = server.home(user.username)
    server.stop()
    shutil.rmtree(home)
    shutil.copytree(backup, home, symlinks=True)
    server._own(home)
    server.start()


def test_server_restored_from_backup_is_read_again_and_nothing_is_lost(mail_user: MailUser, tmp_path: Any) -> None:
    """A restore keeps UIDVALIDITY but hands out UIDs the checkpoint has already passed.

    Before, the mail delivered after the restore got those UIDs and was never archived,
    without an event or a failure.
    """
    server = mail_user.server
    mail_user.append("INBOX", [make_message(f"day 1, {i}") for i in range(3)])
    backup = tmp_path / "backup"
    server.stop()
    shutil.copytree(server.home(mail_user.username), backup, symlinks=True)  # last night's backup
    server.start()
    mail_user.append("INBOX", [make_message(f"day 2, {i}") for i in range(2)])
    conn = connector_for([mail_user])
    first = sync(conn)
    assert first.uids() == [1, 2, 3, 4, 5]
    uidvalidity = first.state(mail_user.username)["uidvalidity"]

    _restore(mail_user, backup)  # the disk died; UIDNEXT is 4 again, UIDVALIDITY unchanged
    urgent = make_message("URGENT: settlement offer, received after the restore")
    mail_user.append("INBOX", [urgent])  # gets UID 4, which the checkpoint has passed

    second = sync(conn, first.checkpoints)
    assert second.failures == []
    assert urgent in [m.data for m in second.messages]
    assert second.uids() == [1, 2, 3, 4]  # the folder was read again; the store dedups the old ones
    [event] = [e for e in second.events if e.kind == "uidnext_went_back"]
    assert event.detail["folder"] == "INBOX" and event.detail["account"] == mail_user.username
    assert event.detail["old_last_uid"] == "5" and event.detail["new_uidnext"] == "5"
    assert event.detail["uidvalidity"] == str(uidvalidity)
    assert second.state(mail_user.username) == {"last_uid": 4, "uidvalidity": uidvalidity}

    later = [make_message("next day"), make_message("day after")]
    mail_user.append("INBOX", later)
    third = sync(conn, second.checkpoints)
    assert [m.data for m in third.messages] == later and third.events == []


def _limit_reply_lines(monkeypatch: pytest.MonkeyPatch, limit: int) -> None:
    """Lower imaplib's line limit (1 MB) so that a few thousand messages reach it.

    The replies are Dovecot's own; only the client's limit is smaller, which spares the
    test the ~160,000 messages a folder needs to pass 1 MB (the slow test below has them).
    """
    monkeypatch.setattr(imaplib, "_MAXLINE", limit)


def test_uid_list_longer_than_a_reply_line_is_searched_in_windows(
    mail_user: MailUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One ``UID SEARCH`` over the folder gave a ``* SEARCH`` line over imaplib's limit: the folder
    failed on every run, and the unread rest of the line broke the next folder too."""
    big = [b"Subject: m%d\r\nMessage-ID: <%d@big.test>\r\n\r\nbody %d\r\n" % (i, i, i) for i in range(1500)]
    mail_user.server.deliver(mail_user.username, "Big", big)
    mail_user.append("Zulu", [make_message("after the big folder")])
    _limit_reply_lines(monkeypatch, 3000)  # the full UID list is ~7.4 kB: "* SEARCH 1 2 ... 1500"
    commands: list[tuple[str, Any]] = []

    run = sync(connector_for([mail_user], batch_size=500, client_factory=recording_factory(commands)))

    assert run.failures == []
    assert sorted(run.uids("Big")) == list(range(1, 1501))
    assert {m.data for m in run.messages if m.origin.folder == "Big"} == set(big)
    assert run.uids("Zulu") == [1]
    assert run.state(mail_user.username, "Big")["last_uid"] == 1500
    assert sum(1 for name, _ in commands if name == "search") >= 6  # windows of (3000 - 64) // 11 = 266 UIDs
    assert sync(connector_for([mail_user]), run.checkpoints).messages == []


def test_a_reply_line_over_the_limit_drops_the_connection(mail_user: MailUser, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reply imaplib refuses to read is a failure of that folder, and the connection is
    replaced: its unread rest would otherwise be taken for the answer to the next command."""
    keywords = tuple(b"K%02d" % i + b"x" * 46 for i in range(40))  # EXAMINE's FLAGS line: ~2 kB
    mail_user.append("Tagged", [make_message("many keywords")], flags=keywords)
    mail_user.append("Zulu", [make_message("after the tagged folder")])
    mail_user.append("INBOX", [make_message("inbox")])
    _limit_reply_lines(monkeypatch, 1500)
    commands: list[tuple[str, Any]] = []

    run = sync(connector_for([mail_user], client_factory=recording_factory(commands)))

    assert run.uids("Zulu") == [1] and run.uids("INBOX") == [1]
    [failure] = run.failures
    assert failure.location.endswith("/Tagged") and not failure.whole
    assert "could not be read" in failure.reason and "got more than 1500 bytes" in failure.reason
    assert "refused" not in failure.reason  # the server refused nothing: the client could not read it
    assert sum(1 for name, _ in commands if name == "login") == 2  # a fresh connection after the failure


@pytest.mark.slow
def test_folder_over_the_real_reply_line_limit(mail_user: MailUser) -> None:
    """170,000 messages: their UID list is ~1.1 MB, over imaplib's unchanged 1 MB line limit."""
    count = 170_000
    tiny = [b"Subject: m%d\r\nMessage-ID: <%d@huge.test>\r\n\r\n%d\r\n" % (i, i, i) for i in range(count)]
    mail_user.server.deliver(mail_user.username, "Huge", tiny)
    del tiny
    mail_user.append("Zulu", [make_message("after the huge folder")])
    seen = 0
    last: dict[str, str] = {}
    failures = []
    for batch in connector_for([mail_user], batch_size=2000).batches({}):  # not kept: 170k messages
        seen += sum(1 for m in batch.messages if m.origin.folder == "Huge")
        failures.extend(batch.failures)
        last.update({cp.key: cp.value for cp in batch.checkpoints})
    assert failures == []
    assert seen == count
    assert f"imap:test-imap:{mail_user.username}:Zulu" in last


def test_restored_server_is_journaled_through_the_cli(
    initialised: Any, config_file: Any, mail_user: MailUser, tmp_path: Any
) -> None:
    """`archiver sync` end to end: the mail delivered after the restore is stored, nothing twice,
    and the journal says why the folder was read again."""
    from .test_cli_sync import add_imap_source

    server = mail_user.server
    mail_user.append("INBOX", [make_message(f"before {i}") for i in range(2)])
    backup = tmp_path / "backup"
    server.stop()
    shutil.copytree(server.home(mail_user.username), backup, symlinks=True)
    server.start()
    mail_user.append("INBOX", [make_message(f"after the backup {i}") for i in range(2)])
    add_imap_source(config_file, server, [mail_user])
    assert initialised("sync", "--json").json()["dove"]["imported"] == 4

    _restore(mail_user, backup)
    mail_user.append("INBOX", [make_message("after the restore")])
    summary = initialised("sync", "--json").json()["dove"]
    assert summary["imported"] == 1 and summary["duplicates"] == 2 and summary["failed"] == 0
    assert [e["kind"] for e in summary["events"]] == ["uidnext_went_back"]
    journaled = initialised("journal", "--type", "source_event", "--json").json_lines()
    assert [r["data"]["kind"] for r in journaled] == ["uidnext_went_back"]
    stats = initialised("stats", "--json").json()
    assert isinstance(stats, dict) and stats["messages"] == 5
