"""`archiver show ID [--raw]`: a message's headers and text, or its exact original bytes."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rich.markup import escape

from archiver.archive import received_of
from archiver.cli.common import console, open_archive, print_json, wants_json
from archiver.errors import NotFoundError


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("show", parents=[parent], help="show one message")
    p.add_argument("id", help="message id (SHA-256) or a unique prefix of at least 8 digits")
    p.add_argument("--raw", action="store_true", help="write the exact original bytes to stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with open_archive(args) as archive:
        oid = archive.repo.resolve(args.id)
        info = archive.describe(oid)
        if info["disposed_at"] and wants_json(args):
            print_json({"id": oid, "disposed_at": info["disposed_at"], "disposed_rule": info["disposed_rule"]})
            return NotFoundError.exit_code
        raw = archive.repo.read_raw(oid)  # a disposed message: says when and under which rule
        if args.raw:
            sys.stdout.buffer.write(raw)
            sys.stdout.buffer.flush()
            return 0
        parsed = archive.parse(raw, received_of(info["ingested_at"], info["provenance"]))
    if wants_json(args):
        print_json(
            {
                **info,
                "headers": [list(h) for h in parsed.headers],
                "body_text": parsed.body_text,
                "date": parsed.date.isoformat(),
                "date_is_fallback": parsed.date_is_fallback,
                "parse_errors": list(parsed.parse_errors),
            }
        )
        return 0
    out = console
    out.print(f"[bold]id[/]: {oid}")
    for name, value in parsed.headers:
        out.print(f"[bold]{name}[/]: {escape(value)}")
    out.print(
        f"[bold]Archived-Date[/]: {parsed.date.isoformat()}{' (fallback: bad or missing Date)' if parsed.date_is_fallback else ''}"
    )
    out.print(f"[bold]Client[/]: {info['client']}  [bold]Matters[/]: {', '.join(info['matters']) or '-'}")
    for p in info["provenance"]:
        where = " ".join(x for x in (p["source"], p["account"], p["folder"], p["uid"] and f"uid={p['uid']}") if x)
        out.print(f"[bold]Provenance[/]: {escape(where)} {escape(p['location'])}")
    for a in parsed.attachments:
        out.print(f"[bold]Attachment[/]: {escape(a.filename or '(unnamed)')} {a.content_type} {a.size} bytes")
    if parsed.parse_errors:
        out.print(
            f"[yellow]Parse problems[/]: {escape('; '.join(parsed.parse_errors))} (the original is stored byte-exact)"
        )
    out.print()
    out.print(escape(parsed.body_text), markup=True)
    return 0
