"""Tagger: each rule, and their precedence."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from archiver.config import ClientRule, TaggingConfig
from archiver.model import UNFILED, Address, ParsedMessage, Tags
from archiver.normalize.tagging import Tagger

WHEN = datetime(2024, 1, 1, tzinfo=UTC)

CONFIG = TaggingConfig(
    clients=[
        ClientRule(name="Acme", domains=["acme.example"], matter_prefixes=["12345-"], matters=["Project Falcon"]),
        ClientRule(
            name="Globex", addresses=["ceo@globex.example"], domains=["globex.example"], matter_prefixes=["678"]
        ),
        ClientRule(name="Initech", domains=["mail.initech.example", "initech.example"], matter_prefixes=["6789"]),
        ClientRule(name="Hooli", addresses=["Someone@Shared.Example"]),
    ],
)


def msg(
    *,
    subject: str = "",
    body: str = "",
    sender: str = "nobody@elsewhere.example",
    to: tuple[str, ...] = (),
    cc: tuple[str, ...] = (),
    header: str = "",
) -> ParsedMessage:
    return ParsedMessage(
        subject=subject,
        body_text=body,
        from_=(Address(addr=sender),),
        to=tuple(Address(addr=a) for a in to),
        cc=tuple(Address(addr=a) for a in cc),
        explicit_matter=header,
        date=WHEN,
    )


@pytest.fixture
def tagger() -> Tagger:
    return Tagger(CONFIG)


def test_nothing_matches_is_unfiled(tagger: Tagger) -> None:
    assert tagger.tag(msg(subject="lunch?")) == Tags(client=UNFILED, matters=(), reasons=())


def test_explicit_header_client_and_matter_wins(tagger: Tagger) -> None:
    tags = tagger.tag(msg(header="globex/99999-0001", subject="re 12345-0001", sender="x@acme.example"))
    assert tags.client == "Globex"  # configured spelling
    assert tags.matters == ("99999-0001",)
    assert tags.reasons == ("header",)


def test_explicit_header_matter_only_takes_client_from_prefix(tagger: Tagger) -> None:
    tags = tagger.tag(msg(header="12345-0042, 12345-0043"))
    assert tags == Tags(client="Acme", matters=("12345-0042", "12345-0043"), reasons=("header", "prefix:12345-"))


def test_explicit_header_unknown_client_is_kept(tagger: Tagger) -> None:
    assert tagger.tag(msg(header="Newco/1")).client == "Newco"


def test_subject_pattern_and_prefix(tagger: Tagger) -> None:
    tags = tagger.tag(msg(subject="RE: 12345-0001 draft"))
    assert tags.client == "Acme"
    assert tags.matters == ("12345-0001",)
    assert tags.reasons == ("pattern:subject", "prefix:12345-")


def test_body_pattern_deduplicated_and_ordered(tagger: Tagger) -> None:
    tags = tagger.tag(msg(subject="12345-0002", body="see 12345-0001 and 12345-0002 and 12345-0001"))
    assert tags.matters == ("12345-0002", "12345-0001")
    assert tags.reasons[:2] == ("pattern:subject", "pattern:body")


def test_body_not_searched_when_disabled() -> None:
    tagger = Tagger(CONFIG.model_copy(update={"search_body": False}))
    assert tagger.tag(msg(body="12345-0001")).matters == ()


def test_longest_prefix_wins(tagger: Tagger) -> None:
    cfg = CONFIG.model_copy(update={"matter_patterns": [r"\b\d{4}-\d{2}\b"]})
    assert Tagger(cfg).tag(msg(subject="6789-01")).client == "Initech"
    assert Tagger(cfg).tag(msg(subject="6781-01")).client == "Globex"


def test_named_group_and_group_one() -> None:
    named = Tagger(TaggingConfig(matter_patterns=[r"Matter (?P<matter>[A-Z]\d+)"]))
    assert named.tag(msg(subject="Matter A17 update")).matters == ("A17",)
    grouped = Tagger(TaggingConfig(matter_patterns=[r"#(\d+)"]))
    assert grouped.tag(msg(subject="ticket #42")).matters == ("42",)
    whole = Tagger(TaggingConfig(matter_patterns=[r"M-\d+"]))
    assert whole.tag(msg(subject="M-7 and M-8")).matters == ("M-7", "M-8")


def test_known_matter_name_gives_client() -> None:
    tagger = Tagger(CONFIG.model_copy(update={"matter_patterns": [r"Project \w+"]}))
    tags = tagger.tag(msg(subject="project falcon? no: Project Falcon"))
    assert tags.client == "Acme"
    assert "matter:Project Falcon" in tags.reasons


def test_exact_address(tagger: Tagger) -> None:
    tags = tagger.tag(msg(sender="someone@shared.example"))
    assert tags == Tags(client="Hooli", matters=(), reasons=("address:someone@shared.example",))


def test_address_beats_domain_for_same_mailbox() -> None:
    cfg = TaggingConfig(
        clients=[
            ClientRule(name="DomainCo", domains=["x.example"]),
            ClientRule(name="Person", addresses=["p@x.example"]),
        ]
    )
    assert Tagger(cfg).tag(msg(sender="p@x.example")).client == "Person"


def test_domain_and_subdomain(tagger: Tagger) -> None:
    assert tagger.tag(msg(sender="a@acme.example")).reasons == ("domain:acme.example",)
    tags = tagger.tag(msg(sender="a@eu.mail.acme.example"))
    assert tags.client == "Acme" and tags.reasons == ("domain:acme.example",)
    assert tagger.tag(msg(sender="a@notacme.example")).client == UNFILED


def test_most_specific_domain_wins() -> None:
    cfg = TaggingConfig(
        clients=[
            ClientRule(name="Parent", domains=["corp.example"]),
            ClientRule(name="Child", domains=["sub.corp.example"]),
        ]
    )
    assert Tagger(cfg).tag(msg(sender="a@x.sub.corp.example")).client == "Child"


def test_sender_client_beats_recipients(tagger: Tagger) -> None:
    tags = tagger.tag(msg(sender="x@globex.example", to=("y@acme.example",)))
    assert tags.client == "Globex"


def test_recipients_pick_first_client_in_config_order(tagger: Tagger) -> None:
    tags = tagger.tag(msg(to=("y@initech.example", "z@acme.example")))
    assert tags.client == "Acme"
    assert tags.reasons == ("domain:acme.example",)
    assert tagger.tag(msg(cc=("q@mail.initech.example",))).client == "Initech"


def test_matter_prefix_beats_addresses(tagger: Tagger) -> None:
    tags = tagger.tag(msg(subject="12345-0009", sender="ceo@globex.example"))
    assert tags.client == "Acme"


def test_matter_without_client_rule_falls_back_to_addresses(tagger: Tagger) -> None:
    tags = tagger.tag(msg(subject="55555-0001", sender="ceo@globex.example"))
    assert tags == Tags(
        client="Globex", matters=("55555-0001",), reasons=("pattern:subject", "address:ceo@globex.example")
    )


def test_thread_inheritance(tagger: Tagger) -> None:
    parents = (
        Tags(client="Acme", matters=("12345-0001",)),
        Tags(client="Acme", matters=("12345-0002", "12345-0001")),
    )
    tags = tagger.tag(msg(subject="re: thanks"), parent_tags=parents)
    assert tags == Tags(client="Acme", matters=("12345-0001", "12345-0002"), reasons=("thread",))


def test_thread_keeps_own_client_but_takes_matters(tagger: Tagger) -> None:
    tags = tagger.tag(msg(sender="a@globex.example"), parent_tags=(Tags(client="Acme", matters=("m1",)),))
    assert tags.client == "Globex" and tags.matters == ("m1",)
    assert "thread" in tags.reasons


def test_own_matter_is_not_merged_with_parents(tagger: Tagger) -> None:
    tags = tagger.tag(msg(subject="12345-0003"), parent_tags=(Tags(client="Acme", matters=("12345-0001",)),))
    assert tags.matters == ("12345-0003",)
    assert "thread" not in tags.reasons


def test_unfiled_parents_add_nothing(tagger: Tagger) -> None:
    assert tagger.tag(msg(), parent_tags=(Tags(),)) == Tags()


def test_thread_inheritance_can_be_disabled() -> None:
    tagger = Tagger(CONFIG.model_copy(update={"thread_inheritance": False}))
    assert tagger.tag(msg(), parent_tags=(Tags(client="Acme", matters=("m",)),)).client == UNFILED


def test_fingerprint_is_stable_and_tracks_rules() -> None:
    a = Tagger(CONFIG).fingerprint()
    assert a == Tagger(CONFIG.model_copy()).fingerprint()
    assert len(a) == 64 and int(a, 16) >= 0
    changed = CONFIG.model_copy(update={"matter_patterns": [r"\d+"]})
    assert Tagger(changed).fingerprint() != a
