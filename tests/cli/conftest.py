"""Fixtures shared by the CLI tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.conftest import SAMPLE_MAILDIR, CliResult


@pytest.fixture
def imported(initialised: Callable[..., CliResult]) -> Callable[..., CliResult]:
    """An archive holding the sample Maildir, imported as source ``legacy``; returns the CLI runner."""
    r = initialised("import", str(SAMPLE_MAILDIR), "--source", "legacy", "--json")
    assert r.code == 0, r.err
    return initialised
