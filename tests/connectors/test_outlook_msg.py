"""Outlook .msg import through msgconvert: same file, same bytes; failures named, nothing lost.

The .msg fixtures are written here by OLE::Storage_Lite (the Perl library msgconvert itself
reads them with, installed with it): a root of MAPI property streams, optionally an
attachment folder.  Tests that convert need msgconvert (Debian package
libemail-outlook-message-perl, which `scripts/test.sh` installs when run as root).
"""

from __future__ import annotations

import email
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from connectors.files import FilesConnector
from connectors.outlook_msg import PACKAGE
from tests.conftest import CliResult

HAVE_MSGCONVERT = shutil.which("msgconvert") is not None
needs_msgconvert = pytest.mark.skipif(not HAVE_MSGCONVERT, reason=f"msgconvert ({PACKAGE}) is not installed")

_WRITER = r"""
use strict; use warnings; use OLE::Storage_Lite; use Encode qw(encode decode);
my ($out, $dated, @args) = map { decode('UTF-8', $_) } @ARGV;
my (@pps, $n); $n = 0;
my $when = $dated ? [5, 0, 10, 1, 4, 101, 0, 0, 0] : undef;  # 2001-05-01 10:00:05; a 0 second means none
while (@args) {
  my $tag = shift @args;
  if ($tag eq '--attach') {
    my ($name, $data) = splice(@args, 0, 2);
    my @kids = (
      OLE::Storage_Lite::PPS::File->new(OLE::Storage_Lite::Asc2Ucs('__substg1.0_3707001F'), encode('UTF-16LE', $name)),
      OLE::Storage_Lite::PPS::File->new(OLE::Storage_Lite::Asc2Ucs('__substg1.0_37010102'), encode('UTF-8', $data)),
    );
    my $dir = OLE::Storage_Lite::Asc2Ucs(sprintf('__attach_version1.0_#%08X', $n++));
    push @pps, OLE::Storage_Lite::PPS::Dir->new($dir, $when, $when, \@kids);
    next;
  }
  my $val = shift @args;
  push @pps, OLE::Storage_Lite::PPS::File->new(OLE::Storage_Lite::Asc2Ucs("__substg1.0_$tag"), encode('UTF-16LE', $val));
}
OLE::Storage_Lite::PPS::Root->new(undef, undef, \@pps)->save($out) or die "cannot write $out\n";
"""

# MAPI property tags (PT_UNICODE string streams): message class, subject, body, sender, To.
PROPS = [
    ("001A001F", "IPM.Note"),
    ("0037001F", "Gas contract draft"),
    ("1000001F", "Please review the pipeline tariff terms."),
    ("0C1A001F", "Jeff Skilling"),
    ("0C1F001F", "jeff@enron.example"),
    ("0E04001F", "legal@acme.example"),
]


def write_msg(path: Path, *, dated: bool, attachments: Sequence[tuple[str, str]] = ()) -> Path:
    args = [str(path), "1" if dated else "0"]
    for tag, value in PROPS:
        args += [tag, value]
    for name, data in attachments:
        args += ["--attach", name, data]
    subprocess.run(["perl", "-e", _WRITER, *args], check=True, capture_output=True)
    return path


def convert_all(paths: list[Path]) -> list[bytes]:
    batches = list(FilesConnector("t", paths).batches({}))
    assert not [f for b in batches for f in b.failures]
    return [m.data for b in batches for m in b.messages]


@needs_msgconvert
def test_a_msg_converts_to_the_same_bytes_every_time(tmp_path: Path) -> None:
    """Boundaries and Content-IDs come from msgconvert's clock, random numbers, pid and host:
    fixed by the wrapper, so two conversions a second apart, in two processes, agree."""
    attachments = [("terms.txt", "tariff terms"), ("second.txt", "zwei"), ("c.txt", "three")]
    msg = write_msg(tmp_path / "memo.msg", dated=True, attachments=attachments)
    (first,) = convert_all([msg])
    time.sleep(1.1)
    (again,) = convert_all([msg])
    assert first == again
    assert b"Subject: Gas contract draft" in first and b"Date: Tue, 01 May 2001 10:00:05 +0000" in first
    parsed = email.message_from_bytes(first)
    assert parsed.is_multipart() and [p.get_filename() for p in parsed.walk() if p.get_filename()] == [
        name for name, _ in attachments
    ]
    assert b"@msgconvert.invalid>" in first  # Content-IDs name no real host


