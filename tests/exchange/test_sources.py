"""Building the Exchange connectors from the config: secrets from env or files, clear config errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from archiver.config import parse_config
from archiver.errors import ConfigError
from archiver.sources import build_connector
from connectors.ews import EwsConnector
from connectors.graph import GraphConnector

from .http_emulator import make_app_certificate


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


def graph_source(**kw: Any) -> Any:
    src: dict[str, Any] = {
        "name": "o365",
        "type": "graph",
        "auth": {"tenant": "t", "client_id": "c", "client_secret_env": "GRAPH_SECRET"},
        "mailboxes": ["a@example.com"],
    }
    for key, value in kw.items():
        if key == "auth":
            src["auth"] = {**src["auth"], **value}
        else:
            src[key] = value
    return source(**src)


def test_setup_mistakes_are_config_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Finding 3: a missing CA file, an encrypted key without its password, a damaged key, or a graph_url that is not
    https are sentences naming the source and the key, not tracebacks (and no token goes out in clear text)."""
    monkeypatch.setenv("GRAPH_SECRET", "s3cret")
    with pytest.raises(ConfigError, match=r"auth\.ca_file .*missing\.pem does not exist"):
        build_connector(graph_source(auth={"ca_file": str(tmp_path / "missing.pem")}))
    with pytest.raises(ConfigError, match="must be an https URL"):
        build_connector(graph_source(graph_url="http://graph.example.com/v1.0"))
    key, cert = make_app_certificate()
    loaded = serialization.load_pem_private_key(key.encode(), None)
    encrypted = tmp_path / "encrypted.pem"
    encrypted.write_bytes(
        loaded.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")
        )
        + cert.encode()
    )
    certificate_auth = {"client_secret_env": None, "certificate_file": str(encrypted)}
    with pytest.raises(ConfigError, match="certificate_password_env"):
        build_connector(graph_source(auth=certificate_auth))
    damaged = tmp_path / "damaged.pem"
    damaged.write_text("-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n" + cert, "ascii")
    with pytest.raises(ConfigError, match="damaged"):
        build_connector(graph_source(auth={"client_secret_env": None, "certificate_file": str(damaged)}))
    ews = {
        "name": "e",
        "type": "ews",
        "mailboxes": ["a@b"],
        "auth": {"type": "oauth", "tenant": "t", "client_id": "c", "client_secret_env": "GRAPH_SECRET"},
    }
    ews["auth"]["ca_file"] = str(tmp_path / "missing.pem")
    with pytest.raises(ConfigError, match=r"auth\.ca_file"):
        build_connector(source(**ews))


def test_journal_mailboxes_reach_the_connectors(monkeypatch: pytest.MonkeyPatch) -> None:
    """Finding 2: only the journaling mailboxes a source names unwrap journal reports (none unless named)."""
    monkeypatch.setenv("GRAPH_SECRET", "s3cret")
    plain = build_connector(graph_source())
    assert isinstance(plain, GraphConnector) and plain._s.journal_mailboxes == ()
    journaling = build_connector(graph_source(journal_mailboxes=["journal@example.com"]))
    assert isinstance(journaling, GraphConnector) and journaling._s.journal_mailboxes == ("journal@example.com",)
