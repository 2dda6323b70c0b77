"""`archiver retention plan|apply|review|approve|rules|certificate verify`: retention and disposition.

`plan` is a dry run (optionally as of another day); `apply` disposes of what is due now, by
the real clock only, so nobody can dispose early by pretending it is later; `review` lists
what review rules hold back for a person, and `approve` disposes of those items.  See
docs/retention.md.
"""

from __future__ import annotations

import argparse
import base64
import binascii
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import yaml

from archiver.cli.common import actor, config_of, open_archive, print_json, say, wants_json
from archiver.clock import system_clock
from archiver.errors import ArchiverError, IntegrityError, PolicyError, UsageError
from archiver.policies import apply as retention


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("retention", parents=[parent], help="retention plan, apply, review and certificates")
    rs = p.add_subparsers(dest="retention_command", metavar="ACTION", required=True)

    pl = rs.add_parser("plan", parents=[parent], help="dry run: what would be disposed, reviewed, held")
    pl.add_argument("--as-of", metavar="YYYY-MM-DD", help="plan as of this day (00:00 UTC) instead of now")
    pl.add_argument("--limit", type=int, default=50, help="items listed per section in text output (default 50)")
    pl.set_defaults(func=run_plan)

    ap = rs.add_parser("apply", parents=[parent], help="dispose of every message due now (real clock only)")
    ap.add_argument("--as-of", metavar="YYYY-MM-DD", help=argparse.SUPPRESS)
    ap.set_defaults(func=run_apply)

    rv = rs.add_parser("review", parents=[parent], help="list messages awaiting review before disposal")
    rv.set_defaults(func=run_review)

    ok = rs.add_parser("approve", parents=[parent], help="dispose of reviewed messages")
    ok.add_argument("ids", nargs="+", metavar="ID", help="message ids (or unique prefixes) from `retention review`")
    ok.add_argument("--rule", required=True, help="the rule under which they await review")
    ok.set_defaults(func=run_approve)

    ru = rs.add_parser("rules", parents=[parent], help="show the rules as last journalled")
    ru.set_defaults(func=run_rules)

    cert = rs.add_parser("certificate", parents=[parent], help="disposition certificates")
    cs = cert.add_subparsers(dest="certificate_command", metavar="ACTION", required=True)
    cv = cs.add_parser("verify", parents=[parent], help="check a disposition certificate's signature")
    cv.add_argument("file", type=Path, help="the certificate (certificates/*.json in the archive folder)")
    cv.add_argument(
        "--public-key",
        metavar="BASE64",
        help="the archive's public key (from `archiver keys show`); without it the archive of the config is used",
    )
    cv.set_defaults(func=run_certificate_verify)


def _as_of(text: str) -> datetime:
    try:
        d = date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--as-of {text!r} is not a date; write YYYY-MM-DD.") from None
    return datetime(d.year, d.month, d.day, tzinfo=UTC)


def _print_items(title: str, items: list[retention.PlanItem], limit: int) -> None:
    say((title, "bold"), f": {len(items)}")
    for it in items[:limit]:
        subject = (it.subject or "(no subject)")[:60]
        say(f"  {it.id[:16]}  {it.date[:10] or '-':10}  {it.rule:20}  {subject}")
        say(f"      {it.reason}")
    if len(items) > limit:
        say(f"  … and {len(items) - limit} more (use --json for all)")


def run_plan(args: argparse.Namespace) -> int:
    now = _as_of(args.as_of) if args.as_of else system_clock()
    with open_archive(args) as archive:
        p = retention.plan(archive, now, actor=actor())
    if wants_json(args):
        print_json(p.to_json())
        return 0
    say(f"Retention plan as of {now.isoformat()} (rules {p.rules_file}, {p.rules_fingerprint[:12]})")
    if not Path(p.rules_file).exists():
        say(f"note: there is no rules file at {p.rules_file}, so every message is kept.")
    c = p.counts
    say(
        f"{c['messages']} messages: {c['dispose']} to dispose, {c['review']} to review, "
        f"{c['hold']} under hold ({c['held_past_end']} past their retention), {c['keep']} kept "
        f"({c['waiting']} waiting for a matter to close)"
    )
    _print_items("To dispose", p.dispose, args.limit)
    _print_items("To review", p.review, args.limit)
    _print_items("Kept by holds although due", p.held, args.limit)
    for h in p.holds:
        if h.active:
            say(f"hold {h.case!r}: {h.kind} {h.value} (placed {h.placed_at[:10]} by {h.placed_by})")
    return 0


