"""`archiver show ID [--raw]`: a message's headers and text, or its exact original bytes."""

from __future__ import annotations

import argparse
from typing import Any

from archiver.archive import received_of
from archiver.cli.common import open_archive, print_json, say, wants_json, write_out
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
            write_out(raw)
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
    # Headers and body are the sender's text: printed literally (say), escape sequences made visible.
    say(("id", "bold"), f": {oid}")
    for name, value in parsed.headers:
        say((name, "bold"), f": {value}")
    fallback = " (fallback: bad or missing Date)" if parsed.date_is_fallback else ""
    say(("Archived-Date", "bold"), f": {parsed.date.isoformat()}{fallback}")
    say(("Client", "bold"), f": {info['client']}  ", ("Matters", "bold"), f": {', '.join(info['matters']) or '-'}")
    for p in info["provenance"]:
        where = " ".join(x for x in (p["source"], p["account"], p["folder"], p["uid"] and f"uid={p['uid']}") if x)
        say(("Provenance", "bold"), f": {where} {p['location']}")
    for a in parsed.attachments:
        say(("Attachment", "bold"), f": {a.filename or '(unnamed)'} {a.content_type} {a.size} bytes")
    if parsed.parse_errors:
        say(
            ("Parse problems", "yellow"),
            f": {'; '.join(parsed.parse_errors)} (the original is stored byte-exact)",
        )
    say()
    say(parsed.body_text)
    return 0
