"""The Concordance DAT writer and reader agree, with the documented delimiters."""

from __future__ import annotations

import io

from archiver.export.loadfile import ENCODING, DatWriter, read_dat


def test_round_trip_with_awkward_values() -> None:
    buf = io.BytesIO()
    text = io.TextIOWrapper(buf, encoding=ENCODING, newline="", write_through=True)
    w = DatWriter(text, ["DocID", "Subject"])
    w.write(["ABC1", "two\r\nlines\rand\nmore"])
    w.write(["ABC2", "Þór says \u00fe and \x14"])
    text.flush()
    raw = buf.getvalue()
    assert raw.startswith(b"\xef\xbb\xbf")
    assert raw.count(b"\r\n") == 3 and b"\x14" in raw
    assert b"\xc2\xae" in raw  # the newline replacement ®
    rows = list(read_dat(io.TextIOWrapper(io.BytesIO(raw), encoding=ENCODING, newline="")))
    assert rows == [
        {"DocID": "ABC1", "Subject": "two\nlines\nand\nmore"},
        {"DocID": "ABC2", "Subject": "Þór says \ufffd and \ufffd"},
    ]
