"""Translate a parsed query (query.py) into tantivy Query objects over our schema (schema.py).

Rules, matching what schema.py indexes:

* A word is analyzed like the text it is looked up in (lower-case, ASCII-folded, no stemming);
  if it splits into several words (``foo-bar``) it becomes a phrase, as a quoted phrase does.
* Bare terms search every text field; a bare term containing ``@`` or ``.`` is also tried as a
  whole address or domain.
* ``from:`` and friends (query.is_address_value): a value with ``@`` is an exact address
  (``@example.com`` a domain); a value with a dot and no space is a domain (or a subdomain of
  it) or a whole local part (``jeff.skilling`` matches jeff.skilling@anywhere), never words of
  display names (a sender whose display name is "support@example.com via Lists" is not from
  example.com); any other value is display-name/local-part words.
* Label fields (client, matter, source, folder, message-id, id) compare the whole value,
  case-insensitively; ``*`` makes it a prefix.
* ``NOT x`` alone means "every message except x" (tantivy matches nothing for a query made of
  exclusions only, so an all-documents clause is added).
"""

from __future__ import annotations

from typing import Literal

import tantivy

from archiver.index import schema as S
from archiver.index.query import (
    And,
    DateBound,
    HasAttachment,
    Node,
    Not,
    Or,
    ParsedQuery,
    SizeCompare,
    Term,
    is_address_value,
)

Occur = tantivy.Occur
_ROLES = frozenset(S.ADDRESS_ROLES)
def regex_literal(text: str) -> str:
    """Escape text for tantivy's regex syntax: every non-alphanumeric char as ``\\x{..}``."""
    return "".join(ch if ch.isalnum() else f"\\x{{{ord(ch):x}}}" for ch in text)


class Translator:
    """Builds tantivy queries for one schema; reusable across queries."""

    def __init__(self, schema: tantivy.Schema) -> None:
        self.schema = schema
        self.analyzer = S.word_analyzer()

    def translate(self, parsed: ParsedQuery) -> tantivy.Query:
        return _Run(self, parsed).node(parsed.root)

    def body_prefixes(self, parsed: ParsedQuery) -> tuple[str, ...]:
        """The analyzed word prefixes a query looks for in the body, for highlighting snippets.

        tantivy's snippet generator highlights only the terms a query names, and a prefix
        query (a regex, or a phrase ending in a prefix) names none for its prefix: the caller
        finds the words each prefix expands to in the stored text and highlights those.
        Prefixes under NOT are left out, as are those of other fields (the snippet is the
        body's).  For ``contract-dr*`` the prefix is ``dr``; tantivy highlights ``contract``.
        """
        out: list[str] = []

        def walk(n: Node, negated: bool) -> None:
            if isinstance(n, And | Or):
                for child in n.children:
                    walk(child, negated)
            elif isinstance(n, Not):
                walk(n.child, not negated)
            elif isinstance(n, Term) and n.kind == "prefix" and n.field in (None, "body") and not negated:
                words = self.analyzer.analyze(n.text)
                if words and words[-1] not in out:
                    out.append(words[-1])

        walk(parsed.root, False)
        return tuple(out)


