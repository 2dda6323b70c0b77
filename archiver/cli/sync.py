"""`archiver sync [--source NAME]`: pull once from the configured sources.

Each source is synced on its own: a source that cannot be built (a mistake in its part of
the config) or that fails in any way is reported as that source's failure, and the sources
after it are still synced.  Only faults of the archive itself (locked, wrong passphrase,
...), which would stop every source alike, end the command at once.
"""

from __future__ import annotations

import argparse
from typing import Any

from archiver.cli.common import actor, open_archive, print_json, progress_bar, wants_json
from archiver.cli.ingest_output import exit_code, report
from archiver.errors import ArchiverError, ConfigError
from archiver.logging import get_logger
from archiver.pipeline import IngestSummary, ingest
from archiver.sources import build_connector, unexpected

log = get_logger("archiver.sync")


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("sync", parents=[parent], help="pull new mail from the configured sources once")
    p.add_argument("--source", help="only this source (default: all)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config_errors = 0
    with open_archive(args) as archive:
        sources = [archive.cfg.source(args.source)] if args.source else list(archive.cfg.sources)
        if not sources:
            raise ConfigError(
                "No sources are configured: add a `sources:` list to the config (see config.example.yaml)."
            )
        results: dict[str, IngestSummary] = {}
        for src in sources:
            try:
                connector = build_connector(src)
            except ConfigError as exc:
                # Its part of the config is wrong: exit 3 at the end, but the other sources still run.
                config_errors += 1
                results[src.name] = _failed(src.name, str(exc), whole=False)
                continue
            with progress_bar(args, f"syncing {src.name}") as update:
                try:
                    results[src.name] = ingest(
                        archive, connector, actor=actor(), progress=update, event="sync"
                    )
                except ArchiverError:
                    raise  # the archive's own fault (lock, passphrase, ...): every source would fail alike
                except Exception as exc:
                    # Raised by the pipeline while handling this source's mail: a bug, reported as this
                    # source's failure (exit 11, README) so that the next sources are still synced.
                    log.error("sync of a source failed unexpectedly", source=src.name, error=type(exc).__name__)
                    log.debug("the unexpected error's traceback", source=src.name, exc_info=True)
                    results[src.name] = _failed(src.name, unexpected(src.name, exc), whole=True)
    floor = ConfigError.exit_code if config_errors else 0
    if wants_json(args):
        print_json({name: s.as_json() for name, s in results.items()})
        return max([floor, *(exit_code(s) for s in results.values())])
    code = floor
    for name, s in results.items():
        code = max(code, report(args, s, f"sync {name}"))
    return code


def _failed(source: str, reason: str, whole: bool) -> IngestSummary:
    """The summary of a source that could not be synced at all."""
    return IngestSummary(failed=1, source_errors=int(whole), failures=[{"location": source, "reason": reason}])
