"""Search-form filters -> terms of the CLI's query language.

The page's filter fields are a convenience over the query box: each becomes a term
(``client:"acme"``, ``after:2024-01-01``, ``has:attachment``) ANDed with the typed query.
The typed query is parsed on its own first, so wrapping it in parentheses cannot change its
meaning (``a) OR (b`` is refused rather than regrouped).  Filters narrow what the user asked
for; they are not an access control (walls are applied separately, by the index).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from archiver.index.query import parse_query

#: the query that matches every message (the query language has no empty query).
MATCH_ALL = "size>=0"


@dataclass(frozen=True, slots=True)
class SearchForm:
    q: str = ""
    client: str = ""
    matter: str = ""
    source: str = ""
    after: date | None = None
    before: date | None = None
    has_attachment: bool = False

    def filters(self) -> dict[str, str | bool]:
        """The non-empty filters, for the journal and for links."""
        out: dict[str, str | bool] = {}
        for key in ("client", "matter", "source"):
            value = getattr(self, key).strip()
            if value:
                out[key] = value
        if self.after:
            out["after"] = self.after.isoformat()
        if self.before:
            out["before"] = self.before.isoformat()
        if self.has_attachment:
            out["has_attachment"] = True
        return out


def _label(field: str, value: str) -> str:
    cleaned = " ".join(value.replace('"', " ").split())
    return f'{field}:"{cleaned}"'


def build_query(form: SearchForm) -> str:
    """The full query text; raises QueryError when the typed part is malformed."""
    parts: list[str] = []
    typed = form.q.strip()
    if typed:
        parse_query(typed)
        parts.append(f"({typed})")
    for key in ("client", "matter", "source"):
        value = getattr(form, key).strip()
        if value:
            parts.append(_label(key, value))
    if form.after:
        parts.append(f"after:{form.after.isoformat()}")
    if form.before:
        parts.append(f"before:{form.before.isoformat()}")
    if form.has_attachment:
        parts.append("has:attachment")
    query = " AND ".join(parts) if parts else MATCH_ALL
    parse_query(query)  # a filter value with no searchable characters is reported here
    return query
