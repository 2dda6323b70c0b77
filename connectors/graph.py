"""Microsoft Graph mail connector (Exchange Online), app-only.

Per mailbox, every mail folder is walked (``mailFolders`` and their
``childFolders``, hidden ones included when configured) and synchronised with
the folder's delta query, ``/users/{u}/mailFolders/{f}/messages/delta``.  Each
delta page gives :class:`~connectors.base.Batch` objects: the page's new or
changed messages, fetched as MIME through ``/users/{u}/messages/{m}/$value``
(exact bytes), and on the page's last batch a checkpoint holding the page's
``@odata.nextLink`` (more pages to come) or its ``@odata.deltaLink`` (folder
caught up).  The pipeline saves the
checkpoint only after the batch is committed, so a crash re-fetches at most one
page, and dedup makes that harmless.

Rules the connector keeps:

* ``@removed`` entries never delete anything from the archive; they are skipped.
* HTTP 429 and 503 (and other 5xx, and connection errors) are retried, honouring
  ``Retry-After``; a wait longer than ``max_retry_wait`` fails the folder for
  this run (it resumes from its checkpoint next time).
* HTTP 410 Gone (delta token expired, ``syncStateNotFound``) restarts that
  folder's sync from scratch; dedup turns the re-fetch into no duplicates; a
  :class:`~connectors.base.SourceEvent` records it.
* A message whose MIME content cannot be fetched (a 4xx other than
  401/403/404/429, a 500/502/504 that persists for it, a body that cannot be
  decoded) is reported, kept in the folder's retry list
  (:mod:`connectors.exchange_items`) and tried again every run; the page's
  checkpoint still moves on, so one bad message never stops its folder.  A
  problem of the service or the connection (throttling beyond patience,
  connection errors, 401/403) withholds the checkpoint instead: the folder
  resumes from it next run.
* At most ``concurrency`` (<= 4, Graph's per-mailbox limit) MIME downloads run
  at once, over one pooled ``httpx.Client``, and a page's messages are cut into
  batches of at most ``max_batch_bytes`` (the last carries the checkpoint).
* The bearer token goes only to the configured Graph host, over https: a stored
  checkpoint naming another host (``graph_url`` changed since) restarts that
  folder's sync, and a link in a response naming one fails the folder.
* A 401 is retried once with a new token (msal's cache is emptied first); a
  second 401 and a 403 are reported with what to check.
* An error in one folder or mailbox, expected or not, is reported as a
  :class:`~connectors.base.SourceFailure` naming it; the others continue.
* Journal reports are unwrapped only in the configured journaling mailboxes
  (:mod:`connectors.journal_report`).
"""

from __future__ import annotations

import contextvars
import email.utils
import logging
import ssl
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from connectors.base import Batch, Checkpoint, Origin, RawMessage, SourceEvent, SourceFailure, folder_selected
from connectors.errors import AuthError, ConnectorError, ProtocolError, TransientError
from connectors.exchange_items import DEFAULT_MAX_BATCH_BYTES, BatchCutter, RetryList, folder_segment
from connectors.journal_report import journal_copy
from connectors.msauth import TokenProvider

log = logging.getLogger(__name__)

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: server errors that, when they persist for one message's $value, are about that message.
_ITEM_SERVER_ERRORS = frozenset({500, 502, 504})
#: retries of such an error for one message: the service itself is answering (other requests work).
_ITEM_RETRIES = 2


@dataclass(frozen=True, slots=True)
class GraphSettings:
    """What the Graph connector needs, already validated and with secrets resolved elsewhere."""

    name: str
    mailboxes: tuple[str, ...] = ()
    group: str | None = None
    graph_url: str = "https://graph.microsoft.com/v1.0"
    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()
    include_hidden_folders: bool = True
    page_size: int = 100
    concurrency: int = 4
    timeout: float = 60.0
    retries: int = 6
    max_retry_wait: float = 300.0
    #: CA bundle path or bool for TLS verification of Graph.
    verify: str | bool = True
    #: mailboxes that receive journal reports: only there are reports unwrapped (also synced).
    journal_mailboxes: tuple[str, ...] = ()
    #: when given, only reports sent from these addresses are unwrapped.
    journal_senders: tuple[str, ...] = ()
    #: a batch is cut once its messages hold this many bytes.
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES


@dataclass(frozen=True, slots=True)
class _Mailbox:
    #: the address used in provenance and checkpoint keys.
    label: str
    #: the id or user principal name used in URLs.
    ref: str


@dataclass(frozen=True, slots=True)
class _Folder:
    id: str
    path: str


class _Gone(Exception):
    """The delta token has expired (HTTP 410)."""


class _FolderGone(Exception):
    """The folder no longer exists (HTTP 404 on its delta query): deleted or moved away during the sync."""


class GraphConnector:
    """A :class:`~connectors.base.Connector` for Exchange Online mailboxes through Microsoft Graph."""

    def __init__(
        self,
        settings: GraphSettings,
        tokens: TokenProvider,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not 1 <= settings.concurrency <= 4:
            raise ValueError("Graph allows at most 4 concurrent requests per mailbox")
        self.name = settings.name
        self._s = settings
        self._tokens = tokens
        self._sleep = sleep
        self._base = settings.graph_url.rstrip("/")
        base = urlsplit(self._base)
        self._origin = (base.scheme.lower(), (base.hostname or "").lower(), base.port or 443)
        self._journal = {m.lower() for m in settings.journal_mailboxes}

    # -- the Connector protocol ------------------------------------------------------------------

    def batches(self, checkpoints: Mapping[str, str]) -> Iterator[Batch]:
        """Yield the batches of every delta page of every selected folder of every mailbox."""
        limits = httpx.Limits(
            max_connections=self._s.concurrency + 1, max_keepalive_connections=self._s.concurrency + 1
        )
        try:
            verify = _ssl_verify(self._s.verify)
        except (OSError, ssl.SSLError) as exc:
            problem = f"the CA file {self._s.verify} cannot be loaded ({exc.__class__.__name__}); check auth.ca_file"
            for m in [mb.label for mb in self._listed_mailboxes()] or [f"group {self._s.group}"]:
                yield Batch(
                    failures=[SourceFailure(f"{self.name}:{m}", f"Mailbox {m}: {problem}", True, whole=True)],
                    account=m,
                )
            return
        with httpx.Client(
            timeout=httpx.Timeout(self._s.timeout, connect=min(self._s.timeout, 30.0)),
            limits=limits,
            verify=verify,
            headers={"Accept": "application/json"},
            follow_redirects=False,
        ) as client:
            try:
                mailboxes = self._mailboxes(client)
            except Exception as exc:  # the listed mailboxes are still synced
                err = _connector_error(exc)
                where = f"{self.name}:group {self._s.group}"
                yield Batch(failures=[SourceFailure(where, f"Group {self._s.group}: {err}", _permanent(err))])
                mailboxes = self._listed_mailboxes()
            for mailbox in mailboxes:
                yield from self._mailbox_batches(client, mailbox, checkpoints)

    # -- mailboxes and folders -------------------------------------------------------------------

    def _listed_mailboxes(self) -> list[_Mailbox]:
        seen: dict[str, _Mailbox] = {}
        for m in (*self._s.mailboxes, *self._s.journal_mailboxes):
            seen.setdefault(m.lower(), _Mailbox(m, m))
        return list(seen.values())

    def _mailboxes(self, client: httpx.Client) -> list[_Mailbox]:
        """The configured mailboxes, then every user with a mailbox among the group's members, nested groups included.

        ``transitiveMembers`` flattens nested groups ("All partners" holding
        "Litigation partners"); ``members`` would list the nested group itself,
        whose people would then silently go unarchived.  Same permission
        (GroupMember.Read.All).
        """
        seen = {m.label.lower(): m for m in self._listed_mailboxes()}
        if self._s.group:
            url = (
                f"{self._base}/groups/{quote(self._s.group, safe='')}/transitiveMembers"
                "?$select=id,mail,userPrincipalName"
            )
            for member in self._paged(client, url):
                if member.get("@odata.type", "#microsoft.graph.user") != "#microsoft.graph.user":
                    continue  # groups (their members are listed too), devices, contacts, service principals
                mail = member.get("mail")
                if not mail:  # a user without a mailbox
                    continue
                ref = str(member.get("userPrincipalName") or member.get("id") or mail)
                seen.setdefault(str(mail).lower(), _Mailbox(str(mail), ref))
        return list(seen.values())

    def _folders(self, client: httpx.Client, mailbox: _Mailbox) -> list[_Folder]:
        hidden = "&includeHiddenFolders=true" if self._s.include_hidden_folders else ""
        user = quote(mailbox.ref, safe="@")
        select = "$select=id,displayName,childFolderCount&$top=100"
        out: list[_Folder] = []
        pending: list[tuple[str, str]] = [(f"{self._base}/users/{user}/mailFolders?{select}{hidden}", "")]
        while pending:
            url, parent_path = pending.pop(0)
            for f in self._paged(client, url):
                fid = str(f["id"])
                name = folder_segment(str(f.get("displayName", fid)))
                path = f"{parent_path}/{name}" if parent_path else name
                out.append(_Folder(fid, path))
                if int(f.get("childFolderCount") or 0) > 0:
                    child_url = f"{self._base}/users/{user}/mailFolders/{quote(fid, safe='')}/childFolders?{select}"
                    pending.append((child_url + hidden, path))
        return [f for f in out if folder_selected(f.path, self._s.include, self._s.exclude)]

    def _paged(self, client: httpx.Client, url: str) -> Iterator[dict[str, Any]]:
        next_url: str | None = url
        while next_url:
            resp = self._request(client, next_url)
            if resp.status_code != 200:
                raise _http_error(resp, next_url)
            body = _json(resp, next_url)
            yield from body.get("value", [])
            next_url = body.get("@odata.nextLink")

    # -- syncing ---------------------------------------------------------------------------------

    def _mailbox_batches(
        self, client: httpx.Client, mailbox: _Mailbox, checkpoints: Mapping[str, str]
    ) -> Iterator[Batch]:
        try:
            folders = self._folders(client, mailbox)
        except Exception as exc:  # this mailbox is reported; the others continue
            err = _connector_error(exc)
            where = f"{self.name}:{mailbox.label}"
            log.warning("graph mailbox failed", extra={"source": self.name, "mailbox": mailbox.label})
            yield Batch(
                failures=[SourceFailure(where, f"Mailbox {mailbox.label}: {err}", _permanent(err), whole=True)],
                account=mailbox.label,
            )
            return
        for folder in folders:
            try:
                yield from self._folder_batches(client, mailbox, folder, checkpoints)
            except Exception as exc:
                err = _connector_error(exc)
                where = f"{self.name}:{mailbox.label}/{folder.path}"
                yield Batch(
                    failures=[
                        SourceFailure(where, f"Mailbox {mailbox.label}, folder {folder.path}: {err}", _permanent(err))
                    ],
                    account=mailbox.label,
                    folder=folder.path,
                )
                if isinstance(err, AuthError):
                    return  # the mailbox as a whole is refused: its other folders would fail alike

    def _initial_delta_url(self, mailbox: _Mailbox, folder: _Folder) -> str:
        user = quote(mailbox.ref, safe="@")
        return (
            f"{self._base}/users/{user}/mailFolders/{quote(folder.id, safe='')}/messages/delta"
            "?$select=id,receivedDateTime"
        )

    def _own_link(self, url: str) -> bool:
        """Is ``url`` on the configured Graph host, over https?  Only such URLs get the bearer token."""
        try:
            u = urlsplit(url)
            origin = (u.scheme.lower(), (u.hostname or "").lower(), u.port or 443)
        except ValueError:
            return False
        return origin[0] == "https" and origin == self._origin

    def _folder_batches(
        self, client: httpx.Client, mailbox: _Mailbox, folder: _Folder, checkpoints: Mapping[str, str]
    ) -> Iterator[Batch]:
        key = f"graph:{self.name}:{mailbox.label}:{folder.id}"
        retry = RetryList(f"{key}:retry", checkpoints.get(f"{key}:retry"))
        events: list[SourceEvent] = []
        url = checkpoints.get(key) or self._initial_delta_url(mailbox, folder)
        if not self._own_link(url):
            # graph_url changed since (another cloud, a proxy): the old link would get the new token.
            events.append(
                SourceEvent(
                    "checkpoint_link_refused",
                    {
                        "source": self.name,
                        "mailbox": mailbox.label,
                        "folder": folder.path,
                        "host": urlsplit(url).netloc,
                        "action": "full resync",
                    },
                )
            )
            url = self._initial_delta_url(mailbox, folder)
        if retry.items:  # messages that failed on earlier runs are tried first, on their own
            cut = BatchCutter(mailbox.label, folder.path, self._s.max_batch_bytes)
            again = [(mid, _parse_time(note)) for mid, note in retry.items.items()]
            yield from self._fetch(client, mailbox, folder, again, retry, cut)
            yield cut.finish(retry)
        restarted = False
        while True:
            try:
                page = self._delta_page(client, url)
            except _FolderGone:
                yield Batch(
                    events=[
                        *events,
                        SourceEvent("folder_vanished", {"mailbox": mailbox.label, "folder": folder.path}),
                    ],
                    account=mailbox.label,
                    folder=folder.path,
                )
                return
            except _Gone:
                if restarted:
                    raise ProtocolError("the delta query answered 410 Gone even for a fresh sync") from None
                restarted = True
                url = self._initial_delta_url(mailbox, folder)
                events.append(
                    SourceEvent(
                        "delta_token_expired",
                        {"source": self.name, "mailbox": mailbox.label, "folder": folder.path, "action": "full resync"},
                    )
                )
                log.info("graph delta token expired; resyncing folder")
                page = self._delta_page(client, url)
            next_link = page.get("@odata.nextLink")
            delta_link = page.get("@odata.deltaLink")
            state = next_link or delta_link
            if not isinstance(state, str) or not state:
                raise ProtocolError("a delta page carried neither @odata.nextLink nor @odata.deltaLink")
            if not self._own_link(state):
                raise ProtocolError(
                    f"Graph's delta page links to {urlsplit(state).netloc or state[:60]!r}, not to the configured "
                    "graph_url over https; the access token is not sent there"
                )
            cut = BatchCutter(mailbox.label, folder.path, self._s.max_batch_bytes)
            cut.current.events.extend(events)
            events = []
            wanted: list[tuple[str, datetime | None]] = []
            for entry in page.get("value", []):
                if not isinstance(entry, dict) or "id" not in entry:
                    continue
                if "@removed" in entry:
                    continue  # deletions in the mailbox never delete from the archive
                wanted.append((str(entry["id"]), _parse_time(entry.get("receivedDateTime"))))
            yield from self._fetch(client, mailbox, folder, wanted, retry, cut)
            yield cut.finish(retry, Checkpoint(key, state))
            if not next_link:
                return
            url = next_link

    def _delta_page(self, client: httpx.Client, url: str) -> dict[str, Any]:
        resp = self._request(client, url, headers={"Prefer": f"odata.maxpagesize={self._s.page_size}"})
        if resp.status_code == 410 or (resp.status_code in (400, 404) and _error_code(resp).lower() in _GONE_CODES):
            raise _Gone()
        if resp.status_code == 404:
            raise _FolderGone()
        if resp.status_code != 200:
            raise _http_error(resp, url)
        return _json(resp, url)

    def _fetch(
        self,
        client: httpx.Client,
        mailbox: _Mailbox,
        folder: _Folder,
        wanted: list[tuple[str, datetime | None]],
        retry: RetryList,
        cut: BatchCutter,
    ) -> Iterator[Batch]:
        """Download ``wanted`` into ``cut``, yielding each batch that reaches the byte bound.

        The caller finishes the last one (:meth:`BatchCutter.finish`).  A message-level
        problem becomes a failure and a retry-list entry; a problem of the service or
        the connection propagates (no checkpoint is saved).
        """
        where = f"{self.name}:{mailbox.label}/{folder.path}"
        for (mid, received), result in zip(wanted, self._values(client, mailbox, [m for m, _ in wanted]), strict=True):
            if result is None:
                retry.discard(mid)
                cut.event("message_vanished", mid)
                continue
            if isinstance(result, ConnectorError):
                note = received.isoformat() if received else ""
                cut.unfetchable(retry, where, "message", mid, str(result), permanent=_permanent(result), note=note)
                continue
            retry.discard(mid)
            if (full := cut.add(self._raw(result, mailbox, folder, mid, received, cut))) is not None:
                yield full

    def _values(
        self, client: httpx.Client, mailbox: _Mailbox, ids: list[str]
    ) -> Iterator[bytes | ProtocolError | None]:
        """Each message's MIME bytes (None: deleted meanwhile; ProtocolError: a problem of that message), in order.

        At most ``concurrency`` downloads run, and no more results than that wait
        here, so memory holds a few messages rather than a whole page.
        """
        user = quote(mailbox.ref, safe="@")

        def fetch(mid: str) -> bytes | ProtocolError | None:
            url = f"{self._base}/users/{user}/messages/{quote(mid, safe='')}/$value"
            try:
                resp = self._request(client, url, accept="message/rfc822, */*", item=True)
            except ProtocolError as exc:
                return exc
            if resp.status_code == 404:
                return None  # deleted between the delta page and the fetch: its @removed will follow
            if resp.status_code != 200:
                return _http_error(resp, url)
            return resp.content

        if not ids:
            return
        with ThreadPoolExecutor(max_workers=self._s.concurrency, thread_name_prefix="graph-mime") as pool:
            pending: deque[Future[bytes | ProtocolError | None]] = deque()
            for mid in ids:
                # each fetch runs in a copy of this thread's context: the log context the
                # daemon bound for this job (job, source, account) goes with it
                pending.append(pool.submit(contextvars.copy_context().run, fetch, mid))
                if len(pending) >= self._s.concurrency:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()

    def _raw(
        self, data: bytes, mailbox: _Mailbox, folder: _Folder, mid: str, received: datetime | None, cut: BatchCutter
    ) -> RawMessage:
        recipients: tuple[str, ...] = ()
        if mailbox.label.lower() in self._journal:
            data, recipients, kept = journal_copy(data, self._s.journal_senders)
            if kept:
                cut.event("journal_report_kept", mid, reason=kept)
        origin = Origin(
            source=self.name,
            account=mailbox.label,
            folder=folder.path,
            uid=mid,
            internaldate=received,
            location=f"graph:{mailbox.label}/{folder.path};id={mid}",
            envelope_recipients=recipients,
        )
        return RawMessage(data=data, origin=origin)

    # -- HTTP ------------------------------------------------------------------------------------

    def _request(
        self,
        client: httpx.Client,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        accept: str | None = None,
        item: bool = False,
    ) -> httpx.Response:
        """GET with auth, retries and Retry-After; 4xx other than 401/403 are returned to the caller.

        ``item``: the request is one message's $value.  A 500/502/504 that persists
        for it, or a body that cannot be decoded, is then a ProtocolError (about
        that message) rather than a TransientError (about the service).
        """
        if not self._own_link(url):
            raise ProtocolError(
                f"refusing to send the access token to {urlsplit(url).netloc or url[:60]!r}: only the configured "
                "graph_url's host over https gets it"
            )
        attempt = 0
        reauthed = False
        while True:
            hdrs = dict(headers or {})
            hdrs["Authorization"] = f"Bearer {self._tokens.token()}"
            if accept:
                hdrs["Accept"] = accept
            retries = self._s.retries
            try:
                resp = client.get(url, headers=hdrs)
            except httpx.TransportError as exc:
                wait = min(2.0**attempt, 60.0)
                problem = f"connection problem talking to Graph ({exc.__class__.__name__})"
            except httpx.HTTPError as exc:  # e.g. a body that does not decode: the answer, not the link, is bad
                raise ProtocolError(f"Graph's answer could not be read ({exc.__class__.__name__}: {exc})") from None
            else:
                if resp.status_code == 401 and not reauthed:
                    reauthed = True
                    self._tokens.invalidate()  # a fresh token, not msal's cached copy of the refused one
                    continue
                if resp.status_code == 401:
                    raise AuthError(
                        f"Graph refused the app's access token (401 {_error_code(resp)}: {_error_message(resp)}), "
                        "also a newly issued one. Check that auth.authority and graph_url belong to the same cloud "
                        "and tenant, and this machine's clock."
                    )
                if resp.status_code == 403:
                    raise AuthError(
                        f"Graph refused access (403 {_error_code(resp)}: {_error_message(resp)}). "
                        "The app needs the Mail.Read application permission with admin consent "
                        "(and GroupMember.Read.All to list a group), and no application access policy excluding "
                        "this mailbox."
                    )
                if resp.status_code not in _RETRY_STATUSES:
                    return resp
                retry_after = _retry_after(resp)
                wait = retry_after if retry_after is not None else min(2.0**attempt, 60.0)
                problem = f"Graph answered {resp.status_code} {_error_code(resp)}".rstrip()
                if item and resp.status_code in _ITEM_SERVER_ERRORS:
                    retries = min(retries, _ITEM_RETRIES)
                    if attempt >= retries:
                        raise ProtocolError(f"{problem} for this message, still after {retries} retries")
                if wait > self._s.max_retry_wait:
                    raise TransientError(f"{problem} and asked to wait {wait:.0f}s; will resume next run", wait)
            attempt += 1
            if attempt > retries:
                raise TransientError(f"{problem}, still after {retries} retries")
            log.info("graph request retried", extra={"wait_s": wait, "problem": problem})
            self._sleep(wait)


_GONE_CODES = frozenset({"syncstatenotfound", "syncstateinvalid", "resyncrequired"})


def _ssl_verify(verify: str | bool) -> ssl.SSLContext | bool:
    """httpx wants an SSLContext for a custom CA bundle."""
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    return verify


def _permanent(exc: Exception) -> bool:
    return not isinstance(exc, TransientError)


def _connector_error(exc: BaseException) -> ConnectorError:
    """Any exception as a connector error with a sentence: an unexpected one must fail one folder, not the sync."""
    if isinstance(exc, ConnectorError):
        return exc
    if isinstance(exc, httpx.TransportError):
        return TransientError(f"connection problem talking to Graph ({exc.__class__.__name__})")
    return ProtocolError(f"unexpected {exc.__class__.__name__}: {exc}")


def _json(resp: httpx.Response, url: str) -> dict[str, Any]:
    try:
        body = resp.json()
    except ValueError:
        raise ProtocolError(f"Graph answered {_redact(url)} with something that is not JSON") from None
    if not isinstance(body, dict):
        raise ProtocolError(f"Graph answered {_redact(url)} with unexpected JSON")
    return body


def _error_body(resp: httpx.Response) -> dict[str, Any]:
    try:
        body = resp.json()
    except ValueError:
        return {}
    err = body.get("error") if isinstance(body, dict) else None
    return err if isinstance(err, dict) else {}


def _error_code(resp: httpx.Response) -> str:
    return str(_error_body(resp).get("code", ""))


def _error_message(resp: httpx.Response) -> str:
    return str(_error_body(resp).get("message", "")) or resp.reason_phrase


def _http_error(resp: httpx.Response, url: str) -> ProtocolError:
    code = _error_code(resp)
    detail = f"Graph answered {resp.status_code} {code}: {_error_message(resp)} ({_redact(url)})"
    if resp.status_code == 404 and code.lower() in (
        "errorinvaliduser",
        "mailboxnotenabledforrestapi",
        "resourcenotfound",
    ):
        return ProtocolError(f"{detail}. Is the mailbox licensed and enabled for Exchange Online?")
    return ProtocolError(detail)


def _redact(url: str) -> str:
    """A URL fit for messages: delta and skip tokens are opaque state, not something to print."""
    return url.split("?", 1)[0]


def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
