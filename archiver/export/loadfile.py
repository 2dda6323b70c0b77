"""Concordance / Relativity DAT load files: writer and reader.

The de-facto standard delimiters (Concordance's defaults, which Relativity and most review
platforms accept):

* field separator ``¶``: the character U+0014 (ASCII 20, DC4);
* quote ``þ``: U+00FE (ASCII 254 in Latin-1), around every value;
* newline inside a value ``®``: U+00AE (ASCII 174 in Latin-1), replacing CR LF, CR and LF;
* records end with CR LF; the first record holds the field names.

The file is written in UTF-8 with a byte-order mark (which is how Relativity recognises a
UTF-8 load file), so the quote and newline characters take two bytes each (``C3 BE``,
``C2 AE``) while the field separator is the single byte ``14``.  Values cannot escape the
delimiters, so a U+0014 or U+00FE inside a value is replaced by U+FFFD; the exact values are
in manifest.json.  A literal ``®`` in a value reads back as a newline (a limit of the format).

Only the standard library is used, so an auditor can read load files with this module alone.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import IO

FIELD = "\x14"
QUOTE = "\u00fe"
NEWLINE = "\u00ae"
RECORD_END = "\r\n"
ENCODING = "utf-8-sig"


def _clean(value: str) -> str:
    value = value.replace("\r\n", "\n").replace("\r", "\n").replace("\n", NEWLINE)
    return value.replace(FIELD, "\ufffd").replace(QUOTE, "\ufffd")


def dat_line(values: Sequence[str]) -> str:
    """One record: quoted values separated by the field character, ending in CR LF."""
    return FIELD.join(f"{QUOTE}{_clean(v)}{QUOTE}" for v in values) + RECORD_END


class DatWriter:
    """Writes a header then one record per call to a text stream opened with ``ENCODING``."""

    def __init__(self, out: IO[str], fields: Sequence[str]) -> None:
        self.out = out
        self.fields = tuple(fields)
        out.write(dat_line(self.fields))

    def write(self, values: Sequence[str]) -> None:
        if len(values) != len(self.fields):
            raise ValueError(f"a load file record needs {len(self.fields)} values, got {len(values)}")
        self.out.write(dat_line(values))


def parse_record(line: str) -> list[str]:
    """One record (without its CR LF) back into values; raises ValueError when it is malformed."""
    if not (line.startswith(QUOTE) and line.endswith(QUOTE)) or len(line) < 2:
        raise ValueError("a load file record must start and end with the quote character (U+00FE)")
    parts = line[1:-1].split(QUOTE + FIELD + QUOTE)
    return [p.replace(NEWLINE, "\n") for p in parts]


def read_dat(stream: IO[str]) -> Iterator[dict[str, str]]:
    """Records of a DAT file as dicts keyed by the header's field names.

    ``stream`` must be opened with ``encoding=ENCODING`` and ``newline=""`` (so CR LF is kept).
    """
    header: list[str] | None = None
    for n, raw in enumerate(stream, 1):
        line = raw[:-2] if raw.endswith(RECORD_END) else raw.rstrip("\n")
        if not line:
            continue
        try:
            values = parse_record(line)
        except ValueError as exc:
            raise ValueError(f"load file line {n}: {exc}") from None
        if header is None:
            header = values
            continue
        if len(values) != len(header):
            raise ValueError(f"load file line {n}: {len(values)} fields, the header has {len(header)}")
        yield dict(zip(header, values, strict=True))
