"""Applying retention to an archive: plan (a dry run), apply (dispose of what is due), approve (review).

Disposal is crypto-shredding (docs/retention.md): for each message due, a ``dispose``
tombstone (id, hash, rule, reason) is journalled and, once committed, its wrapped data key is
destroyed (``Transaction.dispose``), so the ciphertext left in the append-only segments can
never be decrypted again; the message is deleted from the index and the index segments that
held it are rewritten (``merge_and_gc``) so its text is physically gone.  Each apply ends with
a disposition certificate signed with the archive's Ed25519 key, journalled as a
``disposition`` record and saved under ``certificates/``.

Before deciding anything, plan and apply bring the index up to date (query rules and query
holds are evaluated through it) and journal the rules when they changed, refusing a change
that would weaken a compliance-mode rule.  Everything happens under the archive's writer
lock, so no ingest or hold change interleaves with a decision and its execution.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archiver.clock import iso, parse_iso
from archiver.crypto.keys import fingerprint, verify_signature
from archiver.errors import ArchiverError, NotFoundError, PolicyError
from archiver.logging import get_logger
from archiver.model import IndexDoc
from archiver.policies.confirm import confirm
from archiver.policies.holds import Hold, hold_matches, list_holds, matching
from archiver.policies.matters import closures as matter_closures
from archiver.policies.retention import Copy, Decision, MessageRecord, Outcome, decide
from archiver.policies.rules import RuleSet, check_change, load_rules, parse_rules
from archiver.store.journal import canonical
from archiver.store.segments import fsync_dir

if TYPE_CHECKING:
    from archiver.archive import Archive

CERT_CONTEXT = b"archiver/disposition-certificate/v1\x00"
CERT_FORMAT = "archiver/disposition-certificate/v1"
BATCH = 500
_log = get_logger("archiver.retention")


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanItem:
    """One message in a plan, with what decided it."""

    id: str
    decision: str
    rule: str
    action: str
    mode: str
    end: str | None
    reason: str
    holds: tuple[str, ...] = ()
    subject: str = ""
    date: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "decision": self.decision,
            "rule": self.rule,
            "action": self.action,
            "mode": self.mode,
            "end": self.end,
            "reason": self.reason,
            "holds": list(self.holds),
            "subject": self.subject,
            "date": self.date,
        }


@dataclass
class Plan:
    """What retention would do at ``as_of``: due messages, review items, and what holds keep."""

    as_of: datetime
    rules_fingerprint: str
    rules_file: str
    dispose: list[PlanItem] = field(default_factory=list)
    review: list[PlanItem] = field(default_factory=list)
    #: messages a hold keeps although their retention has ended (the holds' effect).
    held: list[PlanItem] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    holds: list[Hold] = field(default_factory=list)
    #: what the index answered to each query of the standing holds and rules (query -> ids):
    #: confirm.confirm checks the messages due against the same queries on their own.
    index_matches: dict[str, set[str]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "as_of": iso(self.as_of),
            "rules_file": self.rules_file,
            "rules_fingerprint": self.rules_fingerprint,
            "counts": self.counts,
            "dispose": [i.to_json() for i in self.dispose],
            "review": [i.to_json() for i in self.review],
            "held": [i.to_json() for i in self.held],
            "holds": [h.to_json() for h in self.holds if h.active],
        }


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


# -- rules ------------------------------------------------------------------------------------


def rules_path(archive: Archive) -> Path:
    return archive.cfg.retention.rules_file


def last_journalled_rules(archive: Archive) -> tuple[RuleSet, dict[str, Any]] | None:
    """The rules as last journalled (and when, by whom), or None before the first plan or apply."""
    row = archive.repo.catalog.conn.execute(
        "SELECT rules, fingerprint, time, actor, seq FROM retention_rules ORDER BY seq DESC LIMIT 1"
    ).fetchone()
    if row is None:
        return None
    info = {"fingerprint": row[1], "time": row[2], "actor": row[3], "seq": row[4]}
    return parse_rules(json.loads(row[0]), f"journal record {row[4]}"), info


def sync_rules(archive: Archive, rules: RuleSet, *, actor: str) -> list[str]:
    """Journal the rules when they differ from the last journalled ones; PolicyError if that weakens compliance."""
    last = last_journalled_rules(archive)
    if last is not None and last[1]["fingerprint"] == rules.fingerprint:
        return []
    changes = ["initial rules"] if last is None else check_change(last[0], rules)
    with archive.repo.transaction(actor) as tx:
        tx.event(
            "retention_rules",
            {
                "fingerprint": rules.fingerprint,
                "file": str(rules_path(archive)),
                "changes": changes,
                "rules": rules.canonical(),
            },
        )
    return changes


# -- building records ---------------------------------------------------------------------------


def _dt(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        d = parse_iso(text)
    except ValueError:
        return None
    return d if d.tzinfo else d.replace(tzinfo=UTC)


def _domain(addr: str) -> str:
    return addr.rpartition("@")[2].lower() if "@" in addr else ""


_OBJECTS_SQL = (
    "SELECT o.id, o.ingested_at, t.client, t.matters, m.date, m.from_addr, m.to_addrs, m.cc_addrs, m.bcc_addrs,"
    " m.subject FROM objects o LEFT JOIN tags t ON t.id = o.id LEFT JOIN message_rows m ON m.obj = o.ingest_seq"
    " WHERE o.disposed_at IS NULL {where} ORDER BY o.id"
)
_PROV_SQL = (
    "SELECT p.id, p.source, p.account, p.folder, p.internaldate, p.fetched_at, p.flags, p.envelope_recipients"
    " FROM provenance p JOIN objects o ON o.id = p.id WHERE o.disposed_at IS NULL {where} ORDER BY p.id, p.seq"
)


@dataclass(frozen=True, slots=True)
class LoadedMessage:
    record: MessageRecord
    addresses: frozenset[str]
    subject: str
    date: str


def iter_records(
    archive: Archive, query_rules: dict[str, set[str]], ids: Sequence[str] | None = None
) -> Iterator[LoadedMessage]:
    """Every live message (or those in ``ids``) as a MessageRecord, streaming (a merge join by id)."""
    conn = archive.repo.catalog.conn
    if ids is not None:
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            yield from _merge(
                conn.execute(_OBJECTS_SQL.format(where=f"AND o.id IN ({marks})"), chunk),
                conn.execute(_PROV_SQL.format(where=f"AND p.id IN ({marks})"), chunk),
                query_rules,
            )
        return
    yield from _merge(
        conn.execute(_OBJECTS_SQL.format(where="")), conn.execute(_PROV_SQL.format(where="")), query_rules
    )


def _merge(objects: Iterable[Any], provs: Iterable[Any], query_rules: dict[str, set[str]]) -> Iterator[LoadedMessage]:
    prov_iter = iter(provs)
    pending = next(prov_iter, None)
    for oid, ingested_at, client, matters_json, date, from_addr, to_j, cc_j, bcc_j, subject in objects:
        rows = []
        while pending is not None and pending[0] < oid:
            pending = next(prov_iter, None)
        while pending is not None and pending[0] == oid:
            rows.append(pending)
            pending = next(prov_iter, None)
        ingested = _dt(ingested_at) or datetime.fromtimestamp(0, UTC)
        addresses: set[str] = set()
        to_domains: set[str] = set()
        recipients = [a[0] for j in (to_j, cc_j, bcc_j) if j for a in json.loads(j)]
        copies = []
        for _id, source, account, folder, internaldate, fetched_at, flags_j, env_j in rows:
            envelope = [str(x).lower() for x in json.loads(env_j or "[]")]
            recipients.extend(envelope)
            if account:
                addresses.add(str(account).lower())
            labels = tuple(f for f in json.loads(flags_j or "[]") if not str(f).startswith("\\"))
            copies.append(
                Copy(
                    source=source,
                    account=account,
                    folder=folder,
                    labels=labels,
                    received=_dt(internaldate) or _dt(fetched_at) or ingested,
                )
            )
        for r in recipients:
            addresses.add(r.lower())
            if domain := _domain(r):
                to_domains.add(domain)
        if from_addr:
            addresses.add(from_addr.lower())
        record = MessageRecord(
            id=oid,
            client=client or "unfiled",
            matters=tuple(json.loads(matters_json)) if matters_json else (),
            sent=_dt(date) or ingested,
            from_domains=frozenset({_domain(from_addr)} if from_addr and _domain(from_addr) else ()),
            to_domains=frozenset(to_domains),
            copies=tuple(copies),
            query_rules=frozenset(name for name, hit in query_rules.items() if oid in hit),
        )
        yield LoadedMessage(record, frozenset(addresses), subject or "", date or "")


# -- planning ---------------------------------------------------------------------------------


def _prepare(archive: Archive, actor: str) -> RuleSet:
    """Under the lock: recover, bring the index up to date, load and journal the rules."""
    repo = archive.repo
    repo.recover()
    rules = load_rules(rules_path(archive))
    sync_rules(archive, rules, actor=actor)
    _reconcile_index(archive)
    archive.catch_up()
    if _has_queries(archive, rules) and (left := archive.repo.catalog.unindexed(1)):
        raise PolicyError(
            f"Message {left[0][:12]} (and perhaps others) could not be indexed, so the query holds and "
            "rules cannot be checked against it: nothing was decided. Run `archiver verify --full` and "
            "`archiver reindex`."
        )
    return rules


def _has_queries(archive: Archive, rules: RuleSet) -> bool:
    """Do any standing holds or retention rules select messages by search query?"""
    holds = list_holds(archive.repo.catalog, active_only=True)
    return any(h.kind == "query" for h in holds) or any(r.match.query is not None for r in rules.rules)


def _check_journal_state(archive: Archive) -> None:
    """Refuse to dispose of anything in an archive that does not verify.

    The holds, tags, copies and earlier disposals a plan reads are the catalog's copies of
    the signed journal; `verify` compares them (and the segments and keys) with it.  An
    edited catalog, say a deleted hold row, must stop a disposal, not steer it.
    """
    archive.repo.require_verified("Nothing was disposed", PolicyError)


class HoldCheck:
    """Which active holds cover a message: the holds read once, each query hold run once.

    ``ids`` limits the query holds' searches to those messages (see :func:`matching`).
    ``lenient`` (the web's message page) lets a query that cannot run cover nothing instead
    of failing: a status display must not stop a message from being shown.  A retention
    run is strict, since a hold it cannot evaluate must stop it.
    """

    def __init__(self, archive: Archive, ids: Sequence[str] | None = None, *, lenient: bool = False) -> None:
        self.holds = list_holds(archive.repo.catalog, active_only=True)
        self._ids = {h.case: _matching(archive, h.value, ids, lenient) for h in self.holds if h.kind == "query"}

    def query_matches(self) -> dict[str, set[str]]:
        """The ids the index matched for each query hold, by query."""
        return {h.value: self._ids[h.case] for h in self.holds if h.kind == "query"}

    def covering(self, oid: str, client: str, matters: Sequence[str], addresses: Collection[str]) -> list[Hold]:
        return [
            h
            for h in self.holds
            if hold_matches(
                h, client=client, matters=matters, addresses=addresses, query_ids=self._ids.get(h.case, ()), oid=oid
            )
        ]


def _matching(archive: Archive, query: str, ids: Sequence[str] | None, lenient: bool) -> set[str]:
    try:
        return matching(archive, query, ids)
    except ArchiverError:
        if lenient:
            return set()
        raise


def evaluate(
    archive: Archive,
    rules: RuleSet,
    now: datetime,
    ids: Sequence[str] | None = None,
    *,
    holds: HoldCheck | None = None,
    lenient: bool = False,
    answers: dict[str, set[str]] | None = None,
) -> Iterator[tuple[LoadedMessage, Outcome]]:
    """The retention decision for every live message (or those in ``ids``), holds included.

    The one place a decision is made: the plan, approvals and the web's message page all
    come here.  ``holds`` reuses a HoldCheck made for the same ``ids``; ``lenient`` as there.
    ``answers`` receives what the index matched for each hold and rule query, for a disposal
    to re-check the messages against (confirm.confirm) without searching again.
    """
    check = holds if holds is not None else HoldCheck(archive, ids, lenient=lenient)
    by_query = {q: _matching(archive, q, ids, lenient) for r in rules.rules if (q := r.match.query) is not None}
    qrules = {r.name: by_query[r.match.query] for r in rules.rules if r.match.query is not None}
    if answers is not None:
        answers.update(check.query_matches())
        answers.update(by_query)
    closed = matter_closures(archive.repo.catalog)
    for loaded in iter_records(archive, qrules, ids):
        rec = loaded.record
        held = [h.case for h in check.covering(rec.id, rec.client, rec.matters, loaded.addresses)]
        yield loaded, decide(rec, rules, now, closures=closed, holds=held)


def _item(loaded: LoadedMessage, out: Outcome) -> PlanItem:
    return PlanItem(
        id=out.id,
        decision=out.decision.value,
        rule=out.rule,
        action=out.action,
        mode=out.mode,
        end=iso(out.end) if out.end else None,
        reason=out.reason,
        holds=out.holds,
        subject=loaded.subject,
        date=loaded.date,
    )


def _plan_locked(archive: Archive, now: datetime, actor: str) -> Plan:
    rules = _prepare(archive, actor)
    plan = Plan(as_of=now, rules_fingerprint=rules.fingerprint, rules_file=str(rules_path(archive)))
    plan.holds = list_holds(archive.repo.catalog)
    counts = {"messages": 0, "keep": 0, "dispose": 0, "review": 0, "hold": 0, "held_past_end": 0, "waiting": 0}
    for loaded, out in evaluate(archive, rules, now, answers=plan.index_matches):
        counts["messages"] += 1
        counts[out.decision.value] += 1
        if out.end is None and _waiting(out):
            counts["waiting"] += 1
        if out.decision is Decision.DISPOSE:
            plan.dispose.append(_item(loaded, out))
        elif out.decision is Decision.REVIEW:
            plan.review.append(_item(loaded, out))
        elif out.decision is Decision.HOLD and out.end is not None and out.end <= now:
            counts["held_past_end"] += 1
            plan.held.append(_item(loaded, out))
    plan.counts = counts
    return plan


def _waiting(out: Outcome) -> bool:
    """Kept because an event (a matter closing) has not happened yet."""
    return any(c.start is None for c in out.copies)


def plan(archive: Archive, now: datetime, actor: str = "system") -> Plan:
    """A dry run at ``now``: what would be disposed (and under which rule), reviewed, and kept by holds.

    Nothing is disposed, but the rules are journalled when they changed (and refused when
    that would weaken a compliance-mode rule), and the index is brought up to date.
    """
    with archive.repo.lock():
        return _plan_locked(archive, now, actor)


# -- disposing --------------------------------------------------------------------------------


def _reconcile_index(archive: Archive) -> int:
    """Make the index hold exactly the live messages the catalog says it holds.

    A disposed message still in it (a crash between the two steps) is deleted.  A live
    message the catalog marks as indexed but the index lacks (the index folder deleted,
    which docs/format.md allows, or documents removed) is marked unindexed, for
    ``catch_up`` to index again: query holds are evaluated through the index, and a
    message missing from it would otherwise escape every one of them.  Returns how many
    documents were deleted.
    """
    catalog = archive.repo.catalog
    live = set(catalog.live_ids())
    try:
        in_index = archive.index.all_ids()
    except Exception:
        in_index = set()  # no usable index: catch_up rebuilds it
    stale = in_index - live
    if stale:
        archive.index.delete(stale)
        archive.index.commit()
    missing = [i for i in catalog.indexed_live_ids() if i not in in_index]
    if missing:
        _log.warning("index_missing_messages", count=len(missing))
        catalog.mark_indexed(missing, 0)
    return len(stale)


def _reload_docs(archive: Archive) -> Any:
    def reload(ids: Sequence[str]) -> list[IndexDoc]:
        with archive.workers() as w:
            return archive.docs_for([(oid, p) for oid, p, _err in archive.reparse(ids, w) if p is not None])

    return reload


def _dispose(
    archive: Archive,
    items: Sequence[PlanItem],
    *,
    now: datetime,
    actor: str,
    kind: str,
    rules_fingerprint: str,
    counts: dict[str, int],
    index_matches: Mapping[str, Collection[str]],
) -> Certificate:
    """Shred ``items`` in batches, purge the index, then sign, journal and save the certificate.

    First the messages themselves must confirm what the plan read from the catalog and the
    index (:mod:`archiver.policies.confirm`); those that do not are kept and listed.
    """
    repo = archive.repo
    started = iso(repo.clock())
    confirmation = confirm(archive, [it.id for it in items], index_matches)
    for oid, why in confirmation.kept:
        _log.warning("disposal_withheld", id=oid, reason=why)
    due = set(confirmation.due)
    items = [it for it in items if it.id in due]
    for start in range(0, len(items), BATCH):
        batch = items[start : start + BATCH]
        with repo.transaction(actor) as tx:
            for it in batch:
                reason = f"{kind}: retention ended {it.end[:10] if it.end else '-'} ({it.reason})"
                tx.dispose(it.id, it.rule, reason)
        archive.index.delete([it.id for it in batch])
        archive.index.commit()
    if items:
        _reconcile_index(archive)
        archive.index.merge_and_gc(_reload_docs(archive))
    disposed = []
    for it in items:
        row = repo.catalog.object(it.id)
        disposed.append(
            {
                "id": it.id,
                "sha256": it.id,
                "rule": it.rule,
                "end": it.end,
                "disposed_at": row.disposed_at if row else None,
            }
        )
    head = repo.catalog.head()
    by_rule: dict[str, int] = {}
    for it in items:
        by_rule[it.rule] = by_rule.get(it.rule, 0) + 1
    keys = repo.require_keys()
    body = {
        "type": "disposition",
        "kind": kind,
        "archive_id": repo.archive_id,
        "public_key": base64.b64encode(keys.public_key).decode(),
        "public_key_fingerprint": fingerprint(keys.public_key),
        "as_of": iso(now),
        "started_at": started,
        "finished_at": iso(repo.clock()),
        "actor": actor,
        "rules_fingerprint": rules_fingerprint,
        "counts": {**counts, "disposed": len(items), "by_rule": by_rule, "withheld": len(confirmation.kept)},
        "disposed": disposed,
        "withheld": [{"id": oid, "reason": why} for oid, why in confirmation.kept],
        "journal": {"seq": head.seq - 1, "hash": head.hash},
    }
    signature = base64.b64encode(keys.sign(CERT_CONTEXT + canonical(body))).decode()
    cert = Certificate(body=body, signature=signature)
    digest = hashlib.sha256(canonical(cert.to_json())).hexdigest()
    name = f"disposition-{repo.clock().strftime('%Y%m%dT%H%M%SZ')}-{head.seq:08d}.json"
    with repo.transaction(actor) as tx:
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


def apply(archive: Archive, now: datetime, actor: str = "system") -> Certificate:
    """Dispose of every message whose retention has ended at ``now`` under a ``delete`` rule.

    Held messages and review items are not touched.  Returns the signed certificate
    (``.disposed`` is the count), which is journalled and saved under ``certificates/``.
    """
    with archive.repo.lock():
        _check_journal_state(archive)
        p = _plan_locked(archive, now, actor)
        counts = {k: p.counts[k] for k in ("messages", "review", "hold", "held_past_end")}
        return _dispose(
            archive,
            p.dispose,
            now=now,
            actor=actor,
            kind="retention",
            rules_fingerprint=p.rules_fingerprint,
            counts=counts,
            index_matches=p.index_matches,
        )


def review(archive: Archive, now: datetime, actor: str = "system") -> list[PlanItem]:
    """Messages whose retention ended under a ``review`` rule, waiting for a person's approval."""
    return plan(archive, now, actor).review


def approve(archive: Archive, ids: Sequence[str], rule: str, *, now: datetime, actor: str) -> Certificate:
    """Dispose of reviewed messages; each must be due for review under ``rule`` right now.

    Refused as a whole (nothing disposed) when any id is held, not yet due, decided by another
    rule, or unknown: compliance periods cannot be cut short by approving early.
    """
    with archive.repo.lock():
        _check_journal_state(archive)
        rules = _prepare(archive, actor)
        if rules.rule(rule) is None:
            raise PolicyError(f"There is no retention rule named {rule!r} in {rules_path(archive)}.")
        wanted = [archive.repo.resolve(i) for i in ids]
        answers: dict[str, set[str]] = {}
        found = {
            loaded.record.id: (loaded, out) for loaded, out in evaluate(archive, rules, now, wanted, answers=answers)
        }
        problems = []
        items = []
        for oid in dict.fromkeys(wanted):
            if oid not in found:
                problems.append(f"{oid[:12]} was already disposed of")
                continue
            loaded, out = found[oid]
            if out.decision is Decision.HOLD:
                problems.append(f"{oid[:12]} is under legal hold ({', '.join(out.holds)})")
            elif out.decision is not Decision.REVIEW:
                problems.append(f"{oid[:12]} is not awaiting review ({out.reason})")
            elif out.rule != rule:
                problems.append(f"{oid[:12]} is awaiting review under rule {out.rule!r}, not {rule!r}")
            else:
                items.append(_item(loaded, out))
        if problems:
            raise PolicyError("Nothing was disposed: " + "; ".join(problems) + ".")
        if not items:
            raise NotFoundError("No messages to approve.")
        return _dispose(
            archive,
            items,
            now=now,
            actor=actor,
            kind="review-approved",
            rules_fingerprint=rules.fingerprint,
            counts={"approved": len(items)},
            index_matches=answers,
        )


# -- certificates -------------------------------------------------------------------------------


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
        if row is None or not row.disposed_at:
            problems.append(f"message {d.get('id')} is not disposed of in the archive")
        elif archive.repo.keystore.get(row.id) is not None:
            problems.append(f"message {row.id} still has a data key")
    return problems