@needs_msgconvert
def test_a_msg_without_a_date_is_stored_without_one(initialised: Callable[..., CliResult], tmp_path: Path) -> None:
    """No made-up Date: the archive dates the message by the file's time and flags it, and a
    copy with another file time is still the same message."""
    folder = tmp_path / "undated"
    folder.mkdir()
    msg = write_msg(folder / "undated.msg", dated=False, attachments=[("a.txt", "one"), ("b.txt", "two")])
    stamp = datetime(2003, 7, 4, 12, 30, tzinfo=UTC).timestamp()
    os.utime(msg, (stamp, stamp))
    (data,) = convert_all([msg])
    assert b"Date:" not in data.partition(b"\r\n\r\n")[0]
    shutil.copy(msg, folder / "z-copy.msg")  # imported second, with a later file time
    r = initialised("import", str(folder), "--json")
    summary = r.json()
    assert isinstance(summary, dict) and (summary["imported"], summary["duplicates"]) == (1, 1)
    (hit,) = initialised("search", "subject:gas", "--json").json_lines()
    shown = initialised("show", str(hit["id"]), "--json").json()
    assert isinstance(shown, dict) and str(shown["date"]).startswith("2003-07-04") and shown["date_fallback"]


@needs_msgconvert
def test_msg_files_import_search_and_dedupe(initialised: Callable[..., CliResult], tmp_path: Path) -> None:
    folder = tmp_path / "dms"
    folder.mkdir()
    write_msg(folder / "a.msg", dated=True, attachments=[("terms.txt", "confidential tariff schedule")])
    shutil.copy(folder / "a.msg", folder / "copy of a.msg")
    r = initialised("import", str(folder), "--json")
    assert r.code == 0, r.err
    summary = r.json()
    assert isinstance(summary, dict)
    assert {k: summary[k] for k in ("imported", "duplicates", "failed")} == {
        "imported": 1,
        "duplicates": 1,
        "failed": 0,
    }
    (hit,) = initialised("search", '"tariff schedule" from:jeff@enron.example', "--json").json_lines()
    assert hit["subject"] == "Gas contract draft"
    shown = initialised("show", str(hit["id"]), "--json").json()
    assert isinstance(shown, dict) and [a["filename"] for a in shown["attachments"]] == ["terms.txt"]


@needs_msgconvert
def test_an_unreadable_msg_is_a_failure_and_not_retried(tmp_path: Path) -> None:
    bad = tmp_path / "broken.msg"
    bad.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 512)
    batches = list(FilesConnector("t", [bad]).batches({}))
    [fail] = [f for b in batches for f in b.failures]
    assert "msgconvert could not convert" in fail.reason and fail.permanent
    assert [c for b in batches for c in b.checkpoints]  # checkpointed: the same file fails the same way


def test_without_msgconvert_the_package_is_named_and_the_file_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    msg = tmp_path / "memo.msg"
    msg.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 512)
    (tmp_path / "emptybin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "emptybin"))
    batches = list(FilesConnector("t", [msg]).batches({}))
    [fail] = [f for b in batches for f in b.failures]
    assert "msgconvert" in fail.reason and PACKAGE in fail.reason and not fail.permanent
    assert not [c for b in batches for c in b.checkpoints]  # tried again once it is installed


@needs_msgconvert
def test_a_file_named_like_an_option_is_still_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_msg(tmp_path / "--help.msg", dated=True)
    monkeypatch.chdir(tmp_path)
    (data,) = convert_all([Path("--help.msg")])
    assert b"Subject: Gas contract draft" in data


@needs_msgconvert
def test_a_conversion_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    msg = write_msg(tmp_path / "big.msg", dated=True, attachments=[("big.bin", "x" * 60_000)])
    limit = msg.stat().st_size + 100  # the .msg fits; its base64 conversion does not
    batches = list(FilesConnector("t", [msg], max_message_bytes=limit).batches({}))
    [fail] = [f for b in batches for f in b.failures]
    assert "larger than the limit" in fail.reason and not [m for b in batches for m in b.messages]


@needs_msgconvert
def test_an_ole_file_that_is_no_message_is_recorded_once(tmp_path: Path) -> None:
    """A .msg that converts to a bare header (damaged, or another Office file renamed) is a
    failure, checkpointed: its size and time change if it was only half copied."""
    empty = tmp_path / "empty.msg"
    subprocess.run(["perl", "-e", _WRITER, str(empty), "1"], check=True, capture_output=True)
    batches = list(FilesConnector("t", [empty]).batches({}))
    [fail] = [f for b in batches for f in b.failures]
    assert "found no message" in fail.reason and fail.permanent
    assert [c for b in batches for c in b.checkpoints]
