"""Evidence-bundle exports started from the browser, run in a background thread.

The set of messages is fixed when the export starts, from the user's scope (walls apply:
a walled message is never in a bundle).  The bundle is written by ``archiver.export.bundle``
(the same evidence bundle as ``archiver export``).  Only the user who started an
export can see or download it.  The bundle writer journals the export.

A bundle is decrypted mail, so the folder is kept private and small:

* the folder is made 0700 and each bundle 0600, whatever the process umask;
* a user may have at most ``per_user`` exports queued or running at once;
* a finished bundle (and its job) is deleted ``ttl_s`` after the export started, and at
  shutdown and start-up every bundle of a run is deleted: jobs live in memory, so nobody
  could download those again.  The folder belongs to one server.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from archiver.errors import ArchiverError, ConfigError
from archiver.export.bundle import Selection, export_bundle
from archiver.logging import get_logger
from archiver.web.access import Scope
from archiver.web.service import WebArchive

log = get_logger("archiver.web.exports")

Status = Literal["queued", "running", "done", "failed"]
#: what this module writes into the folder: bundles, the writer's partial file and scratch folder.
_OURS = re.compile(r"export-[0-9a-f]{24}\.zip(\.partial)?|\.export-.*")
FAILED = "The export failed because of an internal error; the server's log has the details."


class TooManyExports(ArchiverError):
    """You already have as many exports queued or running as allowed; wait for one to finish."""


@dataclass(frozen=True, slots=True)
class ExportJob:
    id: str
    owner: str
    kind: Literal["query", "matter"]
    value: str
    status: Status = "queued"
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    messages: int = 0
    error: str = ""
    path: str = ""
    #: when the job was started (seconds since the epoch), for its time to live.
    started_at: float = field(default_factory=time.time)

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "value": self.value,
            "status": self.status,
            "created": self.created,
            "messages": self.messages,
            "error": self.error,
            "filename": Path(self.path).name if self.path else "",
        }


class ExportJobs:
    """Export jobs of this server process (kept in memory; files under ``folder``)."""

    def __init__(
        self,
        service: WebArchive,
        folder: Path | None = None,
        workers: int = 2,
        *,
        per_user: int = 2,
        ttl_s: float = 24 * 3600,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.service = service
        self.per_user = per_user
        self.ttl_s = ttl_s
        self._now = now
        self._own_folder = folder is None
        self.folder = folder or Path(tempfile.mkdtemp(prefix="archiver-web-exports-"))
        try:
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            st = self.folder.stat()
            if st.st_mode & stat.S_ISVTX or st.st_uid != os.geteuid():
                # a shared folder (/tmp, someone else's): making it 0700 would break it for others
                raise ConfigError(
                    f"The export folder {self.folder} is shared (sticky) or owned by another user; "
                    "give web.export_dir a folder of the server's own, e.g. /var/lib/archiver/web-exports."
                )
            os.chmod(self.folder, 0o700)
            self._remove_leftovers()
        except OSError as exc:
            raise ConfigError(
                f"The export folder {self.folder} cannot be made private and cleaned ({exc.strerror}); "
                "give web.export_dir a folder this server owns."
            ) from None
        self._jobs: dict[str, ExportJob] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="export")

    def close(self) -> None:
        """Stop the workers and delete this run's bundles (no later run could serve them)."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._own_folder:
            shutil.rmtree(self.folder, ignore_errors=True)
            return
        with self._lock:
            for job in self._jobs.values():
                if job.path:
                    Path(job.path).unlink(missing_ok=True)
            self._jobs.clear()

    def start(self, scope: Scope, kind: Literal["query", "matter"], value: str) -> ExportJob:
        """Queue an export; TooManyExports when the user already has ``per_user`` queued or running."""
        job = ExportJob(id=secrets.token_hex(12), owner=scope.username, kind=kind, value=value, started_at=self._now())
        with self._lock:
            self._expire()
            active = [j for j in self._jobs.values() if j.owner == scope.username and j.status in ("queued", "running")]
            if len(active) >= self.per_user:
                raise TooManyExports(
                    f"You already have {len(active)} export(s) queued or running (at most {self.per_user}); "
                    "wait for one to finish."
                )
            self._jobs[job.id] = job
        self._pool.submit(self._run, scope, job.id)
        return job

    def get(self, scope: Scope, job_id: str) -> ExportJob | None:
        with self._lock:
            self._expire()
            job = self._jobs.get(job_id)
        return job if job is not None and job.owner == scope.username else None

    def list(self, scope: Scope) -> list[ExportJob]:
        with self._lock:
            self._expire()
            return sorted((j for j in self._jobs.values() if j.owner == scope.username), key=lambda j: j.created)

    def _expire(self) -> None:
        """Forget finished jobs older than the time to live and delete their bundles (under the lock)."""
        cutoff = self._now() - self.ttl_s
        for job in [j for j in self._jobs.values() if j.status in ("done", "failed") and j.started_at < cutoff]:
            if job.path:
                Path(job.path).unlink(missing_ok=True)
            del self._jobs[job.id]

    def _remove_leftovers(self) -> None:
        """Delete the bundles (and half-written ones) of an earlier server: no job names them any more."""
        for entry in self.folder.iterdir():
            if not _OURS.fullmatch(entry.name):
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            log.info("removed an export left by an earlier run", file=str(entry))

    def _update(self, job_id: str, **changes: Any) -> ExportJob:
        with self._lock:
            job = replace(self._jobs[job_id], **changes)
            self._jobs[job_id] = job
            return job

    def _run(self, scope: Scope, job_id: str) -> None:
        job = self._update(job_id, status="running")
        try:
            if job.kind == "matter":
                ids = self.service.matter_ids(scope, job.value)
            else:
                ids = self.service.visible_ids(scope, job.value)
            target = self.folder / f"export-{job.id}"
            path = write_bundle(self.service, scope, ids, target, job)
            self._update(job_id, status="done", messages=len(ids), path=str(path))
        except ArchiverError as exc:  # e.g. nothing to export: the sentence is for the user
            self._update(job_id, status="failed", error=str(exc)[:500])
        except Exception:  # reported on the page, never crashes the server; the text may hold server paths
            log.exception("web export failed", job=job_id, user=scope.username)
            self._update(job_id, status="failed", error=FAILED)


def write_bundle(service: WebArchive, scope: Scope, ids: list[str], target: Path, job: ExportJob) -> Path:
    """Write the evidence bundle of ``ids`` (already filtered by the scope); returns the file to download.

    The bundle writer runs on its own Archive object (own catalog connection, own lock file
    descriptor), so a long export does not hold the web server's lock; the repository's
    flock still serialises its journal write with everyone else's.  The writer journals the
    export itself (actor ``web:<user>``) with the manifest's SHA-256, which pins the exact ids.
    """
    out = target.with_suffix(".zip")
    value = f"{job.value} (web export by {scope.username}; ethical walls applied)"
    archive = service.archive.sibling()
    try:
        result = export_bundle(
            archive,
            Selection(job.kind, value, ids),
            case=job.value if job.kind == "matter" else f"web export {job.id}",
            out=out,
            reason=f"exported from the web UI by {scope.username}",
            actor=f"web:{scope.username}",
        )
    finally:
        archive.close()
    path = Path(result.path)
    os.chmod(path, 0o600)  # decrypted mail: the owner only, whatever the umask
    return path