class _Run:
    """One translation: keeps the parsed text for positioned errors."""

    def __init__(self, tr: Translator, parsed: ParsedQuery) -> None:
        self.schema = tr.schema
        self.analyzer = tr.analyzer
        self.parsed = parsed

    def node(self, n: Node) -> tantivy.Query:
        if isinstance(n, And):
            clauses: list[tuple[tantivy.Occur, tantivy.Query]] = []
            for child in n.children:
                if isinstance(child, Not):
                    clauses.append((Occur.MustNot, self.node(child.child)))
                else:
                    clauses.append((Occur.Must, self.node(child)))
            if all(occur == Occur.MustNot for occur, _ in clauses):
                clauses.insert(0, (Occur.Must, tantivy.Query.all_query()))
            return tantivy.Query.boolean_query(clauses)
        if isinstance(n, Or):
            return tantivy.Query.boolean_query([(Occur.Should, self.node(c)) for c in n.children])
        if isinstance(n, Not):
            return tantivy.Query.boolean_query(
                [(Occur.Must, tantivy.Query.all_query()), (Occur.MustNot, self.node(n.child))]
            )
        if isinstance(n, DateBound):
            if n.op == "after":
                return tantivy.Query.range_query(
                    self.schema, S.F_DATE, tantivy.FieldType.Date, lower_bound=n.when, include_lower=True
                )
            return tantivy.Query.range_query(
                self.schema, S.F_DATE, tantivy.FieldType.Date, upper_bound=n.when, include_upper=False
            )
        if isinstance(n, HasAttachment):
            return tantivy.Query.term_query(self.schema, S.F_HAS_ATT, True, index_option="basic")
        if isinstance(n, SizeCompare):
            lower = n.value if n.op in (">", ">=") else None
            upper = n.value if n.op in ("<", "<=") else None
            return tantivy.Query.range_query(
                self.schema,
                S.F_SIZE,
                tantivy.FieldType.Unsigned,
                lower_bound=lower,
                upper_bound=upper,
                include_lower=n.op != ">",
                include_upper=n.op != "<",
            )
        return self.term(n)

    # --- terms -------------------------------------------------------------------------------

    def term(self, t: Term) -> tantivy.Query:
        if t.field is None:
            parts = [q for f in S.WORD_FIELDS if (q := self.words(f, t, required=False)) is not None]
            if "@" in t.text or "." in t.text:
                parts.extend(self.address(S.addr_field(r), t) for r in S.ADDRESS_ROLES)
            if not parts:
                raise self.no_words(t)
            return self.any_of(parts)
        if t.field in _ROLES:
            return self.role(t.field, t)
        if t.field in ("subject", "body"):
            q = self.words(S.F_SUBJECT if t.field == "subject" else S.F_BODY, t)
            assert q is not None
            return q
        if t.field == "attachment":
            name = self.words(S.F_ATT_NAME, t)
            text = self.words(S.F_ATT_TEXT, t)
            assert name is not None and text is not None
            return self.any_of([name, text])
        return self.label(S.LABEL_QUERY_FIELDS[t.field], t)

    def role(self, role: str, t: Term) -> tantivy.Query:
        value = t.text.strip()
        if not is_address_value(value):
            names = self.words(S.name_field(role), t)
            assert names is not None
            return names
        addr = S.addr_field(role)
        # The address field holds whole addresses and their domains (schema.address_terms), so
        # this one term or prefix is an exact address, a domain, or (for a prefix) also
        # addresses whose local part starts with the value.
        exact = self.address(addr, t)
        if "@" in value or t.kind == "prefix":
            return exact
        # A dotted word is a domain or a whole local part: "jeff.skilling" is the sender of
        # jeff.skilling@enron.com, i.e. of every address term starting "jeff.skilling@".
        # A one-word phrase prefix is that: tantivy runs it as a range of the term
        # dictionary, where a regex_query would first compile "….*" (~0.2-0.4 ms, as much as
        # the rest of a domain search).
        local = tantivy.Query.phrase_prefix_query(self.schema, addr, [value.lower() + "@"])
        return self.any_of([exact, local])

    def address(self, field: str, t: Term) -> tantivy.Query:
        value = t.text.strip().lower()
        if value.startswith("@"):
            value = value[1:]
        if not value:
            raise self.no_words(t)
        return self.whole_value(field, value, t)

    def label(self, field: str, t: Term) -> tantivy.Query:
        value = t.text.strip()
        if field == S.F_MESSAGE_ID:
            value = S.normalize_message_id(value)
        value = value.lower()
        if not value:
            raise self.no_words(t)
        return self.whole_value(field, value, t)

    def whole_value(self, field: str, value: str, t: Term) -> tantivy.Query:
        """``value`` as one untokenized term of ``field``, or as a prefix of one."""
        if t.kind == "prefix":
            return tantivy.Query.regex_query(self.schema, field, regex_literal(value) + ".*")
        return tantivy.Query.term_query(self.schema, field, value, index_option="basic")

    def words(self, field: str, t: Term, *, required: bool = True) -> tantivy.Query | None:
        """The analyzed words of ``t`` in a tokenized field: term, phrase or prefix."""
        tokens = [(tok.position, tok.text) for tok in self.analyzer.pre_tokenize(t.text).tokens]
        if not tokens:
            if required:
                raise self.no_words(t)
            return None
        if t.kind == "prefix":
            if len(tokens) == 1:
                return tantivy.Query.regex_query(self.schema, field, regex_literal(tokens[0][1]) + ".*")
            return tantivy.Query.phrase_prefix_query(self.schema, field, _relative(tokens))
        if len(tokens) == 1:
            return tantivy.Query.term_query(self.schema, field, tokens[0][1], index_option="freq")
        return tantivy.Query.phrase_query(self.schema, field, _relative(tokens))

    @staticmethod
    def any_of(parts: list[tantivy.Query]) -> tantivy.Query:
        if len(parts) == 1:
            return parts[0]
        return tantivy.Query.boolean_query([(Occur.Should, q) for q in parts])

    def no_words(self, t: Term) -> Exception:
        what: Literal["phrase", "word"] = "phrase" if t.kind == "phrase" else "word"
        if any(ch.isalnum() for ch in t.text):
            why = f"its words are longer than {S.MAX_WORD_CHARS} characters, and such words are not indexed"
        else:
            why = "it has no letters or digits to search for"
        return self.parsed.error(f"The {what} '{t.text}' at column {t.pos + 1} cannot be searched: {why}", t.pos)


def _relative(tokens: list[tuple[int, str]]) -> list[tuple[int, str] | str]:
    """Phrase words with their positions relative to the first (gaps kept for dropped words)."""
    first = tokens[0][0]
    return [(pos - first, text) for pos, text in tokens]
