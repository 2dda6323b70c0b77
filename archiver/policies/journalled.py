"""The rules in force are the journalled ones; the rules file is only a proposal until accepted.

Anyone able to write ``retention_rules.yaml`` could otherwise change policy: the daemon's
nightly sweep used to adopt whatever the file said, journal it as "daemon" and dispose of
mail under it in the same run, with no one having looked.  So:

* ``plan``, ``review``, ``apply``, ``approve`` and the daemon decide under the rules last
  journalled (none journalled: no rules, every message kept);
* ``apply`` and ``approve`` refuse while the file differs from them (by the fingerprint of
  the canonical form, so comments and layout do not count), naming both fingerprints;
  ``plan`` and ``review`` say so, and ``plan --proposed`` shows what the file would do
  without journalling anything;
* ``archiver retention rules accept`` is the one step that adopts a file: it shows every
  change and its effect on the plan, refuses a change that would weaken a compliance rule,
  and journals the rules with the person who accepted them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archiver.errors import PolicyError
from archiver.policies.rules import RuleSet, check_change, load_rules, parse_rules

if TYPE_CHECKING:
    from archiver.archive import Archive


def rules_path(archive: Archive) -> Path:
    return archive.cfg.retention.rules_file


def last_journalled_rules(archive: Archive) -> tuple[RuleSet, dict[str, Any]] | None:
    """The rules as last journalled (and when, by whom), or None before the first accept."""
    row = archive.repo.catalog.conn.execute(
        "SELECT rules, fingerprint, time, actor, seq FROM retention_rules ORDER BY seq DESC LIMIT 1"
    ).fetchone()
    if row is None:
        return None
    info = {"fingerprint": row[1], "time": row[2], "actor": row[3], "seq": row[4]}
    return parse_rules(json.loads(row[0]), f"journal record {row[4]}", journalled=True), info


@dataclass
class RulesState:
    """The rules in force (journalled) and the rules file, and how they differ."""

    in_force: RuleSet
    info: dict[str, Any] | None
    file: Path
    #: the file's rules, or None when it does not validate (``file_error`` says why).
    file_rules: RuleSet | None
    file_error: str | None = None

    @property
    def differs(self) -> bool:
        return self.file_rules is None or self.file_rules.fingerprint != self.in_force.fingerprint

    def pending(self) -> tuple[list[str], str | None]:
        """The file's changes to the rules in force, and why accepting them would be refused (or None)."""
        if self.file_rules is None:
            return [], self.file_error
        if not self.differs:
            return [], None
        try:
            return check_change(self.in_force, self.file_rules), None
        except PolicyError as exc:
            return [], str(exc)

    def to_json(self) -> dict[str, Any]:
        changes, refused = self.pending()
        return {
            "in_force": self.in_force.fingerprint,
            "journalled": self.info,
            "file": str(self.file),
            "file_fingerprint": self.file_rules.fingerprint if self.file_rules else None,
            "file_differs": self.differs,
            "pending_changes": changes,
            "refused": refused,
        }

    def refusal(self, doing: str) -> PolicyError:
        """Why ``doing`` (apply, approve) will not run while the file differs from the rules in force."""
        theirs = self.file_rules.fingerprint[:12] if self.file_rules else "invalid"
        return PolicyError(
            f"The rules file {self.file} ({theirs}) differs from the journalled rules in force "
            f"({self.in_force.fingerprint[:12]}), so nothing was {doing}. Review it with `archiver retention plan "
            "--proposed` and adopt it with `archiver retention rules accept`, or restore the file."
        )


def rules_state(archive: Archive) -> RulesState:
    path = rules_path(archive)
    last = last_journalled_rules(archive)
    in_force, info = last if last is not None else (RuleSet(), None)
    try:
        return RulesState(in_force=in_force, info=info, file=path, file_rules=load_rules(path))
    except PolicyError as exc:
        return RulesState(in_force=in_force, info=info, file=path, file_rules=None, file_error=str(exc))


def rules_in_force(archive: Archive) -> RuleSet:
    """What retention decides under now: the journalled rules (for the web's status, too)."""
    last = last_journalled_rules(archive)
    return last[0] if last is not None else RuleSet()


def require_unchanged(archive: Archive, doing: str) -> RulesState:
    """The rules state, or PolicyError when the file differs from the rules in force."""
    state = rules_state(archive)
    if state.differs:
        raise state.refusal(doing)
    return state


def journal_rules(archive: Archive, rules: RuleSet, changes: list[str], *, actor: str, effect: dict[str, Any]) -> None:
    """Journal ``rules`` as the rules in force, with who accepted them, what changed and its effect."""
    with archive.repo.transaction(actor) as tx:
        tx.event(
            "retention_rules",
            {
                "fingerprint": rules.fingerprint,
                "file": str(rules_path(archive)),
                "changes": changes,
                "effect": effect,
                "rules": rules.canonical(),
            },
        )
