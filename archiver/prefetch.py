"""Run a producer generator one step ahead, in its own thread.

Why: the ingest writer is the bottleneck, and until now it also walked folders, read
files and waited on IMAP/EWS round trips between its commits.  Those waits release the
GIL, so a thread that fetches the next batch while the writer commits this one turns
them into overlap instead of idle time.

The producer generator is created, advanced and closed in the producer thread only
(imapclient connections and generators are not to be shared between threads); the
consumer sees exactly the items and the exception the generator would have given it,
in order.  The logging context (structlog contextvars) is copied into the thread,
since contextvars do not follow work into threads on their own.  Closing the consumer
side early (``break``, an exception) asks the producer to stop at its next item and
closes the generator there, so a connector's ``finally`` (logout) still runs.
"""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Callable, Generator, Iterator
from typing import Final, TypeVar

T = TypeVar("T")

#: how long the consumer waits for the producer to wind down after stopping early (a producer
#: stuck in a network read is left behind: the thread is a daemon and does not hold the process).
JOIN_SECONDS: Final = 10.0
_POLL: Final = 0.1


class _End:
    """Marks the end of the items (with the producer's exception, if any)."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


def prefetch(
    start: Callable[[], Iterator[T]], depth: int = 2, name: str = "archiver-prefetch"
) -> Generator[T, None, None]:
    """Yield the items of ``start()``, computed up to ``depth`` items ahead in another thread."""
    if depth < 1:
        raise ValueError("depth must be at least 1")
    items: queue.Queue[T | _End] = queue.Queue(maxsize=depth)
    stopping = threading.Event()

    def put(item: T | _End) -> bool:
        while not stopping.is_set():
            try:
                items.put(item, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        error: BaseException | None = None
        gen: Iterator[T] | None = None
        try:
            gen = start()
            for item in gen:
                if not put(item):
                    return
        except BaseException as exc:  # handed to the consumer, which raises it
            error = exc
        finally:
            close = getattr(gen, "close", None)
            if close is not None:
                try:
                    close()
                except Exception as exc:
                    error = error or exc
        put(_End(error))

    ctx = contextvars.copy_context()
    thread = threading.Thread(target=ctx.run, args=(produce,), name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            yield item
    finally:
        stopping.set()
        thread.join(JOIN_SECONDS)
