"""The search query language: a lexer and recursive-descent parser producing a small AST.

We parse ourselves rather than hand user text to tantivy's query parser so that every
mistake gets a sentence, a column and a caret, and so that the language stays ours when
tantivy's changes.  Translation of the AST to tantivy queries lives in ``translate.py``.

Grammar (keywords are upper-case; lower-case ``and`` is an ordinary word)::

    query   := or EOF
    or      := and ( "OR" and )*
    and     := unary ( ["AND"] unary )*          adjacent terms are ANDed
    unary   := "NOT" unary | "-" unary | primary
    primary := "(" or ")" | FIELD ":" value | FIELD ":" "(" or ")" | size-cmp | value
    value   := WORD | WORD "*" | '"' phrase '"'

Fields: from to cc bcc subject body attachment client matter source folder id
message-id (alias msgid) after before has; and ``size>N`` / ``size<N`` (also >=, <=;
N may end in k, m or g).  ``after:`` is inclusive and ``before:`` exclusive, both at UTC
midnight of a YYYY-MM-DD date.

Limits, so that no query can crash the parser or the translator: parentheses and NOT/-
nest at most MAX_DEPTH levels (each level is a recursive call, here and in translate.py),
and a size must fit the index's unsigned 64-bit field (MAX_SIZE).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Literal

from archiver.errors import QueryError
from archiver.index.schema import ADDRESS_ROLES, LABEL_QUERY_FIELDS, word_analyzer

#: fields a word or phrase can be scoped to; aliases map to these.
TEXT_FIELDS = (
    "from",
    "to",
    "cc",
    "bcc",
    "subject",
    "body",
    "attachment",
    "client",
    "matter",
    "source",
    "folder",
    "id",
    "message-id",
)
SPECIAL_FIELDS = ("after", "before", "has")
FIELD_ALIASES = {"msgid": "message-id", "messageid": "message-id", "attachments": "attachment"}
KNOWN_FIELDS = (*TEXT_FIELDS, *SPECIAL_FIELDS, "size")
HAS_VALUES = ("attachment", "attachments")
#: shortest useful prefix before '*'; shorter ones expand to most of the dictionary.  For words
#: it counts the letters and digits the index sees (``a-*`` is the prefix ``a``).
MIN_PREFIX = 2
MIN_ID_PREFIX = 8
#: deepest nesting of parentheses and NOT/- (a legitimate query needs a handful; Python's
#: recursion limit would be hit in the hundreds).
MAX_DEPTH = 50
#: the largest size: the index stores sizes as unsigned 64-bit integers.
MAX_SIZE = 2**64 - 1
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "m": 1024**2, "mb": 1024**2, "g": 1024**3, "gb": 1024**3}


#: the index stores dates as nanoseconds since 1970 in 64 bits: 1677-09-22 .. 2262-04-11.
_FIRST_DAY = date(1677, 9, 22)
_LAST_DAY = date(2262, 4, 10)


class QuerySyntaxError(QueryError):
    """The query is malformed; ``column`` (1-based) says where."""

    def __init__(self, message: str, query: str, pos: int) -> None:
        self.column = pos + 1
        self.query = query
        shown = query.replace("\n", " ").replace("\t", " ")
        super().__init__(f"{message}\n  {shown}\n  {' ' * pos}^")


def is_address_value(text: str) -> bool:
    """Whether a from:/to:/cc:/bcc: value names an address or domain rather than display-name words.

    It does when it has an '@' or a '.' and no space: ``jeff@example.com``, ``@example.com``,
    ``example.com``, ``jeff.skilling``.  Such a value is looked up in the address fields only:
    matched against the words of display names, ``from:example.com`` found a message from
    ``"support@example.com via Lists" <noreply@lists.other.org>`` (and ``NOT from:example.com``
    dropped it).  Display-name words are searched by values without '.' and '@', or by a
    quoted phrase with a space (``from:"acme example"``).
    """
    value = text.strip()
    return ("@" in value or "." in value) and not any(ch.isspace() for ch in value)


# --- AST -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Term:
    """A word, phrase or prefix; ``field`` None means every text field."""

    field: str | None
    text: str
    kind: Literal["word", "phrase", "prefix"]
    pos: int


@dataclass(frozen=True, slots=True)
class DateBound:
    """``after:`` (inclusive) or ``before:`` (exclusive), at UTC midnight."""

    op: Literal["after", "before"]
    when: datetime
    pos: int


@dataclass(frozen=True, slots=True)
class HasAttachment:
    pos: int


@dataclass(frozen=True, slots=True)
class SizeCompare:
    op: Literal["<", "<=", ">", ">="]
    value: int
    pos: int


@dataclass(frozen=True, slots=True)
class And:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Not:
    child: Node


Node = Term | DateBound | HasAttachment | SizeCompare | And | Or | Not


@dataclass(frozen=True, slots=True)
class ParsedQuery:
    """The AST plus the text it came from (translation errors point into it too)."""

    text: str
    root: Node

    def error(self, message: str, pos: int) -> QuerySyntaxError:
        return QuerySyntaxError(message, self.text, pos)


# --- lexer -----------------------------------------------------------------------------------

TokKind = Literal["(", ")", "AND", "OR", "NOT", "-", "WORD", "PHRASE", "FIELD", "SIZE", "EOF"]


@dataclass(frozen=True, slots=True)
class Token:
    kind: TokKind
    pos: int
    text: str = ""
    #: for FIELD: the field name as typed; for SIZE: the comparator.
    name: str = ""


_FIELD_RE = re.compile(r"([A-Za-z][A-Za-z_-]*):")
_SIZE_RE = re.compile(r"size(<=|>=|<|>)(.*)", re.IGNORECASE)
_WORD_STOP = set(' \t\r\n\f\v()"')


def _lex(text: str) -> list[Token]:
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c in "()":
            tokens.append(Token(c, i))  # type: ignore[arg-type]
            i += 1
        elif c == '"':
            phrase, i = _lex_phrase(text, i)
            tokens.append(phrase)
        elif c == "-":
            if i + 1 >= n or text[i + 1].isspace() or text[i + 1] == ")":
                raise QuerySyntaxError(
                    f"'-' at column {i + 1} must be directly followed by the term to exclude, e.g. -draft",
                    text,
                    i,
                )
            tokens.append(Token("-", i))
            i += 1
        else:
            start = i
            while i < n and text[i] not in _WORD_STOP:
                i += 1
            word = text[start:i]
            if word in ("AND", "OR", "NOT"):
                tokens.append(Token(word, start))  # type: ignore[arg-type]
                continue
            size = _SIZE_RE.fullmatch(word)
            if size:
                tokens.append(Token("SIZE", start, size.group(2), size.group(1)))
                continue
            field = _FIELD_RE.match(word)
            if field:
                rest = word[field.end() :]
                tokens.append(Token("FIELD", start, rest, field.group(1)))
                if not rest and i < n and text[i] == '"':
                    phrase, i = _lex_phrase(text, i)
                    tokens.append(phrase)
                continue
            tokens.append(Token("WORD", start, word))
    tokens.append(Token("EOF", n))
    return tokens


def _lex_phrase(text: str, start: int) -> tuple[Token, int]:
    """A double-quoted phrase; backslash escapes a quote or a backslash."""
    out: list[str] = []
    i = start + 1
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text) and text[i + 1] in '"\\':
            out.append(text[i + 1])
            i += 2
        elif c == '"':
            return Token("PHRASE", start, "".join(out)), i + 1
        else:
            out.append(c)
            i += 1
    raise QuerySyntaxError(f"Unclosed quote at column {start + 1}: add the closing '\"'", text, start)


# --- parser ----------------------------------------------------------------------------------


def parse_query(text: str) -> ParsedQuery:
    """Parse ``text`` or raise QuerySyntaxError (an archiver.errors.QueryError)."""
    if not text.strip():
        raise QuerySyntaxError(
            "The query is empty: type words to look for, e.g. contract from:jeff@example.com", text, 0
        )
    return ParsedQuery(text, _Parser(text, _lex(text)).parse())


class _Parser:
    def __init__(self, text: str, tokens: list[Token]) -> None:
        self.text = text
        self.tokens = tokens
        self.i = 0
        #: parentheses and NOT/- currently open (see MAX_DEPTH).
        self.depth = 0

    def error(self, message: str, pos: int) -> QuerySyntaxError:
        return QuerySyntaxError(message, self.text, pos)

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def at(self, kind: TokKind) -> bool:
        """Whether the current token is ``kind`` (a call, so mypy does not over-narrow)."""
        return self.tokens[self.i].kind == kind

    def take(self) -> Token:
        t = self.tokens[self.i]
        self.i += 1
        return t

    def parse(self) -> Node:
        first = self.tok
        if first.kind in ("AND", "OR"):
            raise self.error(f"'{first.kind}' at column {first.pos + 1} needs a term before it", first.pos)
        node = self.parse_or(None)
        t = self.tok
        if t.kind == ")":
            raise self.error(f"Unmatched ')' at column {t.pos + 1}: remove it or add a '('", t.pos)
        if t.kind != "EOF":  # pragma: no cover - every other token starts a term
            raise self.error(f"Unexpected '{t.text or t.kind}' at column {t.pos + 1}", t.pos)
        return node

    def parse_or(self, field: str | None) -> Node:
        children = [self.parse_and(field)]
        while self.tok.kind == "OR":
            self.operand_after(self.take())
            children.append(self.parse_and(field))
        return children[0] if len(children) == 1 else Or(tuple(children))

    def parse_and(self, field: str | None) -> Node:
        children = [self.parse_unary(field)]
        while True:
            t = self.tok
            if t.kind == "AND":
                self.operand_after(self.take())
            elif t.kind in ("EOF", ")", "OR"):
                break
            children.append(self.parse_unary(field))
        return children[0] if len(children) == 1 else And(tuple(children))

    def operand_after(self, op: Token) -> None:
        """Binary operators and NOT need a term after them."""
        nxt = self.tok
        if nxt.kind in ("EOF", ")", "AND", "OR"):
            found = "but the query ends there" if nxt.kind == "EOF" else f"but found '{nxt.kind}'"
            raise self.error(f"'{op.kind}' at column {op.pos + 1} needs a term after it, {found}", op.pos)

    def nest(self, t: Token) -> None:
        """Open one more level of parentheses or NOT/-; beyond MAX_DEPTH it is an error, not a RecursionError."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(
                f"The query nests too deeply at column {t.pos + 1}: at most {MAX_DEPTH} levels of "
                "parentheses and NOT/- are allowed",
                t.pos,
            )

    def parse_unary(self, field: str | None) -> Node:
        t = self.tok
        if t.kind in ("NOT", "-"):
            self.take()
            self.operand_after(t)
            self.nest(t)
            node = Not(self.parse_unary(field))
            self.depth -= 1
            return node
        return self.parse_primary(field)

    def parse_primary(self, field: str | None) -> Node:
        t = self.take()
        if t.kind == "(":
            if self.tok.kind == ")":
                raise self.error(f"Empty parentheses at column {t.pos + 1}: put a term inside", t.pos)
            self.nest(t)
            node = self.parse_or(field)
            if not self.at(")"):
                raise self.error(f"Unclosed '(' at column {t.pos + 1}: add the matching ')'", t.pos)
            self.take()
            self.depth -= 1
            return node
        if t.kind == "WORD":
            return self.word(field, t.text, t.pos)
        if t.kind == "PHRASE":
            return self.phrase(field, t.text, t.pos)
        if t.kind == "FIELD":
            return self.field_value(t)
        if t.kind == "SIZE":
            return self.size(t)
        if t.kind in ("AND", "OR"):  # "a AND OR b" is caught by operand_after; this is "( OR"
            raise self.error(f"'{t.kind}' at column {t.pos + 1} needs a term before it", t.pos)
        if t.kind == ")":
            raise self.error(f"Unmatched ')' at column {t.pos + 1}: remove it or add a '('", t.pos)
        raise self.error(f"The query ends too early at column {t.pos + 1}", t.pos)  # pragma: no cover

    def field_value(self, t: Token) -> Node:
        name = FIELD_ALIASES.get(t.name.lower(), t.name.lower())
        if name not in KNOWN_FIELDS or name == "size":
            hint = " (size takes a comparison, e.g. size>1m)" if name == "size" else ""
            raise self.error(
                f"Unknown field '{t.name}' at column {t.pos + 1}: known fields are "
                f"{', '.join(f for f in KNOWN_FIELDS if f != 'size')}{hint}; "
                "put the word in quotes to search for it literally",
                t.pos,
            )
        value_pos = t.pos + len(t.name) + 1
        if t.text:
            if name in SPECIAL_FIELDS:
                return self.special(name, t.text, t.pos, value_pos)
            return self.word(name, t.text, value_pos)
        nxt = self.tok
        if nxt.kind == "PHRASE" and nxt.pos == value_pos:
            self.take()
            if name in SPECIAL_FIELDS:
                return self.special(name, nxt.text, t.pos, value_pos)
            return self.phrase(name, nxt.text, nxt.pos)
        if nxt.kind == "(" and nxt.pos == value_pos and name in TEXT_FIELDS:
            return self.parse_primary(name)
        raise self.error(
            f"Field '{t.name}' at column {t.pos + 1} has no value: write it as {t.name}:value, with no space",
            t.pos,
        )

    def word(self, field: str | None, text: str, pos: int) -> Node:
        if field == "id":
            return self.id_value(text, pos)
        star = text.find("*")
        if star == -1:
            return Term(field, text, "word", pos)
        if star != len(text) - 1:
            raise self.error(
                f"'*' at column {pos + star + 1} is only allowed at the end of a word (a prefix search)",
                pos + star,
            )
        stem = text[:-1]
        if not any(ch.isalnum() for ch in stem):
            raise self.error(f"'{text}' at column {pos + 1}: a prefix needs a letter or digit before '*'", pos)
        if field in LABEL_QUERY_FIELDS or (field in ADDRESS_ROLES and is_address_value(stem)):
            # A prefix of a whole value: a label, an address or a domain (without the '@' that
            # marks a domain).
            if len(stem.strip().lstrip("@")) < MIN_PREFIX:
                raise self.error(
                    f"'{text}' at column {pos + 1}: a prefix needs at least {MIN_PREFIX} characters before '*'",
                    pos,
                )
        else:
            # A prefix of words: what counts is what the analyzer leaves, as that is what
            # translate.py expands (``a-*`` and ``3.*`` would be every word starting a/3).
            # A word too long to be indexed leaves nothing: translate.py reports that.
            words = _analyzed(stem)
            if words and sum(len(w) for w in words) < MIN_PREFIX:
                raise self.error(
                    f"'{text}' at column {pos + 1}: a prefix needs at least {MIN_PREFIX} letters or digits "
                    "before '*' (punctuation does not count)",
                    pos,
                )
        return Term(field, stem, "prefix", pos)

    def phrase(self, field: str | None, text: str, pos: int) -> Node:
        if not text.strip():
            raise self.error(f'Empty phrase "" at column {pos + 1}: put words inside the quotes', pos)
        if field == "id":
            return self.id_value(text.strip(), pos)
        return Term(field, text, "phrase", pos)

    def id_value(self, text: str, pos: int) -> Node:
        value = text.lower().rstrip("*")
        if len(value) < MIN_ID_PREFIX or len(value) > 64 or not re.fullmatch(r"[0-9a-f]+", value):
            raise self.error(
                f"Bad id '{text}' at column {pos + 1}: an id is the message's SHA-256 in hexadecimal, "
                f"or a prefix of at least {MIN_ID_PREFIX} hex digits",
                pos,
            )
        return Term("id", value, "word" if len(value) == 64 else "prefix", pos)

    def special(self, name: str, value: str, field_pos: int, value_pos: int) -> Node:
        if name == "has":
            if value.lower() not in HAS_VALUES:
                raise self.error(
                    f"has:{value} at column {field_pos + 1} is not known: the only one is has:attachment",
                    value_pos,
                )
            return HasAttachment(field_pos)
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            raise self.error(
                f"Bad date '{value}' at column {value_pos + 1}: {name}: takes a date as YYYY-MM-DD",
                value_pos,
            )
        try:
            day = date.fromisoformat(value)
        except ValueError:
            raise self.error(
                f"Bad date '{value}' at column {value_pos + 1}: no such day (write YYYY-MM-DD)", value_pos
            ) from None
        if not _FIRST_DAY <= day <= _LAST_DAY:
            raise self.error(
                f"Date '{value}' at column {value_pos + 1} is out of range: use a year from "
                f"{_FIRST_DAY.year + 1} to {_LAST_DAY.year - 1}",
                value_pos,
            )
        when = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return DateBound("after" if name == "after" else "before", when, field_pos)

    def size(self, t: Token) -> Node:
        value_pos = t.pos + 4 + len(t.name)
        m = re.fullmatch(r"(\d+)\s*([a-zA-Z]*)", t.text)
        unit = m.group(2).lower() if m else ""
        if not m or unit not in _SIZE_UNITS:
            raise self.error(
                f"Bad size '{t.text}' at column {value_pos + 1}: write a number of bytes, optionally "
                "ending in k, m or g (e.g. size>2m)",
                value_pos,
            )
        digits = m.group(1).lstrip("0") or "0"
        # Checked on the length first: int() of thousands of digits is slow, then refused.
        if len(digits) > len(str(MAX_SIZE)) or int(digits) * _SIZE_UNITS[unit] > MAX_SIZE:
            raise self.error(
                f"Size '{t.text}' at column {value_pos + 1} is too large: the index holds sizes up to "
                f"{MAX_SIZE} bytes (2^64 - 1)",
                value_pos,
            )
        return SizeCompare(t.name, int(digits) * _SIZE_UNITS[unit], t.pos)  # type: ignore[arg-type]


def _analyzed(text: str) -> list[str]:
    """``text``'s words as the index has them (schema.mail_analyzer: split, long words dropped, folded)."""
    return list(word_analyzer().analyze(text))
