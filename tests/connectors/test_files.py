"""Tests for the file-import connector (Maildir, mbox, EML, folder trees, PST) and its fixtures."""

from __future__ import annotations

import io
import os
import re
import shutil
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest

from archiver.config import FilesSource
from archiver.sources.files import build_files
from connectors.base import Batch, Connector, RawMessage, SourceFailure
from connectors.files import FilesConnector, _iter_mbox, _single_message, detect_format, stable_libpst_boundaries
from tests.conftest import CliResult

DATA = Path(__file__).resolve().parent.parent / "data"
SAMPLE = DATA / "sample-maildir"
MALFORMED = DATA / "malformed"
MBOX = DATA / "mbox"


def run(paths: list[Path], checkpoints: dict[str, str] | None = None, **kw: int) -> list[Batch]:
    return list(FilesConnector("test", paths, **kw).batches(checkpoints or {}))


def messages(batches: list[Batch]) -> list[RawMessage]:
    return [m for b in batches for m in b.messages]


def failures(batches: list[Batch]) -> list[SourceFailure]:
    return [f for b in batches for f in b.failures]


def saved(batches: list[Batch]) -> dict[str, str]:
    return {c.key: c.value for b in batches for c in b.checkpoints}


def key(path: Path | str, source: str = "test") -> str:
    return FilesConnector(source, [])._key(path)


def stamp(value: str) -> tuple[int, int]:
    """A checkpoint value decoded: (size, mtime_ns), both written in base 36."""
    size, mtime = value.split(":")
    return int(size, 36), int(mtime, 36)


def of(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def mail(subject: str, body: str = "body\n", *, nl: str = "\n") -> bytes:
    text = (
        "From: Dana Whitfield <dana.whitfield@hartwell-pine.example>\n"
        "To: Jordan Blake <jordan.blake@acme.example>\n"
        "Date: Tue, 14 May 2019 10:00:00 -0500\n"
        f"Subject: {subject}\n\n{body}"
    )
    return text.replace("\n", nl).encode()


def maildir_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.parent.name in ("cur", "new") and p.name[0] != ".")


# -- format detection ------------------------------------------------------------------------------


