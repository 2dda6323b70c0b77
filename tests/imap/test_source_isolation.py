"""`archiver sync` with two sources: whatever goes wrong in one is that source's failure, and the
other source is still synced (README: exit 11 when a source cannot be read at all).

The second source is always a real Dovecot account.  The failures of the first are injected
where no server can cause them: an unexpected exception is a bug by definition.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import CliResult

from .helpers import MailUser, make_message

pytestmark = pytest.mark.dovecot

SECRET_TEXT = "hunter2-in-an-error-message"


def _imap(name: str, user: MailUser, **extra: Any) -> dict[str, Any]:
    var = "IMAP_ISOLATION_PW_" + user.username.split("@")[0].upper()
    os.environ[var] = user.password
    return {
        "name": name,
        "type": "imap",
        "host": "127.0.0.1",
        "port": user.server.port,
        "tls": "none",
        "accounts": [{"username": user.username, "password_env": var}],
        **extra,
    }


def _broken_source(kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, user: MailUser) -> dict[str, Any]:
    """A source named ``broken`` of type ``kind`` whose connector raises something unexpected."""
    monkeypatch.setenv("ISOLATION_SECRET", "s3cret")
    password_file = tmp_path / "pw"
    password_file.write_text("s3cret\n")
    sources: dict[str, tuple[dict[str, Any], str]] = {
        "files": ({"type": "files", "paths": [str(tmp_path)]}, "connectors.files.FilesConnector"),
        "imap": (
            {k: v for k, v in _imap("broken", user).items() if k not in ("name",)},
            "connectors.imap.ImapConnector",
        ),
        "ews": (
            {
                "type": "ews",
                "endpoint": "https://mail.example.com/EWS/Exchange.asmx",
                "auth": {"type": "ntlm", "username": "EXAMPLE\\svc", "password_file": str(password_file)},
                "mailboxes": ["a@example.com"],
            },
            "connectors.ews.EwsConnector",
        ),
        "graph": (
            {
                "type": "graph",
                "auth": {
                    "tenant": "contoso.onmicrosoft.com",
                    "client_id": "abc",
                    "client_secret_env": "ISOLATION_SECRET",
                },
                "mailboxes": ["a@example.com"],
            },
            "connectors.graph.GraphConnector",
        ),
    }
    src, cls = sources[kind]
    module, name = cls.rsplit(".", 1)

    import importlib

    real = getattr(importlib.import_module(module), name).batches

    def batches(self: Any, checkpoints: Mapping[str, str]) -> Iterator[Any]:
        if self.name != "broken":  # the healthy IMAP source uses the same class
            yield from real(self, checkpoints)
            return
        raise RuntimeError(SECRET_TEXT)

    monkeypatch.setattr(f"{module}.{name}.batches", batches)
    return {"name": "broken", **src}


def _configure(config_file: Path, sources: list[dict[str, Any]]) -> None:
    cfg = yaml.safe_load(config_file.read_text())
    cfg["sources"] = sources
    config_file.write_text(yaml.safe_dump(cfg))


@pytest.fixture
def healthy(mail_user: MailUser) -> MailUser:
    mail_user.append("INBOX", [make_message("healthy 1"), make_message("healthy 2")])
    return mail_user


@pytest.mark.parametrize("kind", ["files", "imap", "ews", "graph"])
def test_unexpected_exception_in_one_source_fails_that_source_only(
    kind: str,
    initialised: Callable[..., CliResult],
    config_file: Path,
    healthy: MailUser,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before, the exception went out of `archiver sync` as a traceback and the next source never ran."""
    mail = tmp_path / "mail"
    mail.mkdir()
    broken = _broken_source(kind, mail, monkeypatch, healthy)
    _configure(config_file, [broken, _imap("healthy", healthy)])

    r = initialised("sync", "--json")

    assert r.code == 11, (r.code, r.err)
    result = r.json()
    assert isinstance(result, dict)
    assert result["healthy"]["imported"] == 2 and result["healthy"]["failed"] == 0
    failed = result["broken"]
    assert failed["source_errors"] == 1 and failed["imported"] == 0
    [failure] = failed["failures"]
    assert failure["location"] == "broken"
    assert "unexpected RuntimeError" in failure["reason"] and "test_source_isolation.py" in failure["reason"]
    assert SECRET_TEXT not in r.out + r.err  # a library's message may quote a secret: not shown

    text = initialised("sync")  # the same in text output, and no traceback
    assert text.code == 11
    assert "Traceback" not in text.err and "unexpected RuntimeError" in text.err


def test_unexpected_exception_in_the_pipeline_fails_that_source_only(
    initialised: Callable[..., CliResult], config_file: Path, healthy: MailUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Raised while the archive handled the first source's mail (not by its connector)."""
    import archiver.cli.sync as sync_cmd

    real_ingest = sync_cmd.ingest

    def ingest(archive: Any, connector: Any, **kw: Any) -> Any:
        if connector.name == "first":
            raise KeyError(SECRET_TEXT)
        return real_ingest(archive, connector, **kw)

    monkeypatch.setattr(sync_cmd, "ingest", ingest)
    other = MailUser(healthy.server, healthy.username, healthy.password)
    _configure(config_file, [_imap("first", other), _imap("healthy", healthy)])

    r = initialised("sync", "--json")

    assert r.code == 11, (r.code, r.err)
    result = r.json()
    assert isinstance(result, dict) and result["healthy"]["imported"] == 2
    assert "unexpected KeyError" in result["first"]["failures"][0]["reason"]
    assert SECRET_TEXT not in r.out + r.err


def test_config_mistake_in_one_source_is_reported_and_the_others_run(
    initialised: Callable[..., CliResult], config_file: Path, healthy: MailUser
) -> None:
    """A host-name typo gave a traceback (UnicodeError) and stopped the later sources; now it is a
    config error of that source (exit 3) and the others are synced."""
    typo = {**_imap("typo", healthy), "host": "mail..example.com"}
    _configure(config_file, [typo, _imap("healthy", healthy)])

    r = initialised("sync")

    assert r.code == 3, (r.code, r.err)
    assert "Traceback" not in r.err
    assert "Source 'typo': host 'mail..example.com' is not a valid host name" in r.err
    stats = initialised("stats", "--json").json()
    assert isinstance(stats, dict) and stats["messages"] == 2
