"""Logging in and connecting against a real Dovecot: non-ASCII passwords, secret files with a BOM,
host-name typos, wrong ports and TLS modes, and the wording of what goes wrong."""

from __future__ import annotations

import functools
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from archiver.config import parse_config
from archiver.errors import ConfigError
from archiver.sources.imap import build_imap
from connectors.imap import ImapAccount, ImapConnector, ImapServer, default_client_factory

from .dovecot import Dovecot
from .helpers import MailUser, loopback_source, make_message, new_user, sync

pytestmark = pytest.mark.dovecot

NON_ASCII_PASSWORD = "Passwört-§1"


def _user_with_password(dovecot: Dovecot, password: str) -> MailUser:
    """A user whose mail is delivered straight into its Maildir (MailUser.client() logs in with LOGIN)."""
    user = new_user(dovecot)
    user.password = password
    dovecot.add_user(user.username, password)
    return user


def _connector(dovecot: Dovecot, users: list[MailUser], **kw: Any) -> ImapConnector:
    accounts = [ImapAccount(u.username, password=functools.partial(str, u.password)) for u in users]
    server = ImapServer(dovecot.host, kw.pop("port", dovecot.port), tls=kw.pop("tls", "none"), **kw.pop("server", {}))
    kw.setdefault("backoff_initial_s", 0.2)
    return ImapConnector("test-imap", server, accounts, **kw)


def _secret_chars_absent(text: str, secret: str) -> bool:
    return not any(c in text for c in secret if not c.isascii() or c in "§")


def test_non_ascii_password_logs_in_with_authenticate_plain(dovecot: Dovecot) -> None:
    """imaplib's LOGIN is ASCII-only: it raised UnicodeEncodeError (quoting a password character)
    out of the connector, and the accounts after it were never synced."""
    umlaut = _user_with_password(dovecot, NON_ASCII_PASSWORD)
    dovecot.deliver(umlaut.username, "INBOX", [make_message("for the umlaut account")])
    other = new_user(dovecot)
    other.append("INBOX", [make_message("for the next account")])

    run = sync(_connector(dovecot, [umlaut, other]))

    assert run.failures == []
    assert sorted(m.origin.account for m in run.messages) == sorted([umlaut.username, other.username])
    log = (dovecot.root / "dovecot.log").read_text(errors="replace")
    assert f"user=<{umlaut.username}>, method=PLAIN" in log


def test_non_ascii_password_without_authenticate_plain_is_a_clear_error(dovecot: Dovecot) -> None:
    """A server that offers no AUTHENTICATE PLAIN (fault injection: Dovecot's LOGIN needs its PLAIN
    mechanism, so it always offers it): a sentence saying so, no password character in it."""
    umlaut = _user_with_password(dovecot, NON_ASCII_PASSWORD)
    other = new_user(dovecot)
    other.append("INBOX", [make_message("for the next account")])

    class NoPlain:
        def __init__(self, inner: Any) -> None:
            self._inner = inner

        def __getattr__(self, name: str) -> Any:
            return getattr(self._inner, name)

        def capabilities(self) -> tuple[bytes, ...]:
            return tuple(c for c in self._inner.capabilities() if c.upper() != b"AUTH=PLAIN")

    run = sync(_connector(dovecot, [umlaut, other], client_factory=lambda s: NoPlain(default_client_factory(s))))

    assert [m.origin.account for m in run.messages] == [other.username]
    [failure] = run.failures
    assert failure.whole and failure.permanent
    assert "non-ASCII" in failure.reason and "AUTHENTICATE PLAIN" in failure.reason
    assert _secret_chars_absent(failure.reason + failure.location, NON_ASCII_PASSWORD)


@pytest.mark.parametrize("password", ["pw-with-a-bom", NON_ASCII_PASSWORD])
def test_password_file_saved_with_a_byte_order_mark(dovecot: Dovecot, tmp_path: Path, password: str) -> None:
    """Notepad starts a UTF-8 file with U+FEFF: it was read as part of the password."""
    user = _user_with_password(dovecot, password)
    dovecot.deliver(user.username, "INBOX", [make_message("bom")])
    secret = tmp_path / "password.txt"
    secret.write_text(password + "\r\n", encoding="utf-8-sig")
    assert secret.read_bytes().startswith(b"\xef\xbb\xbf")
    src = loopback_source(dovecot, tmp_path, [{"username": user.username, "password_file": str(secret)}])
    run = sync(build_imap(src))
    assert run.failures == [] and [m.origin.account for m in run.messages] == [user.username]


def _imap_source(tmp_path: Path, **src: Any) -> Any:
    base = {"name": "typo", "type": "imap", "tls": "implicit", "accounts": [{"username": "a", "password_env": "X"}]}
    return parse_config({"archive": {"path": str(tmp_path)}, "sources": [{**base, **src}]}).sources[0]


