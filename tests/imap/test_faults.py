"""Faults against a real Dovecot: bad logins, server restarts, UIDVALIDITY resets, XOAUTH2."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

from archiver.config import ImapSource, parse_config
from archiver.errors import ConfigError
from archiver.sources.imap import build_imap
from connectors.imap import ImapAccount, ImapConnector, ImapServer

from .dovecot import Dovecot
from .helpers import MailUser, Run, connector_for, consume, loopback_source, make_message, new_user, sync

pytestmark = pytest.mark.dovecot


def test_wrong_password_fails_that_account_only(dovecot: Dovecot) -> None:
    bad, good = new_user(dovecot), new_user(dovecot)
    good.append("INBOX", [make_message("good mail")])
    bad.password = "not-the-password"

    run = sync(connector_for([bad, good]))

    assert [m.origin.account for m in run.messages] == [good.username]
    assert len(run.failures) == 1
    failure = run.failures[0]
    assert failure.permanent
    assert f"Login refused for account {bad.username!r}" in failure.reason
    assert "not-the-password" not in failure.reason + failure.location
    assert not any(k.startswith(f"imap:test-imap:{bad.username}:") for k in run.checkpoints)


def test_missing_password_env_fails_that_account_only(
    dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    a, b = new_user(dovecot), new_user(dovecot)
    b.append("INBOX", [make_message("for b")])
    secret = tmp_path / "b.secret"
    secret.write_text(b.password + "\n")
    monkeypatch.delenv("NO_SUCH_PASSWORD_VAR", raising=False)
    accounts = [
        {"username": a.username, "password_env": "NO_SUCH_PASSWORD_VAR"},
        {"username": b.username, "password_file": str(secret)},
    ]
    run = sync(build_imap(loopback_source(dovecot, tmp_path, accounts)))
    assert [m.origin.account for m in run.messages] == [b.username]
    assert len(run.failures) == 1 and "NO_SUCH_PASSWORD_VAR" in run.failures[0].reason


def test_plaintext_to_remote_host_is_refused_at_build_time(tmp_path: Path) -> None:
    src = {
        "name": "remote",
        "type": "imap",
        "host": "mail.example.com",
        "tls": "none",
        "accounts": [{"username": "a", "password_env": "X"}],
    }
    cfg = parse_config({"archive": {"path": str(tmp_path)}, "sources": [src]})
    with pytest.raises(ConfigError, match="allow_plaintext"):
        build_imap(cfg.sources[0])  # type: ignore[arg-type]
    allowed = parse_config({"archive": {"path": str(tmp_path)}, "sources": [{**src, "allow_plaintext": True}]})
    assert build_imap(allowed.sources[0]).server.port == 143  # type: ignore[arg-type]


def test_server_restarted_mid_sync_resumes_without_gap(mail_user: MailUser) -> None:
    msgs = [make_message(f"m{i}") for i in range(20)]
    mail_user.append("INBOX", msgs)
    run = Run()
    batches = connector_for([mail_user], batch_size=5, retries=6).batches({})
    consume(run, next(batches))
    assert len(run.messages) == 5
    mail_user.server.restart()  # the connector's connection dies with the old server
    for batch in batches:
        consume(run, batch)
    assert run.failures == []
    assert [m.data for m in run.messages] == msgs
    assert run.uids() == list(range(1, 21))


def test_server_down_for_a_while_is_retried_with_backoff(mail_user: MailUser) -> None:
    msgs = [make_message(f"m{i}") for i in range(6)]
    mail_user.append("INBOX", msgs)
    server = mail_user.server
    run = Run()
    batches = connector_for([mail_user], batch_size=3, retries=8, backoff_initial_s=0.3).batches({})
    consume(run, next(batches))
    server.stop()
    timer = threading.Timer(2.0, server.start)  # refused connections until then
    timer.start()
    try:
        for batch in batches:
            consume(run, batch)
    finally:
        timer.join()
    assert run.failures == []
    assert [m.data for m in run.messages] == msgs


def test_retries_exhausted_reports_transient_failure_per_account(dovecot: Dovecot) -> None:
    a, b = new_user(dovecot), new_user(dovecot)
    a.append("INBOX", [make_message("a")])
    conn = connector_for([a, b], retries=1, backoff_initial_s=0.05)
    dovecot.stop()
    try:
        run = sync(conn)
    finally:
        dovecot.start()
    assert run.messages == []
    assert len(run.failures) == 2
    assert all(not f.permanent and "Connection problem" in f.reason for f in run.failures)
    assert {f.location for f in run.failures} == {f"imap://{u.username.replace('@', '%40')}@127.0.0.1" for u in (a, b)}
    assert all(f"account {u.username!r}" in f.reason for u, f in zip((a, b), run.failures, strict=True))


def test_uidvalidity_change_restarts_folder_and_is_reported(mail_user: MailUser) -> None:
    msgs = [make_message(f"p{i}") for i in range(3)]
    mail_user.append("Projects", msgs)
    mail_user.append("INBOX", [make_message("inbox")])
    conn = connector_for([mail_user])
    first = sync(conn)
    old = first.state(mail_user.username, "Projects")

    # Recreate the folder with the same mail: a new UIDVALIDITY, UIDs restart at 1.
    c = mail_user.client()
    c.delete_folder("Projects")
    c.logout()
    mail_user.append("Projects", [*msgs, make_message("p3")])
    # And lose INBOX's uidlist and indexes, as after a botched server migration.
    inbox = mail_user.server.maildir(mail_user.username)
    for p in inbox.glob("dovecot*"):
        if p.name.startswith(("dovecot-uidlist", "dovecot.index")):
            p.unlink()

    second = sync(conn, first.checkpoints)
    new = second.state(mail_user.username, "Projects")
    assert new["uidvalidity"] != old["uidvalidity"]
    assert [m.data for m in second.messages if m.origin.folder == "Projects"][:3] == msgs
    assert second.uids("Projects") == [1, 2, 3, 4]
    changed = [e for e in second.events if e.kind == "uidvalidity_changed"]
    assert {e.detail["folder"] for e in changed} == {"Projects", "INBOX"}
    assert second.uids("INBOX") == [1]  # the folder was read again from the start
    event = next(e for e in changed if e.detail["folder"] == "Projects")
    assert event.detail["old_uidvalidity"] == str(old["uidvalidity"])
    assert event.detail["new_uidvalidity"] == str(new["uidvalidity"])
    assert event.detail["account"] == mail_user.username
    # reported once: the next run is quiet
    third = sync(conn, second.checkpoints)
    assert third.events == [] and third.messages == []


def test_xoauth2_login_with_token_command(dovecot: Dovecot, tmp_path: Path) -> None:
    user = new_user(dovecot, prefix="oauth")
    user.append("INBOX", [make_message("via oauth")])
    token_file = tmp_path / "token"
    token_file.write_text(dovecot.token(user.username) + "\n")
    accounts = [{"username": user.username, "auth": {"type": "xoauth2", "token_command": f"cat {token_file}"}}]
    connector = build_imap(loopback_source(dovecot, tmp_path, accounts, name="oauth-imap", host="localhost"))
    run = sync(connector)
    assert run.failures == []
    assert [m.origin.account for m in run.messages] == [user.username]
    assert (dovecot.root / "dovecot.log").read_text().count(f"user=<{user.username}>, method=XOAUTH2") >= 1


def test_xoauth2_token_signed_by_another_key_is_refused(dovecot: Dovecot) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    user = new_user(dovecot, prefix="oauth")
    forged = dovecot.token(user.username, key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
    conn = ImapConnector(
        "oauth",
        ImapServer(dovecot.host, dovecot.port, tls="none"),
        [ImapAccount(user.username, oauth2_token=lambda: forged)],
    )
    run = sync(conn)
    assert len(run.failures) == 1 and "Login refused" in run.failures[0].reason
    good = ImapConnector(
        "oauth",
        ImapServer(dovecot.host, dovecot.port, tls="none"),
        [ImapAccount(user.username, oauth2_token=lambda: dovecot.token(user.username))],
    )
    assert sync(good).failures == []


def _tls_source(dovecot: Dovecot, user: MailUser, tmp_path: Path, **tls: Any) -> ImapSource:
    os.environ["IMAP_TLS_TEST_PW"] = user.password
    cfg = parse_config(
        {
            "archive": {"path": str(tmp_path / "archive")},
            "sources": [
                {
                    "name": "tls",
                    "type": "imap",
                    "host": "localhost",
                    "accounts": [{"username": user.username, "password_env": "IMAP_TLS_TEST_PW"}],
                    **tls,
                }
            ],
        }
    )
    src = cfg.sources[0]
    assert isinstance(src, ImapSource)
    return src


@pytest.mark.parametrize("mode", ["implicit", "starttls"])
def test_tls_modes_verify_against_ca_file(mode: str, mail_user: MailUser, tmp_path: Path) -> None:
    dovecot = mail_user.server
    mail_user.append("INBOX", [make_message("over tls")])
    port = dovecot.tls_port if mode == "implicit" else dovecot.port
    ok = sync(build_imap(_tls_source(dovecot, mail_user, tmp_path, tls=mode, port=port, ca_file=str(dovecot.ca_file))))
    assert ok.failures == [] and len(ok.messages) == 1

    untrusted = sync(build_imap(_tls_source(dovecot, mail_user, tmp_path, tls=mode, port=port, retries=3)))
    assert untrusted.messages == []
    assert len(untrusted.failures) == 1 and untrusted.failures[0].permanent  # not retried: a config problem
    assert "certificate" in untrusted.failures[0].reason and "ca_file" in untrusted.failures[0].reason

    unverified = build_imap(_tls_source(dovecot, mail_user, tmp_path, tls=mode, port=port, verify_tls=False))
    assert len(sync(unverified).messages) == 1
