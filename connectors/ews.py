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
(``max_changes_returned = batch_size``): every request is one
:class:`~connectors.base.Batch` whose checkpoint is the sync state the server
returned with it, and the loop continues while the server says
``IncludesLastItemInRange`` is false.  The MIME content of new items is fetched
with GetItem in chunks and archived byte-exact.

Delete events in the sync never delete anything from the archive.  Throttling
(``ErrorServerBusy`` with ``BackOffMilliseconds``, HTTP 503/429 with
``Retry-After``) is honoured by exchangelib's :class:`~exchangelib.FaultTolerance`
policy up to ``max_wait`` seconds; a 401 fails at once with a clear message
instead of being retried as throttling.  Any other error is reported as a
:class:`~connectors.base.SourceFailure` naming the mailbox and folder, and the
other folders and mailboxes carry on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
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
from connectors.journal_report import unwrap_journal_report
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
_ARCHIVE_MISSING = (
    ews_errors.ErrorFolderNotFound,
    ews_errors.ErrorInvalidOperation,
    ews_errors.ErrorAccessDenied,
    ews_errors.ErrorItemNotFound,
)


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
    unwrap_journal_reports: bool = True


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

    # -- the Connector protocol ------------------------------------------------------------------

    def batches(self, checkpoints: Mapping[str, str]) -> Iterator[Batch]:
        """Yield one batch per SyncFolderItems request of every selected folder of every mailbox."""
        try:
            config = self._configuration()
        except ConnectorError as exc:
            for mailbox in self._s.mailboxes:
                yield self._failure(mailbox, "", exc)
            return
        for mailbox in self._s.mailboxes:
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

    def _folders(self, account: Account) -> tuple[list[tuple[Folder, str]], list[SourceEvent]]:
        """Mail folders with display paths; the archive's when reachable."""
        roots: list[tuple[Any, str]] = [(account.msg_folder_root, "")]
        events: list[SourceEvent] = []
        if self._s.include_archive:
            try:
                roots.append((account.archive_msg_folder_root, ARCHIVE_PREFIX))
            except _ARCHIVE_MISSING as exc:
                log.debug("no online archive for %s: %s", account.primary_smtp_address, exc)
            except ews_errors.ErrorServerBusy:
                raise
            except ews_errors.EWSError as exc:
                events.append(
                    SourceEvent(
                        "archive_unreachable",
                        {"mailbox": account.primary_smtp_address, "reason": f"{exc.__class__.__name__}: {exc}"},
                    )
                )
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
        return out, events

    # -- syncing ---------------------------------------------------------------------------------

    def _mailbox_batches(self, config: Configuration, mailbox: str, checkpoints: Mapping[str, str]) -> Iterator[Batch]:
        try:
            account = self._account(config, mailbox)
            folders, events = self._folders(account)
        except Exception as exc:  # every failure of one mailbox is reported; the others continue
            yield self._failure(mailbox, "", _convert(exc))
            return
        if events:
            yield Batch(events=events, account=mailbox)
        for folder, path in folders:
            try:
                yield from self._folder_batches(account, mailbox, folder, path, checkpoints)
            except Exception as exc:
                err = _convert(exc)
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
            wanted: list[tuple[str, str | None]] = []
            for change_type, item in changes:
                if change_type not in (SyncFolderItems.CREATE, SyncFolderItems.UPDATE):
                    continue  # deletes and read-flag changes never touch the archive
                if isinstance(item, Exception) or getattr(item, "id", None) is None:
                    continue
                wanted.append((item.id, item.changekey))
            batch = Batch(events=events, account=mailbox, folder=path)
            self._fetch(account, folder, mailbox, path, wanted, batch)
            if not batch.failures:
                if not new_state:
                    raise ProtocolError("SyncFolderItems returned no sync state")
                batch.checkpoints.append(Checkpoint(key, new_state))
            yield batch
            if batch.failures or not more or new_state == state:
                return
            state = new_state

    def _fetch(
        self,
        account: Account,
        folder: Folder,
        mailbox: str,
        path: str,
        wanted: list[tuple[str, str | None]],
        batch: Batch,
    ) -> None:
        if not wanted:
            return
        items = account.fetch(ids=wanted, folder=folder, only_fields=["mime_content"], chunk_size=self._s.fetch_chunk)
        for (item_id, _), item in zip(wanted, items, strict=True):
            if isinstance(item, ews_errors.ErrorItemNotFound):
                batch.events.append(
                    SourceEvent("message_vanished", {"mailbox": mailbox, "folder": path, "id": item_id})
                )
                continue
            if isinstance(item, Exception):
                batch.failures.append(
                    SourceFailure(
                        f"{self.name}:{mailbox}/{path}",
                        f"Mailbox {mailbox}, folder {path}, item {item_id}: {item.__class__.__name__}: {item}",
                        permanent=False,
                    )
                )
                continue
            data = getattr(item, "mime_content", None)
            if not isinstance(data, bytes) or not data:
                batch.events.append(SourceEvent("no_mime_content", {"mailbox": mailbox, "folder": path, "id": item_id}))
                continue
            batch.messages.append(self._raw(data, mailbox, path, item_id))

    def _raw(self, data: bytes, mailbox: str, path: str, item_id: str) -> RawMessage:
        recipients: tuple[str, ...] = ()
        if self._s.unwrap_journal_reports:
            unwrapped = unwrap_journal_report(data)
            if unwrapped is not None:
                data, recipients = unwrapped
        origin = Origin(
            source=self.name,
            account=mailbox,
            folder=path,
            uid=item_id,
            location=f"ews:{mailbox}/{path};id={item_id}",
            envelope_recipients=recipients,
        )
        return RawMessage(data=data, origin=origin)

    def _failure(self, mailbox: str, path: str, exc: ConnectorError) -> Batch:
        where = f"{self.name}:{mailbox}" + (f"/{path}" if path else "")
        what = f"Mailbox {mailbox}" + (f", folder {path}" if path else "")
        log.warning("ews failure at %s: %s", where, exc)
        return Batch(
            failures=[
                SourceFailure(
                    where, f"{what}: {exc}", permanent=not isinstance(exc, TransientError), whole=not path
                )
            ],
            account=mailbox,
            folder=path,
        )


