"""End to end: `archiver sync` from each Exchange protocol emulator, then `search 'bcc:...'` for a journal report.

The report's envelope (tests/exchange/messages.py) names dave as Bcc, erin as a member of the
Sales list addressed in To, and frank as the alternate recipient of grace, addressed in Cc:
only dave may be found with ``bcc:``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from ..conftest import CliResult
from .ews_emulator import EwsEmulator
from .graph_emulator import CLIENT_ID, TENANT, GraphEmulator
from .messages import make_journal_report, make_mime


def add_source(config_file: Path, source: dict[str, Any]) -> None:
    cfg = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    cfg["sources"] = [source]
    config_file.write_text(yaml.safe_dump(cfg), encoding="utf-8")


def hits(cli: Callable[..., CliResult], query: str) -> int:
    return len(cli("search", query, "--json").json_lines())


def check_sync_and_bcc_search(cli: Callable[..., CliResult], name: str, expected: int) -> None:
    r = cli("sync", "--json")
    assert r.code == 0, r.err + r.out
    summary = r.json()
    assert isinstance(summary, dict)
    assert summary[name]["imported"] == expected and summary[name]["failed"] == 0
    again = cli("sync", "--json")
    assert again.code == 0 and again.json()[name]["imported"] == 0  # type: ignore[index]
    found = cli("search", "bcc:dave@example.com", "--json").json_lines()
    assert len(found) == 1 and "msg-5@example.com" in str(found[0]["message_id"])
    assert hits(cli, "bcc:nobody-else@example.com") == 0
    # recipient roles of the envelope (finding 5): list members and forwarding targets are not Bcc
    assert hits(cli, "to:erin@example.com") == 1 and hits(cli, "bcc:erin@example.com") == 0
    assert hits(cli, "cc:frank@example.com") == 1 and hits(cli, "bcc:frank@example.com") == 0
    assert hits(cli, "cc:grace@example.com") == 1 and hits(cli, "to:sales@example.com") == 1


def test_graph_sync_end_to_end(
    initialised: Callable[..., CliResult],
    config_file: Path,
    graph: GraphEmulator,
    tls_material: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    graph.add_user("journal@contoso.com", folders=("Inbox", "Sent Items"))
    graph.add_message("journal@contoso.com", "Sent Items", make_mime(1))
    report = make_journal_report(make_mime(5), to="bob@example.com", cc="carol@example.com", bcc="dave@example.com")
    graph.add_message("journal@contoso.com", "Inbox", report)
    monkeypatch.setenv("TEST_GRAPH_SECRET", graph.identity.client_secret or "")
    source: dict[str, Any] = {
        "name": "o365",
        "type": "graph",
        "mailboxes": ["journal@contoso.com"],
        "graph_url": graph.graph_url,
        "auth": {
            "tenant": TENANT,
            "client_id": CLIENT_ID,
            "client_secret_env": "TEST_GRAPH_SECRET",
            "authority": graph.identity.authority,
            "ca_file": str(tls_material[0]),
        },
    }
    source["journal_mailboxes"] = ["journal@contoso.com"]
    add_source(config_file, source)
    check_sync_and_bcc_search(initialised, "o365", 2)


def test_ews_sync_end_to_end(
    initialised: Callable[..., CliResult], config_file: Path, ews: EwsEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    ews.add_mailbox("journal@example.com")
    ews.add_message("journal@example.com", "sentitems", make_mime(1))
    report = make_journal_report(make_mime(5), to="bob@example.com", cc="carol@example.com", bcc="dave@example.com")
    ews.add_message("journal@example.com", "inbox", report)
    monkeypatch.setenv("TEST_EWS_PASSWORD", ews.password)
    source: dict[str, Any] = {
        "name": "onprem",
        "type": "ews",
        "endpoint": ews.endpoint,
        "auth": {"type": "basic", "username": ews.username, "password_env": "TEST_EWS_PASSWORD"},
        "mailboxes": ["journal@example.com"],
    }
    source["journal_mailboxes"] = ["journal@example.com"]
    add_source(config_file, source)
    check_sync_and_bcc_search(initialised, "onprem", 2)
