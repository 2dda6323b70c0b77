"""The tantivy schema of the message index, its tokenizers, and IndexDoc -> tantivy Document.

Matching rules, decided here once for indexing and querying alike:

* Text fields (subject, body, names, attachment names and text) use the ``mail`` analyzer:
  split on anything that is not a letter or digit, drop words longer than 40 characters
  (base64 and hashes), lower-case, fold to ASCII (``résumé`` matches ``resume``).  There is
  NO stemming: ``contract`` does not match ``contracts``; a prefix query (``contract*``) does.
* Address fields (``from_addr`` ...) hold, for every address, the whole lower-cased address
  and its domain and parent domains (``a@mail.example.com`` -> ``a@mail.example.com``,
  ``mail.example.com``, ``example.com``; the bare top-level domain is left out), each as one
  token.  So ``from:a@mail.example.com`` is an exact match and ``from:example.com`` matches
  the domain and its subdomains.
* Name fields (``from_name`` ...) hold display names and local parts as words, so
  ``from:skilling`` matches "Jeff Skilling <jeff.skilling@enron.com>".
* Label fields (client, matter, source, folder, message-id) are one lower-cased token each:
  matching is exact but case-insensitive.
* The body is indexed in full, with positions (for phrases).
* Only the id and the body's first ``LEAD_CHARS`` characters (for snippets) are stored.  The
  index is a rebuildable cache and must stay small next to the store: on Enron mail it is
  ~0.34x the raw bytes, nearly all postings; the display fields a hit shows (sender,
  subject, date, tags) cost another ~0.025x and the catalog holds them anyway, so a hit is
  described from there (``HitSource`` in store.py).  Snippets cut from the whole decrypted
  message were tried and dropped: re-parsing every hit made a result page ~10 ms of CPU,
  and the web server's throughput fell from 279 to 73 pages/s.  The date is a fast field,
  for sorting only.
"""

from __future__ import annotations

import functools
from typing import Final

import tantivy

from archiver.model import Address, IndexDoc

#: the analyzer name for words (see the module docstring).
MAIL_TOKENIZER: Final = "mail"
#: one lower-cased token per value (labels, message ids).
LABEL_TOKENIZER: Final = "label"
#: longest word that is indexed; longer "words" are base64, hashes, URLs' innards.
MAX_WORD_CHARS: Final = 40
#: how much of the body is stored for snippets (characters, whitespace collapsed).
LEAD_CHARS: Final = 300

ADDRESS_ROLES: Final = ("from", "to", "cc", "bcc")

# Field names.
F_ID: Final = "id"
F_MESSAGE_ID: Final = "message_id"
F_SUBJECT: Final = "subject"
F_BODY: Final = "body"
F_ATT_NAME: Final = "attachment_name"
F_ATT_TEXT: Final = "attachment_text"
F_DATE: Final = "date"
F_CLIENT: Final = "client"
F_MATTER: Final = "matter"
F_SOURCE: Final = "source"
F_FOLDER: Final = "folder"
F_SIZE: Final = "size"
F_HAS_ATT: Final = "has_attachments"
#: stored only: the body's beginning, UTF-8, that snippets are cut from.
F_LEAD: Final = "lead"


def addr_field(role: str) -> str:
    """The exact-address/domain field of an address role ("from", "to", "cc", "bcc")."""
    return f"{role}_addr"


def name_field(role: str) -> str:
    """The display-name/local-part words field of an address role."""
    return f"{role}_name"


#: every field a bare word is looked up in (the addr fields get the whole lower-cased word).
WORD_FIELDS: Final = (
    F_SUBJECT,
    F_BODY,
    *(name_field(r) for r in ADDRESS_ROLES),
    F_ATT_NAME,
    F_ATT_TEXT,
)
ADDR_FIELDS: Final = tuple(addr_field(r) for r in ADDRESS_ROLES)
#: query fields compared as one whole lower-cased value (``client:acme``), and their index fields.
LABEL_QUERY_FIELDS: Final = {
    "client": F_CLIENT,
    "matter": F_MATTER,
    "source": F_SOURCE,
    "folder": F_FOLDER,
    "message-id": F_MESSAGE_ID,
    "id": F_ID,
}
#: every field of the schema; an index on disk with other fields needs a reindex.
ALL_FIELDS: Final = (
    F_ID,
    F_MESSAGE_ID,
    *ADDR_FIELDS,
    *(name_field(r) for r in ADDRESS_ROLES),
    F_SUBJECT,
    F_BODY,
    F_ATT_NAME,
    F_ATT_TEXT,
    F_DATE,
    F_CLIENT,
    F_MATTER,
    F_SOURCE,
    F_FOLDER,
    F_SIZE,
    F_HAS_ATT,
    F_LEAD,
)


