"""archiver.prefetch: same items, same exception, in order; early exit closes the producer."""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Iterator

import pytest

from archiver.prefetch import prefetch

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("VAR", default="unset")


def test_items_in_order_and_run_ahead_in_another_thread() -> None:
    threads: list[str] = []

    def gen() -> Iterator[int]:
        for i in range(100):
            threads.append(threading.current_thread().name)
            yield i

    assert list(prefetch(gen, depth=3, name="t-prefetch")) == list(range(100))
    assert set(threads) == {"t-prefetch"}


def test_the_producers_exception_reaches_the_consumer_after_its_items() -> None:
    def gen() -> Iterator[int]:
        yield 1
        yield 2
        raise KeyError("boom")

    got: list[int] = []
    with pytest.raises(KeyError, match="boom"):
        for x in prefetch(gen):
            got.append(x)
    assert got == [1, 2]


def test_breaking_early_closes_the_generator_in_the_producer_thread() -> None:
    closed: list[str] = []

    def gen() -> Iterator[int]:
        try:
            yield from range(10_000)
        finally:
            closed.append(threading.current_thread().name)

    it = prefetch(gen, depth=2, name="t-early")
    for x in it:
        if x == 5:
            break
    it.close()  # what a for loop's owner does when it goes away
    deadline = time.monotonic() + 5
    while not closed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert closed == ["t-early"], "the connector's finally (e.g. logout) runs, in its own thread"


def test_logging_context_follows_into_the_thread() -> None:
    seen: list[str] = []

    def gen() -> Iterator[int]:
        seen.append(VAR.get())
        yield 1

    token = VAR.set("source=imap-1")
    try:
        assert list(prefetch(gen)) == [1]
    finally:
        VAR.reset(token)
    assert seen == ["source=imap-1"]


def test_depth_must_be_positive() -> None:
    with pytest.raises(ValueError):
        list(prefetch(lambda: iter([1]), depth=0))
