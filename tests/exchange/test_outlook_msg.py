"""Outlook .msg conversion: an item without a message body keeps the original .msg.

msgconvert turns a contact into a bare header block, losing the contact's own fields.
These tests run ``connectors.outlook_msg.convert`` with a *stand-in msgconvert* (a small
Perl script on PATH that writes what the real one writes for the corpus's contact
``.msg``: headers and no body), since a real contact ``.msg`` cannot be built here and the
shared corpus is not copied into the repository.
"""

from __future__ import annotations

import email
import shutil
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from connectors.outlook_msg import convert

#: what msgconvert 0.921 writes for a contact (header block only, CRLF line ends).
_STAND_IN = r"""
my ($flag, $out, $in) = @ARGV;
open(my $fh, '>:raw', $out) or die "cannot write $out";
print $fh "Date: Wed, 17 Jan 2007 07:04:02 +0000\r\nMIME-Version: 1.0\r\n"
  . "Content-Type: text/plain; charset=ISO-8859-1\r\nContent-Disposition: inline\r\n"
  . "Content-Transfer-Encoding: 8bit\r\nSubject: (full name) A contact\r\n"
  . "From: Someone\r\n <someone\@example.com>\r\n\r\n";
close $fh;
"""


@pytest.fixture
def stand_in_msgconvert(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("perl") is None:
        pytest.skip("perl is needed to run the stand-in msgconvert")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "msgconvert"
    exe.write_text(_STAND_IN, encoding="ascii")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path(shutil.which('perl') or '/usr/bin/perl').parent}")


@pytest.mark.usefixtures("stand_in_msgconvert")
def test_item_without_body_keeps_the_original_msg(tmp_path: Path) -> None:
    """Finding 13: a contact .msg is not stored as a header-only stub."""
    ansi, unicode = tmp_path / "contact-ansi.msg", tmp_path / "contact-unicode.msg"
    ansi.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"ANSI contact fields" * 50)
    unicode.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + "Unicode contact fields".encode("utf-16-le") * 50)
    first = convert(ansi, 10 << 20)
    assert first.data is not None, first.error
    msg = email.message_from_bytes(first.data, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    assert msg.get_content_type() == "multipart/mixed" and msg["Subject"] == "(full name) A contact"
    assert str(msg["From"]).endswith("<someone@example.com>")
    note, attached = list(msg.iter_parts())
    assert "no message body" in note.get_content()
    assert attached.get_filename() == "original.msg" and attached.get_payload(decode=True) == ansi.read_bytes()
    assert convert(ansi, 10 << 20).data == first.data  # deterministic
    other = convert(unicode, 10 << 20).data
    assert other is not None and other != first.data  # two different files are two different messages
