"""`archiver import PATH...`: Maildir, mbox, EML files, folders of messages, PST."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from archiver.cli.common import actor, open_archive, progress_bar
from archiver.cli.ingest_output import report
from archiver.errors import UsageError
from archiver.pipeline import ingest


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "import",
        parents=[parent],
        help="import mail files (Maildir, mbox, EML, folders, PST)",
        description="Import mail from files; the format is detected from the content, not the name. "
        "Re-running an import adds nothing.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--source", default="import", help="source name recorded as provenance (default: import)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from connectors.files import FilesConnector

    if any(not p.strip() for p in args.paths):
        # Path("") is "."; an empty argument is a mistake (an unset variable), not a request for
        # the current folder.
        raise UsageError("An empty path was given to import; name the files or folders to import.")
    with open_archive(args) as archive:
        connector = FilesConnector(
            args.source,
            [Path(p).expanduser() for p in args.paths],
            batch_size=archive.cfg.ingest.batch_size,
        )
        with progress_bar(args, f"importing into {args.source}") as update:
            summary = ingest(archive, connector, actor=actor(), progress=update)
    return report(args, summary, "import")
