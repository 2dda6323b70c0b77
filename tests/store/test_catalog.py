"""Catalog: compactly stored rows read back exactly as the journal and the parser gave them."""

from __future__ import annotations

import json
import random
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from archiver.clock import iso
from archiver.model import Address, Attachment, ParsedMessage, ProvenanceRow, Tags
from archiver.store.catalog import SCHEMA_VERSION, Catalog, metadata_row, pack_time
from archiver.store.journal import Head
from archiver.store.repository import Repository

T0 = "2024-03-01T10:00:00.000000Z"


def oid(i: int) -> str:
    return f"{i:064x}"


class Records:
    """Journal-like records for Catalog.apply_records."""

    def __init__(self) -> None:
        self.seq = 0

    def rec(self, type_: str, data: dict[str, Any], time: str = T0) -> dict[str, Any]:
        self.seq += 1
        return {"type": type_, "data": data, "seq": self.seq, "time": time, "actor": "t"}

    def ingest(
        self, i: int, prov: dict[str, Any], client: str = "unfiled", matters: list[str] | None = None
    ) -> dict[str, Any]:
        data = {
            "id": oid(i),
            "size": 10 + i,
            "segment": 0,
            "offset": 100 * i,
            "length": 50,
            "record_sha256": f"{i + 1:064x}",
            "prov": prov,
            "client": client,
            "matters": matters or [],
        }
        return self.rec("ingest", data)

    def apply(self, cat: Catalog, *recs: dict[str, Any], metadata: Any = ()) -> None:
        cat.apply_records(
            [*recs, self.rec("commit", {"segment": 0, "end": 9999})], Head(self.seq + 1, "h", 0), metadata
        )


def prov(location: str = "/m/INBOX/1", **kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "source": "src",
        "account": "",
        "folder": "INBOX",
        "uid": "",
        "uidvalidity": "",
        "internaldate": None,
        "flags": [],
        "location": location,
        "envelope_recipients": [],
        "fetched_at": None,
    }
    return {**base, **kw}


@pytest.fixture
def cat(tmp_path: Path) -> Catalog:
    return Catalog(tmp_path / "catalog.sqlite")


def test_timestamps_read_back_as_written(cat: Catalog) -> None:
    rng = random.Random(5)
    times = ["1970-01-01T00:00:00.000000Z", "9999-12-31T23:59:59.999999Z", iso(datetime.now(UTC))]
    times += [iso(datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=rng.randrange(2**55))) for _ in range(200)]
    odd = ["2024-03-01T10:00:00Z", "2024-03-01T10:00:00.5+01:00", "1969-12-31T23:59:59.999999Z", "", "yesterday"]
    odd += ["2024-13-01T10:00:00.000000Z", "２０２４-03-01T10:00:00.000000Z"]
    r = Records()
    recs = []
    for i, t in enumerate(times + odd):
        recs.append(r.ingest(i, prov(f"/m/{i}", internaldate=t, fetched_at=times[-1 - i % len(times)])))
    recs.append(r.ingest(len(recs), prov("/m/x", internaldate=None, fetched_at=None)))
    r.apply(cat, *recs)
    for i, t in enumerate(times + odd):
        (p,) = cat.provenance(oid(i))
        assert p["internaldate"] == t and p["fetched_at"] == times[-1 - i % len(times)]
    (p,) = cat.provenance(oid(len(times + odd)))
    assert p["internaldate"] is None and p["fetched_at"] is None
    row = cat.object(oid(3))
    assert row is not None and row.ingested_at == T0
    packed = cat.conn.execute("SELECT typeof(internaldate) FROM copies GROUP BY 1").fetchall()
    assert {t for (t,) in packed} == {"integer", "text", "null"}
    assert pack_time(times[0]) == 0 and pack_time(odd[0]) == odd[0]