@pytest.mark.parametrize(
    ("host", "problem"),
    [
        ("mail..example.com", "1 to 63 characters"),
        ("a" * 64 + ".example.com", "1 to 63 characters"),
        (".example.com", "1 to 63 characters"),
        ("imap.example.com:993", "port"),
        ("imaps://imap.example.com", "URL"),
        ("imap.example .com", "spaces"),
        ("", "empty"),
    ],
)
def test_host_name_typo_is_a_config_error(tmp_path: Path, host: str, problem: str) -> None:
    """``mail..example.com`` raised a UnicodeError (IDNA) from the socket layer: a traceback, exit 1."""
    with pytest.raises(ConfigError, match=problem):
        build_imap(_imap_source(tmp_path, host=host))


@pytest.mark.parametrize(
    "host", ["mail.example.com", "mail.example.com.", "127.0.0.1", "::1", "[::1]", "bücher.example"]
)
def test_valid_host_names_are_accepted(tmp_path: Path, host: str) -> None:
    assert build_imap(_imap_source(tmp_path, host=host)).server.host == host


def test_port_out_of_range_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="1 to 65535"):
        build_imap(_imap_source(tmp_path, host="mail.example.com", port=99999))


def test_invalid_host_name_given_to_the_connector_is_a_failure_not_a_crash(dovecot: Dovecot) -> None:
    """The connector used without the config's check: the UnicodeError still becomes a failure."""
    users = [new_user(dovecot), new_user(dovecot)]
    conn = _connector(dovecot, users, retries=5, backoff_initial_s=1.0)
    conn.server = ImapServer("mail..example.com", 993, tls="none")
    started = time.monotonic()
    run = sync(conn)
    assert time.monotonic() - started < 5  # not retried as if it might work later
    assert len(run.failures) == 2 and all(f.permanent and f.whole for f in run.failures)
    assert "not a valid host name" in run.failures[0].reason
    assert "not tried" in run.failures[1].reason  # the same server setting: the next account is not tried


def test_connection_refused_says_so_in_words(dovecot: Dovecot) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free once closed: nothing listens there
    run = sync(_connector(dovecot, [new_user(dovecot)], port=port, retries=0))
    [failure] = run.failures
    assert "Connection refused" in failure.reason and "111" not in failure.reason
    assert not failure.permanent  # a server being restarted refuses too: retried, and tried next run


def test_unknown_host_is_permanent_and_not_retried(dovecot: Dovecot) -> None:
    host = "archiver-test-no-such-host.invalid"  # RFC 2606: never resolves
    try:
        socket.getaddrinfo(host, 993)
    except socket.gaierror as exc:
        if exc.errno != socket.EAI_NONAME:
            pytest.skip(f"this machine's resolver answers {exc.strerror!r} for {host}")
    conn = _connector(dovecot, [new_user(dovecot), new_user(dovecot)], retries=5, backoff_initial_s=1.0)
    conn.server = ImapServer(host, 993, tls="none")
    started = time.monotonic()
    run = sync(conn)
    assert time.monotonic() - started < 5  # before: ~31 s of back-off per account
    assert all(f.permanent for f in run.failures) and len(run.failures) == 2
    assert f"the host name {host!r} was not found" in run.failures[0].reason
    assert "gaierror" not in run.failures[0].reason and "-2" not in run.failures[0].reason


def test_implicit_tls_on_the_plain_port_is_permanent_with_a_hint(dovecot: Dovecot) -> None:
    """Before: ``SSLError: 1``, retried for ~31 s per account."""
    import ssl

    context = ssl.create_default_context(cafile=str(dovecot.ca_file))
    users = [new_user(dovecot), new_user(dovecot)]
    conn = _connector(dovecot, users, tls="implicit", server={"ssl_context": context}, retries=5, backoff_initial_s=1.0)
    started = time.monotonic()
    run = sync(conn)
    assert time.monotonic() - started < 5
    assert len(run.failures) == 2 and all(f.permanent for f in run.failures)
    assert "does not speak TLS" in run.failures[0].reason and "tls: starttls" in run.failures[0].reason
    assert "SSLError: 1" not in run.failures[0].reason
    assert f"Account {users[1].username!r} not tried" in run.failures[1].reason


@pytest.mark.parametrize("mode", ["starttls", "none"])
def test_plain_connection_to_the_implicit_tls_port_is_permanent_with_a_hint(dovecot: Dovecot, mode: str) -> None:
    """The server waits for a TLS hello, the client for a greeting: before, every attempt of every
    account waited for timeout_s (6.5 min per account with the defaults)."""
    users = [new_user(dovecot), new_user(dovecot)]
    conn = _connector(
        dovecot, users, port=dovecot.tls_port, tls=mode, server={"timeout_s": 1.0}, retries=5, backoff_initial_s=1.0
    )
    started = time.monotonic()
    run = sync(conn)
    assert time.monotonic() - started < 5  # one timeout, not retries x timeouts x accounts
    assert len(run.failures) == 2 and all(f.permanent for f in run.failures)
    assert "no IMAP greeting within 1 s" in run.failures[0].reason and "tls: implicit" in run.failures[0].reason
