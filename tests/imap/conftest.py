"""Fixtures: one real Dovecot per test session, a fresh mailbox user per test."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from .dovecot import DOVECOT, INSTALL_HINT, Dovecot
from .helpers import MailUser, new_user


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    if DOVECOT is None:
        pytest.skip(INSTALL_HINT)
    server = Dovecot()
    server.enable_oauth2()
    server.start()
    try:
        yield server
    finally:
        if os.environ.get("DOVECOT_KEEP"):
            server.stop()
            print(f"dovecot test directory kept: {server.root}")
        else:
            server.cleanup()


@pytest.fixture
def mail_user(dovecot: Dovecot) -> Iterator[MailUser]:
    if not dovecot.running:  # a previous test stopped it on purpose
        dovecot.start()
    yield new_user(dovecot)
