"""Build the file-import connector from a ``type: files`` source."""

from __future__ import annotations

from connectors.files import FilesConnector

from archiver.config import FilesSource


def build_files(src: FilesSource) -> FilesConnector:
    """A :class:`FilesConnector` over the source's paths (already resolved by the config loader)."""
    return FilesConnector(src.name, list(src.paths))
