"""Export benchmark: `python bench/export.py [--messages 20000] [--keep DIR] [--json]`.

Builds a synthetic archive of small messages (a temporary Maildir imported through the real
`archiver import`), then runs `archiver export --ids FILE` over all of them in a child
process and reports the export's wall time and its peak RSS (the kernel's high-water mark
for that one child, from wait4(2)), then runs `archiver bundle verify` the same way.

Why a child process: the import's parser workers and this script's own memory must not be
counted; wait4 gives exactly the export process's peak.  Issue 6 requires memory to stay
bounded for 100,000 messages: run with two sizes (e.g. 2000 and 20000) and compare.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PASSPHRASE = "bench export passphrase"


def make_maildir(root: Path, n: int) -> list[str]:
    """n distinct small messages; returns their ids (SHA-256 of the bytes)."""
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    ids = []
    for i in range(n):
        body = (
            f"Message {i} of the export benchmark.\nLine two with some words: contract, delivery, invoice.\n"
        )
        raw = (
            f"From: Sender {i % 97} <sender{i % 97}@acme.example>\r\n"
            f"To: user{i % 13}@globex.example\r\n"
            f"Subject: Benchmark message {i} about matter 10234-{i % 50:04d}\r\n"
            f"Date: Mon, {1 + i % 28:02d} Feb 2021 {i % 24:02d}:{i % 60:02d}:00 +0000\r\n"
            f"Message-ID: <bench-{i}@acme.example>\r\n\r\n{body}"
        ).encode()
        (root / "cur" / f"{1600000000 + i}.M{i}P1.bench:2,S").write_bytes(raw)
        ids.append(hashlib.sha256(raw).hexdigest())
    return ids


def run_measured(cmd: list[str], env: dict[str, str]) -> dict[str, Any]:
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    _pid, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    out, err = proc.stdout.read(), proc.stderr.read()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {
        "code": proc.returncode,
        "seconds": round(elapsed, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),  # Linux: KiB
        "stdout": out.decode(errors="replace")[-2000:],
        "stderr": err.decode(errors="replace")[-2000:],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--messages", type=int, default=20000)
    p.add_argument("--keep", type=Path, help="work in this folder and keep it")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-export-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "ARCHIVER_PASSPHRASE": PASSPHRASE}
    exe = [sys.executable, "-m", "archiver.cli.main", "--config", str(work / "cfg.json")]
    try:
        (work / "cfg.json").write_text(json.dumps({"archive": {"path": str(work / "archive")}}))
        t0 = time.perf_counter()
        ids = make_maildir(work / "mail", args.messages)
        (work / "ids.txt").write_text("\n".join(ids) + "\n")
        for cmd in (["init"], ["import", str(work / "mail")]):
            r = subprocess.run([*exe, *cmd], env=env, capture_output=True)
            if r.returncode != 0:
                print(r.stderr.decode(), file=sys.stderr)
                return 1
        build = time.perf_counter() - t0
        out = work / "bundle.zip"
        export = run_measured(
            [*exe, "export", "--ids", str(work / "ids.txt"), "--case", "bench", "--out", str(out), "--json"],
            env,
        )
        verify = run_measured([*exe, "bundle", "verify", str(out), "--json"], env)
        result = {
            "messages": args.messages,
            "build_seconds": round(build, 1),
            "export": {k: export[k] for k in ("code", "seconds", "peak_rss_mb")},
            "export_msgs_per_s": round(args.messages / export["seconds"], 1) if export["seconds"] else None,
            "bundle_mb": round(out.stat().st_size / 2**20, 1) if out.exists() else None,
            "verify": {k: verify[k] for k in ("code", "seconds", "peak_rss_mb")},
        }
        if export["code"] != 0:
            result["export_error"] = export["stderr"]
        if args.json:
            print(json.dumps(result))
        else:
            for k, v in result.items():
                print(f"{k}: {v}")
        return 0 if export["code"] == 0 and verify["code"] == 0 else 1
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
