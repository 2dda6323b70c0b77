"""IMAP connector: an incremental, resumable, read-only pull of every folder of many mailboxes.

What it guarantees, and why:

* **Read-only.**  Folders are opened with ``EXAMINE`` (``select_folder(readonly=True)``)
  and bodies fetched with ``BODY.PEEK[]``, so no flag (``\\Seen``) ever changes; the
  connector never issues STORE, EXPUNGE, COPY or MOVE.  An archiver that alters the
  mailbox it archives is not evidence of anything.
* **Incremental and resumable.**  One checkpoint per folder, key
  ``imap:{source}:{account}:{folder}``, value JSON ``{"uidvalidity": V, "last_uid": N,
  "highestmodseq": M?, "oversize": [uids]?, "unreadable": [uids]?}``.  Every UID up to
  ``last_uid`` is archived, was expunged, or is listed in ``oversize`` or ``unreadable``.
  Every batch carries the checkpoint of the position *after* it; the pipeline saves it
  only once the batch is committed.  A crash between commit and save re-fetches at most
  one batch, which the store's content dedup turns into a no-op.
* **UIDVALIDITY, and UIDs handed out again.**  If the server's UIDVALIDITY differs from
  the checkpoint's, the saved UIDs mean nothing any more: the folder restarts from UID 0
  and a ``SourceEvent("uidvalidity_changed")`` rides along with the first batch so the
  journal records why the folder was read again.  A server restored from a backup keeps
  its UIDVALIDITY but hands out UIDs the checkpoint has already passed (UIDNEXT goes
  *down*, which RFC 3501 forbids): that is treated the same way, with a
  ``uidnext_went_back`` event.  Dedup keeps a re-read from adding copies.  (Not seen:
  a restored server that has received as many new messages as it lost before the next
  sync; docs/imap.md says why that is not checked.)
* **Cheap when nothing changed.**  A folder whose ``UIDNEXT - 1`` equals the saved
  ``last_uid`` cannot hold new mail (UIDs only grow), so it is skipped after the EXAMINE
  without a SEARCH.  ``HIGHESTMODSEQ`` (CONDSTORE) is recorded for information only: flag
  changes do not make a message new.
* **Bounded replies.**  UIDs are listed with ``UID SEARCH`` over UID windows small enough
  that one ``* SEARCH`` line stays under imaplib's line limit (1 MB, ~90k UIDs); a single
  search over a folder of ~160k messages was refused by imaplib on every run.  Each
  window is archived before the next is listed, so memory does not grow with the folder.
* **Over-size messages are never silently lost.**  A message above ``max_message_bytes``
  is not downloaded.  Stalling the folder on it would stop the archiving of all later
  mail, so the position moves past it, but its UID is kept in the checkpoint's
  ``oversize`` list and reported as a :class:`SourceFailure` on *every* run until it is
  either archived (the cap was raised: it is fetched then) or gone from the server.
* **A message the server cannot deliver is isolated, not a roadblock.**  When a FETCH of
  several UIDs fails (Dovecot drops the connection on a corrupt Maildir file), the set is
  split in halves until the failing UIDs stand alone; each is tried once more on a fresh
  connection, then kept in the checkpoint's ``unreadable`` list, reported on every run
  and tried again on every run, like an over-size message.  A UID answered without a
  body, or left out of the reply, is looked up: gone (another client expunged it during
  the sync) is an ``expunged_during_sync`` event, not a failure; still there, it is asked
  for once more and otherwise treated as unreadable.  After ``_GIVE_UP_AFTER``
  unreadable messages in a row the folder is given up for this run (the position stays
  where it got to, so the next run goes on from there).
* **Faults.**  Network errors, timeouts, ``BYE`` and aborted connections are
  :class:`TransientError`: the connector reconnects with exponential back-off (``retries``
  attempts, reset whenever a batch got through) and resumes from the last position it
  handed out.  Any error other than a clean tagged NO/BAD also drops the connection, since
  the rest of an unread reply would otherwise be taken for the answer to the next
  command.  What cannot work on a retry is permanent and not retried: an unknown host
  name, a TLS handshake on the wrong port or TLS mode, a certificate that does not verify,
  a refused login.  A server that cannot be reached or logged in to fails the account; a
  folder that cannot be opened or read fails that folder, and one deleted by its user
  between LIST and EXAMINE is a ``folder_vanished`` event.  Failures come back as a
  ``Batch`` holding a :class:`SourceFailure`, and the connector goes on with the next
  folder or account: one broken mailbox never stops the others, and neither does an
  unexpected exception, which is reported by its type only.

The network client is created by a factory callable (``client_factory``), the seam that
lets a test substitute a transport; the project's own tests use a real Dovecot.
Secrets (passwords, tokens) come from callables at login time and never appear in
messages or logs.  A non-ASCII password, which IMAP ``LOGIN`` cannot carry (imaplib
raised UnicodeEncodeError, quoting a character of it), is sent with ``AUTHENTICATE
PLAIN`` in UTF-8.
"""

