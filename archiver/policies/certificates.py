"""Disposition certificates: signed, journalled and saved records of what a run disposed of.

Every apply and approve ends with one (kind ``retention`` or ``review-approved``), and so does
the recovery of a run that was interrupted after some of its disposals were committed (kind
``recovered``, see archiver/policies/recovery.py), so that no disposal is ever left without a
certificate naming it.  The format is in docs/retention.md ("Certificates").
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archiver.clock import iso
from archiver.crypto.keys import fingerprint, verify_signature
from archiver.errors import PolicyError
from archiver.store.journal import canonical
from archiver.store.segments import fsync_dir

if TYPE_CHECKING:
    from archiver.archive import Archive

CERT_CONTEXT = b"archiver/disposition-certificate/v1\x00"
CERT_FORMAT = "archiver/disposition-certificate/v1"


@dataclass
class Certificate:
    """A signed disposition certificate (``body`` is what the signature covers)."""

    body: dict[str, Any]
    signature: str
    path: Path | None = None

    @property
    def disposed(self) -> int:
        return int(self.body["counts"]["disposed"])

    @property
    def ids(self) -> list[str]:
        return [d["id"] for d in self.body["disposed"]]

    def to_json(self) -> dict[str, Any]:
        return {"format": CERT_FORMAT, "algorithm": "ed25519", "certificate": self.body, "signature": self.signature}


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    """What a certificate says about the run it certifies, besides its disposals."""

    kind: str
    actor: str
    as_of: datetime
    started_at: str
    rules_fingerprint: str
    counts: dict[str, Any]
    #: further keys of the body (a recovered run's record, a stopped run's remainder, rule findings).
    extra: dict[str, Any]


def issue(archive: Archive, run: Run, disposed: list[dict[str, Any]], withheld: list[dict[str, Any]]) -> Certificate:
    """Sign, journal (a ``disposition`` record) and save the certificate of a run."""
    repo = archive.repo
    head = repo.catalog.head()
    keys = repo.require_keys()
    by_rule: dict[str, int] = {}
    for d in disposed:
        by_rule[d["rule"]] = by_rule.get(d["rule"], 0) + 1
    body = {
        "type": "disposition",
        "kind": run.kind,
        "archive_id": repo.archive_id,
        "public_key": base64.b64encode(keys.public_key).decode(),
        "public_key_fingerprint": fingerprint(keys.public_key),
        "as_of": iso(run.as_of),
        "started_at": run.started_at,
        "finished_at": iso(repo.clock()),
        "actor": run.actor,
        "rules_fingerprint": run.rules_fingerprint,
        "counts": {**run.counts, "disposed": len(disposed), "by_rule": by_rule, "withheld": len(withheld)},
        "disposed": disposed,
        "withheld": withheld,
        "journal": {"seq": head.seq - 1, "hash": head.hash},
        **run.extra,
    }
    signature = base64.b64encode(keys.sign(CERT_CONTEXT + canonical(body))).decode()
    cert = Certificate(body=body, signature=signature)
    digest = hashlib.sha256(canonical(cert.to_json())).hexdigest()
    name = f"disposition-{repo.clock().strftime('%Y%m%dT%H%M%SZ')}-{head.seq:08d}.json"
    with repo.transaction(run.actor) as tx:
        tx.event("disposition", {"file": name, "sha256": digest, "certificate": body, "signature": signature})
    cert.path = _save(repo.path / "certificates", name, cert.to_json())
    return cert


def _save(folder: Path, name: str, doc: dict[str, Any]) -> Path:
    folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / name
    tmp = folder / (name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(folder)
    return path


def load_certificate(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PolicyError(f"{path} is not a readable certificate: {exc}.") from None
    if not isinstance(doc, dict) or doc.get("format") != CERT_FORMAT or not isinstance(doc.get("certificate"), dict):
        raise PolicyError(f"{path} is not a disposition certificate ({CERT_FORMAT}).")
    return doc


def verify_certificate(doc: dict[str, Any], public_key: bytes) -> list[str]:
    """Problems with a certificate (empty when it is genuine): signature and key under ``public_key``."""
    problems = []
    body = doc.get("certificate")
    if not isinstance(body, dict):
        return ["the document holds no certificate"]
    try:
        sig = base64.b64decode(str(doc.get("signature", "")), validate=True)
    except ValueError:
        return ["the signature is not base64"]
    if body.get("public_key") != base64.b64encode(public_key).decode():
        problems.append("the certificate names another public key than the one it is checked against")
    if not verify_signature(public_key, sig, CERT_CONTEXT + canonical(body)):
        problems.append("the signature does not verify: the certificate was altered or not signed by this archive")
    disposed = body.get("disposed")
    counts = body.get("counts")
    if not isinstance(disposed, list) or not isinstance(counts, dict) or counts.get("disposed") != len(disposed):
        problems.append("the disposed count does not match the list of disposed messages")
    return problems


def check_against_archive(archive: Archive, doc: dict[str, Any]) -> list[str]:
    """Problems between a certificate and the archive's journal: journalled, and every id disposed."""
    problems = []
    body = doc["certificate"]
    if body.get("archive_id") != archive.repo.archive_id:
        problems.append("the certificate belongs to another archive")
        return problems
    rows = archive.repo.catalog.conn.execute("SELECT data FROM events WHERE type='disposition'").fetchall()
    if not any(json.loads(r[0]).get("signature") == doc.get("signature") for r in rows):
        problems.append("the journal holds no disposition record for this certificate")
    for d in body.get("disposed", []):
        row = archive.repo.catalog.object(str(d.get("id", "")))
        if row is not None and not row.disposed_at and _stored_again(archive, row.id, row.ingest_seq):
            continue  # a copy that arrived after the disposal: a new object under a new key
        if row is None or not row.disposed_at:
            problems.append(f"message {d.get('id')} is not disposed of in the archive")
        elif archive.repo.keystore.get(row.id) is not None:
            problems.append(f"message {row.id} still has a data key")
    return problems


def _stored_again(archive: Archive, oid: str, ingest_seq: int) -> bool:
    """Whether the live object ``oid`` was ingested after a ``dispose`` record of it (the store keeps
    a disposed message that arrives again: docs/format.md 6.4, ``ingest``)."""
    row = archive.repo.catalog.conn.execute(
        "SELECT MAX(seq) FROM events WHERE type = 'dispose' AND json_extract(data, '$.id') = ?", (oid,)
    ).fetchone()
    return row is not None and row[0] is not None and ingest_seq > row[0]
