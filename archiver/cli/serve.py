"""`archiver serve` (the web UI and API) and `archiver web hash-password`."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from archiver.cli.common import config_of, write_out
from archiver.config import parse_listen
from archiver.errors import UsageError


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "serve",
        parents=[parent],
        help="serve the web UI and JSON API",
        description="Serve search, message view, exports, holds and the access log to web users "
        "(web.users in the config). See docs/web.md.",
    )
    p.add_argument("--listen", metavar="HOST:PORT", help="address to listen on (default: web.listen, 127.0.0.1:8080)")
    p.set_defaults(func=run_serve)

    w = sub.add_parser("web", parents=[parent], help="web server utilities")
    wsub = w.add_subparsers(dest="web_command", metavar="COMMAND")
    h = wsub.add_parser(
        "hash-password",
        parents=[parent],
        help="print an argon2 hash for web.users[].password_hash",
        description="Reads the password from the terminal (twice), or one line from standard input when piped.",
    )
    h.set_defaults(func=run_hash_password)
    w.set_defaults(func=lambda _args: (w.print_help(sys.stderr), 2)[1])


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from archiver.web.app import create_app, uvicorn_options

    cfg = config_of(args)
    if args.listen:
        cfg = cfg.model_copy(update={"web": cfg.web.model_copy(update={"listen": args.listen})})
    host, port = parse_listen(cfg.web.listen, "--listen" if args.listen else "web.listen")
    app = create_app(cfg)
    if not app.state.web.accounts.users:
        print("archiver: no web users are configured (web.users); nobody can log in.", file=sys.stderr)
    print(f"archiver: serving on http://{host}:{port}/ (Ctrl-C stops)", file=sys.stderr)
    uvicorn.run(app, host=host, port=port, **uvicorn_options(cfg.web))
    return 0


def run_hash_password(_args: argparse.Namespace) -> int:
    from archiver.web.auth import hash_password

    not_utf8 = UsageError(
        "The password is not UTF-8 text, so it could never be typed into the login form; nothing was printed."
    )
    if sys.stdin.isatty():
        try:
            first = getpass.getpass("Password: ")
            again = getpass.getpass("Again: ")
        except UnicodeDecodeError:
            raise not_utf8 from None
        if again != first:
            raise UsageError("The two passwords differ; nothing was printed.")
        try:
            first.encode("utf-8")
        except UnicodeEncodeError:  # a terminal in a non-UTF-8 locale passes undecodable bytes as surrogates
            raise not_utf8 from None
    else:
        # Bytes, decoded here: the text layer of stdin either raises on invalid UTF-8 or (C locale)
        # passes it on as surrogates that fail later, when the hash is computed.
        try:
            first = sys.stdin.buffer.readline().decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            raise not_utf8 from None
    write_out(hash_password(first) + "\n")
    return 0
