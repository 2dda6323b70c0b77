"""Build the file-import connector from a ``type: files`` source."""

from __future__ import annotations

from archiver.config import FilesSource
from connectors.files import FilesConnector


def build_files(src: FilesSource) -> FilesConnector:
    """A :class:`FilesConnector` over the source's paths (``~`` expanded).

    Relative paths are taken as the config loader left them; the connector makes
    them absolute so checkpoint keys do not depend on the daemon's working folder.
    """
    return FilesConnector(src.name, [p.expanduser() for p in src.paths], batch_size=src.batch_size)
