"""Hold requests waiting for the writer lock, which a disposal run honours before each batch.

A retention run holds the archive's writer lock from its plan to its certificate, which on a
large archive takes minutes (a verify, a decryption and parse of every message due).  A hold
placed meanwhile cannot be journalled until the run ends, by when the run may have disposed
of exactly the mail the hold was meant to keep.  So ``hold add`` that finds the lock taken
first writes its request here (one small JSON file, written whole and renamed into place),
then waits; the disposal run reads the requests before each batch and keeps every message
one of them covers (listed in the certificate's ``withheld`` with the case named).  The
request is removed once the hold is journalled, or when the command gives up.

A request left by a command that died (a kill while waiting) keeps covering mail until the
file is removed; the run logs it.  Erring that way only keeps mail.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from archiver.clock import iso, system_clock

FOLDER = "pending-holds"


@dataclass(frozen=True, slots=True)
class PendingHold:
    """One request: what the hold will cover, who asked and when (``readable`` False: a damaged file)."""

    path: Path
    case: str
    kind: str
    value: str
    actor: str
    requested_at: str
    readable: bool = True


def request(archive_path: Path, *, case: str, kind: str, value: str, actor: str) -> Path:
    """Write a request for a hold that is waiting for the lock; returns its file (for :func:`withdraw`)."""
    folder = archive_path / FOLDER
    folder.mkdir(mode=0o700, exist_ok=True)
    name = f"{system_clock().strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{secrets.token_hex(4)}.json"
    doc = {"case": case, "kind": kind, "value": value, "actor": actor, "requested_at": iso(system_clock())}
    tmp = folder / (name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(doc, sort_keys=True))
        fh.flush()
        os.fsync(fh.fileno())
    path = folder / name
    os.replace(tmp, path)
    return path


def withdraw(path: Path) -> None:
    path.unlink(missing_ok=True)


def pending(archive_path: Path) -> list[PendingHold]:
    """Every request standing now, oldest first (a damaged one is returned with ``readable`` False)."""
    folder = archive_path / FOLDER
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.glob("*.json")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            out.append(
                PendingHold(
                    path=path,
                    case=str(doc["case"]),
                    kind=str(doc["kind"]),
                    value=str(doc["value"]),
                    actor=str(doc.get("actor", "")),
                    requested_at=str(doc.get("requested_at", "")),
                )
            )
        except FileNotFoundError:
            continue  # placed and withdrawn while we listed
        except (OSError, ValueError, KeyError, TypeError):
            out.append(PendingHold(path=path, case="", kind="", value="", actor="", requested_at="", readable=False))
    return out
