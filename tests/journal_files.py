"""Read and rewrite an archive's journal file directly, as an attacker or a damaged disk would.

Tests use these instead of assuming the journal's on-disk form (zstd frames of JSON
lines, one frame per transaction; see archiver/store/journal.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from archiver.store.journal import Journal, encode_frame


def journal_file(archive: Path) -> Path:
    return Journal.in_dir(archive / "journal").path


def read_records(archive: Path) -> list[dict[str, Any]]:
    return [line.record for line in Journal.in_dir(archive / "journal").lines()]


def write_records(archive: Path, recs: list[dict[str, Any]]) -> None:
    """Replace the journal with ``recs``, one frame per transaction (a frame ends after each commit)."""
    frames: list[bytes] = []
    group: list[dict[str, Any]] = []
    for r in recs:
        group.append(r)
        if r.get("type") == "commit":
            frames.append(encode_frame(group))
            group = []
    if group:
        frames.append(encode_frame(group))
    journal_file(archive).write_bytes(b"".join(frames))
