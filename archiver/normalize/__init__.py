"""Normalizer: raw message bytes -> ``ParsedMessage`` (best effort), text extraction, and tagging.

``parse_message`` never raises; ``Tagger`` files a parsed message under a client and matters.
"""

from archiver.normalize.parse import parse_message
from archiver.normalize.tagging import Tagger
from archiver.normalize.text import html_to_text

__all__ = ["Tagger", "html_to_text", "parse_message"]
