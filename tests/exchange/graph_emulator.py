"""A Microsoft Graph protocol emulator: the subset of the mail API the Graph connector uses.

Endpoints (v1.0, shapes from the Graph reference on learn.microsoft.com):

* ``GET /v1.0/groups/{id}/members`` -- directoryObject collection (users carry ``@odata.type``);
  a nested group is listed as a ``#microsoft.graph.group`` entry.
* ``GET /v1.0/groups/{id}/transitiveMembers`` -- the same, with nested groups' members listed too
  (a flat list, as "List group transitive members" documents).
* ``GET /v1.0/users/{u}/mailFolders`` and ``.../mailFolders/{id}/childFolders`` -- mailFolder
  collections; ``includeHiddenFolders=true`` lists hidden folders; ``$top``/``$skip`` paging.
* ``GET /v1.0/users/{u}/mailFolders/{id}/messages/delta`` -- "message: delta": pages of
  ``{"id": ...}`` (``$select`` honoured), ``@removed`` entries for deletions,
  ``@odata.nextLink`` with a ``$skiptoken`` and, on the last page, ``@odata.deltaLink``
  with a ``$deltatoken`` (both tokens keep the first request's ``$select``); ``Prefer: odata.maxpagesize=N`` sets the page size.  Expired
  tokens answer 410 Gone with ``syncStateNotFound``.
* ``GET /v1.0/users/{u}/messages/{id}/$value`` -- the message's MIME content.
* The identity platform endpoints msal needs (see :class:`~.http_emulator.IdentityPlatform`).

Test controls: add users, folders and messages; delete messages; throttle the
next N matching requests (429/503 with ``Retry-After``); expire delta tokens;
deny a mailbox (403); refuse tokens; send one message's ``$value`` with a body
that does not decode (``Content-Encoding: gzip`` over garbage).  It counts
``$value`` downloads and the highest number running at once per mailbox.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

from .http_emulator import EmulatorServer, IdentityPlatform, Request, Response

TENANT = "11111111-2222-3333-4444-555555555555"
CLIENT_ID = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"


@dataclass
class GMessage:
    id: str
    mime: bytes
    seq: int
    received: str
    deleted_seq: int | None = None


@dataclass
class GFolder:
    id: str
    name: str
    parent_id: str
    hidden: bool = False
    messages: list[GMessage] = field(default_factory=list)


@dataclass
class GUser:
    id: str
    upn: str
    folders: dict[str, GFolder] = field(default_factory=dict)
    denied: bool = False


@dataclass
class Throttle:
    remaining: int
    status: int
    retry_after: str | None
    pattern: str


class GraphEmulator(EmulatorServer):
    """Microsoft Graph mail API emulator on 127.0.0.1 (HTTPS)."""

    def __init__(self, tls: tuple[Path, Path]) -> None:
        super().__init__(tls)
        self.identity = IdentityPlatform(self.base, TENANT, CLIENT_ID)
        self.identity.client_secret = "s3cret-value"
        self.users: dict[str, GUser] = {}
        #: group id -> members: user principal names, "device:..." entries and "group:<id>" nested groups.
        self.groups: dict[str, list[str]] = {}
        #: message ids whose $value body is sent as gzip that is not gzip.
        self.corrupt_values: set[str] = set()
        self.throttles: list[Throttle] = []
        self.generation = 0
        self._seq = itertools.count(1)
        self._ids = itertools.count(1)
        self.value_downloads = 0
        self._in_flight: dict[str, int] = {}
        self.max_in_flight: dict[str, int] = {}
        self.value_delay = 0.0
        self.gone_served = 0
        self.throttled_served = 0

    @property
    def graph_url(self) -> str:
        return f"{self.base}/v1.0"

    # -- test controls ---------------------------------------------------------------------------

    def _new_id(self, prefix: str) -> str:
        raw = f"{prefix}-{next(self._ids):06d}".encode()
        return "AAMkAD" + base64.urlsafe_b64encode(raw).decode()

    def add_user(self, upn: str, folders: tuple[str, ...] = ("Inbox", "Sent Items", "Deleted Items")) -> GUser:
        with self.lock:
            user = GUser(id=self._new_id("user"), upn=upn)
            self.users[upn.lower()] = user
            root = self._new_id("root")
            user.folders[root] = GFolder(root, "Top of Information Store", "")
            user.folders[root].hidden = True  # the root is never listed as a folder
        for path in folders:
            self.add_folder(upn, path)
        return user

    def add_folder(self, upn: str, path: str, hidden: bool = False) -> GFolder:
        with self.lock:
            user = self.users[upn.lower()]
            parent = next(f for f in user.folders.values() if f.parent_id == "")
            for part in path.split("/"):
                found = next((f for f in user.folders.values() if f.parent_id == parent.id and f.name == part), None)
                if found is None:
                    found = GFolder(self._new_id("folder"), part, parent.id, hidden=False)
                    user.folders[found.id] = found
                parent = found
            parent.hidden = hidden
            return parent

    def _find(self, upn: str, path: str) -> GFolder:
        user = self.users[upn.lower()]
        parent = next(f for f in user.folders.values() if f.parent_id == "")
        for part in path.split("/"):
            nxt = next((f for f in user.folders.values() if f.parent_id == parent.id and f.name == part), None)
            if nxt is None:
                raise KeyError(path)
            parent = nxt
        return parent

    def add_message(self, upn: str, path: str, mime: bytes) -> str:
        with self.lock:
            folder = self._find(upn, path)
            msg = GMessage(self._new_id("msg"), mime, next(self._seq), "2026-03-01T10:00:00Z")
            folder.messages.append(msg)
            return msg.id

    def delete_message(self, upn: str, path: str, mid: str) -> None:
        with self.lock:
            for m in self._find(upn, path).messages:
                if m.id == mid:
                    m.deleted_seq = next(self._seq)

    def live_ids(self, upn: str) -> set[str]:
        user = self.users[upn.lower()]
        return {m.id for f in user.folders.values() for m in f.messages if m.deleted_seq is None}

    def throttle(self, count: int = 1, status: int = 429, retry_after: str | None = "1", pattern: str = "") -> None:
        """Answer the next ``count`` requests whose path contains ``pattern`` with ``status``."""
        with self.lock:
            self.throttles.append(Throttle(count, status, retry_after, pattern))

    def expire_delta_tokens(self) -> None:
        """Every delta and skip token issued so far answers 410 Gone from now on."""
        with self.lock:
            self.generation += 1

    # -- routing ---------------------------------------------------------------------------------

    def route(self, req: Request) -> Response:
        if self.identity.handles(req):
            return self.identity.route(req)
        if not req.path.startswith("/v1.0/"):
            return _error(404, "UnknownError", "Resource not found")
        throttled = self._throttled(req)
        if throttled is not None:
            return throttled
        if not self.identity.valid_bearer(req):
            return _error(401, "InvalidAuthenticationToken", "Access token is empty or invalid.")
        path = req.path[len("/v1.0") :]
        m = re.fullmatch(r"/groups/([^/]+)/(members|transitiveMembers)", path)
        if m:
            return self._members(unquote(m.group(1)), transitive=m.group(2) == "transitiveMembers")
        m = re.fullmatch(r"/users/([^/]+)(/.*)", path)
        if not m:
            return _error(400, "BadRequest", f"Unsupported path {path}")
        user = self.users.get(unquote(m.group(1)).lower()) or next(
            (u for u in self.users.values() if u.id == unquote(m.group(1))), None
        )
        if user is None:
            return _error(404, "ErrorInvalidUser", f"The requested user '{unquote(m.group(1))}' is invalid.")
        if user.denied:
            return _error(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
        rest = m.group(2)
        if rest == "/mailFolders":
            root = next(f for f in user.folders.values() if f.parent_id == "")
            return self._folders(req, user, root.id)
        m = re.fullmatch(r"/mailFolders/([^/]+)/childFolders", rest)
        if m:
            return self._folders(req, user, unquote(m.group(1)))
        m = re.fullmatch(r"/mailFolders/([^/]+)/messages/delta", rest)
        if m:
            return self._delta(req, user, unquote(m.group(1)))
        m = re.fullmatch(r"/messages/([^/]+)/\$value", rest)
        if m:
            return self._value(user, unquote(m.group(1)))
        return _error(400, "BadRequest", f"Unsupported path {rest}")

    def _throttled(self, req: Request) -> Response | None:
        with self.lock:
            for t in self.throttles:
                if t.remaining > 0 and t.pattern in req.path:
                    t.remaining -= 1
                    self.throttled_served += 1
                    headers = {"Retry-After": t.retry_after} if t.retry_after is not None else {}
                    code = "TooManyRequests" if t.status == 429 else "ServiceUnavailable"
                    return _error(t.status, code, "Application is over its MailboxConcurrency limit.", headers)
        return None

    def _members(self, gid: str, transitive: bool = False) -> Response:
        if gid not in self.groups:
            return _error(404, "Request_ResourceNotFound", f"Resource '{gid}' does not exist.")
        value: list[dict[str, object]] = []
        todo, seen = [gid], {gid}
        while todo:
            for entry in self.groups[todo.pop(0)]:
                if entry.startswith("device:"):
                    value.append({"@odata.type": "#microsoft.graph.device", "id": entry})
                    continue
                if entry.startswith("group:"):
                    sub = entry[len("group:") :]
                    value.append({"@odata.type": "#microsoft.graph.group", "id": sub, "displayName": sub})
                    if transitive and sub not in seen:
                        seen.add(sub)
                        todo.append(sub)
                    continue
                u = self.users[entry.lower()]
                value.append(
                    {"@odata.type": "#microsoft.graph.user", "id": u.id, "mail": u.upn, "userPrincipalName": u.upn}
                )
        return Response.json({"@odata.context": f"{self.graph_url}/$metadata#directoryObjects", "value": value})

    def _folders(self, req: Request, user: GUser, parent_id: str) -> Response:
        if parent_id not in user.folders:
            return _error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        hidden = (req.q("includeHiddenFolders") or "").lower() == "true"
        children = [f for f in user.folders.values() if f.parent_id == parent_id and (hidden or not f.hidden)]
        top = int(req.q("$top") or 10)
        skip = int(req.q("$skip") or 0)
        page = children[skip : skip + top]
        value = [
            {
                "id": f.id,
                "displayName": f.name,
                "parentFolderId": f.parent_id,
                "childFolderCount": sum(1 for c in user.folders.values() if c.parent_id == f.id),
                "unreadItemCount": 0,
                "totalItemCount": sum(1 for m in f.messages if m.deleted_seq is None),
                "isHidden": f.hidden,
            }
            for f in page
        ]
        body: dict[str, object] = {
            "@odata.context": f"{self.graph_url}/$metadata#users('{user.id}')/mailFolders",
            "value": value,
        }
        if skip + top < len(children):
            params = "&".join(f"{k}={v[0]}" for k, v in req.query.items() if k != "$skip")
            body["@odata.nextLink"] = f"{self.base}{req.path}?{params}&$skip={skip + top}"
        return Response.json(body)

    def _token(self, state: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(state).encode()).decode()

    def _delta(self, req: Request, user: GUser, fid: str) -> Response:
        folder = user.folders.get(fid)
        if folder is None:
            return _error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        skip, delta = req.q("$skiptoken"), req.q("$deltatoken")
        with self.lock:
            now = next(self._seq)
            if skip or delta:
                state = json.loads(base64.urlsafe_b64decode((skip or delta or "").encode()))
                if state.get("g") != self.generation or state.get("f") != fid:
                    self.gone_served += 1
                    return _error(410, "syncStateNotFound", "The sync state generation is invalid or has expired.")
            else:
                state = {"g": self.generation, "f": fid, "from": 0, "to": now, "o": 0, "s": req.q("$select") or ""}
            if delta:  # a new round of changes since the delta token's watermark
                state = {
                    "g": self.generation,
                    "f": fid,
                    "from": state["to"],
                    "to": now,
                    "o": 0,
                    "s": state.get("s", ""),
                }
            lo, hi, offset = int(state["from"]), int(state["to"]), int(state["o"])
            # Graph keeps the first request's $select in the tokens of its nextLink and deltaLink.
            select = str(state.get("s", ""))
            changes: list[dict[str, object]] = []
            for msg in folder.messages:
                if lo == 0:
                    if msg.seq <= hi and (msg.deleted_seq is None or msg.deleted_seq > hi):
                        changes.append(self._select(select, msg))
                else:
                    if lo < msg.seq <= hi and (msg.deleted_seq is None or msg.deleted_seq > hi):
                        changes.append(self._select(select, msg))
                    elif msg.deleted_seq is not None and lo < msg.deleted_seq <= hi and msg.seq <= lo:
                        changes.append({"id": msg.id, "@removed": {"reason": "deleted"}})
        prefer = req.header("prefer") or ""
        pm = re.search(r"odata\.maxpagesize=(\d+)", prefer)
        size = int(pm.group(1)) if pm else 10
        page = changes[offset : offset + size]
        base = f"{self.graph_url}/users/{user.id}/mailFolders/{fid}/messages/delta"
        body: dict[str, object] = {"@odata.context": f"{self.graph_url}/$metadata#Collection(message)", "value": page}
        if offset + size < len(changes):
            nxt = {"g": self.generation, "f": fid, "from": lo, "to": hi, "o": offset + size, "s": select}
            body["@odata.nextLink"] = f"{base}?$skiptoken={self._token(nxt)}"
        else:
            done = {"g": self.generation, "f": fid, "from": lo, "to": hi, "o": 0, "s": select}
            body["@odata.deltaLink"] = f"{base}?$deltatoken={self._token(done)}"
        headers = {"Preference-Applied": f"odata.maxpagesize={size}"} if pm else {}
        return Response.json(body, headers=headers)

    def _select(self, select: str, msg: GMessage) -> dict[str, object]:
        fields = select.split(",")
        out: dict[str, object] = {"@odata.type": "#microsoft.graph.message", "id": msg.id}
        if "receivedDateTime" in fields:
            out["receivedDateTime"] = msg.received
        if "subject" in fields or fields == [""]:
            out["subject"] = "(emulated)"
        return out

    def _value(self, user: GUser, mid: str) -> Response:
        with self.lock:
            msg = next((m for f in user.folders.values() for m in f.messages if m.id == mid), None)
            if msg is None or msg.deleted_seq is not None:
                return _error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
            self.value_downloads += 1
            n = self._in_flight.get(user.id, 0) + 1
            self._in_flight[user.id] = n
            self.max_in_flight[user.upn] = max(self.max_in_flight.get(user.upn, 0), n)
        try:
            if self.value_delay:
                time.sleep(self.value_delay)
            if mid in self.corrupt_values:
                return Response(200, b"\x1f\x8b\x08\x00not-gzip-at-all", "text/plain", {"Content-Encoding": "gzip"})
            return Response(200, msg.mime, "text/plain")
        finally:
            with self.lock:
                self._in_flight[user.id] -= 1


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    body = {"error": {"code": code, "message": message, "innerError": {"request-id": "emulated", "date": "now"}}}
    return Response.json(body, status, headers)
