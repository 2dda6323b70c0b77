"""Naming policies: the file names and folders a message gets when it is exported or filed.

A name comes from a Python format template in the config (``naming.template``), e.g.
``{client}-{matter}/{date:%Y}/{date:%Y%m%dT%H%M%SZ}_{from_local}_{subject_slug}_{id:.12}.eml``.
The values come from the message, which anyone can write, so they are treated as hostile:

* every value is sanitised *before* it is put into the template, so a subject such as
  ``../../etc/passwd`` cannot add folders: only the template's own ``/`` separate folders;
* every folder and file name component is then sanitised again for all three common file
  systems: Unicode NFC (macOS would otherwise normalise behind our back), no control
  characters, none of ``<>:"/\\|?*``, no trailing dots or spaces (Windows drops them), no
  ``.``/``..``, no reserved device names (``CON``, ``NUL``, ``COM1`` ...), at most
  ``COMPONENT_MAX_CHARS`` characters and ``COMPONENT_MAX_BYTES`` UTF-8 bytes per component;
* the whole path is limited to ``naming.max_length`` characters;
* names are unique: :class:`UniqueNamer` compares them case-insensitively (Windows and macOS
  file systems are) and gives a colliding name a suffix made from the message id, so the
  result depends only on the message and the set of messages named before it;
* the same message always gets the same base name (no clock, no randomness, no counters).

The template itself is validated when the policy is built: only the documented fields, no
attribute or index access (``{id.__class__}``), and format specs that work.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from archiver.errors import PolicyError

#: the fields a template may use (docs: NamingConfig in archiver/config.py).
FIELDS = (
    "client",
    "matter",
    "date",
    "from_local",
    "from_domain",
    "subject_slug",
    "id",
    "message_id_slug",
    "source",
    "folder",
)
COMPONENT_MAX_CHARS = 120
COMPONENT_MAX_BYTES = 240
SLUG_MAX_CHARS = 60
NO_MATTER = "nomatter"

_FORBIDDEN = re.compile(r'[<>:"/\\|?*\x00-\x1f\x7f]')
_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"{dev}{n}" for dev in ("COM", "LPT") for n in ("0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "¹", "²", "³")}
)
_SLUG_DROP = re.compile(r"[^\w]+", re.UNICODE)


@dataclass(frozen=True, slots=True, kw_only=True)
class NameFields:
    """What a name may be built from: everything is already known about the message."""

    id: str
    date: datetime
    client: str = "unfiled"
    matters: tuple[str, ...] = ()
    from_addr: str = ""
    subject: str = ""
    message_id: str = ""
    source: str = ""
    folder: str = ""


def _clean_chars(text: str) -> str:
    """NFC, no control or format characters, none of the characters Windows forbids."""
    text = unicodedata.normalize("NFC", text)
    text = "".join(" " if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") else c for c in text)
    return _FORBIDDEN.sub("_", text)


def slug(text: str, default: str, max_chars: int = SLUG_MAX_CHARS) -> str:
    """Lower-case words joined by '-', any script kept; ``default`` when nothing is left."""
    words = _SLUG_DROP.sub("-", unicodedata.normalize("NFC", text).lower()).strip("-_")
    words = re.sub(r"[-_]{2,}", "-", words)
    if len(words) > max_chars:
        words = words[:max_chars].rstrip("-_")
    return words or default


def _value(text: str, default: str) -> str:
    """A field value made safe to put into a template (no separators, no dots-only values)."""
    text = " ".join(_clean_chars(text).split()).strip(" .")
    return text or default


def _truncate_bytes(text: str, max_bytes: int) -> str:
    raw = text.encode("utf-8")
    if len(raw) <= max_bytes:
        return text
    return raw[:max_bytes].decode("utf-8", "ignore")


def _split_ext(name: str) -> tuple[str, str]:
    stem, dot, ext = name.rpartition(".")
    if dot and stem and 0 < len(ext) <= 10 and ext.isalnum():
        return stem, "." + ext
    return name, ""


def sanitize_component(name: str, max_chars: int = COMPONENT_MAX_CHARS) -> str:
    """One folder or file name, safe on Windows, macOS and Linux (keeps a short extension)."""
    name = " ".join(_clean_chars(name).split())
    name = name.strip(" ").rstrip(". ")
    if name in ("", ".", ".."):
        name = "_"
    stem, ext = _split_ext(name)
    limit = max(1, max_chars - len(ext))
    if len(stem) > limit:
        stem = stem[:limit]
    stem = _truncate_bytes(stem, COMPONENT_MAX_BYTES - len(ext.encode("utf-8")))
    stem = stem.rstrip(". ") or "_"
    if stem.split(".")[0].strip().upper() in _RESERVED:
        stem = "_" + stem
    return stem + ext


def sanitize_path(path: str, max_length: int) -> str:
    """A relative path of sanitised components, at most ``max_length`` characters long.

    Too long a path is shortened by trimming its longest component (the file name's
    extension is kept) until it fits.
    """
    parts = [sanitize_component(p) for p in path.replace("\\", "/").split("/") if p.strip()]
    if not parts:
        parts = ["_"]
    max_length = max(max_length, 2 * len(parts))
    while len("/".join(parts)) > max_length:
        over = len("/".join(parts)) - max_length
        i = max(range(len(parts)), key=lambda k: (len(_split_ext(parts[k])[0]), k))
        stem, ext = _split_ext(parts[i])
        if len(stem) <= 1:
            parts = parts[1:] if len(parts) > 1 else ["_"]  # pathological: drop a folder level
            continue
        parts[i] = sanitize_component(stem[: max(1, len(stem) - over)] + ext)
    return "/".join(parts)


def _check_template(template: str) -> None:
    try:
        items = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise PolicyError(f"The naming template {template!r} is malformed: {exc}.") from None
    for _lit, field_name, spec, conv in items:
        if field_name is None:
            continue
        if field_name not in FIELDS:
            raise PolicyError(
                f"The naming template {template!r} uses {{{field_name}}}; the fields are: {', '.join(FIELDS)}."
            )
        if conv not in (None, "s"):
            raise PolicyError(f"The naming template {template!r} uses the conversion !{conv}; only !s is allowed.")
        if spec and "{" in spec:
            raise PolicyError(f"The naming template {template!r} nests a field inside a format spec.")
    if template.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", template):
        raise PolicyError(f"The naming template {template!r} is an absolute path; names must be relative.")


class NamingPolicy:
    """Turns a message's fields into a safe relative path, deterministically."""

    def __init__(self, template: str, max_length: int = 200) -> None:
        _check_template(template)
        self.template = template
        self.max_length = max_length
        try:  # fail now, on a sample, rather than in the middle of an export
            self.base_name(NameFields(id="0" * 64, date=datetime(2000, 1, 1, tzinfo=UTC)))
        except PolicyError:
            raise
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise PolicyError(f"The naming template {template!r} cannot be applied: {exc}.") from None

    @classmethod
    def from_config(cls, cfg: Any) -> NamingPolicy:
        """From a NamingConfig (``template``, ``max_length``)."""
        return cls(cfg.template, cfg.max_length)

    def values(self, f: NameFields) -> dict[str, Any]:
        local, _, domain = f.from_addr.rpartition("@") if "@" in f.from_addr else (f.from_addr, "", "")
        date = f.date.astimezone(UTC) if f.date.tzinfo else f.date.replace(tzinfo=UTC)
        return {
            "client": _value(f.client, "unfiled"),
            "matter": _value(sorted(f.matters)[0], NO_MATTER) if f.matters else NO_MATTER,
            "date": date,
            "from_local": _value(local, "unknown"),
            "from_domain": _value(domain, "unknown"),
            "subject_slug": slug(f.subject, "no-subject"),
            "id": f.id.lower(),
            "message_id_slug": slug(f.message_id.strip("<>"), "no-message-id"),
            "source": _value(f.source, "nosource"),
            "folder": _value(f.folder, "nofolder"),
        }

    def base_name(self, f: NameFields) -> str:
        """The name before collision handling: the same for the same message, always."""
        try:
            rendered = self.template.format_map(self.values(f))
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise PolicyError(f"The naming template {self.template!r} cannot be applied: {exc}.") from None
        return sanitize_path(rendered, self.max_length)