def test_detect_format_by_content_not_name(tmp_path: Path) -> None:
    (tmp_path / "mail.txt").write_bytes(mail("named .txt"))
    (tmp_path / "1.").write_bytes(mail("enron style name"))
    (tmp_path / "archive.eml").write_bytes(b"From someone@example.com Tue May 14 15:00:00 2019\n" + mail("x"))
    (tmp_path / "box.pst").write_bytes(b"!BDN" + b"\0" * 64)
    (tmp_path / "note.msg").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 64)
    (tmp_path / "picture.eml.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "notes.txt").write_bytes(b"Shopping list\nmilk\n")
    os.mkfifo(tmp_path / "fifo")
    assert detect_format(tmp_path / "mail.txt") == "eml"
    assert detect_format(tmp_path / "1.") == "eml"
    assert detect_format(tmp_path / "archive.eml") == "mbox"
    assert detect_format(tmp_path / "box.pst") == "pst"
    assert detect_format(tmp_path / "note.msg") == "msg"
    assert detect_format(tmp_path / "picture.eml.png") == "unknown"
    assert detect_format(tmp_path / "empty") == "unknown"
    assert detect_format(tmp_path / "notes.txt") == "unknown"
    assert detect_format(tmp_path / "fifo") == "unknown"  # and it did not block
    assert detect_format(SAMPLE) == "maildir"
    assert detect_format(MALFORMED) == "directory"
    assert detect_format(MBOX / "mboxrd.mbox") == "mbox"
    with pytest.raises(OSError):
        detect_format(tmp_path / "missing")


def test_connector_protocol_and_builder() -> None:
    conn = build_files(FilesSource(name="disk", type="files", paths=[SAMPLE]))
    assert isinstance(conn, FilesConnector)
    assert isinstance(conn, Connector)
    assert conn.name == "disk"
    assert len(messages(list(conn.batches({})))) == 35


# -- Maildir ------------------------------------------------------------------------------------------


def test_sample_maildir_folders_bytes_and_origin() -> None:
    batches = run([SAMPLE])
    msgs = messages(batches)
    assert failures(batches) == []
    assert len(msgs) == 35 == len(maildir_files(SAMPLE))
    assert Counter(m.origin.folder for m in msgs) == {
        "INBOX": 15,
        "Sent": 9,
        "Clients/Acme": 6,
        "Clients/Globex": 5,
    }
    for m in msgs:
        path = Path(m.origin.location)
        assert m.data == path.read_bytes()
        assert m.origin.source == "test"
        assert m.origin.internaldate is not None and m.origin.internaldate.tzinfo is not None
        stamp = int(path.name.split(".")[0])
        assert m.origin.internaldate == datetime.fromtimestamp(stamp, UTC)
    # The engagement letter sits in INBOX and Clients/Acme: two copies, same bytes.
    dup = [m for m in msgs if b"Subject: Signed engagement letter 10234-0002" in m.data]
    assert {m.origin.folder for m in dup} == {"INBOX", "Clients/Acme"}
    assert dup[0].data == dup[1].data


def test_sample_maildir_covers_what_the_demo_needs() -> None:
    import email
    import email.policy

    parsed = [email.message_from_bytes(m.data, policy=email.policy.default) for m in messages(run([SAMPLE]))]
    years = {int(str(p["Date"]).split()[3]) for p in parsed}
    assert years == {2019, 2020, 2021, 2022, 2023, 2024}
    subjects = [str(p["Subject"]) for p in parsed]
    assert any("Acme Widgets™ (10234-0002)" in s for s in subjects)  # RFC 2047 UTF-8
    assert any("Réunion à Genève" in s for s in subjects)  # RFC 2047 ISO-8859-1
    ids = {str(p["Message-ID"]) for p in parsed}
    replies = [p for p in parsed if p["In-Reply-To"]]
    assert len(replies) >= 10 and all(str(p["In-Reply-To"]) in ids for p in replies)
    assert any(not re.search(r"\d{5}-\d{4}", str(p["Subject"])) for p in replies)
    names = {a.get_filename() for p in parsed for a in p.iter_attachments()}
    assert {"q4-invoices.csv", "term-sheet.pdf"} <= names
    assert any(p.get_content_type() == "text/html" for p in parsed)
    assert any(p["Content-Transfer-Encoding"] == "quoted-printable" for p in parsed)
    domains = {a.domain for p in parsed for h in ("From", "To", "Cc") if p[h] for a in p[h].addresses}
    assert all(d.endswith((".example", "example.com", "example.org")) for d in domains), domains


def test_maildir_flags_new_and_folder_names(tmp_path: Path) -> None:
    md = tmp_path / "Maildir"
    for folder in (md, md / ".Archiv&AOQ-.2020"):
        for sub in ("cur", "new", "tmp"):
            (folder / sub).mkdir(parents=True)
    (md / "cur" / "1600000000.M1P1.host:2,FS").write_bytes(mail("flagged"))
    (md / "cur" / "1600000001.M2P2.host:2,DPRT").write_bytes(mail("all flags"))
    (md / "new" / "1600000002.M3P3.host").write_bytes(mail("new"))
    (md / "tmp" / "1600000003.M4P4.host").write_bytes(mail("still being delivered"))
    (md / ".Archiv&AOQ-.2020" / "cur" / "notimestamp:2,S").write_bytes(mail("archived"))
    os.utime(md / ".Archiv&AOQ-.2020" / "cur" / "notimestamp:2,S", (1_500_000_000, 1_500_000_000))
    msgs = {m.data: m.origin for m in messages(run([md]))}
    assert len(msgs) == 4  # tmp/ is never read
    assert msgs[mail("flagged")].flags == ("\\Flagged", "\\Seen")
    assert msgs[mail("all flags")].flags == ("\\Draft", "$Forwarded", "\\Answered", "\\Deleted")
    assert msgs[mail("new")].flags == ()
    assert msgs[mail("new")].folder == "INBOX"
    assert msgs[mail("new")].internaldate == datetime.fromtimestamp(1600000002, UTC)
    archived = msgs[mail("archived")]
    assert archived.folder == "Archivä/2020"
    assert archived.flags == ("\\Seen",)
    assert archived.internaldate == datetime.fromtimestamp(1_500_000_000, UTC)  # mtime fallback


def test_maildir_nested_in_a_folder_tree_gets_a_prefix(tmp_path: Path) -> None:
    shutil.copytree(SAMPLE, tmp_path / "alice" / "Maildir")
    folders = {m.origin.folder for m in messages(run([tmp_path]))}
    assert folders == {
        "alice/Maildir/INBOX",
        "alice/Maildir/Sent",
        "alice/Maildir/Clients/Acme",
        "alice/Maildir/Clients/Globex",
    }


# -- folders of message files ------------------------------------------------------------------------


def test_folder_tree_of_numbered_files(tmp_path: Path) -> None:
    inbox = tmp_path / "maildir" / "lay-k" / "inbox"
    sent = tmp_path / "maildir" / "lay-k" / "sent_items" / "2001"
    inbox.mkdir(parents=True)
    sent.mkdir(parents=True)
    for i in (1, 2, 10):
        (inbox / f"{i}.").write_bytes(mail(f"inbox {i}", nl="\r\n"))
    (sent / "1.").write_bytes(mail("sent 1"))
    (inbox / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(200))
    batches = run([tmp_path / "maildir"])
    msgs = messages(batches)
    assert [(m.origin.folder, Path(m.origin.location).name) for m in msgs] == [
        ("lay-k/inbox", "1."),
        ("lay-k/inbox", "10."),
        ("lay-k/inbox", "2."),
        ("lay-k/sent_items/2001", "1."),
    ]
    assert all(m.data == Path(m.origin.location).read_bytes() for m in msgs)
    [fail] = failures(batches)
    assert fail.location == str(inbox / "photo.jpg")
    assert fail.reason.startswith("not a mail file") and "JPEG" in fail.reason
    # Same input, same batches.
    again = run([tmp_path / "maildir"])
    assert [m.origin.location for m in messages(again)] == [m.origin.location for m in msgs]


def test_malformed_fixtures_are_all_imported_byte_for_byte() -> None:
    files = sorted(p for p in MALFORMED.iterdir() if p.suffix == ".eml")
    assert len(files) >= 40
    batches = run([MALFORMED])
    by_path = {Path(m.origin.location.split("#")[0]): m for m in messages(batches)}
    assert set(by_path) == set(files)
    for path in files:
        raw = path.read_bytes()
        if path.name == "mbox-from-line.eml":
            # A leading mbox envelope line makes it a one-message mbox; the envelope is not mail.
            assert raw.startswith(b"From ") and by_path[path].data == raw.split(b"\n", 1)[1]
        else:
            assert by_path[path].data == raw, path.name
    [readme] = failures(batches)
    assert readme.location == str(MALFORMED / "README.txt") and readme.reason.startswith("not a mail file")


def test_malformed_readme_lists_every_case() -> None:
    readme = (MALFORMED / "README.txt").read_text()
    for path in MALFORMED.glob("*.eml"):
        assert path.name in readme


def test_single_eml_file_origin(tmp_path: Path) -> None:
    path = tmp_path / "message.eml"
    path.write_bytes(mail("single"))
    os.utime(path, ns=(1_700_000_000_123_456_789, 1_700_000_000_123_456_789))
    [batch] = run([path])
    [msg] = batch.messages
    assert msg.data == mail("single")
    assert msg.origin.location == str(path)
    assert msg.origin.folder == ""
    assert msg.origin.internaldate == datetime.fromtimestamp(1_700_000_000.123456789, UTC)
    assert batch.checkpoints[0].key == key(path)
    assert len(mail("single")) == 165
    assert batch.checkpoints[0].value == "4l:cwyvpeni7w9h"  # base 36 of 165 and 1_700_000_000_123_456_789
    assert stamp(batch.checkpoints[0].value) == (len(mail("single")), 1_700_000_000_123_456_789)


# -- mbox --------------------------------------------------------------------------------------------


def write_mboxrd(path: Path, msgs: list[bytes]) -> None:
    with path.open("wb") as fh:
        for i, m in enumerate(msgs):
            fh.write(b"From sender%d@example.com Tue May 14 15:0%d:00 2019\n" % (i, i % 10))
            fh.write(re.sub(rb"(?m)^(>*From )", rb">\1", m))
            fh.write(b"\n")


def test_mboxrd_round_trip(tmp_path: Path) -> None:
    originals = [
        mail("plain"),
        mail("from lines", "From the start.\n>From quoted once.\n>>From quoted twice.\n\nFrom here on.\n"),
        mail("crlf", "line\nFrom x\n", nl="\r\n"),
        mail("ends with blank line", "text\n\n"),
        mail("From: lookalike", "From: not a header in the body\n"),
    ]
    box = tmp_path / "box"
    write_mboxrd(box, originals)
    batches = run([box])
    msgs = messages(batches)
    assert [m.data for m in msgs] == originals
    raw = box.read_bytes()
    for m in msgs:
        path, offset = m.origin.location.rsplit("#", 1)
        assert path == str(box)
        assert raw[int(offset) :].startswith(b"From sender")
        assert m.origin.folder == "box"
    assert msgs[1].origin.internaldate == datetime(2019, 5, 14, 15, 1, tzinfo=UTC)
    [(k, v)] = saved(batches).items()
    assert k == key(box) and stamp(v) == of(box)


def test_mbox_fixtures() -> None:
    rd = messages(run([MBOX / "mboxrd.mbox"]))
    assert len(rd) == 3
    assert b"\nFrom the notice" in rd[0].data
    assert b"\n>From what I hear" in rd[0].data
    assert b"\n>>From a quoted reply" in rd[0].data
    assert rd[2].data.endswith(b"empty line.\n\n")
    assert not any(m.data.startswith(b"From ") for m in rd)

    mboxo = messages(run([MBOX / "mboxo.mbox"]))
    assert len(mboxo) == 2
    assert b"\n\nFrom Monday on, please log all access.\n" in mboxo[0].data

    cl = messages(run([MBOX / "content-length.mbox"]))
    assert [re.search(rb"Message-ID: <(\w+)@", m.data).group(1) for m in cl] == [  # type: ignore[union-attr]
        b"mbox5",
        b"mbox6",
        b"mbox1",
    ]
    # Content-Length keeps the separator-looking body line inside message 1 ...
    assert b"\nFrom jordan.blake@acme.example Mon Mar  4" in cl[0].data
    assert cl[0].data.endswith(b"end of paste\n")
    # ... and a lying Content-Length falls back to From framing.
    assert cl[1].data.endswith(b"lies about the length.\n")
    # Content-Length framing is not mboxrd-quoted: the body is taken as is.
    assert b"\n>From what I hear" in cl[2].data

    dos = messages(run([MBOX / "dos-crlf.mbox"]))
    assert len(dos) == 2
    assert all(m.data.endswith(b"\r\n") and not m.data.endswith(b"\r\n\r\n") for m in dos)
    assert b"\r\nFrom the notice" in dos[0].data


def test_unquoted_from_lines_and_bom(tmp_path: Path) -> None:
    box = tmp_path / "unmunged.mbox"
    first = mail("bond", "My favourite film:\n\nFrom Russia with love\nYear: 1963\n")
    second = mail("second")
    box.write_bytes(b"\xef\xbb\xbfFrom -\n" + first + b"\nFrom -\n" + second)
    msgs = messages(run([box]))
    assert [m.data for m in msgs] == [first, second]


def test_mbox_with_empty_envelope_only(tmp_path: Path) -> None:
    box = tmp_path / "box"
    box.write_bytes(b"From nobody Tue May 14 15:00:00 2019\n")
    batches = run([box])
    assert messages(batches) == []
    assert "empty message" in failures(batches)[0].reason


def test_big_mbox_is_streamed(tmp_path: Path) -> None:
    box = tmp_path / "big.mbox"
    body = ("x" * 76 + "\n") * 130  # about 10 KB per message
    one = mail("big", body)
    with box.open("wb") as fh:
        for _ in range(3000):
            fh.write(b"From a@example.com Tue May 14 15:00:00 2019\n" + one + b"\n")
    assert box.stat().st_size > 25 * 2**20
    tracemalloc.start()
    count = 0
    try:
        for batch in FilesConnector("t", [box], batch_size=100).batches({}):
            count += len(batch.messages)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 3000
    assert peak < 8 * 2**20, f"peak memory {peak} bytes: the mbox was not streamed"


def test_mbox_spanning_batches_checkpoints_with_last_message() -> None:
    batches = run([MBOX / "mboxrd.mbox"], batch_size=1)
    assert [len(b.messages) for b in batches] == [1, 1, 1]
    assert [len(b.checkpoints) for b in batches] == [0, 0, 1]


# -- limits --------------------------------------------------------------------------------------------


def test_message_size_limit(tmp_path: Path) -> None:
    big = tmp_path / "big.eml"
    big.write_bytes(mail("big", "y" * 5000))
    box = tmp_path / "box"
    write_mboxrd(box, [mail("small"), mail("huge", "z" * 5000), mail("small 2")])
    batches = run([big, box], max_message_bytes=2000)
    assert [m.data for m in messages(batches)] == [mail("small"), mail("small 2")]
    reasons = {f.location: f.reason for f in failures(batches)}
    assert "larger than the limit of 2000 bytes" in reasons[str(big)]
    assert any(loc.startswith(f"{box}#") and "larger than the limit" in r for loc, r in reasons.items())
    assert saved(batches) == {}  # both will be retried once the limit is raised


def test_batch_size_and_one_folder_per_batch() -> None:
    batches = run([SAMPLE], batch_size=4)
    assert all(1 <= len(b.messages) <= 4 for b in batches)
    assert all({m.origin.folder for m in b.messages} == {b.folder} for b in batches)
    assert sum(len(b.messages) for b in batches) == 35
    assert all(b.account == "" for b in batches)
    with pytest.raises(ValueError):
        FilesConnector("t", [SAMPLE], batch_size=0)


# -- checkpoints -----------------------------------------------------------------------------------------


def test_checkpoints_skip_unchanged_and_reread_touched(tmp_path: Path) -> None:
    md = tmp_path / "Maildir"
    shutil.copytree(SAMPLE, md)
    box = tmp_path / "box.mbox"
    shutil.copy(MBOX / "mboxrd.mbox", box)
    first = run([md, box])
    cps = saved(first)
    assert len(cps) == 36
    for m in messages(first):
        path = Path(m.origin.location.split("#")[0])
        assert stamp(cps[key(path)]) == of(path)
    # Each file's checkpoint rides in the same batch as its (last) message.
    for b in first:
        paths = {key(m.origin.location.split("#")[0]) for m in b.messages}
        assert {c.key for c in b.checkpoints} <= paths

    assert run([md, box], cps) == []  # an unchanged import reads nothing

    touched = maildir_files(md)[3]
    os.utime(touched, ns=(1, 1))
    again = run([md, box], cps)
    assert [m.origin.location for m in messages(again)] == [str(touched)]
    [(k, v)] = saved(again).items()
    assert k == key(touched) and stamp(v) == (touched.stat().st_size, 1)

    with box.open("ab") as fh:
        fh.write(b"From x@example.com Tue May 14 15:00:00 2019\n" + mail("appended") + b"\n")
    assert len(messages(run([md, box], {**cps, **saved(again)}))) == 4  # the whole mbox again


def test_non_mail_files_fail_once_and_are_checkpointed(tmp_path: Path) -> None:
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(500))
    (tmp_path / "junk.bin").write_bytes(b"\x00\x01\x02" + os.urandom(500))
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "ok").write_bytes(mail("ok"))
    first = run([tmp_path])
    assert len(messages(first)) == 1
    reasons = {Path(f.location).name: f.reason for f in failures(first)}
    assert reasons["image.png"] == "not a mail file: PNG image"
    assert reasons["junk.bin"].startswith("not a mail file: binary data")
    assert reasons["empty"] == "empty file"
    assert all(f.permanent for f in failures(first))
    assert run([tmp_path], saved(first)) == []


