"""`archiver sync [--source NAME]`: pull once from the configured sources."""

from __future__ import annotations

import argparse
from typing import Any

from archiver.cli.common import actor, open_archive, print_json, progress_bar, wants_json
from archiver.cli.ingest_output import exit_code, report
from archiver.errors import ConfigError
from archiver.pipeline import IngestSummary, ingest
from archiver.sources import build_connector


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("sync", parents=[parent], help="pull new mail from the configured sources once")
    p.add_argument("--source", help="only this source (default: all)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with open_archive(args) as archive:
        sources = [archive.cfg.source(args.source)] if args.source else list(archive.cfg.sources)
        if not sources:
            raise ConfigError(
                "No sources are configured: add a `sources:` list to the config (see config.example.yaml)."
            )
        results: dict[str, IngestSummary] = {}
        for src in sources:
            connector = build_connector(src)
            with progress_bar(args, f"syncing {src.name}") as update:
                results[src.name] = ingest(archive, connector, actor=actor(), progress=update, event="sync")
    if wants_json(args):
        print_json({name: s.as_json() for name, s in results.items()})
        return max((exit_code(s) for s in results.values()), default=0)
    code = 0
    for name, s in results.items():
        code = max(code, report(args, s, f"sync {name}"))
    return code
