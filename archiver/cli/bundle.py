"""`archiver bundle verify`: check an evidence bundle with no archive and no passphrase."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from archiver.cli.common import print_json, say, wants_json
from archiver.errors import IntegrityError, UsageError


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("bundle", parents=[parent], help="work with evidence bundles")
    bs = p.add_subparsers(dest="bundle_command", metavar="ACTION", required=True)
    v = bs.add_parser(
        "verify",
        parents=[parent],
        help="verify an evidence bundle independently of the archive",
        description="Recomputes every hash, checks the manifests, the signature and the journal proofs, and that "
        "nothing is missing or extra. Needs no archive and no passphrase. Exit 9 when a problem is found.",
    )
    v.add_argument("bundle", type=Path)
    v.add_argument(
        "--public-key",
        type=Path,
        metavar="FILE",
        help="the archive's public key (base64, PEM, or `archiver keys show --json` output) to compare with",
    )
    v.set_defaults(func=run_verify)


def run_verify(args: argparse.Namespace) -> int:
    from archiver.export.verify import load_public_key, verify_bundle

    key = None
    if args.public_key is not None:
        try:
            key = load_public_key(args.public_key.read_bytes())
        except (OSError, ValueError) as exc:
            raise UsageError(f"Cannot read the public key {args.public_key}: {exc}.") from None
    if not args.bundle.is_file():
        raise UsageError(f"{args.bundle} is not a file.")
    report = verify_bundle(str(args.bundle), key)
    if wants_json(args):
        print_json(report.as_dict())
    else:
        for line in report.problems:
            say(f"PROBLEM: {line}")
        for line in report.notes:
            say(f"note: {line}")
        counts = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in report.counts.items())
        say(("OK: " if report.ok else f"FAILED ({len(report.problems)} problems): ") + counts)
    return 0 if report.ok else IntegrityError.exit_code
