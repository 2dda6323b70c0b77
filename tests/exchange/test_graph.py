"""The Graph connector against the Microsoft Graph protocol emulator."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Generator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from urllib.parse import quote

import pytest

from connectors.base import Batch, Connector
from connectors.graph import GRAPH_SCOPE, GraphConnector, GraphSettings
from connectors.msauth import CertificateCredential, MsalSettings, TokenProvider

from .graph_emulator import CLIENT_ID, TENANT, GFolder, GMessage, GraphEmulator
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
    sleep: Callable[[float], None] = time.sleep,
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
    params: dict[str, object] = {"graph_url": emu.graph_url, "verify": str(tls[0])}
    params.update(kw)
    settings = GraphSettings(name="o365", mailboxes=mailboxes, **params)  # type: ignore[arg-type]
    return GraphConnector(settings, tokens, sleep=sleep)


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


def test_members_of_nested_groups_are_archived(graph: GraphEmulator, tls_material: tuple[Path, Path]) -> None:
    """Finding 8: "All partners" holding "Litigation partners" archives the litigation partners too."""
    carol = "carol@contoso.com"
    for user in (ALICE, carol):
        graph.add_user(user, folders=("Inbox",))
    a = graph.add_message(ALICE, "Inbox", make_mime(1))
    c = graph.add_message(carol, "Inbox", make_mime(2))
    graph.groups["all-partners"] = [ALICE, "group:lit-partners"]
    graph.groups["lit-partners"] = [carol, "group:all-partners"]  # a cycle must not loop
    batches = run(connector(graph, tls_material, mailboxes=(), group="all-partners"), {})
    assert set(ids(batches)) == {a, c}
    assert not [f for bt in batches for f in bt.failures]


def test_journal_report_is_unwrapped_in_a_journaling_mailbox(
    graph: GraphEmulator, tls_material: tuple[Path, Path]
) -> None:
    graph.add_user("journal@contoso.com", folders=("Inbox",))
    original = make_mime(5)
    report = make_journal_report(original, to="bob@example.com", cc="carol@example.com", bcc="dave@example.com")
    graph.add_message("journal@contoso.com", "Inbox", report)
    conn = connector(graph, tls_material, mailboxes=(), journal_mailboxes=("journal@contoso.com",))
    [msg] = [m for b in run(conn, {}) for m in b.messages]
    assert msg.data == original
    assert msg.origin.envelope_recipients[4:6] == ("bcc:", "dave@example.com")


def test_journal_header_elsewhere_is_archived_as_received(
    graph: GraphEmulator, tls_material: tuple[Path, Path]
) -> None:
    """Finding 2: a lawyer's mailbox stores what the lawyer received, whatever headers the sender added."""
    graph.add_user(ALICE, folders=("Inbox",))
    received = make_journal_report(make_mime(5, subject="Settlement offer"), to="b@example.com", cc="", bcc="x@y.z")
    graph.add_message(ALICE, "Inbox", received)
    conn = connector(graph, tls_material, journal_mailboxes=("journal@contoso.com",))
    [msg] = [m for b in run(conn, {}) for m in b.messages]
    assert msg.data == received and msg.origin.envelope_recipients == ()


def test_bad_message_is_retried_later_and_its_folder_moves_on(
    graph: GraphEmulator, tls_material: tuple[Path, Path]
) -> None:
    """Finding 1: a message whose $value always fails neither blocks its folder nor is forgotten."""
    graph.add_user(ALICE, folders=("Inbox",))
    good1 = graph.add_message(ALICE, "Inbox", make_mime(1))
    poison = graph.add_message(ALICE, "Inbox", make_mime(2))
    good2 = graph.add_message(ALICE, "Inbox", make_mime(3))
    graph.throttle(10**6, status=500, retry_after=None, pattern=f"/messages/{quote(poison, safe='')}/$value")
    bad_request = graph.add_message(ALICE, "Inbox", make_mime(4))
    graph.throttle(10**6, status=400, retry_after=None, pattern=f"/messages/{quote(bad_request, safe='')}/$value")
    conn = connector(graph, tls_material, page_size=2, sleep=lambda s: None)
    saved: dict[str, str] = {}
    first = run(conn, saved)
    assert set(ids(first)) == {good1, good2}
    fails = [f for b in first for f in b.failures]
    assert len(fails) == 2 and poison in fails[0].reason and bad_request in fails[1].reason
    assert [e.detail["id"] for b in first for e in b.events if e.kind == "item_skipped"] == [poison, bad_request]
    inbox = graph._find(ALICE, "Inbox").id
    assert "$deltatoken=" in saved[f"graph:o365:{ALICE}:{inbox}"]
    assert list(json.loads(saved[f"graph:o365:{ALICE}:{inbox}:retry"])) == [poison, bad_request]
    later = graph.add_message(ALICE, "Inbox", make_mime(5))
    second = run(conn, saved)
    assert ids(second) == [later]  # mail arriving after the bad message is archived
    assert len([f for b in second for f in b.failures]) == 2
    graph.throttles.clear()
    third = run(conn, saved)
    assert sorted(ids(third)) == sorted([poison, bad_request])
    assert all(m.origin.internaldate is not None for b in third for m in b.messages)
    assert json.loads(saved[f"graph:o365:{ALICE}:{inbox}:retry"]) == {}


