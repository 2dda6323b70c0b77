"""Web search benchmark: `python bench/web.py (--archive-config CFG | PATH...) [--clients N] [--seconds S]`.

Serves the archive with the real app under uvicorn (in this process, a thread, loopback),
logs in, and runs N client threads (httpx, one session each) that send ``GET /api/search``
requests for the queries of bench/queries.txt, round robin, for S seconds.  Prints the p50 /
p95 / max latency of a search request and the requests per second.  Every request is a real
one: the session is checked, the walls applied, the facets counted, the hits re-checked
against the catalog and the search journalled (a committed, signed journal transaction).
The issue's target: p95 <= 50 ms for a search page.

Give mail paths to import them first into a temporary archive (bench/ingest.py's code;
``--keep DIR`` keeps it), or an existing archive's config.  The corpus is never copied.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from archiver.config import Config, WebUser, load_config, parse_config
from archiver.web.app import create_app
from archiver.web.auth import hash_password

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import PASSPHRASE_ENV, run_archiver
from search import DEFAULT_QUERIES, read_queries, summarise

BENCH_PASSWORD = "bench-password"


def serve(cfg: Config) -> tuple[uvicorn.Server, threading.Thread, str]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    user = WebUser(username="bench", password_hash=hash_password(BENCH_PASSWORD), role="admin")
    web = cfg.web.model_copy(update={"users": [user], "secure_cookies": False, "listen": f"127.0.0.1:{port}"})
    app = create_app(cfg.model_copy(update={"web": web}))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{port}"


def run_clients(url: str, queries: list[str], clients: int, seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def worker(n: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as c:
            c.post("/api/login", json={"username": "bench", "password": BENCH_PASSWORD}).raise_for_status()
            i = n
            mine: list[float] = []
            while time.monotonic() < stop:
                q = queries[i % len(queries)]
                i += 1
                t0 = time.perf_counter()
                r = c.get("/api/search", params={"q": q, "per_page": 20})
                mine.append((time.perf_counter() - t0) * 1000)
                if r.status_code != 200:
                    with lock:
                        errors.append(f"{q!r}: {r.status_code}")
            with lock:
                latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    return {
        "clients": clients,
        "seconds": round(elapsed, 2),
        "requests": len(latencies),
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "errors": len(errors),
        "first_errors": errors[:5],
        **summarise(latencies),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("paths", nargs="*", type=Path, help="mail to import into a temporary archive")
    p.add_argument("--archive-config", type=Path, help="use an existing archive instead")
    p.add_argument("--keep", type=Path, help="build the temporary archive here and keep it")
    p.add_argument("--queries", type=Path, default=DEFAULT_QUERIES)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    queries = [q for _kind, q in read_queries(args.queries)]
    tmp = None
    if args.archive_config:
        cfg = load_config(args.archive_config)
    else:
        if not args.paths:
            p.error("give mail paths or --archive-config")
        root = args.keep or Path(tmp := tempfile.mkdtemp(prefix="bench-web-")) / "archive"
        if not (root / "journal").exists():
            run_archiver(args.paths, root, args.workers)
        os.environ.setdefault(PASSPHRASE_ENV, "bench-only-passphrase")
        cfg = parse_config(
            {"archive": {"path": str(root), "passphrase_env": PASSPHRASE_ENV}, "logging": {"level": "warning"}}
        )
    server, thread, url = serve(cfg)
    try:
        # warm-up: one pass over the queries
        with httpx.Client(base_url=url, timeout=60) as c:
            c.post("/api/login", json={"username": "bench", "password": BENCH_PASSWORD}).raise_for_status()
            for q in queries:
                c.get("/api/search", params={"q": q})
        report = {"queries": len(queries), **run_clients(url, queries, args.clients, args.seconds)}
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        if tmp:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(report))
    else:
        print(
            f"{report['requests']} search requests from {report['clients']} clients in {report['seconds']} s: "
            f"{report['requests_per_s']} req/s; latency p50 {report['p50_ms']} ms, p95 {report['p95_ms']} ms, "
            f"max {report['max_ms']} ms; {report['errors']} errors"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
