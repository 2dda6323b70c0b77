"""Ingest benchmark: `python bench/ingest.py PATH [PATH...] [--workers N] [--keep DIR] [--no-notmuch] [--json]`.

Imports the given mail (Maildir, mbox, folders of message files) into a fresh,
temporary archive through the real pipeline (parse and seal in worker processes,
tag, store, index) and reports what issue 2 sets targets for:

* messages/s and MB/s, end to end (wall clock of ``pipeline.ingest``, archive
  creation excluded);
* peak RSS of the whole process tree (this process + the parser workers),
  summed at each poll by a psutil sampler thread every 100 ms (the worker list is
  re-read every second, which keeps the sampler under 1% of the writer's time); the kernel's own
  high-water marks (``getrusage`` RUSAGE_SELF and RUSAGE_CHILDREN, which is the
  largest single reaped child, not a sum) are reported next to it as a cross-check;
* (store + index bytes) / raw bytes, split into segments, journal, catalog,
  key store and index; raw bytes = the sum of the stored messages' sizes;
* when ``notmuch`` is installed, ``notmuch new`` on the same files in the same
  run (hard links, or symlinks across file systems, under a temporary database
  path), and archiver rate / notmuch rate.

The numbers are only meaningful on an otherwise idle machine, so the load
average before and after is printed too.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

from archiver.archive import Archive
from archiver.config import parse_config
from archiver.logging import setup_logging
from archiver.memory import limit_malloc_arenas
from archiver.pipeline import ingest
from connectors.files import FilesConnector

PASSPHRASE_ENV = "ARCHIVER_BENCH_PASSPHRASE"
POLL_SECONDS = 0.1
#: the process list is re-read this often (in samples); scanning /proc costs GIL time in the writer.
CHILDREN_EVERY = 10


class TreeRss:
    """Samples the summed RSS of this process and all its descendants in a thread.

    Why poll: the kernel keeps a high-water mark per process, but nothing that
    sums a parent and its live workers at the same instant, which is what decides
    whether a machine runs out of memory.
    """

    def __init__(self, interval: float = POLL_SECONDS) -> None:
        self.interval = interval
        self.peak = 0
        self.peak_parent = 0
        self.peak_children = 0
        self.samples = 0
        self._children: list[psutil.Process] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._me = psutil.Process()

    def sample(self) -> None:
        parent = self._me.memory_info().rss
        if self.samples % CHILDREN_EVERY == 0:
            self._children = self._me.children(recursive=True)
        children = 0
        for child in self._children:
            with contextlib.suppress(psutil.Error):
                children += child.memory_info().rss
        self.samples += 1
        self.peak_parent = max(self.peak_parent, parent)
        self.peak_children = max(self.peak_children, children)
        self.peak = max(self.peak, parent + children)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                self.sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class CpuShare:
    """CPU seconds used by this process tree and by everything else on the machine over a span.

    Why: the machine is shared (other developers' test runs), and a load average
    cannot tell their CPU use from ours; the difference between the machine's busy
    time and our own rusage can.
    """

    def __enter__(self) -> CpuShare:
        self._machine = _machine_busy()
        self._ours = _own_cpu()
        self._wall = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._wall
        self.ours = _own_cpu() - self._ours
        self.others = max(0.0, _machine_busy() - self._machine - self.ours)

    def as_json(self) -> dict[str, float]:
        cores = os.cpu_count() or 1
        return {
            "our_cpu_seconds": round(self.ours, 2),
            "other_processes_cpu_seconds": round(self.others, 2),
            "other_processes_share_of_machine": round(self.others / (self.wall * cores), 3) if self.wall else 0.0,
        }


def _machine_busy() -> float:
    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0))


def _own_cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def disk_usage(path: Path) -> int:
    """Bytes of all regular files under ``path`` (or of ``path`` itself)."""
    if path.is_file():
        return path.stat().st_size
    if not path.exists():
        return 0
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def archive_parts(root: Path) -> dict[str, int]:
    """On-disk bytes per part of an archive (same split as `archiver stats`)."""
    return {
        "segments": disk_usage(root / "segments"),
        "journal": disk_usage(root / "journal"),
        "catalog": sum(f.stat().st_size for f in root.glob("catalog.sqlite*")),
        "keys": sum(f.stat().st_size for f in root.glob("keys.sqlite*")),
        "index": disk_usage(root / "index"),
    }


def corpus_files(paths: list[Path]) -> Iterator[Path]:
    """Every regular file under the given paths, in a stable order."""
    for p in paths:
        if p.is_file():
            yield p.resolve()
            continue
        for dirpath, dirnames, filenames in os.walk(p):
            dirnames.sort()
            for name in sorted(filenames):
                f = Path(dirpath, name)
                if f.is_file() and not f.is_symlink():
                    yield f.resolve()


def link_tree(paths: list[Path], dest: Path) -> int:
    """Mirror the corpus under ``dest`` as hard links (symlinks across devices); returns the file count.

    notmuch only indexes files below its database path, and the corpus must never
    be copied, so links are the honest way to give it the very same bytes.
    """
    n = 0
    for i, root in enumerate(paths):
        base = root.resolve() if root.is_dir() else root.resolve().parent
        for f in corpus_files([root]):
            target = dest / f"{i}-{root.name}" / f.relative_to(base)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(f, target)
            except OSError:
                target.symlink_to(f)
            n += 1
    return n


def run_notmuch(paths: list[Path], work: Path) -> dict[str, Any]:
    """Time `notmuch new` on the same files; only the `notmuch new` call is timed."""
    maildir = work / "notmuch-mail"
    maildir.mkdir()
    files = link_tree(paths, maildir)
    config = work / "notmuch-config"
    config.write_text(
        f"[database]\npath={maildir}\n[user]\nname=Bench\nprimary_email=bench@example.invalid\n"
        "[new]\ntags=new\nignore=\n[search]\nexclude_tags=\n[maildir]\nsynchronize_flags=false\n",
        encoding="utf-8",
    )
    env = {**os.environ, "NOTMUCH_CONFIG": str(config)}
    kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    with TreeRss() as rss, CpuShare() as share:
        start = time.perf_counter()
        proc = subprocess.run(["notmuch", "new", "--quiet"], env=env, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - start
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = kids.ru_utime + kids.ru_stime - kids0.ru_utime - kids0.ru_stime
    count = subprocess.run(
        ["notmuch", "count", "--output=files", "*"], env=env, capture_output=True, text=True, check=False
    )
    db_bytes = disk_usage(maildir / ".notmuch")
    return {
        "files": files,
        "indexed_files": int(count.stdout.strip() or 0),
        "seconds": round(seconds, 3),
        "msgs_per_s": round(files / seconds, 1) if seconds else None,
        "exit_code": proc.returncode,
        "stderr_tail": proc.stderr.strip().splitlines()[-3:],
        "db_bytes": db_bytes,
        # polled like ours; the kernel's ru_maxrss of an exec'd child includes the pre-exec
        # copy of this (large) process, so it would overstate notmuch.
        "peak_rss_mb": round(rss.peak_children / 2**20, 1),
        "cpu_seconds": round(cpu, 2),
        "machine": share.as_json(),
    }


def run_archiver(paths: list[Path], root: Path, workers: int) -> dict[str, Any]:
    """Import ``paths`` into a fresh archive at ``root``; returns timings, memory and sizes."""
    os.environ.setdefault(PASSPHRASE_ENV, "bench-only-passphrase")
    limit_malloc_arenas()  # as `archiver` itself does at start
    cfg = parse_config(
        {
            "archive": {"path": str(root), "passphrase_env": PASSPHRASE_ENV},
            "ingest": {"workers": workers},
            "logging": {"level": "warning"},
        }
    )
    archive = Archive.init(cfg)
    try:
        connector = FilesConnector("bench", paths)
        cpu0 = time.process_time()
        with TreeRss() as rss, CpuShare() as share:
            start = time.perf_counter()
            summary = ingest(archive, connector)
            seconds = time.perf_counter() - start
            rss.sample()
        parent_cpu = time.process_time() - cpu0
        stats = archive.repo.catalog.stats()
        indexed = archive.index.count()
    finally:
        archive.close()
    self_max = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    child_max = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    parts = archive_parts(root)
    raw = int(stats["raw_bytes"]) or 1
    total = sum(parts.values())
    handled = summary.imported + summary.duplicates + summary.failed
    return {
        "imported": summary.imported,
        "duplicates": summary.duplicates,
        "parse_errors": summary.parse_errors,
        "failed": summary.failed,
        "indexed": indexed,
        "seconds": round(seconds, 3),
        "parent_cpu_seconds": round(parent_cpu, 2),
        "machine": share.as_json(),
        "msgs_per_s": round(handled / seconds, 1),
        "mb_per_s": round(raw / 2**20 / seconds, 2),
        "raw_bytes": raw,
        "disk_bytes": parts,
        "ratios": {k: round(v / raw, 3) for k, v in parts.items()},
        "store_index_ratio": round(total / raw, 3),
        "peak_rss_tree_mb": round(rss.peak / 2**20, 1),
        "peak_rss_parent_mb": round(rss.peak_parent / 2**20, 1),
        "peak_rss_workers_mb": round(rss.peak_children / 2**20, 1),
        "rss_samples": rss.samples,
        "maxrss_self_mb": round(self_max / 2**20, 1),
        "maxrss_largest_child_mb": round(child_max / 2**20, 1),
    }


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _share(m: dict[str, float]) -> str:
    return (
        f"ours {m['our_cpu_seconds']} s; other processes {m['other_processes_cpu_seconds']} s"
        f" = {100 * m['other_processes_share_of_machine']:.0f}% of the machine"
    )


def render(result: dict[str, Any]) -> str:
    a = result["archiver"]
    rows: list[tuple[str, str]] = [
        ("machine", f"{result['cpus']} CPUs, load before {result['load_before']}, after {result['load_after']}"),
        ("messages", f"{a['imported']} imported, {a['duplicates']} duplicates, {a['failed']} failed"),
        ("parse errors", str(a["parse_errors"])),
        ("wall time", f"{a['seconds']} s (parent CPU {a['parent_cpu_seconds']} s)"),
        ("cpu (tree/others)", _share(a["machine"])),
        ("ingest rate", f"{a['msgs_per_s']} msg/s, {a['mb_per_s']} MB/s"),
        (
            "peak RSS",
            f"{a['peak_rss_tree_mb']} MB tree (parent {a['peak_rss_parent_mb']}, workers {a['peak_rss_workers_mb']});"
            f" maxrss self {a['maxrss_self_mb']}, largest child {a['maxrss_largest_child_mb']}",
        ),
        ("raw bytes", f"{a['raw_bytes']:,}"),
    ]
    for part, n in a["disk_bytes"].items():
        rows.append((f"  {part}", f"{n:,} B = {a['ratios'][part]}x raw"))
    rows.append(("(store+index)/raw", f"{a['store_index_ratio']}x"))
    nm = result.get("notmuch")
    if nm:
        rows.append(("notmuch new", f"{nm['seconds']} s, {nm['msgs_per_s']} files/s ({nm['indexed_files']} indexed)"))
        rows.append(("notmuch cpu/rss", f"{nm['cpu_seconds']} s CPU, peak RSS {nm['peak_rss_mb']} MB"))
        rows.append(("  cpu (others)", _share(nm["machine"])))
        rows.append(("notmuch db", f"{nm['db_bytes']:,} B"))
        rows.append(("archiver/notmuch", f"{result['ratio_vs_notmuch']}x"))
    else:
        rows.append(("notmuch new", result.get("notmuch_skipped", "skipped")))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("paths", nargs="+", type=Path, help="Maildirs, mbox files or folders of mail")
    ap.add_argument("--workers", type=int, default=0, help="parser processes (0 = one per core)")
    ap.add_argument("--keep", type=Path, help="build the archive in this (new) directory and keep it")
    ap.add_argument("--no-notmuch", action="store_true", help="do not run `notmuch new` for comparison")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    missing = [str(p) for p in args.paths if not p.exists()]
    if missing:
        print(f"error: no such path: {', '.join(missing)}", file=sys.stderr)
        return 2
    if args.keep is not None and args.keep.exists() and any(args.keep.iterdir()):
        print(f"error: --keep {args.keep} exists and is not empty", file=sys.stderr)
        return 2
    setup_logging("warning")  # on stderr, so that --json output stays one JSON object on stdout
    result: dict[str, Any] = {"cpus": os.cpu_count(), "load_before": load(), "paths": [str(p) for p in args.paths]}
    with tempfile.TemporaryDirectory(prefix="archiver-bench-") as tmp:
        work = Path(tmp)
        root = args.keep.resolve() if args.keep else work / "archive"
        result["archiver"] = run_archiver(args.paths, root, args.workers)
        if args.no_notmuch:
            result["notmuch_skipped"] = "skipped (--no-notmuch)"
        elif shutil.which("notmuch") is None:
            result["notmuch_skipped"] = "skipped (notmuch is not installed)"
        else:
            nm = run_notmuch(args.paths, work)
            result["notmuch"] = nm
            if nm["msgs_per_s"]:
                result["ratio_vs_notmuch"] = round(result["archiver"]["msgs_per_s"] / nm["msgs_per_s"], 2)
    result["load_after"] = load()
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
