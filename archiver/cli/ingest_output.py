"""Printing an ingest summary (shared by `import` and `sync`)."""

from __future__ import annotations

import argparse

from archiver.cli.common import PlainTable, console, print_json, say, wants_json
from archiver.errors import SourceError
from archiver.pipeline import IngestSummary


def report(args: argparse.Namespace, summary: IngestSummary, label: str) -> int:
    """Print the summary; exit 11 when a source failed as a whole, 1 when some messages could
    not be archived (the rest were), else 0."""
    if wants_json(args):
        print_json(summary.as_json())
    else:
        for f in summary.failures[:50]:
            say(("not archived", "yellow"), f": {f['location']}: {f['reason']}", err=True)
        if len(summary.failures) > 50:
            say(f"... and {len(summary.failures) - 50} more", err=True)
        if len(summary.folders) > 1:
            t = PlainTable("folder", "imported", "duplicates", "parse errors", "failed", title=label)
            for name, fs in sorted(summary.folders.items()):
                t.add_row(name, str(fs.imported), str(fs.duplicates), str(fs.parse_errors), str(fs.failed))
            console.print(t)
        rate = summary.imported / summary.seconds if summary.seconds else 0.0
        say(
            f"{label}: {summary.imported} imported, {summary.duplicates} duplicates, "
            f"{summary.parse_errors} with parse errors (stored byte-exact), {summary.failed} failed "
            f"in {summary.seconds:.1f} s ({rate:.0f} msg/s)"
        )
    return exit_code(summary)


def exit_code(summary: IngestSummary) -> int:
    """11 (SourceError's) when a source failed as a whole, 1 when some messages failed, else 0."""
    if summary.source_errors:
        return SourceError.exit_code
    return 1 if summary.failed else 0
