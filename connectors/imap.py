"""IMAP connector: an incremental, resumable, read-only pull of every folder of many mailboxes.

What it guarantees, and why:

* **Read-only.**  Folders are opened with ``EXAMINE`` (``select_folder(readonly=True)``)
  and bodies fetched with ``BODY.PEEK[]``, so no flag (``\\Seen``) ever changes; the
  connector never issues STORE, EXPUNGE, COPY or MOVE.  An archiver that alters the
  mailbox it archives is not evidence of anything.
* **Incremental and resumable.**  One checkpoint per folder, key
  ``imap:{source}:{account}:{folder}``, value JSON
  ``{"uidvalidity": V, "last_uid": N, "highestmodseq": M?, "oversize": [uids]?}``.  Every
  batch carries the checkpoint of the position *after* it; the pipeline saves it only
  once the batch is committed.  A crash between commit and save re-fetches at most one
  batch, which the store's content dedup turns into a no-op.
* **UIDVALIDITY.**  If the server's UIDVALIDITY differs from the checkpoint's, the saved
  UIDs mean nothing any more: the folder restarts from UID 0 and a
  ``SourceEvent("uidvalidity_changed")`` rides along with the first batch so the journal
  records why the folder was read again.  Dedup keeps the re-read from adding copies.
* **Cheap when nothing changed.**  A folder whose ``UIDNEXT - 1`` is not above the saved
  ``last_uid`` cannot hold new mail (UIDs only grow), so it is skipped after the EXAMINE
  without a SEARCH.  ``HIGHESTMODSEQ`` (CONDSTORE) is recorded for information only: flag
  changes do not make a message new.
* **Over-size messages are never silently lost.**  A message above ``max_message_bytes``
  is not downloaded.  Stalling the folder on it would stop the archiving of all later
  mail, so the position moves past it, but its UID is kept in the checkpoint's
  ``oversize`` list and reported as a :class:`SourceFailure` on *every* run until it is
  either archived (the cap was raised: it is fetched then) or gone from the server.
* **Faults.**  Network errors, timeouts, ``BYE`` and aborted connections are
  :class:`TransientError`: the connector reconnects with exponential back-off (``retries``
  attempts, reset whenever a batch got through) and resumes from the last position it
  handed out.  A refused login is an :class:`AuthError` for that account; a folder the
  server refuses to open is a :class:`ProtocolError` for that folder.  Permanent
  failures become a ``Batch`` holding a :class:`SourceFailure` and the connector goes on
  with the next folder or account, so one broken mailbox never stops the others.

The network client is created by a factory callable (``client_factory``), the seam that
lets a test substitute a transport; the project's own tests use a real Dovecot.
Secrets (passwords, tokens) come from callables at login time and never appear in
messages or logs.
"""

from __future__ import annotations

import contextlib
import imaplib
import json
import logging
import random
import ssl
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timezone
from typing import Any, Literal, Protocol
from urllib.parse import quote

import imapclient
from imapclient.exceptions import LoginError

from connectors.base import Batch, Checkpoint, Origin, RawMessage, SourceEvent, SourceFailure, folder_selected
from connectors.errors import AuthError, ConnectorError, ProtocolError, TransientError

log = logging.getLogger(__name__)

TlsMode = Literal["implicit", "starttls", "none"]

#: UIDs asked for in one metadata FETCH (sizes and flags, no bodies).
_META_CHUNK = 1000


