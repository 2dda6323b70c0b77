"""Filing a message under a client and matters, by configured rules.

``Tagger`` is pure (no I/O): the pipeline looks up the tags of a message's thread parents
(In-Reply-To / References) in the catalog and passes them in, so retagging the archive
with new rules is a replay of the same function.  ``fingerprint`` identifies the rules (and
this module's rule semantics) so the journal can say which rules produced a tag.

Precedence, most specific first:

1. the explicit header (``CLIENT/MATTER`` or ``MATTER``, several matters comma-separated);
2. matter numbers found by ``matter_patterns`` in the subject, then the body;
3. the client of a matter: a client's named ``matters``, else its ``matter_prefixes``
   (longest prefix wins), else the client owning an address of the message: the sender's
   client first, else the first client in config order that owns a recipient;
   exact addresses win over domains, and a deeper subdomain over its parent;
4. thread inheritance: a message with no matter of its own takes its parents' matters, and
   their client if it has none;
5. otherwise the message is ``unfiled``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence

from archiver.config import TaggingConfig
from archiver.model import UNFILED, Address, ParsedMessage, Tags

__all__ = ["Tagger"]

#: bumped whenever the meaning of the rules changes, so the fingerprint changes with it.
_RULES_VERSION = 1
#: the body is searched for matter numbers up to this many characters (a quoted thread
#: carries its matter number near the top; a 50 MB body is not worth a full scan per message).
_MAX_BODY_SCAN = 2_000_000
_HEADER_SPLIT = re.compile(r"[,;]")


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(i for i in items if i))


class Tagger:
    """Applies a ``TaggingConfig`` to parsed messages."""

    def __init__(self, cfg: TaggingConfig) -> None:
        self._cfg = cfg
        self._patterns = [re.compile(p) for p in cfg.matter_patterns]
        self._client_names = {c.name.lower(): c.name for c in reversed(cfg.clients)}
        self._rank = {c.name: i for i, c in reversed(list(enumerate(cfg.clients)))}
        # first client in config order wins a duplicated address, domain, prefix or matter.
        self._addresses: dict[str, str] = {}
        self._domains: dict[str, str] = {}
        self._known_matters: dict[str, str] = {}
        prefixes: list[tuple[str, str]] = []
        for client in cfg.clients:
            for addr in client.addresses:
                self._addresses.setdefault(addr, client.name)
            for domain in client.domains:
                self._domains.setdefault(domain.strip("."), client.name)
            for matter in client.matters:
                self._known_matters.setdefault(matter.strip().lower(), client.name)
            prefixes.extend((p, client.name) for p in client.matter_prefixes if p)
        # longest prefix first; sorted() is stable, so config order breaks ties.
        self._prefixes = sorted(prefixes, key=lambda item: -len(item[0]))

    def fingerprint(self) -> str:
        """A stable sha256 hex of the rules, recorded in the journal when the archive is retagged."""
        rules = {"version": _RULES_VERSION, "tagging": self._cfg.model_dump(mode="json")}
        canonical = json.dumps(rules, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(canonical.encode("ascii")).hexdigest()

    # --- matters --------------------------------------------------------------------------------

    def _find(self, text: str) -> list[str]:
        found: list[str] = []
        for pattern in self._patterns:
            group: int | str = "matter" if "matter" in pattern.groupindex else (1 if pattern.groups else 0)
            for match in pattern.finditer(text):
                value = match.group(group)
                if value:
                    found.append(value.strip())
        return found

    def _header(self, value: str) -> tuple[str, list[str]]:
        """(client, matters) from an explicit header; client is "" when only matters are given."""
        client = ""
        rest = value.strip()
        if "/" in rest:
            head, _, rest = rest.partition("/")
            head = " ".join(head.split())
            client = self._client_names.get(head.lower(), head)
        return client, [m.strip() for m in _HEADER_SPLIT.split(rest) if m.strip()]

    # --- clients --------------------------------------------------------------------------------

    def _client_of_matter(self, matter: str) -> tuple[str, str] | None:
        known = self._known_matters.get(matter.lower())
        if known is not None:
            return known, f"matter:{matter}"
        for prefix, client in self._prefixes:
            if matter.startswith(prefix):
                return client, f"prefix:{prefix}"
        return None

    def _client_of_address(self, address: Address) -> tuple[str, str] | None:
        addr = address.addr
        client = self._addresses.get(addr)
        if client is not None:
            return client, f"address:{addr}"
        if "@" not in addr:
            return None
        domain = address.domain.strip(".")
        while domain:
            client = self._domains.get(domain)
            if client is not None:
                return client, f"domain:{domain}"
            domain = domain.partition(".")[2]
        return None

    def _client_by_addresses(self, msg: ParsedMessage) -> tuple[str, str] | None:
        for sender in msg.from_:
            hit = self._client_of_address(sender)
            if hit is not None:
                return hit
        best: tuple[str, str] | None = None
        for recipient in (*msg.to, *msg.cc, *msg.bcc):
            hit = self._client_of_address(recipient)
            if hit is not None and (best is None or self._rank[hit[0]] < self._rank[best[0]]):
                best = hit
        return best

    # --- the rules ------------------------------------------------------------------------------

    def tag(self, msg: ParsedMessage, *, parent_tags: Sequence[Tags] = ()) -> Tags:
        """Tags for ``msg``; ``parent_tags`` are the tags of its thread parents, nearest first."""
        reasons: list[str] = []
        client = ""
        matters: list[str] = []
        if msg.explicit_matter.strip():
            client, matters = self._header(msg.explicit_matter)
            reasons.append("header")
        else:
            in_subject = self._find(msg.subject)
            if in_subject:
                matters.extend(in_subject)
                reasons.append("pattern:subject")
            if self._cfg.search_body and msg.body_text:
                in_body = [m for m in self._find(msg.body_text[:_MAX_BODY_SCAN]) if m not in in_subject]
                if in_body:
                    matters.extend(in_body)
                    reasons.append("pattern:body")
        own_matters = _unique(matters)
        if not client:
            for matter in own_matters:
                hit = self._client_of_matter(matter)
                if hit is not None:
                    client, reason = hit
                    reasons.append(reason)
                    break
        if not client:
            hit = self._client_by_addresses(msg)
            if hit is not None:
                client, reason = hit
                reasons.append(reason)
        own = Tags(client=client or UNFILED, matters=own_matters, reasons=_unique(reasons))
        return self.inherit(own, parent_tags)

    def inherit(self, own: Tags, parent_tags: Sequence[Tags]) -> Tags:
        """Thread inheritance (rule 4) applied to a message's own tags (``tag`` without parents).

        Separate so that the writer can finish tags its workers computed without the
        catalog, and re-decide them when a parent arrives later in the same import.
        """
        if not self._cfg.thread_inheritance or own.matters or not parent_tags:
            return own
        inherited = _unique(m for parent in parent_tags for m in parent.matters)
        parent_client = next((p.client for p in parent_tags if p.client and p.client != UNFILED), "")
        client = own.client if own.client != UNFILED else parent_client
        reasons = own.reasons
        if inherited or (own.client == UNFILED and parent_client):
            reasons = _unique((*reasons, "thread"))
        return Tags(client=client or UNFILED, matters=inherited, reasons=reasons)
