"""A damaged or missing archive file gives exit 9 and a sentence saying what to do, never a traceback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import SAMPLE_MAILDIR, CliResult

Cli = Callable[..., CliResult]


@pytest.fixture
def imported(initialised: Cli, config_file: Path) -> tuple[Cli, Path, str]:
    assert initialised("import", str(SAMPLE_MAILDIR)).code == 0
    first = initialised("search", "client:acme", "--json", "--limit", "1").json_lines()[0]["id"]
    return initialised, config_file.parent / "archive", str(first)


def test_a_missing_segment(imported: tuple[Cli, Path, str]) -> None:
    cli, archive, oid = imported
    for seg in (archive / "segments").glob("*.seg"):
        seg.unlink()
    r = cli("show", oid)
    assert r.code == 9 and "segment 0 is missing" in r.err and "Traceback" not in r.err, r.err


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("catalog.sqlite", "rebuilds it from the journal"),
        ("keys.sqlite", "restore it from a backup"),
        ("archive.json", "restore it from a backup"),
        ("keys/master.json", "restore it from a backup"),
    ],
)
def test_a_file_that_is_not_what_it_should_be(imported: tuple[Cli, Path, str], name: str, says: str) -> None:
    cli, archive, _oid = imported
    for extra in archive.glob(f"{name}-*"):
        extra.unlink()
    (archive / name).write_bytes(b"this is not what belongs here\n" * 200)
    r = cli("stats")
    assert r.code == 9, (r.code, r.err)
    assert says in r.err
