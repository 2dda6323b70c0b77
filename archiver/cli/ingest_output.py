"""Printing an ingest summary (shared by `import` and `sync`)."""

from __future__ import annotations

import argparse

from rich.table import Table

from archiver.cli.common import console, err_console, print_json, wants_json
from archiver.pipeline import IngestSummary


def report(args: argparse.Namespace, summary: IngestSummary, label: str) -> int:
    """Print the summary; exit 1 when anything could not be archived (the rest was)."""
    if wants_json(args):
        print_json(summary.as_json())
    else:
        for f in summary.failures[:50]:
            err_console.print(f"[yellow]not archived[/]: {f['location']}: {f['reason']}", markup=True)
        if len(summary.failures) > 50:
            err_console.print(f"... and {len(summary.failures) - 50} more")
        if len(summary.folders) > 1:
            t = Table("folder", "imported", "duplicates", "parse errors", "failed", title=label)
            for name, fs in sorted(summary.folders.items()):
                t.add_row(name, str(fs.imported), str(fs.duplicates), str(fs.parse_errors), str(fs.failed))
            console.print(t)
        rate = summary.imported / summary.seconds if summary.seconds else 0.0
        console.print(
            f"{label}: {summary.imported} imported, {summary.duplicates} duplicates, "
            f"{summary.parse_errors} with parse errors (stored byte-exact), {summary.failed} failed "
            f"in {summary.seconds:.1f} s ({rate:.0f} msg/s)"
        )
    return 1 if summary.failed else 0