@pytest.mark.parametrize(
    "location",
    [
        "/work/mail/arnold-j/sent/1.",
        "m1",
        "",
        "/",
        "//x",
        "dir/",
        "/mail/caf\\xe9.eml",
        "/box/all.mbox#1234",
        "/box/a/b.mbox#12/34",
        "imap://u%40x@host/INBOX/Sub;UIDVALIDITY=7/;UID=12",
        "graph:me/Inbox/Sub;id=AAMk/abc+/def==",
        "ews:me@x/Inbox;id=AA/BB",
        "C:\\Mail\\x.eml",
    ],
)
def test_locations_read_back_as_written(cat: Catalog, location: str) -> None:
    r = Records()
    r.apply(cat, r.ingest(1, prov(location)), r.rec("copy", {"id": oid(1), "prov": prov(location + "/2")}))
    assert [p["location"] for p in cat.provenance(oid(1))] == [location, location + "/2"]


def test_views_show_the_journal_values(cat: Catalog) -> None:
    r = Records()
    full = prov(
        "/m/INBOX/7",
        account="me@x",
        uid="7",
        uidvalidity="42",
        internaldate=T0,
        flags=["\\Seen", "label"],
        envelope_recipients=["a@x"],
        fetched_at=T0,
    )
    r.apply(
        cat,
        r.ingest(1, full, client="acme", matters=["10234-0001", "10234-0002"]),
        r.ingest(2, prov()),
        r.rec("copy", {"id": oid(2), "prov": prov()}),  # the same copy twice is two rows, as the journal says
    )
    rows = cat.conn.execute("SELECT * FROM provenance WHERE id=? ORDER BY seq", (oid(1),)).fetchall()
    assert rows == [
        (oid(1), "src", "me@x", "INBOX", "7", "42", T0, '["\\\\Seen", "label"]', "/m/INBOX/7", '["a@x"]', T0, 1)
    ]
    assert cat.provenance(oid(1))[0] == {k: full[k] for k in full}
    assert len(cat.provenance(oid(2))) == 2
    assert cat.conn.execute("SELECT flags, envelope_recipients FROM provenance WHERE id=?", (oid(2),)).fetchall() == [
        ("[]", "[]"),
        ("[]", "[]"),
    ]
    assert cat.conn.execute("SELECT * FROM tags ORDER BY id").fetchall() == [
        (oid(1), "acme", '["10234-0001", "10234-0002"]', 1),
        (oid(2), "unfiled", "[]", 2),
    ]
    assert cat.conn.execute("SELECT * FROM matters ORDER BY matter").fetchall() == [
        (oid(1), "10234-0001"),
        (oid(1), "10234-0002"),
    ]
    assert cat.conn.execute(
        "SELECT id, record_sha256, ingest_seq, ingested_at FROM objects WHERE id=?", (oid(2),)
    ).fetchone() == (
        oid(2),
        f"{3:064x}",
        2,
        T0,
    )
    assert (
        cat.stats()["copies"] == 3
        and cat.stats()["sources"] == {"src": 2}
        and cat.stats()["clients"] == {"acme": 1, "unfiled": 1}
    )


def test_retag_moves_matters(cat: Catalog) -> None:
    r = Records()
    r.apply(
        cat, r.ingest(1, prov(), client="acme", matters=["1", "2"]), r.ingest(2, prov(), client="acme", matters=["2"])
    )
    r.apply(cat, r.rec("tag", {"id": oid(1), "client": "globex", "matters": ["2", "3"]}))
    assert cat.tags(oid(1)) == ("globex", ("2", "3"))
    assert cat.conn.execute("SELECT seq FROM tags WHERE id=?", (oid(1),)).fetchone() == (r.seq - 1,)
    assert sorted(cat.conn.execute("SELECT matter, id FROM matters")) == [("2", oid(1)), ("2", oid(2)), ("3", oid(1))]
    r.apply(cat, r.rec("tag", {"id": oid(1), "client": "unfiled", "matters": []}))
    assert cat.tags(oid(1)) == ("unfiled", ())
    assert sorted(cat.conn.execute("SELECT matter, id FROM matters")) == [("2", oid(2))]


