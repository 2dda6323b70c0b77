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


def _field_names(model: type, seen: set[type] | None = None) -> set[str]:
    import typing

    from pydantic import BaseModel

    seen = seen or set()
    if model in seen:
        return set()
    seen.add(model)
    names: set[str] = set()
    for name, field in model.model_fields.items():  # type: ignore[attr-defined]
        if name == "origin":
            continue
        names.add(name)
        stack = [field.annotation]
        while stack:
            t = stack.pop()
            if isinstance(t, type) and issubclass(t, BaseModel):
                names |= _field_names(t, seen)
            stack.extend(typing.get_args(t))
    return names


def test_example_config_is_valid_and_documents_every_key() -> None:
    import re

    import yaml

    from archiver.config import Config

    root = Path(__file__).resolve().parent.parent
    text = (root / "config.example.yaml").read_text()
    parse_config(yaml.safe_load(text))
    keys = set(re.findall(r"^\s*(?:#\s*)?(?:- )?([a-z_]+):", text, flags=re.M))
    missing = _field_names(Config) - keys
    assert not missing, f"config.example.yaml does not document: {sorted(missing)}"


def test_home_is_expanded_and_an_empty_archive_path_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    cfg = parse_config({"archive": {"path": "~/arch", "passphrase_file": "~/pw"}}, tmp_path / "c.yaml")
    assert cfg.archive.path == tmp_path / "home" / "arch"
    assert cfg.archive.passphrase_file == tmp_path / "home" / "pw"
    with pytest.raises(ConfigError, match=r"archive\.path: must not be empty"):
        parse_config({"archive": {"path": " "}}, tmp_path / "c.yaml")


def test_a_key_given_twice_is_refused_naming_both_lines(tmp_path: Path) -> None:
    """YAML keeps the last of two equal keys: a second `sources:` would silently drop the first."""
    p = tmp_path / "archiver.yaml"
    p.write_text(
        "archive: {path: /tmp/x}\nsources:\n  - {name: a, type: files, paths: [/m]}\nsources:\n  - {name: b, type: files, paths: [/n]}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match=r"line 4.*'sources' is given twice \(first on line 2\)"):
        load_config(p)


def test_a_key_overriding_a_merged_one_is_not_a_duplicate(tmp_path: Path) -> None:
    p = tmp_path / "archiver.yaml"
    p.write_text(
        "archive: {path: /tmp/x}\n"
        "base: &base {type: files, paths: [/m], interval: 60}\n"
        "sources:\n  - {<<: *base, name: a, interval: 120}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as refused:
        load_config(p)
    assert "given twice" not in str(refused.value) and "base" in str(refused.value)  # the unknown key only
