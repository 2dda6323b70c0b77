"""What every command shares: opening the archive, the acting user, output and progress."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from archiver.archive import Archive
from archiver.config import Config, load_config
from archiver.logging import setup_logging

console = Console(stderr=False, highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False)


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
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def show_progress(args: argparse.Namespace) -> bool:
    return not wants_json(args) and sys.stderr.isatty()


@contextmanager
def progress_bar(args: argparse.Namespace, label: str, total: int | None = None) -> Iterator[Callable[..., None]]:
    """A rich progress bar on a terminal; a no-op otherwise (logs and --json stay clean)."""
    if not show_progress(args):
        yield lambda *a, **k: None
        return
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as prog:
        task = prog.add_task(label, total=total)

        def update(done: int, *_rest: Any, total: int | None = None) -> None:
            prog.update(task, completed=done, total=total)

        yield update
