"""`archiver keys show`: the archive's public signing key and its fingerprint."""

from __future__ import annotations

import argparse
import base64
from typing import Any

from archiver.cli.common import open_archive, print_json, say, wants_json
from archiver.crypto.keys import fingerprint


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("keys", parents=[parent], help="show the archive's public key")
    ks = p.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    show = ks.add_parser("show", parents=[parent], help="print the public signing key and fingerprint")
    show.set_defaults(func=run_show)


def run_show(args: argparse.Namespace) -> int:
    with open_archive(args, need_keys=False) as archive:
        pk = archive.repo.public_key
        info = {
            "archive_id": archive.repo.archive_id,
            "algorithm": "ed25519",
            "public_key": base64.b64encode(pk).decode(),
            "fingerprint": fingerprint(pk),
        }
    if wants_json(args):
        print_json(info)
    else:
        for k, v in info.items():
            say(f"{k}: {v}")
    return 0