KEY_RE = re.compile(r"files:test:[A-Za-z0-9_-]{16}")


def mixed_tree(root: Path) -> list[Path]:
    """A Maildir, an mbox, a loose message, a non-mail file and an empty file; returns the files."""
    shutil.copytree(SAMPLE, root / "Maildir")
    shutil.copy(MBOX / "mboxrd.mbox", root / "box.mbox")
    (root / "loose.eml").write_bytes(mail("loose"))
    (root / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    (root / "empty").write_bytes(b"")
    return [*maildir_files(root / "Maildir"), *(root / n for n in ("box.mbox", "loose.eml", "image.png", "empty"))]


def legacy(files: list[Path], source: str = "test") -> dict[str, str]:
    """The checkpoints an archive imported by the earlier version holds: full path, decimal value."""
    return {f"files:{source}:{p}": f"{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files}


def test_checkpoint_keys_are_short_and_fixed_length(tmp_path: Path) -> None:
    deep = tmp_path.joinpath(*[f"a-rather-long-folder-name-{i:02}" for i in range(30)])
    deep.mkdir(parents=True)
    paths = [tmp_path / "x", deep / "1.", tmp_path / "caf\u00e9.eml", tmp_path / os.fsdecode(b"bad-\xe9-utf8")]
    for i, p in enumerate(paths):
        p.write_bytes(mail(f"message {i}"))
    cps = saved(run([tmp_path]))
    assert len(cps) == len(paths) and len(str(deep / "1.")) > 900
    assert all(KEY_RE.fullmatch(k) for k in cps)  # 27 characters however long the path
    assert set(cps) == {key(p) for p in paths}
    assert key(paths[1]) == key(str(paths[1]))
    assert all(len(v) <= 16 and stamp(v) == of(p) for p, v in ((p, cps[key(p)]) for p in paths))
    negative = tmp_path / "before-1970.eml"
    negative.write_bytes(mail("old"))
    os.utime(negative, ns=(-1_000_000_007, -1_000_000_007))
    [(_, v)] = saved(run([negative])).items()
    assert stamp(v) == (negative.stat().st_size, -1_000_000_007)
    assert run([negative], {key(negative): v}) == []


def test_rerun_of_an_unchanged_import_opens_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = mixed_tree(tmp_path)
    first = run([tmp_path])
    assert len(saved(first)) == len(files)
    opened: list[str] = []
    real_open = Path.open

    def spy(self: Path, *args: object, **kw: object) -> object:
        opened.append(str(self))
        return real_open(self, *args, **kw)  # type: ignore[call-overload]

    monkeypatch.setattr(Path, "open", spy)
    assert run([tmp_path], saved(first)) == []
    assert opened == []
    # The spy does see reads: a changed file is opened (and only that one).
    os.utime(files[0], ns=(5, 5))
    assert [m.origin.location for m in messages(run([tmp_path], saved(first)))] == [str(files[0])]
    assert opened == [str(files[0])]


def test_content_changed_behind_a_restored_mtime_is_read_again(tmp_path: Path) -> None:
    eml = tmp_path / "m.eml"
    eml.write_bytes(mail("first"))
    cps = saved(run([eml]))
    mtime = eml.stat().st_mtime_ns
    eml.write_bytes(mail("second, longer"))
    os.utime(eml, ns=(mtime, mtime))  # same mtime, other size
    [msg] = messages(run([eml], cps))
    assert msg.data == mail("second, longer")


def test_sources_importing_the_same_path_keep_separate_checkpoints(tmp_path: Path) -> None:
    eml = tmp_path / "m.eml"
    eml.write_bytes(mail("shared"))
    a = saved(list(FilesConnector("a", [eml]).batches({})))
    b_batches = list(FilesConnector("b", [eml]).batches(a))
    assert len(messages(b_batches)) == 1  # source b has not seen it: read again, gains b's provenance
    b = saved(b_batches)
    assert set(a) == {key(eml, "a")} and set(b) == {key(eml, "b")} and a.keys() != b.keys()
    assert key(eml, "a")[len("files:a:") :] == key(eml, "b")[len("files:b:") :]
    both = {**a, **b}
    assert list(FilesConnector("a", [eml]).batches(both)) == []
    assert list(FilesConnector("b", [eml]).batches(both)) == []


def test_old_style_checkpoints_are_honoured(tmp_path: Path) -> None:
    files = mixed_tree(tmp_path)
    old = legacy(files)
    assert run([tmp_path], old) == []  # an archive imported by the earlier version is not read again
    assert len(messages(run([tmp_path], legacy(files, "other")))) == 35 + 3 + 1  # another source's do not count

    touched = tmp_path / "box.mbox"
    with touched.open("ab") as fh:
        fh.write(b"From x@example.com Tue May 14 15:00:00 2019\n" + mail("appended") + b"\n")
    again = run([tmp_path], old)
    assert {m.origin.location.split("#")[0] for m in messages(again)} == {str(touched)}
    assert len(messages(again)) == 4
    [(k, v)] = saved(again).items()
    assert k == key(touched) and stamp(v) == of(touched)
    assert run([tmp_path], {**old, **saved(again)}) == []

    # A short key, once written, wins over an old one: a stale short key means "read again".
    eml = tmp_path / "loose.eml"
    [msg] = messages(run([tmp_path], {**old, **saved(again), key(eml): "0:0"}))
    assert msg.origin.location == str(eml)


def test_pipeline_rerun_reads_nothing_and_old_archives_are_not_reread(
    initialised: Callable[..., CliResult], config_file: Path, tmp_path: Path
) -> None:
    from archiver.archive import Archive
    from archiver.config import load_config
    from archiver.pipeline import ingest

    src = tmp_path / "mail"
    shutil.copytree(SAMPLE, src)
    files = maildir_files(src)
    first = initialised("import", str(src), "--source", "s", "--json").json()
    assert isinstance(first, dict) and first["imported"] + first["duplicates"] == len(files)
    again = initialised("import", str(src), "--source", "s", "--json").json()
    assert isinstance(again, dict)
    assert (again["imported"], again["duplicates"], again["failed"]) == (0, 0, 0)  # nothing was read

    cfg = load_config(config_file)
    with Archive.open(cfg) as archive:
        cps = archive.repo.catalog.checkpoints()
        assert {k for k in cps if k.startswith("files:s:")} == {key(p, "s") for p in files}
        assert all(stamp(cps[key(p, "s")]) == of(p) for p in files)
        with archive.repo.transaction() as tx:  # what the earlier version left for source "old"
            for k, v in legacy(files, "old").items():
                tx.checkpoint(k, v)

        def provenance() -> int:
            return sum(len(archive.repo.catalog.provenance(oid)) for oid in archive.repo.catalog.live_ids())

        # A file read again anyway (its checkpoint lost) is a duplicate and adds no provenance row.
        rows = provenance()

        class Forgetful(FilesConnector):
            def batches(self, checkpoints: Mapping[str, str]) -> Iterator[Batch]:
                return super().batches({})

        summary = ingest(archive, Forgetful("s", [src]))
        assert (summary.imported, summary.duplicates) == (0, len(files))
        assert provenance() == rows

    old = initialised("import", str(src), "--source", "old", "--json").json()
    assert isinstance(old, dict) and (old["imported"], old["duplicates"], old["failed"]) == (0, 0, 0)


# -- failures ------------------------------------------------------------------------------------------------


def test_missing_paths_broken_links_fifos_and_directories(tmp_path: Path) -> None:
    good = tmp_path / "good.eml"
    good.write_bytes(mail("good"))
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    os.mkfifo(tmp_path / "pipe")
    md = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (md / sub).mkdir(parents=True)
    (md / "cur" / "1600000000.M1.host:2,S").mkdir()  # a folder where a message file should be
    (md / "new" / "1600000001.M2.host").write_bytes(mail("in maildir"))
    batches = run([tmp_path / "missing", tmp_path])
    assert sorted(m.data for m in messages(batches)) == sorted([mail("good"), mail("in maildir")])
    reasons = {f.location: f.reason for f in failures(batches)}
    assert reasons[str(tmp_path / "missing")] == "no such file or directory"
    assert reasons[str(tmp_path / "dangling")] == "broken symbolic link"
    assert reasons[str(tmp_path / "pipe")].startswith("not a regular file")
    assert reasons[str(md / "cur" / "1600000000.M1.host:2,S")] == "not a regular file"
    assert len(reasons) == 4


def test_symlink_loop_is_not_followed_forever(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "m").write_bytes(mail("m"))
    (tmp_path / "a" / "loop").symlink_to(tmp_path)
    batches = run([tmp_path])
    assert len(messages(batches)) == 1  # a/loop leads back to the import root: not walked twice
    assert any("symbolic link loop" in f.reason for f in failures(batches))


def test_unreadable_folder_entry_does_not_stop_the_import(tmp_path: Path) -> None:
    (tmp_path / "b.eml").write_bytes(mail("b"))
    (tmp_path / "a.eml").symlink_to(tmp_path / "a.eml")  # a self-referencing link cannot be opened
    batches = run([tmp_path])
    assert [m.data for m in messages(batches)] == [mail("b")]
    [fail] = failures(batches)
    assert fail.location == str(tmp_path / "a.eml")
    assert fail.permanent is False


# -- PST ---------------------------------------------------------------------------------------------------


def test_pst_without_readpst_names_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pst = tmp_path / "mailbox.pst"
    pst.write_bytes(b"!BDN" + b"\0" * 1024)
    (tmp_path / "emptybin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "emptybin"))
    batches = run([pst])
    [fail] = failures(batches)
    assert "readpst" in fail.reason and "pst-utils" in fail.reason
    assert saved(batches) == {}  # retried once the package is installed


@pytest.mark.skipif(shutil.which("readpst") is None, reason="readpst (pst-utils) not installed")
def test_damaged_pst_is_a_failure_not_a_crash(tmp_path: Path) -> None:
    pst = tmp_path / "damaged.pst"
    pst.write_bytes(b"!BDN" + b"\0" * 1024)
    (tmp_path / "after.eml").write_bytes(mail("after"))
    batches = run([pst, tmp_path / "after.eml"])
    [fail] = failures(batches)
    assert fail.location == str(pst) and fail.reason.startswith("readpst could not convert the PST")
    assert [m.data for m in messages(batches)] == [mail("after")]


FAKE_READPST = """#!/bin/sh
# Stands in for readpst (pst-utils) the way it matters here: one .eml per message, and a
# multipart boundary drawn at random on every run, as libpst does.
while [ "$#" -gt 1 ]; do [ "$1" = "-o" ] && out="$2"; shift; done
mkdir -p "$out/Inbox"
n=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')
b="--boundary-LibPST-iamunique-${n}_-_-"
printf 'From: a@example.com\r\nSubject: converted\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed;\r\n\tboundary="%s"\r\n\r\n--%s\r\nContent-Type: text/plain\r\n\r\nhello from a pst\r\n--%s--\r\n' "$b" "$b" "$b" > "$out/Inbox/1.eml"
"""


def test_the_same_pst_message_gets_the_same_bytes_on_every_conversion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """readpst draws MIME boundaries at random; without a fix a changed PST was imported again in full."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "readpst").write_text(FAKE_READPST)
    (bin_dir / "readpst").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    pst = tmp_path / "mailbox.pst"
    pst.write_bytes(b"!BDN" + b"\0" * 1024)
    first = [m.data for m in messages(run([pst]))]
    second = [m.data for m in messages(run([pst]))]
    assert len(first) == 1 and first == second
    assert b"hello from a pst" in first[0] and first[0].count(b"--boundary-LibPST-iamunique-") == 3


def test_stable_libpst_boundaries_keeps_the_structure() -> None:
    def converted(n: int) -> bytes:
        b = f"--boundary-LibPST-iamunique-{n}_-_-".encode()
        inner = f"--boundary-LibPST-iamunique-{n + 7}_-_-".encode()
        return (
            b'Content-Type: multipart/mixed; boundary="' + b + b'"\r\n\r\n--' + b
            + b'\r\nContent-Type: multipart/alternative; boundary="' + inner + b'"\r\n\r\n--' + inner
            + b"\r\nContent-Type: text/plain\r\n\r\nbody\r\n--" + inner + b"--\r\n--" + b + b"--\r\n"
        )  # fmt: skip

    a, b = stable_libpst_boundaries(converted(111)), stable_libpst_boundaries(converted(98765))
    assert a == b
    bounds = re.findall(rb"iamunique-(\d+)_", a)
    assert len(set(bounds)) == 2, "two boundaries stay two different boundaries"
    assert stable_libpst_boundaries(b"no boundary at all") == b"no boundary at all"
    import email

    msg = email.message_from_bytes(a)
    assert [p.get_content_type() for p in msg.walk()] == ["multipart/mixed", "multipart/alternative", "text/plain"]


def test_mbox_folder_names_in_a_tree(tmp_path: Path) -> None:
    (tmp_path / "Mail").mkdir()
    write_mboxrd(tmp_path / "Mail" / "Inbox", [mail("one"), mail("two")])
    write_mboxrd(tmp_path / "Mail" / "saved-message.txt", [mail("single")])
    folders = {m.data: m.origin.folder for m in messages(run([tmp_path]))}
    # A real mbox is a folder of its own; a single message saved with an envelope line is not.
    assert folders == {mail("one"): "Mail/Inbox", mail("two"): "Mail/Inbox", mail("single"): "Mail"}


def test_over_long_mbox_line_is_not_split(tmp_path: Path) -> None:
    # A 1 MiB run of text puts "From ..." exactly where a piece-wise reader restarts;
    # it is the middle of a line, not a separator.
    original = mail("long line", "x" * 2**20 + "From a@example.com Tue May 14 15:00:00 2019\nSubject: body\n")
    box = tmp_path / "box"
    write_mboxrd(box, [original, mail("next")])
    msgs = messages(run([box]))
    assert len(msgs) == 2
    assert msgs[0].data == original


SINGLE_CASES: dict[str, bytes] = {
    "one saved message": b"From a@b.c Mon Jan  1 00:00:00 2001\nSubject: x\n\nbody\n\n",
    "crlf, no trailing blank": b"From a@b.c Mon Jan  1 00:00:00 2001\r\nSubject: x\r\n\r\nbody\r\n",
    "unquoted From in the body": b"From a@b.c Mon Jan  1 00:00:00 2001\nSubject: x\n\nhi\nFrom Russia 12:00 2001\nX: y\n",
    "mboxrd quoting": b"From a@b.c 2001\nSubject: x\n\n>From here\n>>From there\n",
    "two messages": b"From a@b.c 2001 10:00\nSubject: 1\n\none\n\nFrom d@e.f 2001 11:00\nSubject: 2\n\ntwo\n",
    "content-length framing": b"From a@b.c 2001\nContent-Length: 5\n\nbody\n\n",
    "indented content-length": b"From a@b.c 2001\nX: y\n Content-length : 5\n\nbody\n",
    "content-length with a vertical tab": b"From a@b 2000\nSubject: x\nContent-Length\x0b: 5\n\nhello\n",
    "envelope only": b"From a@b.c 2001\n",
    "no newline at all": b"From a@b.c 2001",
    "header that looks like an envelope": b"From a@b.c 2001\nFrom b@c.d 2001 10:00\nSubject: x\n\n",
    "BOM": b"\xef\xbb\xbfFrom a@b.c 2001\nSubject: x\n\nbody\n",
}


@pytest.mark.parametrize("case", sorted(SINGLE_CASES))
def test_single_message_shortcut_agrees_with_the_mbox_reader(case: str) -> None:
    """Where the whole-file shortcut answers it gives exactly the reader's one entry; else it declines."""
    data = SINGLE_CASES[case]
    slow = list(_iter_mbox(io.BytesIO(data), 1 << 20))
    fast = _single_message(data, 1 << 20)
    if fast is not None:
        assert slow == [fast]
    declines = {"mboxrd quoting", "two messages", "content-length framing", "indented content-length"}
    declines |= {"content-length with a vertical tab"}
    declines |= {"unquoted From in the body", "no newline at all", "header that looks like an envelope", "BOM"}
    assert (fast is None) == (case in declines)
    tiny = _single_message(data, 3)
    if tiny is not None and len(data.partition(b"\n")[2]) > 3:
        assert tiny.data is None and [e.size for e in _iter_mbox(io.BytesIO(data), 3)] == [tiny.size]


def test_saved_single_messages_import_as_before(tmp_path: Path) -> None:
    """Files of one message behind an envelope (the shortcut) import into their folder, byte-exact."""
    (tmp_path / "d").mkdir()
    for name, data in SINGLE_CASES.items():
        (tmp_path / "d" / name.replace(" ", "_")).write_bytes(data)
    got = messages(run([tmp_path / "d"]))
    by_location = {Path(m.origin.location.partition("#")[0]).name: m for m in got}
    one = by_location["one_saved_message"]
    assert one.data == b"Subject: x\n\nbody\n" and one.origin.folder == ""
    assert by_location["crlf,_no_trailing_blank"].data == b"Subject: x\r\n\r\nbody\r\n"
    assert len([m for m in got if "two_messages" in m.origin.location]) == 2
    assert by_location["mboxrd_quoting"].data == b"Subject: x\n\nFrom here\n>From there\n"
