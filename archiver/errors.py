"""User-facing errors with stable exit codes.

Every error a user can cause is one of these: the CLI prints ``str(error)`` (a
sentence that says what to do) and exits with ``exit_code``; it never prints a
traceback for them.  This module imports nothing from the project so that every
layer can use it.
"""

from __future__ import annotations

import errno


class ArchiverError(Exception):
    """Something went wrong; the message says what and what to do about it."""

    exit_code = 1

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or self.__class__.__name__).strip())

    @property
    def message(self) -> str:
        return str(self)


class UsageError(ArchiverError):
    """The command line was not understood; see --help."""

    exit_code = 2


class ConfigError(ArchiverError):
    """The configuration file is invalid."""

    exit_code = 3


class ArchiveNotFound(ArchiverError):
    """No archive at this path; run `archiver init` first."""

    exit_code = 4


class ArchiveExists(ArchiverError):
    """An archive already exists at this path; refusing to overwrite it."""

    exit_code = 4


class PassphraseError(ArchiverError):
    """The passphrase is missing or wrong."""

    exit_code = 5


class LockedError(ArchiverError):
    """Another process holds the archive's lock; try again when it has finished."""

    exit_code = 6


class QueryError(ArchiverError):
    """The search query is malformed."""

    exit_code = 7


class NotFoundError(ArchiverError):
    """No such message in the archive."""

    exit_code = 8


class IntegrityError(ArchiverError):
    """The archive failed verification: something was altered or lost."""

    exit_code = 9


class PolicyError(ArchiverError):
    """A retention, hold or naming policy refused the operation."""

    exit_code = 10


class SourceError(ArchiverError):
    """A mail source could not be read."""

    exit_code = 11


class OutputError(ArchiverError):
    """Standard output (or error) could not be written: a full disk, a closed pipe.

    Raised by the CLI's printing helpers (archiver/cli/common.py) so that cli/main.py can tell
    a failed write of the output from any other OSError and handle it in one place.
    """

    def __init__(self, exc: OSError) -> None:
        self.errno = exc.errno
        super().__init__(f"Cannot write the output: {exc.strerror or exc}.")

    @property
    def closed_pipe(self) -> bool:
        """The reader went away (`archiver journal | head -1`): not worth a message."""
        return self.errno == errno.EPIPE
