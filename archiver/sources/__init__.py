"""Build connectors from the config, and keep one source's fault inside that source.

Connectors are a leaf package and never see the archive's config types; this
package translates a source's config (secrets read from the environment or files
here, never logged) into a connector instance.  One module per connector family.
"""

from __future__ import annotations

from pathlib import Path

from archiver.config import SourceConfig
from archiver.errors import ConfigError
from connectors.base import Connector, where_raised


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
