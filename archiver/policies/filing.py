"""Which client a matter belongs to, and which (client, matter) pairs a message carries.

A message has one client but may carry matters of several clients: the tagger takes the
client from the first matter or from the sender, so "Annual retention review 2024" is filed
under client ``acme`` with matters ``10234-0001`` (acme's) and ``20871-0003`` (globex's).
A closure of ``globex/20871-0003`` and a rule on ``{client: globex, matter: 20871-*}`` must
reach it, so the policies compare against every pair the message carries: its own client
with each of its matters, and each matter with the client the tagging configuration gives
that matter (a client's named ``matters``, else the longest ``matter_prefixes``, the same
precedence as archiver/normalize/tagging.py).

Pure: built from the tagging configuration, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable

from archiver.config import TaggingConfig


class MatterOwners:
    """The client the tagging configuration files a matter number under, if any."""

    def __init__(self, tagging: TaggingConfig) -> None:
        self._named: dict[str, str] = {}
        prefixes: list[tuple[str, str]] = []
        for client in tagging.clients:
            for matter in client.matters:
                self._named.setdefault(matter.strip().casefold(), client.name)
            prefixes.extend((p, client.name) for p in client.matter_prefixes if p)
        # longest prefix first; sorted() is stable, so config order breaks ties (as the tagger does).
        self._prefixes = sorted(prefixes, key=lambda item: -len(item[0]))
        self.clients = {c.name.casefold(): c.name for c in tagging.clients}

    def owner(self, matter: str) -> str | None:
        named = self._named.get(matter.strip().casefold())
        if named is not None:
            return named
        return next((client for prefix, client in self._prefixes if matter.startswith(prefix)), None)

    def filings(self, client: str, matters: Iterable[str]) -> tuple[tuple[str, str], ...]:
        """The (client, matter) pairs a message of ``client`` filed under ``matters`` carries."""
        out: dict[tuple[str, str], None] = {}
        for matter in matters:
            out[(client, matter)] = None
            owner = self.owner(matter)
            if owner is not None:
                out[(owner, matter)] = None
        return tuple(out)


def same(a: str, b: str) -> bool:
    """Client names and matter numbers compare case-insensitively everywhere in the policies."""
    return a.casefold() == b.casefold()
