"""Config loading: the minimal config works, mistakes get sentences, not tracebacks."""

from __future__ import annotations

from pathlib import Path

import pytest

from archiver.config import load_config, parse_config, read_passphrase
from archiver.errors import ConfigError, PassphraseError


def test_minimal_config_has_defaults(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("archive: {path: arch}\n")
    cfg = load_config(p)
    assert cfg.archive.path == (tmp_path / "arch").resolve()
    assert cfg.ingest.batch_size > 0 and cfg.sources == []
    assert cfg.tagging.matter_patterns


def test_config_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("archive: {path: /x}\n")
    monkeypatch.setenv("ARCHIVER_CONFIG", str(p))
    assert load_config(None).archive.path == Path("/x")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("archive: {path: a, bogus: 1}\n", "archive.bogus: unknown key"),
        ("ingest: {}\n", "archive: required key is missing"),
        ("archive: {path: a}\ningest: {batch_size: 0}\n", "ingest.batch_size"),
        ("archive: {path: a}\ntagging: {matter_patterns: ['(']}\n", "invalid regular expression"),
        ("archive: [\n", "not valid YAML at line"),
        ("- 1\n", "must be a mapping"),
        (
            "archive: {path: a}\nsources: [{name: s, type: files, paths: [x]}, {name: s, type: files, paths: [y]}]\n",
            "two sources are named 's'",
        ),
    ],
)
def test_bad_configs_are_explained(tmp_path: Path, text: str, fragment: str) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    assert fragment in str(exc.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_passphrase_file_and_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ARCHIVER_PASSPHRASE", raising=False)
    cfg = parse_config({"archive": {"path": "a"}})
    with pytest.raises(PassphraseError, match="ARCHIVER_PASSPHRASE"):
        read_passphrase(cfg.archive)
    f = tmp_path / "pw"
    f.write_text("s3cret\nignored\n")
    cfg = parse_config({"archive": {"path": "a", "passphrase_file": str(f)}})
    assert read_passphrase(cfg.archive) == "s3cret"