from __future__ import annotations

import contextlib
import imaplib
import json
import logging
import random
import re
import socket
import ssl
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timezone
from typing import Any, Literal, Protocol
from urllib.parse import quote

import imapclient
from imapclient.exceptions import InvalidCriteriaError, LoginError

from connectors.base import (
    Batch,
    Checkpoint,
    Origin,
    RawMessage,
    SourceEvent,
    SourceFailure,
    folder_selected,
    unmatched_patterns,
    where_raised,
)
from connectors.errors import AuthError, ConnectorError, ProtocolError, TransientError

log = logging.getLogger(__name__)

TlsMode = Literal["implicit", "starttls", "none"]

#: UIDs asked for in one metadata FETCH (sizes, no bodies).
_META_CHUNK = 1000
#: unreadable messages in a row after which a folder is given up for this run: a server
#: that fails every FETCH of a folder would otherwise cost a reconnect per message.
_GIVE_UP_AFTER = 10
#: bytes one UID takes in a ``* SEARCH`` line at most (10 digits and a space: UIDs are 32-bit).
_BYTES_PER_UID = 11
#: room for ``* SEARCH`` and the line end (and a MODSEQ a CONDSTORE server may append).
_SEARCH_LINE_OVERHEAD = 64

#: getaddrinfo answers that mean "no such name", not "the resolver is unwell".
_UNKNOWN_HOST = {
    getattr(socket, name)
    for name in ("EAI_NONAME", "EAI_NODATA", "EAI_ADDRFAMILY", "EAI_SERVICE")
    if hasattr(socket, name)
}
#: a tagged NO or BAD as imapclient and imaplib word them: the reply was read to its end.
_CLEAN_REFUSAL = re.compile(r"^[\w ]+ failed: |^\w+ command error: (BAD|NO)\b")


