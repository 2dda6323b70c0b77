"""Mail connectors: they fetch raw messages and know nothing of the archive.

This package is a leaf: it must not import from ``archiver``.  A connector yields
``Batch`` objects (raw bytes + provenance + an opaque checkpoint); the archive's
pipeline commits each batch and only then saves the batch's checkpoint.
"""
