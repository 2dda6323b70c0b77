"""retag keeps only one chunk of decisions in memory; thread inheritance must survive chunk borders."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from archiver.archive import Archive
from archiver.config import load_config
from tests.conftest import SAMPLE_MAILDIR, CliResult


def tags_by_id(archive: Archive) -> dict[str, tuple[str, tuple[str, ...]]]:
    out = {}
    for oid in archive.repo.catalog.live_ids():
        t = archive.tags_of(oid)
        out[oid] = (t.client, t.matters)
    return out


def test_retag_one_message_per_chunk_agrees_with_big_chunks(
    initialised: Callable[..., CliResult], config_file: Path
) -> None:
    assert initialised("import", str(SAMPLE_MAILDIR), "--source", "demo", "--json").code == 0
    with Archive.open(load_config(config_file)) as archive:
        archive.retag()  # settles the date order (ingest went by arrival)
        settled = tags_by_id(archive)
        inherited = [t for t in settled.values() if t[1]]
        assert inherited, "the sample has matter threads"
        again = archive.retag(chunk_size=1)  # every parent is in an earlier, committed chunk
        assert again.changed == 0 and again.processed == len(settled)
        assert tags_by_id(archive) == settled
        assert len(archive.repo.catalog.ids_of_rows(list(archive.repo.catalog.live_rows_by_date()))) == len(settled)
