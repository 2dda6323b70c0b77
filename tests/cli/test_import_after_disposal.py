"""A message disposed of and then delivered again is stored again: the new copy may be under a
hold or a longer rule, and dropping it as a duplicate would lose evidence nobody chose to lose."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from archiver.archive import Archive
from archiver.config import load_config
from archiver.store.objects import message_id_of
from tests.conftest import SAMPLE_MAILDIR, CliResult


def test_a_disposed_message_imported_again_is_archived_again(
    initialised: Callable[..., CliResult], config_file: Path, tmp_path: Path
) -> None:
    assert initialised("import", str(SAMPLE_MAILDIR)).code == 0
    one = sorted((SAMPLE_MAILDIR / "new").iterdir())[0]
    custodian = tmp_path / "custodian"
    for sub in ("cur", "new", "tmp"):
        (custodian / sub).mkdir(parents=True)
    shutil.copy(one, custodian / "cur" / one.name)
    oid = message_id_of(one.read_bytes())
    with Archive.open(load_config(config_file)) as archive:
        with archive.repo.transaction("test") as tx:
            tx.dispose(oid, rule="junk")
        archive.index.delete([oid])
        archive.index.commit()
    assert initialised("show", oid).code == 8
    # the place it was disposed from, read again: it stays disposed (no resurrection per re-read)
    again = initialised("import", str(SAMPLE_MAILDIR), "--json")
    assert again.code == 0 and again.json()["imported"] == 0, again.out  # type: ignore[index]
    assert initialised("show", oid).code == 8
    r = initialised("import", str(custodian), "--source", "custodian", "--json")
    assert r.code == 0, r.err
    assert r.json()["imported"] == 1 and r.json()["duplicates"] == 0  # type: ignore[index]
    shown = initialised("show", oid, "--raw")
    assert shown.code == 0 and shown.raw == one.read_bytes()
    assert initialised("verify", "--full").code == 0
    # its evidence bundle proves both arrivals: the places it was seen in are the journal's
    ids = tmp_path / "ids.txt"
    ids.write_text(oid + "\n")
    bundle = tmp_path / "again.zip"
    assert initialised("export", "--ids", str(ids), "--case", "C", "--out", str(bundle)).code == 0
    checked = initialised("bundle", "verify", str(bundle))
    assert checked.code == 0, checked.out


def test_the_disposal_certificate_still_verifies_after_the_message_arrives_again(
    initialised: Callable[..., CliResult], config_file: Path, tmp_path: Path
) -> None:
    assert initialised("import", str(SAMPLE_MAILDIR)).code == 0
    (config_file.parent / "retention_rules.yaml").write_text(
        "version: 1\ndefault: {period: 1d, start: sent, action: delete}\n", encoding="utf-8"
    )
    assert initialised("retention", "rules", "accept").code == 0
    r = initialised("retention", "apply", "--json")
    assert r.code == 0, r.err
    [certificate] = (config_file.parent / "archive" / "certificates").glob("*.json")
    one = sorted((SAMPLE_MAILDIR / "new").iterdir())[0]
    custodian = tmp_path / "custodian"
    for sub in ("cur", "new", "tmp"):
        (custodian / sub).mkdir(parents=True)
    shutil.copy(one, custodian / "cur" / one.name)
    r = initialised("import", str(custodian), "--source", "custodian", "--json")
    assert r.json()["imported"] == 1  # type: ignore[index]
    check = initialised("retention", "certificate", "verify", str(certificate))
    assert check.code == 0, check.out + check.err
