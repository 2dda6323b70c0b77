"""The query language parser: every form parses to the expected AST, every mistake is a QueryError."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from archiver.errors import QueryError
from archiver.index.query import (
    And,
    DateBound,
    HasAttachment,
    Not,
    Or,
    QuerySyntaxError,
    SizeCompare,
    Term,
    parse_query,
)


def root(text: str) -> object:
    return parse_query(text).root


def w(text: str, pos: int, field: str | None = None) -> Term:
    return Term(field, text, "word", pos)


# --- forms -----------------------------------------------------------------------------------


def test_bare_word() -> None:
    assert root("contract") == w("contract", 0)


def test_implicit_and_between_adjacent_terms() -> None:
    assert root("enron  contract") == And((w("enron", 0), w("contract", 7)))


def test_explicit_and_or_not() -> None:
    assert root("a AND b") == And((w("a", 0), w("b", 6)))
    assert root("a OR b") == Or((w("a", 0), w("b", 5)))
    assert root("NOT a") == Not(w("a", 4))
    assert root("a NOT b") == And((w("a", 0), Not(w("b", 6))))


def test_lowercase_keywords_are_words() -> None:
    assert root("a and b") == And((w("a", 0), w("and", 2), w("b", 6)))


def test_and_binds_tighter_than_or() -> None:
    assert root("a b OR c") == Or((And((w("a", 0), w("b", 2))), w("c", 7)))


def test_minus_is_not() -> None:
    assert root("a -b") == And((w("a", 0), Not(w("b", 3))))
    assert root("-from:x@y.com") == Not(w("x@y.com", 6, "from"))


def test_hyphenated_word_is_one_word() -> None:
    assert root("well-known") == w("well-known", 0)


def test_nested_parentheses() -> None:
    assert root("(a OR (b c)) NOT (d)") == And((Or((w("a", 1), And((w("b", 7), w("c", 9))))), Not(w("d", 18))))


def test_phrase_bare_and_fielded() -> None:
    assert root('"energy trading"') == Term(None, "energy trading", "phrase", 0)
    assert root('subject:"q3 report"') == Term("subject", "q3 report", "phrase", 8)


def test_phrase_escapes() -> None:
    assert root(r'"say \"hi\" \\ now"') == Term(None, 'say "hi" \\ now', "phrase", 0)


def test_prefix() -> None:
    assert root("contract*") == Term(None, "contract", "prefix", 0)
    assert root("from:jeff*") == Term("from", "jeff", "prefix", 5)


@pytest.mark.parametrize(
    "field",
    ["from", "to", "cc", "bcc", "subject", "body", "attachment", "client", "matter", "source", "folder"],
)
def test_text_fields(field: str) -> None:
    assert root(f"{field}:value") == w("value", len(field) + 1, field)


def test_field_names_are_case_insensitive_and_aliases() -> None:
    assert root("FROM:x") == w("x", 5, "from")
    assert root("msgid:<a@b>") == w("<a@b>", 6, "message-id")
    assert root("message-id:a@b") == w("a@b", 11, "message-id")


def test_field_group() -> None:
    assert root("from:(jeff OR ken)") == Or((w("jeff", 6, "from"), w("ken", 14, "from")))


def test_dates_are_utc_midnight() -> None:
    assert root("after:2001-05-01") == DateBound("after", datetime(2001, 5, 1, tzinfo=UTC), 0)
    assert root("before:2001-05-02") == DateBound("before", datetime(2001, 5, 2, tzinfo=UTC), 0)


def test_has_attachment() -> None:
    assert root("has:attachment") == HasAttachment(0)
    assert root("has:attachments") == HasAttachment(0)


def test_size() -> None:
    assert root("size>1m") == SizeCompare(">", 1024 * 1024, 0)
    assert root("size<=500") == SizeCompare("<=", 500, 0)
    assert root("size>=2k") == SizeCompare(">=", 2048, 0)


def test_id_full_and_prefix() -> None:
    full = "ab" * 32
    assert root(f"id:{full.upper()}") == Term("id", full, "word", 3)
    assert root("id:deadbeef") == Term("id", "deadbeef", "prefix", 3)


def test_digits_with_colon_are_a_word() -> None:
    assert root("10:30") == w("10:30", 0)


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "column", "words"),
    [
        ("", 1, "empty"),
        ("   ", 1, "empty"),
        ("frm:jeff", 1, "Unknown field 'frm'"),
        ("a frm:jeff", 3, "known fields are from, to"),
        ("(a OR b", 1, "Unclosed '('"),
        ("a OR b)", 7, "Unmatched ')'"),
        ('"abc', 1, "Unclosed quote"),
        ('subject:"abc', 9, "Unclosed quote"),
        ("a AND", 3, "needs a term after it"),
        ("a OR", 3, "needs a term after it"),
        ("NOT", 1, "needs a term after it"),
        ("a AND OR b", 3, "but found 'OR'"),
        ("AND a", 1, "needs a term before it"),
        ("(OR a)", 2, "needs a term before it"),
        ("()", 1, "Empty parentheses"),
        ('""', 1, "Empty phrase"),
        ("from:", 1, "has no value"),
        ("from: jeff", 1, "has no value"),
        ("after:2001-13-01", 7, "no such day"),
        ("after:yesterday", 7, "YYYY-MM-DD"),
        ("before:2001-5-1", 8, "YYYY-MM-DD"),
        ("has:pdf", 5, "has:attachment"),
        ("id:abc", 4, "at least 8 hex"),
        ("id:zzzzzzzzzz", 4, "hexadecimal"),
        ("c*", 1, "at least 2"),
        ("..*", 1, "letter or digit"),
        ("foo*bar", 4, "only allowed at the end"),
        ("a - b", 3, "directly followed"),
        ("size>lots", 6, "Bad size"),
        ("size:10", 1, "size>1m"),
    ],
)
def test_errors_point_at_the_problem(text: str, column: int, words: str) -> None:
    with pytest.raises(QueryError) as info:
        parse_query(text)
    err = info.value
    assert isinstance(err, QuerySyntaxError)
    assert words in str(err)
    assert err.column == column
    # The message ends with the query and a caret under the column.
    lines = str(err).split("\n")
    assert lines[-1] == "  " + " " * (column - 1) + "^"
    assert lines[-2] == "  " + text
    assert err.exit_code == 7


@pytest.mark.parametrize("q", ["before:5073-01-01", "after:1500-01-01"])
def test_dates_outside_the_index_range_are_query_errors(q: str) -> None:
    with pytest.raises(QueryError, match="out of range"):
        parse_query(q)
