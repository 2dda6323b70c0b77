"""`archiver daemon [--json-logs]`: run the scheduler in the foreground (systemd, a container)."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from archiver.config import load_config
from archiver.logging import setup_logging


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "daemon",
        parents=[parent],
        help="run in the foreground: sync sources on their intervals, retention sweep and verify on schedules",
        description="Runs until SIGTERM or SIGINT (stops after the current batch is committed); SIGHUP reloads "
        "the config. Serves /healthz and /metrics on daemon.listen. One daemon per archive. "
        "See deploy/README.md for running it as a service.",
    )
    p.add_argument("--json-logs", action="store_true", help="log JSON lines whatever logging.format says")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from archiver.daemon.service import Daemon

    cfg = load_config(getattr(args, "config", None))
    fmt = "json" if args.json_logs else None
    setup_logging(cfg.logging.level, fmt or cfg.logging.format)
    # The jobs log their own start and end with their context; APScheduler's per-run lines would repeat them.
    logging.getLogger("apscheduler.executors").setLevel(logging.WARNING)
    return Daemon(cfg, log_format=fmt).run()
