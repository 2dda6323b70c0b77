"""Search review fixes: address values, query limits, prefix minimum, '-query' on the CLI, prefix snippets.

Each test here failed before its fix (see docs/search.md for the rules they pin down).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from archiver.errors import QueryError
from archiver.index import MessageIndex, highlight_html
from archiver.index.query import QuerySyntaxError, SizeCompare, parse_query
from archiver.model import Address
from tests.conftest import CliResult
from tests.index.test_index import build, make_doc, sha

# --- 1. from:/to:/cc:/bcc: with a dotted value match addresses, never display-name words ------

LISTS, SPOOF, ACME, JEFF, SUB, NAMED, LOCAL_DOMAIN, JUNIOR = (sha(n) for n in range(101, 109))

ADDRESS_DOCS = [
    # Display names that spell a domain, from addresses elsewhere: not "from" that domain.
    make_doc(101, from_=(Address(addr="noreply@lists.other.org", name="support@example.com via Lists"),)),
    make_doc(102, from_=(Address(addr="spoof@evil.org", name="Acme Example Corp"),)),
    make_doc(103, from_=(Address(addr="real@acme.example", name="Real Person"),)),
    make_doc(
        104,
        from_=(Address(addr="Jeff.Skilling@enron.com", name="Jeff Skilling"),),
        to=(Address(addr="ken.lay@enron.com", name="Ken"),),
        cc=(Address(addr="mark.frevert@enron.com"),),
        bcc=(Address(addr="greg.whalley@enron.com"),),
    ),
    make_doc(105, from_=(Address(addr="someone@mail.example.com"),)),
    # A dotted word in the display name only.
    make_doc(106, from_=(Address(addr="jr@dallas.example", name="J.R. Ewing"),)),
    # Local parts that are, or start with, a dotted value.
    make_doc(107, from_=(Address(addr="example.com@anywhere.org"),)),
    make_doc(108, from_=(Address(addr="jeff.skilling.jr@enron.com"),)),
]
ALL_ADDRESS_DOCS = {d.id for d in ADDRESS_DOCS}
#: the documented limits (docs/search.md).
MAX_DEPTH = 50
MAX_SIZE = 2**64 - 1


@pytest.fixture(scope="module")
def addresses(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MessageIndex]:
    idx = build(tmp_path_factory.mktemp("addr"), ADDRESS_DOCS)
    yield idx
    idx.close()


def found(idx: MessageIndex, query: str) -> set[str]:
    result = idx.search(query, limit=0)
    return {h.id for h in result.hits}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("from:example.com", {SUB, LOCAL_DOMAIN}),  # the domain, or a whole local part
        ("from:@example.com", {SUB}),
        ("from:acme.example", {ACME}),
        ("from:ACME.Example", {ACME}),
        ("from:lists.other.org", {LISTS}),
        ("from:other.org", {LISTS}),
        ("from:evil.org", {SPOOF}),
        ("NOT from:example.com", ALL_ADDRESS_DOCS - {SUB, LOCAL_DOMAIN}),
        ("NOT from:acme.example", ALL_ADDRESS_DOCS - {ACME}),
        ("-from:acme.example", ALL_ADDRESS_DOCS - {ACME}),
        ('from:"acme.example"', {ACME}),
    ],
)
def test_a_domain_value_matches_addresses_not_display_name_words(
    addresses: MessageIndex, query: str, expected: set[str]
) -> None:
    assert found(addresses, query) == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("from:jeff.skilling", {JEFF}),
        ("from:JEFF.SKILLING", {JEFF}),
        ("from:jeff.sk*", {JEFF, JUNIOR}),
        ("to:ken.lay", {JEFF}),
        ("cc:mark.frevert", {JEFF}),
        ("bcc:greg.whalley", {JEFF}),
        ("from:enron.com", {JEFF, JUNIOR}),
        ("from:example.c*", {SUB, LOCAL_DOMAIN}),
        # the whole local part, not a piece of it
        ("from:skilling.jeff", set()),
        ("from:jeff.skill", set()),
    ],
)
def test_a_dotted_value_still_finds_a_whole_local_part(addresses: MessageIndex, query: str, expected: set[str]) -> None:
    assert found(addresses, query) == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("from:acme", {SPOOF}),
        ('from:"acme example"', {SPOOF}),
        ('from:"support example com via"', {LISTS}),
        ('from:"j r ewing"', {NAMED}),
        ('from:"J.R. Ewing"', {NAMED}),  # a phrase with a space is display-name words
        ("from:skilling", {JEFF, JUNIOR}),  # words of local parts too
        ('from:"jeff skilling"', {JEFF, JUNIOR}),
        ("from:j.r.", set()),  # dotted: an address value; display names are searched without dots
    ],
)
def test_display_name_words_are_matched_by_values_without_dots(
    addresses: MessageIndex, query: str, expected: set[str]
) -> None:
    assert found(addresses, query) == expected


def test_a_bare_dotted_word_still_searches_display_names(addresses: MessageIndex) -> None:
    """Only the address fields changed: a bare term searches every text field, names included."""
    assert found(addresses, "acme.example") == {SPOOF, ACME}


# --- 2. no traceback for huge sizes or deep nesting ----------------------------------------


def assert_syntax_error(query: str, column: int, words: str) -> None:
    with pytest.raises(QueryError) as info:
        parse_query(query)
    err = info.value
    assert isinstance(err, QuerySyntaxError)
    assert words in str(err), str(err)
    assert err.column == column
    assert str(err).split("\n")[-1] == "  " + " " * (column - 1) + "^"
    assert err.exit_code == 7


@pytest.mark.parametrize(
    ("query", "column"),
    [
        ("size>18446744073709551616", 6),
        ("size>99999999999999999999g", 6),
        ("size<=17179869184g", 7),
        ("size>=" + "9" * 5000, 7),
    ],
)
def test_a_size_beyond_the_index_range_is_a_query_error(query: str, column: int) -> None:
    assert_syntax_error(query, column, "too large")


def test_the_largest_size_is_accepted(tmp_path: Path) -> None:
    assert parse_query(f"size<={MAX_SIZE}").root == SizeCompare("<=", MAX_SIZE, 0)
    assert parse_query("size<17179869183g").root == SizeCompare("<", 17179869183 * 1024**3, 0)
    with build(tmp_path / "idx", [make_doc(1, size=10)]) as idx:
        assert found(idx, f"size<={MAX_SIZE}") == {sha(1)}
        assert found(idx, f"size>={MAX_SIZE}") == set()


@pytest.mark.parametrize(
    ("opener", "closer", "column"),
    [
        # the caret is under the operator that opens level MAX_DEPTH + 1
        ("(", ")", MAX_DEPTH + 1),
        ("NOT ", "", MAX_DEPTH * 4 + 1),
        ("-", "", MAX_DEPTH + 1),
        ("from:(", ")", MAX_DEPTH * 6 + 6),
        ("( NOT ", ")", MAX_DEPTH // 2 * 6 + 1),  # two levels each; MAX_DEPTH is even
    ],
)
@pytest.mark.parametrize("levels", [300, 5000])
def test_deep_nesting_is_a_query_error(opener: str, closer: str, column: int, levels: int) -> None:
    query = opener * levels + "a" + closer * levels
    assert_syntax_error(query, column, f"at most {MAX_DEPTH} levels")


@pytest.mark.parametrize("opener", ["(", "NOT ", "-"])
def test_nesting_up_to_the_limit_is_fine(tmp_path: Path, opener: str) -> None:
    query = opener * MAX_DEPTH + "zebra" + (")" if opener == "(" else "") * MAX_DEPTH
    parse_query(query)
    with build(tmp_path / "idx", [make_doc(1, body="zebra")]) as idx:
        negated = opener != "(" and MAX_DEPTH % 2 == 1
        assert found(idx, query) == (set() if negated else {sha(1)})


def test_deep_queries_are_query_errors_through_search(addresses: MessageIndex) -> None:
    for query in ("size>18446744073709551616", "(" * 300 + "a" + ")" * 300, "NOT " * 300 + "a", "-" * 300 + "a"):
        with pytest.raises(QueryError):
            addresses.search(query)


# --- 3. the prefix minimum counts the letters and digits the index sees ------------------------


@pytest.mark.parametrize(
    ("query", "column"),
    [
        ("a-*", 1),
        ("3.*", 1),
        ("x_*", 1),
        ("é.*", 1),
        ("-a-*", 2),
        ("subject:a-*", 9),
        ("body:3.*", 6),
        ("attachment:q-*", 12),
        ("from:a-*", 6),  # no '.' or '@': display-name/local-part words
        ("to:(b- OR c_*)", 11),
    ],
)
def test_punctuation_does_not_count_towards_the_prefix_minimum(query: str, column: int) -> None:
    assert_syntax_error(query, column, "at least 2 letters or digits")


@pytest.mark.parametrize(
    "query",
    ["ab*", "ab-*", "æ*", "foo-a*", "a.b*", "matter:m-*", "client:a-*", "from:jeff.sk*", "from:a.*", "to:@ex*"],
)
def test_prefixes_with_two_letters_or_digits_still_parse(query: str) -> None:
    parse_query(query)


def test_a_punctuated_prefix_no_longer_matches_every_word(tmp_path: Path) -> None:
    with build(tmp_path / "idx", [make_doc(1, body="about apples"), make_doc(2, body="ab-testing")]) as idx:
        with pytest.raises(QueryError, match="at least 2 letters or digits"):
            idx.search("a-*")
        assert found(idx, "ab-*") == {sha(1), sha(2)}


# --- 4. the CLI takes a query starting with '-' ------------------------------------------------


@pytest.fixture
def small_archive(initialised: Callable[..., CliResult], tmp_path: Path) -> dict[str, str]:
    """Three messages: salt, pepper (with an attachment), contract; returns subject -> id."""
    folder = tmp_path / "mail"
    folder.mkdir()
    ids: dict[str, str] = {}
    for n, (subject, body, attach) in enumerate(
        [("salt", "a pinch of salt", False), ("pepper", "ground pepper", True), ("deal", "the contract", False)]
    ):
        msg = EmailMessage()
        msg["From"] = f"cook{n}@kitchen.example"
        msg["To"] = "chef@kitchen.example"
        msg["Subject"] = subject
        msg["Date"] = f"Tue, 0{n + 1} May 2001 10:00:00 +0000"
        msg["Message-ID"] = f"<m{n}@kitchen.example>"
        msg.set_content(body)
        if attach:
            msg.add_attachment(b"%PDF-1.4 recipe", maintype="application", subtype="pdf", filename="recipe.pdf")
        (folder / f"{n}.eml").write_bytes(bytes(msg))
    r = initialised("import", str(folder), "--source", "kitchen", "--json")
    assert r.code == 0, r.err
    for row in initialised("search", "NOT zzzz", "--json", "--limit", "0").json_lines():
        ids[str(row["subject"])] = str(row["id"])
    assert set(ids) == {"salt", "pepper", "deal"}
    return ids


def subjects(r: CliResult) -> set[str]:
    assert r.code == 0, r.err
    return {str(row["subject"]) for row in r.json_lines()}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-salt", "--json"], {"pepper", "deal"}),
        (["--json", "-salt"], {"pepper", "deal"}),
        (["-has:attachment", "--json"], {"salt", "deal"}),
        (["-contract", "--json"], {"salt", "pepper"}),  # not -c ontract
        (["--json", "--limit", "0", "-salt"], {"pepper", "deal"}),
        (["--limit=0", "-json", "--json"], {"salt", "pepper", "deal"}),  # -json is a query: NOT json
        (["--json", "--", "-salt"], {"pepper", "deal"}),
        (["--json", "-salt -pepper"], {"deal"}),
        (["-salt", "--sort", "relevance", "--json"], {"pepper", "deal"}),
        (["--lim", "1", "--json", "-salt"], {"deal"}),  # abbreviated options still take their value
    ],
)
def test_the_cli_takes_a_query_starting_with_a_dash(
    initialised: Callable[..., CliResult], small_archive: dict[str, str], args: list[str], expected: set[str]
) -> None:
    assert subjects(initialised("search", *args)) == expected


def test_the_cli_options_still_work_around_a_dash_query(
    initialised: Callable[..., CliResult], small_archive: dict[str, str], config_file: Path
) -> None:
    rows = initialised("search", "-salt", "--json", "--limit", "1", "--offset", "1").json_lines()
    assert [r["subject"] for r in rows] == ["pepper"]  # newest first: deal, pepper
    # --config after the subcommand, as -c and as --config=
    for conf in (["-c", str(config_file)], [f"--config={config_file}"]):
        r = initialised("search", *conf, "-salt", "--json", config=None)
        assert subjects(r) == {"pepper", "deal"}
    r = initialised("search", "-h")
    assert r.code == 0 and "--limit" in r.out
    r = initialised("search", "-salt", "--sort", "best")
    assert r.code == 2 and "invalid choice" in r.err
    r = initialised("search", "-salt", "pepper")
    assert r.code == 2 and "unrecognized arguments" in r.err
    r = initialised("search", "-salt", "--nonsense")
    assert r.code == 2 and "--nonsense" in r.err
    r = initialised("search", "--json")
    assert r.code == 2 and "query" in r.err
    r = initialised("search", "-(salt")
    assert r.code == 7 and "^" in r.err and "Traceback" not in r.err


# --- 5. prefix terms are highlighted in snippets ---------------------------------------------

FILLER = "Routine words about the weather and nothing else at all. " * 4  # ~230 characters


@pytest.fixture(scope="module")
def snippets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MessageIndex]:
    docs = [
        make_doc(201, body=FILLER + "The contractor signs today."),
        make_doc(202, body="Contracts are signed; the Résumé is attached. " + FILLER),
        make_doc(203, body=FILLER + "A draft contract-draft for review."),
        make_doc(204, subject="contracting", body=FILLER),
    ]
    idx = build(tmp_path_factory.mktemp("snip"), docs)
    yield idx
    idx.close()


def marked(idx: MessageIndex, query: str) -> dict[str, list[str]]:
    return {h.id: [h.snippet[a:b] for a, b in h.highlights] for h in idx.search(query, limit=0).hits}


def test_a_prefix_is_highlighted_where_its_word_is(snippets: MessageIndex) -> None:
    (hit,) = snippets.search("contractor*").hits
    assert "contractor" in hit.snippet
    assert [hit.snippet[a:b] for a, b in hit.highlights] == ["contractor"]
    assert "<mark>contractor</mark>" in highlight_html(hit.snippet, hit.highlights)


def test_each_hit_highlights_the_words_its_prefix_expanded_to(snippets: MessageIndex) -> None:
    assert marked(snippets, "contract*") == {
        sha(201): ["contractor"],
        sha(202): ["Contracts"],
        sha(203): ["contract"],
        sha(204): [],  # subject only: the snippet is the body's start, unmarked
    }
    assert marked(snippets, "body:contract*")[sha(201)] == ["contractor"]
    assert marked(snippets, "résu*") == {sha(202): ["Résumé"]}
    assert marked(snippets, "RESU* OR zzzz") == {sha(202): ["Résumé"]}


def test_a_multi_word_prefix_highlights_its_words(snippets: MessageIndex) -> None:
    assert marked(snippets, "contract-dr*") == {sha(203): ["draft", "contract", "draft"]}


def test_prefixes_outside_the_body_or_negated_are_not_highlighted(snippets: MessageIndex) -> None:
    assert marked(snippets, "subject:contract*") == {sha(204): []}
    # 201 matches (it has no zzzz), but contractor* is what the query excludes: not highlighted.
    words = marked(snippets, "weather -(contractor* zzzz)")[sha(201)]
    assert words and {w.lower() for w in words} == {"weather"}
