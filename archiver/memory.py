"""Keep the C allocator from hoarding memory the index writer's threads have freed.

glibc gives every thread that allocates its own malloc arena (up to 8 per core), and
memory freed in an arena is rarely handed back to the system.  tantivy indexes and
merges segments in several native threads, each of which ends up with an arena full
of freed-but-kept blocks; on a 96,000-message import that grew the writer process
from ~190 MB to ~365 MB (RssAnon), in step with the corpus, while the live memory
stayed flat.  Capping the number of arenas at two, before those threads start, kept
the writer at ~195 MB on the same import at the same speed (docs/performance.md).

``mallopt`` rather than the ``MALLOC_ARENA_MAX`` environment variable, because the
variable is read once when the process starts, and ``archiver`` is started by users,
systemd units, containers and tests that cannot all be trusted to set it.  Arenas
are created lazily, so the cap applies to every thread created afterwards.
"""

from __future__ import annotations

import ctypes
from typing import Final

#: glibc's mallopt parameter number for the arena cap (malloc.h: ``#define M_ARENA_MAX -8``).
M_ARENA_MAX: Final = -8
#: arenas allowed: the main one plus one shared by all other threads; contention is negligible
#: because tantivy's threads allocate in large blocks.
DEFAULT_ARENAS: Final = 2

_done = False


def limit_malloc_arenas(arenas: int = DEFAULT_ARENAS) -> bool:
    """Cap glibc's malloc arenas; returns False (and does nothing) where that is not glibc."""
    global _done
    if _done:
        return True
    try:
        # The C library is already loaded; find_library("c") would start an ldconfig process.
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # musl, macOS: no mallopt, nothing to cap
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _done = bool(mallopt(M_ARENA_MAX, arenas))
    return _done
