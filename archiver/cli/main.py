"""The `archiver` command: argument parsing and error handling only.

Each command group lives in its own module and registers its subcommands; this
module turns every ArchiverError into its message and exit code, so a user never
sees a traceback for a mistake of theirs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from archiver import __version__
from archiver.errors import ArchiverError
from archiver.memory import limit_malloc_arenas

COMMAND_MODULES = (
    "archiver.cli.init",
    "archiver.cli.importing",
    "archiver.cli.sync",
    "archiver.cli.search",
    "archiver.cli.show",
    "archiver.cli.verify",
    "archiver.cli.stats",
    "archiver.cli.maintenance",
    "archiver.cli.keys",
    "archiver.cli.serve",
    "archiver.cli.retention",
    "archiver.cli.holds",
    "archiver.cli.matter",
    "archiver.cli.name",
    "archiver.cli.export",
    "archiver.cli.bundle",
    "archiver.cli.daemon",
    "archiver.cli.status",
    "archiver.cli.journal",
)


class CommandParser(argparse.ArgumentParser):
    """A subcommand's parser; a command may set ``prepare_args`` to rewrite its arguments before argparse reads them.

    argparse takes every argument starting with '-' for an option before the command sees
    it; `archiver search -draft` needs that argument kept as its query (cli/search.py).
    """

    prepare_args: Callable[[argparse.ArgumentParser, list[str]], list[str]] | None = None

    # (typeshed declares this as three overloads by namespace type; one signature covers them.)
    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if args is not None and self.prepare_args is not None:
            args = self.prepare_args(self, list(args))
        return super().parse_known_args(args, namespace)


def common_options() -> argparse.ArgumentParser:
    """--config and --json, accepted before or after the subcommand."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(
        "--config", "-c", default=argparse.SUPPRESS, metavar="FILE", help="config file (default: $ARCHIVER_CONFIG)"
    )
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    return p


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="archiver",
        description="Email archiving and compliance: encrypted, deduplicated, tamper-evident, searchable.",
    )
    parser.add_argument("--config", "-c", metavar="FILE", help="config file (default: $ARCHIVER_CONFIG)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--version", action="version", version=f"archiver {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=CommandParser)
    parent = common_options()
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub, parent)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    limit_malloc_arenas()  # before tantivy or any worker thread allocates (archiver/memory.py)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        result = args.func(args)
        return int(result or 0)
    except ArchiverError as exc:
        print(f"archiver: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("archiver: interrupted; everything committed so far is kept.", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
