"""What every command shares: opening the archive, the acting user, output and progress.

Output goes through here so that three rules hold in one place rather than at each call:

* text that comes from a user or from mail is shown as it is: ``[/red]`` in a reason or a
  folder name is not Rich markup (which made every later ``hold list`` crash), and
  ``:thumbs_up:`` in a body is not an emoji (the admin must see what the message says);
* control characters from mail never reach the terminal raw: ``ESC ] 2 ;`` retitles the
  admin's window, ``ESC [ 2 J`` clears it, so they are printed as visible ``\\x1b`` text
  (:func:`visible`); ``--json`` output is left exact (JSON escapes them itself);
* a failed write to standard output (a full disk, a closed pipe) is an ``OutputError``
  (archiver/errors.py), which ``cli/main.py`` turns into one line or, for a closed pipe, a quiet exit.

Commands print with :func:`say` (one line of literal parts, optionally styled) and
:class:`PlainTable`.
"""

from __future__ import annotations

import argparse
import errno
import getpass
import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console, RenderableType
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.style import StyleType
from rich.table import Table
from rich.text import Text

from archiver.archive import Archive
from archiver.config import Config, load_config
from archiver.errors import OutputError
from archiver.logging import setup_logging

#: C0 controls but tab and newline, DEL and the C1 controls: ESC and CSI (0x9b) start terminal
#: commands, BEL rings, CR and BS overwrite what was printed.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def visible(text: str) -> str:
    """``text`` with every control character but newline and tab written as ``\\xNN``.

    For text shown on a terminal: a message's subject or body may carry escape sequences that
    would otherwise act on the admin's terminal.  CRLF line ends become newlines rather than
    a visible ``\\x0d`` on every line.
    """
    if not _CONTROL.search(text):
        return text
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text.replace("\r\n", "\n"))


def plain(text: object, style: StyleType = "") -> Text:
    """A Rich Text that shows ``text`` as it is (never markup or emoji), controls made visible."""
    return Text(visible(str(text)), style=style)


class SafeConsole(Console):
    """A Rich console that never passes control characters through and reports write errors.

    Every string Rich renders (printed, or a table cell) goes through :meth:`render_str`, so
    code that prints a markup string is covered as well.  Rich's own
    reaction to a closed pipe is ``SystemExit(1)``, while ``--json`` output raised
    BrokenPipeError; both now become an :class:`OutputError` for main.py to handle once.
    """

    def render_str(self, text: str, **kwargs: Any) -> Text:
        return super().render_str(visible(text), **kwargs)

    def on_broken_pipe(self) -> None:
        raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))

    def print(self, *objects: Any, **kwargs: Any) -> None:
        if not self.stderr and sys.stdout is None:  # Rich would write nowhere, silently
            raise _stdout_closed()
        try:
            super().print(*objects, **kwargs)
        except OSError as exc:
            # Rich keeps what it could not write and would send it again with the next print.
            self._buffer.clear()
            raise OutputError(exc) from None


console = SafeConsole(stderr=False, highlight=False, soft_wrap=True, emoji=False)
err_console = SafeConsole(stderr=True, highlight=False, soft_wrap=True, emoji=False)


def say(*parts: str | tuple[str, StyleType], err: bool = False) -> None:
    """Print one line made of ``parts`` exactly as given: a part is text, or (text, style).

    Nothing in a part is read as markup or emoji, so user and mail text needs no escaping;
    control characters are made visible.  ``say()`` prints an empty line.
    """
    line = Text.assemble(*((visible(p[0]), p[1]) if isinstance(p, tuple) else visible(p) for p in parts))
    (err_console if err else console).print(line)


class PlainTable(Table):
    """A Rich table whose text cells and title are shown as they are (see :func:`say`)."""

    def __init__(self, *headers: str, title: str | None = None, **kwargs: Any) -> None:
        super().__init__(*headers, title=None if title is None else plain(title), **kwargs)

    def add_row(
        self, *renderables: RenderableType | None, style: StyleType | None = None, end_section: bool = False
    ) -> None:
        cells = [plain(c) if isinstance(c, str) else c for c in renderables]
        super().add_row(*cells, style=style, end_section=end_section)


def write_out(data: str | bytes, *, flush: bool = True) -> None:
    """Write text or bytes to standard output as they are; a failure is an :class:`OutputError`.

    ``flush=False`` for a long run of small writes (journal records), flushed by the last one
    or by main.py at the end.
    """
    if sys.stdout is None:
        if data:
            raise _stdout_closed()
        return
    try:
        if isinstance(data, bytes):
            sys.stdout.buffer.write(data)
            if flush:
                sys.stdout.buffer.flush()
        else:
            sys.stdout.write(data)
            if flush:
                sys.stdout.flush()
    except OSError as exc:
        raise OutputError(exc) from None


def _stdout_closed() -> OutputError:
    """Standard output was closed before the process started (`archiver stats >&-`): Python has none."""
    return OutputError(OSError(errno.EBADF, "standard output is closed"))


def config_of(args: argparse.Namespace) -> Config:
    cfg = load_config(getattr(args, "config", None))
    setup_logging(cfg.logging.level, cfg.logging.format)
    return cfg


@contextmanager
def open_archive(args: argparse.Namespace, *, need_keys: bool = True) -> Iterator[Archive]:
    """The one way commands open the archive (config, passphrase, logging)."""
    cfg = config_of(args)
    archive = Archive.open(cfg, need_keys=need_keys)
    try:
        yield archive
    finally:
        archive.close()


def actor() -> str:
    """Who is acting, for the journal: $ARCHIVER_ACTOR, else the OS user."""
    who = os.environ.get("ARCHIVER_ACTOR")
    if who:
        return who
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:
        return "cli"


def wants_json(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "json", False))


def print_json(obj: Any) -> None:
    """One JSON document per line, exact: control characters are escaped by json.dumps itself."""
    write_out(json.dumps(obj, ensure_ascii=False, default=str) + "\n")


def show_progress(args: argparse.Namespace) -> bool:
    return not wants_json(args) and sys.stderr.isatty()


@contextmanager
def progress_bar(args: argparse.Namespace, label: str, total: int | None = None) -> Iterator[Callable[..., None]]:
    """A rich progress bar on a terminal; a no-op otherwise (logs and --json stay clean).

    The label names a source (``--source``), so it is shown literally, not as markup.
    """
    if not show_progress(args):
        yield lambda *a, **k: None
        return
    with Progress(
        TextColumn("{task.description}", style="bold", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as prog:
        task = prog.add_task(visible(label), total=total)

        def update(done: int, *_rest: Any, total: int | None = None) -> None:
            prog.update(task, completed=done, total=total)

        yield update
