"""Email archiving and compliance daemon.

The package is layered (see docs/architecture.md): ``connectors`` (a leaf package)
produce raw messages, ``archiver.normalize`` parses them, ``archiver.store`` keeps
them encrypted and tamper-evident, ``archiver.index`` makes them searchable, and the
CLI, daemon and web server are thin shells on top.
"""

__version__ = "0.1.0"
