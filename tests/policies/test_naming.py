"""Naming policy: safe, length-limited, unique and deterministic names from hostile message fields."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from datetime import UTC, datetime

import pytest

from archiver.config import NamingConfig
from archiver.errors import PolicyError
from archiver.policies.naming import NameFields, NamingPolicy, UniqueNamer, sanitize_component

WHEN = datetime(2021, 2, 22, 7, 30, tzinfo=UTC)
DEFAULT = NamingPolicy.from_config(NamingConfig())
UNSAFE = re.compile(r'[<>:"\\|?*\x00-\x1f]')


def fields(i: int = 1, **kw: object) -> NameFields:
    base: dict[str, object] = {
        "id": hashlib.sha256(str(i).encode()).hexdigest(),
        "date": WHEN,
        "client": "acme",
        "matters": ("10234-0002",),
        "from_addr": "zoe.mueller@acme.example",
        "subject": "Markenanmeldung ACME",
    }
    base.update(kw)
    return NameFields(**base)  # type: ignore[arg-type]


def assert_safe(path: str, max_length: int = 200) -> None:
    assert len(path) <= max_length
    assert not path.startswith("/") and not re.match(r"^[A-Za-z]:", path)
    assert unicodedata.normalize("NFC", path) == path
    for part in path.split("/"):
        assert part not in ("", ".", "..")
        assert not UNSAFE.search(part), part
        assert not part.endswith((".", " "))
        assert part.split(".")[0].upper() not in {"CON", "PRN", "AUX", "NUL", "COM1", "LPT1"}
        assert len(part.encode("utf-8")) <= 255


def test_default_template() -> None:
    name = DEFAULT.base_name(fields())
    assert (
        name
        == f"acme-10234-0002/2021/20210222T073000Z_zoe.mueller_markenanmeldung-acme_{fields().id[:12]}.eml"
    )


def test_deterministic() -> None:
    assert DEFAULT.base_name(fields(7)) == DEFAULT.base_name(fields(7))
    a, b = UniqueNamer(DEFAULT), UniqueNamer(DEFAULT)
    assert [a.assign(fields(i)) for i in range(5)] == [b.assign(fields(i)) for i in range(5)]


def test_traversal_cannot_escape() -> None:
    policy = NamingPolicy("{client}/{subject_slug}/{from_local}.eml")
    for evil in ("../../etc", "..", "/etc/passwd", "..\\..\\windows", "a/../../b"):
        name = policy.base_name(fields(client=evil, from_addr=f"{evil}@x.example", subject=evil))
        assert_safe(name)
        assert name.count("/") == 2  # only the template's separators make folders
    with pytest.raises(PolicyError):
        NamingPolicy("/abs/{id}.eml")
    with pytest.raises(PolicyError):
        NamingPolicy("C:/x/{id}.eml")


def test_reserved_and_forbidden_names() -> None:
    policy = NamingPolicy("{client}/{from_local}.eml")
    for reserved in ("CON", "nul", "Com1", "LPT9", "aux.txt", "PRN "):
        assert_safe(policy.base_name(fields(client=reserved, from_addr=f"{reserved}@x.example")))
    assert sanitize_component("CON") == "_CON"
    assert sanitize_component("report.") == "report"
    assert sanitize_component('a<b>c:d"e|f?g*h') == "a_b_c_d_e_f_g_h"
    assert sanitize_component("tab\there\x00nul") == "tab here nul"
    assert sanitize_component("...") == "_"


def test_length_limits() -> None:
    policy = NamingPolicy("{client}/{subject_slug:.500}/{from_local}_{id}.eml", max_length=80)
    name = policy.base_name(
        fields(client="c" * 300, subject="word " * 200, from_addr="x" * 300 + "@y.example")
    )
    assert_safe(name, 80)
    assert name.endswith(".eml")
    long = DEFAULT.base_name(fields(subject="ü" * 400))
    assert_safe(long)


def test_unicode_is_nfc_and_kept() -> None:
    decomposed = unicodedata.normalize("NFD", "Prüfung Ärger 東京")
    name = DEFAULT.base_name(fields(subject=decomposed))
    assert "prüfung-ärger-東京" in name
    assert_safe(name)


def test_unique_with_deterministic_suffix() -> None:
    namer = UniqueNamer(NamingPolicy("{client}/{from_local}.eml"))
    one = namer.assign(fields(1, from_addr="Same@x.example"))
    two = namer.assign(
        fields(2, from_addr="same@x.example")
    )  # differs only in case: same file on Windows/macOS
    three = namer.assign(fields(3, from_addr="SAME@x.example"))
    assert one == "acme/Same.eml"
    assert two == f"acme/same~{fields(2).id[:12]}.eml" and three == f"acme/SAME~{fields(3).id[:12]}.eml"
    assert len({n.casefold() for n in (one, two, three)}) == 3
    again = namer.assign(fields(2, subject="same"))  # the same id twice still gets a new name
    assert again not in (one, two, three)


def test_matter_rules() -> None:
    policy = NamingPolicy("{client}-{matter}/{id:.8}.eml")
    assert policy.base_name(fields(matters=("20871-0009", "10234-0001"))).startswith("acme-10234-0001/")
    assert policy.base_name(fields(matters=())).startswith("acme-nomatter/")
    assert policy.base_name(fields(client="unfiled", matters=())).startswith("unfiled-nomatter/")


def test_bad_templates_are_refused() -> None:
    for bad in ("{nope}.eml", "{id.__class__}.eml", "{id[0]}.eml", "{id!r}.eml", "{date:%Y", "{id:{client}}"):
        with pytest.raises(PolicyError):
            NamingPolicy(bad)


def test_name_command(initialised: object) -> None:
    from collections.abc import Callable

    from tests.conftest import SAMPLE_MAILDIR

    cli: Callable[..., object] = initialised  # type: ignore[assignment]
    assert cli("import", str(SAMPLE_MAILDIR)).code == 0  # type: ignore[attr-defined]
    hit = cli("search", "Markenanmeldung", "--json").json_lines()[0]  # type: ignore[attr-defined]
    r = cli("name", hit["id"][:12], "--json")
    out = r.json()  # type: ignore[attr-defined]
    assert out["id"] == hit["id"]
    assert out["name"].startswith("acme-10234-0002/2021/") and out["name"].endswith(f"_{hit['id'][:12]}.eml")
    assert_safe(out["name"])
