"""Messages a real Dovecot cannot deliver, answers without a body, and messages expunged mid-sync."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from connectors import imap
from connectors.imap import ImapServer, default_client_factory

from .dovecot import Dovecot
from .helpers import MailUser, connector_for, make_message, new_user, sync

pytestmark = pytest.mark.dovecot


def _deliver_corrupt(server: Dovecot, user: MailUser, folder: str, data: bytes) -> Path:
    """A Maildir file whose ``,S=`` size is wrong, as after a botched migration or a disk error.

    Dovecot cannot produce such a message: it answers ``FETCH failed: Internal error``
    and drops the connection, on every attempt.
    """
    md = server.maildir(user.username, folder)
    for sub in ("cur", "new", "tmp"):
        (md / sub).mkdir(parents=True, exist_ok=True)
    path = md / "new" / f"{time.time_ns()}.Mcorrupt{os.getpid()}.host,S={len(data) + 5000}"
    path.write_bytes(data)
    server._own(server.home(user.username))
    time.sleep(0.002)  # Dovecot numbers new files in the order of the time in their names
    return path


def _ensure_listed(user: MailUser, folder: str) -> None:
    c = user.client()
    try:
        if not c.folder_exists(folder):
            c.create_folder(folder)
    finally:
        c.logout()


def test_message_the_server_cannot_deliver_is_isolated_and_retried_every_run(dovecot: Dovecot) -> None:
    """Before, it failed its folder and every folder after it in that account, on every run."""
    user, other = new_user(dovecot), new_user(dovecot)
    other.append("INBOX", [make_message("other account")])
    user.append("INBOX", [make_message(f"inbox {i}") for i in range(3)])
    user.append("Clients/Acme", [make_message("acme")])
    good = [make_message(f"old {i}") for i in range(20)]
    dovecot.deliver(user.username, "Old", good[:10])
    time.sleep(0.002)
    poison = make_message("poison")
    corrupt = _deliver_corrupt(dovecot, user, "Old", poison)
    dovecot.deliver(user.username, "Old", good[10:])
    _ensure_listed(user, "Old")
    conn = connector_for([user, other], batch_size=5, retries=2, backoff_initial_s=0.05)

    first = sync(conn)

    assert sorted(m.data for m in first.messages if m.origin.folder == "Old") == sorted(good)
    assert len(first.uids("INBOX")) == 4 and first.uids("Clients/Acme") == [1]  # both accounts' INBOX
    [failure] = first.failures
    assert not failure.whole and failure.permanent
    bad_uid = first.state(user.username, "Old")["unreadable"][0]
    assert sorted([*first.uids("Old"), bad_uid]) == list(range(1, 22))
    assert failure.location.endswith(
        f"/Old;UIDVALIDITY={first.state(user.username, 'Old')['uidvalidity']}/;UID={bad_uid}"
    )
    assert f"account {user.username!r}, folder 'Old', UID {bad_uid}: the server did not deliver" in failure.reason
    assert first.state(user.username, "Old")["last_uid"] == 21  # the folder is not stalled

    second = sync(conn, first.checkpoints)  # tried again, reported again, nothing else fetched
    assert second.messages == [] and [f.location for f in second.failures] == [failure.location]
    assert second.state(user.username, "Old")["unreadable"] == [bad_uid]

    corrupt.rename(corrupt.with_name(corrupt.name.replace(f"S={len(poison) + 5000}", f"S={len(poison)}")))
    third = sync(conn, second.checkpoints)  # repaired (Dovecot sees a new file: a new UID)
    assert [m.data for m in third.messages] == [poison] and third.failures == []
    assert "unreadable" not in third.state(user.username, "Old")


def test_folder_failing_every_message_is_given_up_for_the_run_not_the_account(dovecot: Dovecot) -> None:
    """A run of unreadable messages ends the folder's pass after a bound; the next run goes on from there."""
    give_up = getattr(imap, "_GIVE_UP_AFTER", 10)
    user = new_user(dovecot)
    user.append("INBOX", [make_message("inbox")])
    bad = [make_message(f"corrupt {i}") for i in range(give_up + 2)]
    for data in bad:
        _deliver_corrupt(dovecot, user, "Broken", data)
    later = [make_message(f"later {i}") for i in range(2)]
    dovecot.deliver(user.username, "Broken", later)
    user.append("Zulu", [make_message("after the broken folder")])
    _ensure_listed(user, "Broken")
    conn = connector_for([user], retries=1, backoff_initial_s=0.05)

    first = sync(conn)

    assert first.uids("INBOX") == [1] and first.uids("Zulu") == [1]
    assert first.uids("Broken") == []
    broken = [f for f in first.failures if "/Broken" in f.location]
    assert not any(f.whole for f in first.failures)
    assert len(broken) == give_up + 1
    assert "given up for this run" in broken[-1].reason
    state = first.state(user.username, "Broken")
    assert state["unreadable"] == list(range(1, give_up + 1)) and state["last_uid"] == 0

    second = sync(conn, first.checkpoints)
    assert [m.data for m in second.messages] == later
    assert second.state(user.username, "Broken")["unreadable"] == list(range(1, len(bad) + 1))
    assert second.state(user.username, "Broken")["last_uid"] == len(bad) + len(later)


class _Hooked:
    """A real Dovecot connection whose ``fetch`` calls the test's hooks before and after it."""

    def __init__(self, inner: Any, before: Any = None, after: Any = None) -> None:
        self._inner = inner
        self._before = before
        self._after = after

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def fetch(self, uids: Any, items: Any) -> Any:
        if self._before is not None:
            self._before(list(uids), list(items))
        reply = self._inner.fetch(uids, items)
        return reply if self._after is None else self._after(list(uids), list(items), reply)


