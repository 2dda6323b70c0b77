"""`archiver verify [--full]`: prove the archive was not altered."""

from __future__ import annotations

import argparse
from typing import Any

from archiver.cli.common import actor, open_archive, print_json, progress_bar, say, wants_json
from archiver.errors import IntegrityError


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "verify",
        parents=[parent],
        help="check the journal chain, signatures, segments, keys and catalog",
        description="Without --full the check needs no decryption; --full also decrypts every message "
        "and checks it hashes to its id. Exits 9 and names each problem when anything was altered.",
    )
    p.add_argument("--full", action="store_true", help="also decrypt every object and check its SHA-256")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with open_archive(args, need_keys=True) as archive, progress_bar(args, "verifying") as update:
        report = archive.verify(full=args.full, progress=lambda s, n, t: update(n), actor=actor())
    if wants_json(args):
        print_json({"ok": report.ok, "problems": report.problems, "notes": report.notes, "counts": report.counts})
    else:
        for p in report.problems:
            say(("PROBLEM", "red"), f": {p}", err=True)
        for n in report.notes:
            say(f"note: {n}")
        counts = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in report.counts.items())
        say(("OK" if report.ok else "FAILED") + f" ({counts})")
    return 0 if report.ok else IntegrityError.exit_code