def test_undecodable_body_fails_one_message_not_the_source(
    graph: GraphEmulator, tls_material: tuple[Path, Path]
) -> None:
    """Finding 3: an exception that is not a connector error (httpx.DecodingError) stays with its message."""
    graph.add_user(ALICE, folders=("Inbox",))
    graph.add_user(BOB, folders=("Inbox",))
    bad = graph.add_message(ALICE, "Inbox", make_mime(1))
    graph.corrupt_values.add(bad)
    bob_msg = graph.add_message(BOB, "Inbox", make_mime(2))
    batches = run(connector(graph, tls_material, mailboxes=(ALICE, BOB)), {})
    assert ids(batches) == [bob_msg]
    [fail] = [f for b in batches for f in b.failures]
    assert bad in fail.reason and "DecodingError" in fail.reason


def test_unexpected_exception_fails_one_mailbox(
    graph: GraphEmulator, tls_material: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding 3: any exception while reading one mailbox is that mailbox's failure; the next one is synced."""
    graph.add_user(ALICE, folders=("Inbox",))
    graph.add_user(BOB, folders=("Inbox",))
    bob_msg = graph.add_message(BOB, "Inbox", make_mime(2))
    conn = connector(graph, tls_material, mailboxes=(ALICE, BOB))
    folders = conn._folders

    def broken(client: object, mailbox: object) -> object:
        if getattr(mailbox, "label", "") == ALICE:
            raise KeyError("displayName")
        return folders(client, mailbox)  # type: ignore[arg-type]

    monkeypatch.setattr(conn, "_folders", broken)
    batches = run(conn, {})
    assert ids(batches) == [bob_msg]
    [fail] = [f for b in batches for f in b.failures]
    assert fail.location == f"o365:{ALICE}" and "KeyError" in fail.reason


def test_missing_ca_file_fails_each_mailbox(
    graph: GraphEmulator, tls_material: tuple[Path, Path], tmp_path: Path
) -> None:
    """Finding 3: a CA file that does not exist is a sentence, not a FileNotFoundError ending the sync."""
    conn = connector(graph, tls_material, mailboxes=(ALICE, BOB), verify=str(tmp_path / "missing.pem"))
    fails = [f for b in run(conn, {}) for f in b.failures]
    assert [f.location for f in fails] == [f"o365:{ALICE}", f"o365:{BOB}"]
    assert all("missing.pem" in f.reason and "auth.ca_file" in f.reason for f in fails)


def test_batches_are_bounded_by_bytes(graph: GraphEmulator, tls_material: tuple[Path, Path]) -> None:
    """Finding 6: a delta page's messages are cut into batches of bounded size; the last carries the checkpoint."""
    graph.add_user(ALICE, folders=("Inbox",))
    placed = {graph.add_message(ALICE, "Inbox", make_mime(n) + b"x" * 3000) for n in range(7)}
    saved: dict[str, str] = {}
    batches = [b for b in run(connector(graph, tls_material, max_batch_bytes=7000), saved) if b.folder == "Inbox"]
    assert [len(b.messages) for b in batches] == [3, 3, 1]
    assert [len(b.checkpoints) for b in batches] == [0, 0, 1]
    assert Counter(ids(batches)) == Counter(placed)


def test_revoked_token_is_replaced_on_401(graph: GraphEmulator, tls_material: tuple[Path, Path]) -> None:
    """Finding 10: after a 401 a new token is asked for, not msal's cached copy of the refused one."""
    placed = populate(graph)
    conn = connector(graph, tls_material)
    first = conn._tokens.token()
    graph.identity.issued.discard(first)  # revoked, or a continuous-access-evaluation event
    batches = run(conn, {})
    assert set(ids(batches)) == set(placed) and not [f for b in batches for f in b.failures]
    assert graph.identity.token_requests == 2


def test_persistent_401_does_not_blame_permissions(graph: GraphEmulator, tls_material: tuple[Path, Path]) -> None:
    populate(graph)
    conn = connector(graph, tls_material)
    real_token = conn._tokens.token

    def refused_token() -> str:
        graph.identity.issued.discard(real_token())
        return "not-a-token"

    conn._tokens.token = refused_token  # type: ignore[method-assign]
    [fail] = [f for b in run(conn, {}) for f in b.failures]
    assert "401" in fail.reason and "Mail.Read" not in fail.reason and "authority" in fail.reason


def test_token_never_goes_to_another_host(graph: GraphEmulator, tls_material: tuple[Path, Path]) -> None:
    """Finding 11: a stored delta link naming another host (or plain http) restarts the folder there, token kept."""
    seen: list[str] = []

    class Other(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization", ""))
            self.send_response(410)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    other = HTTPServer(("127.0.0.1", 0), Other)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        graph.add_user(ALICE, folders=("Inbox", "Sent Items"))
        a = graph.add_message(ALICE, "Inbox", make_mime(1))
        b = graph.add_message(ALICE, "Sent Items", make_mime(2))
        inbox, sent = graph._find(ALICE, "Inbox").id, graph._find(ALICE, "Sent Items").id
        delta = f"/v1.0/users/{ALICE}/mailFolders/{{}}/messages/delta?$deltatoken=x"
        stale = {
            f"graph:o365:{ALICE}:{inbox}": f"http://127.0.0.1:{other.server_address[1]}" + delta.format(inbox),
            f"graph:o365:{ALICE}:{sent}": graph.graph_url.replace("https:", "http:") + delta.format(sent)[5:],
        }
        batches = run(connector(graph, tls_material), stale)
        assert seen == []
        assert set(ids(batches)) == {a, b}
        assert [e.kind for bt in batches for e in bt.events] == ["checkpoint_link_refused"] * 2
        assert all(v.startswith(graph.graph_url) for v in stale.values())
    finally:
        other.shutdown()


def test_folder_deleted_during_the_sync_is_an_event(graph: GraphEmulator, tls_material: tuple[Path, Path]) -> None:
    """Finding 13: a folder gone between the listing and its delta query is not "is the mailbox licensed?"."""
    graph.add_user(ALICE, folders=("Inbox", "Clients"))
    a = graph.add_message(ALICE, "Inbox", make_mime(1))
    conn = connector(graph, tls_material)
    listing = conn._folders

    def listing_then_delete(client: object, mailbox: object) -> object:
        out = listing(client, mailbox)  # type: ignore[arg-type]
        with graph.lock:
            del graph.users[ALICE].folders[graph._find(ALICE, "Clients").id]
        return out

    conn._folders = listing_then_delete  # type: ignore[method-assign]
    batches = run(conn, {})
    assert ids(batches) == [a] and not [f for b in batches for f in b.failures]
    assert [(e.kind, e.detail["folder"]) for b in batches for e in b.events] == [("folder_vanished", "Clients")]


def test_folder_names_with_a_slash_are_escaped(graph: GraphEmulator, tls_material: tuple[Path, Path]) -> None:
    """Finding 13: the folder "Smith/Jones" is not the folder Jones inside Smith."""
    graph.add_user(ALICE, folders=("Inbox", "Inbox/Smith/Jones"))
    with graph.lock:
        user = graph.users[ALICE]
        inbox = graph._find(ALICE, "Inbox")
        odd = GFolder(graph._new_id("folder"), "Smith/Jones", inbox.id)
        user.folders[odd.id] = odd
        odd.messages.append(GMessage(graph._new_id("msg"), make_mime(1), next(graph._seq), "2026-03-01T10:00:00Z"))
    graph.add_message(ALICE, "Inbox/Smith/Jones", make_mime(2))
    batches = run(connector(graph, tls_material, exclude=("Inbox/Smith/*",)), {})
    assert {m.origin.folder for b in batches for m in b.messages} == {"Inbox/Smith\\/Jones"}


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