class ImapClientLike(Protocol):
    """The part of :class:`imapclient.IMAPClient` the connector uses (the factory seam's type)."""

    def login(self, username: str, password: str) -> Any: ...
    def oauth2_login(self, user: str, access_token: str) -> Any: ...
    def list_folders(self, directory: str = "", pattern: str = "*") -> list[tuple[Any, Any, Any]]: ...
    def select_folder(self, folder: str, readonly: bool = False) -> dict[bytes, Any]: ...
    def search(self, criteria: Any = "ALL", charset: str | None = None) -> list[int]: ...
    def fetch(self, messages: Sequence[int], data: Sequence[str]) -> dict[int, dict[bytes, Any]]: ...
    def logout(self) -> Any: ...
    def shutdown(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ImapServer:
    """How to reach the server."""

    host: str
    port: int
    tls: TlsMode = "implicit"
    #: None = the system's default verification context (used for implicit and STARTTLS).
    ssl_context: ssl.SSLContext | None = None
    timeout_s: float = 60.0


@dataclass(frozen=True, slots=True)
class ImapAccount:
    """One mailbox.  Exactly one of ``password`` and ``oauth2_token`` is set.

    Both are callables so a secret is read (and a token renewed) at each login and
    never stored in a repr.
    """

    username: str
    password: Callable[[], str] | None = field(default=None, repr=False)
    oauth2_token: Callable[[], str] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if (self.password is None) == (self.oauth2_token is None):
            raise ValueError(f"IMAP account {self.username!r} needs exactly one of a password or a token")


ClientFactory = Callable[[ImapServer], ImapClientLike]


def default_client_factory(server: ImapServer) -> ImapClientLike:
    """Connect with imapclient in the configured TLS mode (STARTTLS is mandatory when asked for)."""
    timeout = imapclient.SocketTimeout(connect=server.timeout_s, read=server.timeout_s)
    context = server.ssl_context or ssl.create_default_context()
    if server.tls == "implicit":
        client = imapclient.IMAPClient(server.host, port=server.port, ssl=True, ssl_context=context, timeout=timeout)
    else:
        client = imapclient.IMAPClient(server.host, port=server.port, ssl=False, timeout=timeout)
        if server.tls == "starttls":
            if b"STARTTLS" not in client.capabilities():
                client.shutdown()
                raise ProtocolError(
                    f"The IMAP server {server.host}:{server.port} does not offer STARTTLS; "
                    "use tls: implicit or check the port."
                )
            client.starttls(context)
    # tz-aware INTERNALDATE values instead of naive local times.
    client.normalise_times = False
    return client  # type: ignore[no-any-return]


@dataclass(slots=True)
class _FolderState:
    """The position within one folder; what the next checkpoint will say."""

    uidvalidity: int | None = None
    last_uid: int = 0
    highestmodseq: int | None = None
    oversize: set[int] = field(default_factory=set)
    events: list[SourceEvent] = field(default_factory=list)

    def dump(self) -> str:
        data: dict[str, Any] = {"uidvalidity": self.uidvalidity, "last_uid": self.last_uid}
        if self.highestmodseq is not None:
            data["highestmodseq"] = self.highestmodseq
        if self.oversize:
            data["oversize"] = sorted(self.oversize)
        return json.dumps(data, sort_keys=True)

    @classmethod
    def load(cls, value: str | None, where: str) -> _FolderState:
        """Parse a saved checkpoint; an unreadable one restarts the folder (dedup makes that safe)."""
        if value is None:
            return cls()
        try:
            data = json.loads(value)
            return cls(
                uidvalidity=int(data["uidvalidity"]) if data.get("uidvalidity") is not None else None,
                last_uid=int(data.get("last_uid", 0)),
                highestmodseq=int(data["highestmodseq"]) if data.get("highestmodseq") is not None else None,
                oversize={int(u) for u in data.get("oversize", [])},
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            log.warning("unreadable IMAP checkpoint for %s; reading the folder from the start", where)
            return cls()


def _translate(exc: BaseException, what: str) -> ConnectorError:
    """Map a client exception to the connector's error kinds; ``what`` names account and folder."""
    if isinstance(exc, ConnectorError):
        return exc
    if isinstance(exc, LoginError):
        return AuthError(f"Login refused for {what}: {_text(exc)}. Check the username and credentials.")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return ProtocolError(
            f"TLS certificate of the server rejected for {what}: {exc.verify_message}. "
            "Set ca_file to the server's CA, or fix the host name."
        )
    if isinstance(exc, (imaplib.IMAP4.abort, OSError, EOFError)):
        # abort covers BYE and dropped connections; OSError covers refused, reset, timeouts.
        return TransientError(f"Connection problem for {what}: {exc.__class__.__name__}: {_text(exc)}")
    if isinstance(exc, imaplib.IMAP4.error):
        return ProtocolError(f"The server refused a command for {what}: {_text(exc)}")
    raise exc


def _text(exc: BaseException) -> str:
    arg = exc.args[0] if exc.args else exc
    if isinstance(arg, bytes):
        return arg.decode("utf-8", "replace")
    return str(arg) or exc.__class__.__name__


class ImapConnector:
    """Pulls every selected folder of every account of one IMAP server, read-only.

    ``batches(checkpoints)`` never raises for a source problem: failures come back as
    batches with :class:`SourceFailure` entries (see the module docstring).
    """

    def __init__(
        self,
        name: str,
        server: ImapServer,
        accounts: Sequence[ImapAccount],
        *,
        include: Sequence[str] = ("*",),
        exclude: Sequence[str] = (),
        batch_size: int = 200,
        batch_max_bytes: int = 64 * 1024 * 1024,
        max_message_bytes: int = 100 * 1024 * 1024,
        retries: int = 5,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 60.0,
        client_factory: ClientFactory = default_client_factory,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.name = name
        self.server = server
        self.accounts = list(accounts)
        self.include = list(include)
        self.exclude = list(exclude)
        self.batch_size = batch_size
        self.batch_max_bytes = batch_max_bytes
        self.max_message_bytes = max_message_bytes
        self.retries = retries
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.client_factory = client_factory
        self._sleep = sleep

    # -- public -----------------------------------------------------------------------------------

    def checkpoint_key(self, account: str, folder: str) -> str:
        return f"imap:{self.name}:{account}:{folder}"

    def batches(self, checkpoints: Mapping[str, str]) -> Iterator[Batch]:
        """Yield batches for every account in turn; one account's failure does not stop the next."""
        for account in self.accounts:
            session = _Session(self, account)
            try:
                yield from self._sync_account(session, checkpoints)
            except ConnectorError as exc:
                log.warning("IMAP account failed: %s", exc)
                yield Batch(
                    failures=[
                        SourceFailure(
                            location=f"imap://{quote(account.username, safe='')}@{self.server.host}",
                            reason=str(exc),
                            permanent=not isinstance(exc, TransientError),
                            whole=True,
                        )
                    ],
                    account=account.username,
                )
            finally:
                session.close()

    def wanted(self, folder: str) -> bool:
        """Folder filter: included by a glob and not excluded by one (exclude wins)."""
        return folder_selected(folder, self.include, self.exclude)

    # -- internals --------------------------------------------------------------------------------

    def _backoff(self, attempt: int, exc: TransientError) -> None:
        delay = min(self.backoff_max_s, self.backoff_initial_s * 2 ** (attempt - 1))
        delay *= 0.75 + random.random() / 2  # jitter: many accounts must not reconnect in lockstep
        if exc.retry_after is not None:
            delay = max(delay, exc.retry_after)
        log.info("transient IMAP fault, retry %d/%d in %.1fs: %s", attempt, self.retries, delay, exc)
        self._sleep(delay)

    def _retrying(self, session: _Session, fn: Callable[[], Any]) -> Any:
        attempt = 0
        while True:
            try:
                return fn()
            except TransientError as exc:
                session.drop()
                attempt += 1
                if attempt > self.retries:
                    raise
                self._backoff(attempt, exc)

    def _sync_account(self, session: _Session, checkpoints: Mapping[str, str]) -> Iterator[Batch]:
        user = session.account.username
        folders = self._retrying(session, session.folders)
        for folder in folders:
            if not self.wanted(folder):
                continue
            key = self.checkpoint_key(user, folder)
            state = _FolderState.load(checkpoints.get(key), f"{user}/{folder}")
            try:
                yield from self._sync_folder(session, folder, state)
            except ProtocolError as exc:
                # A TransientError left after the retries, or an AuthError on reconnecting, ends the
                # account: its other folders would fail the same way.
                log.warning("IMAP folder failed: %s", exc)
                yield Batch(
                    failures=[SourceFailure(location=self._folder_url(user, folder), reason=str(exc))],
                    events=list(state.events),
                    account=user,
                    folder=folder,
                )

    def _sync_folder(self, session: _Session, folder: str, state: _FolderState) -> Iterator[Batch]:
        """Run folder passes until one completes, reconnecting after transient faults.

        ``state`` is advanced as batches are handed out, so a pass after a reconnect
        starts where the previous one stopped.
        """
        attempt = 0
        while True:
            progressed = False
            try:
                for batch in self._folder_pass(session, folder, state):
                    progressed = True
                    yield batch
                return
            except TransientError as exc:
                session.drop()
                attempt = 1 if progressed else attempt + 1
                if attempt > self.retries:
                    raise
                self._backoff(attempt, exc)

    def _folder_url(self, user: str, folder: str, uidvalidity: int | None = None, uid: int | None = None) -> str:
        url = f"imap://{quote(user, safe='')}@{self.server.host}/{quote(folder, safe='/')}"
        if uidvalidity is not None:
            url += f";UIDVALIDITY={uidvalidity}"
        if uid is not None:
            url += f"/;UID={uid}"
        return url

    def _folder_pass(self, session: _Session, folder: str, state: _FolderState) -> Iterator[Batch]:
        user = session.account.username
        key = self.checkpoint_key(user, folder)
        info = session.examine(folder)
        uidvalidity = int(info[b"UIDVALIDITY"])
        uidnext = int(info[b"UIDNEXT"]) if b"UIDNEXT" in info else None
        modseq = info.get(b"HIGHESTMODSEQ")
        if state.uidvalidity is not None and state.uidvalidity != uidvalidity:
            state.events.append(
                SourceEvent(
                    kind="uidvalidity_changed",
                    detail={
                        "source": self.name,
                        "account": user,
                        "folder": folder,
                        "old_uidvalidity": str(state.uidvalidity),
                        "new_uidvalidity": str(uidvalidity),
                    },
                )
            )
            log.warning(
                "UIDVALIDITY of %s/%s changed from %s to %s: reading the folder again",
                user, folder, state.uidvalidity, uidvalidity,
            )  # fmt: skip
            state.last_uid = 0
            state.oversize.clear()
        state.uidvalidity = uidvalidity
        if modseq is not None:
            state.highestmodseq = int(modseq)

        unchanged = uidnext is not None and uidnext - 1 <= state.last_uid
        if unchanged and not state.oversize and not state.events:
            return
        failures: list[SourceFailure] = []
        # Known over-size messages first: reported again, or archived if the cap was raised.
        uids = sorted(state.oversize)
        if not unchanged:
            # "n:*" also matches the highest UID when it is below n: filter.
            uids += sorted(u for u in session.search_from(state.last_uid + 1, folder) if u > state.last_uid)
        for start in range(0, len(uids), _META_CHUNK):
            chunk = uids[start : start + _META_CHUNK]
            meta = session.fetch(chunk, ["RFC822.SIZE"], folder)
            pending: list[int] = []
            pending_bytes = 0
            for uid in chunk:
                if uid not in meta:
                    state.oversize.discard(uid)
                    continue  # expunged since the search: nothing left to archive
                size = int(meta[uid].get(b"RFC822.SIZE", 0))
                if size > self.max_message_bytes:
                    state.oversize.add(uid)
                    failures.append(
                        SourceFailure(
                            location=self._folder_url(user, folder, uidvalidity, uid),
                            reason=(
                                f"account {user!r}, folder {folder!r}, UID {uid}: "
                                f"message of {size} bytes is over the limit of {self.max_message_bytes} "
                                "bytes (max_message_mb) and was not archived; raise the limit to archive it"
                            ),
                        )
                    )
                    continue
                if pending and (len(pending) >= self.batch_size or pending_bytes + size > self.batch_max_bytes):
                    yield self._fetch_batch(session, folder, pending, state, failures, key)
                    failures = []
                    pending, pending_bytes = [], 0
                pending.append(uid)
                pending_bytes += size
            if pending:
                yield self._fetch_batch(session, folder, pending, state, failures, key)
                failures = []
        # The folder is complete up to UIDNEXT-1 as seen at EXAMINE: no later mail can get a lower UID.
        if uidnext is not None:
            state.last_uid = max(state.last_uid, uidnext - 1)
        yield self._take(Batch(failures=failures, account=user, folder=folder), state, key)

    def _take(self, batch: Batch, state: _FolderState, key: str) -> Batch:
        """Attach pending events and the checkpoint of ``state`` to ``batch``."""
        batch.events.extend(state.events)
        state.events.clear()
        batch.checkpoints.append(Checkpoint(key=key, value=state.dump()))
        return batch

    def _fetch_batch(
        self,
        session: _Session,
        folder: str,
        uids: list[int],
        state: _FolderState,
        failures: list[SourceFailure],
        key: str,
    ) -> Batch:
        user = session.account.username
        assert state.uidvalidity is not None
        data = session.fetch(uids, ["BODY.PEEK[]", "INTERNALDATE", "FLAGS"], folder)
        batch = Batch(failures=list(failures), account=user, folder=folder)
        for uid in uids:
            item = data.get(uid)
            if item is None:
                continue  # expunged between the size check and now
            body = item.get(b"BODY[]")
            if not isinstance(body, bytes):
                batch.failures.append(
                    SourceFailure(
                        location=self._folder_url(user, folder, state.uidvalidity, uid),
                        reason=f"account {user!r}, folder {folder!r}, UID {uid}: the server returned no body",
                    )
                )
                continue
            internaldate = item.get(b"INTERNALDATE")
            flags = tuple(
                f.decode("utf-8", "replace") if isinstance(f, bytes) else str(f)
                for f in item.get(b"FLAGS", ())
                if f not in (b"\\Recent", "\\Recent")  # a session flag, not a property of the message
            )
            batch.messages.append(
                RawMessage(
                    data=body,
                    origin=Origin(
                        source=self.name,
                        account=user,
                        folder=folder,
                        uid=str(uid),
                        uidvalidity=str(state.uidvalidity),
                        internaldate=_plain_datetime(internaldate),
                        flags=flags,
                        location=self._folder_url(user, folder, state.uidvalidity, uid),
                    ),
                )
            )
        state.oversize.difference_update(uids)
        state.last_uid = max(state.last_uid, max(uids))
        return self._take(batch, state, key)


class _Session:
    """One logged-in connection for one account, opened lazily and dropped on faults."""

    def __init__(self, connector: ImapConnector, account: ImapAccount) -> None:
        self.connector = connector
        self.account = account
        self._client: ImapClientLike | None = None

    def _what(self, folder: str | None = None) -> str:
        server = self.connector.server
        where = f"account {self.account.username!r} on {server.host}:{server.port}"
        return f"{where}, folder {folder!r}" if folder else where

    def client(self) -> ImapClientLike:
        if self._client is None:
            try:
                client = self.connector.client_factory(self.connector.server)
            except Exception as exc:
                raise _translate(exc, self._what()) from None
            try:
                if self.account.oauth2_token is not None:
                    client.oauth2_login(self.account.username, self.account.oauth2_token())
                else:
                    assert self.account.password is not None
                    client.login(self.account.username, self.account.password())
            except Exception as exc:
                _shutdown(client)
                raise _translate(exc, self._what()) from None
            self._client = client
        return self._client

    def call(self, fn: Callable[[ImapClientLike], Any], folder: str | None = None) -> Any:
        client = self.client()
        try:
            return fn(client)
        except Exception as exc:
            err = _translate(exc, self._what(folder))
            if isinstance(err, TransientError):
                self.drop()
            raise err from None

    def folders(self) -> list[str]:
        """Selectable folder names (decoded from modified UTF-7 by imapclient)."""
        listed = self.call(lambda c: c.list_folders())
        names: list[str] = []
        for flags, _delim, name in listed:
            lowered = {(f if isinstance(f, bytes) else str(f).encode()).lower() for f in flags}
            if b"\\noselect" in lowered or b"\\nonexistent" in lowered:
                continue
            names.append(name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name))
        return names

    def examine(self, folder: str) -> dict[bytes, Any]:
        info: dict[bytes, Any] = self.call(lambda c: c.select_folder(folder, readonly=True), folder)
        if b"UIDVALIDITY" not in info:
            raise ProtocolError(f"The server gave no UIDVALIDITY for {self._what(folder)}.")
        return info

    def search_from(self, first_uid: int, folder: str) -> list[int]:
        """UIDs from ``first_uid`` up (UID SEARCH; never FETCH 1:*, which imapclient 4.1 mishandles)."""
        found: list[int] = self.call(lambda c: c.search(["UID", f"{first_uid}:*"]), folder)
        return [int(u) for u in found]

    def fetch(self, uids: list[int], items: list[str], folder: str) -> dict[int, dict[bytes, Any]]:
        data: dict[int, dict[bytes, Any]] = self.call(lambda c: c.fetch(uids, items), folder)
        return data

    def drop(self) -> None:
        """Forget a connection that failed; the next call reconnects."""
        if self._client is not None:
            _shutdown(self._client)
            self._client = None

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.logout()
            except Exception:
                _shutdown(self._client)
            self._client = None


def _plain_datetime(value: Any) -> datetime | None:
    """INTERNALDATE with a stdlib ``timezone``.

    imapclient's own ``FixedOffset`` tzinfo cannot be unpickled, and the pipeline
    sends dates to its worker processes: an unpicklable task silently hangs a
    multiprocessing pool.
    """
    if not isinstance(value, datetime):
        return None
    offset = value.utcoffset()
    if offset is None:
        return value.replace(tzinfo=UTC)  # a naive value: imapclient would have given local time
    return value.replace(tzinfo=timezone(offset))


def _shutdown(client: ImapClientLike) -> None:
    with contextlib.suppress(OSError, imaplib.IMAP4.error, AttributeError):
        client.shutdown()
