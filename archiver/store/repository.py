"""The archive repository: the transactional put / get API over segments, journal,
keystore and catalog, with the commit protocol and crash recovery.

Commit protocol (docs/format.md, "Commit"), in this order, each step durable
before the next begins:

1. append the objects to the active segment and fsync it (and the segments folder
   when a new segment file was created);
2. insert the wrapped data keys into the keystore (SQLite, synchronous=FULL);
3. append the transaction's journal records and a signed ``commit`` record naming
   the segment end, then fsync the journal: this is the commit point;
4. apply the records to the catalog and move its journal head (one SQLite
   transaction).

Recovery, run by every writer when it takes the lock: journal records after the
last commit record are cut; committed records the catalog has not applied yet
are applied; segment bytes past the committed end are cut; keys of objects that
no committed record names are dropped.  A crash at any point therefore leaves
the archive as it was after the last commit, and the connector checkpoints
(saved in the same transaction) agree with it.

Writers hold an exclusive ``flock`` on ``lock`` for one transaction at a time, so
the daemon, an import and the web server can take turns; readers take no lock.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archiver.clock import Clock, iso, system_clock
from archiver.crypto.aead import DecryptError
from archiver.crypto.keys import (
    Keys,
    create_keyfile,
    public_key_from_keyfile,
    unlock_keyfile,
    verify_signature,
)
from archiver.errors import (
    ArchiveExists,
    ArchiveNotFound,
    ArchiverError,
    IntegrityError,
    LockedError,
    NotFoundError,
)
from archiver.locking import flock_within
from archiver.model import ParsedMessage, ProvenanceRow, Tags
from archiver.store import dictionary as D
from archiver.store.catalog import SCHEMA, SHRED_PENDING, Catalog, ObjectRow, apply_records, connect
from archiver.store.journal import (
    GENESIS,
    Head,
    Journal,
    JournalError,
    checkpoint_message,
    make_record,
    record_hash,
)
from archiver.store.keystore import Keystore
from archiver.store.objects import SealedObject, dictionary_from, is_message_id, message_id_of, seal, unseal
from archiver.store.segments import Location, SegmentError, SegmentStore, StoredRecord, fsync_dir

FORMAT_VERSION = 1
LOCK_WAIT_S = 600.0


def safe_text(s: str) -> str:
    """Text storable as UTF-8: undecodable bytes smuggled in as surrogates (file names) become \\xNN."""
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        pass
    try:
        raw = s.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raw = s.encode("utf-8", "surrogatepass")
    return raw.decode("utf-8", "backslashreplace")


def prov_dict(p: ProvenanceRow) -> dict[str, Any]:
    return {
        "source": safe_text(p.source),
        "account": safe_text(p.account),
        "folder": safe_text(p.folder),
        "uid": safe_text(p.uid),
        "uidvalidity": p.uidvalidity,
        "internaldate": iso(p.internaldate) if p.internaldate else None,
        "flags": [safe_text(f) for f in p.flags],
        "location": safe_text(p.location),
        "envelope_recipients": [safe_text(r) for r in p.envelope_recipients],
        "fetched_at": iso(p.fetched_at) if p.fetched_at else None,
    }


@dataclass
class VerifyReport:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem(self, text: str, limit: int = 200) -> None:
        if len(self.problems) < limit:
            self.problems.append(text)
        elif len(self.problems) == limit:
            self.problems.append("(further problems not listed)")


class Transaction:
    """Collects one atomic unit of work; committed by :meth:`Repository.transaction`."""

    def __init__(self, repo: Repository, actor: str) -> None:
        self.repo = repo
        self.actor = actor
        self.records: list[tuple[str, dict[str, Any]]] = []
        self.keys: list[tuple[str, bytes]] = []
        self.metadata: list[tuple[str, ParsedMessage]] = []
        self.new_ids: set[str] = set()
        self.disposed: list[str] = []
        self.checkpoints: dict[str, str] = {}
        self.actors: dict[int, str] = {}
        self._copies: set[tuple[str, ...]] = set()

    def has(self, oid: str, pd: dict[str, Any]) -> bool:
        """Whether a copy of ``oid`` found where ``pd`` says is only a copy (Catalog.already_stored)."""
        place = (pd["source"], pd["account"], pd["folder"])
        return oid in self.new_ids or bool(self.repo.catalog.already_stored([(oid, place)]))

    def put(
        self,
        obj: SealedObject,
        prov: ProvenanceRow | dict[str, Any],
        tags: Tags,
        parsed: ParsedMessage | None = None,
        *,
        known_new: bool = False,
    ) -> bool:
        """Store a sealed object (or only its new provenance when already stored); True when new.

        ``known_new`` skips the catalog lookup when the caller has just checked (a whole batch at once).
        ``prov`` may already be in journal form (:func:`prov_dict`), as the pipeline has it.
        """
        pd = prov if isinstance(prov, dict) else prov_dict(prov)
        if obj.id in self.new_ids or (not known_new and self.has(obj.id, pd)):
            self.add_copy(obj.id, pd)
            return False
        loc = self.repo.segments.append(bytes.fromhex(obj.id), obj.codec, obj.payload)
        self.keys.append((obj.id, obj.wrapped_key))
        self.new_ids.add(obj.id)
        self._copies.add(_copy_key(obj.id, pd))
        self.records.append(
            (
                "ingest",
                {
                    "id": obj.id,
                    "size": obj.size,
                    "segment": loc.segment,
                    "offset": loc.offset,
                    "length": loc.length,
                    "record_sha256": obj.record_sha256,
                    "prov": pd,
                    "client": tags.client,
                    "matters": list(tags.matters),
                },
            )
        )
        if parsed is not None:
            self.metadata.append((obj.id, parsed))
        return True

    def put_raw(self, raw: bytes, prov: ProvenanceRow, tags: Tags, parsed: ParsedMessage | None = None) -> str:
        """Seal and store raw bytes in this process (convenience for small callers and tests)."""
        oid = message_id_of(raw)
        pd = prov_dict(prov)
        if self.has(oid, pd):
            self.add_copy(oid, pd)
        else:
            repo = self.repo
            sealed = seal(repo.require_keys().master, raw, oid, repo.dictionaries, repo.current_dictionary())
            self.put(sealed, pd, tags, parsed, known_new=True)
        return oid

    def add_copy(self, oid: str, pd: dict[str, Any]) -> bool:
        """Record another copy of a stored message; False when this copy is already known."""
        key = _copy_key(oid, pd)
        if key in self._copies or self.repo.has_provenance(oid, pd):
            return False
        self._copies.add(key)
        self.records.append(("copy", {"id": oid, "prov": pd}))
        return True

    def set_tags(self, oid: str, tags: Tags) -> None:
        self.records.append(("tag", {"id": oid, "client": tags.client, "matters": list(tags.matters)}))

    def dispose(self, oid: str, rule: str, reason: str = "") -> None:
        """Crypto-shred a message: journal a tombstone, then (after the commit) destroy its data key.

        The tombstone keeps the message's hash, the rule and the time; the ciphertext stays in its
        segment but can never be decrypted again.  Removing its text from the index is the
        caller's job (the store knows nothing of the index).
        """
        self.disposed.append(oid)
        self.records.append(("dispose", {"id": oid, "sha256": oid, "rule": rule, "reason": reason}))

    def checkpoint(self, key: str, value: str) -> None:
        """Save a connector checkpoint with this transaction (all of them in one journal record)."""
        self.checkpoints[key] = value

    def event(self, type_: str, data: dict[str, Any], *, actor: str | None = None) -> None:
        """Journal an event; ``actor`` overrides the transaction's (group-committed audit events)."""
        if actor is not None:
            self.actors[len(self.records)] = actor
        self.records.append((type_, data))


