"""The `archiver` command: argument parsing and error handling only.

Each command group lives in its own module and registers its subcommands; this
module turns every ArchiverError into its message and exit code, so a user never
sees a traceback for a mistake of theirs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Sequence

from archiver import __version__
from archiver.errors import ArchiverError, OutputError
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


#: exit status when the reader of standard output went away (`archiver journal | head -1`): what a
#: process killed by SIGPIPE reports, as `cat` or `grep` would in the same pipeline (README).
BROKEN_PIPE_EXIT = 141


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; every way it can end is turned into an exit code here, never a traceback.

    Everything, argument parsing included, runs inside the handlers: building the parser
    imports every command (a noticeable fraction of a second), and a Ctrl-C then must say
    "interrupted" like any other, not print a KeyboardInterrupt traceback.
    """
    try:
        return _run(argv)
    except OutputError as exc:
        _drop_stdout()
        if exc.closed_pipe:
            return BROKEN_PIPE_EXIT
        _error(str(exc))
        return exc.exit_code
    except ArchiverError as exc:
        from archiver.cli.common import visible  # loaded already: every command imports it

        _error(visible(str(exc)))  # a message may quote mail (a subject, a folder name)
        _settle_stdout()
        return exc.exit_code
    except KeyboardInterrupt:
        _error("interrupted; everything committed so far is kept.")
        _settle_stdout()
        return 130


def _run(argv: Sequence[str] | None) -> int:
    from archiver.cli.common import write_out

    limit_malloc_arenas()  # before tantivy or any worker thread allocates (archiver/memory.py)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        write_out("")  # --help and --version output, flushed while a failure can still be reported
        return int(exc.code or 0)
    except OSError as exc:  # argparse printing its help or usage; it reads no files
        raise OutputError(exc) from None
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return 2
    result = args.func(args)
    write_out("")  # anything still buffered (a plain print): its failure is reported here, not at exit
    return int(result or 0)


def _error(message: str) -> None:
    """``archiver: message`` on standard error; if standard error itself is gone, nothing is left to tell."""
    with contextlib.suppress(OSError, ValueError):
        print(f"archiver: {message}", file=sys.stderr, flush=True)


def _settle_stdout() -> None:
    """Flush standard output before exit, dropping it if that fails (see :func:`_drop_stdout`)."""
    if sys.stdout is None:  # closed before the process started (`>&-`)
        return
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        _drop_stdout()


def _drop_stdout() -> None:
    """Point standard output at /dev/null after it failed.

    Output the failed write left buffered is otherwise written again when the interpreter
    exits, which fails the same way and prints "Exception ignored ... BrokenPipeError" and
    exits 120 instead of the code chosen here.  (The Python documentation's advice for SIGPIPE.)
    """
    if sys.stdout is None:  # closed before the process started (`>&-`)
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)
    except (OSError, ValueError):  # no file descriptor (stdout replaced in-process): nothing to protect
        pass


if __name__ == "__main__":
    sys.exit(main())
