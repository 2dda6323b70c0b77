"""The Graph connector against the Microsoft Graph protocol emulator."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Generator
from pathlib import Path

import pytest

from connectors.base import Batch, Connector
from connectors.graph import GRAPH_SCOPE, GraphConnector, GraphSettings
from connectors.msauth import CertificateCredential, MsalSettings, TokenProvider

from .graph_emulator import CLIENT_ID, TENANT, GraphEmulator
from .http_emulator import make_app_certificate
from .messages import make_journal_report, make_mime

ALICE = "alice@contoso.com"
BOB = "bob@contoso.com"


def connector(
    emu: GraphEmulator,
    tls: tuple[Path, Path],
    mailboxes: tuple[str, ...] = (ALICE,),
    secret: str | None = None,
    certificate: CertificateCredential | None = None,
    **kw: object,
) -> GraphConnector:
    tokens = TokenProvider(
        MsalSettings(
            tenant=TENANT,
            client_id=CLIENT_ID,
            scopes=(GRAPH_SCOPE,),
            client_secret=None if certificate else (secret or emu.identity.client_secret),
            certificate=certificate,
            authority=emu.identity.authority,
            verify=str(tls[0]),
        )
    )
    settings = GraphSettings(name="o365", mailboxes=mailboxes, graph_url=emu.graph_url, verify=str(tls[0]), **kw)  # type: ignore[arg-type]
    return GraphConnector(settings, tokens)


def run(conn: Connector, saved: dict[str, str]) -> list[Batch]:
    """One sync pass as the pipeline does it: each batch 'commits', then its checkpoints are saved."""
    out = []
    for batch in conn.batches(dict(saved)):
        out.append(batch)
        for cp in batch.checkpoints:
            saved[cp.key] = cp.value
    return out


def ids(batches: list[Batch]) -> list[str]:
    return [m.origin.uid for b in batches for m in b.messages]


def populate(emu: GraphEmulator) -> dict[str, bytes]:
    emu.add_user(ALICE)
    emu.add_folder(ALICE, "Inbox/Projects")
    emu.add_folder(ALICE, "Hidden Stuff", hidden=True)
    placed = {}
    for n, path in enumerate(["Inbox", "Inbox", "Inbox", "Sent Items", "Sent Items", "Inbox/Projects", "Hidden Stuff"]):
        data = make_mime(n)
        placed[emu.add_message(ALICE, path, data)] = data
    return placed


def test_first_sync_archives_every_folder_byte_exact(graph: GraphEmulator, tls_material: tuple[Path, Path]) -> None:
    placed = populate(graph)
    conn = connector(graph, tls_material)
    assert isinstance(conn, Connector)
    saved: dict[str, str] = {}
    batches = run(conn, saved)
    got = {m.origin.uid: m for b in batches for m in b.messages}
    assert set(got) == set(placed)
    assert all(got[i].data == placed[i] for i in placed)
    assert not [f for b in batches for f in b.failures]
    folders = {m.origin.folder for m in got.values()}
    assert folders == {"Inbox", "Sent Items", "Inbox/Projects", "Hidden Stuff"}
    m = next(iter(got.values()))
    assert m.origin.source == "o365" and m.origin.account == ALICE and m.origin.internaldate is not None
    user = graph.users[ALICE]
    assert set(saved) == {f"graph:o365:{ALICE}:{fid}" for fid, f in user.folders.items() if f.parent_id}
    assert all("$deltatoken=" in v for v in saved.values())
    # the token endpoint was asked for the Graph scope
    assert graph.identity.scopes_seen and GRAPH_SCOPE in graph.identity.scopes_seen[0]


def test_hidden_folders_and_patterns(graph: GraphEmulator, tls_material: tuple[Path, Path]) -> None:
    populate(graph)
    batches = run(connector(graph, tls_material, include_hidden_folders=False, exclude=("Sent*",)), {})
    assert {m.origin.folder for b in batches for m in b.messages} == {"Inbox", "Inbox/Projects"}


def test_incremental_sync_fetches_only_new_and_never_deletes(
    graph: GraphEmulator, tls_material: tuple[Path, Path]
) -> None:
    placed = populate(graph)
    conn = connector(graph, tls_material)
    saved: dict[str, str] = {}
    run(conn, saved)
    first_downloads = graph.value_downloads
    gone = next(iter(placed))
    graph.delete_message(ALICE, "Inbox", gone)
    new1 = graph.add_message(ALICE, "Inbox", make_mime(100))
    new2 = graph.add_message(ALICE, "Sent Items", make_mime(101))
    batches = run(conn, saved)
    assert sorted(ids(batches)) == sorted([new1, new2])
    assert graph.value_downloads == first_downloads + 2
    # a third run with nothing new fetches nothing
    assert ids(run(conn, saved)) == []


def test_paging_one_batch_per_page_with_bounded_concurrency(
    graph: GraphEmulator, tls_material: tuple[Path, Path]
) -> None:
    graph.add_user(ALICE, folders=("Inbox",))
    placed = {graph.add_message(ALICE, "Inbox", make_mime(n)): n for n in range(23)}
    graph.value_delay = 0.05
    saved: dict[str, str] = {}
    batches = run(connector(graph, tls_material, page_size=8), saved)
    inbox = [b for b in batches if b.folder == "Inbox"]
    assert [len(b.messages) for b in inbox] == [8, 8, 7]
    assert all(len(b.checkpoints) == 1 for b in inbox)
    assert "$skiptoken=" in inbox[0].checkpoints[0].value and "$deltatoken=" in inbox[-1].checkpoints[0].value
    assert Counter(ids(batches)) == Counter(set(placed))
    assert 1 < graph.max_in_flight[ALICE] <= 4


@pytest.mark.parametrize(("status", "pattern"), [(429, "/messages/delta"), (503, "/$value"), (429, "/mailFolders")])
def test_throttling_honours_retry_after(
    graph: GraphEmulator, tls_material: tuple[Path, Path], status: int, pattern: str
) -> None:
    placed = populate(graph)
    graph.throttle(1, status=status, retry_after="1", pattern=pattern)
    start = time.monotonic()
    batches = run(connector(graph, tls_material), {})
    assert time.monotonic() - start >= 1.0
    assert graph.throttled_served == 1
    assert set(ids(batches)) == set(placed)
    assert not [f for b in batches for f in b.failures]


def test_throttling_beyond_patience_fails_the_folder_and_resumes_later(
    graph: GraphEmulator, tls_material: tuple[Path, Path]
) -> None:
    placed = populate(graph)
    graph.throttle(1, status=429, retry_after="3600", pattern="/messages/delta")
    saved: dict[str, str] = {}
    batches = run(connector(graph, tls_material, max_retry_wait=5.0), saved)
    failures = [f for b in batches for f in b.failures]
    assert len(failures) == 1 and not failures[0].permanent and ALICE in failures[0].location
    assert "3600" in failures[0].reason
    batches2 = run(connector(graph, tls_material), saved)
    assert set(ids(batches)) | set(ids(batches2)) == set(placed)


def test_expired_delta_token_resyncs_without_duplicates(graph: GraphEmulator, tls_material: tuple[Path, Path]) -> None:
    placed = populate(graph)
    conn = connector(graph, tls_material)
    saved: dict[str, str] = {}
    run(conn, saved)
    graph.expire_delta_tokens()
    new = graph.add_message(ALICE, "Inbox", make_mime(200))
    batches = run(conn, saved)
    seen = Counter(ids(batches))
    assert set(seen) == set(placed) | {new}  # full resync: every live message again (dedup absorbs them)
    assert max(seen.values()) == 1  # but none twice within the resync
    events = [e for b in batches for e in b.events if e.kind == "delta_token_expired"]
    assert len(events) == graph.gone_served == 5  # one per folder
    assert {e.detail["folder"] for e in events} == {
        "Inbox",
        "Sent Items",
        "Deleted Items",
        "Inbox/Projects",
        "Hidden Stuff",
    }
    # the new delta links work again
    assert ids(run(conn, saved)) == []


def test_kill_mid_sync_then_resume_loses_nothing(graph: GraphEmulator, tls_material: tuple[Path, Path]) -> None:
    graph.add_user(ALICE, folders=("Inbox", "Sent Items"))
    placed = {graph.add_message(ALICE, "Inbox", make_mime(n)) for n in range(9)}
    placed |= {graph.add_message(ALICE, "Sent Items", make_mime(n)) for n in range(9, 14)}
    conn = connector(graph, tls_material, page_size=3)
    saved: dict[str, str] = {}
    seen: list[str] = []
    gen = conn.batches(dict(saved))
    assert isinstance(gen, Generator)
    for _ in range(2):  # two batches commit...
        b = next(gen)
        seen += [m.origin.uid for m in b.messages]
        for cp in b.checkpoints:
            saved[cp.key] = cp.value
    b = next(gen)  # ...the third is fetched but the process dies before its commit
    gen.close()
    assert len(seen) == 6 and saved
    seen += ids(run(conn, saved))
    assert set(seen) == placed
    # at most the uncommitted batch was fetched twice
    assert len(seen) == len(placed)


def test_token_refused_fails_each_mailbox_clearly(graph: GraphEmulator, tls_material: tuple[Path, Path]) -> None:
    populate(graph)
    graph.add_user(BOB)
    batches = run(connector(graph, tls_material, mailboxes=(ALICE, BOB), secret="wrong"), {})
    failures = [f for b in batches for f in b.failures]
    assert [f.location for f in failures] == [f"o365:{ALICE}", f"o365:{BOB}"]
    assert all("invalid_client" in f.reason and "AADSTS7000215" in f.reason and f.permanent for f in failures)
    assert "wrong" not in " ".join(f.reason for f in failures)  # the secret never appears
    assert ids(batches) == []


def test_denied_mailbox_fails_other_continues(graph: GraphEmulator, tls_material: tuple[Path, Path]) -> None:
    populate(graph)
    graph.add_user(BOB)
    bob_id = graph.add_message(BOB, "Inbox", make_mime(300))
    graph.users[ALICE].denied = True
    batches = run(connector(graph, tls_material, mailboxes=(ALICE, BOB)), {})
    failures = [f for b in batches for f in b.failures]
    assert len(failures) == 1 and ALICE in failures[0].location and "Mail.Read" in failures[0].reason
    assert ids(batches) == [bob_id]


def test_group_members_are_archived(graph: GraphEmulator, tls_material: tuple[Path, Path]) -> None:
    graph.add_user(ALICE)
    graph.add_user(BOB)
    a = graph.add_message(ALICE, "Inbox", make_mime(1))
    b = graph.add_message(BOB, "Inbox", make_mime(2))
    graph.groups["grp-1"] = [ALICE, BOB, "device:printer"]
    batches = run(connector(graph, tls_material, mailboxes=(), group="grp-1"), {})
    assert set(ids(batches)) == {a, b}
    assert {m.origin.account for bt in batches for m in bt.messages} == {ALICE, BOB}


def test_journal_report_is_unwrapped(graph: GraphEmulator, tls_material: tuple[Path, Path]) -> None:
    graph.add_user("journal@contoso.com", folders=("Inbox",))
    original = make_mime(5)
    report = make_journal_report(original, to="bob@example.com", cc="carol@example.com", bcc="dave@example.com")
    graph.add_message("journal@contoso.com", "Inbox", report)
    batches = run(connector(graph, tls_material, mailboxes=("journal@contoso.com",)), {})
    [msg] = [m for b in batches for m in b.messages]
    assert msg.data == original
    assert "dave@example.com" in msg.origin.envelope_recipients


def test_certificate_credential(graph: GraphEmulator, tls_material: tuple[Path, Path]) -> None:
    key_pem, cert_pem = make_app_certificate()
    graph.identity.certificate_pem = cert_pem
    placed = populate(graph)
    cert = CertificateCredential(private_key_pem=key_pem, certificate_pem=cert_pem)
    batches = run(connector(graph, tls_material, certificate=cert), {})
    assert set(ids(batches)) == set(placed)
    # a certificate the app registration does not know is refused
    other_key, other_cert = make_app_certificate()
    bad = CertificateCredential(private_key_pem=other_key, certificate_pem=other_cert)
    failures = [f for b in run(connector(graph, tls_material, certificate=bad), {}) for f in b.failures]
    assert failures and "client assertion invalid" in failures[0].reason
