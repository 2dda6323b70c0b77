"""An Exchange Web Services protocol emulator: the SOAP subset the EWS connector (via exchangelib) uses.

Operations (request and response shapes from the EWS reference on
learn.microsoft.com, "EWS XML elements in Exchange" and each operation's page):

* ``GetFolder`` -- by ``t:FolderId`` or ``t:DistinguishedFolderId`` (root, msgfolderroot,
  inbox, sentitems, deleteditems, drafts, calendar, archiveroot, archivemsgfolderroot);
  unknown ones answer ``ErrorFolderNotFound``.
* ``FindFolder`` -- Shallow or Deep traversal, ``m:IndexedPageFolderView`` paging.
* ``SyncFolderItems`` -- ``t:Create``/``t:Delete`` changes after a sync state, at most
  ``MaxChangesReturned`` per call, with ``m:SyncState`` and ``m:IncludesLastItemInRange``.
  A sync state from before :meth:`EwsEmulator.invalidate_sync_states` answers
  ``ErrorInvalidSyncStateData``.
* ``GetItem`` -- ``t:MimeContent`` (base64) and ``t:DateTimeReceived`` of messages; an item
  given an error code with :meth:`EwsEmulator.fail_item` answers that code in its response
  message (``ErrorMimeContentConversionFailed``, ``ErrorInternalServerError``, ...), as
  Exchange does for an item whose MIME content it cannot produce.
* ``ConvertId`` -- answered with an error; exchangelib only uses it to learn the server
  version from the ``ServerVersionInfo`` SOAP header, which every response carries.

Access: basic authentication (the emulator cannot do NTLM) or an OAuth bearer token
from an :class:`~.http_emulator.IdentityPlatform`; impersonation via the
``t:ExchangeImpersonation`` header, or delegate access via ``t:Mailbox`` in
distinguished folder ids.  Test controls: throttle the next N requests with the
documented ``ErrorServerBusy`` SOAP fault carrying ``BackOffMilliseconds``, deny a
mailbox (``ErrorImpersonateUserDenied``) or only its online archive (``ErrorAccessDenied``
on the archive's folders), add and delete messages, make one item's GetItem fail.
"""

from __future__ import annotations

import base64
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from lxml import etree

from .http_emulator import EmulatorServer, IdentityPlatform, Request, Response

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
M = "http://schemas.microsoft.com/exchange/services/2006/messages"
T = "http://schemas.microsoft.com/exchange/services/2006/types"
NS = {"s": SOAP, "m": M, "t": T}

WELL_KNOWN = {
    "msgfolderroot": ("Top of Information Store", "root", "IPF.Note"),
    "inbox": ("Inbox", "msgfolderroot", "IPF.Note"),
    "sentitems": ("Sent Items", "msgfolderroot", "IPF.Note"),
    "deleteditems": ("Deleted Items", "msgfolderroot", "IPF.Note"),
    "drafts": ("Drafts", "msgfolderroot", "IPF.Note"),
    "calendar": ("Calendar", "msgfolderroot", "IPF.Appointment"),
}
ARCHIVE_WELL_KNOWN = {
    "archivemsgfolderroot": ("Top of Information Store", "archiveroot", "IPF.Note"),
}


@dataclass
class EItem:
    id: str
    changekey: str
    mime: bytes
    seq: int
    deleted_seq: int | None = None
    received: str = "2026-03-01T10:00:00Z"


@dataclass
class EFolder:
    id: str
    name: str
    parent_id: str | None
    folder_class: str | None
    distinguished: str | None = None
    items: list[EItem] = field(default_factory=list)


@dataclass
class Busy:
    remaining: int
    #: the SOAP operation to answer with ErrorServerBusy, or "" for any.
    operation: str
    back_off_ms: int


@dataclass
class EMailbox:
    address: str
    folders: dict[str, EFolder] = field(default_factory=dict)
    denied: bool = False
    has_archive: bool = False
    #: the online archive's folders answer ErrorAccessDenied (the account may open the mailbox, not the archive).
    archive_denied: bool = False