def _hooked(before: Any = None, after: Any = None) -> Any:
    def factory(server: ImapServer) -> Any:
        return _Hooked(default_client_factory(server), before, after)

    return factory


def test_message_expunged_during_the_sync_is_an_event_not_a_failure(mail_user: MailUser) -> None:
    """Another (real) client expunges UID 3 after the connector listed and sized it.

    Dovecot then answers its ``BODY[]`` with NIL, which was reported as a failure (exit 1)
    for a message the user had simply deleted.
    """
    msgs = [make_message(f"m{i}") for i in range(8)]
    mail_user.append("INBOX", msgs)
    mail_user.append("Zeta", [make_message("zeta")])
    done: list[bool] = []

    def expunge_uid_3(uids: list[int], items: list[str]) -> None:
        if "BODY.PEEK[]" in items and 3 in uids and not done:
            done.append(True)
            c = mail_user.client()
            c.select_folder("INBOX")
            c.delete_messages([3])
            c.expunge()
            c.logout()

    conn = connector_for([mail_user], batch_size=4, client_factory=_hooked(before=expunge_uid_3))
    run = sync(conn)

    assert done and run.failures == []
    assert run.uids() == [1, 2, 4, 5, 6, 7, 8] and run.uids("Zeta") == [1]
    [event] = [e for e in run.events if e.kind == "expunged_during_sync"]
    assert event.detail["folder"] == "INBOX" and event.detail["uids"] == "3"
    assert "unreadable" not in run.state(mail_user.username)
    again = sync(conn, run.checkpoints)
    assert again.messages == [] and again.failures == [] and again.events == []


@pytest.mark.parametrize("fault", ["nil body", "left out"])
def test_message_answered_without_its_body_is_asked_for_again(mail_user: MailUser, fault: str) -> None:
    """Fault injected over a real Dovecot connection (Dovecot itself disconnects instead, see
    above): one reply has ``BODY[] NIL`` or leaves a UID out, for a message that still exists.
    Before, the UID was reported once and then passed for good."""
    msgs = [make_message(f"m{i}") for i in range(5)]
    mail_user.append("INBOX", msgs)
    left = [1]

    def hiccup(uids: list[int], items: list[str], reply: Any) -> Any:
        if "BODY.PEEK[]" in items and 3 in reply and left:
            left.pop()
            if fault == "nil body":
                reply[3][b"BODY[]"] = None
            else:
                del reply[3]
        return reply

    run = sync(connector_for([mail_user], client_factory=_hooked(after=hiccup)))
    assert not left and run.failures == [] and run.events == []
    assert sorted(m.data for m in run.messages) == sorted(msgs)
    assert run.state(mail_user.username)["last_uid"] == 5


def test_message_never_delivered_with_a_body_stays_pending_until_it_is(mail_user: MailUser) -> None:
    """A message that keeps coming back without a body: reported, kept in the checkpoint, and
    archived by the first run whose server delivers it (fault injected as above)."""
    msgs = [make_message(f"m{i}") for i in range(5)]
    mail_user.append("INBOX", msgs)

    def no_body_for_3(uids: list[int], items: list[str], reply: Any) -> Any:
        if "BODY.PEEK[]" in items and 3 in reply:
            reply[3][b"BODY[]"] = None
        return reply

    broken = connector_for([mail_user], client_factory=_hooked(after=no_body_for_3))
    first = sync(broken)
    assert first.uids() == [1, 2, 4, 5]
    assert first.state(mail_user.username)["unreadable"] == [3]
    assert first.state(mail_user.username)["last_uid"] == 5
    [failure] = first.failures
    assert "UID 3: the server did not deliver this message (the server returned no message)" in failure.reason

    second = sync(broken, first.checkpoints)
    assert second.messages == [] and len(second.failures) == 1  # reported on every run

    fixed = sync(connector_for([mail_user]), second.checkpoints)
    assert [m.data for m in fixed.messages] == [msgs[2]] and fixed.failures == []
    assert "unreadable" not in fixed.state(mail_user.username)


def test_folder_that_keeps_dropping_the_connection_fails_alone(dovecot: Dovecot) -> None:
    """Login, LIST and EXAMINE work but every SEARCH of one folder loses the connection (fault
    injected over a real Dovecot connection: Dovecot has no such folder).  Before, the retries
    ran out and the whole account failed, the folders after it unread."""
    import imaplib

    user, other = new_user(dovecot), new_user(dovecot)
    user.append("INBOX", [make_message("inbox")])
    user.append("Flaky", [make_message("never listed")])
    user.append("Zulu", [make_message("zulu")])
    other.append("INBOX", [make_message("other account")])

    class DropsOnSearch:
        def __init__(self, inner: Any) -> None:
            self._inner = inner
            self._folder = ""

        def __getattr__(self, name: str) -> Any:
            return getattr(self._inner, name)

        def select_folder(self, folder: str, readonly: bool = False) -> Any:
            self._folder = folder
            return self._inner.select_folder(folder, readonly=readonly)

        def search(self, criteria: Any = "ALL", charset: Any = None) -> Any:
            if self._folder == "Flaky":
                self._inner.shutdown()
                raise imaplib.IMAP4.abort("socket error: EOF")
            return self._inner.search(criteria, charset)

    conn = connector_for(
        [user, other],
        retries=2,
        backoff_initial_s=0.05,
        client_factory=lambda s: DropsOnSearch(default_client_factory(s)),
    )
    run = sync(conn)

    assert run.uids("INBOX") == [1, 1] and run.uids("Zulu") == [1]
    [failure] = run.failures
    assert failure.location.endswith("/Flaky") and not failure.whole and not failure.permanent
    assert "Connection problem" in failure.reason and "folder 'Flaky'" in failure.reason
