"""Build connectors from the config.

Connectors are a leaf package and never see the archive's config types; this
package translates a source's config (secrets read from the environment or files
here, never logged) into a connector instance.  One module per connector family.
"""

from __future__ import annotations

from archiver.config import SourceConfig
from archiver.errors import ConfigError
from connectors.base import Connector


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
