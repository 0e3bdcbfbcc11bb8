"""Role addresses are never a candidate, whatever the source asks or a name spells.

Issue "hostile input must never cost data", item 20: a desired email of ``admin@``,
``postmaster@``, ``abuse@``, ... (the addresses a certificate authority or a mail provider treats
as the domain's owner, RFC 2142) was issued to ordinary employees. ``ROLE_LOCAL_PARTS`` plus
``addresses.reserved`` are left out of every candidate list: the desired address, the templates,
the fallback. (The allocator's log line and whole cycles: tests/cycle/test_reserved_addresses.py.)
"""

from __future__ import annotations

from itertools import islice
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.addresses import ROLE_LOCAL_PARTS, CandidateSource, candidates, is_role_local_part
from syncd.config import AddressesConfig
from syncd.errors import ConfigError
from syncd.model import Person
from tests.support.configs import offline_config

# What a certificate authority may mail to prove control of the domain (CA/Browser Forum BR
# 3.2.2.4.4) and RFC 2142's mailboxes: the list must hold at least these.
MUST_BE_RESERVED = {
    "admin", "administrator", "webmaster", "hostmaster", "postmaster",
    "abuse", "noc", "security", "info", "marketing", "sales", "support", "www", "uucp", "ftp",
    "root", "mailer-daemon", "nobody", "noreply", "no-reply", "ssladmin", "ssl-admin",
    "ssl-administrator", "it",
}  # fmt: skip


def test_the_role_list_holds_rfc_2142_and_the_ca_validation_addresses() -> None:
    assert MUST_BE_RESERVED <= ROLE_LOCAL_PARTS
    assert all(local_part == local_part.lower() for local_part in ROLE_LOCAL_PARTS)


@pytest.mark.parametrize("desired", ["admin", "Postmaster", " ABUSE ", "hostmaster", "root"])
def test_a_desired_role_address_is_never_a_candidate(desired: str) -> None:
    anna = Person("E1", "Anna", "Meier", email=f"{desired}@example.com")
    given_out = list(candidates(anna, AddressesConfig(), preferred=desired, max_n=3))
    assert given_out[0] == "anna.meier"
    assert desired.strip().lower() not in given_out


def test_a_name_that_spells_a_role_address_gets_the_next_candidate() -> None:
    # "Admin Root" with {first}: not admin@ (and {last} would not give root@ either).
    config = AddressesConfig(templates=["{first}", "{last}", "{first}.{last}"])
    assert list(islice(candidates(Person("E1", "Admin", "Root"), config), 2)) == [
        "admin.root",
        "user.e1",
    ]


def test_the_fallback_never_gives_a_role_address() -> None:
    config = AddressesConfig(templates=["{first}"], fallback_template="{anchor}")
    person = Person("postmaster", "\u738b", "\u5c0f\u660e")  # Han: straight to the fallback
    assert next(candidates(person, config)) == "postmaster-2"


def test_addresses_reserved_adds_to_the_role_list_in_any_case() -> None:
    config = AddressesConfig(reserved=[" CEO ", "Payroll"])
    assert config.reserved == ["ceo", "payroll"]
    ceo = Person("E1", "Ceo", "Meier", email="ceo@example.com")
    assert list(islice(candidates(ceo, config, preferred="ceo"), 1)) == ["ceo.meier"]
    first = AddressesConfig(templates=["{first}", "{first}.{last}"], reserved=["payroll"])
    assert next(candidates(Person("E2", "Payroll", "Team"), first)) == "payroll.team"
    assert not is_role_local_part("ceo")  # a site's own, not a role address


def test_a_reserved_entry_that_is_no_local_part_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        offline_config(tmp_path, tmp_path / "state.db", addresses={"reserved": ["ceo@example.com"]})
    assert "at 'addresses.reserved[0]'" in str(error.value)
    assert "'ceo@example.com' is not a local part" in str(error.value)


def test_the_candidate_source_leaves_them_out_and_says_so_once_per_name() -> None:
    config = AddressesConfig(templates=["{first}", "{first}{n}"], reserved=["bob"])
    told: list[tuple[str, str]] = []
    source = CandidateSource(config, max_n=3, on_reserved=lambda p, lp: told.append((p.anchor, lp)))
    admin_one = Person("E1", "Admin", "Root")
    admin_two = Person("E2", "Admin", "Root")
    assert next(source.for_person(admin_one, preferred="postmaster")) == "admin2"
    assert next(source.for_person(admin_two)) == "admin2"
    assert next(source.for_person(Person("E3", "Bob", "X"))) == "bob2"
    # The desired address for the person who asked; a name's reserved candidate once, for the
    # first person whose name gives it (the rest skip it without looking).
    assert told == [("E1", "postmaster"), ("E1", "admin"), ("E3", "bob")]


NAMES = st.sampled_from(["Admin", "Root", "Info", "Www", "It", "Anna", "No", "Reply", "Sales"])
TEMPLATES = st.lists(
    st.sampled_from(["{first}", "{last}", "{first}-{last}", "{f}{last}", "{first}{n}"]),
    min_size=1,
    max_size=3,
)


@settings(max_examples=200, deadline=None)
@given(
    first=NAMES, last=NAMES, templates=TEMPLATES, desired=st.sampled_from(sorted(ROLE_LOCAL_PARTS))
)
def test_no_candidate_is_ever_reserved_and_the_source_agrees_with_candidates(
    first: str, last: str, templates: list[str], desired: str
) -> None:
    config = AddressesConfig(templates=templates, fallback_template="{anchor}", reserved=["anna"])
    person = Person("noreply", first, last)
    expected = list(candidates(person, config, preferred=desired, max_n=4))
    assert not set(expected) & (ROLE_LOCAL_PARTS | {"anna"})
    source = CandidateSource(config, max_n=4)
    assert list(source.for_person(person, preferred=desired)) == expected
