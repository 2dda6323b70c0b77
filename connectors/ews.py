"""Exchange Web Services connector (Exchange Server on-premises), through exchangelib.

One exchangelib :class:`~exchangelib.Account` per configured mailbox, reached
by impersonation (one service account with the ApplicationImpersonation role,
or an app with ``full_access_as_app``) or delegate access, at a configured EWS
URL or one found by autodiscover.  Authentication is NTLM or basic for
on-premises servers, or an OAuth access token obtained by msal
(:mod:`connectors.msauth`) and handed to exchangelib.

Sync, per mail folder (all folders under the message folder root, which holds
Inbox, Sent Items, Deleted Items and the user's own folders, and the online
archive's when the server offers one), uses SyncFolderItems.  exchangelib's
``Folder.sync_items`` generator sets the new sync state only once fully
consumed and loops internally until the folder is caught up, so a long first
sync would only become resumable at its very end.  The connector therefore
calls exchangelib's ``SyncFolderItems`` service one bounded request at a time
(``max_changes_returned = batch_size``): every request gives
:class:`~connectors.base.Batch` objects, the last of which carries the sync
state the server returned with it as its checkpoint, and the loop continues
while the server says ``IncludesLastItemInRange`` is false.  The MIME content of
new items (and their received time) is fetched with GetItem in chunks and
archived byte-exact; a request's items are cut into batches once they hold
``max_batch_bytes``.

An item whose MIME content the server cannot give (``ErrorMimeContentConversionFailed``,
``ErrorCorruptData``, or an error such as ``ErrorInternalServerError`` that
exchangelib raises for the whole GetItem request, which is then asked again
item by item to find the bad one) is reported, kept in the folder's retry list
(:mod:`connectors.exchange_items`) and tried again every run, while the folder
moves on.  Journal reports are unwrapped only in the configured journaling
mailboxes (:mod:`connectors.journal_report`).

Delete events in the sync never delete anything from the archive.  Throttling
(``ErrorServerBusy`` with ``BackOffMilliseconds``, HTTP 503/429 with
``Retry-After``) is honoured by exchangelib's :class:`~exchangelib.FaultTolerance`
policy up to ``max_wait`` seconds; a 401 fails at once with a clear message
instead of being retried as throttling.  Any other error, expected or not, is
reported as a :class:`~connectors.base.SourceFailure` naming the mailbox and
folder, and the other folders and mailboxes carry on.  An online archive the
account may not open is such a failure too, not a silent skip.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC as UTC_TZ
from datetime import datetime
from typing import Any, Literal

import requests
from exchangelib import (
    BASIC,
    DELEGATE,
    IMPERSONATION,
    NTLM,
    OAUTH2,
    UTC,
    Account,
    Configuration,
    Credentials,
    FaultTolerance,
    OAuth2AuthorizationCodeCredentials,
)
from exchangelib import errors as ews_errors
from exchangelib.folders import Folder
from exchangelib.services import SyncFolderItems

from connectors.base import Batch, Checkpoint, Origin, RawMessage, SourceEvent, SourceFailure, folder_selected
from connectors.errors import AuthError, ConnectorError, ProtocolError, TransientError
from connectors.exchange_items import DEFAULT_MAX_BATCH_BYTES, BatchCutter, RetryList, folder_segment
from connectors.journal_report import journal_copy
from connectors.msauth import TokenProvider

log = logging.getLogger(__name__)

#: OAuth scope of EWS in Exchange Online; an on-premises server with hybrid modern auth has its own.
EWS_ONLINE_SCOPE = "https://outlook.office365.com/.default"

ARCHIVE_PREFIX = "Online Archive"

#: errors that mean "this mailbox is not yours to read": permanent, and for the mailbox as a whole.
_MAILBOX_DENIED = (
    ews_errors.UnauthorizedError,
    ews_errors.ErrorAccessDenied,
    ews_errors.ErrorImpersonateUserDenied,
    ews_errors.ErrorImpersonationFailed,
    ews_errors.ErrorNonExistentMailbox,
)
#: errors worth retrying on the next run.
_TRANSIENT = (
    ews_errors.RateLimitError,
    ews_errors.ErrorServerBusy,
    ews_errors.ErrorTimeoutExpired,
    ews_errors.ErrorInternalServerTransientError,
    ews_errors.ErrorMailboxStoreUnavailable,
    ews_errors.ErrorTooManyObjectsOpened,
    requests.RequestException,
)
#: what a mailbox without an online archive answers; ErrorAccessDenied is *not* one of them:
#: an archive the account may not open is reported, or its mail would be missing without a sign.
_ARCHIVE_MISSING = (
    ews_errors.ErrorFolderNotFound,
    ews_errors.ErrorInvalidOperation,
    ews_errors.ErrorItemNotFound,
)
#: the item fields fetched with GetItem: the exact MIME bytes, and when the item arrived
#: (retention rules counted from receipt need it; the Date header is the sender's claim).
_ITEM_FIELDS = ["mime_content", "datetime_received"]


@dataclass(frozen=True, slots=True)
class EwsSettings:
    """What the EWS connector needs, already validated and with secrets resolved elsewhere."""

    name: str
    mailboxes: tuple[str, ...]
    #: the EWS URL; None = autodiscover per mailbox.
    endpoint: str | None = None
    auth: Literal["ntlm", "basic", "oauth"] = "ntlm"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    access_type: Literal["impersonation", "delegate"] = "impersonation"
    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()
    include_archive: bool = True
    #: changes per SyncFolderItems request = messages per batch (EWS allows 512).
    batch_size: int = 100
    #: items per GetItem request.
    fetch_chunk: int = 25
    #: the longest server-requested back-off (seconds) to sit out before giving up on a request.
    max_wait: float = 600.0
    timeout: float = 120.0
    #: mailboxes that receive journal reports: only there are reports unwrapped (also synced).
    journal_mailboxes: tuple[str, ...] = ()
    #: when given, only reports sent from these addresses are unwrapped.
    journal_senders: tuple[str, ...] = ()
    #: a batch is cut once its messages hold this many bytes.
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES

    @property
    def all_mailboxes(self) -> tuple[str, ...]:
        """``mailboxes`` and then the journaling mailboxes not among them."""
        seen = {m.lower() for m in self.mailboxes}
        extra = tuple(m for m in self.journal_mailboxes if m.lower() not in seen)
        return self.mailboxes + tuple(dict.fromkeys(extra))


class _RetryPolicy(FaultTolerance):  # type: ignore[misc]
    """exchangelib's fault-tolerant policy, but a refused login is final and HTTP 429 is throttling.

    FaultTolerance treats HTTP 401 as throttling (EWS sometimes does that under
    load) and would retry a wrong password for up to ``max_wait``: a sync of many
    mailboxes would then hang for hours with no message.  Refusing at once gives
    the operator a clear error.  Exchange Online answers 429 with Retry-After.
    """

    def raise_response_errors(self, response: requests.Response) -> None:
        if response.status_code == 401:
            raise ews_errors.UnauthorizedError(f"Invalid credentials for {response.url}")
        if response.status_code == 429:
            raw = response.headers.get("Retry-After", "")
            back_off = float(raw) if raw.strip().isdigit() else None
            raise ews_errors.ErrorServerBusy("HTTP 429 Too Many Requests", back_off=back_off)
        super().raise_response_errors(response)


class _MsalTokenCredentials(OAuth2AuthorizationCodeCredentials):  # type: ignore[misc]
    """Hands exchangelib an access token from msal and renews it when exchangelib reports it expired.

    exchangelib documents this use: "given only an existing access token, use it
    until it expires ... let the calling application refresh tokens itself by
    subclassing and implementing refresh()".
    """

    def __init__(self, tokens: TokenProvider) -> None:
        self._tokens = tokens
        super().__init__(access_token=self._token_dict())

    def _token_dict(self) -> dict[str, Any]:
        token, expires_at = self._tokens.token_with_expiry()
        return {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": max(0, int(expires_at - time.time())),
            "expires_at": expires_at,
        }

    def refresh(self, session: Any) -> None:
        self._tokens.invalidate()
        self.access_token = self._token_dict()

    def __getstate__(self) -> dict[str, Any]:  # pragma: no cover - exchangelib pickles credentials rarely
        raise TypeError("OAuth credentials backed by msal cannot be pickled")


class EwsConnector:
    """A :class:`~connectors.base.Connector` for mailboxes on an Exchange server through EWS."""

    def __init__(self, settings: EwsSettings, tokens: TokenProvider | None = None) -> None:
        if settings.auth == "oauth" and tokens is None:
            raise ValueError("OAuth needs a TokenProvider")
        if settings.auth != "oauth" and (not settings.username or settings.password is None):
            raise ValueError("NTLM and basic auth need a username and a password")
        self.name = settings.name
        self._s = settings
        self._tokens = tokens
        self._journal = {m.lower() for m in settings.journal_mailboxes}

    # -- the Connector protocol ------------------------------------------------------------------

    def batches(self, checkpoints: Mapping[str, str]) -> Iterator[Batch]:
        """Yield the batches of every SyncFolderItems request of every selected folder of every mailbox."""
        try:
            config = self._configuration()
        except Exception as exc:  # a setup problem fails every mailbox with a sentence, never the whole sync
            err = self._convert(exc)
            for mailbox in self._s.all_mailboxes:
                yield self._failure(mailbox, "", err)
            return
        for mailbox in self._s.all_mailboxes:
            yield from self._mailbox_batches(config, mailbox, checkpoints)

    # -- setup -----------------------------------------------------------------------------------

    def _configuration(self) -> Configuration:
        s = self._s
        policy = _RetryPolicy(max_wait=s.max_wait)
        if s.auth == "oauth":
            assert self._tokens is not None
            creds: Any = _MsalTokenCredentials(self._tokens)
            auth_type = OAUTH2
        else:
            creds = Credentials(username=s.username, password=s.password)
            auth_type = NTLM if s.auth == "ntlm" else BASIC
        if s.endpoint:
            return Configuration(
                service_endpoint=s.endpoint, credentials=creds, auth_type=auth_type, retry_policy=policy
            )
        return Configuration(credentials=creds, auth_type=auth_type, retry_policy=policy)

    def _account(self, config: Configuration, mailbox: str) -> Account:
        account = Account(
            primary_smtp_address=mailbox,
            config=config,
            autodiscover=self._s.endpoint is None,
            access_type=IMPERSONATION if self._s.access_type == "impersonation" else DELEGATE,
            default_timezone=UTC,
        )
        # exchangelib's timeout is a class attribute; set it on this (cached) protocol instance only.
        account.protocol.TIMEOUT = self._s.timeout
        return account

    # -- folders ---------------------------------------------------------------------------------

    def _folders(self, account: Account, mailbox: str) -> tuple[list[tuple[Folder, str]], Batch | None]:
        """Mail folders with display paths (the archive's when it exists); a batch reporting an archive not read."""
        roots: list[tuple[Any, str]] = [(account.msg_folder_root, "")]
        report: Batch | None = None
        if self._s.include_archive:
            try:
                roots.append((account.archive_msg_folder_root, ARCHIVE_PREFIX))
            except _ARCHIVE_MISSING as exc:
                log.debug("no online archive for %s: %s", mailbox, exc)
            except ews_errors.ErrorServerBusy:
                raise
            except ews_errors.EWSError as exc:
                reason = f"{exc.__class__.__name__}: {exc}"
                err: ConnectorError = (
                    TransientError(reason)
                    if isinstance(exc, _TRANSIENT)
                    else AuthError(
                        f"the online archive cannot be opened ({reason}), so its mail is not archived. Give the "
                        "account the same access to the archive as to the mailbox, or set include_archive: false."
                    )
                )
                report = self._failure(mailbox, ARCHIVE_PREFIX, err)
                report.events.append(SourceEvent("archive_unreachable", {"mailbox": mailbox, "reason": reason}))
        out: list[tuple[Folder, str]] = []
        for root, prefix in roots:
            for folder in root.walk():
                if isinstance(folder, Exception):
                    if isinstance(folder, _MAILBOX_DENIED):
                        raise folder
                    continue
                if not _is_mail_folder(folder):
                    continue
                path = _display_path(folder, root, prefix)
                if folder_selected(path, self._s.include, self._s.exclude):
                    out.append((folder, path))
        return out, report

    # -- syncing ---------------------------------------------------------------------------------

    def _mailbox_batches(self, config: Configuration, mailbox: str, checkpoints: Mapping[str, str]) -> Iterator[Batch]:
        try:
            account = self._account(config, mailbox)
            folders, report = self._folders(account, mailbox)
        except Exception as exc:  # every failure of one mailbox is reported; the others continue
            yield self._failure(mailbox, "", self._convert(exc))
            return
        if report is not None:
            yield report
        for folder, path in folders:
            try:
                yield from self._folder_batches(account, mailbox, folder, path, checkpoints)
            except Exception as exc:
                err = self._convert(exc)
                yield self._failure(mailbox, path, err)
                if isinstance(err, AuthError):
                    return  # the mailbox as a whole is refused

    def _sync_page(self, svc: Any, folder: Any, state: str | None) -> list[Any]:
        """One bounded SyncFolderItems request, consumed fully (its sync state is set only then)."""
        return list(
            svc.call(
                folder=folder,
                shape="IdOnly",
                additional_fields=set(),
                sync_state=state,
                ignore=None,
                max_changes_returned=self._s.batch_size,
                sync_scope="NormalItems",
            )
        )

    def _folder_batches(
        self, account: Account, mailbox: str, folder: Folder, path: str, checkpoints: Mapping[str, str]
    ) -> Iterator[Batch]:
        key = f"ews:{self.name}:{mailbox}:{folder.id}"
        retry = RetryList(f"{key}:retry", checkpoints.get(f"{key}:retry"))
        if retry.items:  # items that failed on earlier runs are tried first, on their own
            cut = BatchCutter(mailbox, path, self._s.max_batch_bytes)
            yield from self._fetch(account, folder, [(i, None) for i in retry.items], retry, cut)
            yield cut.finish(retry)
        state: str | None = checkpoints.get(key) or None
        restarted = False
        while True:
            events: list[SourceEvent] = []
            svc = SyncFolderItems(account=account)
            try:
                changes = self._sync_page(svc, folder, state)
            except ews_errors.ErrorInvalidSyncStateData:
                if restarted or state is None:
                    raise
                restarted, state = True, None
                events.append(
                    SourceEvent(
                        "sync_state_invalid",
                        {"source": self.name, "mailbox": mailbox, "folder": path, "action": "full resync"},
                    )
                )
                svc = SyncFolderItems(account=account)
                changes = self._sync_page(svc, folder, None)
            new_state: str | None = svc.sync_state
            more = svc.includes_last_item_in_range is False
            if not new_state:
                raise ProtocolError("SyncFolderItems returned no sync state")
            wanted: list[tuple[str, str | None]] = []
            for change_type, item in changes:
                if change_type not in (SyncFolderItems.CREATE, SyncFolderItems.UPDATE):
                    continue  # deletes and read-flag changes never touch the archive
                if isinstance(item, Exception) or getattr(item, "id", None) is None:
                    continue
                wanted.append((item.id, item.changekey))
            cut = BatchCutter(mailbox, path, self._s.max_batch_bytes)
            cut.current.events.extend(events)
            yield from self._fetch(account, folder, wanted, retry, cut)
            yield cut.finish(retry, Checkpoint(key, new_state))
            if not more or new_state == state:
                return
            state = new_state

    def _fetch(
        self,
        account: Account,
        folder: Folder,
        wanted: list[tuple[str, str | None]],
        retry: RetryList,
        cut: BatchCutter,
    ) -> Iterator[Batch]:
        """Fetch ``wanted`` into ``cut``, yielding each batch that reaches the byte bound.

        The caller finishes the last one (:meth:`BatchCutter.finish`).  A bad item
        becomes a failure and a retry-list entry, never a reason to stop the folder;
        an error about the mailbox or the connection propagates (the folder then
        resumes from its last checkpoint next run).
        """
        where = f"{self.name}:{cut.account}/{cut.folder}"
        for item_id, item in self._items(account, folder, wanted):
            if isinstance(item, ews_errors.ErrorItemNotFound):
                retry.discard(item_id)
                cut.event("message_vanished", item_id)
                continue
            if isinstance(item, Exception):
                reason = f"{item.__class__.__name__}: {item}"
                cut.unfetchable(retry, where, "item", item_id, reason, permanent=not isinstance(item, _TRANSIENT))
                continue
            retry.discard(item_id)
            data = getattr(item, "mime_content", None)
            if not isinstance(data, bytes) or not data:
                cut.event("no_mime_content", item_id)
                continue
            raw = self._raw(data, item_id, _plain_utc(getattr(item, "datetime_received", None)), cut)
            if (full := cut.add(raw)) is not None:
                yield full

    def _items(
        self, account: Account, folder: Folder, wanted: list[tuple[str, str | None]]
    ) -> Iterator[tuple[str, Any]]:
        """``(id, item or the error for it)`` in order, one GetItem request per ``fetch_chunk`` items.

        exchangelib returns some per-item errors (ErrorItemNotFound, conversion
        failures) but raises others (e.g. ErrorInternalServerError) for the whole
        request, which would drop the good items with the bad one; such a chunk,
        and items Exchange stopped processing after an error
        (ErrorBatchProcessingStopped), are asked for again one at a time.
        """
        step = max(1, self._s.fetch_chunk)
        for start in range(0, len(wanted), step):
            chunk = wanted[start : start + step]
            raised = False
            try:
                items: list[Any] = list(
                    account.fetch(ids=chunk, folder=folder, only_fields=_ITEM_FIELDS, chunk_size=len(chunk))
                )
            except Exception as exc:
                if not _item_level(exc):
                    raise
                items, raised = [exc] * len(chunk), True
            for ident, item in zip(chunk, items, strict=True):
                if (raised and len(chunk) > 1) or isinstance(item, ews_errors.ErrorBatchProcessingStopped):
                    item = self._fetch_one(account, folder, ident)
                yield ident[0], item

    def _fetch_one(self, account: Account, folder: Folder, ident: tuple[str, str | None]) -> Any:
        try:
            [item] = list(account.fetch(ids=[ident], folder=folder, only_fields=_ITEM_FIELDS, chunk_size=1))
        except Exception as exc:
            if not _item_level(exc):
                raise
            return exc
        return item

    def _raw(self, data: bytes, item_id: str, received: datetime | None, cut: BatchCutter) -> RawMessage:
        mailbox, path = cut.account, cut.folder
        recipients: tuple[str, ...] = ()
        if mailbox.lower() in self._journal:
            data, recipients, kept = journal_copy(data, self._s.journal_senders)
            if kept:
                cut.event("journal_report_kept", item_id, reason=kept)
        origin = Origin(
            source=self.name,
            account=mailbox,
            folder=path,
            uid=item_id,
            internaldate=received,
            location=f"ews:{mailbox}/{path};id={item_id}",
            envelope_recipients=recipients,
        )
        return RawMessage(data=data, origin=origin)

    def _convert(self, exc: BaseException) -> ConnectorError:
        return _convert(exc, self._s.endpoint)

    def _failure(self, mailbox: str, path: str, exc: ConnectorError) -> Batch:
        where = f"{self.name}:{mailbox}" + (f"/{path}" if path else "")
        what = f"Mailbox {mailbox}" + (f", folder {path}" if path else "")
        log.warning("ews failure at %s: %s", where, exc)
        return Batch(
            failures=[
                SourceFailure(where, f"{what}: {exc}", permanent=not isinstance(exc, TransientError), whole=not path)
            ],
            account=mailbox,
            folder=path,
        )


def _plain_utc(value: object) -> datetime | None:
    """exchangelib's EWSDateTime as a plain UTC datetime.

    EWSDateTime refuses standard tzinfo objects (``astimezone(UTC)`` raises) and
    is a library class the ingest's worker processes need not unpickle.
    """
    if not isinstance(value, datetime) or value.tzinfo is None:
        return None
    return datetime.fromtimestamp(value.timestamp(), UTC_TZ)


def _item_level(exc: BaseException) -> bool:
    """An error the server gave about an item (or one item of a request), not about the mailbox or the connection."""
    if isinstance(exc, (*_MAILBOX_DENIED, *_TRANSIENT)):
        return False
    return isinstance(exc, (ews_errors.ResponseMessageError, ews_errors.MalformedResponseError))


def _is_mail_folder(folder: Any) -> bool:
    """Mail folders have class IPF.Note (or a subclass), or none at all on some older folders."""
    cls = getattr(folder, "folder_class", None)
    return cls is None or cls == "IPF.Note" or str(cls).startswith("IPF.Note.")


def _display_path(folder: Any, root: Any, prefix: str) -> str:
    parts: list[str] = []
    f = folder
    while f is not None and f.id != root.id:
        parts.append(folder_segment(str(f.name)))
        f = f.parent
    parts.reverse()
    if prefix:
        parts.insert(0, prefix)
    return "/".join(parts)


def _convert(exc: BaseException, endpoint: str | None = None) -> ConnectorError:
    """exchangelib's and requests' exceptions as the connector error kinds, with sentences that say what to check."""
    if isinstance(exc, ConnectorError):
        return exc
    name = exc.__class__.__name__
    server = f"the EWS server at {endpoint}" if endpoint else "the EWS server found by autodiscover"
    if isinstance(exc, ews_errors.UnauthorizedError):
        return AuthError(
            f"the server refused the credentials ({exc}). Check the username and password, "
            "or for OAuth the app's full_access_as_app permission."
        )
    if isinstance(exc, ews_errors.ErrorNonExistentMailbox):
        return AuthError(
            f"the server has no mailbox with this address ({name}: {exc}). Check the address in mailboxes."
        )
    if isinstance(exc, _MAILBOX_DENIED):
        return AuthError(
            f"access denied ({name}: {exc}). The service account needs the ApplicationImpersonation role "
            "(impersonation) or Full Access to the mailbox (delegate); an OAuth app needs full_access_as_app."
        )
    if isinstance(exc, ews_errors.RateLimitError):
        return TransientError(f"the server kept asking to back off beyond max_wait ({exc}); will resume next run")
    if isinstance(exc, requests.ConnectionError) or (
        isinstance(exc, ews_errors.TransportError) and "ConnectionError" in str(exc)
    ):
        return TransientError(
            f"cannot connect to {server} (connection refused, reset or timed out). Check the endpoint, DNS and "
            f"firewall; will try again next run. ({name})"
        )
    if isinstance(exc, _TRANSIENT):
        return TransientError(f"{name}: {exc}")
    if isinstance(exc, ews_errors.TransportError) and not isinstance(exc, ews_errors.ResponseMessageError):
        return TransientError(f"cannot talk to {server} ({name}: {exc})")
    if isinstance(exc, ews_errors.EWSError):
        return ProtocolError(f"{name}: {exc}")
    return ProtocolError(f"unexpected {name}: {exc}")
