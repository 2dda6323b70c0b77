"""MessageIndex: the on-disk tantivy index of messages (add, delete, commit, search).

The index is derived data: the store is the truth and ``reindex`` rebuilds this.  tantivy
allows one writer per index directory (a lock file), so the writer is opened on the first
add/delete and released by ``commit``/``close``: a daemon that is not ingesting does not
block the CLI from writing, and vice versa.  Searchers are refreshed after our own commits;
commits by other processes become visible within a second (tantivy watches meta.json), or at
once through ``reload()``.

The index stores only message ids and the beginning of each body, for snippets (see
schema.py).  What else a hit shows -- sender, subject, date, tags -- comes from a
:class:`HitSource` given to ``open``: the archive's (``archiver.archive.ArchiveHits``) reads
the catalog, in one query per result page.
"""

from __future__ import annotations

import functools
import html
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Protocol

import tantivy

from archiver.errors import ArchiverError, LockedError, QueryError
from archiver.index import schema as S
from archiver.index.query import ParsedQuery, parse_query
from archiver.index.restriction import UNRESTRICTED, Labels, Restriction
from archiver.index.translate import Translator
from archiver.model import HitDisplay, IndexDoc, SearchHit, SearchResult

#: how long a snippet is (characters), and the fallback when the body has no match.
SNIPPET_CHARS = 200
_MIN_HEAP_PER_THREAD_MB = 16
#: same-length replacement of line breaks and tabs (keeps highlight offsets valid).
_SPACES = str.maketrans({"\n": " ", "\r": " ", "\t": " ", "\f": " ", "\v": " "})


class HitSource(Protocol):
    """Describes search hits for :meth:`MessageIndex.search` (the index stores only ids and body beginnings)."""

    def describe(self, ids: Sequence[str]) -> Mapping[str, HitDisplay]:
        """What each hit shows, for a whole result page in one call; unknown ids may be left out."""
        ...


class IndexUnavailableError(ArchiverError):
    """The search index could not be used; run `archiver reindex` to rebuild it from the store."""

    exit_code = 1


class IndexSchemaError(IndexUnavailableError):
    """The index on disk was built by a version with other fields (writers rebuild it themselves)."""


@dataclass(frozen=True, slots=True)
class Snippet:
    """Plain snippet text with highlighted character ranges (Python str offsets)."""

    text: str
    highlights: tuple[tuple[int, int], ...] = ()

    def to_html(self) -> str:
        """HTML-escaped text with each highlight wrapped in <mark>."""
        return highlight_html(self.text, self.highlights)


def highlight_html(text: str, highlights: Sequence[tuple[int, int]], tag: str = "mark") -> str:
    """Escape ``text`` for HTML and wrap each (start, end) character range in ``<tag>``."""
    out: list[str] = []
    last = 0
    for start, end in sorted(highlights):
        if start < last:
            continue
        out.append(html.escape(text[last:start]))
        out.append(f"<{tag}>{html.escape(text[start:end])}</{tag}>")
        last = end
    out.append(html.escape(text[last:]))
    return "".join(out)


