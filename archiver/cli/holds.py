"""`archiver hold add|list|release`: legal holds (journalled with the acting user).

`hold add` says how many archived messages the hold covers, refuses one that covers none
unless `--allow-empty` is given (a typo must not pass for a hold), and says when it had to
wait for another writer such as a retention run (archiver/policies/holds.py).
"""

from __future__ import annotations

import argparse
from typing import Any

from archiver.cli.common import actor, open_archive, print_json, say, wants_json
from archiver.policies import holds as H


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("hold", parents=[parent], help="place, list and release legal holds")
    hs = p.add_subparsers(dest="hold_command", metavar="ACTION", required=True)

    add = hs.add_parser(
        "add",
        parents=[parent],
        help="place a legal hold",
        description="A held message is never disposed of while the hold stands, including messages archived "
        "after the hold was placed that match it.",
    )
    add.add_argument("--case", required=True, help="the case name the hold is known by")
    what = add.add_mutually_exclusive_group(required=True)
    what.add_argument("--matter", metavar="CLIENT/MATTER", help="hold every message filed under this matter")
    what.add_argument("--custodian", metavar="ADDRESS", help="hold every message to, from or pulled for this address")
    what.add_argument("--query", metavar="Q", help="hold every message this search query finds")
    add.add_argument("--reason", required=True, help="why (recorded in the journal)")
    add.add_argument(
        "--allow-empty",
        action="store_true",
        help="place the hold even though it covers no archived message yet (for mail still to arrive)",
    )
    add.set_defaults(func=run_add)

    ls = hs.add_parser("list", parents=[parent], help="list holds (released ones too with --all)")
    ls.add_argument("--all", action="store_true", help="include released holds")
    ls.set_defaults(func=run_list)

    rel = hs.add_parser("release", parents=[parent], help="release a hold")
    rel.add_argument("case", help="the case name")
    rel.add_argument("--reason", default="", help="why (recorded in the journal)")
    rel.set_defaults(func=run_release)


def _show(h: H.Hold) -> None:
    state = "active" if h.active else f"released {h.released_at} by {h.released_by}"
    say(f"{h.case}: {h.kind} {h.value} — {h.reason} (placed {h.placed_at} by {h.placed_by}; {state})")


def _waiting() -> None:
    say("Another process is writing to the archive (a retention run or an import); waiting for it. A retention "
        "run under way keeps what this hold covers from its next batch on.", err=True)  # fmt: skip


def run_add(args: argparse.Namespace) -> int:
    kind, value = next((k, getattr(args, k)) for k in H.KINDS if getattr(args, k) is not None)
    with open_archive(args) as archive:
        placed = H.place_hold(
            archive,
            case=args.case,
            kind=kind,
            value=value,
            reason=args.reason,
            actor=actor(),
            allow_empty=args.allow_empty,
            on_wait=_waiting,
        )
    if wants_json(args):
        print_json(placed.to_json())
        return 0
    _show(placed.hold)
    say(f"It covers {placed.covered} archived message{'s' if placed.covered != 1 else ''} now.")
    for w in placed.warnings:
        say(("note", "yellow"), f": {w}", err=True)
    return 0


def run_list(args: argparse.Namespace) -> int:
    with open_archive(args, need_keys=False) as archive:
        holds = H.list_holds(archive.repo.catalog, active_only=not args.all)
    if wants_json(args):
        print_json({"holds": [h.to_json() for h in holds]})
    elif not holds:
        say("No holds." if args.all else "No active holds.")
    else:
        for h in holds:
            _show(h)
    return 0


def run_release(args: argparse.Namespace) -> int:
    with open_archive(args) as archive:
        hold = H.release_hold(archive, args.case, actor=actor(), reason=args.reason)
    if wants_json(args):
        print_json(hold.to_json())
    else:
        _show(hold)
    return 0
