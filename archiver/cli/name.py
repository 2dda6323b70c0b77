"""`archiver name ID`: the file name a message gets under the naming policy (exports use the same code)."""

from __future__ import annotations

import argparse
from typing import Any

from archiver.archive import received_of
from archiver.cli.common import open_archive, print_json, say, wants_json
from archiver.policies.naming import NamingPolicy, fields_of


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "name",
        parents=[parent],
        help="show the file name a message gets when exported",
        description="Prints the name the naming policy (naming.template in the config) gives a message. "
        "In an export, a name that collides with an earlier one gets a suffix from the message id.",
    )
    p.add_argument("id", help="message id (SHA-256) or a unique prefix of at least 8 digits")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with open_archive(args) as archive:
        policy = NamingPolicy.from_config(archive.cfg.naming)
        oid = archive.repo.resolve(args.id)
        raw = archive.repo.read_raw(oid)
        row, copies = archive.repo.catalog.object(oid), archive.repo.catalog.provenance(oid)
        received = received_of(row.ingested_at if row else "1970-01-01T00:00:00Z", copies)
        parsed = archive.parse(raw, received, attachment_text=False)
        tags = archive.tags_of(oid)
        name = policy.base_name(fields_of(oid, parsed, tags.client, tags.matters, copies))
    if wants_json(args):
        print_json({"id": oid, "name": name, "template": policy.template})
    else:
        say(name)
    return 0
