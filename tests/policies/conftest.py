"""The ``env`` fixture: a fresh archive of the sample mail per test (tests/policies/support.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import CliResult
from tests.policies.support import Env, make_env


@pytest.fixture
def env(tmp_path: Path, cli: Callable[..., CliResult]) -> Iterator[Env]:
    e = make_env(tmp_path, cli)
    yield e
    e.close()
