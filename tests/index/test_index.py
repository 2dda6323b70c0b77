"""MessageIndex on a real tantivy index: each query form returns exactly the expected messages."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
import tantivy

from archiver.errors import LockedError, QueryError
from archiver.index import IndexUnavailableError, MessageIndex, highlight_html
from archiver.index import schema as S
from archiver.index.restriction import Labels, Restriction
from archiver.model import NO_DATE, Address, HitDisplay, IndexDoc


def sha(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


ID1, ID2, ID3, ID4 = (sha(n) for n in range(1, 5))


def make_doc(n: int, **kw: object) -> IndexDoc:
    base: dict[str, object] = {
        "id": sha(n),
        "message_id": f"<m{n}@test>",
        "from_": (),
        "to": (),
        "cc": (),
        "bcc": (),
        "subject": "",
        "body": "",
        "attachment_names": (),
        "attachment_text": "",
        "date": datetime(2001, 1, 1, tzinfo=UTC),
        "client": "unfiled",
        "matters": (),
        "sources": (),
        "folders": (),
        "size": 100,
        "has_attachments": False,
    }
    base.update(kw)
    return IndexDoc(**base)  # type: ignore[arg-type]


DOCS = [
    make_doc(
        1,
        from_=(Address(addr="jeff.skilling@enron.com", name="Jeff Skilling"),),
        to=(Address(addr="ken.lay@enron.com"),),
        subject="Contract review",
        body="Please review the contract before Friday.\nMy Résumé is attached. zebraword",
        attachment_names=("draft contract.pdf",),
        attachment_text="the indemnification clause",
        date=datetime(2001, 5, 1, 0, 0, 0, tzinfo=UTC),
        client="Acme",
        matters=("m-1",),
        sources=("imap-main",),
        folders=("INBOX",),
        size=5000,
        has_attachments=True,
    ),
    make_doc(
        2,
        from_=(Address(addr="jeff@example.com"),),
        to=(Address(addr="bob@mail.example.com"),),
        subject="Contracts signed",
        body="All contracts are signed now.",
        date=datetime(2001, 4, 30, 23, 59, 59, tzinfo=UTC),
        client="beta",
        matters=("m-2", "m-3"),
        size=1000,
    ),
    make_doc(
        3,
        from_=(Address(addr="alice@other.org", name="Alice"),),
        cc=(Address(addr="jeff@example.com"),),
        bcc=(Address(addr="secret@hidden.net"),),
        subject="Lunch",
        body="energy trading desk meeting at noon",
        date=datetime(2001, 5, 2, 12, 0, tzinfo=UTC),
        size=200,
    ),
    make_doc(
        4,
        message_id="<ABC123@mail.example.com>",
        from_=(Address(addr="bob@mail.example.com"),),
        to=(Address(addr="alice@other.org"),),
        subject="Re: Lunch",
        body="trading energy is fun; the desk is great",
        date=datetime(2001, 5, 3, tzinfo=UTC),
        client="acme",
        matters=("m-1",),
        size=300,
    ),
]
BY_ID = {d.id: d for d in DOCS}


class DocHits:
    """A HitSource answering from the IndexDocs themselves, recording what it was asked.

    (The archive's, ``ArchiveHits``, reads the catalog; the CLI and web tests use it.)
    """

    def __init__(self, docs: Iterable[IndexDoc] = DOCS) -> None:
        self.docs = {d.id: d for d in docs}
        self.described: list[list[str]] = []

    def describe(self, ids: Sequence[str]) -> Mapping[str, HitDisplay]:
        self.described.append(list(ids))
        return {
            d.id: HitDisplay(
                message_id=d.message_id,
                date=d.date,
                from_=", ".join(str(a) for a in d.from_),
                to=tuple(str(a) for a in d.to),
                subject=d.subject,
                client=d.client,
                matters=d.matters,
            )
            for d in (self.docs.get(i) for i in ids)
            if d is not None
        }


def build(path: Path, docs: Iterable[IndexDoc] = DOCS, hits: DocHits | None = None) -> MessageIndex:
    docs = list(docs)
    idx = MessageIndex.open(path, heap_mb=32, hits=hits or DocHits(docs))
    idx.add(docs)
    idx.commit()
    return idx


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MessageIndex]:
    idx = build(tmp_path_factory.mktemp("idx"))
    yield idx
    idx.close()


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[MessageIndex]:
    idx = build(tmp_path / "idx")
    yield idx
    idx.close()


def excluding(clients: tuple[str, ...] = (), matters: tuple[str, ...] = ()) -> Restriction:
    return Restriction(exclude=Labels(clients=clients, matters=matters))


def ids(idx: MessageIndex, query: str, **kw: object) -> set[str]:
    result = idx.search(query, limit=0, **kw)  # type: ignore[arg-type]
    assert result.total == len(result.hits)
    return {h.id for h in result.hits}


CASES = [
    # whole words, case-insensitive, no stemming
    ("contract", {ID1}),
    ("CONTRACT", {ID1}),
    ("contracts", {ID2}),
    ("contract*", {ID1, ID2}),
    ("CONTR*", {ID1, ID2}),
    ("resume", {ID1}),
    ("résumé", {ID1}),
    ("RÉSUMÉ", {ID1}),
    # addresses: exact, domain, subdomain, names and local parts
    ("from:jeff.skilling@enron.com", {ID1}),
    ("from:JEFF.SKILLING@ENRON.COM", {ID1}),
    ("from:enron.com", {ID1}),
    ("from:@enron.com", {ID1}),
    ("from:example.com", {ID2, ID4}),
    ("from:mail.example.com", {ID4}),
    ("from:jeff@example.com", {ID2}),
    ("from:jeff", {ID1, ID2}),
    ("from:skilling", {ID1}),
    ('from:"jeff skilling"', {ID1}),
    ("from:jeff.skilling", {ID1}),
    ("from:jeff.sk*", {ID1}),
    ("to:ken.lay@enron.com", {ID1}),
    ("to:example.com", {ID2}),
    ("cc:jeff@example.com", {ID3}),
    ("bcc:secret@hidden.net", {ID3}),
    ("bcc:hidden.net", {ID3}),
    ("jeff@example.com", {ID2, ID3}),
    ("example.com", {ID2, ID3, ID4}),
    ("alice", {ID3, ID4}),
    # dates: after inclusive, before exclusive, UTC midnight
    ("after:2001-05-01", {ID1, ID3, ID4}),
    ("before:2001-05-01", {ID2}),
    ("after:2001-05-01 before:2001-05-02", {ID1}),
    ("after:2001-05-04", set()),
    # boolean logic
    ("NOT contract", {ID2, ID3, ID4}),
    ("-contract", {ID2, ID3, ID4}),
    ("NOT zzzz", {ID1, ID2, ID3, ID4}),
    ("lunch OR contract", {ID1, ID3, ID4}),
    ("(lunch OR contract) -from:alice@other.org", {ID1, ID4}),
    ("((energy AND desk) OR (contract AND NOT pdf))", {ID3, ID4}),
    ("(energy OR contract) (desk OR pdf) NOT (from:bob@mail.example.com)", {ID1, ID3}),
    ("lunch OR NOT energy", {ID1, ID2, ID3, ID4}),
    # phrases versus words
    ('"energy trading"', {ID3}),
    ("energy trading", {ID3, ID4}),
    ('subject:"re lunch"', {ID4}),
    ("subject:lunch", {ID3, ID4}),
    ("body:lunch", set()),
    ("body:contract", {ID1}),
    ("well-trading", set()),
    # attachments
    ("attachment:indemnification", {ID1}),
    ("attachment:draft", {ID1}),
    ("attachment:pdf", {ID1}),
    ('attachment:"draft contract"', {ID1}),
    ("has:attachment", {ID1}),
    # labels
    ("client:acme", {ID1, ID4}),
    ("client:ACME", {ID1, ID4}),
    ("client:unfiled", {ID3}),
    ("matter:m-1", {ID1, ID4}),
    ("matter:m-3", {ID2}),
    ("matter:m-*", {ID1, ID2, ID4}),
    ("source:imap-main", {ID1}),
    ("folder:inbox", {ID1}),
    # ids
    (f"id:{ID3}", {ID3}),
    (f"id:{ID3[:8]}", {ID3}),
    (f"id:{ID3[:8].upper()}*", {ID3}),
    ("msgid:<abc123@mail.example.com>", {ID4}),
    ("message-id:ABC123@mail.example.com", {ID4}),
    # size
    ("size>1000", {ID1}),
    ("size>=1000", {ID1, ID2}),
    ("size<300", {ID3}),
    ("size<=300", {ID3, ID4}),
]


@pytest.mark.parametrize(("query", "expected"), CASES)
def test_query_forms(shared: MessageIndex, query: str, expected: set[str]) -> None:
    assert ids(shared, query) == expected


def test_newest_first_by_default(shared: MessageIndex) -> None:
    result = shared.search("NOT zzzz")
    assert [h.id for h in result.hits] == [ID4, ID3, ID1, ID2]
    assert [h.date for h in result.hits] == sorted((d.date for d in DOCS), reverse=True)


def test_offset_and_limit(shared: MessageIndex) -> None:
    result = shared.search("NOT zzzz", limit=2, offset=1)
    assert result.total == 4
    assert [h.id for h in result.hits] == [ID3, ID1]
    assert shared.search("NOT zzzz", limit=2, offset=3).hits[0].id == ID2
    assert len(shared.search("NOT zzzz", limit=0).hits) == 4


def test_relevance_sort_puts_best_match_first(shared: MessageIndex) -> None:
    result = shared.search("contract OR lunch", sort="relevance", limit=0)
    assert {h.id for h in result.hits} == {ID1, ID3, ID4}
    scores = [h.score for h in result.hits]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0


def test_exclusions_apply_to_hits_and_totals(shared: MessageIndex) -> None:
    r = shared.search("NOT zzzz", restriction=excluding(clients=("ACME",)), limit=1)
    assert r.total == 2 and r.hits[0].id == ID3
    assert ids(shared, "NOT zzzz", restriction=excluding(clients=("acme",))) == {ID2, ID3}
    assert ids(shared, "NOT zzzz", restriction=excluding(matters=("m-3",))) == {ID1, ID3, ID4}
    assert ids(shared, "lunch", restriction=excluding(clients=("unfiled",), matters=("m-1",))) == set()
    assert shared.search("NOT zzzz", restriction=excluding(matters=("m-1", "m-2"))).total == 1


def test_hit_fields_come_from_the_hit_source(shared: MessageIndex) -> None:
    (hit,) = shared.search("zebraword").hits
    assert hit.id == ID1
    assert hit.message_id == "<m1@test>"
    assert hit.date == datetime(2001, 5, 1, tzinfo=UTC)
    assert hit.from_ == "Jeff Skilling <jeff.skilling@enron.com>"
    assert hit.to == ("ken.lay@enron.com",)
    assert hit.subject == "Contract review"
    assert hit.client == "Acme"
    assert hit.matters == ("m-1",)


def test_snippet_highlights_the_matching_words(shared: MessageIndex) -> None:
    (hit,) = shared.search("résumé").hits
    assert "\n" not in hit.snippet
    assert [hit.snippet[a:b] for a, b in hit.highlights] == ["Résumé"]
    (hit,) = shared.search("contract").hits
    assert [hit.snippet[a:b].lower() for a, b in hit.highlights] == ["contract"]
    assert "<mark>contract</mark>" in highlight_html(hit.snippet, hit.highlights)


def test_snippet_without_body_match_is_the_body_start(shared: MessageIndex) -> None:
    (hit,) = shared.search("subject:signed").hits
    assert hit.snippet == "All contracts are signed now."
    assert hit.highlights == ()


def test_snippet_without_body_match_of_a_long_body_is_its_collapsed_start(tmp_path: Path) -> None:
    words = " ".join(f"w{i}" for i in range(400))
    blank_start = make_doc(5, subject="blank", body="\n \t" * 400 + "late\n\nfirst   words")
    long_body = make_doc(6, subject="long", body="  " + words.replace(" ", " \n "))
    with build(tmp_path / "idx", [blank_start, long_body]) as idx:
        assert idx.search("subject:blank").hits[0].snippet == "late first words"
        snippet = idx.search("subject:long").hits[0].snippet
        assert snippet.endswith("…") and words.startswith(snippet[:-1]) and 150 < len(snippet) <= 201


def test_highlight_html_escapes() -> None:
    assert highlight_html("a<b> & c", [(0, 1), (7, 8)]) == "<mark>a</mark>&lt;b&gt; &amp; <mark>c</mark>"


@pytest.mark.parametrize("query", ["frm:x", "(a", "!!!", "subject:***x", "x" * 50])
def test_bad_queries_raise_query_error(shared: MessageIndex, query: str) -> None:
    with pytest.raises(QueryError):
        shared.search(query)


def test_count_and_all_ids(shared: MessageIndex) -> None:
    assert shared.count() == 4
    assert shared.all_ids() == {ID1, ID2, ID3, ID4}


def test_delete(fresh: MessageIndex) -> None:
    fresh.delete([ID3])
    assert fresh.count() == 4  # not visible before commit
    fresh.commit()
    assert fresh.count() == 3
    assert ids(fresh, "lunch") == {ID4}
    assert fresh.all_ids() == {ID1, ID2, ID4}


def test_re_adding_an_id_replaces_it(fresh: MessageIndex) -> None:
    fresh.add([replace(BY_ID[ID1], subject="Replaced", body="nothing here")])
    fresh.commit()
    assert fresh.count() == 4
    assert ids(fresh, "subject:replaced") == {ID1}
    assert ids(fresh, "zebraword") == set()
    # Adding the same id twice in one batch keeps only the last.
    fresh.add([replace(BY_ID[ID2], subject="one"), replace(BY_ID[ID2], subject="two")])
    fresh.commit()
    assert fresh.count() == 4
    assert ids(fresh, "subject:two") == {ID2} and ids(fresh, "subject:one") == set()


def test_reopening_gives_the_same_results(tmp_path: Path) -> None:
    build(tmp_path / "idx").close()
    with MessageIndex.open(tmp_path / "idx", create=False) as idx:
        assert idx.count() == 4
        for query, expected in CASES:
            assert ids(idx, query) == expected, query


def test_open_without_create_reports_missing_index(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="reindex"):
        MessageIndex.open(tmp_path / "none", create=False)


def test_clear(fresh: MessageIndex) -> None:
    fresh.clear()
    assert fresh.count() == 0 and fresh.all_ids() == set()
    fresh.add(DOCS[:1])
    fresh.commit()
    assert fresh.all_ids() == {ID1}


def test_writer_lock_is_released_for_another_instance(tmp_path: Path) -> None:
    path = tmp_path / "idx"
    a = build(path)
    b = MessageIndex.open(path, lock_timeout=0.2)
    extra = make_doc(5, subject="from b")
    a.delete([ID1])  # a now holds the writer
    with pytest.raises(LockedError):
        b.add([extra])
    a.commit()  # releases it
    b.add([extra])
    b.commit()
    b.close()
    a.reload()
    assert a.all_ids() == {ID2, ID3, ID4, sha(5)}
    # And back again: a can write after b closed.
    a.add([make_doc(6)])
    a.commit()
    a.close()
    with MessageIndex.open(path) as c:
        assert c.count() == 5


def test_commit_without_release_keeps_the_writer_until_a_releasing_commit(tmp_path: Path) -> None:
    """An import commits every few thousand messages but keeps the writer; its last commit lets go."""
    path = tmp_path / "idx"
    a = build(path)
    b = MessageIndex.open(path, lock_timeout=0.2)
    a.add([make_doc(5)], replace=False)
    a.commit(release=False)
    b.reload()
    assert b.count() == 5, "the commit itself is visible"
    with pytest.raises(LockedError):
        b.add([make_doc(6)])
    a.add([make_doc(6)], replace=False)
    a.commit()
    b.add([make_doc(7)])
    b.commit()
    b.close()
    a.reload()
    assert a.count() == 7


def test_add_without_replace_does_not_delete_an_existing_id(fresh: MessageIndex) -> None:
    """replace=False is only for new objects: used on an indexed id it would leave two documents."""
    fresh.add([replace(BY_ID[ID1], subject="Second copy")], replace=False)
    fresh.commit()
    assert fresh.count() == 5
    fresh.add([BY_ID[ID1]])
    fresh.commit()
    assert fresh.count() == 4


def test_close_discards_uncommitted_and_releases_lock(tmp_path: Path) -> None:
    path = tmp_path / "idx"
    a = build(path)
    a.add([make_doc(7)])
    a.close()
    with MessageIndex.open(path, lock_timeout=0.2) as b:
        assert b.count() == 4
        b.delete([ID1])
        b.commit()
        assert b.count() == 3


def test_merge_and_gc_physically_removes_deleted_text(tmp_path: Path) -> None:
    # One writer thread -> one segment holding all four docs, so a delete leaves a partly
    # deleted segment (a fully deleted one is dropped by tantivy on its own).
    fresh = MessageIndex.open(tmp_path / "idx", heap_mb=16)
    fresh.add(DOCS)
    fresh.commit()

    def doc_freq(word: str) -> int:
        return int(fresh._index.searcher().doc_freq("body", word))

    fresh.delete([ID1])
    fresh.commit()
    assert doc_freq("zebraword") == 1  # deleted, but still in the segment
    assert fresh.deleted_docs_on_disk() == 1

    asked: list[str] = []

    def reload_docs(wanted: Sequence[str]) -> list[IndexDoc]:
        asked.extend(wanted)
        return [BY_ID[i] for i in wanted]

    rewritten = fresh.merge_and_gc(reload_docs)
    assert rewritten == len(asked) and ID1 not in asked
    assert doc_freq("zebraword") == 0
    assert fresh.deleted_docs_on_disk() == 0
    assert fresh.all_ids() == {ID2, ID3, ID4}
    assert ids(fresh, "lunch") == {ID3, ID4}
    fresh.close()


def test_only_the_body_start_is_stored_for_snippets(tmp_path: Path) -> None:
    long_body = "opening words. " + "filler text here. " * 100 + "the hidden needle is here."
    doc = make_doc(9, body=long_body)
    with build(tmp_path / "idx", [doc]) as idx:
        (hit,) = idx.search("needle").hits  # indexed in full ...
        assert hit.snippet.startswith("opening words.") and hit.highlights == ()  # ... stored: the start
        (hit,) = idx.search('"opening words"').hits
        assert [hit.snippet[a:b] for a, b in hit.highlights] == ["opening", "words"]


def test_a_hit_the_source_does_not_know_keeps_only_its_id(tmp_path: Path) -> None:
    """E.g. a message disposed of after the search ran: the hit is listed, undescribed."""
    hits = DocHits()
    with build(tmp_path / "idx", hits=hits) as idx:
        del hits.docs[ID1]
        (hit,) = idx.search("zebraword").hits
        assert (hit.id, hit.subject, hit.date) == (ID1, "", NO_DATE)
        assert hit.snippet  # the index's own


def test_a_page_is_described_in_one_call_and_only_its_hits(tmp_path: Path) -> None:
    hits = DocHits()
    with build(tmp_path / "idx", hits=hits) as idx:
        result = idx.search("NOT zzzz", limit=2, offset=1)
        assert hits.described == [[ID3, ID1]]
        assert [h.subject for h in result.hits] == ["Lunch", "Contract review"]
        hits.described.clear()
        assert idx.search("zzzz").total == 0 and hits.described == []
        # Selections, facets and counts need no descriptions.
        assert set(idx.matching_ids("NOT zzzz")) == {ID1, ID2, ID3, ID4}
        assert idx.facets("NOT zzzz")["client"]
        assert idx.count() == 4 and idx.all_ids() == {ID1, ID2, ID3, ID4}
        assert hits.described == []


def test_without_a_hit_source_hits_carry_only_ids_and_snippets(tmp_path: Path) -> None:
    build(tmp_path / "idx").close()
    with MessageIndex.open(tmp_path / "idx", create=False) as idx:
        result = idx.search("NOT zzzz")
        assert result.total == 4 and [h.id for h in result.hits] == [ID4, ID3, ID1, ID2]
        for hit in result.hits:
            assert hit.date == NO_DATE and (hit.subject, hit.from_, hit.client) == ("", "", "")
            assert hit.to == () and hit.matters == () and hit.snippet


def test_the_index_stores_only_ids_and_body_starts(shared: MessageIndex) -> None:
    """Subjects, senders and the rest of the body are in the catalog and the store, not in the doc store."""
    searcher = shared._index.searcher()
    addresses = [addr for _score, addr in searcher.search(tantivy.Query.all_query(), 10).hits]
    assert len(addresses) == 4
    assert all(set(searcher.doc(a).to_dict()) == {S.F_ID, S.F_LEAD} for a in addresses)


def test_an_index_with_the_old_display_field_must_be_rebuilt(tmp_path: Path) -> None:
    """Indexes built before hits were described from the catalog have a ``display`` field: reindex them."""
    sb = tantivy.SchemaBuilder()
    for name in S.ALL_FIELDS:
        if name != S.F_LEAD:
            sb.add_text_field(name, stored=True)
    sb.add_bytes_field("display", stored=True, indexed=False)
    old = tmp_path / "idx"
    old.mkdir()
    tantivy.Index(sb.build(), path=str(old), reuse=False)
    fields = {f["name"] for f in json.loads((old / "meta.json").read_text())["schema"]}
    assert fields == {*S.ALL_FIELDS, "display"} - {S.F_LEAD}
    with pytest.raises(IndexUnavailableError, match=r"built with another schema; run `archiver reindex`"):
        MessageIndex.open(old)


def test_an_index_with_the_same_field_names_but_other_options_must_be_rebuilt(tmp_path: Path) -> None:
    """E.g. the subject stored, as before hits were described from the catalog: names alone would miss it."""
    build(tmp_path / "current").close()
    MessageIndex.open(tmp_path / "current", create=False).close()  # the current schema opens
    meta = json.loads((tmp_path / "current" / "meta.json").read_text())
    subject = next(f for f in meta["schema"] if f["name"] == S.F_SUBJECT)
    subject["options"]["stored"] = True
    (tmp_path / "current" / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(IndexUnavailableError, match=r"built with another schema; run `archiver reindex`"):
        MessageIndex.open(tmp_path / "current", create=False)


def test_matching_ids_equals_search_ids(tmp_path: Path) -> None:
    """The id-only selection used by holds, rules and exports returns what search returns, newest first."""
    idx = MessageIndex.open(tmp_path / "ix")
    docs = [
        make_doc(
            100 + i,
            subject=f"gas contract {i}",
            date=datetime(2001, 5, 1 + i % 27, i % 24, tzinfo=UTC),
            client="acme" if i % 3 == 0 else "globex",
        )
        for i in range(40)
    ]
    idx.add(docs)
    idx.commit()
    for q in ("gas", "contract AND NOT subject:7", "after:2001-05-10"):
        full = [h.id for h in idx.search(q, limit=0).hits]
        assert idx.matching_ids(q) == full
    assert idx.matching_ids("gas", restriction=excluding(clients=("acme",))) == [
        h.id for h in idx.search("gas", limit=0, restriction=excluding(clients=("acme",))).hits
    ]
