"""Waiting for an exclusive ``flock`` with a deadline (the archive's writer lock, the daemon lock)."""

from __future__ import annotations

import fcntl
import time


def flock_within(fd: int, wait_s: float, poll_s: float = 0.05) -> bool:
    """Take an exclusive lock on ``fd``, retrying until ``wait_s`` has passed; False if it never came free."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(poll_s)
