"""`archiver search QUERY`: full-text search, newest first.

A query may start with '-' (``archiver search -draft`` is NOT draft): see :func:`query_last`.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from archiver.cli.common import open_archive, print_json, say, wants_json
from archiver.model import SearchHit


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "search",
        parents=[parent],
        help="search the archive",
        description='Query language: field:term, "phrases", AND/OR/NOT, -term, parentheses, '
        "after:/before:YYYY-MM-DD, from:/to:/cc:/bcc: an address or a domain, contract* for a prefix. "
        "See docs/search.md. A query starting with '-' needs no '--' (archiver search -draft).",
    )
    p.prepare_args = query_last
    p.add_argument("query")
    p.add_argument("--limit", type=int, default=20, help="results to show; 0 = all (default 20)")
    p.add_argument("--offset", type=int, default=0, help="skip this many results")
    p.add_argument("--sort", choices=["date", "relevance"], default="date", help="newest first (default) or best match")
    p.set_defaults(func=run)


def query_last(parser: argparse.ArgumentParser, args: list[str]) -> list[str]:
    """``args`` with a query that starts with '-' put behind a ``--``, the options before it.

    argparse takes ``-salt`` for an unknown option, ``-has:attachment`` for ``-h`` with a
    value and ``-contract`` for ``-c ontract``, while the query language documents ``-term``
    (NOT term).  Here an argument starting with a single '-' is the query unless it is exactly
    one of the command's options (``-c``, ``-h``) or the value of the option before it;
    everything after ``--`` is positional as before; long options (``--limit``, ``--limit=5``,
    the abbreviation ``--lim``) and unknown ones stay argparse's.  So ``-cFILE`` is not
    ``--config``: write ``-c FILE``.  Arguments without such a query are returned unchanged.
    """
    options = parser._option_string_actions  # argparse has no public listing of a parser's options
    kept: list[str] = []
    positionals: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            positionals.extend(args[i:])
            break
        action = _option(options, arg)
        if action is not None:
            kept.append(arg)
            if action.nargs != 0 and "=" not in arg and i < len(args):
                kept.append(args[i])  # its value, whatever it looks like
                i += 1
        elif arg.startswith("--"):
            kept.append(arg)  # an unknown long option: argparse reports it
        else:
            positionals.append(arg)
    if not any(a.startswith("-") for a in positionals):
        return args
    return [*kept, "--", *positionals]


def _option(options: Mapping[str, argparse.Action], arg: str) -> argparse.Action | None:
    """The option ``arg`` names: exactly, as ``--name=value``, or as a unique abbreviation of a long one."""
    if arg in options:
        return options[arg]
    if not arg.startswith("--"):
        return None
    name = arg.split("=", 1)[0]
    if name in options:
        return options[name]
    matches = {id(a): a for s, a in options.items() if s.startswith("--") and s.startswith(name)}
    return next(iter(matches.values())) if len(matches) == 1 else None


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
    if result.unindexed:
        # On stderr in both modes: --json stays one object per result on stdout.
        say(
            f"note: {result.unindexed} stored messages are not in the search index yet (an import was "
            "interrupted?); the results may lack them until the next import or sync, or `archiver reindex`.",
            err=True,
        )
    if wants_json(args):
        for h in result.hits:
            print_json(hit_json(h))
        return 0
    for h in result.hits:
        tags = h.client + (f" [{', '.join(h.matters)}]" if h.matters else "")
        say(
            (h.date.strftime("%Y-%m-%d %H:%M"), "bold"),
            f"  {_words(h.from_)}  {_words(h.subject or '(no subject)')}  ",
            (_words(tags), "cyan"),
            "  ",
            (h.id[:12], "dim"),
        )
        if h.snippet:
            say("    ", (_shorten(h.snippet, 200), "dim"))
    shown = len(result.hits)
    say(f"{result.total} matching message(s){'' if shown == result.total else f', {shown} shown'}")
    return 0


def _words(text: str) -> str:
    """``text`` on one line: runs of whitespace (line breaks in a subject) become one space."""
    return " ".join(text.split())


def _shorten(text: str, n: int) -> str:
    text = _words(text)
    return text if len(text) <= n else text[: n - 1] + "…"