def _copy_key(oid: str, pd: dict[str, Any]) -> tuple[str, ...]:
    return (oid, pd["source"], pd["account"], pd["folder"], pd["uid"], pd["location"])


#: present in an archive folder while ``init`` builds it in place (see Repository.create).
INIT_MARKER = ".init-incomplete"


class Repository:
    """An opened archive folder."""

    def __init__(self, path: Path, *, keys: Keys | None, clock: Clock, segment_max_bytes: int) -> None:
        self.path = path
        self.clock = clock
        self.keys = keys
        info = self.read_info(path)
        self.archive_id: str = info["archive_id"]
        self.public_key = public_key_from_keyfile(path / "keys" / "master.json")
        self.segments = SegmentStore(path / "segments", segment_max_bytes)
        self.journal = Journal.in_dir(path / "journal")
        self.catalog = Catalog(path / "catalog.sqlite")
        self.keystore = Keystore(path / "keys.sqlite")
        self.dictionaries = D.Dictionaries(path / D.DIR_NAME, keys.master if keys is not None else None)
        #: live messages, counted once and then kept up to date by our own commits (a hint:
        #: it only decides when the next dictionary is trained).
        self._live_hint: int | None = None
        #: no dictionary is tried again before this many live messages (after one that failed).
        self._train_after = 0
        self._lock_fd: int | None = None
        self._lock_depth = 0
        #: the journal offset whose last transaction this process has checked or written.
        self._tail_checked = -1
        if self.catalog.head().offset != self.journal.size() or self.catalog.get_meta(SHRED_PENDING):
            # A crash left the catalog behind the journal (or an uncommitted tail, or the keys of
            # disposed messages), or the catalog was lost and is rebuilt from the journal:
            # recover before anyone reads.
            # Unless a writer holds the lock: then the catalog is behind only because that
            # writer is between its journal write and its catalog commit, and it will catch
            # up itself; a reader must not wait for a whole import to finish.
            try:
                with self.lock(wait_s=0):
                    self.recover()
            except LockedError:
                pass
            except IntegrityError:
                pass  # reported by verify; reads of what the catalog has stay possible

    # -- creation and opening ---------------------------------------------------
    @staticmethod
    def read_info(path: Path) -> dict[str, Any]:
        f = path / "archive.json"
        if not f.exists():
            raise ArchiveNotFound(f"No archive at {path}: run `archiver init` first (or fix archive.path).")
        try:
            info: dict[str, Any] = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise IntegrityError(f"{f} is unreadable or corrupt ({exc}): restore it from a backup.") from None
        if info.get("format") != FORMAT_VERSION:
            raise ArchiverError(f"The archive at {path} has format {info.get('format')}; this version reads 1.")
        return info

    @classmethod
    def create(
        cls,
        path: Path,
        passphrase: str,
        *,
        clock: Clock = system_clock,
        segment_max_bytes: int = 256 * 2**20,
        actor: str = "system",
    ) -> Repository:
        """Create an archive at ``path`` (absent, or an empty folder).

        A new folder is built as a hidden sibling and renamed into place when complete, so an
        interrupted init (Ctrl-C, a full disk) leaves nothing behind.  An existing folder (made
        by the admin with its own owner and ACLs, a symbolic link, a mount point, or one holding
        only ``index/`` on its own volume) cannot be replaced that way: it is built in place,
        behind a marker file that every other command reports and that lets the next init
        clear the unfinished build and start again.
        """
        marker = path / INIT_MARKER
        if (path / "archive.json").exists() and not marker.exists():
            raise ArchiveExists(f"An archive already exists at {path}; refusing to overwrite it.")
        if path.exists() and not path.is_dir():
            raise ArchiveExists(f"{path} is a file, not a folder; choose a folder for the archive.")
        try:
            if marker.exists():  # an init here was interrupted: clear what it built
                for p in path.iterdir():
                    if p.name not in ("index", INIT_MARKER):
                        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
            leftovers = [p.name for p in path.iterdir() if p.name != INIT_MARKER] if path.exists() else []
        except OSError as exc:
            raise ArchiverError(f"Cannot read the folder {path}: {exc.strerror or exc}.") from None
        if any(name != "index" for name in leftovers):
            raise ArchiveExists(f"{path} is not empty; choose an empty or new folder for the archive.")
        in_place = path.exists()
        build = path if in_place else path.parent / f".{path.name}.init-{uuid.uuid4().hex[:12]}"
        try:
            build.mkdir(parents=True, exist_ok=True, mode=0o700)
            if in_place:
                marker.touch()
                fsync_dir(path)
        except OSError as exc:
            raise ArchiverError(f"Cannot create the archive folder {path}: {exc.strerror or exc}.") from None
        try:
            keys = cls._build(build, passphrase, clock=clock, segment_max_bytes=segment_max_bytes, actor=actor)
            if in_place:
                marker.unlink()
                fsync_dir(path)
            else:
                os.rename(build, path)  # atomic
                fsync_dir(path.parent)
        except BaseException:
            if not in_place:
                shutil.rmtree(build, ignore_errors=True)
            raise
        return cls(path, keys=keys, clock=clock, segment_max_bytes=segment_max_bytes)

    @classmethod
    def _build(cls, path: Path, passphrase: str, *, clock: Clock, segment_max_bytes: int, actor: str) -> Keys:
        """Write a complete new archive into the (empty) folder ``path``; returns its keys."""
        archive_id = str(uuid.uuid4())
        path.chmod(0o700)  # the catalog and index hold derived plaintext: owner only
        for sub in ("keys", "segments", "journal"):
            (path / sub).mkdir(exist_ok=True, mode=0o700)
        keys = create_keyfile(path / "keys" / "master.json", archive_id, passphrase)
        info = {"format": FORMAT_VERSION, "archive_id": archive_id, "created": iso(clock())}
        tmp = path / "archive.json.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(info, indent=2) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path / "archive.json")
        fsync_dir(path / "keys")
        fsync_dir(path)
        repo = cls(path, keys=keys, clock=clock, segment_max_bytes=segment_max_bytes)
        try:
            repo.segments.active()
            with repo.transaction(actor) as tx:
                tx.event(
                    "init",
                    {
                        "archive_id": archive_id,
                        "format": FORMAT_VERSION,
                        "public_key": base64.b64encode(keys.public_key).decode(),
                    },
                )
        finally:
            repo.close()
        return keys

    @classmethod
    def open(
        cls,
        path: Path,
        passphrase: str | None,
        *,
        clock: Clock = system_clock,
        segment_max_bytes: int = 256 * 2**20,
    ) -> Repository:
        if (path / INIT_MARKER).exists():
            raise ArchiveNotFound(f"The init of the archive at {path} was interrupted; run `archiver init` again.")
        cls.read_info(path)
        keys = unlock_keyfile(path / "keys" / "master.json", passphrase) if passphrase is not None else None
        return cls(path, keys=keys, clock=clock, segment_max_bytes=segment_max_bytes)

    def close(self) -> None:
        self.segments.forget()
        self.catalog.close()
        self.keystore.close()

    def require_keys(self) -> Keys:
        if self.keys is None:
            raise ArchiverError("This operation needs the archive passphrase.")
        return self.keys

    # -- locking and transactions -------------------------------------------------
    @contextmanager
    def lock(self, wait_s: float = LOCK_WAIT_S) -> Iterator[None]:
        """The exclusive writer lock (re-entrant within this object)."""
        if self._lock_depth:
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
            return
        fd = os.open(self.path / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        if not flock_within(fd, wait_s):
            os.close(fd)
            raise LockedError(
                f"Another process is writing to the archive at {self.path} "
                f"and has not finished within {wait_s:.0f} s; try again later."
            )
        self._lock_fd, self._lock_depth = fd, 1
        try:
            yield
        finally:
            self._lock_depth = 0
            self._lock_fd = None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    @contextmanager
    def transaction(self, actor: str = "system") -> Iterator[Transaction]:
        """Run one atomic transaction under the lock; it commits when the block exits normally."""
        with self.lock():
            self.recover()
            self._check_tail()
            self.segments.forget()
            tx = Transaction(self, actor)
            try:
                yield tx
            except BaseException:
                self._cut_uncommitted()  # nothing was committed; cut what this transaction appended
                raise
            try:
                self._commit(tx)
            except BaseException:
                # a failure before the commit point leaves an uncommitted tail: cut it now
                if self.journal.size() == self.catalog.head().offset:
                    self._cut_uncommitted()
                raise

    def _commit(self, tx: Transaction) -> None:
        if tx.checkpoints:
            tx.records.append(("checkpoints", {"items": tx.checkpoints}))
            tx.checkpoints = {}
        if not tx.records:
            return
        keys = self.require_keys()
        # 1. data
        self.segments.sync()
        # 2. wrapped keys
        if tx.keys:
            self.keystore.put_many(tx.keys)
        # 3. journal (the commit point)
        head = self.catalog.head()
        now = iso(self.clock())
        seq, prev = head.seq, head.hash
        records: list[dict[str, Any]] = []
        lines: list[bytes] = []
        for i, (type_, data) in enumerate(tx.records):
            rec, line = make_record(
                seq=seq, prev=prev, time=now, type=type_, actor=tx.actors.get(i, tx.actor), data=data
            )
            records.append(rec)
            lines.append(line)
            seq, prev = seq + 1, rec["hash"]
        seg, end = self.segments.position()
        signature = keys.sign(checkpoint_message(self.archive_id, seq, prev, seg, end))
        commit, commit_line = make_record(
            seq=seq,
            prev=prev,
            time=now,
            type="commit",
            actor=tx.actor,
            data={
                "segment": seg,
                "end": end,
                "records": len(records),
                "signature": base64.b64encode(signature).decode(),
            },
        )
        records.append(commit)
        lines.append(commit_line)
        offset = self.journal.append(lines)
        # 4. catalog
        self.catalog.apply_records(records, Head(seq + 1, commit["hash"], offset), tx.metadata)
        self._tail_checked = offset
        if self._live_hint is not None:
            self._live_hint += len(tx.keys)
        # 5. disposal: the tombstones are committed; now the keys go (recovery redoes this step)
        if tx.disposed:
            self.keystore.destroy(tx.disposed)
            self.catalog.set_meta(SHRED_PENDING, "")

    def _check_tail(self) -> None:
        """Refuse to append after a damaged last transaction (checked once per head this
        process has not written itself, so once per open in practice)."""
        head = self.catalog.head()
        if head.offset == self._tail_checked:
            return
        problem = self.journal.tail_problem(head)
        if problem is not None:
            raise IntegrityError(f"Nothing was written: {problem}; run `archiver verify`.")
        self._tail_checked = head.offset

    def recover(self) -> list[str]:
        """Bring the catalog, segments and keystore in line with the last journal commit.

        Must be called under the lock.  Returns what it did (for logs).
        """
        actions: list[str] = []
        head = self.catalog.head()
        size = self.journal.size()
        if size < head.offset:
            raise IntegrityError(
                f"The journal is shorter ({size} bytes) than the catalog has recorded ({head.offset} bytes): "
                "journal records were removed. Run `archiver verify` and restore the journal from a backup."
            )
        if size > head.offset:
            committed, new_head, cut, damage = self.journal.committed_tail(head)
            if size > cut:
                if self.journal.has_complete_commit_after(cut):
                    raise IntegrityError(
                        f"The journal is damaged at byte {cut} with committed records after it; "
                        "run `archiver verify` to see what was altered."
                    )
                if damage is not None and head.offset == 0:
                    # With the catalog gone nothing says whether this last transaction was
                    # acknowledged; a crash leaves a short or zero-filled frame, not this.
                    # Cutting it could destroy committed messages and their keys: stop instead.
                    raise IntegrityError(
                        f"The journal's last transaction is damaged ({damage}) and the catalog, which "
                        "would show whether it was committed, is missing: nothing was changed. Restore "
                        "the journal from a backup, or run `archiver verify` to see what was altered."
                    )
                self.journal.truncate(cut)
                actions.append(f"cut {size - cut} uncommitted journal bytes")
            if committed:
                self.catalog.apply_records(committed, new_head)
                actions.append(f"applied {len(committed)} committed journal records to the catalog")
        if self.catalog.get_meta(SHRED_PENDING):
            # Disposals committed (now or before a crash) whose keys were not destroyed yet.
            destroyed = self.keystore.destroy(self.catalog.disposed_ids())
            self.catalog.set_meta(SHRED_PENDING, "")
            if destroyed:
                actions.append(f"destroyed the keys of {destroyed} disposed messages")
        actions.extend(self._cut_uncommitted())
        return actions

    def _cut_uncommitted(self) -> list[str]:
        """Cut segment bytes past the last commit, and the keys of the objects in them.

        The catalog's copy of the committed end decides the common case (nothing to cut).
        Before cutting, the end is taken from the journal's last commit record itself: the
        catalog is not signed, and an edited or stale copy must never make recovery cut
        segment bytes a commit covers.
        """
        seg, end = self.catalog.segment_end()
        if self.segments.is_clean(seg, end):
            return []  # the common case, checked at every transaction: two stats, no reads
        actions: list[str] = []
        try:
            last = self.journal.last_commit(self.catalog.head().offset)
        except JournalError as exc:
            raise IntegrityError(
                f"Segment bytes past the catalog's committed end were not cut, because the journal that "
                f"would confirm that end is damaged ({exc}); run `archiver verify`."
            ) from None
        if last is not None:
            committed = (int(last["data"]["segment"]), int(last["data"]["end"]))
            if committed > (seg, end):
                actions.append(
                    f"kept segment bytes up to segment {committed[0]} byte {committed[1]}, which the journal's "
                    f"last commit covers, although the catalog named segment {seg} byte {end}"
                )
                seg, end = committed
                if self.segments.is_clean(seg, end):
                    return actions
        cut_ids = self.segments.ids_after(seg, end)
        actions += self.segments.truncate_to(seg, end)
        # Keys of objects in the cut tail belong to no commit (unless the object was committed elsewhere).
        orphans = [oid for oid in cut_ids if not self.catalog.has_object(oid, live=True)]
        if orphans and self.keystore.destroy(orphans):
            actions.append(f"dropped the keys of {len(orphans)} uncommitted objects")
        return actions

    # -- compression dictionaries (archiver/store/dictionary.py) --------------------------
    def current_dictionary(self) -> int:
        """The number of the newest committed compression dictionary (0: none), the one to seal with.

        Read from the catalog each time (one key lookup), so a dictionary another process
        committed is used at once.
        """
        return self.catalog.newest_dictionary()

    def dictionary_sample(self) -> list[tuple[str, int, bytes, bytes]] | None:
        """The sealed objects to build the next compression dictionary from, when one is due.

        The first is due at ``D.TRAIN_AT`` live messages, each next one when the archive has
        grown ``D.GROWTH`` times, and the sample is spread over the whole archive: an
        archive's first messages are often one mailbox's, and its later mail looks
        different.  Returns (id, codec, wrapped key, payload) tuples, for
        :func:`archiver.workers.train` (decrypting and counting lines happens in a worker, not
        in the writer), or None when no dictionary is due.  Call under the lock.
        """
        due = max(D.due_at(self.current_dictionary()), self._train_after)
        if self._live_hint is None:
            self._live_hint = self.catalog.live_count()
        if self._live_hint < due:
            return None
        self._live_hint = self.catalog.live_count()  # exact now (disposals lower it)
        if self._live_hint < due:
            return None
        return [
            (row.id, rec.codec, wrapped, rec.payload)
            for row, rec, wrapped in self.sealed_objects(self.catalog.live_ids_spread(D.SAMPLE_SIZE))
        ]

    def add_dictionary(self, trained: D.Trained | None, actor: str = "system") -> int:
        """Write and journal a dictionary built from :meth:`dictionary_sample`; returns the one to use.

        None (too few common lines) writes nothing and waits for the archive to grow
        ``D.GROWTH`` times before trying again.  The file is durable before the journal
        commit that records it, so a committed ``dictionary`` record always has its file.
        A crash in between leaves a file no record names; it is never overwritten (nor is
        any other: objects may depend on it), the next dictionary takes the next free number.
        """
        current = self.current_dictionary()
        if trained is None:
            self._train_after = (self._live_hint or 0) * D.GROWTH
            return current
        keys = self.require_keys()
        number = max([current, *D.numbers_on_disk(self.dictionaries.root)]) + 1
        with self.transaction(actor) as tx:
            D.write(self.dictionaries.root, keys.master, number, trained.content)
            tx.event(
                "dictionary",
                {
                    "number": number,
                    "sha256": trained.sha256,
                    "bytes": len(trained.content),
                    "lines": trained.lines,
                    "sample": trained.sample,
                    "min_messages": trained.min_messages,
                },
            )
        return number

    def train_dictionary(self, actor: str = "system") -> int:
        """:meth:`dictionary_sample`, build and :meth:`add_dictionary`, all in this process."""
        sample = self.dictionary_sample()
        if sample is None:
            return self.current_dictionary()
        return self.add_dictionary(dictionary_from(self.require_keys().master, self.dictionaries, sample), actor)

    # -- reads ---------------------------------------------------------------------
    def sealed_objects(self, ids: Sequence[str]) -> Iterator[tuple[ObjectRow, StoredRecord, bytes]]:
        """The live objects among ``ids``: catalog row, segment record and wrapped key, in ``ids`` order.

        For batch readers (reindex, retag, dictionary samples): rows and keys are looked up in
        batches, and disposed or keyless objects are left out.
        """
        rows = self.catalog.objects(ids)
        keys = self.keystore.get_many(rows)
        for oid in ids:
            row, wrapped = rows.get(oid), keys.get(oid)
            if row is not None and not row.disposed_at and wrapped is not None:
                yield row, self.segments.read(Location(row.segment, row.offset, row.length)), wrapped

    def resolve(self, ref: str) -> str:
        """A full id from an id or an unambiguous prefix of at least 8 hex digits."""
        ref = ref.strip().lower()
        if len(ref) == 64 and self.catalog.has_object(ref):
            return ref
        if len(ref) < 8 or any(c not in "0123456789abcdef" for c in ref):
            raise NotFoundError(f"{ref!r} is not a message id (64 hex digits, or a prefix of at least 8).")
        found = self.catalog.resolve_prefix(ref)
        if not found:
            raise NotFoundError(f"No message with id {ref} in the archive.")
        if len(found) > 1:
            raise NotFoundError(f"The id prefix {ref} is ambiguous; give more digits.")
        return found[0]

    def read_raw(self, oid: str) -> bytes:
        """The exact original bytes of a message, checked against its id."""
        row = self.catalog.object(oid)
        if row is None:
            raise NotFoundError(f"No message with id {oid} in the archive.")
        if row.disposed_at:
            raise NotFoundError(
                f"Message {oid} was disposed of on {row.disposed_at} under rule {row.disposed_rule!r}; "
                "its content can no longer be read."
            )
        wrapped = self.keystore.get(oid)
        if wrapped is None:
            raise IntegrityError(f"The data key of message {oid} is missing from the keystore.")
        rec = self.segments.read(Location(row.segment, row.offset, row.length))
        if rec.object_id.hex() != oid:
            raise IntegrityError(f"Segment {row.segment} at offset {row.offset} does not hold message {oid}.")
        try:
            raw = unseal(self.require_keys().master, oid, rec.codec, wrapped, rec.payload, self.dictionaries)
        except DecryptError:
            raise IntegrityError(f"Message {oid} failed decryption: its stored bytes were altered.") from None
        except D.DictionaryError as exc:
            raise IntegrityError(f"Message {oid} cannot be decompressed: {exc}.") from None
        if message_id_of(raw) != oid:
            raise IntegrityError(f"Message {oid} does not hash to its id: its stored bytes were altered.")
        return raw

    def has_provenance(self, oid: str, pd: dict[str, Any]) -> bool:
        row = self.catalog.conn.execute(
            "SELECT 1 FROM provenance WHERE id=? AND source=? AND account=? AND folder=? AND uid=? AND location=?",
            (oid, pd["source"], pd["account"], pd["folder"], pd["uid"], pd["location"]),
        ).fetchone()
        return row is not None

    # -- verification --------------------------------------------------------------
    def verify(
        self,
        full: bool = False,
        progress: Callable[[str, int], None] | None = None,
        inspect: Callable[[str, bytes], list[str]] | None = None,
    ) -> VerifyReport:
        """Check the journal chain and signatures, segments, keystore and catalog; decrypt all with ``full``.

        ``inspect(id, raw)``, with ``full``, sees every decrypted message and returns problems of its
        own: callers above the store check what they derived from the bytes without a second pass.
        """
        report = VerifyReport()
        tick = progress or (lambda _stage, _n: None)
        try:
            with self.lock():
                for action in self.recover():
                    report.notes.append(f"recovered from an interrupted write: {action}")
        except IntegrityError as exc:
            report.problem(str(exc))
        workdir = Path(tempfile.mkdtemp(prefix="archiver-verify-"))
        try:
            fresh = connect(workdir / "expected.sqlite")
            fresh.executescript(SCHEMA)  # the expected state, built from the journal
            last_commit = self._verify_journal(report, fresh, tick)
            self._verify_catalog(report, fresh)
            self._verify_segments(report, fresh, last_commit, tick)
            self._verify_keys(report, fresh)
            self._verify_dictionaries(report, fresh)
            if full:
                self._verify_objects(report, tick, inspect)
            fresh.close()
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        return report

    def require_verified(self, refused: str, error: type[Exception] = IntegrityError) -> None:
        """Raise ``error`` ("<refused>: the archive does not verify: ...") unless :meth:`verify` passes.

        For the commands that act on the catalog's copy of the journal where an edited copy
        would do harm: a disposal steered by a deleted hold row, an evidence bundle signing a
        custodian or matter that someone wrote into the catalog.
        """
        # Under the writer lock: the catalog is compared with the journal, and a commit landing
        # between the two reads (a daemon's sync batch) would look like an edited catalog.
        with self.lock():
            report = self.verify()
        if not report.ok:
            more = f" (and {len(report.problems) - 1} more)" if len(report.problems) > 1 else ""
            raise error(
                f"{refused}: the archive does not verify: {report.problems[0]}{more}. "
                "Run `archiver verify` and resolve it first."
            )

    def _verify_journal(
        self, report: VerifyReport, fresh: Any, tick: Callable[[str, int], None]
    ) -> dict[str, Any] | None:
        seq, prev = 0, GENESIS
        last_commit: dict[str, Any] | None = None
        pending: list[dict[str, Any]] = []
        commits = 0
        broken = False
        if not self.journal.path.exists():
            report.problem("The journal file is missing.")
            return None
        fresh.execute("BEGIN")
        try:
            for line in self.journal.lines():
                rec = line.record
                where = f"journal record {seq} (byte {line.offset})"
                if rec.get("seq") != seq:
                    report.problem(
                        f"{where}: expected sequence number {seq}, found {rec.get('seq')}: records were removed or inserted."
                    )
                    broken = True
                    break
                if rec.get("prev") != prev:
                    report.problem(f"{where}: does not link to the previous record: the chain was altered before it.")
                    broken = True
                    break
                try:
                    h = record_hash(rec)
                except KeyError:
                    h = ""
                if rec.get("hash") != h:
                    report.problem(f"{where} ({rec.get('type')}): its content does not match its hash: it was edited.")
                    broken = True
                    break
                if seq == 0:
                    pk = base64.b64decode(rec.get("data", {}).get("public_key", ""))
                    if rec.get("type") != "init" or pk != self.public_key:
                        report.problem("The journal's init record does not name this archive's public key.")
                pending.append(rec)
                if rec["type"] == "commit":
                    sig = base64.b64decode(rec["data"].get("signature", ""))
                    signed = checkpoint_message(
                        self.archive_id, seq, prev, int(rec["data"].get("segment", -1)), int(rec["data"].get("end", -1))
                    )
                    if not verify_signature(self.public_key, sig, signed):
                        report.problem(f"{where}: the signed checkpoint's signature is invalid.")
                    if rec["data"].get("records") != len(pending) - 1:
                        report.problem(
                            f"{where}: the commit says its transaction has {rec['data'].get('records')} records, "
                            f"but {len(pending) - 1} precede it: it was edited."
                        )
                    apply_records(fresh, pending)
                    pending = []
                    last_commit = {**rec["data"], "seq": seq, "offset": line.end}
                    commits += 1
                prev, seq = rec["hash"], seq + 1
                if seq % 10000 == 0:
                    tick("journal", seq)
        except JournalError as exc:
            if exc.torn:
                report.notes.append(
                    "The journal ends in an unfinished record (an interrupted write, cut on the next write)."
                )
            else:
                report.problem(f"The journal is damaged: {exc}.")
                broken = True
        fresh.execute("COMMIT")
        report.counts["journal_records"] = seq
        report.counts["signed_checkpoints"] = commits
        if pending and not broken:
            report.notes.append(f"{len(pending)} uncommitted journal records at the end (cut on the next write).")
        head = self.catalog.head()
        if last_commit is not None and not broken and head.seq > last_commit["seq"] + 1:
            report.problem(
                f"The catalog has applied {head.seq} journal records but the journal holds only "
                f"{last_commit['seq'] + 1}: journal records were removed from the end."
            )
        return last_commit

    def _verify_catalog(self, report: VerifyReport, fresh: Any) -> None:
        live = self.catalog.path
        fresh.execute("ATTACH DATABASE ? AS live", (str(live),))
        try:
            for table, cols in _COMPARED.items():
                collist = ",".join(cols)
                for label, a, b in (
                    ("unexpected or altered", "live", "main"),
                    ("missing or altered", "main", "live"),
                ):
                    rows = fresh.execute(
                        f"SELECT {collist} FROM {a}.{table} EXCEPT SELECT {collist} FROM {b}.{table} LIMIT 20"
                    ).fetchall()
                    for row in rows:
                        report.problem(
                            f"catalog table {table}: {label} row for {row[0]} "
                            f"(does not match the journal; the catalog was edited)"
                            if label.startswith("unexpected")
                            else f"catalog table {table}: the journal's row for {row[0]} is missing or differs "
                            "in the catalog (the catalog was edited)"
                        )
            report.counts["catalog_objects"] = fresh.execute("SELECT COUNT(*) FROM live.objects").fetchone()[0]
        finally:
            fresh.execute("DETACH DATABASE live")

    def _verify_segments(
        self,
        report: VerifyReport,
        fresh: Any,
        last_commit: dict[str, Any] | None,
        tick: Callable[[str, int], None],
    ) -> None:
        if last_commit is None:
            return
        active, end = int(last_commit["segment"]), int(last_commit["end"])
        recorded = self.catalog.segment_end()
        if recorded != (active, end):
            # Recovery cuts segment bytes past this copy (checked against the journal first).
            report.problem(
                f"catalog: the committed segment end it records (segment {recorded[0]}, byte {recorded[1]}) "
                f"is not the last commit's (segment {active}, byte {end}); the catalog was edited"
            )
        # One lookup per stored record: without this index each is a scan of every object.
        fresh.execute("CREATE INDEX IF NOT EXISTS verify_by_location ON object_rows(segment, offset)")
        seen = 0
        for n in range(active + 1):
            p = self.segments.path(n)
            if not p.exists():
                report.problem(f"Segment {n} is missing.")
                continue
            limit = end if n == active else None
            try:
                for rec in self.segments.scan(n, limit):
                    row = fresh.execute(
                        "SELECT id, record_sha256 FROM objects WHERE segment=? AND offset=?",
                        (n, rec.location.offset),
                    ).fetchone()
                    if row is None:
                        row = fresh.execute(
                            "SELECT id, record_sha256 FROM superseded WHERE segment=? AND offset=?",
                            (n, rec.location.offset),
                        ).fetchone()
                        if row is None:
                            report.problem(
                                f"Segment {n} offset {rec.location.offset} holds an object the journal never recorded."
                            )
                        elif row[0] != rec.object_id.hex() or bytes(row[1]).hex() != rec.record_sha256():
                            report.problem(
                                f"Segment {n} offset {rec.location.offset}: the disposed object {row[0]} was altered."
                            )
                        continue
                    seen += 1
                    if row[0] != rec.object_id.hex() or row[1] != rec.record_sha256():
                        report.problem(
                            f"Segment {n} offset {rec.location.offset}: the stored object {row[0]} was altered "
                            "(its bytes do not match the hash in the journal)."
                        )
                    if seen % 10000 == 0:
                        tick("segments", seen)
            except SegmentError as exc:
                report.problem(f"Segment {n} is damaged: {exc}.")
        expected = fresh.execute("SELECT COUNT(*) FROM objects").fetchone()[0]
        if seen < expected:
            report.problem(f"{expected - seen} objects recorded in the journal were not found in the segments.")
        for n in self.segments.numbers():
            if n > active:
                report.notes.append(f"Segment {n} is past the last commit (cut on the next write).")
        report.counts["objects"] = seen

    def _verify_keys(self, report: VerifyReport, fresh: Any) -> None:
        have = set(self.keystore.ids())
        missing = 0
        for oid, disposed in fresh.execute("SELECT id, disposed_at IS NOT NULL FROM objects"):
            if disposed and oid in have:
                report.problem(f"Message {oid} was disposed of but its data key still exists.")
            elif not disposed and oid not in have:
                missing += 1
                if missing <= 20:
                    report.problem(f"The data key of message {oid} is missing: it cannot be decrypted.")
            have.discard(oid)
        junk = sorted(k for k in have if not is_message_id(k))
        for k in junk[:20]:
            report.problem(f"The keystore has a row for {k[:70]!r}, which is not a message id: it was edited.")
        if len(have) > len(junk):
            report.notes.append(
                f"{len(have) - len(junk)} keys belong to no committed object (cleaned on the next write)."
            )

    def _verify_dictionaries(self, report: VerifyReport, fresh: Any) -> None:
        """Every journalled dictionary exists and holds what the journal recorded; no other file exists."""
        recorded: dict[int, str] = {}
        for (data,) in fresh.execute("SELECT data FROM events WHERE type='dictionary'"):
            d = json.loads(data)
            recorded[int(d["number"])] = str(d["sha256"])
        for n in D.numbers_on_disk(self.dictionaries.root):
            if n not in recorded:
                report.notes.append(
                    f"Compression dictionary {n} is not recorded in the journal (left by an interrupted "
                    "write; no message uses it)."
                )
        kek = self.keys.master if self.keys is not None else None
        for n, digest in sorted(recorded.items()):
            if not D.path_of(self.dictionaries.root, n).exists():
                report.problem(
                    f"Compression dictionary {n} is missing: the messages compressed with it cannot be read."
                )
            elif kek is not None:
                try:
                    content = D.read(self.dictionaries.root, kek, n)
                except D.DictionaryError as exc:
                    report.problem(f"{str(exc)[0].upper()}{str(exc)[1:]}.")
                    continue
                if hashlib.sha256(content).hexdigest() != digest:
                    report.problem(f"Compression dictionary {n} does not match the SHA-256 in the journal.")
        report.counts["dictionaries"] = len(recorded)

    def _verify_objects(
        self,
        report: VerifyReport,
        tick: Callable[[str, int], None],
        inspect: Callable[[str, bytes], list[str]] | None,
    ) -> None:
        n = 0
        for oid in list(self.catalog.live_ids()):
            try:
                raw = self.read_raw(oid)
            except (IntegrityError, NotFoundError, SegmentError, OSError, ValueError) as exc:
                report.problem(f"Message {oid}: {exc}")
            else:
                for problem in inspect(oid, raw) if inspect else ():
                    report.problem(problem)
            n += 1
            if n % 2000 == 0:
                tick("decrypt", n)
        report.counts["decrypted"] = n


_COMPARED: dict[str, tuple[str, ...]] = {
    "objects": (
        "id",
        "size",
        "segment",
        "offset",
        "length",
        "record_sha256",
        "ingest_seq",
        "disposed_at",
        "disposed_rule",
    ),
    "tags": ("id", "client", "matters", "seq"),
    "matters": ("id", "matter"),
    "provenance": (
        "id",
        "source",
        "account",
        "folder",
        "uid",
        "uidvalidity",
        "internaldate",
        "flags",
        "location",
        "envelope_recipients",
        "fetched_at",
        "seq",
    ),
    "checkpoints": ("key", "value", "seq"),
    "holds": (
        "case_name",
        "kind",
        "value",
        "reason",
        "placed_at",
        "placed_by",
        "placed_seq",
        "released_at",
        "released_by",
        "released_seq",
    ),
    "matter_events": ("seq", "client", "matter", "event", "date", "time", "actor"),
    "retention_rules": ("seq", "fingerprint", "rules", "time", "actor"),
}
