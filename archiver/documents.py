"""Building index documents from parsed messages, tags and provenance.

One place decides what the index sees of a message, whether it was just
ingested or is being rebuilt from the store, so ``reindex`` gives the same
results as the original ingest.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from archiver.model import Address, IndexDoc, ParsedMessage, Tags
from connectors.journal_report import envelope_roles


def index_doc(oid: str, size: int, parsed: ParsedMessage, tags: Tags, provenance: Sequence[dict[str, Any]]) -> IndexDoc:
    """The index document; envelope recipients (journal reports) are filed under the role the report gives them.

    A journal report's envelope says how each recipient was addressed
    (``connectors.journal_report``): a distribution-list member or a forwarding
    target reached through To or Cc was an open recipient, so it is searchable
    with ``to:``/``cc:``, and only ``Bcc`` recipients go under ``bcc:`` ("who was
    blind-copied" is evidence).  A recipient whose addressing Exchange could not
    verify (``Recipient``), or one of a copy archived before roles were kept,
    counts as Bcc only when the original names it nowhere.
    """
    fields: dict[str, list[Address]] = {"to": list(parsed.to), "cc": list(parsed.cc), "bcc": list(parsed.bcc)}
    present = {role: {a.addr for a in addrs} for role, addrs in fields.items()}
    unknown: list[str] = []
    for prov in provenance:
        for role, addr in envelope_roles(prov.get("envelope_recipients", ())):
            if role not in fields:
                unknown.append(addr)
            elif addr not in present[role]:
                present[role].add(addr)
                fields[role].append(Address(addr=addr))
    visible = present["to"] | present["cc"] | present["bcc"]
    for addr in unknown:
        if addr not in visible:
            visible.add(addr)
            fields["bcc"].append(Address(addr=addr))
    return IndexDoc(
        id=oid,
        message_id=parsed.message_id,
        from_=parsed.from_,
        to=tuple(fields["to"]),
        cc=tuple(fields["cc"]),
        bcc=tuple(fields["bcc"]),
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
