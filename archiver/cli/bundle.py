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
        description="Recomputes every hash, checks the zip, the manifests, the signature and the journal proofs, "
        "and that nothing is missing or extra; prints what the bundle claims and each check's result. Needs no "
        "archive and no passphrase. Without --public-key the key is not confirmed: the verdict is then "
        "'SIGNATURE VALID, KEY NOT CONFIRMED'. Exit 0 when every check passes, 9 when a problem is found.",
    )
    v.add_argument("bundle", type=Path)
    v.add_argument(
        "--public-key",
        type=Path,
        metavar="FILE",
        help="the archive's public key from its owner (`archiver keys show --json` output, whose archive_id is "
        "checked too; or base64, or PEM) to compare with",
    )
    v.set_defaults(func=run_verify)


def run_verify(args: argparse.Namespace) -> int:
    """Verify a bundle and print what it claims, each check with its result, the problems and the verdict.

    Without --public-key the verdict is "SIGNATURE VALID, KEY NOT CONFIRMED", never a bare OK:
    anyone can sign a consistent bundle with a key of their own.  Exit 0 when every check
    passes, 9 on any problem.
    """
    from archiver.export.verify import load_expected_key, render, verify_bundle

    expected = None
    if args.public_key is not None:
        try:
            expected = load_expected_key(args.public_key.read_bytes())
        except (OSError, ValueError) as exc:
            raise UsageError(f"Cannot read the public key {args.public_key}: {exc}.") from None
    if not args.bundle.is_file():
        raise UsageError(f"{args.bundle} is not a file.")
    report = verify_bundle(
        str(args.bundle),
        expected.public_key if expected else None,
        archive_id=expected.archive_id if expected else None,
    )
    if wants_json(args):
        print_json(report.as_dict())
    else:
        for line in render(report):
            say(line)
    return 0 if report.ok else IntegrityError.exit_code
