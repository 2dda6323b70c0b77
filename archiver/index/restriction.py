"""Which messages a search may return: the labels barred, and the only ones let in.

The web server builds one per user from their walls and allowed list
(``archiver.web.access.Scope.restriction``) and hands it to :class:`~archiver.index.store.MessageIndex`,
whose searches, counts, facets and id selections all apply it the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

Pair = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Labels:
    """Clients, matters (under any client) and (client, matter) pairs, lower-cased and sorted."""

    clients: tuple[str, ...] = ()
    matters: tuple[str, ...] = ()
    pairs: tuple[Pair, ...] = ()

    def matches(self, client: str, matters: set[str]) -> bool:
        """Whether a message filed under ``client`` with ``matters`` (both lower-cased) is named here."""
        return (
            client in self.clients
            or not matters.isdisjoint(self.matters)
            or any((client, m) in self.pairs for m in matters)
        )

    @property
    def empty(self) -> bool:
        return not (self.clients or self.matters or self.pairs)


#: names no message.
NO_LABELS = Labels()


@dataclass(frozen=True, slots=True)
class Restriction:
    """Never a message ``exclude`` names; when ``only`` is not None, nothing but those it names.

    An ``only`` that names nothing lets nothing in (a viewer with an empty allowed list).
    """

    exclude: Labels = NO_LABELS
    only: Labels | None = None


#: no restriction: every message.
UNRESTRICTED = Restriction()
