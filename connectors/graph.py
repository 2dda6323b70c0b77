"""Microsoft Graph mail connector (Exchange Online), app-only.

Per mailbox, every mail folder is walked (``mailFolders`` and their
``childFolders``, hidden ones included when configured) and synchronised with
the folder's delta query, ``/users/{u}/mailFolders/{f}/messages/delta``.  Each
delta page is one :class:`~connectors.base.Batch`: the page's new or changed
messages, fetched as MIME through ``/users/{u}/messages/{m}/$value`` (exact
bytes), plus a checkpoint holding the page's ``@odata.nextLink`` (more pages to
come) or its ``@odata.deltaLink`` (folder caught up).  The pipeline saves the
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
* A message that cannot be fetched withholds its page's checkpoint, so it is
  tried again on the next run rather than skipped forever.
* At most ``concurrency`` (<= 4, Graph's per-mailbox limit) MIME downloads run
  at once, over one pooled ``httpx.Client``.
* An error in one folder or mailbox is reported as a
  :class:`~connectors.base.SourceFailure` naming it; the others continue.
* Journal reports are unwrapped (:mod:`connectors.journal_report`).
"""

from __future__ import annotations

import email.utils
import logging
import ssl
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from connectors.base import Batch, Checkpoint, Origin, RawMessage, SourceEvent, SourceFailure, folder_selected
from connectors.errors import AuthError, ConnectorError, ProtocolError, TransientError
from connectors.journal_report import unwrap_journal_report
from connectors.msauth import TokenProvider

