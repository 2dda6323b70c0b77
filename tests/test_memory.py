"""The malloc arena cap (archiver/memory.py) takes effect on glibc and is applied by the CLI."""

from __future__ import annotations

import platform

import pytest

from archiver import memory
from archiver.cli.main import main


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt(M_ARENA_MAX) is glibc's")
def test_arena_cap_is_set_on_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "_done", False)
    assert memory.limit_malloc_arenas() is True
    assert memory.limit_malloc_arenas() is True  # idempotent


def test_cli_caps_arenas_before_running_a_command(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr("archiver.cli.main.limit_malloc_arenas", lambda: calls.append(1) or True)
    main(["--version"])
    assert calls == [1]