class MessageIndex:
    """The full-text index of one archive; see the module docstring for the locking rules."""

    def __init__(
        self, path: Path, index: tantivy.Index, *, heap_mb: int, lock_timeout: float, hits: HitSource | None
    ) -> None:
        self.path = path
        self._index = index
        self._schema = index.schema
        self._translator = Translator(self._schema)
        self._heap_mb = max(heap_mb, _MIN_HEAP_PER_THREAD_MB)
        self._lock_timeout = lock_timeout
        self._hits = hits
        self._writer: tantivy.IndexWriter | None = None
        self._closed = False

    # --- lifecycle -------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        heap_mb: int = 128,
        create: bool = True,
        lock_timeout: float = 10.0,
        hits: HitSource | None = None,
    ) -> MessageIndex:
        """Open the index at ``path`` (a directory), creating it if allowed and absent.

        ``lock_timeout`` is how long add/delete wait for another process's writer to finish;
        ``hits`` describes search hits (without it a hit has only its id, the epoch as its
        date, and its snippet: enough for tests of matching, and for callers of
        :meth:`matching_ids`, :meth:`facets` and the totals).
        """
        path = Path(path)
        try:
            if path.is_dir() and tantivy.Index.exists(str(path)):
                index = tantivy.Index.open(str(path))
                if _fields(path) != _expected_fields():
                    raise IndexSchemaError(
                        f"The search index at {path} was built with another schema; "
                        "run `archiver reindex` to rebuild it."
                    )
            elif create:
                path.mkdir(parents=True, exist_ok=True)
                index = tantivy.Index(S.build_schema(), path=str(path), reuse=False)
            else:
                raise IndexUnavailableError(f"No search index at {path}; run `archiver reindex` to build it.")
        except (ValueError, OSError) as e:
            raise IndexUnavailableError(
                f"The search index at {path} cannot be opened ({e}); run `archiver reindex` to rebuild it."
            ) from e
        S.register_tokenizers(index)
        return cls(path, index, heap_mb=heap_mb, lock_timeout=lock_timeout, hits=hits)

    @classmethod
    def in_memory(cls, *, heap_mb: int = 64) -> MessageIndex:
        """An index that lives in memory only, with the archive's schema and tokenizers: for
        checking a few messages against queries without writing their words anywhere."""
        index = tantivy.Index(S.build_schema())
        S.register_tokenizers(index)
        return cls(Path(":memory:"), index, heap_mb=heap_mb, lock_timeout=10.0, hits=None)

    def close(self) -> None:
        """Release the writer (uncommitted changes are discarded) and forget the index."""
        if self._writer is not None:
            try:
                self._writer.rollback()
            finally:
                self._writer = None
        self._closed = True

    def __enter__(self) -> MessageIndex:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _writer_now(self) -> tantivy.IndexWriter:
        """The writer, opened on first use; waits up to lock_timeout for another holder."""
        if self._closed:
            raise IndexUnavailableError("The search index is closed.")
        if self._writer is not None:
            return self._writer
        threads = max(1, min(os.cpu_count() or 1, 4, self._heap_mb // _MIN_HEAP_PER_THREAD_MB))
        deadline = time.monotonic() + self._lock_timeout
        while True:
            try:
                self._writer = self._index.writer(heap_size=self._heap_mb * 1_000_000, num_threads=threads)
                return self._writer
            except ValueError as e:
                if "lock" not in str(e).lower():
                    raise IndexUnavailableError(f"Cannot write to the search index at {self.path}: {e}") from e
                if time.monotonic() >= deadline:
                    raise LockedError(
                        f"Another process is writing to the search index at {self.path}; "
                        "try again when it has finished."
                    ) from e
                time.sleep(0.05)

    def _release_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.wait_merging_threads()  # consumes the writer and frees the lock

    # --- writing ---------------------------------------------------------------------------

    def add(self, docs: Iterable[IndexDoc], *, replace: bool = True) -> None:
        """Add documents, replacing any already indexed under the same id (visible after commit).

        ``replace=False`` is for ids the index cannot hold yet (objects stored in this very
        ingest): it skips a delete per document, which tantivy would otherwise apply to every
        segment at the next commit.
        """
        for doc in docs:
            writer = self._writer_now()
            if replace:
                writer.delete_documents_by_term(S.F_ID, doc.id.lower())
            writer.add_document(S.to_document(doc))

    def delete(self, ids: Iterable[str]) -> None:
        """Delete documents by id (visible after commit; text physically goes in merge_and_gc)."""
        for doc_id in ids:
            self._writer_now().delete_documents_by_term(S.F_ID, doc_id.lower())

    def commit(self, *, release: bool = True) -> None:
        """Make pending adds/deletes durable and visible, then release the writer lock.

        ``release=False`` keeps the writer (and its lock) for more adds: releasing waits for
        tantivy's background merges, which a long import would otherwise sit through at every
        intermediate commit.  Whoever keeps it must end with a releasing commit (or close()).
        """
        if self._writer is None:
            return
        self._writer.commit()
        if release:
            self._release_writer()
        self._index.reload()

    def rollback(self) -> None:
        """Discard pending adds/deletes and release the writer lock."""
        if self._writer is not None:
            self._writer.rollback()
            self._release_writer()

    def clear(self) -> None:
        """Delete every document (for reindex) and commit."""
        self._writer_now().delete_all_documents()
        self.commit()
        self.garbage_collect()

    def garbage_collect(self) -> None:
        """Remove files no longer referenced by the index (old segments after merges/deletes)."""
        self._writer_now().garbage_collect_files()
        self._release_writer()

    def merge_and_gc(self, reload_docs: Callable[[Sequence[str]], Iterable[IndexDoc]] | None = None) -> int:
        """Make deleted documents' text physically gone from disk; returns how many docs were rewritten.

        tantivy keeps a deleted document's postings and stored fields until its segment is
        merged, and the Python binding cannot force a merge.  But a segment whose documents are
        all deleted is dropped at commit.  So, for each segment that holds deleted documents,
        we delete its live documents and add them again from ``reload_docs`` (which returns
        the IndexDoc of each id, from the store); then we commit and garbage-collect the files.
        Without ``reload_docs`` only finished merges are collected.
        """
        self.commit()
        rewritten = 0
        if reload_docs is not None:
            ids = self._live_ids_in_segments_with_deletes()
            if ids:
                # Delete first: an id the store no longer returns must not stay live in the segment.
                self.delete(ids)
                self.add(reload_docs(ids))
                self.commit()
                rewritten = len(ids)
        self.garbage_collect()
        return rewritten

    def deleted_docs_on_disk(self) -> int:
        """How many deleted documents still occupy the segments (0 after merge_and_gc)."""
        return sum(seg["deleted"] for seg in self._segment_metas())

    def _segment_metas(self) -> list[dict[str, int]]:
        meta = json.loads((self.path / "meta.json").read_text(encoding="utf-8"))
        out = []
        for seg in meta.get("segments", []):
            deletes = seg.get("deletes") or {}
            out.append({"max_doc": int(seg["max_doc"]), "deleted": int(deletes.get("num_deleted_docs", 0))})
        return out

    def _live_ids_in_segments_with_deletes(self) -> list[str]:
        """Ids of live docs sharing a segment with deleted docs (all live ids if unsure)."""
        self._index.reload()
        searcher = self._index.searcher()
        metas = self._segment_metas()
        if not any(m["deleted"] for m in metas):
            return []
        by_segment: dict[int, list[str]] = {}
        for addr in self._all_addresses(searcher):
            doc_id = searcher.doc(addr).get_first(S.F_ID)
            by_segment.setdefault(addr.segment_ord, []).append(str(doc_id))
        # Searcher segment ordinals follow meta.json's order; check it by the live counts and
        # rewrite everything if they disagree (correct, only slower).
        live = [m["max_doc"] - m["deleted"] for m in metas]
        if len(metas) != searcher.num_segments or any(len(by_segment.get(i, [])) != n for i, n in enumerate(live)):
            return [i for ids in by_segment.values() for i in ids]
        return [i for ordinal, m in enumerate(metas) if m["deleted"] for i in by_segment.get(ordinal, [])]

    # --- reading ---------------------------------------------------------------------------

    def reload(self) -> None:
        """See other processes' commits now rather than within a second."""
        self._index.reload()

    def count(self) -> int:
        """Number of live (committed, not deleted) documents."""
        return int(self._index.searcher().num_docs)

    def matching_ids(
        self,
        query: str,
        *,
        restriction: Restriction = UNRESTRICTED,
    ) -> list[str]:
        """Ids of every message matching ``query``, newest first, without snippets or display fields.

        For selections (query holds and rules, exports): on a large result set describing every
        hit and building its snippet would be nearly all the cost of :meth:`search`.
        """
        q = self._restricted(parse_query(query), restriction)
        searcher = self._index.searcher()
        try:
            result = searcher.search(q, max(1, searcher.num_docs), count=False, order_by_field=S.F_DATE)
        except ValueError as e:
            raise QueryError(f"The query {query!r} could not be run ({e}); make it more specific.") from e
        out = []
        for _key, addr in result.hits:
            values = searcher.doc(addr).get_all(S.F_ID)
            if values:
                out.append(str(values[0]))
        return out

    def count_matching(
        self,
        query: str,
        *,
        restriction: Restriction = UNRESTRICTED,
    ) -> int:
        """How many messages match ``query`` within the same exclusions and restrictions as :meth:`search`.

        For counts shown to a walled web user (their live-message count): no hit is read or described.
        """
        q = self._restricted(parse_query(query), restriction)
        result = self._index.searcher().search(q, 1, count=True)
        return int(getattr(result, "count", None) or 0)

    def all_ids(self) -> set[str]:
        """Every indexed id (for verify: compare with the catalog)."""
        searcher = self._index.searcher()
        live = searcher.terms_with_prefix(S.F_ID, "", filter_query=tantivy.Query.all_query())
        return {term for term, n in live if n > 0}

    def search(
        self,
        query: str,
        *,
        limit: int = 20,
        offset: int = 0,
        sort: Literal["date", "relevance"] = "date",
        restriction: Restriction = UNRESTRICTED,
    ) -> SearchResult:
        """Run a query (see query.py for the language); newest first unless sort="relevance".

        ``limit=0`` returns every hit (:meth:`matching_ids` is cheaper for selections).
        ``restriction`` (a web user's walls and allowed list) applies to hits and to the total.
        The hits are described by the ``HitSource`` given to :meth:`open`, in one call for the
        page.  Raises QueryError for a malformed query.
        """
        parsed = parse_query(query)
        q = self._restricted(parsed, restriction)
        searcher = self._index.searcher()
        # No page is larger than the index, and no offset lies beyond it: tantivy allocates
        # room for limit + offset hits up front (--limit 5000000000 asked it for 240 GB).
        docs = max(1, searcher.num_docs)
        limit = docs if limit <= 0 else min(limit, docs)
        offset = min(max(0, offset), docs)
        try:
            if sort == "date":
                result = searcher.search(q, limit, count=True, order_by_field=S.F_DATE, offset=offset)
            else:
                result = searcher.search(q, limit, count=True, offset=offset)
        except ValueError as e:  # e.g. a prefix expanding beyond tantivy's automaton limits
            raise QueryError(f"The query {query!r} could not be run ({e}); make it more specific.") from e
        # (id, lead, score): the order key is the score when sorting by relevance, else the date.
        found = []
        for key, addr in result.hits:
            doc = searcher.doc(addr)
            stored = doc.get_first(S.F_LEAD)
            lead = stored.decode("utf-8", "replace") if isinstance(stored, bytes) else ""
            found.append((str(doc.get_first(S.F_ID) or ""), lead, float(key) if sort == "relevance" else 0.0))
        # The binding's stub omits SearchResult.count, which search(count=True) fills in.
        total = int(getattr(result, "count", None) or 0)
        shown = self._hits.describe([f[0] for f in found]) if self._hits is not None and found else {}
        highlight = self._with_prefix_words(q, parsed, [lead for _, lead, _ in found])
        snippets = tantivy.SnippetGenerator.create(searcher, highlight, self._schema, S.F_BODY)
        snippets.set_max_num_chars(SNIPPET_CHARS)
        hits = tuple(
            _hit(doc_id, shown.get(doc_id, HitDisplay()), make_snippet(snippets, lead), score)
            for doc_id, lead, score in found
        )
        return SearchResult(total=total, hits=hits)

    def facets(
        self,
        query: str,
        fields: Sequence[Literal["client", "matter", "source"]] = ("client", "matter"),
        *,
        restriction: Restriction = UNRESTRICTED,
    ) -> dict[str, list[tuple[str, int]]]:
        """Per-value hit counts of the label fields among the messages matching ``query``.

        The same exclusions and restrictions as :meth:`search` apply, so a facet never counts a
        message the caller may not see.  Values are the lower-cased indexed labels.
        """
        q = self._restricted(parse_query(query), restriction)
        searcher = self._index.searcher()
        out: dict[str, list[tuple[str, int]]] = {}
        for field in fields:
            name = {"client": S.F_CLIENT, "matter": S.F_MATTER, "source": S.F_SOURCE}[field]
            terms = searcher.terms_with_prefix(name, "", filter_query=q)
            out[field] = sorted(((str(t), int(n)) for t, n in terms if n > 0), key=lambda tn: (-tn[1], tn[0]))
        return out

    def _with_prefix_words(self, q: tantivy.Query, parsed: ParsedQuery, leads: Sequence[str]) -> tantivy.Query:
        """``q`` plus the words of ``leads`` that the query's body prefixes expand to, for the snippets.

        tantivy's snippet generator highlights the terms a query names, and a prefix names
        none, so ``contract*`` gave the body's start, unmarked.  The words are looked up in the
        stored leads of this page only (the analyzer over a few hundred characters per hit, and
        only for queries with a prefix), not in the term dictionary, which for a short prefix
        holds thousands of words.  The result is for highlighting only, never for matching.
        """
        prefixes = self._translator.body_prefixes(parsed)
        if not prefixes:
            return q
        analyzer = self._translator.analyzer
        words = sorted({w for lead in leads for w in analyzer.analyze(lead) if w.startswith(prefixes)})
        if not words:
            return q
        terms = [tantivy.Query.term_query(self._schema, S.F_BODY, w, index_option="freq") for w in words]
        return tantivy.Query.boolean_query([(tantivy.Occur.Should, x) for x in (q, *terms)])

    def _restricted(self, parsed: ParsedQuery, restriction: Restriction) -> tantivy.Query:
        """``parsed`` within a restriction: Must(one label of ``only``), MustNot(every excluded one).

        A pair is one clause requiring both the client and the matter on the same message, so
        ``globex/20871-0003`` does not let in acme's matter of the same number.
        """
        q = self._translator.translate(parsed)
        if restriction.only is not None:
            allowed = self._label_queries(restriction.only)
            # An empty allowed list allows nothing (a MustNot on everything).
            scope = (
                (tantivy.Occur.Must, tantivy.Query.boolean_query([(tantivy.Occur.Should, a) for a in allowed]))
                if allowed
                else (tantivy.Occur.MustNot, tantivy.Query.all_query())
            )
            q = tantivy.Query.boolean_query([(tantivy.Occur.Must, q), scope])
        excluded = self._label_queries(restriction.exclude)
        if not excluded:
            return q
        return tantivy.Query.boolean_query(
            [(tantivy.Occur.Must, q), *((tantivy.Occur.MustNot, term) for term in excluded)]
        )

    def _label_queries(self, labels: Labels) -> list[tantivy.Query]:
        """One query per client, matter and (client, matter) pair of ``labels`` (blank ones skipped)."""
        out = [self._label(S.F_CLIENT, c) for c in labels.clients if c.strip()]
        out += [self._label(S.F_MATTER, m) for m in labels.matters if m.strip()]
        out += [self._pair(c, m) for c, m in labels.pairs if c.strip() and m.strip()]
        return out

    def _label(self, field: str, value: str) -> tantivy.Query:
        return tantivy.Query.term_query(self._schema, field, value.strip().lower(), index_option="basic")

    def _pair(self, client: str, matter: str) -> tantivy.Query:
        return tantivy.Query.boolean_query(
            [
                (tantivy.Occur.Must, self._label(S.F_CLIENT, client)),
                (tantivy.Occur.Must, self._label(S.F_MATTER, matter)),
            ]
        )

    @staticmethod
    def _all_addresses(searcher: tantivy.Searcher) -> list[tantivy.DocAddress]:
        n = searcher.num_docs
        if n == 0:
            return []
        return [addr for _, addr in searcher.search(tantivy.Query.all_query(), n, count=False).hits]


def _fields(path: Path) -> list[Any] | None:
    """The fields (names and every option) recorded in an index's meta.json (the binding exposes no
    field list), or None when it is unreadable."""
    try:
        fields = json.loads((path / "meta.json").read_text(encoding="utf-8")).get("schema")
    except (OSError, ValueError, AttributeError):
        return None
    return fields if isinstance(fields, list) else None


@functools.cache
def _expected_fields() -> list[Any] | None:
    """:func:`_fields` of an index of the current schema, written once per process to a scratch folder.

    Comparing whole field entries, not names, makes any schema change (a stored flag, a
    tokenizer, positions) an outdated index that writers rebuild.
    """
    with tempfile.TemporaryDirectory(prefix="archiver-schema-") as scratch:
        tantivy.Index(S.build_schema(), path=scratch, reuse=False)
        return _fields(Path(scratch))


def _hit(doc_id: str, shown: HitDisplay, snippet: Snippet, score: float) -> SearchHit:
    return SearchHit(
        id=doc_id,
        message_id=shown.message_id,
        date=shown.date,
        from_=shown.from_,
        to=shown.to,
        subject=shown.subject,
        client=shown.client,
        matters=shown.matters,
        snippet=snippet.text,
        highlights=snippet.highlights,
        score=score,
    )


def make_snippet(generator: tantivy.SnippetGenerator, body: str) -> Snippet:
    """The best-matching fragment of ``body`` with char-offset highlights, else its beginning."""
    if body:
        sn = generator.snippet_from_doc(tantivy.Document(**{S.F_BODY: body}))
        fragment = sn.fragment()
        if fragment and sn.highlighted():
            raw = fragment.encode("utf-8")
            # tantivy gives byte offsets into the fragment; Python wants characters.
            ranges = tuple(
                (len(raw[: r.start].decode("utf-8", "ignore")), len(raw[: r.end].decode("utf-8", "ignore")))
                for r in sn.highlighted()
            )
            return Snippet(fragment.translate(_SPACES), ranges)
    return Snippet(_lead(body))


def _lead(body: str) -> str:
    """The first SNIPPET_CHARS of the body with whitespace collapsed, cut at a word boundary."""
    text = " ".join(body.split())
    if len(text) <= SNIPPET_CHARS:
        return text
    cut = text.rfind(" ", 0, SNIPPET_CHARS)
    return text[: cut if cut > SNIPPET_CHARS // 2 else SNIPPET_CHARS] + "…"
