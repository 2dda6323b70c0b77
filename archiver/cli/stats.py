"""`archiver stats`: what the archive holds and how much disk it takes."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from archiver.cli.common import open_archive, print_json, say, wants_json


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("stats", parents=[parent], help="counts, sizes, clients and sources")
    p.set_defaults(func=run)


def du(path: Path) -> int:
    if not path.exists():
        return 0
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def run(args: argparse.Namespace) -> int:
    with open_archive(args, need_keys=False) as archive:
        stats = archive.repo.catalog.stats()
        root = archive.repo.path
        disk = {
            "segments": du(root / "segments"),
            "journal": du(root / "journal"),
            "catalog": sum(f.stat().st_size for f in root.glob("catalog.sqlite*")),
            "keys": sum(f.stat().st_size for f in root.glob("keys.sqlite*")),
            "index": du(root / "index"),
        }
        stats["indexed"] = archive.index.count()
    stats["disk_bytes"] = disk
    raw = stats["raw_bytes"] or 1
    stats["store_ratio"] = round((disk["segments"] + disk["journal"] + disk["catalog"] + disk["keys"]) / raw, 3)
    stats["index_ratio"] = round(disk["index"] / raw, 3)
    if wants_json(args):
        print_json(stats)
        return 0
    say(f"messages: {stats['messages']} ({stats['raw_bytes']:,} raw bytes), disposed: {stats['disposed']}")
    say(f"copies (provenance rows): {stats['copies']}, with parse problems: {stats['parse_errors']}")
    say(f"indexed: {stats['indexed']}, dates: {stats['oldest']} .. {stats['newest']}")
    say("disk: " + ", ".join(f"{k} {v:,}" for k, v in disk.items()))
    say(f"store / raw: {stats['store_ratio']}, index / raw: {stats['index_ratio']}")
    say("clients: " + ", ".join(f"{k} {v}" for k, v in stats["clients"].items()))
    say("sources: " + ", ".join(f"{k} {v}" for k, v in stats["sources"].items()))
    say(f"journal records: {stats['journal_records']}")
    return 0
