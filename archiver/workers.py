"""Parallel CPU work: parsing, compressing and encrypting in worker processes.

Parsing dominates ingest time and Python threads cannot parallelise it, so the
pipeline hands each message to a process pool; the single writer in the parent
only appends, journals and indexes.  The master key reaches workers through the
pool initializer (memory only, never on disk or in a log).  Small jobs run
inline: starting processes costs more than it saves below a few dozen messages.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from archiver.config import TaggingConfig
from archiver.model import ParsedMessage, Tags
from archiver.normalize.parse import parse_message
from archiver.normalize.tagging import Tagger
from archiver.store.dictionary import Dictionaries, Trained
from archiver.store.objects import SealedObject, dictionary_from, message_id_of, seal, unseal

INLINE_BELOW = 48


@dataclass(frozen=True, slots=True)
class ParseOptions:
    max_parse_bytes: int
    max_attachment_text_chars: int
    matter_header: str
    #: tagging rules, so workers tag what needs no catalog (thread inheritance stays in the writer).
    tagging: TaggingConfig | None = None


_KEY: bytes | None = None
_OPTS: ParseOptions | None = None
#: the archive's compression dictionaries, read from its folder on first use in each process.
_DICTS: Dictionaries | None = None


def _init(key: bytes, opts: ParseOptions, dictionaries: Path | None) -> None:
    global _KEY, _OPTS, _TAGGER, _DICTS
    if _OPTS is not opts:
        _TAGGER = None
    if _DICTS is None or _DICTS.root != dictionaries or key != _KEY:
        _DICTS = Dictionaries(dictionaries, key) if dictionaries is not None else None
    _KEY, _OPTS = key, opts


def _init_worker(key: bytes, opts: ParseOptions, dictionaries: Path | None) -> None:
    """Worker process set-up: the parent alone handles Ctrl-C and SIGTERM and stops the pool."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _init(key, opts, dictionaries)


def parse_with(raw: bytes, received: datetime, opts: ParseOptions) -> ParsedMessage:
    """Parse with the archive's options: the one parse call everything uses (ingest, show, export, web)."""
    return parse_message(
        raw,
        received=received,
        max_parse_bytes=opts.max_parse_bytes,
        max_attachment_text_chars=opts.max_attachment_text_chars,
        matter_header=opts.matter_header,
    )


def prepare(task: tuple[bytes, str, datetime, int]) -> tuple[ParsedMessage, SealedObject, Tags | None]:
    """Parse, tag and seal one new message (runs in a worker) with compression dictionary ``task[3]`` (0: none).

    The parsed message goes back without what the writer does not use (the HTML body, the
    header list): pickling results is paid for in the writer's process.
    """
    raw, oid, received, dictionary = task
    assert _KEY is not None and _OPTS is not None
    parsed = parse_with(raw, received, _OPTS)
    tags = _tagger().tag(parsed) if _OPTS.tagging is not None else None
    sealed = seal(_KEY, raw, oid, _DICTS, dictionary)
    return replace(parsed, body_html="", headers=()), sealed, tags


_TAGGER: Tagger | None = None


def _tagger() -> Tagger:
    global _TAGGER
    if _TAGGER is None:
        assert _OPTS is not None and _OPTS.tagging is not None
        _TAGGER = Tagger(_OPTS.tagging)
    return _TAGGER


def reopen(task: tuple[str, int, bytes, bytes, datetime]) -> tuple[str, ParsedMessage | None, str]:
    """Decrypt and parse a stored object (reindex, retag, catch-up); errors are returned, not raised."""
    oid, codec, wrapped, payload, received = task
    assert _KEY is not None and _OPTS is not None
    try:
        raw = unseal(_KEY, oid, codec, wrapped, payload, _DICTS)
    except Exception as exc:
        return oid, None, f"cannot decrypt: {exc}"
    if message_id_of(raw) != oid:
        return oid, None, "does not hash to its id"
    return oid, parse_with(raw, received, _OPTS), ""


def train(sample: list[tuple[str, int, bytes, bytes]]) -> Trained | None:
    """Build a compression dictionary from sealed stored objects (Repository.dictionary_sample).

    Runs in a worker: decrypting a thousand messages and counting their lines would otherwise
    be the writer's time.
    """
    assert _KEY is not None and _DICTS is not None
    return dictionary_from(_KEY, _DICTS, sample)


class Workers:
    """A lazily started process pool (or inline execution) with the key installed."""

    def __init__(self, key: bytes, opts: ParseOptions, processes: int = 0, dictionaries: Path | None = None) -> None:
        """``dictionaries`` is the archive's dictionary folder (archiver/store/dictionary.py)."""
        self.key = key
        self.opts = opts
        self.dictionaries = dictionaries
        self.processes = processes or (os.cpu_count() or 1)
        self._pool: Any = None

    def _get_pool(self) -> Any:
        if self._pool is None:
            ctx = multiprocessing.get_context("spawn")
            self._pool = ctx.Pool(
                self.processes, initializer=_init_worker, initargs=(self.key, self.opts, self.dictionaries)
            )
        return self._pool

    def map(self, fn: Any, tasks: list[Any]) -> Iterator[Any]:
        """Results in order; inline for small jobs or a single process."""
        if self._inline(tasks):
            _init(self.key, self.opts, self.dictionaries)
            return iter([fn(t) for t in tasks])
        return iter(self._get_pool().imap(fn, tasks, chunksize=self._chunksize(tasks)))

    def submit(self, fn: Any, tasks: list[Any]) -> Any:
        """Start a job in the background when the pool is worth it; ``.get()`` returns the list."""
        if self._inline(tasks):
            return _Done(list(self.map(fn, tasks)))
        return self._get_pool().map_async(fn, tasks, chunksize=self._chunksize(tasks))

    def submit_one(self, fn: Any, task: Any) -> Any:
        """Run one big task in a worker (inline without a pool); ``.ready()``, ``.get()`` give its result."""
        if self.processes <= 1:
            _init(self.key, self.opts, self.dictionaries)
            return _Done(fn(task))
        return self._get_pool().apply_async(fn, (task,))

    def _inline(self, tasks: list[Any]) -> bool:
        """Run in this process: starting workers costs more than it saves on a small job."""
        return self.processes <= 1 or len(tasks) < INLINE_BELOW

    def _chunksize(self, tasks: list[Any]) -> int:
        return max(1, min(64, len(tasks) // (self.processes * 4)))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool.join()
            self._pool = None

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None and exc[0] is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None
        self.close()


class _Done:
    """A finished job, with the pool's AsyncResult interface."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def ready(self) -> bool:
        return True

    def get(self, timeout: float | None = None) -> Any:
        return self.value
