"""`archiver init`: create the archive and its keys."""

from __future__ import annotations

import argparse
from typing import Any

from archiver.archive import Archive
from archiver.cli.common import actor, config_of, console, print_json, wants_json


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("init", parents=[parent], help="create a new archive and its keys")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = config_of(args)
    with Archive.init(cfg, actor=actor()) as archive:
        keys = archive.repo.require_keys()
        info = {"path": str(archive.repo.path), "archive_id": archive.repo.archive_id, "fingerprint": keys.fingerprint}
    if wants_json(args):
        print_json(info)
    else:
        console.print(f"Created archive {info['archive_id']} at {info['path']}")
        console.print(f"Signing key fingerprint: {info['fingerprint']}")
        console.print("Keep the passphrase safe: without it the archive cannot be read.")
    return 0
