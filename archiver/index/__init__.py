"""The full-text index: a tantivy index derived from the store, and the search query language.

* ``schema``    -- fields, tokenizers (whole words, case-insensitive, ASCII-folded, no stemming)
* ``query``     -- the query language: lexer, parser, AST, positioned QueryError
* ``translate`` -- AST -> tantivy queries
* ``store``     -- MessageIndex: add/delete/commit/search with a lazily held writer lock; the
                   HitSource protocol through which search describes its hits (only ids and
                   body beginnings are stored)
"""

from archiver.index.query import ParsedQuery, QuerySyntaxError, parse_query
from archiver.index.store import (
    HitSource,
    IndexSchemaError,
    IndexUnavailableError,
    MessageIndex,
    Snippet,
    highlight_html,
)

__all__ = [
    "HitSource",
    "IndexSchemaError",
    "IndexUnavailableError",
    "MessageIndex",
    "ParsedQuery",
    "QuerySyntaxError",
    "Snippet",
    "highlight_html",
    "parse_query",
]
