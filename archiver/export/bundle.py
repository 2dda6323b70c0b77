"""Evidence bundles: one zip an auditor can check without the archive (docs/bundles.md).

The writer streams: each native is decrypted, parsed, written to the zip and dropped
before the next one is read; manifest rows, CSV, load file and HTML rows go to temporary
files next to the output and are copied into the zip at the end, so memory stays bounded
whatever the number of messages (bench/export.py measures it).  manifest.json is written
last, so it can list the hashes of every other file, and one signature over it then vouches
for the whole bundle.

Proofs: for each message, its journal records (the ``ingest`` record that stored it, the
``copy`` records of its other copies, the ``tag`` records that filed it), each followed by
the rest of its transaction up to the ``commit`` record (signed checkpoint) that closed it,
plus the journal's ``init`` record and its commit (which name the public key).  A verifier
recomputes every record hash, follows the ``prev`` links to the commit and checks the
commit's signature: the message has been in the archive, unchanged, since that time, and
the custodian, folder, client and matters in the manifest are the journal's, not an edited
catalog's.  The other records of those transactions (other messages, other clients,
connector checkpoints) are shown only as their header and ``data_sha256`` (docs/format.md
6.2), which is enough to check the chain and says nothing of them; records written before
record version 2 can only be shown whole.

Disposed messages are never exported (their content is gone) and are listed in
custody.json with the rule that disposed them; held messages export like any other.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import html
import json
import os
import shutil
import socket
import tempfile
import zipfile
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

from archiver import __version__
from archiver.archive import received_of
from archiver.clock import iso, parse_iso
from archiver.errors import ArchiverError, IntegrityError, NotFoundError, UsageError
from archiver.export.loadfile import ENCODING as DAT_ENCODING
from archiver.export.loadfile import DatWriter
from archiver.export.verify import (
    BUNDLE_FORMAT,
    COLUMN_NAMES,
    CUSTODY,
    INDEX_HTML,
    LOADFILE,
    MANIFEST_CSV,
    MANIFEST_JSON,
    PROOFS,
    PROVENANCE_KEYS,
    ROWS_END,
    ROWS_START,
    SIGNATURE,
    fingerprint,
    flat_row,
    signature_message,
)
from archiver.model import ParsedMessage
from archiver.policies.naming import NamingPolicy, UniqueNamer, fields_of
from archiver.store.catalog import in_chunks
from archiver.store.journal import canonical, data_digest

#: custody.json of a query export: why it lists no disposed messages (docs/bundles.md section 4).
QUERY_NOTE = (
    "A query finds only messages whose text the archive still holds: disposed messages left the "
    "index with their content, so this selection cannot name them. A --matter export lists them."
)

#: the journal records about one message that a bundle discloses for it (and the verifier checks).
_MESSAGE_RECORDS = frozenset({"ingest", "copy", "tag"})

TOOL_NAME = "mail-archiver"
Progress = Callable[[int, int], None]


@dataclass
class Selection:
    """What to export: the resolved ids, how they were chosen, and references that resolved to nothing."""

    kind: str
    value: str
    ids: list[str]
    unresolved: list[dict[str, str]] = field(default_factory=list)
    #: sentences for custody.json about what the selection left out and why
    notes: list[str] = field(default_factory=list)


def proof_form(rec: dict[str, Any]) -> dict[str, Any]:
    """A record as a bundle shows one it does not disclose: its header and ``data_sha256``.

    Version-2 records hash their data through that digest, so the chain through this record
    still checks (docs/format.md 6.2).  An older record can only be shown whole.
    """
    if "v" not in rec:
        return rec
    shown = {k: v for k, v in rec.items() if k != "data"}
    shown["data_sha256"] = data_digest(rec["data"])
    return shown


@dataclass
class ExportResult:
    path: Path
    exported: int
    not_exported: list[dict[str, str]]
    manifest_sha256: str
    bates_first: str
    bates_last: str
    fingerprint: str


def select_query(archive: Any, query: str) -> Selection:
    """Every message the query finds, newest first (disposed messages are not in the index).

    The index is brought up to date first: an import interrupted before it indexed its last
    messages (they are stored and committed) would otherwise leave them out of an evidence
    bundle without a word.
    """
    with archive.repo.lock():
        archive.catch_up()  # its commits reload the index
    ids = archive.index.matching_ids(query)
    return Selection("query", query, list(dict.fromkeys(ids)))


def select_matter(archive: Any, spec: str) -> Selection:
    """Every message filed under CLIENT/MATTER (disposed ones too, to list them as not exported).

    Names compare case-insensitively, as holds do.  A message that carries the matter but is
    filed under another client is not exported (matter numbers are not unique across
    clients, and a bundle must not disclose another client's mail, not even its id or the
    client's name); custody.json says how many there are, so a production never leaves
    documents out unsaid.
    """
    client, sep, matter = spec.partition("/")
    if not sep or not client or not matter:
        raise UsageError(f"--matter takes CLIENT/MATTER, e.g. acme/10234-0001; got {spec!r}.")
    rows = archive.repo.catalog.conn.execute(
        "SELECT m.id, t.client FROM matters m JOIN tags t ON t.id = m.id "
        "WHERE m.matter = ? COLLATE NOCASE ORDER BY m.id",
        (matter.strip(),),
    ).fetchall()
    wanted = client.strip().casefold()
    ids = [oid for oid, owner in rows if owner.casefold() == wanted]
    elsewhere = len(rows) - len(ids)
    notes = (
        [f"{elsewhere} other message(s) carry matter {matter.strip()} but are filed under other clients; "
         "they are not part of this selection (names and ids withheld)"]
        if elsewhere else []
    )  # fmt: skip
    return Selection("matter", spec, ids, notes=notes)


def select_ids(archive: Any, path: Path) -> Selection:
    """Ids (or unique prefixes) from a file, one per line; blank lines and '#' comments ignored."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"Cannot read the ids file {path}: {exc}.") from None
    ids: list[str] = []
    unresolved: list[dict[str, str]] = []
    for line in text.splitlines():
        ref = line.split("#", 1)[0].strip()
        if not ref:
            continue
        try:
            ids.append(archive.repo.resolve(ref))
        except NotFoundError as exc:
            unresolved.append({"id": ref, "reason": str(exc)})
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return Selection("ids", f"{path.name} (sha256 {digest})", list(dict.fromkeys(ids)), unresolved)


def message_text(parsed: ParsedMessage) -> str:
    """The extracted text of a message: its main headers, its body, and each attachment's text."""
    lines = [
        f"From: {', '.join(map(str, parsed.from_))}",
        f"To: {', '.join(map(str, parsed.to))}",
    ]
    if parsed.cc:
        lines.append(f"Cc: {', '.join(map(str, parsed.cc))}")
    if parsed.bcc:
        lines.append(f"Bcc: {', '.join(map(str, parsed.bcc))}")
    lines += [
        f"Date: {_utc(parsed.date)}",
        f"Subject: {parsed.subject}",
        f"Message-ID: {parsed.message_id}",
        "",
        parsed.body_text,
    ]
    for a in parsed.attachments:
        lines += ["", f"--- Attachment: {a.filename or '(unnamed)'} ({a.content_type}, {a.size} bytes) ---"]
        lines.append(a.text or (f"[no text: {a.error}]" if a.error else "[no text]"))
    return "\n".join(lines).rstrip("\n") + "\n"


def _utc(d: datetime) -> str:
    return d.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _HashingWriter:
    """Copies into a zip entry while hashing, so listed files need no second read."""

    def __init__(self, zf: zipfile.ZipFile, name: str, when: tuple[int, int, int, int, int, int]) -> None:
        info = zipfile.ZipInfo(name, date_time=when)
        info.compress_type = zipfile.ZIP_DEFLATED
        self._fh = zf.open(info, "w", force_zip64=True)
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self._fh.write(data)
        self.sha256.update(data)
        self.size += len(data)

    def close(self) -> None:
        self._fh.close()


class BundleWriter:
    """Writes one bundle; see :func:`export_bundle`."""

    def __init__(
        self,
        archive: Any,
        *,
        case: str,
        out: Path,
        bates_prefix: str,
        reason: str,
        actor: str,
        progress: Progress | None,
    ) -> None:
        self.archive = archive
        self.repo = archive.repo
        self.case = case
        self.out = out
        self.bates_prefix = bates_prefix
        self.reason = reason
        self.actor = actor
        self.progress = progress or (lambda _d, _t: None)
        self.now = self.repo.clock()
        self.when = self.now.astimezone(UTC).timetuple()[:6]
        template = archive.cfg.naming.template
        if not template.lower().endswith(".eml"):
            template += ".eml"
        self.namer = UniqueNamer(NamingPolicy(template, archive.cfg.naming.max_length))
        self.listed: list[dict[str, Any]] = []

    # -- planning ------------------------------------------------------------------------
    def plan(self, selection: Selection) -> tuple[list[tuple[str, int]], list[dict[str, str]]]:
        """The exportable (id, ingest_seq) in Bates order (sent date, then id), and what is not exportable."""
        head = self.repo.catalog.head()
        skipped = list(selection.unresolved)
        keep: list[tuple[str, str, int]] = []
        conn = self.repo.catalog.conn
        known: set[str] = set()
        for chunk, marks in in_chunks(selection.ids):
            for oid, disposed_at, rule, seq, date in conn.execute(
                "SELECT o.id, o.disposed_at, o.disposed_rule, o.ingest_seq, COALESCE(m.date, '') FROM objects o "
                f"LEFT JOIN message_rows m ON m.obj = o.ingest_seq WHERE o.id IN ({marks})",
                chunk,
            ):
                known.add(oid)
                if disposed_at:
                    skipped.append(
                        {
                            "id": oid,
                            "reason": f"disposed of on {disposed_at} under rule {rule!r}; content destroyed",
                        }
                    )
                elif seq < head.seq:
                    keep.append((date, oid, seq))
                else:
                    skipped.append({"id": oid, "reason": "stored after the export began"})
        # every selected id is accounted for: selected = exported + not exported
        skipped.extend({"id": oid, "reason": "not in the archive"} for oid in selection.ids if oid not in known)
        keep.sort()
        return [(oid, seq) for _d, oid, seq in keep], skipped

    def collect_proofs(self, ids: set[str], out: IO[bytes]) -> dict[int, tuple[int, str]]:
        """Write the proofs of the messages ``ids``; returns ingest seq -> (its commit's seq, ingest time).

        Disclosed whole: the init record and its commit, every commit, and the ``ingest``,
        ``copy`` and ``tag`` records of ``ids``.  Each disclosed record starts a capture that
        runs to the end of its transaction, so the chain from it to the signed commit can be
        checked; the records in between that are not the exported messages' own are reduced
        to :func:`proof_form` (a bundle must not carry other clients' mail metadata).
        """
        head = self.repo.catalog.head()
        found: dict[int, tuple[int, str]] = {}
        pending: list[tuple[int, str]] = []
        capturing = False
        for line in self.repo.journal.committed(head):
            rec = line.record
            seq, type_ = rec["seq"], rec["type"]
            data = rec.get("data")
            own = type_ in _MESSAGE_RECORDS and isinstance(data, dict) and data.get("id") in ids
            if own or seq <= 1:
                capturing = True
                if type_ == "ingest" and own:
                    pending.append((seq, rec["time"]))
            if capturing:
                out.write(canonical(rec if own or seq <= 1 or type_ == "commit" else proof_form(rec)) + b"\n")
            if type_ == "commit":
                for s, t in pending:
                    found[s] = (seq, t)
                pending = []
                capturing = False
        return found

    # -- writing -------------------------------------------------------------------------
    def _add_file(self, zf: zipfile.ZipFile, name: str, src: Path | bytes) -> None:
        w = _HashingWriter(zf, name, self.when)
        try:
            if isinstance(src, bytes):
                w.write(src)
            else:
                with open(src, "rb") as fh:
                    while chunk := fh.read(1 << 20):
                        w.write(chunk)
        finally:
            w.close()
        self.listed.append({"path": name, "size": w.size, "sha256": w.sha256.hexdigest()})

    def _put(self, zf: zipfile.ZipFile, name: str, data: bytes) -> None:
        info = zipfile.ZipInfo(name, date_time=self.when)
        info.compress_type = zipfile.ZIP_DEFLATED
        zf.writestr(info, data)

    def write(self, selection: Selection) -> ExportResult:
        if self.out.exists():
            raise UsageError(f"{self.out} already exists; choose a new file name for the bundle.")
        if not self.out.parent.is_dir():
            raise UsageError(f"The folder {self.out.parent} does not exist.")
        keys = self.repo.require_keys()
        # The manifest's custodians, folders, clients and matters come from the catalog: a
        # catalog edited behind the journal's back must stop the export, not be signed.
        self.repo.require_verified("Nothing was exported")
        planned, skipped = self.plan(selection)
        if not planned:
            reasons = "; ".join(f"{x['id'][:12]}: {x['reason']}" for x in skipped[:3])
            more = f" (and {len(skipped) - 3} more)" if len(skipped) > 3 else ""
            raise NotFoundError(
                "Nothing to export: the selection matched no exportable message"
                + (f"; {len(skipped)} could not be exported: {reasons}{more}." if skipped else ".")
            )
        width = max(6, len(str(len(planned))))
        partial = self.out.with_name(self.out.name + ".partial")
        with (
            tempfile.TemporaryDirectory(prefix=".export-", dir=self.out.parent) as tmpdir,
            ExitStack() as stack,
        ):
            tmp = Path(tmpdir)
            with open(tmp / "proofs", "wb") as pf:
                proofs = self.collect_proofs({oid for oid, _s in planned}, pf)
            rows_f = stack.enter_context(open(tmp / "rows", "w", encoding="utf-8"))
            csv_f = stack.enter_context(open(tmp / "csv", "w", encoding="utf-8-sig", newline=""))
            dat_f = stack.enter_context(open(tmp / "dat", "w", encoding=DAT_ENCODING, newline=""))
            html_f = stack.enter_context(open(tmp / "html", "w", encoding="utf-8"))
            csv_w = csv.writer(csv_f)
            csv_w.writerow(COLUMN_NAMES)
            dat_w = DatWriter(dat_f, COLUMN_NAMES)
            zf = stack.enter_context(zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, allowZip64=True))
            number = 0
            first = last = ""
            exported: list[str] = []
            for done, (oid, seq) in enumerate(planned, 1):
                try:
                    raw = self.repo.read_raw(oid)
                except (NotFoundError, IntegrityError) as exc:
                    skipped.append({"id": oid, "reason": str(exc)})
                    continue
                if seq not in proofs:
                    skipped.append({"id": oid, "reason": "its ingest record is not covered by a signed checkpoint"})
                    continue
                number += 1
                exported.append(oid)
                bates = f"{self.bates_prefix}{number:0{width}d}"
                first = first or bates
                last = bates
                row = self._message(zf, oid, raw, bates, seq, proofs[seq])
                line = json.dumps(row, ensure_ascii=False)
                rows_f.write(("" if number == 1 else ",\n") + line)
                values = flat_row(row)
                csv_w.writerow(values)
                dat_w.write(values)
                html_f.write(_html_row(row))
                del raw
                self.progress(done, len(planned))
            if number == 0:
                raise NotFoundError("Nothing could be exported: " + "; ".join(s["reason"] for s in skipped[:3]))
            for f in (rows_f, csv_f, dat_f, html_f):
                f.close()
            self._add_file(zf, MANIFEST_CSV, tmp / "csv")
            self._add_file(zf, LOADFILE, tmp / "dat")
            self._add_file(zf, INDEX_HTML, _html_page(tmp / "html", tmp / "page", self.case, self.now, number))
            self._add_file(zf, PROOFS, tmp / "proofs")
            custody = self._custody(selection, number, skipped, first, last, keys.public_key)
            self._add_file(zf, CUSTODY, json.dumps(custody, ensure_ascii=False, indent=2).encode("utf-8") + b"\n")
            manifest_sha = self._manifest(zf, tmp / "rows", number, first, last)
            signature = keys.sign(signature_message(self.repo.archive_id, manifest_sha))
            sig_doc = {
                "format": 1,
                "algorithm": "ed25519",
                "archive_id": self.repo.archive_id,
                "public_key": base64.b64encode(keys.public_key).decode(),
                "fingerprint": fingerprint(keys.public_key),
                "signed_file": MANIFEST_JSON,
                "manifest_sha256": manifest_sha,
                "signature": base64.b64encode(signature).decode(),
            }
            self._put(zf, SIGNATURE, json.dumps(sig_doc, indent=2).encode() + b"\n")
            zf.close()
            with self.repo.transaction(self.actor) as tx:
                tx.event(
                    "export",
                    {
                        "case": self.case,
                        "reason": self.reason,
                        "selection": {"kind": selection.kind, "value": selection.value},
                        "bundle": self.out.name,
                        "manifest_sha256": manifest_sha,
                        "exported": number,
                        "not_exported": len(skipped),
                        "bates_first": first,
                        "bates_last": last,
                        # which messages left the archive, in Bates order: the audit trail must
                        # answer "who exported message X" after the bundle itself is gone
                        "ids": exported,
                    },
                )
            os.replace(partial, self.out)
        return ExportResult(self.out, number, skipped, manifest_sha, first, last, fingerprint(keys.public_key))

    def _message(
        self, zf: zipfile.ZipFile, oid: str, raw: bytes, bates: str, seq: int, proof: tuple[int, str]
    ) -> dict[str, Any]:
        a = self.archive
        prov = self.repo.catalog.provenance(oid)
        parsed = a.parse(raw, received_of(proof[1], prov))  # proof[1]: the ingest record's time
        tags = a.tags_of(oid)
        name = self.namer.assign(fields_of(oid, parsed, tags.client, tags.matters, prov))
        native = f"natives/{name}"
        text_path = f"text/{name[:-4]}.txt"
        text = message_text(parsed).encode("utf-8")
        self._put(zf, native, raw)
        self._put(zf, text_path, text)
        received = next((p["internaldate"] for p in prov if p.get("internaldate")), None)
        return {
            "doc_id": bates,
            "bates_begin": bates,
            "bates_end": bates,
            "beg_attach": bates,
            "end_attach": bates,
            "sha256": oid,
            "message_id": parsed.message_id,
            "mih": hashlib.md5(parsed.message_id.encode("utf-8")).hexdigest() if parsed.message_id else "",
            "sent": "" if parsed.date_is_fallback else _utc(parsed.date),
            "received": _utc(parse_iso(received)) if received else "",
            "archived_at": proof[1],
            "from": ", ".join(map(str, parsed.from_)),
            "to": [str(x) for x in parsed.to],
            "cc": [str(x) for x in parsed.cc],
            "bcc": [str(x) for x in parsed.bcc],
            "subject": parsed.subject,
            "client": tags.client,
            "matters": list(tags.matters),
            "provenance": [{k: p.get(k) or "" for k in PROVENANCE_KEYS} for p in prov],
            "size": len(raw),
            "md5": hashlib.md5(raw).hexdigest(),
            "sha1": hashlib.sha1(raw).hexdigest(),
            "native_path": native,
            "text_path": text_path,
            "text_sha256": hashlib.sha256(text).hexdigest(),
            "attachments": [
                {"filename": x.filename, "content_type": x.content_type, "size": x.size, "sha256": x.sha256}
                for x in parsed.attachments
            ],
            "parse_errors": list(parsed.parse_errors),
            "ingest_seq": seq,
            "commit_seq": proof[0],
        }

    def _custody(
        self,
        selection: Selection,
        exported: int,
        skipped: list[dict[str, str]],
        first: str,
        last: str,
        public_key: bytes,
    ) -> dict[str, Any]:
        head = self.repo.catalog.head()
        return {
            "format": BUNDLE_FORMAT,
            "tool": {"name": TOOL_NAME, "version": __version__},
            "archive_id": self.repo.archive_id,
            "public_key_fingerprint": fingerprint(public_key),
            "user": self.actor,
            "host": socket.gethostname(),
            "time": iso(self.now),
            "case": self.case,
            "reason": self.reason,
            "selection": {"kind": selection.kind, "value": selection.value},
            "journal_head": {"seq": head.seq, "hash": head.hash},
            "counts": {
                "selected": len(selection.ids) + len(selection.unresolved),
                "exported": exported,
                "not_exported": len(skipped),
            },
            "bates": {"prefix": self.bates_prefix, "first": first, "last": last},
            "not_exported": skipped,
        } | ({"query_note": QUERY_NOTE} if selection.kind == "query" else {}) | (
            {"notes": selection.notes} if selection.notes else {}
        )

    def _manifest(self, zf: zipfile.ZipFile, rows: Path, count: int, first: str, last: str) -> str:
        header = {
            "format": BUNDLE_FORMAT,
            "archive_id": self.repo.archive_id,
            "case": self.case,
            "created": iso(self.now),
            "bates_prefix": self.bates_prefix,
            "bates_first": first,
            "bates_last": last,
            "count": count,
            "columns": list(COLUMN_NAMES),
            "files": self.listed,
        }
        w = _HashingWriter(zf, MANIFEST_JSON, self.when)
        try:
            w.write(json.dumps(header, ensure_ascii=False, indent=1)[:-2].encode("utf-8") + b",\n" + ROWS_START + b"\n")
            with open(rows, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    w.write(chunk)
            w.write(b"\n" + ROWS_END + b"\n}\n")
        finally:
            w.close()
        return w.sha256.hexdigest()


def _html_row(row: dict[str, Any]) -> str:
    e = html.escape
    return (
        f"<tr><td>{e(row['doc_id'])}</td><td>{e(row['sent'] or row['archived_at'])}</td><td>{e(row['from'])}</td>"
        f"<td>{e(row['subject'])}</td><td>{e(row['client'])} {e(', '.join(row['matters']))}</td>"
        f'<td><a href="{e(quote(row["native_path"]))}">native</a></td>'
        f'<td><a href="{e(quote(row["text_path"]))}">text</a></td></tr>\n'
    )


def _html_page(rows: Path, out: Path, case: str, now: datetime, count: int) -> Path:
    e = html.escape
    with open(out, "w", encoding="utf-8") as fh:
        fh.write(
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
            f"<title>Evidence bundle: {e(case)}</title>"
            "<style>body{font-family:sans-serif}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:2px 6px;vertical-align:top}</style></head><body>\n"
            f"<h1>Evidence bundle: {e(case)}</h1>\n<p>{count} messages, exported {e(iso(now))}. "
            "Verify with <code>archiver bundle verify</code>; see manifest.json and custody.json.</p>\n"
            "<table><thead><tr><th>Bates</th><th>Date (UTC)</th><th>From</th><th>Subject</th>"
            "<th>Client / matter</th><th>Native</th><th>Text</th></tr></thead><tbody>\n"
        )
        with open(rows, encoding="utf-8") as src:
            shutil.copyfileobj(src, fh)
        fh.write("</tbody></table></body></html>\n")
    return out


def export_bundle(
    archive: Any,
    selection: Selection,
    *,
    case: str,
    out: Path,
    bates_prefix: str = "",
    reason: str = "",
    actor: str = "system",
    progress: Progress | None = None,
) -> ExportResult:
    """Write an evidence bundle of the selected messages to ``out`` and journal the export."""
    if not case.strip():
        raise UsageError("--case must name the case or matter the export is for.")
    if any(c in bates_prefix for c in '<>:"/\\|?*') or any(ord(c) < 32 for c in bates_prefix):
        raise UsageError(f"The Bates prefix {bates_prefix!r} may not contain path or control characters.")
    writer = BundleWriter(
        archive, case=case, out=out, bates_prefix=bates_prefix, reason=reason, actor=actor, progress=progress
    )
    partial = out.with_name(out.name + ".partial")
    try:
        return writer.write(selection)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        # an unwritable folder, a full disk: one sentence, and nothing was journalled
        where = exc.filename or out.parent
        raise ArchiverError(
            f"Cannot write the bundle {out}: {exc.strerror or exc} ({where}); nothing was exported."
        ) from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


__all__ = [
    "BundleWriter",
    "ExportResult",
    "Selection",
    "export_bundle",
    "message_text",
    "select_ids",
    "select_matter",
    "select_query",
]