def search_window() -> int:
    """UIDs one ``UID SEARCH`` may cover so that its reply fits imaplib's line limit.

    Read at each use, so a process that raised ``imaplib._MAXLINE`` gets wider windows.
    """
    limit = int(getattr(imaplib, "_MAXLINE", 1_000_000))
    return max(1, (limit - _SEARCH_LINE_OVERHEAD) // _BYTES_PER_UID)


class ImapClientLike(Protocol):
    """The part of :class:`imapclient.IMAPClient` the connector uses (the factory seam's type)."""

    def capabilities(self) -> tuple[bytes, ...]: ...
    def login(self, username: str, password: str) -> Any: ...
    def plain_login(self, identity: str, password: str) -> Any: ...
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


# -- error kinds ----------------------------------------------------------------------------------


class _Unreachable(TransientError):
    """Connecting or logging in failed for now: after the retries this ends the account, not a folder."""


class _Refused(ProtocolError):
    """Connecting or logging in cannot work as configured; ends the account without retries.

    ``server_wide`` marks faults of the server settings (host, port, TLS mode, certificate):
    every other account of the source would fail the same way, so they are not tried.
    """

    def __init__(self, message: str, server_wide: bool = False) -> None:
        super().__init__(message)
        self.server_wide = server_wide


class _FolderGone(ConnectorError):
    """The folder no longer exists (deleted or renamed by its user during the sync)."""


def _text(exc: BaseException) -> str:
    """The human part of an exception: ``Connection refused``, not ``111`` (an OSError's first arg)."""
    if isinstance(exc, OSError):
        if isinstance(exc.strerror, str) and exc.strerror:
            return exc.strerror
        return str(exc) or exc.__class__.__name__
    arg = exc.args[0] if exc.args else exc
    if isinstance(arg, bytes):
        return arg.decode("utf-8", "replace")
    return str(arg) or exc.__class__.__name__


def _clean_refusal(exc: BaseException) -> bool:
    """A tagged NO or BAD: the reply was read to its end, the connection can carry on."""
    if isinstance(exc, InvalidCriteriaError):
        return True
    if isinstance(exc, imaplib.IMAP4.abort) or not isinstance(exc, imaplib.IMAP4.error):
        return False
    return _CLEAN_REFUSAL.match(str(exc)) is not None


def _raised_in(exc: BaseException, function: str) -> bool:
    """Whether ``function`` is on the traceback of ``exc`` (which step of a connect timed out)."""
    return any(frame.name == function for frame in traceback.extract_tb(exc.__traceback__))


def _translate(exc: BaseException, what: str) -> ConnectorError:
    """Map an exception of a command on a logged-in connection; ``what`` names account and folder."""
    if isinstance(exc, ConnectorError):
        return exc
    if isinstance(exc, (imaplib.IMAP4.abort, OSError, EOFError)):
        # abort covers BYE and dropped connections; OSError covers resets and timeouts.
        return TransientError(f"Connection problem for {what}: {_text(exc)}")
    if isinstance(exc, imaplib.IMAP4.error):
        if _clean_refusal(exc):
            return ProtocolError(f"The server refused a command for {what}: {_text(exc)}")
        return ProtocolError(
            f"The reply of the server could not be read for {what} ({_text(exc)}); the connection was reset."
        )
    return ProtocolError(f"Unexpected {exc.__class__.__name__} from the IMAP client for {what}: {_text(exc)[:200]}")


def _connect_error(exc: BaseException, server: ImapServer, what: str) -> ConnectorError:
    """Map a failure to connect (TCP, TLS, greeting, STARTTLS), with what to check when it is a setting."""
    at = f"{server.host}:{server.port}"
    if isinstance(exc, _Unreachable | _Refused):
        return exc
    if isinstance(exc, TransientError):
        return _Unreachable(str(exc), exc.retry_after)
    if isinstance(exc, ConnectorError):
        return _Refused(str(exc), server_wide=True)
    if isinstance(exc, socket.gaierror):
        if exc.errno in _UNKNOWN_HOST:
            if "://" in server.host:
                hint = " Give only the host name, not a URL."
            elif ":" in server.host:
                hint = " Put the port in port:, not in host:."
            else:
                hint = ""
            return _Refused(
                f"Cannot connect for {what}: the host name {server.host!r} was not found ({_text(exc)}). "
                f"Check host in the source's config.{hint}",
                server_wide=True,
            )
        return _Unreachable(f"Connection problem for {what}: the host name could not be looked up ({_text(exc)})")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return _Refused(
            f"TLS certificate of the server rejected for {what}: {exc.verify_message}. "
            "Set ca_file to the server's CA, or fix the host name.",
            server_wide=True,
        )
    if isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError | ssl.SSLSyscallError):
        return _Unreachable(f"Connection problem for {what}: the connection closed during the TLS handshake")
    if isinstance(exc, ssl.SSLError):
        if server.tls == "implicit":
            hint = f"The server does not speak TLS on port {server.port}: use tls: starttls (usually port 143)."
        else:
            hint = "Check tls and port in the source's config."
        return _Refused(f"TLS handshake with {at} failed for {what} ({_text(exc)}). {hint}", server_wide=True)
    if isinstance(exc, UnicodeError):
        # socket's IDNA encoding refuses empty labels ("mail..example.com") and labels over 63 characters.
        return _Refused(
            f"Cannot connect for {what}: {server.host!r} is not a valid host name "
            "(an empty part between dots, or a part over 63 characters). Check host in the source's config.",
            server_wide=True,
        )
    if isinstance(exc, TimeoutError) and server.tls != "implicit" and not _raised_in(exc, "create_connection"):
        return _Refused(
            f"Connected to {at} for {what}, but the server sent no IMAP greeting within {server.timeout_s:g} s. "
            "If this port expects TLS from the start (usually 993), use tls: implicit.",
            server_wide=True,
        )
    if isinstance(exc, imaplib.IMAP4.error | OSError | EOFError):
        # refused, reset, unreachable, a connect timeout; a greeting other than OK (too many connections).
        return _Unreachable(f"Connection problem for {what}: {_text(exc)}")
    return _Refused(f"Cannot connect for {what}: unexpected {exc.__class__.__name__} at {where_raised(exc)}.")


def _login_error(exc: BaseException, what: str) -> ConnectorError:
    """Map a failure to log in.  Messages of unknown errors are withheld: they may quote the secret."""
    if isinstance(exc, LoginError):
        return AuthError(f"Login refused for {what}: {_text(exc)}. Check the username and credentials.")
    if isinstance(exc, AuthError | _Refused | _Unreachable):
        return exc
    if isinstance(exc, TransientError):
        return _Unreachable(str(exc), exc.retry_after)
    if isinstance(exc, ConnectorError):
        return _Refused(str(exc))
    if isinstance(exc, imaplib.IMAP4.abort | OSError | EOFError):
        return _Unreachable(f"Connection problem for {what} while logging in: {_text(exc)}")
    return _Refused(
        f"Login failed for {what}: unexpected {exc.__class__.__name__} at {where_raised(exc)} "
        "(its text is not shown: it may contain the password)."
    )


# -- state ----------------------------------------------------------------------------------------


@dataclass(slots=True)
class _FolderState:
    """The position within one folder; what the next checkpoint will say."""

    uidvalidity: int | None = None
    last_uid: int = 0
    highestmodseq: int | None = None
    oversize: set[int] = field(default_factory=set)
    unreadable: set[int] = field(default_factory=set)
    events: list[SourceEvent] = field(default_factory=list)

    def restart(self) -> None:
        """Forget every UID: they no longer name the messages they named."""
        self.last_uid = 0
        self.oversize.clear()
        self.unreadable.clear()

    def settle(self, uid: int) -> None:
        """``uid`` was archived, or is gone from the server: no earlier run's failure is owed for it."""
        self.oversize.discard(uid)
        self.unreadable.discard(uid)

    def dump(self) -> str:
        data: dict[str, Any] = {"uidvalidity": self.uidvalidity, "last_uid": self.last_uid}
        if self.highestmodseq is not None:
            data["highestmodseq"] = self.highestmodseq
        if self.oversize:
            data["oversize"] = sorted(self.oversize)
        if self.unreadable:
            data["unreadable"] = sorted(self.unreadable)
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
                unreadable={int(u) for u in data.get("unreadable", [])},
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            log.warning("unreadable IMAP checkpoint for %s; reading the folder from the start", where)
            return cls()


