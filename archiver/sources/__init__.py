"""Build connectors from the config, and keep one source's fault inside that source.

Connectors are a leaf package and never see the archive's config types; this
package translates a source's config (secrets read from the environment or files
here, never logged) into a connector instance.  One module per connector family.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

from archiver.config import SourceConfig
from archiver.errors import ArchiverError, ConfigError
from archiver.logging import get_logger
from connectors.base import Batch, Connector, SourceFailure, where_raised
from connectors.errors import ConnectorError

log = get_logger("archiver.sources")


def build_connector(src: SourceConfig) -> Connector:
    """A ready-to-run connector for one configured source."""
    if src.type == "files":
        from archiver.sources.files import build_files

        return build_files(src)
    if src.type == "imap":
        from archiver.sources.imap import build_imap

        return build_imap(src)
    if src.type == "ews":
        from archiver.sources.exchange import build_ews

        return build_ews(src)
    if src.type == "graph":
        from archiver.sources.exchange import build_graph

        return build_graph(src)
    raise ConfigError(f"Source {src.name!r} has an unknown type {src.type!r}.")


class IsolatedConnector:
    """A connector whose unexpected exceptions become a failure of its own source.

    The pipeline reports a :class:`ConnectorError` as the source's failure, but anything
    else (a bug, a UnicodeError from a library, an ``ArchiverError`` raised inside a
    connector) went through the pipeline and out of ``archiver sync`` as a traceback,
    and the sources after it were never synced.  Here such an exception ends this
    source with a ``SourceFailure`` (``whole``: exit 11) naming the exception's type
    and where it was raised.  Its text is left out: a library's message may quote a
    secret (imaplib's UnicodeEncodeError quoted a password character); an
    ``ArchiverError``'s text is a sentence meant for the user and is kept.

    A wrapper rather than a change to ``build_connector``, whose callers (and tests)
    expect the connector's own class.
    """

    def __init__(self, inner: Connector) -> None:
        self.inner = inner
        self.name = inner.name

    def batches(self, checkpoints: Mapping[str, str]) -> Iterator[Batch]:
        try:
            yield from self.inner.batches(checkpoints)
        except ConnectorError:
            raise  # the pipeline reports these as the source's failure already
        except ArchiverError as exc:
            yield failure_batch(self.name, str(exc))
        except Exception as exc:
            where = where_raised(exc)
            log.error("source failed unexpectedly", source=self.name, error=type(exc).__name__, at=where)
            yield failure_batch(self.name, unexpected(self.name, exc))


def first_line(path: Path) -> str:
    """The first line of a secret file ("" when it has none), without a UTF-8 byte order mark.

    Windows editors (Notepad) save one; read as part of the secret it made the login fail,
    or imaplib raise UnicodeEncodeError quoting it.  Raises OSError or UnicodeDecodeError:
    each caller words those (and an empty secret) as its own kind of error.
    """
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    return lines[0] if lines else ""


def unexpected(source: str, exc: BaseException) -> str:
    """The report of an exception nobody expected: its type and place, not its (possibly secret) text."""
    return (
        f"Source {source!r} stopped on an unexpected {type(exc).__name__} at {where_raised(exc)}; "
        "this is a bug, please report it. The other sources were still synced."
    )


def failure_batch(source: str, reason: str) -> Batch:
    """A batch reporting that ``source`` could not be read as a whole (``sync`` exits 11)."""
    return Batch(failures=[SourceFailure(location=source, reason=reason, permanent=True, whole=True)])
