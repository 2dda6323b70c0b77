"""Folder selection and folders that change under the sync, against a real Dovecot."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from connectors.imap import ImapServer, default_client_factory

from .helpers import MailUser, connector_for, make_message, sync

pytestmark = pytest.mark.dovecot

GMAIL = ["[Gmail]/All Mail", "[Gmail]/Spam", "[Gmail]/Sent Mail"]


@pytest.fixture
def gmail_like(mail_user: MailUser) -> MailUser:
    """Gmail's layout: a ``[Gmail]`` parent holding the special folders (created on Dovecot)."""
    mail_user.append("INBOX", [make_message("inbox")])
    for folder in GMAIL:
        mail_user.append(folder, [make_message(folder)])
    return mail_user


def _folders(run: Any) -> list[str]:
    return sorted({m.origin.folder for m in run.messages})


def test_brackets_in_folder_patterns_match_themselves(gmail_like: MailUser) -> None:
    """fnmatch read ``[Gmail]`` as a character class: Spam could not be excluded, and an include of
    All Mail archived nothing at all."""
    excluded = sync(connector_for([gmail_like], exclude=["[Gmail]/Spam"]))
    assert _folders(excluded) == ["INBOX", "[Gmail]/All Mail", "[Gmail]/Sent Mail"]

    included = sync(connector_for([gmail_like], include=["[Gmail]/All Mail"]))
    assert _folders(included) == ["[Gmail]/All Mail"] and included.events == []

    wildcard = sync(connector_for([gmail_like], include=["[Gmail]/*"], exclude=["*/S?am"]))
    assert _folders(wildcard) == ["[Gmail]/All Mail", "[Gmail]/Sent Mail"]


def test_inbox_matches_in_any_case(gmail_like: MailUser) -> None:
    """RFC 3501: INBOX is case-insensitive, so ``Inbox`` in the config is the INBOX."""
    assert _folders(sync(connector_for([gmail_like], include=["Inbox"]))) == ["INBOX"]


def test_include_pattern_matching_no_folder_is_warned_about(
    gmail_like: MailUser, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="connectors.imap"):
        run = sync(connector_for([gmail_like], include=["INBOX", "[Google Mail]/*", "Archive"]))
    assert _folders(run) == ["INBOX"] and run.failures == []
    [event] = run.events
    assert event.kind == "include_matched_nothing" and event.detail["account"] == gmail_like.username
    assert event.detail["patterns"] == '["[Google Mail]/*", "Archive"]'
    assert any("[Google Mail]/*, Archive" in r.getMessage() for r in caplog.records)


def test_folder_patterns_shared_by_every_connector() -> None:
    """``connectors/base.py`` serves EWS and Graph too: only ``*`` and ``?`` are special."""
    from connectors.base import folder_selected, unmatched_patterns

    assert folder_selected("[Gmail]/Spam", ["*"], ["[Gmail]/Spam"]) is False
    assert folder_selected("G/Spam", ["*"], ["[Gmail]/Spam"]) is True
    assert folder_selected("Clients/Acme/2024", ["Clients/*"], []) is True
    assert folder_selected("Inbox/Sub", ["INBOX/*"], []) is True
    assert folder_selected("Sent Items", ["sent items"], []) is False  # only INBOX ignores case
    assert folder_selected("a.b", ["a?b"], []) and not folder_selected("ab", ["a?b"], [])
    assert unmatched_patterns(["INBOX", "Sent"], ["inbox", "Drafts", "S*"]) == ["Drafts"]


def test_folder_deleted_between_list_and_examine_is_an_event(mail_user: MailUser) -> None:
    """Another (real) client deletes ``Gone`` after the connector listed it; before, this was a
    failure and ``sync`` exited 1 for a folder the user had simply removed."""
    mail_user.append("INBOX", [make_message("inbox")])
    mail_user.append("Gone", [make_message("soon deleted")])
    mail_user.append("Zulu", [make_message("zulu")])
    deleted: list[str] = []

    class DeleteBeforeExamine:
        def __init__(self, inner: Any) -> None:
            self._inner = inner

        def __getattr__(self, name: str) -> Any:
            return getattr(self._inner, name)

        def select_folder(self, folder: str, readonly: bool = False) -> Any:
            if folder == "Gone" and not deleted:
                c = mail_user.client()
                c.delete_folder("Gone")
                c.logout()
                deleted.append(folder)
            return self._inner.select_folder(folder, readonly=readonly)

    def factory(server: ImapServer) -> Any:
        return DeleteBeforeExamine(default_client_factory(server))

    run = sync(connector_for([mail_user], client_factory=factory))

    assert deleted and run.failures == []
    assert _folders(run) == ["INBOX", "Zulu"]
    [event] = run.events
    assert event.kind == "folder_vanished" and event.detail["folder"] == "Gone"
    assert f"imap:test-imap:{mail_user.username}:Gone" not in run.checkpoints


def test_folder_that_is_listed_but_cannot_be_opened_is_still_a_failure(mail_user: MailUser) -> None:
    """Only a folder that is gone is an event.  A Maildir folder whose directory name is raw UTF-8
    (written by a migration tool) is listed by Dovecot but refused by EXAMINE: its mail is not
    archived, so it stays a failure."""
    mail_user.append("INBOX", [make_message("inbox")])
    mail_user.server.deliver(mail_user.username, "Café", [make_message("in a raw UTF-8 folder")])
    run = sync(connector_for([mail_user]))
    assert _folders(run) == ["INBOX"] and run.events == []
    [failure] = run.failures
    assert failure.location.endswith("/Caf%C3%A9") and "refused" in failure.reason