@dataclass(slots=True)
class _Pass:
    """One pass over one folder: where it is, and what the next batch must carry."""

    user: str
    folder: str
    key: str
    uidvalidity: int
    failures: list[SourceFailure] = field(default_factory=list)
    #: new UIDs found gone when asked for (another client expunged them meanwhile).
    expunged: list[int] = field(default_factory=list)
    unreadable_in_a_row: int = 0
    gave_up: bool = False


@dataclass(slots=True)
class _Fetched:
    """What an isolating FETCH got: replies, UIDs that failed alone, and the ones never decided."""

    data: dict[int, dict[bytes, Any]] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)
    #: a suffix of the UIDs asked for, left when the folder was given up.
    undecided: list[int] = field(default_factory=list)


# -- the connector --------------------------------------------------------------------------------


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
        """Yield batches for every account in turn; one account's failure does not stop the next.

        A fault of the server settings (unknown host, wrong TLS mode, untrusted certificate)
        is the same for every account: the later accounts are reported without a connection
        attempt each, which could otherwise cost a timeout per account.
        """
        server_fault: str | None = None
        for account in self.accounts:
            user = account.username
            if server_fault is not None:
                yield self._account_failure(user, f"Account {user!r} not tried: {server_fault}", permanent=True)
                continue
            session = _Session(self, account)
            try:
                yield from self._sync_account(session, checkpoints)
            except ConnectorError as exc:
                log.warning("IMAP account failed: %s", exc)
                if isinstance(exc, _Refused) and exc.server_wide:
                    server_fault = str(exc)
                yield self._account_failure(user, str(exc), permanent=not isinstance(exc, TransientError))
            except Exception as exc:
                # A bug, or a fault no branch above knows.  Its text may quote a secret (imaplib's
                # UnicodeEncodeError quoted a password character): the type and place only.
                where = where_raised(exc)
                log.error("unexpected %s for IMAP account %s at %s", exc.__class__.__name__, user, where)
                reason = (
                    f"Unexpected {exc.__class__.__name__} for account {user!r} on {self.server.host} at {where}; "
                    "this is a bug, please report it. The other accounts were still synced."
                )
                yield self._account_failure(user, reason, permanent=True)
            finally:
                session.close()

    def wanted(self, folder: str) -> bool:
        """Folder filter: included by a pattern and not excluded by one (exclude wins)."""
        return folder_selected(folder, self.include, self.exclude)

    # -- internals --------------------------------------------------------------------------------

    def _account_failure(self, user: str, reason: str, permanent: bool) -> Batch:
        location = f"imap://{quote(user, safe='')}@{self.server.host}"
        failure = SourceFailure(location=location, reason=reason, permanent=permanent, whole=True)
        return Batch(failures=[failure], account=user)

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
        folders: list[str] = self._retrying(session, session.folders)
        missed = unmatched_patterns(folders, self.include)
        if missed:
            log.warning("IMAP account %s: folder patterns that match no folder: %s", user, ", ".join(missed))
            detail = {"source": self.name, "account": user, "patterns": json.dumps(missed, ensure_ascii=False)}
            yield Batch(events=[SourceEvent(kind="include_matched_nothing", detail=detail)], account=user)
        for folder in folders:
            if not self.wanted(folder):
                continue
            key = self.checkpoint_key(user, folder)
            state = _FolderState.load(checkpoints.get(key), f"{user}/{folder}")
            try:
                yield from self._sync_folder(session, folder, state)
            except _FolderGone:
                log.info("IMAP folder %s/%s disappeared during the sync; skipped", user, folder)
                gone = SourceEvent(
                    kind="folder_vanished", detail={"source": self.name, "account": user, "folder": folder}
                )
                yield Batch(events=[*state.events, gone], account=user, folder=folder)
            except (_Unreachable, _Refused):
                raise  # the server or the login, not this folder: the account's other folders would fail too
            except (ProtocolError, TransientError) as exc:
                # Login, LIST and EXAMINE worked, so the fault is this folder's: fail it, go on.
                log.warning("IMAP folder failed: %s", exc)
                failure = SourceFailure(
                    location=self._folder_url(user, folder), reason=str(exc), permanent=isinstance(exc, ProtocolError)
                )
                yield Batch(failures=[failure], events=list(state.events), account=user, folder=folder)

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

    def _event(self, state: _FolderState, kind: str, user: str, folder: str, **detail: str) -> None:
        state.events.append(
            SourceEvent(kind=kind, detail={"source": self.name, "account": user, "folder": folder, **detail})
        )

    def _folder_pass(self, session: _Session, folder: str, state: _FolderState) -> Iterator[Batch]:
        user = session.account.username
        info = session.examine(folder)
        uidvalidity = int(info[b"UIDVALIDITY"])
        uidnext = int(info[b"UIDNEXT"]) if b"UIDNEXT" in info else None
        exists = int(info.get(b"EXISTS", 0))
        modseq = info.get(b"HIGHESTMODSEQ")
        if state.uidvalidity is not None and state.uidvalidity != uidvalidity:
            self._event(
                state, "uidvalidity_changed", user, folder,
                old_uidvalidity=str(state.uidvalidity), new_uidvalidity=str(uidvalidity),
            )  # fmt: skip
            log.warning(
                "UIDVALIDITY of %s/%s changed from %s to %s: reading the folder again",
                user, folder, state.uidvalidity, uidvalidity,
            )  # fmt: skip
            state.restart()
        elif state.uidvalidity is not None and uidnext is not None and uidnext - 1 < state.last_uid:
            # UIDs never go down under one UIDVALIDITY; this server does (restored from a backup):
            # the UIDs above UIDNEXT it will hand out again were already passed.  Read it again.
            self._event(
                state, "uidnext_went_back", user, folder,
                uidvalidity=str(uidvalidity), old_last_uid=str(state.last_uid), new_uidnext=str(uidnext),
            )  # fmt: skip
            log.warning(
                "UIDNEXT of %s/%s went back to %s although UIDs up to %s were already read "
                "(a server restored from a backup?): reading the folder again",
                user, folder, uidnext, state.last_uid,
            )  # fmt: skip
            state.restart()
        state.uidvalidity = uidvalidity
        if modseq is not None:
            state.highestmodseq = int(modseq)

        unchanged = uidnext is not None and uidnext - 1 <= state.last_uid
        if unchanged and not state.oversize and not state.unreadable and not state.events:
            return
        p = _Pass(user=user, folder=folder, key=self.checkpoint_key(user, folder), uidvalidity=uidvalidity)
        # What earlier runs could not archive is tried after the new mail: were it first, a run of
        # unreadable messages there would end every pass before any new mail was read.
        known = state.oversize | state.unreadable
        if not unchanged:
            yield from self._new_mail(session, p, state, uidnext, exists, known)
            if not p.gave_up and uidnext is not None:
                # Complete up to UIDNEXT-1 as seen at EXAMINE: no later mail can get a lower UID.
                state.last_uid = max(state.last_uid, uidnext - 1)
        retry = sorted(known)
        if retry and not p.gave_up:
            yield from self._read(session, p, state, retry, new=False)
        if p.gave_up:
            self._not_retried(p, state, retry)
            p.failures.append(
                SourceFailure(
                    location=self._folder_url(user, folder),
                    reason=(
                        f"account {user!r}, folder {folder!r}: given up for this run after {_GIVE_UP_AFTER} "
                        "messages in a row that the server could not deliver; the next run goes on from here"
                    ),
                )
            )
        yield self._take(Batch(account=user, folder=folder), p, state)

    def _new_mail(
        self, session: _Session, p: _Pass, state: _FolderState, uidnext: int | None, exists: int, known: set[int]
    ) -> Iterator[Batch]:
        """List and read the UIDs above ``last_uid`` window by window (see :func:`search_window`).

        No range of UIDs holds more messages than EXISTS minus those already found below it,
        so the rest of the folder is listed in one search as soon as that bound fits a window
        (at once for most folders).
        """
        first = state.last_uid + 1
        if uidnext is None:  # not RFC 3501, but then the folder's end is unknown: one search
            session.ensure(p.folder, p.uidvalidity)
            found = [u for u in session.search_range(first, None, p.folder) if u >= first and u not in known]
            yield from self._read(session, p, state, found, new=True)
            return
        width = search_window()
        seen = 0
        low = first
        while low <= uidnext - 1:
            high = uidnext - 1 if exists - seen <= width else min(low + width - 1, uidnext - 1)
            session.ensure(p.folder, p.uidvalidity)  # a failed FETCH of the last window may have dropped it
            listed = sorted(u for u in session.search_range(low, high, p.folder) if low <= u <= high)
            seen += len(listed)
            yield from self._read(session, p, state, [u for u in listed if u not in known], new=True)
            if p.gave_up:
                return
            # Everything up to ``high`` is archived, expunged, or listed as over-size or unreadable.
            state.last_uid = max(state.last_uid, high)
            low = high + 1

    def _read(self, session: _Session, p: _Pass, state: _FolderState, uids: list[int], new: bool) -> Iterator[Batch]:
        """Size, then fetch, ``uids`` in batches; over-size and unreadable ones are recorded and reported."""
        for start in range(0, len(uids), _META_CHUNK):
            chunk = uids[start : start + _META_CHUNK]
            got = self._fetch_isolating(session, p, chunk, ["RFC822.SIZE"])
            decided = chunk[: len(chunk) - len(got.undecided)]
            missing = [u for u in decided if u not in got.data and u not in got.failed]
            if missing:
                got.data.update(self._resolve_absent(session, p, state, missing, ["RFC822.SIZE"], b"RFC822.SIZE", new))
            pending: list[int] = []
            pending_bytes = 0
            for uid in decided:
                if uid in got.failed:
                    self._unreadable(p, state, uid, got.failed[uid])
                    continue
                if uid not in got.data:
                    continue  # expunged, or recorded as unreadable by _resolve_absent
                size = int(got.data[uid].get(b"RFC822.SIZE", 0))
                if size > self.max_message_bytes:
                    self._oversize(p, state, uid, size)
                    continue
                if pending and (len(pending) >= self.batch_size or pending_bytes + size > self.batch_max_bytes):
                    yield self._fetch_batch(session, p, state, pending, new)
                    if p.gave_up:
                        return
                    pending, pending_bytes = [], 0
                pending.append(uid)
                pending_bytes += size
            if pending:
                yield self._fetch_batch(session, p, state, pending, new)
            if p.gave_up:
                return

    def _fetch_batch(self, session: _Session, p: _Pass, state: _FolderState, uids: list[int], new: bool) -> Batch:
        items = ["BODY.PEEK[]", "INTERNALDATE", "FLAGS"]
        got = self._fetch_isolating(session, p, uids, items)
        decided = uids[: len(uids) - len(got.undecided)]
        absent: list[int] = []
        messages: list[RawMessage] = []
        for uid in decided:
            if uid in got.failed:
                self._unreadable(p, state, uid, got.failed[uid])
            elif isinstance((got.data.get(uid) or {}).get(b"BODY[]"), bytes):
                messages.append(self._message(p, uid, got.data[uid]))
            else:
                absent.append(uid)  # left out of the reply, or BODY[] NIL (Dovecot's answer for an expunged one)
        if absent:
            again = self._resolve_absent(session, p, state, absent, items, b"BODY[]", new)
            messages.extend(self._message(p, uid, item) for uid, item in sorted(again.items()))
        for m in messages:
            state.settle(int(m.origin.uid))
        if decided and new:
            state.last_uid = max(state.last_uid, max(decided))
        return self._take(Batch(messages=messages, account=p.user, folder=p.folder), p, state)

    def _message(self, p: _Pass, uid: int, item: dict[bytes, Any]) -> RawMessage:
        flags = tuple(
            f.decode("utf-8", "replace") if isinstance(f, bytes) else str(f)
            for f in item.get(b"FLAGS", ())
            if f not in (b"\\Recent", "\\Recent")  # a session flag, not a property of the message
        )
        return RawMessage(
            data=item[b"BODY[]"],
            origin=Origin(
                source=self.name,
                account=p.user,
                folder=p.folder,
                uid=str(uid),
                uidvalidity=str(p.uidvalidity),
                internaldate=_plain_datetime(item.get(b"INTERNALDATE")),
                flags=flags,
                location=self._folder_url(p.user, p.folder, p.uidvalidity, uid),
            ),
        )

    def _fetch_isolating(self, session: _Session, p: _Pass, uids: list[int], items: list[str]) -> _Fetched:
        """FETCH ``items`` of ``uids``; when that fails, halve the set until each failing UID stands alone.

        A UID that fails alone is tried once more (on a fresh connection when the server
        dropped it) before it counts as unreadable.  Failing to reconnect or log in is not
        the messages' fault and propagates (the folder pass retries with back-off).  The
        halves are tried in order, so when the folder is given up the UIDs not yet decided
        are a suffix of ``uids``.
        """
        got = _Fetched()

        def attempt(part: list[int]) -> str | None:
            session.ensure(p.folder, p.uidvalidity)
            reply = session.try_fetch(part, items)
            if isinstance(reply, str):
                return reply
            got.data.update(reply)
            p.unreadable_in_a_row = 0
            return None

        def isolate(part: list[int]) -> None:
            if p.gave_up:
                got.undecided.extend(part)
                return
            error = attempt(part)
            if error is None:
                return
            if len(part) > 1:
                log.info("IMAP FETCH of %d UIDs in %s/%s failed (%s): splitting", len(part), p.user, p.folder, error)
                middle = len(part) // 2
                isolate(part[:middle])
                isolate(part[middle:])
                return
            error = attempt(part)
            if error is not None:
                got.failed[part[0]] = error
                self._count_unreadable(p)

        isolate(list(uids))
        return got

    def _resolve_absent(
        self,
        session: _Session,
        p: _Pass,
        state: _FolderState,
        uids: list[int],
        items: list[str],
        wanted: bytes,
        new: bool,
    ) -> dict[int, dict[bytes, Any]]:
        """UIDs a reply left out or answered without ``wanted``: expunged meanwhile, or asked for again.

        Gone is not a failure (another client deleted the message; the journal gets an
        ``expunged_during_sync`` event for new mail).  Still there, each is asked for once
        more alone; nothing again makes it unreadable: recorded, reported, tried next run.
        """
        session.ensure(p.folder, p.uidvalidity)
        present = set(session.search_uids(uids, p.folder))
        found: dict[int, dict[bytes, Any]] = {}
        for uid in uids:
            if uid not in present:
                state.settle(uid)
                if new:
                    p.expunged.append(uid)
                else:
                    log.info("IMAP %s/%s UID %d is gone from the server", p.user, p.folder, uid)
                continue
            session.ensure(p.folder, p.uidvalidity)
            reply = session.try_fetch([uid], items)
            item = reply.get(uid) if isinstance(reply, dict) else None
            value = item.get(wanted) if item is not None else None
            if item is not None and (isinstance(value, bytes) if wanted == b"BODY[]" else value is not None):
                found[uid] = item
                p.unreadable_in_a_row = 0
                continue
            what = "message" if wanted == b"BODY[]" else "size"
            self._unreadable(p, state, uid, reply if isinstance(reply, str) else f"the server returned no {what}")
            self._count_unreadable(p)
        return found

    def _count_unreadable(self, p: _Pass) -> None:
        p.unreadable_in_a_row += 1
        if p.unreadable_in_a_row >= _GIVE_UP_AFTER:
            p.gave_up = True

    def _uid_failure(self, p: _Pass, uid: int, problem: str) -> None:
        """Report one message of the folder as not archived; ``problem`` says why and what becomes of it."""
        p.failures.append(
            SourceFailure(
                location=self._folder_url(p.user, p.folder, p.uidvalidity, uid),
                reason=f"account {p.user!r}, folder {p.folder!r}, UID {uid}: {problem}",
            )
        )

    def _oversize(self, p: _Pass, state: _FolderState, uid: int, size: int) -> None:
        state.oversize.add(uid)
        state.unreadable.discard(uid)
        self._uid_failure(
            p,
            uid,
            f"message of {size} bytes is over the limit of {self.max_message_bytes} bytes (max_message_mb) "
            "and was not archived; raise the limit to archive it",
        )

    def _unreadable(self, p: _Pass, state: _FolderState, uid: int, why: str) -> None:
        state.unreadable.add(uid)
        state.oversize.discard(uid)
        log.warning("IMAP %s/%s UID %d could not be read: %s", p.user, p.folder, uid, why)
        self._uid_failure(p, uid, f"the server did not deliver this message ({why}); it is tried again on every run")

    def _not_retried(self, p: _Pass, state: _FolderState, retry: list[int]) -> None:
        """Report what earlier runs could not archive when this run gave up before trying it again."""
        for uid in retry:
            if uid in state.oversize:
                why = "over the size limit (max_message_mb) on an earlier run"
            elif uid in state.unreadable:
                why = "not delivered by the server on an earlier run"
            else:
                continue
            self._uid_failure(p, uid, f"{why}; not archived, not retried this run")

    def _take(self, batch: Batch, p: _Pass, state: _FolderState) -> Batch:
        """Attach pending failures, events and the checkpoint of ``state`` to ``batch``."""
        if p.expunged:
            self._event(
                state, "expunged_during_sync", p.user, p.folder,
                uidvalidity=str(p.uidvalidity), uids=" ".join(map(str, sorted(p.expunged))),
            )  # fmt: skip
            p.expunged.clear()
        batch.failures.extend(p.failures)
        p.failures.clear()
        batch.events.extend(state.events)
        state.events.clear()
        batch.checkpoints.append(Checkpoint(key=p.key, value=state.dump()))
        return batch


