"""Building the Exchange connectors from the config: secrets from env or files, clear config errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from archiver.config import parse_config
from archiver.errors import ConfigError
from archiver.sources import build_connector
from connectors.ews import EwsConnector
from connectors.graph import GraphConnector


def source(**src: Any) -> Any:
    return parse_config({"archive": {"path": "/tmp/unused"}, "sources": [src]}).sources[0]


def test_ews_with_password_file(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("hunter2\n", encoding="utf-8")
    conn = build_connector(
        source(
            name="onprem",
            type="ews",
            endpoint="https://mail.example.com/EWS/Exchange.asmx",
            auth={"type": "ntlm", "username": "EXAMPLE\\svc", "password_file": str(pw)},
            mailboxes=["a@example.com"],
        )
    )
    assert isinstance(conn, EwsConnector) and conn.name == "onprem"
    assert "hunter2" not in repr(conn.__dict__)


def test_graph_with_secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAPH_SECRET", "s3cret")
    conn = build_connector(
        source(
            name="o365",
            type="graph",
            auth={"tenant": "contoso.onmicrosoft.com", "client_id": "abc", "client_secret_env": "GRAPH_SECRET"},
            group="0000-group",
        )
    )
    assert isinstance(conn, GraphConnector)


def test_missing_secret_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOPE", raising=False)
    src = source(
        name="o365",
        type="graph",
        auth={"tenant": "t", "client_id": "c", "client_secret_env": "NOPE"},
        mailboxes=["a@example.com"],
    )
    with pytest.raises(ConfigError, match="NOPE"):
        build_connector(src)


@pytest.mark.parametrize(
    ("src", "problem"),
    [
        (
            {"name": "g", "type": "graph", "auth": {"tenant": "t", "client_id": "c", "client_secret_env": "X"}},
            "mailboxes",
        ),
        (
            {"name": "g", "type": "graph", "mailboxes": ["a@b"], "auth": {"tenant": "t", "client_id": "c"}},
            "exactly one credential",
        ),
        ({"name": "e", "type": "ews", "auth": {"type": "basic", "username": "u", "password_env": "P"}}, "mailboxes"),
        (
            {"name": "e", "type": "ews", "mailboxes": ["a@b"], "auth": {"type": "ntlm", "username": "u"}},
            "password_env or password_file",
        ),
        (
            {
                "name": "e",
                "type": "ews",
                "mailboxes": ["a@b"],
                "auth": {"type": "basic", "username": "u", "password_env": "P"},
                "typo": 1,
            },
            "unknown key",
        ),
    ],
)
def test_invalid_exchange_sources_are_refused(src: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        source(**src)
