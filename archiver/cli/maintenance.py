"""`archiver reindex` and `archiver retag`: rebuild derived data from the store."""

from __future__ import annotations

import argparse
from typing import Any

from archiver.cli.common import actor, open_archive, print_json, progress_bar, say, wants_json
from archiver.policies import retag_guard


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "reindex", parents=[parent], help="rebuild the search index and the parsed metadata from the store alone"
    )
    p.set_defaults(func=run_reindex)
    r = sub.add_parser("retag", parents=[parent], help="re-apply the tagging rules to the whole archive")
    r.add_argument(
        "--allow-release",
        action="store_true",
        help="retag even though messages would leave the matter holds or compliance rules covering them (journalled)",
    )
    r.set_defaults(func=run_retag)


def run_reindex(args: argparse.Namespace) -> int:
    with open_archive(args) as archive, progress_bar(args, "reindexing") as update:
        summary = archive.reindex(progress=lambda s, n, t: update(n, total=t))
        count = archive.index.count()
    if wants_json(args):
        print_json({"indexed": count, "processed": summary.processed})
    else:
        say(f"reindexed {summary.processed} messages; the index holds {count}")
    return 0


def run_retag(args: argparse.Namespace) -> int:
    """Retag, after checking what it would take from holds and compliance rules (policies/retag_guard.py)."""
    with open_archive(args) as archive, archive.repo.lock():
        impact = retag_guard.retag_impact(archive)
        retag_guard.refuse_or_record(archive, impact, allowed=args.allow_release, actor=actor())
        for line in impact.lines():
            say(("released", "yellow"), f": {line}", err=True)
        with progress_bar(args, "retagging") as update:
            summary = archive.retag(progress=lambda s, n, t: update(n, total=t), actor=actor())
    if wants_json(args):
        print_json({"processed": summary.processed, "changed": summary.changed, "failed": summary.failed})
    else:
        say(f"retagged {summary.processed} messages, {summary.changed} changed")
        for f in summary.failed:
            say(f"could not read: {f}")
    return 1 if summary.failed else 0
