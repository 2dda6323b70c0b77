"""Shared fixtures: a fresh archive config per test, and running the CLI in-process or as a process."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
SAMPLE_MAILDIR = DATA / "sample-maildir"
MALFORMED = DATA / "malformed"
PASSPHRASE = "correct horse battery staple"

TAGGING = {
    "clients": [
        {"name": "acme", "domains": ["acme.example"], "matter_prefixes": ["10234-"]},
        {"name": "globex", "domains": ["globex.example"], "matter_prefixes": ["20871-"]},
    ],
}


@dataclass
class CliResult:
    code: int
    out: str
    err: str
    raw: bytes = b""

    def json(self) -> object:
        return json.loads(self.out)

    def json_lines(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.out.splitlines() if line.strip()]


@pytest.fixture(autouse=True)
def _passphrase(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARCHIVER_PASSPHRASE", PASSPHRASE)
    monkeypatch.delenv("ARCHIVER_CONFIG", raising=False)


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    """A config with the archive under tmp_path and the tests' tagging rules."""
    import yaml

    cfg = {"archive": {"path": str(tmp_path / "archive")}, "tagging": TAGGING, "ingest": {"workers": 2}}
    p = tmp_path / "archiver.yaml"
    p.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return p




@pytest.fixture
def cli(config_file: Path) -> Callable[..., CliResult]:
    """Run `archiver --config <tmp config> ARGS` in-process; returns exit code and output."""
    from archiver.cli.main import main

    def run(*args: str, config: Path | None = config_file) -> CliResult:
        out_bytes = io.BytesIO()
        out = io.TextIOWrapper(out_bytes, encoding="utf-8", write_through=True)
        err = io.StringIO()
        argv = ([f"--config={config}"] if config else []) + list(args)
        with redirect_stdout(out), redirect_stderr(err):
            code = main(argv)
        out.flush()
        raw = out_bytes.getvalue()
        return CliResult(code, raw.decode("utf-8", "replace"), err.getvalue(), raw)

    return run


def archiver_exe() -> list[str]:
    return [sys.executable, "-m", "archiver.cli.main"]


def run_process(args: list[str], **kw: object) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "ARCHIVER_PASSPHRASE": PASSPHRASE}
    return subprocess.run([*archiver_exe(), *args], capture_output=True, env=env, timeout=300, **kw)  # type: ignore[call-overload, no-any-return]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def initialised(cli: Callable[..., CliResult]) -> Iterator[Callable[..., CliResult]]:
    r = cli("init")
    assert r.code == 0, r.err
    yield cli
