"""End to end through the CLI: `archiver sync` from a real Dovecot into a real archive."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import PASSPHRASE, CliResult, archiver_exe, sha256

from .dovecot import Dovecot
from .helpers import MailUser, make_message, new_user

pytestmark = pytest.mark.dovecot


def add_imap_source(config_file: Path, dovecot: Dovecot, users: list[MailUser], **extra: Any) -> None:
    """Add an IMAP source to the test config; passwords travel in environment variables.

    The variables stay set for the test session: each name belongs to one user.
    """
    cfg = yaml.safe_load(config_file.read_text())
    accounts = []
    for u in users:
        var = "IMAP_TEST_PW_" + u.username.split("@")[0].upper()
        os.environ[var] = u.password
        accounts.append({"username": u.username, "password_env": var})
    cfg["sources"] = [
        {
            "name": "dove",
            "type": "imap",
            "host": "127.0.0.1",
            "port": dovecot.port,
            "tls": "none",
            "accounts": accounts,
            **extra,
        }
    ]
    config_file.write_text(yaml.safe_dump(cfg))


@pytest.fixture
def synced(
    initialised: Callable[..., CliResult], config_file: Path, mail_user: MailUser
) -> tuple[Callable[..., CliResult], MailUser]:
    add_imap_source(config_file, mail_user.server, [mail_user], batch_size=2)
    return initialised, mail_user


def test_sync_stores_byte_exact_and_searchable(synced: tuple[Callable[..., CliResult], MailUser]) -> None:
    cli, user = synced
    msgs = [make_message(f"quarterly report {i}") for i in range(5)]
    user.append("INBOX", msgs)
    flags_before = user.server_flags()

    r = cli("sync", "--json")
    assert r.code == 0, r.err
    summary = r.json()["dove"]  # type: ignore[index]
    assert summary["imported"] == 5 and summary["failed"] == 0
    assert summary["folders"][f"{user.username}/INBOX"]["imported"] == 5

    for m in msgs:
        shown = cli("show", sha256(m), "--raw")
        assert shown.code == 0 and shown.raw == m
    hits = cli("search", "subject:quarterly", "--json", "--limit", "0").json_lines()
    assert {h["id"] for h in hits} == {sha256(m) for m in msgs}
    assert user.server_flags() == flags_before  # nothing marked \Seen

    again = cli("sync", "--json").json()["dove"]  # type: ignore[index]
    assert again["imported"] == 0 and again["duplicates"] == 0


def test_same_message_in_two_folders_stored_once_with_two_provenance_rows(
    synced: tuple[Callable[..., CliResult], MailUser],
) -> None:
    cli, user = synced
    msg = make_message("engagement letter")
    user.append("INBOX", [msg])
    user.append("Clients/Acme", [msg])
    summary = cli("sync", "--json").json()["dove"]  # type: ignore[index]
    assert summary["imported"] == 1 and summary["duplicates"] == 1
    shown = cli("show", sha256(msg), "--json").json()
    assert isinstance(shown, dict)
    prov = shown["provenance"]
    assert sorted(p["folder"] for p in prov) == ["Clients/Acme", "INBOX"]
    assert all(p["account"] == user.username and p["source"] == "dove" and p["uid"] == "1" for p in prov)


def test_wrong_password_reported_other_accounts_continue(
    initialised: Callable[..., CliResult], config_file: Path, dovecot: Dovecot
) -> None:
    bad, good = new_user(dovecot), new_user(dovecot)
    good.append("INBOX", [make_message("still archived")])
    bad.password = "wrong"
    add_imap_source(config_file, dovecot, [bad, good])
    r = initialised("sync", "--json")
    assert r.code == 11  # an account that cannot be read at all is a source error
    summary = r.json()["dove"]  # type: ignore[index]
    assert summary["imported"] == 1 and summary["failed"] == 1 and summary["source_errors"] == 1
    assert f"Login refused for account {bad.username!r}" in summary["failures"][0]["reason"]


def test_uidvalidity_reset_is_journaled_without_duplicates(
    synced: tuple[Callable[..., CliResult], MailUser],
) -> None:
    cli, user = synced
    msgs = [make_message(f"p{i}") for i in range(3)]
    user.append("Projects", msgs)
    assert cli("sync", "--json").json()["dove"]["imported"] == 3  # type: ignore[index]
    c = user.client()
    c.delete_folder("Projects")
    c.logout()
    user.append("Projects", msgs)

    summary = cli("sync", "--json").json()["dove"]  # type: ignore[index]
    assert summary["imported"] == 0 and summary["duplicates"] == 3
    assert [e["kind"] for e in summary["events"]] == ["uidvalidity_changed"]
    assert summary["events"][0]["folder"] == "Projects"
    stats = cli("stats", "--json").json()
    assert isinstance(stats, dict) and stats["messages"] == 3
    assert cli("verify").code == 0


def _segment_bytes(archive: Path) -> int:
    return sum(p.stat().st_size for p in archive.rglob("*") if p.is_file() and "segment" in str(p))


@pytest.mark.slow
def test_killed_cli_sync_resumes_nothing_lost_nothing_duplicated(
    synced: tuple[Callable[..., CliResult], MailUser], config_file: Path, tmp_path: Path
) -> None:
    cli, user = synced
    add_imap_source(config_file, user.server, [user], batch_size=20)
    msgs = [make_message(f"bulk {i}", body="words " * 200) for i in range(1500)]
    user.server.deliver(user.username, "INBOX", msgs)
    archive = tmp_path / "archive"
    start = _segment_bytes(archive)
    env = {**os.environ, "ARCHIVER_PASSPHRASE": PASSPHRASE}
    proc = subprocess.Popen(
        [*archiver_exe(), "--config", str(config_file), "sync", "--json"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while _segment_bytes(archive) - start < 200_000 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = cli("stats", "--json").json()
    assert isinstance(partial, dict)
    assert 0 < partial["messages"] < 1500, "the sync must be killed mid-way"

    r = cli("sync", "--json")
    assert r.code == 0, r.err
    summary = r.json()["dove"]  # type: ignore[index]
    assert summary["imported"] + partial["messages"] == 1500
    stats = cli("stats", "--json").json()
    assert isinstance(stats, dict) and stats["messages"] == 1500
    for m in (msgs[0], msgs[777], msgs[-1]):
        shown = cli("show", sha256(m), "--json").json()
        assert isinstance(shown, dict) and len(shown["provenance"]) == 1  # no duplicate provenance
        assert cli("show", sha256(m), "--raw").raw == m
    assert cli("verify").code == 0


def test_an_unreachable_server_exits_with_the_source_code(initialised: Callable[..., CliResult], config_file: Path) -> None:
    """README: exit 11 when a source cannot be read at all (here nothing listens on the port)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free once closed: nothing listens there
    cfg = yaml.safe_load(config_file.read_text())
    os.environ["IMAP_TEST_PW_NOBODY"] = "x"
    cfg["sources"] = [{"name": "gone", "type": "imap", "host": "127.0.0.1", "port": port, "tls": "none", "retries": 0,
                       "accounts": [{"username": "nobody", "password_env": "IMAP_TEST_PW_NOBODY"}]}]  # fmt: skip
    config_file.write_text(yaml.safe_dump(cfg))
    r = initialised("sync", "--json")
    summary = r.json()["gone"]  # type: ignore[index]
    assert summary["failed"] >= 1 and summary["imported"] == 0, summary
    assert r.code == 11, (r.code, summary)
    assert initialised("sync").code == 11