class EwsEmulator(EmulatorServer):
    """EWS SOAP emulator at ``{base}/EWS/Exchange.asmx`` on 127.0.0.1 (HTTPS when given TLS material)."""

    def __init__(
        self, username: str = "svc-archiver", password: str = "pa55word", tls: tuple[Path, Path] | None = None
    ) -> None:
        super().__init__(tls)
        self.username = username
        self.password = password
        self.identity: IdentityPlatform | None = None
        self.mailboxes: dict[str, EMailbox] = {}
        self._seq = itertools.count(1)
        self._ids = itertools.count(1)
        self.generation = 0
        self.busy: list[Busy] = []
        self.busy_served = 0
        self.operations: list[str] = []
        self.mime_fetched = 0
        #: item id -> the ResponseCode its GetItem response message answers.
        self.item_errors: dict[str, str] = {}

    @property
    def endpoint(self) -> str:
        return f"{self.base}/EWS/Exchange.asmx"

    # -- test controls ---------------------------------------------------------------------------

    def _new_id(self, kind: str, mailbox: str) -> str:
        return base64.b64encode(f"{kind}|{mailbox}|{next(self._ids):06d}".encode()).decode()

    def add_mailbox(self, address: str, has_archive: bool = False) -> EMailbox:
        mb = EMailbox(address.lower(), has_archive=has_archive)
        self.mailboxes[mb.address] = mb
        root = EFolder(self._new_id("folder", mb.address), "root", None, None, "root")
        mb.folders[root.id] = root
        wk = dict(WELL_KNOWN)
        if has_archive:
            aroot = EFolder(self._new_id("folder", mb.address), "root", None, None, "archiveroot")
            mb.folders[aroot.id] = aroot
            wk.update(ARCHIVE_WELL_KNOWN)
        for dname, (name, parent, cls) in wk.items():
            pid = self._distinguished(mb, parent).id
            f = EFolder(self._new_id("folder", mb.address), name, pid, cls, dname)
            mb.folders[f.id] = f
        return mb

    def _distinguished(self, mb: EMailbox, name: str) -> EFolder:
        return next(f for f in mb.folders.values() if f.distinguished == name)

    def add_folder(self, address: str, parent: str, name: str, folder_class: str = "IPF.Note") -> EFolder:
        """A user folder under ``parent`` (a distinguished name such as "inbox", or a folder id)."""
        mb = self.mailboxes[address.lower()]
        pf = mb.folders.get(parent) or self._distinguished(mb, parent)
        f = EFolder(self._new_id("folder", mb.address), name, pf.id, folder_class)
        mb.folders[f.id] = f
        return f

    def folder(self, address: str, ref: str) -> EFolder:
        mb = self.mailboxes[address.lower()]
        return mb.folders.get(ref) or self._distinguished(mb, ref)

    def add_message(self, address: str, folder: str, mime: bytes, received: str = "2026-03-01T10:00:00Z") -> str:
        with self.lock:
            f = self.folder(address, folder)
            item = EItem(self._new_id("item", address.lower()), "CQAAAB", mime, next(self._seq), received=received)
            f.items.append(item)
            return item.id

    def fail_item(self, item_id: str, code: str = "ErrorMimeContentConversionFailed") -> None:
        """GetItem answers ``code`` for this item (until :meth:`heal_item`)."""
        with self.lock:
            self.item_errors[item_id] = code

    def heal_item(self, item_id: str) -> None:
        with self.lock:
            self.item_errors.pop(item_id, None)

    def delete_message(self, address: str, folder: str, item_id: str) -> None:
        with self.lock:
            for it in self.folder(address, folder).items:
                if it.id == item_id:
                    it.deleted_seq = next(self._seq)

    def live_ids(self, address: str) -> set[str]:
        mb = self.mailboxes[address.lower()]
        return {i.id for f in mb.folders.values() for i in f.items if i.deleted_seq is None}

    def server_busy(self, count: int = 1, operation: str = "", back_off_ms: int = 1000) -> None:
        """Answer the next ``count`` requests (of ``operation``, or any) with ErrorServerBusy."""
        self.busy.append(Busy(count, operation, back_off_ms))

    def invalidate_sync_states(self) -> None:
        self.generation += 1

    # -- HTTP and SOAP ---------------------------------------------------------------------------

    def route(self, req: Request) -> Response:
        if self.identity is not None and self.identity.handles(req):
            return self.identity.route(req)
        if req.path.lower() != "/ews/exchange.asmx" or req.method != "POST":
            return Response(404, b"Not found", "text/plain")
        if not self._authorized(req):
            return Response(401, b"", "text/html", {"WWW-Authenticate": 'Basic realm="127.0.0.1"'})
        doc = etree.fromstring(req.body)
        body = doc.find("s:Body", NS)
        header = doc.find("s:Header", NS)
        if body is None or len(body) == 0:
            return self._fault("ErrorInvalidRequest", "The request is invalid.")
        op_elem = body[0]
        op = etree.QName(op_elem).localname
        version = "Exchange2016"
        if header is not None:
            rsv = header.find("t:RequestServerVersion", NS)
            if rsv is not None:
                version = rsv.get("Version", version)
        with self.lock:
            self.operations.append(op)
            for entry in self.busy:
                if entry.remaining > 0 and entry.operation in ("", op):
                    entry.remaining -= 1
                    self.busy_served += 1
                    return self._server_busy(entry.back_off_ms)
        mailbox = self._impersonated(header)
        if mailbox is not None and (mailbox not in self.mailboxes or self.mailboxes[mailbox].denied):
            code = "ErrorNonExistentMailbox" if mailbox not in self.mailboxes else "ErrorImpersonateUserDenied"
            text = (
                f"The SMTP address has no mailbox associated with it: {mailbox}"
                if code == "ErrorNonExistentMailbox"
                else "The account does not have permission to impersonate the requested user."
            )
            return self._fault(code, text)
        handler = {
            "GetFolder": self._get_folder,
            "FindFolder": self._find_folder,
            "SyncFolderItems": self._sync_folder_items,
            "GetItem": self._get_item,
            "ConvertId": self._convert_id,
        }.get(op)
        if handler is None:
            return self._fault("ErrorInvalidRequest", f"The emulator does not implement {op}.")
        with self.lock:
            inner = handler(op_elem, mailbox)
        return self._envelope(op, inner, version)

    def _authorized(self, req: Request) -> bool:
        auth = req.header("authorization") or ""
        if auth.startswith("Basic "):
            try:
                user, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                return False
            return user == self.username and pw == self.password
        if auth.startswith("Bearer ") and self.identity is not None:
            return self.identity.valid_bearer(req)
        return False

    def _impersonated(self, header: etree._Element | None) -> str | None:
        if header is None:
            return None
        el = header.find("t:ExchangeImpersonation/t:ConnectingSID/t:PrimarySmtpAddress", NS)
        return el.text.lower() if el is not None and el.text else None

    def _envelope(self, op: str, inner: str, version: str) -> Response:
        xml = (
            '<?xml version="1.0" encoding="utf-8"?>'
            f'<s:Envelope xmlns:s="{SOAP}"><s:Header>'
            f'<h:ServerVersionInfo MajorVersion="15" MinorVersion="2" MajorBuildNumber="1544" MinorBuildNumber="4" '
            f'Version="{version}" xmlns:h="{T}" xmlns="{T}"/>'
            f'</s:Header><s:Body><m:{op}Response xmlns:m="{M}" xmlns:t="{T}"><m:ResponseMessages>{inner}'
            f"</m:ResponseMessages></m:{op}Response></s:Body></s:Envelope>"
        )
        return Response(200, xml.encode(), "text/xml; charset=utf-8")

    def _fault(self, code: str, text: str, message_xml: str = "") -> Response:
        xml = (
            '<?xml version="1.0" encoding="utf-8"?>'
            f'<s:Envelope xmlns:s="{SOAP}"><s:Body><s:Fault>'
            f'<faultcode xmlns:a="{T}">a:{code}</faultcode>'
            f'<faultstring xml:lang="en-US">{escape(text)}</faultstring><detail>'
            f'<e:ResponseCode xmlns:e="http://schemas.microsoft.com/exchange/services/2006/errors">{code}</e:ResponseCode>'
            f'<e:Message xmlns:e="http://schemas.microsoft.com/exchange/services/2006/errors">{escape(text)}</e:Message>'
            f"{message_xml}</detail></s:Fault></s:Body></s:Envelope>"
        )
        return Response(500, xml.encode(), "text/xml; charset=utf-8")

    def _server_busy(self, back_off_ms: int) -> Response:
        return self._fault(
            "ErrorServerBusy",
            "The server cannot service this request right now. Try again later.",
            f'<t:MessageXml xmlns:t="{T}"><t:Value Name="BackOffMilliseconds">{back_off_ms}</t:Value></t:MessageXml>',
        )

    @staticmethod
    def _error(op: str, code: str, text: str) -> str:
        # Exchange still sends SyncFolderItems' empty SyncState and IncludesLastItemInRange on errors.
        extra = (
            "<m:SyncState/><m:IncludesLastItemInRange>true</m:IncludesLastItemInRange>"
            if op == "SyncFolderItems"
            else ""
        )
        return (
            f'<m:{op}ResponseMessage ResponseClass="Error"><m:MessageText>{escape(text)}</m:MessageText>'
            f"<m:ResponseCode>{code}</m:ResponseCode><m:DescriptiveLinkKey>0</m:DescriptiveLinkKey>{extra}"
            f"</m:{op}ResponseMessage>"
        )

    # -- folders ---------------------------------------------------------------------------------

    def _resolve_folder(self, el: etree._Element, mailbox: str | None) -> tuple[EMailbox, EFolder] | None:
        tag = etree.QName(el).localname
        if tag == "DistinguishedFolderId":
            addr_el = el.find("t:Mailbox/t:EmailAddress", NS)
            addr = (addr_el.text or "").lower() if addr_el is not None else (mailbox or "")
            mb = self.mailboxes.get(mailbox or addr)
            if mb is None:
                return None
            name = el.get("Id", "")
            f = next((f for f in mb.folders.values() if f.distinguished == name), None)
            return (mb, f) if f is not None else None
        fid = el.get("Id", "")
        for mb in self.mailboxes.values():
            if fid in mb.folders:
                return mb, mb.folders[fid]
        return None

    def _folder_xml(self, mb: EMailbox, f: EFolder) -> str:
        tag = "CalendarFolder" if f.folder_class == "IPF.Appointment" else "Folder"
        children = sum(1 for c in mb.folders.values() if c.parent_id == f.id)
        parent = f'<t:ParentFolderId Id="{f.parent_id}" ChangeKey="AQAAAA=="/>' if f.parent_id else ""
        cls = f"<t:FolderClass>{f.folder_class}</t:FolderClass>" if f.folder_class else ""
        total = sum(1 for i in f.items if i.deleted_seq is None)
        return (
            f'<t:{tag}><t:FolderId Id="{f.id}" ChangeKey="AQAAAA=="/>{parent}{cls}'
            f"<t:DisplayName>{escape(f.name)}</t:DisplayName><t:TotalCount>{total}</t:TotalCount>"
            f"<t:ChildFolderCount>{children}</t:ChildFolderCount><t:UnreadCount>0</t:UnreadCount></t:{tag}>"
        )

    def _in_archive(self, mb: EMailbox, folder: EFolder) -> bool:
        f: EFolder | None = folder
        while f is not None:
            if f.distinguished == "archiveroot":
                return True
            f = mb.folders.get(f.parent_id) if f.parent_id else None
        return False

    def _get_folder(self, op: etree._Element, mailbox: str | None) -> str:
        out = []
        for el in _children(op, "m:FolderIds"):
            found = self._resolve_folder(el, mailbox)
            if found is not None and found[0].archive_denied and self._in_archive(*found):
                out.append(
                    self._error("GetFolder", "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
                )
                continue
            if found is None:
                out.append(
                    self._error(
                        "GetFolder", "ErrorFolderNotFound", "The specified folder could not be found in the store."
                    )
                )
                continue
            mb, f = found
            out.append(
                '<m:GetFolderResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>'
                f"<m:Folders>{self._folder_xml(mb, f)}</m:Folders></m:GetFolderResponseMessage>"
            )
        return "".join(out)

    def _find_folder(self, op: etree._Element, mailbox: str | None) -> str:
        deep = op.get("Traversal") == "Deep"
        view = op.find("m:IndexedPageFolderView", NS)
        limit = int(view.get("MaxEntriesReturned", "1000")) if view is not None else 1000
        offset = int(view.get("Offset", "0")) if view is not None else 0
        out = []
        for el in _children(op, "m:ParentFolderIds"):
            found = self._resolve_folder(el, mailbox)
            if found is None:
                out.append(
                    self._error(
                        "FindFolder", "ErrorFolderNotFound", "The specified folder could not be found in the store."
                    )
                )
                continue
            mb, parent = found
            result: list[EFolder] = []
            todo = [parent.id]
            while todo:
                pid = todo.pop(0)
                kids = [f for f in mb.folders.values() if f.parent_id == pid]
                result += kids
                if deep:
                    todo += [k.id for k in kids]
            page = result[offset : offset + limit]
            last = offset + len(page) >= len(result)
            out.append(
                '<m:FindFolderResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>'
                f'<m:RootFolder IndexedPagingOffset="{offset + len(page)}" TotalItemsInView="{len(result)}" '
                f'IncludesLastItemInRange="{str(last).lower()}"><t:Folders>'
                + "".join(self._folder_xml(mb, f) for f in page)
                + "</t:Folders></m:RootFolder></m:FindFolderResponseMessage>"
            )
        return "".join(out)

    # -- items -----------------------------------------------------------------------------------

    def _sync_folder_items(self, op: etree._Element, mailbox: str | None) -> str:
        fid_el = op.find("m:SyncFolderId", NS)
        found = self._resolve_folder(fid_el[0], mailbox) if fid_el is not None and len(fid_el) else None
        if found is None:
            return self._error(
                "SyncFolderItems", "ErrorFolderNotFound", "The specified folder could not be found in the store."
            )
        _, folder = found
        max_changes = int(op.findtext("m:MaxChangesReturned", "100", NS))
        state_text = op.findtext("m:SyncState", None, NS)
        watermark = 0
        if state_text:
            try:
                state = json.loads(base64.b64decode(state_text))
            except ValueError:
                state = {}
            if state.get("g") != self.generation or state.get("f") != folder.id:
                return self._error(
                    "SyncFolderItems", "ErrorInvalidSyncStateData", "Sync state data is corrupt or otherwise invalid."
                )
            watermark = int(state["w"])
        events: list[tuple[int, str, EItem]] = []
        for it in folder.items:
            if it.seq > watermark and it.deleted_seq is None:
                events.append((it.seq, "Create", it))
            if it.deleted_seq is not None and it.deleted_seq > watermark and it.seq <= watermark:
                events.append((it.deleted_seq, "Delete", it))
        events.sort(key=lambda e: e[0])
        page = events[:max_changes]
        last = len(page) == len(events)
        new_mark = page[-1][0] if page else watermark
        new_state = base64.b64encode(
            json.dumps({"g": self.generation, "f": folder.id, "w": new_mark}).encode()
        ).decode()
        changes = []
        for _, kind, it in page:
            ident = f'<t:ItemId Id="{it.id}" ChangeKey="{it.changekey}"/>'
            changes.append(
                f"<t:Create><t:Message>{ident}</t:Message></t:Create>"
                if kind == "Create"
                else f"<t:Delete>{ident}</t:Delete>"
            )
        return (
            '<m:SyncFolderItemsResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>'
            f"<m:SyncState>{new_state}</m:SyncState>"
            f"<m:IncludesLastItemInRange>{str(last).lower()}</m:IncludesLastItemInRange>"
            f"<m:Changes>{''.join(changes)}</m:Changes></m:SyncFolderItemsResponseMessage>"
        )

    def _get_item(self, op: etree._Element, mailbox: str | None) -> str:
        wanted_fields = {el.get("FieldURI") for el in op.iterfind("m:ItemShape/t:AdditionalProperties/t:FieldURI", NS)}
        wants_mime = "item:MimeContent" in wanted_fields
        out = []
        for el in _children(op, "m:ItemIds"):
            item_id = el.get("Id", "")
            item = next(
                (
                    it
                    for mb in self.mailboxes.values()
                    for f in mb.folders.values()
                    for it in f.items
                    if it.id == item_id and it.deleted_seq is None
                ),
                None,
            )
            if item is None:
                out.append(
                    self._error("GetItem", "ErrorItemNotFound", "The specified object was not found in the store.")
                )
                continue
            if item.id in self.item_errors:
                out.append(self._error("GetItem", self.item_errors[item.id], "The item could not be converted."))
                continue
            mime = ""
            if wants_mime:
                self.mime_fetched += 1
                mime = f'<t:MimeContent CharacterSet="UTF-8">{base64.b64encode(item.mime).decode()}</t:MimeContent>'
            received = (
                f"<t:DateTimeReceived>{item.received}</t:DateTimeReceived>"
                if "item:DateTimeReceived" in wanted_fields
                else ""
            )
            out.append(
                '<m:GetItemResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>'
                f'<m:Items><t:Message>{mime}<t:ItemId Id="{item.id}" ChangeKey={quoteattr(item.changekey)}/>'
                f"{received}</t:Message></m:Items></m:GetItemResponseMessage>"
            )
        return "".join(out)

    def _convert_id(self, op: etree._Element, mailbox: str | None) -> str:
        return self._error("ConvertId", "ErrorInvalidIdMalformed", "Id is malformed.")


def _children(op: etree._Element, path: str) -> list[etree._Element]:
    el = op.find(path, NS)
    return list(el) if el is not None else []
