"""`archiver init`: create the archive and its keys."""

from __future__ import annotations

import argparse
from typing import Any

from archiver.archive import Archive
from archiver.cli.common import actor, config_of, print_json, say, wants_json
from archiver.errors import ArchiverError


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("init", parents=[parent], help="create a new archive and its keys")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = config_of(args)
    path = cfg.archive.path
    try:
        with Archive.init(cfg, actor=actor()) as archive:
            keys = archive.repo.require_keys()
            info = {
                "path": str(archive.repo.path),
                "archive_id": archive.repo.archive_id,
                "fingerprint": keys.fingerprint,
            }
    except OSError as exc:
        # Repository.create reports a file or a folder it cannot create as such; this is for what
        # fails while it builds (a full or read-only disk), which it cleans up and passes on.
        raise ArchiverError(f"Cannot create the archive at {path}: {exc.strerror or exc}.") from None
    if wants_json(args):
        print_json(info)
    else:
        say(f"Created archive {info['archive_id']} at {info['path']}")
        say(f"Signing key fingerprint: {info['fingerprint']}")
        say("Keep the passphrase safe: without it the archive cannot be read.")
    return 0
