"""IMAP sync benchmark: `python bench/imap.py PATH [PATH...] [--limit N] [--workers N] [--batch N] [--json]`.

Loads up to ``--limit`` real messages (files under the given paths, e.g. a part
of the Enron corpus; the corpus is read, never copied into the repository) into
the INBOX of a throwaway Dovecot on a loopback port (the same fixture the tests
use, under a temporary directory), then times:

* the archiver's full sync into a fresh archive through the real pipeline
  (IMAP fetch, parse, seal, store, index, checkpoints): ``pipeline.ingest`` with
  the connector ``build_imap`` makes from a config;
* when ``mbsync`` (isync) is installed, ``mbsync`` pulling the same INBOX into an
  empty Maildir, in the same run, and the ratio archiver rate / mbsync rate.

Before either is timed, one untimed pass fetches every message once, so both
find Dovecot's index and the page cache equally warm.  Target (issue 3): the
archiver's full sync at least as fast as mbsync copying to a Maildir.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from imapclient import IMAPClient  # noqa: E402

# bench/ is on sys.path when this file is run as a script (bench/web.py imports ingest too)
from ingest import PASSPHRASE_ENV, load  # noqa: E402

from archiver.archive import Archive  # noqa: E402
from archiver.config import ImapSource, parse_config  # noqa: E402
from archiver.pipeline import ingest  # noqa: E402
from archiver.sources.imap import build_imap  # noqa: E402
from tests.imap.dovecot import Dovecot  # noqa: E402

USER, PASSWORD = "bench@example.test", "bench-password"
PASSWORD_ENV = "ARCHIVER_BENCH_IMAP_PASSWORD"


def message_files(paths: list[Path], limit: int) -> list[Path]:
    """Up to ``limit`` regular files under ``paths``, in a stable order."""
    found: list[Path] = []
    for p in paths:
        if p.is_file():
            found.append(p)
        for dirpath, dirnames, filenames in os.walk(p):
            dirnames.sort()
            found.extend(Path(dirpath, n) for n in sorted(filenames) if not n.startswith("."))
            if len(found) >= limit:
                break
        if len(found) >= limit:
            break
    return found[:limit]


def warm_up(server: Dovecot) -> int:
    """Fetch every message once (untimed); returns the message count."""
    c = IMAPClient(server.host, port=server.port, ssl=False)
    c.login(USER, PASSWORD)
    c.select_folder("INBOX", readonly=True)
    uids = c.search(["ALL"])
    for i in range(0, len(uids), 500):
        c.fetch(uids[i : i + 500], ["BODY.PEEK[]"])
    c.logout()
    return len(uids)


def run_archiver(server: Dovecot, root: Path, workers: int, batch: int) -> dict[str, Any]:
    os.environ.setdefault(PASSPHRASE_ENV, "bench-only-passphrase")
    os.environ[PASSWORD_ENV] = PASSWORD
    source = {
        "name": "bench-imap",
        "type": "imap",
        "host": server.host,
        "port": server.port,
        "tls": "none",
        "batch_size": batch,
        "accounts": [{"username": USER, "password_env": PASSWORD_ENV}],
    }
    cfg = parse_config(
        {
            "archive": {"path": str(root), "passphrase_env": PASSPHRASE_ENV},
            "ingest": {"workers": workers},
            "logging": {"level": "warning"},
            "sources": [source],
        }
    )
    src = cfg.sources[0]
    assert isinstance(src, ImapSource)
    archive = Archive.init(cfg)
    try:
        start = time.perf_counter()
        summary = ingest(archive, build_imap(src))
        seconds = time.perf_counter() - start
        stats = archive.repo.catalog.stats()
    finally:
        archive.close()
    handled = summary.imported + summary.duplicates + summary.failed
    raw = int(stats["raw_bytes"])
    return {
        "imported": summary.imported,
        "duplicates": summary.duplicates,
        "failed": summary.failed,
        "seconds": round(seconds, 3),
        "msgs_per_s": round(handled / seconds, 1),
        "mb_per_s": round(raw / 2**20 / seconds, 2),
    }


def run_mbsync(server: Dovecot, work: Path) -> dict[str, Any]:
    """Time `mbsync` pulling INBOX into an empty Maildir (the only timed call)."""
    near = work / "mbsync-maildir"
    near.mkdir()
    config = work / "mbsyncrc"
    config.write_text(
        f"IMAPAccount bench\nHost {server.host}\nPort {server.port}\nUser {USER}\nPass {PASSWORD}\n"
        "SSLType None\nAuthMechs LOGIN\n\n"
        "IMAPStore far\nAccount bench\n\n"
        f"MaildirStore near\nPath {near}/\nInbox {near}/INBOX\n\n"
        "Channel bench\nFar :far:\nNear :near:\nPatterns INBOX\nCreate Near\nSync Pull\nSyncState *\n",
        encoding="utf-8",
    )
    start = time.perf_counter()
    proc = subprocess.run(["mbsync", "-q", "-c", str(config), "bench"], capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    files = sum(1 for d in ("cur", "new") for _ in (near / "INBOX" / d).glob("*"))
    return {
        "files": files,
        "seconds": round(seconds, 3),
        "msgs_per_s": round(files / seconds, 1) if seconds else None,
        "exit_code": proc.returncode,
        "stderr_tail": proc.stderr.strip().splitlines()[-3:],
    }


def render(result: dict[str, Any]) -> str:
    a = result["archiver"]
    rows = [
        ("machine", f"{result['cpus']} CPUs, load before {result['load_before']}"),
        ("mailbox", f"{result['messages']} messages, {result['mailbox_mb']} MB in INBOX"),
        ("archiver sync", f"{a['seconds']} s, {a['msgs_per_s']} msg/s, {a['mb_per_s']} MB/s"),
        ("  outcome", f"{a['imported']} imported, {a['duplicates']} duplicates, {a['failed']} failed"),
    ]
    mb = result.get("mbsync")
    if mb:
        rows.append(("mbsync", f"{mb['seconds']} s, {mb['msgs_per_s']} msg/s ({mb['files']} files)"))
        rows.append(("archiver/mbsync", f"{result['ratio_vs_mbsync']}x"))
    else:
        rows.append(("mbsync", result.get("mbsync_skipped", "skipped")))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("paths", nargs="+", type=Path, help="folders of message files (e.g. part of a corpus)")
    ap.add_argument("--limit", type=int, default=5000, help="at most this many messages (default 5000)")
    ap.add_argument("--workers", type=int, default=0, help="parser processes (0 = one per core)")
    ap.add_argument("--batch", type=int, default=200, help="IMAP batch size (default 200)")
    ap.add_argument("--no-mbsync", action="store_true", help="do not run mbsync for comparison")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    missing = [str(p) for p in args.paths if not p.exists()]
    if missing:
        print(f"error: no such path: {', '.join(missing)}", file=sys.stderr)
        return 2
    files = message_files(args.paths, args.limit)
    if not files:
        print("error: no message files under the given paths", file=sys.stderr)
        return 2
    result: dict[str, Any] = {"cpus": os.cpu_count(), "load_before": load()}
    with tempfile.TemporaryDirectory(prefix="archiver-imap-bench-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)  # Dovecot's mail user must reach the Maildir below
        server = Dovecot(root=work / "dovecot")
        server.add_user(USER, PASSWORD)
        server.deliver(USER, "INBOX", [f.read_bytes() for f in files])
        result["mailbox_mb"] = round(sum(f.stat().st_size for f in files) / 2**20, 1)
        server.start()
        try:
            result["messages"] = warm_up(server)
            result["archiver"] = run_archiver(server, work / "archive", args.workers, args.batch)
            if args.no_mbsync:
                result["mbsync_skipped"] = "skipped (--no-mbsync)"
            elif shutil.which("mbsync") is None:
                result["mbsync_skipped"] = "skipped (mbsync is not installed: apt-get install isync)"
            else:
                mb = run_mbsync(server, work)
                result["mbsync"] = mb
                if mb["msgs_per_s"]:
                    result["ratio_vs_mbsync"] = round(result["archiver"]["msgs_per_s"] / mb["msgs_per_s"], 2)
        finally:
            server.stop()
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
