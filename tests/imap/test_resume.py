"""A sync killed with SIGKILL resumes without loss; a folder with thousands of messages syncs."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .helpers import MailUser, connector_for, make_message, sync

pytestmark = pytest.mark.dovecot

#: A stand-in for the pipeline in a separate process: "commit" each batch (append + fsync),
#: then save its checkpoints (atomic rename), exactly in that order.
WORKER = r"""
import hashlib, json, os, sys, time
from connectors.imap import ImapAccount, ImapConnector, ImapServer
host, port, user, password, store, cps, delay = sys.argv[1:8]
conn = ImapConnector("kill-test", ImapServer(host, int(port), tls="none"),
                     [ImapAccount(user, password=lambda: password)], batch_size=25)
checkpoints = json.load(open(cps)) if os.path.exists(cps) else {}
with open(store, "a") as out:
    for batch in conn.batches(checkpoints):
        for m in batch.messages:
            out.write(json.dumps({"uid": int(m.origin.uid), "sha": hashlib.sha256(m.data).hexdigest()}) + "\n")
        out.flush(); os.fsync(out.fileno())
        for cp in batch.checkpoints:
            checkpoints[cp.key] = cp.value
        with open(cps + ".tmp", "w") as f:
            json.dump(checkpoints, f)
        os.replace(cps + ".tmp", cps)
        time.sleep(float(delay))
"""


def _worker(user: MailUser, store: Path, cps: Path, delay: float) -> subprocess.Popen[bytes]:
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    args = [user.server.host, str(user.server.port), user.username, user.password, str(store), str(cps), str(delay)]
    return subprocess.Popen([sys.executable, "-c", WORKER, *args], env=env)


def _last_uid(cps: Path, user: MailUser) -> int:
    try:
        data = json.loads(cps.read_text())
    except (OSError, ValueError):
        return 0
    value = data.get(f"imap:kill-test:{user.username}:INBOX")
    return int(json.loads(value)["last_uid"]) if value else 0


def test_killed_sync_resumes_nothing_lost(mail_user: MailUser, tmp_path: Path) -> None:
    msgs = [make_message(f"k{i}") for i in range(300)]
    mail_user.server.deliver(mail_user.username, "INBOX", msgs)
    store, cps = tmp_path / "store.jsonl", tmp_path / "checkpoints.json"

    proc = _worker(mail_user, store, cps, delay=0.1)
    deadline = time.monotonic() + 60
    while _last_uid(cps, mail_user) < 75 and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = _last_uid(cps, mail_user)
    assert 75 <= saved < 300, "the worker must be killed mid-sync"
    rows_before = len(store.read_text().splitlines())

    proc = _worker(mail_user, store, cps, delay=0)
    assert proc.wait(timeout=120) == 0
    rows = [json.loads(line) for line in store.read_text().splitlines()]
    resumed = rows[rows_before:]
    assert resumed[0]["uid"] == saved + 1  # resumed right after the saved checkpoint
    assert {r["sha"] for r in rows} == {hashlib.sha256(m).hexdigest() for m in msgs}  # nothing lost
    assert len(rows) - len({r["uid"] for r in rows}) <= 25  # at most the uncheckpointed batch again
    assert _last_uid(cps, mail_user) == 300


@pytest.mark.slow
def test_folder_with_thousands_of_messages(mail_user: MailUser) -> None:
    msgs = [make_message(f"bulk {i}", body=f"message number {i}\n") for i in range(3000)]
    mail_user.server.deliver(mail_user.username, "INBOX", msgs)
    started = time.monotonic()
    run = sync(connector_for([mail_user], batch_size=500))
    elapsed = time.monotonic() - started
    assert run.failures == []
    assert sorted(run.uids()) == list(range(1, 3001))
    assert {m.data for m in run.messages} == set(msgs)
    assert max(len(b.messages) for b in run.batches) == 500
    assert elapsed < 60, f"3000 small messages took {elapsed:.1f} s"