log = logging.getLogger(__name__)

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


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
    unwrap_journal_reports: bool = True


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

    # -- the Connector protocol ------------------------------------------------------------------

    def batches(self, checkpoints: Mapping[str, str]) -> Iterator[Batch]:
        """Yield one batch per delta page of every selected folder of every mailbox."""
        limits = httpx.Limits(
            max_connections=self._s.concurrency + 1, max_keepalive_connections=self._s.concurrency + 1
        )
        with httpx.Client(
            timeout=httpx.Timeout(self._s.timeout, connect=min(self._s.timeout, 30.0)),
            limits=limits,
            verify=_ssl_verify(self._s.verify),
            headers={"Accept": "application/json"},
            follow_redirects=False,
        ) as client:
            try:
                mailboxes = self._mailboxes(client)
            except ConnectorError as exc:
                where = f"{self.name}:group {self._s.group}"
                yield Batch(failures=[SourceFailure(where, str(exc), _permanent(exc))])
                mailboxes = [_Mailbox(m, m) for m in self._s.mailboxes]
            for mailbox in mailboxes:
                yield from self._mailbox_batches(client, mailbox, checkpoints)

    # -- mailboxes and folders -------------------------------------------------------------------

    def _mailboxes(self, client: httpx.Client) -> list[_Mailbox]:
        seen: dict[str, _Mailbox] = {}
        for m in self._s.mailboxes:
            seen.setdefault(m.lower(), _Mailbox(m, m))
        if self._s.group:
            url = f"{self._base}/groups/{quote(self._s.group, safe='')}/members?$select=id,mail,userPrincipalName"
            for member in self._paged(client, url):
                if member.get("@odata.type", "#microsoft.graph.user") != "#microsoft.graph.user":
                    continue
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
                path = f"{parent_path}/{f.get('displayName', fid)}" if parent_path else str(f.get("displayName", fid))
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
        except ConnectorError as exc:
            where = f"{self.name}:{mailbox.label}"
            log.warning("graph mailbox failed", extra={"source": self.name, "mailbox": mailbox.label})
            yield Batch(
                failures=[SourceFailure(where, f"Mailbox {mailbox.label}: {exc}", _permanent(exc), whole=True)],
                account=mailbox.label,
            )
            return
        for folder in folders:
            try:
                yield from self._folder_batches(client, mailbox, folder, checkpoints)
            except ConnectorError as exc:
                where = f"{self.name}:{mailbox.label}/{folder.path}"
                yield Batch(
                    failures=[
                        SourceFailure(where, f"Mailbox {mailbox.label}, folder {folder.path}: {exc}", _permanent(exc))
                    ],
                    account=mailbox.label,
                    folder=folder.path,
                )
                if isinstance(exc, AuthError):
                    return  # the mailbox as a whole is refused: its other folders would fail alike

    def _initial_delta_url(self, mailbox: _Mailbox, folder: _Folder) -> str:
        user = quote(mailbox.ref, safe="@")
        return (
            f"{self._base}/users/{user}/mailFolders/{quote(folder.id, safe='')}/messages/delta"
            "?$select=id,receivedDateTime"
        )

    def _folder_batches(
        self, client: httpx.Client, mailbox: _Mailbox, folder: _Folder, checkpoints: Mapping[str, str]
    ) -> Iterator[Batch]:
        key = f"graph:{self.name}:{mailbox.label}:{folder.id}"
        url = checkpoints.get(key) or self._initial_delta_url(mailbox, folder)
        restarted = False
        while True:
            events: list[SourceEvent] = []
            try:
                page = self._delta_page(client, url)
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
            batch = self._page_batch(client, mailbox, folder, page)
            batch.events[:0] = events
            next_link = page.get("@odata.nextLink")
            delta_link = page.get("@odata.deltaLink")
            state = next_link or delta_link
            if not batch.failures:
                if not isinstance(state, str) or not state:
                    raise ProtocolError("a delta page carried neither @odata.nextLink nor @odata.deltaLink")
                batch.checkpoints.append(Checkpoint(key, state))
            yield batch
            if batch.failures or not next_link:
                return
            url = next_link

    def _delta_page(self, client: httpx.Client, url: str) -> dict[str, Any]:
        resp = self._request(client, url, headers={"Prefer": f"odata.maxpagesize={self._s.page_size}"})
        if resp.status_code == 410 or (resp.status_code in (400, 404) and _error_code(resp).lower() in _GONE_CODES):
            raise _Gone()
        if resp.status_code != 200:
            raise _http_error(resp, url)
        return _json(resp, url)

    def _page_batch(self, client: httpx.Client, mailbox: _Mailbox, folder: _Folder, page: dict[str, Any]) -> Batch:
        batch = Batch(account=mailbox.label, folder=folder.path)
        wanted: list[tuple[str, datetime | None]] = []
        for entry in page.get("value", []):
            if not isinstance(entry, dict) or "id" not in entry:
                continue
            if "@removed" in entry:
                continue  # deletions in the mailbox never delete from the archive
            wanted.append((str(entry["id"]), _parse_time(entry.get("receivedDateTime"))))
        if not wanted:
            return batch
        user = quote(mailbox.ref, safe="@")

        def fetch(mid: str) -> bytes | ConnectorError | None:
            url = f"{self._base}/users/{user}/messages/{quote(mid, safe='')}/$value"
            try:
                resp = self._request(client, url, accept="message/rfc822, */*")
            except ConnectorError as exc:
                return exc
            if resp.status_code == 404:
                return None  # deleted between the delta page and the fetch: its @removed will follow
            if resp.status_code != 200:
                return _http_error(resp, url)
            return resp.content

        with ThreadPoolExecutor(max_workers=self._s.concurrency, thread_name_prefix="graph-mime") as pool:
            results = list(pool.map(fetch, [mid for mid, _ in wanted]))
        for (mid, received), result in zip(wanted, results, strict=True):
            where = f"{self.name}:{mailbox.label}/{folder.path}"
            if isinstance(result, ConnectorError):
                batch.failures.append(
                    SourceFailure(
                        where,
                        f"Mailbox {mailbox.label}, folder {folder.path}, message {mid}: {result}",
                        permanent=False,
                    )
                )
                continue
            if result is None:
                batch.events.append(
                    SourceEvent("message_vanished", {"mailbox": mailbox.label, "folder": folder.path, "id": mid})
                )
                continue
            batch.messages.append(self._raw(result, mailbox, folder, mid, received))
        return batch

    def _raw(self, data: bytes, mailbox: _Mailbox, folder: _Folder, mid: str, received: datetime | None) -> RawMessage:
        recipients: tuple[str, ...] = ()
        if self._s.unwrap_journal_reports:
            unwrapped = unwrap_journal_report(data)
            if unwrapped is not None:
                data, recipients = unwrapped
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
    ) -> httpx.Response:
        """GET with auth, retries and Retry-After; 4xx other than 401/403 are returned to the caller."""
        attempt = 0
        reauthed = False
        while True:
            hdrs = dict(headers or {})
            hdrs["Authorization"] = f"Bearer {self._tokens.token()}"
            if accept:
                hdrs["Accept"] = accept
            try:
                resp = client.get(url, headers=hdrs)
            except httpx.TransportError as exc:
                wait = min(2.0**attempt, 60.0)
                problem = f"connection problem talking to Graph ({exc.__class__.__name__})"
            else:
                if resp.status_code == 401 and not reauthed:
                    reauthed = True
                    self._tokens.invalidate()
                    continue
                if resp.status_code in (401, 403):
                    raise AuthError(
                        f"Graph refused access ({resp.status_code} {_error_code(resp)}: {_error_message(resp)}). "
                        "The app needs the Mail.Read application permission with admin consent "
                        "(and GroupMember.Read.All to list a group), and no application access policy excluding "
                        "this mailbox."
                    )
                if resp.status_code not in _RETRY_STATUSES:
                    return resp
                retry_after = _retry_after(resp)
                wait = retry_after if retry_after is not None else min(2.0**attempt, 60.0)
                problem = f"Graph answered {resp.status_code} {_error_code(resp)}".rstrip()
                if wait > self._s.max_retry_wait:
                    raise TransientError(f"{problem} and asked to wait {wait:.0f}s; will resume next run", wait)
            attempt += 1
            if attempt > self._s.retries:
                raise TransientError(f"{problem}, still after {self._s.retries} retries")
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


def _http_error(resp: httpx.Response, url: str) -> ConnectorError:
    code = _error_code(resp)
    detail = f"Graph answered {resp.status_code} {code}: {_error_message(resp)} ({_redact(url)})"
    if resp.status_code == 404:
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
