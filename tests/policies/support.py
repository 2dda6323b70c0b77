"""What the end-to-end retention tests share: an archive of the sample mail with a rules file next to it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from archiver.archive import Archive
from archiver.config import load_config
from archiver.policies import apply as retention
from tests.conftest import SAMPLE_MAILDIR, TAGGING, CliResult


def make_env(tmp_path: Path, cli: Callable[..., CliResult], tagging: dict[str, Any] | None = None) -> Env:
    """An initialised archive of the sample Maildir (source ``legacy``) with ``rules.yaml`` as its rules file."""
    cfg = {
        "archive": {"path": str(tmp_path / "archive")},
        "tagging": tagging or TAGGING,
        "ingest": {"workers": 2},
        "retention": {"rules_file": "rules.yaml"},
    }
    path = tmp_path / "archiver.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    e = Env(path, tmp_path / "rules.yaml", cli)
    assert e.run("init").code == 0
    r = e.run("import", str(SAMPLE_MAILDIR), "--source", "legacy", "--json")
    assert r.code == 0, r.err
    return e


class Env:
    def __init__(self, config: Path, rules: Path, cli: Callable[..., CliResult]) -> None:
        self.config, self.rules, self._cli = config, rules, cli
        self._archive: Archive | None = None

    def run(self, *args: str) -> CliResult:
        self.close()
        return self._cli(*args, config=self.config)

    def write_rules(self, *rules: dict[str, Any], default: dict[str, Any] | None = None, accept: bool = True) -> None:
        """Write a rules file and (unless ``accept=False``) adopt it, as `retention rules accept` does."""
        data: dict[str, Any] = {"version": 1, "rules": list(rules)}
        if default:
            data["default"] = default
        self.rules.write_text(yaml.safe_dump(data), encoding="utf-8")
        if accept:
            retention.accept_rules(self.archive, datetime.now(UTC), "records-manager")

    @property
    def archive(self) -> Archive:
        if self._archive is None:
            self._archive = Archive.open(load_config(self.config))
        return self._archive

    def close(self) -> None:
        if self._archive is not None:
            self._archive.close()
            self._archive = None

    def ids(self, where: str, *params: Any) -> set[str]:
        rows = self.archive.repo.catalog.conn.execute(
            "SELECT o.id FROM objects o JOIN tags t ON t.id = o.id LEFT JOIN messages m ON m.id = o.id "
            f"WHERE o.disposed_at IS NULL AND {where}",
            params,
        ).fetchall()
        return {r[0] for r in rows}

    def disposed(self) -> set[str]:
        rows = self.archive.repo.catalog.conn.execute("SELECT id FROM objects WHERE disposed_at IS NOT NULL")
        return {r[0] for r in rows}


def Y(year: int, month: int = 1, day: int = 1) -> datetime:
    return datetime(year, month, day, tzinfo=UTC)


def dictionary_terms(archive: Archive, prefix: str) -> list[tuple[str, int]]:
    """Terms in the index files' term dictionaries (deleted documents count until their segment is rewritten)."""
    from archiver.index import schema as S

    archive.index.reload()
    return list(archive.index._index.searcher().terms_with_prefix(S.F_BODY, prefix))
