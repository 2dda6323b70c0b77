"""`archiver search QUERY`: full-text search, newest first."""

from __future__ import annotations

import argparse
from typing import Any

from archiver.cli.common import console, open_archive, print_json, wants_json
from archiver.model import SearchHit


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "search",
        parents=[parent],
        help="search the archive",
        description='Query language: field:term, "phrases", AND/OR/NOT, parentheses, after:/before:YYYY-MM-DD, '
        "from:/to:/cc:/bcc: an address or a domain, contract* for a prefix. See docs/search.md.",
    )
    p.add_argument("query")
    p.add_argument("--limit", type=int, default=20, help="results to show; 0 = all (default 20)")
    p.add_argument("--offset", type=int, default=0, help="skip this many results")
    p.add_argument("--sort", choices=["date", "relevance"], default="date", help="newest first (default) or best match")
    p.set_defaults(func=run)


def hit_json(h: SearchHit) -> dict[str, Any]:
    return {
        "id": h.id,
        "message_id": h.message_id,
        "date": h.date.isoformat(),
        "from": h.from_,
        "to": list(h.to),
        "subject": h.subject,
        "client": h.client,
        "matters": list(h.matters),
        "snippet": h.snippet,
        "score": h.score,
    }


def run(args: argparse.Namespace) -> int:
    if args.limit < 0 or args.offset < 0:
        from archiver.errors import UsageError

        raise UsageError("--limit and --offset must not be negative.")
    with open_archive(args, need_keys=False) as archive:
        result = archive.search(args.query, limit=args.limit, offset=args.offset, sort=args.sort)
    if wants_json(args):
        for h in result.hits:
            print_json(hit_json(h))
        return 0
    for h in result.hits:
        tags = h.client + (f" [{', '.join(h.matters)}]" if h.matters else "")
        subject = _esc(h.subject or "(no subject)")
        console.print(
            f"[bold]{h.date.strftime('%Y-%m-%d %H:%M')}[/]  {_esc(h.from_)}  {subject}  "
            f"[cyan]{_esc(tags)}[/]  [dim]{h.id[:12]}[/]"
        )
        if h.snippet:
            console.print(f"    [dim]{_esc(_shorten(h.snippet, 200))}[/]")
    shown = len(result.hits)
    console.print(f"{result.total} matching message(s){'' if shown == result.total else f', {shown} shown'}")
    return 0


def _esc(text: str) -> str:
    from rich.markup import escape

    return escape(" ".join(text.split()))


def _shorten(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"
