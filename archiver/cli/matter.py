"""`archiver matter close|reopen|show`: the matter lifecycle that starts `matter_closed` retention periods.

A close date starts retention periods, so `close` refuses a matter no message carries and a
date before the matter's newest message or long past, unless explicitly allowed with a
reason (archiver/policies/matters.py).
"""

from __future__ import annotations

import argparse
from datetime import date
from typing import Any

from archiver.cli.common import actor, open_archive, print_json, say, wants_json
from archiver.clock import system_clock
from archiver.errors import UsageError
from archiver.policies import matters as M
from archiver.policies.holds import parse_matter_ref


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("matter", parents=[parent], help="close or reopen a matter (journalled)")
    ms = p.add_subparsers(dest="matter_command", metavar="ACTION", required=True)
    close = ms.add_parser("close", parents=[parent], help="record that a matter closed on a date")
    close.add_argument("matter", metavar="CLIENT/MATTER")
    close.add_argument("--date", required=True, metavar="YYYY-MM-DD", help="the day the matter closed")
    close.add_argument("--allow-empty", action="store_true", help="close a matter no archived message is filed under")
    close.add_argument(
        "--allow-backdate",
        action="store_true",
        help=f"allow a date before the matter's newest message or more than {M.MAX_BACKDATE_DAYS} days ago "
        "(needs --reason)",
    )
    close.add_argument("--reason", default="", help="why the close is backdated (recorded in the journal)")
    close.set_defaults(func=run_close)
    reopen = ms.add_parser("reopen", parents=[parent], help="reopen a closed matter")
    reopen.add_argument("matter", metavar="CLIENT/MATTER")
    reopen.set_defaults(func=run_reopen)
    show = ms.add_parser("show", parents=[parent], help="a matter's state and message count")
    show.add_argument("matter", metavar="CLIENT/MATTER")
    show.set_defaults(func=run_show)


def _print(state: dict[str, Any], args: argparse.Namespace) -> None:
    if wants_json(args):
        print_json(state)
        return
    where = f"{state['client']}/{state['matter']}"
    if state["state"] == "closed":
        say(f"{where}: closed on {state['closed_on']} ({state['messages']} messages)")
    else:
        say(f"{where}: open ({state['messages']} messages)")


def run_close(args: argparse.Namespace) -> int:
    try:
        on = date.fromisoformat(args.date)
    except ValueError:
        raise UsageError(f"--date {args.date!r} is not a date; write YYYY-MM-DD.") from None
    with open_archive(args) as archive:
        state = M.close_matter(
            archive,
            args.matter,
            on,
            actor=actor(),
            today=system_clock().date(),
            allow_empty=args.allow_empty,
            allow_backdate=args.allow_backdate,
            reason=args.reason,
        )
    _print(state, args)
    return 0


def run_reopen(args: argparse.Namespace) -> int:
    with open_archive(args) as archive:
        state = M.reopen_matter(archive, args.matter, actor=actor())
    _print(state, args)
    return 0


def run_show(args: argparse.Namespace) -> int:
    client, matter = parse_matter_ref(args.matter)
    with open_archive(args, need_keys=False) as archive:
        state = M.matter_state(archive, client, matter)
    _print(state, args)
    return 0
