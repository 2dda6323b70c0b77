"""Findings of the CLI review: user and mail text printed as it is (no markup, no emoji, no
terminal control sequences), Ctrl-C, undecodable input, output that cannot be written,
`init` on unusable paths, `journal --id` prefixes and the exit code of a malformed CLIENT/MATTER."""

from __future__ import annotations

import io
import os
import subprocess
from collections.abc import Callable
from contextlib import redirect_stderr
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import PASSPHRASE, TAGGING, CliResult, archiver_exe, sha256

ESC = "\x1b"


def _config(tmp_path: Path, name: str, *, extra: dict[str, Any] | None = None, **archive: Any) -> Path:
    """A config file like the tests' own with these ``archive`` settings (and ``extra`` top-level keys)."""
    p = tmp_path / name
    p.write_text(yaml.safe_dump({"archive": archive, "tagging": TAGGING, **(extra or {})}), encoding="utf-8")
    return p


def _import(cli: Callable[..., CliResult], folder: Path, raws: dict[str, bytes], *args: str) -> list[str]:
    """Write ``raws`` as .eml files into ``folder`` and import them; returns their ids."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, raw in raws.items():
        (folder / name).write_bytes(raw)
    r = cli("import", str(folder), "--json", *args)
    assert r.code == 0, r.err
    return [sha256(raw) for raw in raws.values()]


def _message(subject: bytes, body: bytes) -> bytes:
    return b"\r\n".join(
        [
            b"From: Eve Sender <eve@evil.example>",
            b"To: counsel@firm.example",
            b"Subject: " + subject,
            b"Date: Tue, 01 May 2001 10:00:00 +0000",
            b"Message-ID: <" + sha256(subject + body).encode()[:16] + b"@evil.example>",
            b"",
            body,
            b"",
        ]
    )


def _no_traceback(r: CliResult) -> None:
    assert "Traceback" not in r.err and "Error:" not in r.err, r.err


# -- 1. square brackets are not markup ---------------------------------------------------


def test_brackets_in_a_hold_are_printed_literally_and_do_not_break_later_commands(
    initialised: Callable[..., CliResult],
) -> None:
    # the archive is empty: --allow-empty places a hold for mail still to come
    r = initialised(
        "hold",
        "add",
        "--case",
        "B [x",
        "--custodian",
        "jeff@example.com",
        "--reason",
        "per counsel [/red] request",
        "--allow-empty",
    )
    assert r.code == 0, r.err
    assert "B [x: custodian jeff@example.com — per counsel [/red] request" in r.out
    listed = initialised("hold", "list")
    assert listed.code == 0, listed.err
    assert "per counsel [/red] request" in listed.out
    plan = initialised("retention", "plan")
    assert plan.code == 0, plan.err
    assert "hold 'B [x': custodian jeff@example.com" in plan.out


def test_brackets_in_paths_folders_and_source_names(initialised: Callable[..., CliResult], tmp_path: Path) -> None:
    odd = tmp_path / "br" / "[/x]"
    odd.mkdir(parents=True)
    (odd / "README").write_text("just text, not a message\n", encoding="utf-8")
    r = initialised("import", str(odd / "README"))
    _no_traceback(r)
    assert r.code == 1 and f"not archived: {odd / 'README'}" in r.err
    # two folders: the summary table names them
    tree = tmp_path / "tree"
    for folder, name in (("[/a]", b"one"), ("[/a]", b"two"), ("[b]", b"three")):
        (tree / folder).mkdir(parents=True, exist_ok=True)
        (tree / folder / f"{name.decode()}.eml").write_bytes(_message(name, name))
    r = initialised("import", str(tree), "--source", "[/y]")
    assert r.code == 0, r.err
    assert "[/a]" in r.out and "[b]" in r.out and "import: 3 imported" in r.out
    stats = initialised("stats")
    assert stats.code == 0, stats.err
    assert "sources: [/y] 3" in stats.out


def test_brackets_in_the_archive_path_and_in_status(cli: Callable[..., CliResult], tmp_path: Path) -> None:
    cfg = _config(tmp_path, "odd.yaml", path=str(tmp_path / "ar[/z]"))
    r = cli("init", config=cfg)
    assert r.code == 0, r.err
    assert f"at {tmp_path / 'ar[/z]'}" in r.out
    with_source = _config(
        tmp_path,
        "src.yaml",
        path=str(tmp_path / "ar[/z]"),
        extra={"sources": [{"name": "[/s]", "type": "files", "paths": [str(tmp_path)]}]},
    )
    status = cli("status", config=with_source)
    assert status.code == 0, status.err
    assert "[/s]" in status.out


# -- 2 and 3. no emoji codes, no terminal control sequences --------------------------------

EMOJI = _message(b"Build :x: failed :warning: [/b]", b"Looks good :thumbs_up: to me [red]")
CONTROL = _message(b"=?utf-8?q?=1B]2;PWNED=07=1B[2J?=", b"Hello \x1b[31mred\x1b[0m and a bell\x07.")


@pytest.fixture
def odd_mail(initialised: Callable[..., CliResult], tmp_path: Path) -> tuple[str, str]:
    """Import the two messages above; returns (emoji id, control id)."""
    emoji, control = _import(initialised, tmp_path / "odd", {"emoji.eml": EMOJI, "control.eml": CONTROL})
    return emoji, control


def test_emoji_codes_are_shown_as_written(initialised: Callable[..., CliResult], odd_mail: tuple[str, str]) -> None:
    emoji, _ = odd_mail
    shown = initialised("show", emoji)
    assert shown.code == 0, shown.err
    assert "Subject: Build :x: failed :warning: [/b]" in shown.out
    assert "Looks good :thumbs_up: to me [red]" in shown.out
    assert not {"❌", "⚠", "👍"} & set(shown.out)
    found = initialised("search", "from:eve@evil.example")
    assert found.code == 0, found.err
    assert "Build :x: failed :warning: [/b]" in found.out and "❌" not in found.out


def test_control_characters_from_mail_never_reach_the_terminal(
    initialised: Callable[..., CliResult], odd_mail: tuple[str, str]
) -> None:
    _, control = odd_mail
    shown = initialised("show", control)
    assert shown.code == 0, shown.err
    assert ESC not in shown.out and "\x07" not in shown.out
    assert "\\x1b]2;PWNED\\x07\\x1b[2J" in shown.out
    assert "Hello \\x1b[31mred\\x1b[0m and a bell\\x07." in shown.out
    found = initialised("search", "from:eve@evil.example")
    assert found.code == 0, found.err
    assert ESC not in found.out and "\x07" not in found.out and "PWNED" in found.out
    # --json stays exact
    js = initialised("show", control, "--json").json()
    assert isinstance(js, dict)
    assert ["Subject", "\x1b]2;PWNED\x07\x1b[2J"] in js["headers"]
    assert "\x1b[31mred" in str(js["body_text"])
    subjects = {h["subject"] for h in initialised("search", "from:eve@evil.example", "--json").json_lines()}
    assert "\x1b]2;PWNED\x07\x1b[2J" in subjects
    assert initialised("show", control, "--raw").raw == CONTROL


def test_error_messages_show_control_characters_visibly(cli: Callable[..., CliResult], tmp_path: Path) -> None:
    r = cli("stats", config=tmp_path / "a\x1b[2Jb.yaml")
    assert r.code == 3
    assert ESC not in r.err and "a\\x1b[2Jb.yaml" in r.err


# -- 4. Ctrl-C at any time ---------------------------------------------------------------


def test_ctrl_c_while_the_parser_is_built_is_an_interrupt(monkeypatch: pytest.MonkeyPatch) -> None:
    from archiver.cli import main as cli_main

    def interrupted() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_main, "build_parser", interrupted)
    err = io.StringIO()
    try:
        with redirect_stderr(err):
            code = cli_main.main(["stats"])
    except KeyboardInterrupt:
        pytest.fail("KeyboardInterrupt escaped main()")
    assert code == 130
    assert err.getvalue() == "archiver: interrupted; everything committed so far is kept.\n"


# -- 5. input that is not UTF-8 ------------------------------------------------------------


def test_a_config_file_that_is_not_utf8(cli: Callable[..., CliResult], tmp_path: Path) -> None:
    cfg = tmp_path / "utf16.yaml"
    cfg.write_bytes("archive: {path: /tmp/x}\n".encode("utf-16"))  # starts with the BOM \xff\xfe
    r = cli("stats", config=cfg)
    _no_traceback(r)
    assert r.code == 3
    assert "is not UTF-8 text (it looks like UTF-16; byte 0xff at offset 0); save it as UTF-8" in r.err


def test_a_passphrase_that_is_not_utf8(
    initialised: Callable[..., CliResult], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ARCHIVER_PASSPHRASE")
    secret = tmp_path / "passphrase"
    secret.write_bytes(b"caf\xe9\n")  # latin-1
    cfg = _config(tmp_path, "pf.yaml", path=str(tmp_path / "archive"), passphrase_file=str(secret))
    r = initialised("verify", config=cfg)
    _no_traceback(r)
    assert r.code == 5 and "is not UTF-8 text (byte 0xe9 at offset 3)" in r.err
    monkeypatch.setenv("ARCHIVER_PASSPHRASE", "caf\udce9")  # what os.environ makes of the byte 0xe9
    r = initialised("verify")
    _no_traceback(r)
    assert r.code == 5 and "ARCHIVER_PASSPHRASE is not UTF-8 text" in r.err


@pytest.mark.parametrize("errors", ["strict", "surrogateescape"])  # a UTF-8 locale; the C locale
def test_hash_password_from_input_that_is_not_utf8(
    cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch, errors: str
) -> None:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"\xff\n"), encoding="utf-8", errors=errors))
    r = cli("web", "hash-password")
    _no_traceback(r)
    assert r.code == 2 and "not UTF-8" in r.err and r.out == ""
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO("pässword\n".encode()), encoding="utf-8"))
    ok = cli("web", "hash-password")
    assert ok.code == 0 and ok.out.startswith("$argon2id$")


# -- 6. output that cannot be written ------------------------------------------------------


def _process(config: Path, args: list[str], stdout: int | None) -> subprocess.CompletedProcess[bytes]:
    """Run the CLI with ``stdout`` as its standard output; None: with none at all (`>&-`)."""
    env = {**os.environ, "ARCHIVER_PASSPHRASE": PASSPHRASE, "ARCHIVER_CONFIG": str(config)}
    close = None if stdout is not None else (lambda: os.close(1))
    return subprocess.run(
        [*archiver_exe(), *args], stdout=stdout, stderr=subprocess.PIPE, env=env, timeout=120, preexec_fn=close
    )


def test_a_full_disk_or_no_stdout_is_one_line(imported: Callable[..., CliResult], config_file: Path) -> None:
    with open("/dev/full", "wb") as full:
        r = _process(config_file, ["stats"], full.fileno())
    assert r.returncode == 1
    assert r.stderr.decode() == "archiver: Cannot write the output: No space left on device.\n"
    for args in (["stats"], ["stats", "--json"]):
        r = _process(config_file, args, None)
        assert (r.returncode, r.stderr.decode()) == (
            1,
            "archiver: Cannot write the output: standard output is closed.\n",
        )


@pytest.mark.parametrize(
    "args",
    [["journal"], ["journal", "--json"], ["stats"], ["stats", "--json"], ["show", "SHOW"], ["show", "SHOW", "--raw"]],
    ids=" ".join,
)
def test_a_closed_pipe_exits_141_quietly(
    imported: Callable[..., CliResult], config_file: Path, args: list[str]
) -> None:
    if "SHOW" in args:
        hit = imported("search", "subject:grievance", "--json").json_lines()[0]
        args = [str(hit["id"]) if a == "SHOW" else a for a in args]
    read, write = os.pipe()
    os.close(read)  # the reader is gone before anything is written, like `| head -1` after its line
    try:
        r = _process(config_file, args, write)
    finally:
        os.close(write)
    assert (r.returncode, r.stderr.decode()) == (141, "")


def test_a_failed_write_in_process_leaves_nothing_behind(
    imported: Callable[..., CliResult], config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same in-process: one line, and the next command prints nothing of the failed output."""
    from archiver.cli.main import main

    class Full(io.RawIOBase):
        full = True

        def writable(self) -> bool:
            return True

        def write(self, b: Any) -> int:
            if self.full:
                raise OSError(28, "No space left on device")
            return len(b)

    raw = Full()
    err = io.StringIO()
    with monkeypatch.context() as m, redirect_stderr(err):
        m.setattr("sys.stdout", io.TextIOWrapper(io.BufferedWriter(raw), encoding="utf-8"))
        code = main(["--config", str(config_file), "stats"])
    raw.full = False  # what is left in its buffer may go now, when it is collected
    assert (code, err.getvalue()) == (1, "archiver: Cannot write the output: No space left on device.\n")
    after = imported("stats")
    assert after.code == 0 and after.out.startswith("messages: ") and after.out.count("messages: ") == 1


