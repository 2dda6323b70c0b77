"""Kill an import with SIGKILL at random points, several times; the archive must stay consistent.

After every kill: `verify --full` passes and every message committed before the kill is
still there.  The final re-run completes the import with no duplicate objects and no
duplicate provenance rows.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import PASSPHRASE, archiver_exe, run_process, sha256

N_MESSAGES = 5000


def make_maildir(root: Path, n: int) -> set[str]:
    ids = set()
    for folder in ("cur", "new", "tmp"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    rng = random.Random(7)
    words = ["contract", "gas", "pipeline", "settlement", "invoice", "meeting", "schedule", "merger", "counsel", "draft"]
    for i in range(n):
        body = " ".join(rng.choice(words) for _ in range(rng.randint(20, 400)))
        data = (
            f"From: sender{i % 37}@example.com\r\nTo: rcpt{i % 11}@example.org\r\n"
            f"Subject: message {i} {rng.choice(words)}\r\nMessage-ID: <{i}.crash@example.com>\r\n"
            f"Date: Mon, 2 Apr 2001 10:{i % 60:02d}:00 +0000\r\n\r\n{body}\r\n"
        ).encode()
        (root / "cur" / f"{986200000 + i}.M{i}P1.host:2,S").write_bytes(data)
        ids.add(sha256(data))
    # the same message twice in another folder: one object, two provenance rows
    sub = root / ".Copies"
    for folder in ("cur", "new", "tmp"):
        (sub / folder).mkdir(parents=True, exist_ok=True)
    first = sorted((root / "cur").iterdir())[0]
    (sub / "cur" / "dup:2,S").write_bytes(first.read_bytes())
    return ids


def count_objects(archive: Path) -> int:
    try:
        conn = sqlite3.connect(f"file:{archive / 'catalog.sqlite'}?mode=ro", uri=True, timeout=5)
        try:
            return int(conn.execute("SELECT COUNT(*) FROM objects").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def archive_ids(archive: Path) -> set[str]:
    conn = sqlite3.connect(archive / "catalog.sqlite")
    try:
        return {r[0] for r in conn.execute("SELECT id FROM objects")}
    finally:
        conn.close()


@pytest.mark.slow
def test_sigkill_during_import(tmp_path: Path) -> None:
    maildir = tmp_path / "Maildir"
    expected = make_maildir(maildir, N_MESSAGES)
    cfg = tmp_path / "a.yaml"
    cfg.write_text(yaml.safe_dump({"archive": {"path": str(tmp_path / "arch")}, "ingest": {"batch_size": 100}}))
    assert run_process([f"--config={cfg}", "init"]).returncode == 0
    seed = int(os.environ.get("CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    env = {**os.environ, "ARCHIVER_PASSPHRASE": PASSPHRASE}
    committed: set[str] = set()
    kills = 0
    for _round in range(5):
        proc = subprocess.Popen(
            [*archiver_exe(), f"--config={cfg}", "import", str(maildir), "--json"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        # Kill at a random point after a random number of further messages has been committed
        # (progress-based, so the kill lands mid-import however fast the machine is).
        target = len(committed) + rng.randint(50, 600)
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline and count_objects(tmp_path / "arch") < target:
            time.sleep(0.02)
        time.sleep(rng.uniform(0, 0.15))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the workers die too, as in a power cut
            kills += 1
        proc.wait()
        v = run_process([f"--config={cfg}", "verify", "--full", "--json"])
        assert v.returncode == 0, f"seed={seed}: {v.stdout.decode()} {v.stderr.decode()}"
        now = archive_ids(tmp_path / "arch")
        assert committed <= now, f"seed={seed}: committed messages were lost"
        assert now <= expected
        committed = now
    assert kills >= 4, f"seed={seed}: the import finished before it could be killed"
    final = run_process([f"--config={cfg}", "import", str(maildir), "--json"])
    assert final.returncode == 0, final.stderr.decode()
    assert archive_ids(tmp_path / "arch") == expected
    conn = sqlite3.connect(tmp_path / "arch" / "catalog.sqlite")
    try:
        rows = conn.execute("SELECT COUNT(*), COUNT(DISTINCT id || location) FROM provenance").fetchone()
        indexed = conn.execute("SELECT COUNT(*) FROM messages WHERE indexed=1").fetchone()[0]
    finally:
        conn.close()
    assert rows[0] == rows[1] == N_MESSAGES + 1, "duplicate or missing provenance rows"
    assert indexed == len(expected)
    s = run_process([f"--config={cfg}", "search", "message", "--limit", "0", "--json"])
    assert len(s.stdout.splitlines()) == len(expected)
    assert run_process([f"--config={cfg}", "verify", "--full"]).returncode == 0
