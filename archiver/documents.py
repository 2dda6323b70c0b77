"""Building index documents from parsed messages, tags and provenance.

One place decides what the index sees of a message, whether it was just
ingested or is being rebuilt from the store, so ``reindex`` gives the same
results as the original ingest.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from archiver.model import Address, IndexDoc, ParsedMessage, Tags


def index_doc(oid: str, size: int, parsed: ParsedMessage, tags: Tags, provenance: Sequence[dict[str, Any]]) -> IndexDoc:
    """The index document; envelope recipients (journal reports) not visible in To/Cc count as Bcc."""
    visible = {a.addr for a in (*parsed.to, *parsed.cc, *parsed.bcc)}
    extra_bcc: list[Address] = []
    for prov in provenance:
        for addr in prov.get("envelope_recipients", ()):
            a = str(addr).strip().lower()
            if a and a not in visible:
                visible.add(a)
                extra_bcc.append(Address(addr=a))
    return IndexDoc(
        id=oid,
        message_id=parsed.message_id,
        from_=parsed.from_,
        to=parsed.to,
        cc=parsed.cc,
        bcc=(*parsed.bcc, *extra_bcc),
        subject=parsed.subject,
        body=parsed.body_text,
        attachment_names=tuple(a.filename for a in parsed.attachments if a.filename),
        attachment_text="\n".join(a.text for a in parsed.attachments if a.text),
        date=parsed.date,
        client=tags.client,
        matters=tags.matters,
        sources=_unique(p["source"] for p in provenance),
        folders=_unique(p["folder"] for p in provenance if p.get("folder")),
        size=size,
        has_attachments=bool(parsed.attachments),
    )


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))