class UniqueNamer:
    """Hands out unique names: a colliding name gets ``~<id prefix>`` before its extension.

    Collisions are found case-insensitively and after NFC (what Windows and macOS treat as
    the same file), and a file may not take a folder's name or the other way round.
    """

    def __init__(self, policy: NamingPolicy) -> None:
        self.policy = policy
        self._files: set[str] = set()
        self._dirs: set[str] = set()

    @staticmethod
    def _key(path: str) -> str:
        return unicodedata.normalize("NFC", path).casefold()

    def _free(self, path: str) -> bool:
        key = self._key(path)
        if key in self._files or key in self._dirs:
            return False
        parts = key.split("/")
        return not any("/".join(parts[:i]) in self._files for i in range(1, len(parts)))

    def claim(self, path: str) -> None:
        key = self._key(path)
        self._files.add(key)
        parts = key.split("/")
        self._dirs.update("/".join(parts[:i]) for i in range(1, len(parts)))

    def assign(self, f: NameFields) -> str:
        base = self.policy.base_name(f)
        if self._free(base):
            self.claim(base)
            return base
        folder, _, leaf = base.rpartition("/")
        stem, ext = _split_ext(leaf)
        for n in (12, 20, 32, 64):
            tail = f"~{f.id.lower()[:n]}"
            candidate = f"{folder}/{stem}" if folder else stem
            candidate = sanitize_path(candidate, self.policy.max_length - len(tail) - len(ext)) + tail + ext
            if self._free(candidate):
                self.claim(candidate)
                return candidate
        counter = 2
        while True:  # the same id named twice: only a caller's mistake gets here
            candidate = f"{base[: -len(ext) or None]}~{f.id[:12]}-{counter}{ext}"
            if self._free(candidate):
                self.claim(candidate)
                return candidate
            counter += 1


def fields_of(
    oid: str,
    parsed: Any,
    client: str,
    matters: Sequence[str],
    provenance: Iterable[Mapping[str, Any]] = (),
) -> NameFields:
    """NameFields from a ParsedMessage, its tags and its provenance rows (the first copy names the source)."""
    first = next(iter(provenance), None)
    sender = parsed.from_[0].addr if parsed.from_ else ""
    return NameFields(
        id=oid,
        date=parsed.date,
        client=client,
        matters=tuple(matters),
        from_addr=sender,
        subject=parsed.subject,
        message_id=parsed.message_id,
        source=str(first.get("source", "")) if first else "",
        folder=str(first.get("folder", "")) if first else "",
    )
