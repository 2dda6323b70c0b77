"""Evidence-bundle exports started from the browser, run in a background thread.

The set of messages is fixed when the export starts, from the user's scope (walls apply:
a walled message is never in a bundle).  The bundle is written by ``archiver.export.bundle``
(the same evidence bundle as ``archiver export``).  Only the user who started an
export can see or download it.  The bundle writer journals the export.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from archiver.errors import ArchiverError
from archiver.export.bundle import Selection, export_bundle
from archiver.web.access import Scope
from archiver.web.service import WebArchive

Status = Literal["queued", "running", "done", "failed"]


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

    def __init__(self, service: WebArchive, folder: Path | None = None, workers: int = 2) -> None:
        self.service = service
        self._own_folder = folder is None
        self.folder = folder or Path(tempfile.mkdtemp(prefix="archiver-web-exports-"))
        self.folder.mkdir(parents=True, exist_ok=True)
        self._jobs: dict[str, ExportJob] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="export")

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._own_folder:
            shutil.rmtree(self.folder, ignore_errors=True)

    def start(self, scope: Scope, kind: Literal["query", "matter"], value: str) -> ExportJob:
        job = ExportJob(id=secrets.token_hex(12), owner=scope.username, kind=kind, value=value)
        with self._lock:
            self._jobs[job.id] = job
        self._pool.submit(self._run, scope, job.id)
        return job

    def get(self, scope: Scope, job_id: str) -> ExportJob | None:
        with self._lock:
            job = self._jobs.get(job_id)
        return job if job is not None and job.owner == scope.username else None

    def list(self, scope: Scope) -> list[ExportJob]:
        with self._lock:
            return sorted((j for j in self._jobs.values() if j.owner == scope.username), key=lambda j: j.created)

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
        except Exception as exc:  # a failed export is reported on the page, never crashes the server
            self._update(job_id, status="failed", error=f"{type(exc).__name__}: {exc}"[:500])


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
    return Path(result.path)