def test_odd_record_digest_is_kept_as_text(cat: Catalog) -> None:
    r = Records()
    rec = r.ingest(1, prov())
    rec["data"]["record_sha256"] = "ABC"
    r.apply(cat, rec)
    row = cat.object(oid(1))
    assert row is not None and row.record_sha256 == "ABC"


def parsed(i: int) -> ParsedMessage:
    return ParsedMessage(
        message_id=f"<{i}@x>",
        references=("<a@x>", "<b@x>") if i % 2 else (),
        from_=(Address(addr="f@x", name="Eff"),),
        to=(Address(addr="t@x"), Address(addr="u@x", name="Ü")),
        cc=(),
        subject=f"subject {i}",
        date=datetime(2001, 2, 3, 4, 5, 6, tzinfo=UTC),
        attachments=(Attachment(filename="a.pdf", content_type="application/pdf", size=12, sha256="00" * 32),)
        if i % 2
        else (),
        parse_errors=("bad date",) if i % 2 else (),
    )


COLUMNS = "id message_id in_reply_to refs date date_fallback from_addr from_name to_addrs cc_addrs bcc_addrs"
COLUMNS += " subject attachments parse_errors"


def test_message_metadata_reads_back(cat: Catalog) -> None:
    r = Records()
    r.apply(cat, r.ingest(1, prov()), r.ingest(2, prov()), metadata=[(oid(1), parsed(1)), (oid(2), parsed(2))])
    for i in (1, 2):
        row = metadata_row(oid(i), parsed(i))
        expected = dict(zip(COLUMNS.split(), row, strict=True))
        for k in ("refs", "to_addrs", "cc_addrs", "bcc_addrs", "attachments", "parse_errors"):
            expected[k] = json.loads(expected[k])
        assert cat.message(oid(i)) == {**expected, "indexed": 0}
    assert cat.tags_by_message_id(["<2@x>", "<9@x>"]) == {"<2@x>": [(oid(2), "unfiled", ())]}
    assert cat.stats()["parse_errors"] == 1
    # metadata put later (catch-up) finds the object by id; an unknown id is dropped
    cat.conn.execute("DELETE FROM message_rows WHERE obj=(SELECT ingest_seq FROM object_rows WHERE id=?)", (oid(2),))
    assert cat.missing_metadata() == [oid(2)]
    cat.put_metadata([(oid(2), parsed(2)), (oid(3), parsed(3))])
    assert cat.missing_metadata() == [] and cat.message(oid(3)) is None
    assert sorted(cat.unindexed()) == [oid(1), oid(2)]
    cat.mark_indexed([oid(1)])
    assert cat.unindexed() == [oid(2)]
    cat.conn.execute("UPDATE message_rows SET indexed=1")
    assert cat.unindexed() == []
    r.apply(cat, r.rec("dispose", {"id": oid(1), "sha256": oid(1), "rule": "r", "reason": ""}))
    assert cat.message(oid(1)) is None and cat.conn.execute("SELECT COUNT(*) FROM message_rows").fetchone() == (1,)


def test_catalog_of_another_schema_is_rebuilt_from_the_journal(tmp_path: Path) -> None:
    """An archive whose catalog an older version wrote opens: the derived catalog is replaced and replayed."""
    repo = Repository.create(tmp_path / "a", "pw")
    with repo.transaction() as tx:
        oid = tx.put_raw(
            b"Subject: old\r\n\r\nbody\r\n", ProvenanceRow(source="s", folder="f", location="m"), Tags(client="c")
        )
    repo.close()
    conn = sqlite3.connect(tmp_path / "a" / "catalog.sqlite")
    conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema'")
    conn.execute("CREATE TABLE leftover(x)")
    conn.commit()
    conn.close()
    r2 = Repository.open(tmp_path / "a", "pw")
    names = {r[0] for r in r2.catalog.conn.execute("SELECT name FROM sqlite_master")}
    assert "leftover" not in names and r2.catalog.get_meta("schema") == str(SCHEMA_VERSION)
    assert r2.catalog.tags(oid) == ("c", ())
    assert r2.read_raw(oid).startswith(b"Subject: old")
    assert r2.verify().ok