def build_schema() -> tantivy.Schema:
    """The schema; changing it means a reindex (the index is derived data).

    Only ``id`` and ``lead`` are stored (see the module docstring).  ``MessageIndex.open``
    compares every field of an index on disk (name and options) with this schema, so any
    change here makes existing indexes outdated: writers rebuild them, search asks for it.
    """
    sb = tantivy.SchemaBuilder()
    sb.add_text_field(F_ID, stored=True, tokenizer_name="raw", index_option="basic")
    sb.add_text_field(F_MESSAGE_ID, tokenizer_name=LABEL_TOKENIZER, index_option="basic")
    for role in ADDRESS_ROLES:
        sb.add_text_field(addr_field(role), tokenizer_name="raw", index_option="basic")
        sb.add_text_field(name_field(role), tokenizer_name=MAIL_TOKENIZER, index_option="position")
    sb.add_text_field(F_SUBJECT, tokenizer_name=MAIL_TOKENIZER, index_option="position")
    sb.add_text_field(F_BODY, tokenizer_name=MAIL_TOKENIZER, index_option="position")
    sb.add_text_field(F_ATT_NAME, tokenizer_name=MAIL_TOKENIZER, index_option="position")
    sb.add_text_field(F_ATT_TEXT, tokenizer_name=MAIL_TOKENIZER, index_option="position")
    sb.add_date_field(F_DATE, indexed=False, fast=True)
    sb.add_text_field(F_CLIENT, tokenizer_name=LABEL_TOKENIZER, index_option="basic")
    sb.add_text_field(F_MATTER, tokenizer_name=LABEL_TOKENIZER, index_option="basic")
    sb.add_text_field(F_SOURCE, tokenizer_name=LABEL_TOKENIZER, index_option="basic")
    sb.add_text_field(F_FOLDER, tokenizer_name=LABEL_TOKENIZER, index_option="basic")
    sb.add_unsigned_field(F_SIZE, indexed=False, fast=True)
    sb.add_boolean_field(F_HAS_ATT, indexed=True)
    sb.add_bytes_field(F_LEAD, stored=True, indexed=False)
    return sb.build()


def mail_analyzer() -> tantivy.TextAnalyzer:
    """Words: letters/digits runs, <= 40 chars, lower-cased, ASCII-folded, never stemmed."""
    return (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
        .filter(tantivy.Filter.remove_long(MAX_WORD_CHARS + 1))
        .filter(tantivy.Filter.lowercase())
        .filter(tantivy.Filter.ascii_fold())
        .build()
    )


@functools.cache
def word_analyzer() -> tantivy.TextAnalyzer:
    """One :func:`mail_analyzer` shared by query parsing and translation (the words a query
    looks for must be the words the index holds)."""
    return mail_analyzer()


def label_analyzer() -> tantivy.TextAnalyzer:
    """A whole value as one lower-cased token."""
    return tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.raw()).filter(tantivy.Filter.lowercase()).build()


def register_tokenizers(index: tantivy.Index) -> None:
    """Tokenizers are not persisted by tantivy: every opened Index must get them again."""
    index.register_tokenizer(MAIL_TOKENIZER, mail_analyzer())
    index.register_tokenizer(LABEL_TOKENIZER, label_analyzer())


def address_terms(addr: str) -> list[str]:
    """The tokens indexed for one address: itself, its domain and parent domains (not the TLD)."""
    addr = addr.strip().lower()
    if not addr:
        return []
    terms = [addr]
    local, at, domain = addr.rpartition("@")
    if at and local and domain:
        labels = domain.split(".")
        # "mail.example.com" -> "mail.example.com", "example.com"; a dotless domain stands alone.
        for i in range(max(1, len(labels) - 1)):
            suffix = ".".join(labels[i:])
            if suffix and suffix not in terms:
                terms.append(suffix)
    return terms


def normalize_message_id(value: str) -> str:
    """Message-IDs are matched without their angle brackets."""
    return value.strip().strip("<>").strip()


def to_document(doc: IndexDoc) -> tantivy.Document:
    """Convert an IndexDoc; every multi-valued field gets one value per item."""
    d = tantivy.Document()
    d.add_text(F_ID, doc.id.lower())
    d.add_text(F_MESSAGE_ID, normalize_message_id(doc.message_id))
    roles: dict[str, tuple[Address, ...]] = {"from": doc.from_, "to": doc.to, "cc": doc.cc, "bcc": doc.bcc}
    for role, addrs in roles.items():
        for a in addrs:
            for term in address_terms(a.addr):
                d.add_text(addr_field(role), term)
            words = f"{a.name} {a.local}".strip()
            if words:
                d.add_text(name_field(role), words)
    d.add_text(F_SUBJECT, doc.subject)
    d.add_text(F_BODY, doc.body)
    for name in doc.attachment_names:
        d.add_text(F_ATT_NAME, name)
    if doc.attachment_text:
        d.add_text(F_ATT_TEXT, doc.attachment_text)
    d.add_date(F_DATE, doc.date)
    d.add_text(F_CLIENT, doc.client)
    for matter in doc.matters:
        d.add_text(F_MATTER, matter)
    for source in doc.sources:
        d.add_text(F_SOURCE, source)
    for folder in doc.folders:
        d.add_text(F_FOLDER, folder)
    d.add_unsigned(F_SIZE, max(0, doc.size))
    d.add_boolean(F_HAS_ATT, doc.has_attachments)
    d.add_bytes(F_LEAD, lead(doc.body).encode("utf-8"))
    return d


def lead(body: str) -> str:
    """The stored beginning of a body: its first LEAD_CHARS characters, whitespace collapsed."""
    return " ".join(body.lstrip()[: LEAD_CHARS * 2].split())[:LEAD_CHARS]
