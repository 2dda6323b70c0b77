"""Fixtures: the Exchange protocol emulators on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .ews_emulator import EwsEmulator
from .graph_emulator import GraphEmulator
from .http_emulator import make_tls_material


@pytest.fixture(scope="session")
def tls_material(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (the emulators' HTTPS), and its key."""
    return make_tls_material(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def graph(tls_material: tuple[Path, Path]) -> Iterator[GraphEmulator]:
    """A running Microsoft Graph protocol emulator (with its identity platform)."""
    emu = GraphEmulator(tls_material).start()
    try:
        yield emu
    finally:
        emu.stop()
        assert not emu.errors, emu.errors


@pytest.fixture
def ews() -> Iterator[EwsEmulator]:
    """A running Exchange Web Services protocol emulator (plain HTTP on 127.0.0.1)."""
    emu = EwsEmulator().start()
    try:
        yield emu
    finally:
        emu.stop()
        assert not emu.errors, emu.errors
