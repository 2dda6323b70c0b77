"""`archiver retention plan|apply|review|approve|rules [accept]|certificate verify`: retention and disposition.

`plan` is a dry run (optionally as of another day) that journals nothing, under the rules in
force or, with `--proposed`, under the rules file; `apply` disposes of what is due now, by
the real clock only, so nobody can dispose early by pretending it is later; `review` lists
what review rules hold back for a person, and `approve` disposes of those items.  The rules
in force are the journalled ones: `rules accept` is the one, attributed step that adopts an
edited rules file, showing what changes.  See docs/retention.md.
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
    pl.add_argument(
        "--proposed", action="store_true", help="plan under the rules file instead of the journalled rules in force"
    )
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

    ru = rs.add_parser(
        "rules", parents=[parent], help="show the rules in force (as last journalled); accept a new file"
    )
    ru.set_defaults(func=run_rules)
    rus = ru.add_subparsers(dest="rules_command", metavar="ACTION")
    acc = rus.add_parser(
        "accept",
        parents=[parent],
        help="adopt the rules file as the rules in force (journalled with you), showing what changes",
    )
    acc.add_argument(
        "--allow-unmatched",
        action="store_true",
        help="accept a new compliance rule even though a value of it matches no archived message",
    )
    acc.set_defaults(func=run_accept)

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


def _rules_status(rules: dict[str, Any], proposed: bool) -> None:
    """Say which rules a plan used and how the rules file differs from the rules in force."""
    journalled = rules.get("journalled")
    if proposed:
        say(
            ("PROPOSED", "yellow"), f": planned under the rules file {rules['file']} (not in force; nothing journalled)"
        )
    elif journalled:
        say(f"rules in force: journalled {journalled['time']} by {journalled['actor']} (record {journalled['seq']})")
    else:
        say("rules in force: none journalled yet, so every message is kept")
    if not rules.get("file_differs"):
        return
    say(("note", "yellow"), f": the rules file {rules['file']} differs from the rules in force; `retention apply` "
        "refuses until it is accepted (`archiver retention rules accept`).", err=True)  # fmt: skip
    if rules.get("refused"):
        say(("note", "yellow"), f": accepting it would be refused: {rules['refused']}", err=True)
    for change in rules.get("pending_changes", []):
        say(f"  pending: {change}", err=True)


def _findings(findings: list[str]) -> None:
    for f in findings:
        say(("warning", "yellow"), f": {f}", err=True)


def run_plan(args: argparse.Namespace) -> int:
    now = _as_of(args.as_of) if args.as_of else system_clock()
    with open_archive(args) as archive:
        p = retention.plan(archive, now, actor=actor(), proposed=args.proposed)
    if wants_json(args):
        print_json(p.to_json())
        return 0
    say(f"Retention plan as of {now.isoformat()} (rules {p.rules_fingerprint[:12]})")
    _rules_status(p.rules, p.proposed)
    if not Path(p.rules_file).exists():
        say(f"note: there is no rules file at {p.rules_file}.")
    _findings(p.findings)
    c = p.counts
    say(
        f"{c['messages']} messages: {c['dispose']} to dispose, {c['review']} to review, "
        f"{c['hold']} under hold ({c['held_past_end']} past their retention), {c['keep']} kept "
        f"({c['waiting']} waiting for a matter to close)"
    )
    _print_items("To dispose", p.dispose, args.limit)
    _print_items("To review", p.review, args.limit)
    _print_items("Kept by holds although due", p.held, args.limit)
    say("Messages per rule: " + ", ".join(f"{name} {n}" for name, n in p.rule_counts.items()))
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
        f"{counts.get('held_past_end', 0)} are kept by holds although due, {counts.get('withheld', 0)} were withheld."
    )
    for rule, n in sorted(counts.get("by_rule", {}).items()):
        say(f"  {rule}: {n}")
    for w in cert.body.get("withheld", []):
        say(f"  withheld {w['id'][:16]}: {w['reason']}")
    if cert.body.get("stopped"):
        say(
            ("note", "yellow"),
            f": stopped early; {cert.body['stopped']['remaining']} due messages are left for the next run",
        )
    _findings(cert.body.get("findings", []))
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


def run_accept(args: argparse.Namespace) -> int:
    with open_archive(args) as archive:
        result = retention.accept_rules(archive, system_clock(), actor(), allow_unmatched=args.allow_unmatched)
    if wants_json(args):
        print_json(result.to_json())
        return 0
    if result.unchanged:
        say(f"The rules file is already the rules in force ({result.fingerprint[:12]}); nothing was journalled.")
        return 0
    say(f"Accepted the rules file as the rules in force ({result.fingerprint[:12]}), journalled with {actor()}:")
    for change in result.changes:
        say(f"  {change}")
    say("Effect now (before -> after):")
    for key in ("dispose", "review", "hold", "keep", "waiting"):
        say(f"  {key}: {result.before.get(key, 0)} -> {result.after.get(key, 0)}")
    _findings(result.findings)
    return 0


def run_rules(args: argparse.Namespace) -> int:
    with open_archive(args, need_keys=False) as archive:
        last = retention.last_journalled_rules(archive)
    if last is None:
        raise PolicyError(
            "No retention rules have been journalled yet; `archiver retention rules accept` adopts the rules file."
        )
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