class _Session:
    """One logged-in connection for one account, opened lazily and dropped on faults."""

    def __init__(self, connector: ImapConnector, account: ImapAccount) -> None:
        self.connector = connector
        self.account = account
        self._client: ImapClientLike | None = None
        #: the folder EXAMINEd on this connection (None after a drop or a failed EXAMINE).
        self._selected: str | None = None

    def _what(self, folder: str | None = None) -> str:
        server = self.connector.server
        where = f"account {self.account.username!r} on {server.host}:{server.port}"
        return f"{where}, folder {folder!r}" if folder else where

    def client(self) -> ImapClientLike:
        if self._client is None:
            try:
                client = self.connector.client_factory(self.connector.server)
            except Exception as exc:
                raise _connect_error(exc, self.connector.server, self._what()) from None
            try:
                self._login(client)
            except Exception as exc:
                _shutdown(client)
                raise _login_error(exc, self._what()) from None
            self._client = client
            self._selected = None
        return self._client

    def _login(self, client: ImapClientLike) -> None:
        """LOGIN, or AUTHENTICATE PLAIN for a non-ASCII username or password (LOGIN is ASCII-only in imaplib)."""
        user = self.account.username
        if self.account.oauth2_token is not None:
            client.oauth2_login(user, self.account.oauth2_token())
            return
        assert self.account.password is not None
        password = self.account.password()
        if user.isascii() and password.isascii():
            client.login(user, password)
        elif b"AUTH=PLAIN" in {c.upper() for c in client.capabilities()}:
            client.plain_login(user, password)  # SASL PLAIN carries UTF-8 (RFC 4616)
        else:
            raise AuthError(
                f"Cannot log in {self._what()}: the username or password has non-ASCII characters, which "
                "IMAP LOGIN cannot carry, and the server does not offer AUTHENTICATE PLAIN. "
                "Use an ASCII password (or an app password) for this account."
            )

    def call(self, fn: Callable[[ImapClientLike], Any], folder: str | None = None) -> Any:
        """Run one command; any failure but a clean NO/BAD drops the connection (it may be out of step)."""
        client = self.client()
        try:
            return fn(client)
        except Exception as exc:
            if not _clean_refusal(exc):
                self.drop()
            raise _translate(exc, self._what(folder)) from None

    def try_fetch(self, uids: list[int], items: list[str]) -> dict[int, dict[bytes, Any]] | str:
        """The FETCH reply, or the reason it failed (the connection dropped unless it was a clean NO/BAD)."""
        client = self.client()
        try:
            data: dict[int, dict[bytes, Any]] = client.fetch(uids, items)
        except Exception as exc:
            if not _clean_refusal(exc):
                self.drop()
            return _text(exc)
        return data

    def folders(self) -> list[str]:
        """Selectable folder names (decoded from modified UTF-7 by imapclient), INBOX first, then by name.

        A fixed order makes runs, logs and failures comparable (Dovecot lists in directory order).
        """
        listed = self.call(lambda c: c.list_folders())
        names: list[str] = []
        for flags, _delim, name in listed:
            lowered = {(f if isinstance(f, bytes) else str(f).encode()).lower() for f in flags}
            if b"\\noselect" in lowered or b"\\nonexistent" in lowered:
                continue
            names.append(_folder_name(name))
        return sorted(names, key=lambda n: (n.upper() != "INBOX", n))

    def examine(self, folder: str) -> dict[bytes, Any]:
        self._selected = None
        try:
            info: dict[bytes, Any] = self.call(lambda c: c.select_folder(folder, readonly=True), folder)
        except ProtocolError:
            # Dovecot answers a plain NO (imaplib drops the [NONEXISTENT] code): ask LIST whether it is still there.
            if self._client is not None and not self._listed(folder):
                raise _FolderGone(f"{self._what(folder)}: the folder no longer exists") from None
            raise
        if b"UIDVALIDITY" not in info:
            raise ProtocolError(f"The server gave no UIDVALIDITY for {self._what(folder)}.")
        self._selected = folder
        return info

    def _listed(self, folder: str) -> bool:
        try:
            listed = self.call(lambda c: c.list_folders("", folder), folder)
        except ConnectorError:
            return True  # unknown: report the EXAMINE failure as it is
        return any(_folder_name(name) == folder for _flags, _delim, name in listed)

    def ensure(self, folder: str, uidvalidity: int) -> None:
        """Connected, logged in and ``folder`` EXAMINEd, after a drop too; its UIDVALIDITY unchanged."""
        if self._client is not None and self._selected == folder:
            return
        info = self.examine(folder)
        if int(info[b"UIDVALIDITY"]) != uidvalidity:
            # A new pass compares it with the checkpoint and reads the folder again.
            raise TransientError(f"The UIDVALIDITY of {self._what(folder)} changed during the sync.")

    def search_range(self, low: int, high: int | None, folder: str) -> list[int]:
        """UIDs from ``low`` to ``high`` (``*`` when None) by UID SEARCH; never FETCH 1:*, which imapclient 4.1 mishandles."""
        upper = "*" if high is None else str(high)
        found: list[int] = self.call(lambda c: c.search(["UID", f"{low}:{upper}"]), folder)
        return [int(u) for u in found]

    def search_uids(self, uids: list[int], folder: str) -> list[int]:
        """Which of ``uids`` exist now."""
        found: list[int] = self.call(lambda c: c.search(["UID", ",".join(map(str, uids))]), folder)
        return [int(u) for u in found]

    def drop(self) -> None:
        """Forget a connection that failed; the next call reconnects."""
        if self._client is not None:
            _shutdown(self._client)
            self._client = None
        self._selected = None

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.logout()
            except Exception:
                _shutdown(self._client)
            self._client = None
        self._selected = None


def _folder_name(name: Any) -> str:
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)


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