def _is_mail_folder(folder: Any) -> bool:
    """Mail folders have class IPF.Note (or a subclass), or none at all on some older folders."""
    cls = getattr(folder, "folder_class", None)
    return cls is None or cls == "IPF.Note" or str(cls).startswith("IPF.Note.")


def _display_path(folder: Any, root: Any, prefix: str) -> str:
    parts: list[str] = []
    f = folder
    while f is not None and f.id != root.id:
        parts.append(str(f.name))
        f = f.parent
    parts.reverse()
    if prefix:
        parts.insert(0, prefix)
    return "/".join(parts)


def _convert(exc: BaseException) -> ConnectorError:
    """exchangelib's and requests' exceptions as the connector error kinds, with sentences."""
    if isinstance(exc, ConnectorError):
        return exc
    name = exc.__class__.__name__
    if isinstance(exc, ews_errors.UnauthorizedError):
        return AuthError(
            f"the server refused the credentials ({exc}). Check the username and password, "
            "or for OAuth the app's full_access_as_app permission."
        )
    if isinstance(exc, _MAILBOX_DENIED):
        return AuthError(
            f"access denied ({name}: {exc}). The service account needs the ApplicationImpersonation role "
            "(impersonation) or Full Access to the mailbox (delegate); an OAuth app needs full_access_as_app."
        )
    if isinstance(exc, ews_errors.RateLimitError):
        return TransientError(f"the server kept asking to back off beyond max_wait ({exc}); will resume next run")
    if isinstance(exc, _TRANSIENT):
        return TransientError(f"{name}: {exc}")
    if isinstance(exc, ews_errors.TransportError) and not isinstance(exc, ews_errors.ResponseMessageError):
        return TransientError(f"cannot talk to the EWS server ({name}: {exc})")
    if isinstance(exc, ews_errors.EWSError):
        return ProtocolError(f"{name}: {exc}")
    return ProtocolError(f"unexpected {name}: {exc}")
