"""One daemon per archive: an exclusive flock on ``ARCHIVE/daemon.lock``.

This is not the repository's ``lock`` file, which every writer (the daemon's jobs,
an import, the web server) takes for one transaction at a time; two daemons
could take turns on that one and would sync every source twice.  The kernel
drops a flock when its holder dies, so a crashed daemon never leaves a stale lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from archiver.errors import LockedError
from archiver.locking import flock_within

LOCK_NAME = "daemon.lock"


class DaemonLock:
    """Held for the daemon's whole life; the file holds the holder's pid for the error message."""

    def __init__(self, archive_path: Path) -> None:
        self.path = archive_path / LOCK_NAME
        self._fd: int | None = None

    def acquire(self, wait_s: float = 2.0) -> None:
        """Take the lock, waiting briefly (``archiver status`` may be peeking at it)."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        if not flock_within(fd, wait_s, poll_s=0.1):
            pid = _read_pid(fd)
            os.close(fd)
            who = f" (pid {pid})" if pid else ""
            raise LockedError(
                f"Another archiver daemon{who} is already running for the archive at {self.path.parent}; "
                "only one daemon may run per archive. Stop it first (e.g. `systemctl stop archiver`)."
            )
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def daemon_running(archive_path: Path) -> int | None:
    """The running daemon's pid (0 if unknown), or None when no daemon holds the lock."""
    try:
        fd = os.open(archive_path / LOCK_NAME, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_pid(fd) or 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
