"""Make a bigger corpus out of a real one, for checking that memory stays bounded as it grows.

    python bench/scale_corpus.py PATH [PATH...] --copies N --out DIR

Writes N copies of every file under the PATHs into DIR/copy-<k>/<path>, each
message given one extra header line ``X-Bench-Copy: <k>`` so that every copy is a
different message (the archive would otherwise store it once: ids are content
hashes).  The header goes after an mbox ``From `` separator line when the file starts
with one, otherwise first.  Everything else is left byte for byte, so the copies
parse, tag and index like the originals.

Why not synthetic mail: lengths, header shapes, encodings and duplicate structure
decide where memory goes (parser, index writer, SQLite), and only real mail has
real ones.  DIR is a scratch folder; the corpus itself is never copied into the
repository.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def variant(data: bytes, k: int) -> bytes:
    """``data`` with an ``X-Bench-Copy`` header; the mbox ``From `` line, if any, stays first."""
    header = f"X-Bench-Copy: {k}\n".encode()
    if data.startswith(b"From "):
        nl = data.find(b"\n")
        if nl >= 0:
            return data[: nl + 1] + header + data[nl + 1 :]
    return header + data


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("paths", nargs="+", type=Path)
    ap.add_argument("--copies", type=int, default=5)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    if args.out.exists() and any(args.out.iterdir()):
        print(f"{args.out} is not empty; choose a new folder", file=sys.stderr)
        return 2
    files = bytes_out = 0
    for k in range(args.copies):
        for root in args.paths:
            for folder, _dirs, names in os.walk(root):
                rel = Path(folder).relative_to(root.parent)
                for name in names:
                    data = (Path(folder) / name).read_bytes()
                    target = args.out / f"copy-{k}" / rel / name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    out = variant(data, k)
                    target.write_bytes(out)
                    files += 1
                    bytes_out += len(out)
    print(f"{files} files, {bytes_out / 2**20:.1f} MiB in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
