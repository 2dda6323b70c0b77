"""`archiver export`: write an evidence bundle (natives, texts, manifests, load file, proofs, signature)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from archiver.cli.common import actor, open_archive, print_json, progress_bar, say, wants_json
from archiver.policies.holds import parse_matter_ref


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "export",
        parents=[parent],
        help="write an evidence bundle (zip) for auditors",
        description="Writes one zip with the selected messages' original bytes, their text, manifest.csv/json, "
        "a Concordance load file, journal proofs and a signature; see docs/bundles.md. "
        "Disposed messages are never exported; the export is recorded in the journal.",
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--query", "-q", metavar="Q", help="every message this search query finds")
    which.add_argument("--matter", metavar="C/M", help="every message filed under CLIENT/MATTER")
    which.add_argument("--ids", metavar="FILE", type=Path, help="a file of message ids, one per line")
    p.add_argument("--case", required=True, help="the case or matter the bundle is produced for")
    p.add_argument("--out", required=True, type=Path, help="the zip file to write (must not exist)")
    p.add_argument("--bates-prefix", default="", metavar="ABC", help="prefix of the Bates numbers (default none)")
    p.add_argument("--reason", default="", metavar="TEXT", help="why the export is made (kept in custody.json)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from archiver.export.bundle import export_bundle, select_ids, select_matter, select_query

    if args.matter is not None:
        # Checked as `hold add --matter` and `matter close` check theirs: the same sentence and
        # exit code (10) for the same mistake, and spaces around the '/' dropped as there.
        client, matter = parse_matter_ref(args.matter)
        args.matter = f"{client}/{matter}"
    with open_archive(args) as archive:
        if args.query is not None:
            selection = select_query(archive, args.query)
        elif args.matter is not None:
            selection = select_matter(archive, args.matter)
        else:
            selection = select_ids(archive, args.ids)
        with progress_bar(args, "export", len(selection.ids)) as bar:
            result = export_bundle(
                archive,
                selection,
                case=args.case,
                out=args.out,
                bates_prefix=args.bates_prefix,
                reason=args.reason,
                actor=actor(),
                progress=lambda done, total: bar(done, total=total),
            )
    summary = {
        "bundle": str(result.path),
        "exported": result.exported,
        "not_exported": result.not_exported,
        "bates_first": result.bates_first,
        "bates_last": result.bates_last,
        "manifest_sha256": result.manifest_sha256,
        "fingerprint": result.fingerprint,
    }
    if wants_json(args):
        print_json(summary)
        return 0
    say(f"Wrote {result.path}: {result.exported} message(s), Bates {result.bates_first}..{result.bates_last}.")
    for item in result.not_exported:
        say(f"  not exported: {item['id']}: {item['reason']}")
    say(f"Signing key fingerprint: {result.fingerprint}")
    return 0
