"""Test helpers: build a connector for Dovecot users and run it the way the pipeline does."""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

from imapclient import IMAPClient

from archiver.config import ImapSource, parse_config
from connectors.base import Batch, RawMessage, SourceEvent, SourceFailure
from connectors.imap import ImapAccount, ImapClientLike, ImapConnector, ImapServer, default_client_factory

from .dovecot import Dovecot

_counter = itertools.count(1)


@dataclass
class MailUser:
    """A mailbox on the test Dovecot and a way to set it up independently of the code under test."""

    server: Dovecot
    username: str
    password: str

    def client(self) -> IMAPClient:
        if not self.server.running:
            self.server.start()
        c = IMAPClient(self.server.host, port=self.server.port, ssl=False, timeout=30)
        c.login(self.username, self.password)
        return c

    def append(self, folder: str, messages: list[bytes], flags: tuple[bytes, ...] = ()) -> None:
        c = self.client()
        try:
            if folder != "INBOX" and not c.folder_exists(folder):
                c.create_folder(folder)
            for m in messages:
                c.append(folder, m, flags=flags)
        finally:
            c.logout()

    def server_flags(self, folder: str = "INBOX") -> dict[int, tuple[bytes, ...]]:
        c = self.client()
        try:
            c.select_folder(folder, readonly=True)
            uids = c.search(["ALL"])
            return {uid: tuple(d[b"FLAGS"]) for uid, d in c.fetch(uids, ["FLAGS"]).items()} if uids else {}
        finally:
            c.logout()


def new_user(dovecot: Dovecot, prefix: str = "user") -> MailUser:
    n = next(_counter)
    user = MailUser(dovecot, f"{prefix}{n}@example.test", f"pw-{n}-secret")
    dovecot.add_user(user.username, user.password)
    return user


def make_message(subject: str, body: str = "", sender: str = "alice@example.test") -> bytes:
    """A small, unique RFC 5322 message with CRLF line ends, as IMAP stores and returns them."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "bob@example.test"
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime(2024, 3, 1, 12, 0, tzinfo=UTC))
    msg["Message-ID"] = make_msgid(domain="example.test")
    msg.set_content(body or f"Body of {subject}.\n")
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


def connector_for(users: Iterable[MailUser], name: str = "test-imap", **kw: Any) -> ImapConnector:
    users = list(users)
    server = users[0].server
    accounts = [ImapAccount(u.username, password=functools.partial(str, u.password)) for u in users]
    kw.setdefault("backoff_initial_s", 0.2)
    return ImapConnector(name, ImapServer(server.host, server.port, tls="none", timeout_s=10), accounts, **kw)


def loopback_source(dovecot: Dovecot, tmp_path: Path, accounts: list[dict[str, Any]], **src: Any) -> ImapSource:
    """A ``type: imap`` source for the test Dovecot in plain text over loopback, read by the config loader.

    ``src`` overrides or adds keys of the source (``name``, ``host`` ...).
    """
    source = {"name": "dove", "type": "imap", "host": "127.0.0.1", "port": dovecot.port, "tls": "none"}
    cfg = parse_config(
        {"archive": {"path": str(tmp_path / "archive")}, "sources": [{**source, "accounts": accounts, **src}]}
    )
    imap = cfg.sources[0]
    assert isinstance(imap, ImapSource)
    return imap


@dataclass
class Run:
    """What one sync delivered, with checkpoints saved after each batch as the pipeline does."""

    checkpoints: dict[str, str] = field(default_factory=dict)
    messages: list[RawMessage] = field(default_factory=list)
    failures: list[SourceFailure] = field(default_factory=list)
    events: list[SourceEvent] = field(default_factory=list)
    batches: list[Batch] = field(default_factory=list)

    def uids(self, folder: str = "INBOX") -> list[int]:
        return [int(m.origin.uid) for m in self.messages if m.origin.folder == folder]

    def state(self, account: str, folder: str = "INBOX", source: str = "test-imap") -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.checkpoints[f"imap:{source}:{account}:{folder}"])
        return value


def sync(connector: ImapConnector, checkpoints: Mapping[str, str] | None = None) -> Run:
    run = Run(checkpoints=dict(checkpoints or {}))
    for batch in connector.batches(dict(run.checkpoints)):
        consume(run, batch)
    return run


def consume(run: Run, batch: Batch) -> None:
    run.batches.append(batch)
    run.messages.extend(batch.messages)
    run.failures.extend(batch.failures)
    run.events.extend(batch.events)
    for cp in batch.checkpoints:  # "after commit"
        run.checkpoints[cp.key] = cp.value


class RecordingClient:
    """A real imapclient connection that records which commands the connector sends."""

    def __init__(self, inner: ImapClientLike, log: list[tuple[str, Any]]) -> None:
        self._inner = inner
        self._log = log

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self._log.append(
                (name, kwargs.get("readonly", args[1] if name == "select_folder" and len(args) > 1 else None))
            )
            return attr(*args, **kwargs)

        return call


def recording_factory(log: list[tuple[str, Any]]) -> Any:
    def factory(server: ImapServer) -> Any:
        return RecordingClient(default_client_factory(server), log)

    return factory