# -- 7. init on paths it cannot use --------------------------------------------------------


def test_init_on_a_file_or_a_path_that_cannot_be_created(
    cli: Callable[..., CliResult], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x", encoding="utf-8")
    r = cli("init", config=_config(tmp_path, "file.yaml", path=str(afile)))
    _no_traceback(r)
    assert r.code == 4 and f"{afile} is a file" in r.err
    r = cli("init", config=_config(tmp_path, "under.yaml", path=str(afile / "sub")))
    _no_traceback(r)
    assert r.code == 1 and f"{afile / 'sub'}: Not a directory" in r.err
    if Path("/proc/self").is_dir():
        r = cli("init", config=_config(tmp_path, "proc.yaml", path="/proc/nope"))
        _no_traceback(r)
        assert r.code == 1 and "/proc/nope: No such file or directory" in r.err

    def full_disk(*_a: Any, **_k: Any) -> None:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr("archiver.store.repository.create_keyfile", full_disk)
        r = cli("init")
    _no_traceback(r)
    assert r.code == 1 and r.err.endswith(
        f"Cannot create the archive at {tmp_path / 'archive'}: No space left on device.\n"
    )
    assert not (tmp_path / "archive").exists()  # and nothing is left to block the next init
    assert cli("init").code == 0


def test_a_path_with_a_nul_character_is_a_config_error(cli: Callable[..., CliResult], tmp_path: Path) -> None:
    cfg = _config(tmp_path, "nul.yaml", path=str(tmp_path / "a\0b"))
    for command in ("init", "stats"):
        r = cli(command, config=cfg)
        _no_traceback(r)
        assert r.code == 3 and "archive.path: a path cannot contain a NUL character" in r.err
    cfg = _config(
        tmp_path,
        "nul-source.yaml",
        path=str(tmp_path / "archive"),
        extra={"sources": [{"name": "f", "type": "files", "paths": ["ok", "b\0d"]}]},
    )
    r = cli("status", config=cfg)
    assert r.code == 3 and "sources.0.paths.1: a path cannot contain a NUL character" in r.err


# -- 8. journal --id takes what show takes -----------------------------------------------------


def test_journal_id_accepts_prefixes_and_upper_case(imported: Callable[..., CliResult]) -> None:
    ingests = imported("journal", "--type", "ingest", "--json").json_lines()
    oid = str(ingests[2]["data"]["id"])  # type: ignore[index]
    full = imported("journal", "--id", oid, "--json").json_lines()
    assert full and all(r["data"]["id"] == oid for r in full)  # type: ignore[index]
    for ref in (oid[:10], oid.upper(), oid[:12].upper(), f" {oid[:8]} "):
        r = imported("journal", "--id", ref, "--json")
        assert r.code == 0, (ref, r.err)
        assert r.json_lines() == full, ref
    assert imported("show", oid[:10].upper()).code == 0  # the same forms show takes
    unknown = imported("journal", "--id", "0" * 12)
    assert unknown.code == 8 and "No message with id" in unknown.err
    short = imported("journal", "--id", "abc")
    assert short.code == 8 and "not a message id" in short.err


# -- 9. a malformed CLIENT/MATTER ----------------------------------------------------------------


@pytest.mark.parametrize("spec", ["acme", "acme/", "/10234-0001", "acme/10234/0001"])
def test_a_malformed_matter_exits_10_everywhere(
    initialised: Callable[..., CliResult], tmp_path: Path, spec: str
) -> None:
    out = tmp_path / "b.zip"
    codes = {
        "export": initialised("export", "--matter", spec, "--case", "c", "--out", str(out)),
        "hold": initialised("hold", "add", "--case", "c", "--matter", spec, "--reason", "r"),
        "matter": initialised("matter", "show", spec),
    }
    for what, r in codes.items():
        assert r.code == 10, (what, r.code, r.err)
        assert f"{spec!r} is not CLIENT/MATTER" in r.err, what
    assert not out.exists()