def run_apply(args: argparse.Namespace) -> int:
    if getattr(args, "as_of", None):
        raise UsageError(
            "`retention apply` uses the real clock only; use `retention plan --as-of` to see what a later day would do."
        )
    with open_archive(args) as archive:
        cert = retention.apply(archive, system_clock(), actor=actor())
    if wants_json(args):
        print_json({**cert.to_json(), "path": str(cert.path)})
        return 0
    counts = cert.body["counts"]
    say(
        f"Disposed of {cert.disposed} messages; {counts.get('review', 0)} await review, "
        f"{counts.get('held_past_end', 0)} are kept by holds although due."
    )
    for rule, n in sorted(counts.get("by_rule", {}).items()):
        say(f"  {rule}: {n}")
    say(f"Certificate: {cert.path}")
    return 0


def run_review(args: argparse.Namespace) -> int:
    with open_archive(args) as archive:
        items = retention.review(archive, system_clock(), actor=actor())
    if wants_json(args):
        print_json({"review": [i.to_json() for i in items]})
        return 0
    _print_items("Awaiting review", items, 10**9)
    if items:
        say("Approve with: archiver retention approve ID... --rule RULE")
    return 0


def run_approve(args: argparse.Namespace) -> int:
    with open_archive(args) as archive:
        cert = retention.approve(archive, args.ids, args.rule, now=system_clock(), actor=actor())
    if wants_json(args):
        print_json({**cert.to_json(), "path": str(cert.path)})
        return 0
    say(f"Disposed of {cert.disposed} reviewed messages under rule {args.rule!r}.")
    say(f"Certificate: {cert.path}")
    return 0


def run_rules(args: argparse.Namespace) -> int:
    with open_archive(args, need_keys=False) as archive:
        last = retention.last_journalled_rules(archive)
    if last is None:
        raise PolicyError("No retention rules have been journalled yet; `archiver retention plan` journals them.")
    rules, info = last
    if wants_json(args):
        print_json({**info, "rules": rules.canonical()})
        return 0
    say(f"# journalled at {info['time']} by {info['actor']} (record {info['seq']}, {info['fingerprint'][:12]})")
    say(yaml.safe_dump(rules.canonical(), sort_keys=False, allow_unicode=True))
    return 0


def run_certificate_verify(args: argparse.Namespace) -> int:
    doc = retention.load_certificate(args.file)
    problems: list[str] = []
    if args.public_key:
        try:
            key = base64.b64decode(args.public_key, validate=True)
        except (binascii.Error, ValueError):
            raise UsageError("--public-key is not base64 (copy it from `archiver keys show`).") from None
        problems = retention.verify_certificate(doc, key)
    else:
        try:
            config_of(args)
        except ArchiverError as exc:
            raise UsageError(f"{exc} (or pass --public-key to check a certificate without the archive)") from None
        with open_archive(args, need_keys=False) as archive:
            problems = retention.verify_certificate(doc, archive.repo.public_key)
            if not problems:
                problems = retention.check_against_archive(archive, doc)
    body = doc["certificate"]
    if wants_json(args):
        print_json({"ok": not problems, "problems": problems, "disposed": body.get("counts", {}).get("disposed")})
    elif problems:
        for p in problems:
            say(("PROBLEM", "red"), f": {p}", err=True)
        say("FAILED")
    else:
        say(
            f"OK: certificate of {body['counts']['disposed']} disposals at {body.get('finished_at')} "
            f"signed by {body.get('public_key_fingerprint')}"
        )
    return 0 if not problems else IntegrityError.exit_code
