"""Showing a message's HTML body safely.

Two independent layers, so that a gap in one is caught by the other:

1. nh3 (ammonia) sanitises the HTML on the server: scripts, event handlers, ``<style>``,
   forms, frames and objects go; ``style`` attributes keep only harmless properties (no
   ``position``, no ``url(...)``); images keep only ``data:image/...`` sources and links only
   ``mailto:`` (any remote URL would let a sender learn that the message was opened).
2. The result is served from its own endpoint with a Content-Security-Policy that forbids
   scripts and every fetch but ``data:`` images (``default-src 'none'``) and sandboxes the
   document, and is shown in an ``<iframe sandbox="">`` (no scripts, unique origin).

Attachment names are untrusted text too: :func:`show_bidi` and :func:`strip_bidi` keep their
direction controls from disguising a name.
"""

from __future__ import annotations

import nh3

#: the body frame's policy: nothing but inline styles and data: images, sandboxed.
FRAME_CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'self'; sandbox"
)

_TAGS = set(nh3.ALLOWED_TAGS) - {"area", "map"} | {"font", "tfoot"}
_ATTRIBUTES: dict[str, set[str]] = {tag: set(attrs) for tag, attrs in nh3.ALLOWED_ATTRIBUTES.items()}
_ATTRIBUTES["*"] = {"style", "title", "lang", "dir"}
_ATTRIBUTES["font"] = {"color", "face", "size"}
for _tag in ("table", "td", "th", "tr"):
    _ATTRIBUTES.setdefault(_tag, set()).update({"width", "height", "bgcolor", "valign", "border", "cellpadding"})
_ATTRIBUTES.pop("map", None)
_ATTRIBUTES.pop("area", None)

#: CSS properties a message may use (layout escapes and url() loaders are not among them).
_STYLE_PROPERTIES = {
    "color", "background-color", "font", "font-family", "font-size", "font-style", "font-weight",
    "text-align", "text-decoration", "text-indent", "text-transform", "line-height", "letter-spacing",
    "white-space", "vertical-align", "width", "max-width", "height", "margin", "margin-top",
    "margin-bottom", "margin-left", "margin-right", "padding", "padding-top", "padding-bottom",
    "padding-left", "padding-right", "border", "border-collapse", "border-color", "border-style",
    "border-width", "list-style-type", "direction",
}  # fmt: skip


def _filter(tag: str, attr: str, value: str) -> str | None:
    v = value.strip().lower()
    if attr in ("href", "cite") and not v.startswith("mailto:"):
        return None
    if attr == "src" and not v.startswith("data:image/"):
        return None
    if attr == "style" and ("url(" in v or "expression(" in v or "@import" in v):
        return None
    return value


def sanitize_html(html: str) -> str:
    """HTML with nothing that runs or fetches (see the module docstring)."""
    return nh3.clean(
        html,
        tags=_TAGS,
        clean_content_tags={"script", "style", "title", "head", "noscript", "template", "iframe", "object"},
        attributes=_ATTRIBUTES,
        attribute_filter=_filter,
        url_schemes={"mailto", "data"},
        filter_style_properties=_STYLE_PROPERTIES,
        link_rel="noopener noreferrer",
        strip_comments=True,
    )


def frame_document(body: str) -> str:
    """A whole HTML document for the body frame."""
    return (
        '<!doctype html><html><head><meta charset="utf-8"><meta name="referrer" content="no-referrer">'
        "</head><body>" + sanitize_html(body) + "</body></html>"
    )


#: Unicode's explicit direction marks, embeddings, overrides and isolates.  In a file name they
#: let "résumé \u202egpj.exe" display as "résumé exe.jpg".
BIDI_CONTROLS = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def show_bidi(text: str) -> str:
    """``text`` with every bidi control replaced by a visible ``[U+202E]``, for showing a file name."""
    return "".join(f"[U+{ord(c):04X}]" if c in BIDI_CONTROLS else c for c in text)


def strip_bidi(text: str) -> str:
    """``text`` without bidi controls, for the name a download is saved under."""
    return "".join(c for c in text if c not in BIDI_CONTROLS)
