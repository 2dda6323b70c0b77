"""Records that cross between worker processes pickle compactly and come back equal."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from datetime import UTC, datetime

from archiver.model import Address, Attachment, ParsedMessage, Tags
from archiver.store.objects import SealedObject


def test_worker_results_round_trip_through_pickle() -> None:
    parsed = ParsedMessage(
        message_id="<a@b>",
        references=("<r@b>",),
        from_=(Address(addr="jeff@enron.com", name="Jeff"),),
        to=(Address(addr="x@y.z"), Address(addr="u@v.w", name="U")),
        subject="Gas contract",
        date=datetime(2001, 5, 1, tzinfo=UTC),
        attachments=(Attachment(filename="a.txt", content_type="text/plain", size=3, sha256="0" * 64, text="abc"),),
        parse_errors=("bad date",),
    )
    tags = Tags(client="acme", matters=("12345-0001",), reasons=("pattern:subject",))
    sealed = SealedObject("ab" * 32, 10, 2, b"k" * 61, b"payload", "cd" * 32)
    for record in (parsed, tags, sealed, parsed.to[1]):
        data = pickle.dumps(record)
        back = pickle.loads(data)
        assert back == record and type(back) is type(record)
        assert b"_rebuild" in data  # the fields go as one tuple, not through dataclasses.__setstate__


@dataclass(frozen=True, slots=True, kw_only=True)
class _MoreTags(Tags):
    note: str = ""


def test_a_subclass_keeps_its_inherited_fields() -> None:
    record = _MoreTags(client="acme", matters=("1",), note="x")
    assert pickle.loads(pickle.dumps(record)) == record
