"""Search latency micro-benchmark on synthetic mail: `python bench/search_micro.py [N_DOCS] [DIR]`.

Builds an index of N synthetic messages (Zipf-distributed words, a few hundred senders over
twenty domains, three years of dates), then times typical queries through
MessageIndex.search (parse, translate, search, stored-field fetch, snippets; no hit
descriptions, which come from an archive's catalog) and prints p50/p95 per query.
The target is p95 well under 20 ms at 20k docs.
"""

from __future__ import annotations

import hashlib
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from archiver.index import MessageIndex
from archiver.model import Address, IndexDoc

QUERIES = [
    "contract",
    "energy trading",
    '"gas pipeline"',
    "from:example3.com",
    "from:user7@example7.com",
    "to:user12*",
    "contr*",
    "contract after:2001-01-01 before:2002-01-01",
    "(meeting OR call) NOT cancelled",
    "client:client3 matter:m-7",
    "subject:report has:attachment",
    "NOT contract",
]


def vocabulary(rng: random.Random, n: int = 6000) -> list[str]:
    common = [
        "contract",
        "energy",
        "trading",
        "gas",
        "pipeline",
        "meeting",
        "call",
        "report",
        "cancelled",
        "price",
        "deal",
    ]
    made = {"".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 10))) for _ in range(n)}
    return common + sorted(made)


def synthetic_docs(n: int, seed: int = 7) -> list[IndexDoc]:
    rng = random.Random(seed)
    vocab = vocabulary(rng)
    weights = [1.0 / (i + 1) for i in range(len(vocab))]
    people = [Address(addr=f"user{i}@example{i % 20}.com", name=f"User {i}") for i in range(400)]
    start = datetime(2000, 1, 1, tzinfo=UTC)
    docs = []
    for i in range(n):
        words = rng.choices(vocab, weights, k=rng.randint(40, 400))
        body = " ".join(words)
        subject = " ".join(rng.choices(vocab, weights, k=rng.randint(2, 7)))
        has_att = rng.random() < 0.2
        docs.append(
            IndexDoc(
                id=hashlib.sha256(f"{seed}-{i}".encode()).hexdigest(),
                message_id=f"<{i}@bench>",
                from_=(rng.choice(people),),
                to=tuple(rng.sample(people, rng.randint(1, 4))),
                cc=tuple(rng.sample(people, rng.randint(0, 2))),
                bcc=(),
                subject=subject,
                body=body,
                attachment_names=("report.pdf",) if has_att else (),
                attachment_text=" ".join(rng.choices(vocab, weights, k=100)) if has_att else "",
                date=start + timedelta(minutes=rng.randint(0, 3 * 365 * 24 * 60)),
                client=f"client{rng.randint(0, 9)}",
                matters=(f"m-{rng.randint(0, 30)}",),
                sources=("bench",),
                folders=("INBOX",),
                size=len(body) + 500,
                has_attachments=has_att,
            )
        )
    return docs


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    base = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(tempfile.mkdtemp(prefix="search-micro-"))
    docs = synthetic_docs(n)
    t0 = time.perf_counter()
    idx = MessageIndex.open(base / "index")
    idx.add(docs)
    idx.commit()
    raw = sum(len(d.body) + len(d.subject) + len(d.attachment_text) for d in docs)
    size = sum(p.stat().st_size for p in (base / "index").iterdir() if p.is_file())
    print(f"indexed {n} docs in {time.perf_counter() - t0:.1f}s; index {size / 1e6:.1f} MB for {raw / 1e6:.1f} MB text")
    all_ms: list[float] = []
    for q in QUERIES:
        times = []
        total = 0
        for _ in range(60):
            t = time.perf_counter()
            total = idx.search(q, limit=20).total
            times.append((time.perf_counter() - t) * 1000)
        times = times[10:]  # warm-up
        all_ms += times
        p95 = statistics.quantiles(times, n=20)[-1]
        print(f"{q:48s} hits={total:6d}  p50={statistics.median(times):6.2f} ms  p95={p95:6.2f} ms")
    print(f"all queries: p50={statistics.median(all_ms):.2f} ms  p95={statistics.quantiles(all_ms, n=20)[-1]:.2f} ms")
    idx.close()


if __name__ == "__main__":
    main()
