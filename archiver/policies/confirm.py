"""The last check before data keys are destroyed: re-derive from each message what the plan took on trust.

A retention plan decides from the catalog's metadata (dates, senders and recipients) and from
the index (query holds, query rules).  Both are derived data that anyone able to write the
archive folder can edit without the passphrase (docs/format.md 14.2), and a deleted hold or an
edited date must not turn into a signed, legitimate-looking disposal.  The journal-derived
tables (tags, copies, holds, earlier disposals) are checked against the signed journal by
``verify`` before every apply (apply.py); what the journal cannot vouch for is checked here,
against the messages themselves:

* each message due is decrypted (authenticated against its id) and parsed again;
* its sender, recipients and (unless it is the received-time fallback) date must equal the
  catalog's: a custodian hold or a date rule decided on other values would be wrong;
* a fresh index of those messages alone (in memory) must match every standing query hold
  and query rule exactly as the archive's index did.  A difference withholds the message
  whichever way it goes; it can also come from the index's own limits (a multi-word prefix
  expands to at most 50 words per index segment) or from attachment text extraction that
  ran out of time once and not the other: both keep mail, never dispose of it.

A message failing any of these is kept, not disposed, and named with the reason; `reindex`
rewrites the metadata and the index from the store, after which the next run decides afresh.
The cost is one decryption and parse per message disposed of, spread over the workers.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from archiver.index.store import MessageIndex
from archiver.model import ParsedMessage
from archiver.store.catalog import metadata_differences

if TYPE_CHECKING:
    from archiver.archive import Archive
    from archiver.workers import Workers

#: messages decrypted, parsed and indexed together.
CHUNK = 500
#: the ``messages`` columns a disposal decision may rest on (custodian holds, date rules).
_DECIDING_FIELDS = ("from_addr", "to_addrs", "cc_addrs", "bcc_addrs", "date")


@dataclass
class Confirmation:
    """The ids still due, and those kept with the reason (what the message said otherwise)."""

    due: list[str] = field(default_factory=list)
    kept: list[tuple[str, str]] = field(default_factory=list)


def confirm(
    archive: Archive, ids: Sequence[str], indexed: Mapping[str, Collection[str]], workers: Workers
) -> Confirmation:
    """Which of ``ids`` (all due for disposal) the messages themselves confirm; see the module docstring.

    ``indexed`` is what the archive's index answered to each hold and rule query when the
    plan was made (apply.evaluate's ``answers``): the same queries are run on the messages alone.
    ``workers`` decrypt and parse them (the disposal run's, kept for all its batches).
    """
    out = Confirmation()
    if not ids:
        return out
    queries = list(indexed)
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        parsed = {oid: p for oid, p, _err in archive.reparse(chunk, workers) if p is not None}
        fresh = _fresh_matches(archive, parsed, queries)
        for oid in chunk:
            p = parsed.get(oid)
            why = "it could not be decrypted and parsed" if p is None else _difference(archive, oid, p)
            if why is None:
                why = next(
                    (
                        f"the index and the message itself disagree on the query {q!r}"
                        for q in queries
                        if (oid in fresh[q]) != (oid in indexed[q])
                    ),
                    None,
                )
            if why is None:
                out.due.append(oid)
            else:
                out.kept.append((oid, why))
    return out


def _difference(archive: Archive, oid: str, p: ParsedMessage) -> str | None:
    """What the catalog says of this message that a fresh parse does not (None: nothing)."""
    stored = archive.repo.catalog.message(oid)
    if stored is None:
        return "the catalog has no metadata for it"
    wrong = metadata_differences(stored, p, _DECIDING_FIELDS)
    if not wrong:
        return None
    return f"the catalog's {', '.join(wrong)} differ from the message itself (`archiver reindex` rewrites them)"


def _fresh_matches(
    archive: Archive, parsed: Mapping[str, ParsedMessage], queries: Sequence[str]
) -> dict[str, set[str]]:
    """What each query matches in an index of just these freshly parsed messages.

    In memory: these are the words of messages about to be shredded, which must not be left in
    a temporary folder by a crash.
    """
    if not queries:
        return {}
    index = MessageIndex.in_memory()
    try:
        index.add(archive.docs_for(list(parsed.items())))
        index.commit()
        index.reload()
        return {q: set(index.matching_ids(q)) for q in queries}
    finally:
        index.close()
