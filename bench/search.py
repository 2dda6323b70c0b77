"""Search latency benchmark: `python bench/search.py (--archive-config CFG | PATH...) [-n N] [--json]`.

Runs every query of a query set (default bench/queries.txt, ``TYPE<TAB>QUERY`` per
line) through ``Archive.search`` in this process, the way the CLI and the web UI
call it (parse, translate, tantivy search, stored-field fetch, hit descriptions
from the catalog, snippets), after
one warm-up pass, N times each, and prints p50 / p95 / max latency in ms per
query type and overall.  Issue 2's target is p95 <= 20 ms on the 19k-message
Enron + SpamAssassin archive.

Either point it at an existing archive's config (``--archive-config``; the
passphrase comes from the config's usual environment variable or file) or give
mail paths, which are imported first into a temporary archive by bench/ingest.py's
code (``--keep DIR`` keeps that archive for later runs).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from archiver.archive import Archive
from archiver.config import load_config, parse_config
from archiver.errors import ArchiverError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import PASSPHRASE_ENV, run_archiver

DEFAULT_QUERIES = Path(__file__).resolve().parent / "queries.txt"


def read_queries(path: Path) -> list[tuple[str, str]]:
    """(type, query) pairs; a line without a tab is typed ``other``."""
    out: list[tuple[str, str]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        kind, sep, query = line.partition("\t")
        out.append((kind.strip(), query.strip()) if sep else ("other", line.strip()))
    return out


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile: the smallest value with at least pct% of values at or below it."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def summarise(ms: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 2),
        "p95_ms": round(percentile(ms, 95), 2),
        "max_ms": round(max(ms), 2),
    }


def time_queries(archive: Archive, queries: list[tuple[str, str]], repeat: int, limit: int) -> dict[str, Any]:
    """Warm up once, then time each query ``repeat`` times (interleaved, so caches treat all alike)."""
    per_query: dict[str, dict[str, Any]] = {}
    rejected: list[dict[str, str]] = []
    for kind, q in queries:
        try:
            res = archive.search(q, limit=limit)
        except ArchiverError as exc:  # a malformed query in the set is reported, not timed
            rejected.append({"query": q, "error": str(exc)})
            continue
        per_query[q] = {"type": kind, "hits": res.total, "ms": []}
    if not per_query:
        raise SystemExit("error: no query in the set could be run: " + "; ".join(r["error"] for r in rejected))
    for _ in range(repeat):
        for q in per_query:
            start = time.perf_counter()
            archive.search(q, limit=limit)
            per_query[q]["ms"].append((time.perf_counter() - start) * 1000)
    by_type: dict[str, list[float]] = {}
    for entry in per_query.values():
        by_type.setdefault(entry["type"], []).extend(entry["ms"])
    every = [m for e in per_query.values() for m in e["ms"]]
    return {
        "overall": summarise(every),
        "by_type": {k: summarise(v) for k, v in by_type.items()},
        "queries": [
            {"query": q, "type": e["type"], "hits": e["hits"], **summarise(e["ms"])} for q, e in per_query.items()
        ],
        "rejected": rejected,
    }


def render(result: dict[str, Any]) -> str:
    lines = [
        f"archive: {result['messages']} indexed messages; {result['repeat']} runs per query, limit {result['limit']};"
        f" load before {result['load_before']}, after {result['load_after']}",
        "",
        f"{'type':<10} {'n':>5} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}",
    ]
    rows = [*sorted(result["by_type"].items()), ("OVERALL", result["overall"])]
    for kind, s in rows:
        lines.append(f"{kind:<10} {s['n']:>5} {s['p50_ms']:>8} {s['p95_ms']:>8} {s['max_ms']:>8}")
    lines += ["", f"{'p50 ms':>8} {'p95 ms':>8} {'hits':>7}  query"]
    for q in result["queries"]:
        lines.append(f"{q['p50_ms']:>8} {q['p95_ms']:>8} {q['hits']:>7}  {q['query']}")
    for r in result["rejected"]:
        lines.append(f"  REJECTED  {r['query']}: {r['error']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("paths", nargs="*", type=Path, help="mail to import into a temporary archive first")
    ap.add_argument("--archive-config", type=Path, help="config of an existing archive to search")
    ap.add_argument("--queries", type=Path, default=DEFAULT_QUERIES, help="TYPE<TAB>QUERY lines")
    ap.add_argument("-n", "--repeat", type=int, default=20, help="timed runs per query (after one warm-up)")
    ap.add_argument("--limit", type=int, default=20, help="hits per search, as the CLI default")
    ap.add_argument("--keep", type=Path, help="with PATHs: build the archive in this (new) directory and keep it")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    if bool(args.archive_config) == bool(args.paths):
        ap.error("give either --archive-config CFG or mail PATHs to import")
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    queries = read_queries(args.queries)
    if not queries:
        ap.error(f"no queries in {args.queries}")
    with tempfile.TemporaryDirectory(prefix="archiver-search-bench-") as tmp:
        if args.archive_config:
            cfg = load_config(args.archive_config)
        else:
            root = args.keep.resolve() if args.keep else Path(tmp) / "archive"
            run_archiver(args.paths, root, workers=0)
            cfg = parse_config({"archive": {"path": str(root), "passphrase_env": PASSPHRASE_ENV}})
        load_before = [round(x, 2) for x in os.getloadavg()]
        with Archive.open(cfg, need_keys=False) as archive:
            timed = time_queries(archive, queries, args.repeat, args.limit)
            messages = archive.index.count()
    result = {
        "messages": messages,
        "repeat": args.repeat,
        "limit": args.limit,
        "load_before": load_before,
        "load_after": [round(x, 2) for x in os.getloadavg()],
        **timed,
    }
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
