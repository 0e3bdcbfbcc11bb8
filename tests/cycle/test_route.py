"""Routing people to mail domains (``hybridbox.domains``) and where a create goes: pure functions,
each rule of the issue as one case."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd.cycle import Router, router
from syncd.cycle._plan import Known, create_target
from syncd.errors import ConfigError
from syncd.model import Person
from tests.support.configs import offline_config

RULES = [
    {"domain": "labs.example.com", "when": {"department": ["Research", "Labs"]}},
    {"domain": "example.de", "when": {"country": ["DE", "AT", "CH"]}},
    {"domain": "example.at", "when": {"country": ["AT"], "department": ["Sales"]}},
]


def person(**fields: str) -> Person:
    return Person("E1", "Anna", "Berg", fields=tuple(fields.items()))


@pytest.fixture
def routing(tmp_path: Path) -> Router:
    config = offline_config(
        tmp_path,
        tmp_path / "state.db",
        hybridbox={"domains": RULES},
        source={
            "type": "csv",
            "path": str(tmp_path / "hr.csv"),
            "columns": {
                "anchor": "id",
                "first_name": "first",
                "last_name": "last",
                "fields": {"department": "Department", "country": "Country"},
            },
        },
    )
    return router(config)


@pytest.mark.parametrize(
    ("fields", "domain"),
    [
        ({"department": "Research", "country": "DE"}, "labs.example.com"),  # first match wins
        ({"department": "  rEsEaRcH ", "country": ""}, "labs.example.com"),  # trim + casefold
        ({"department": "Sales", "country": "de"}, "example.de"),
        ({"department": "Sales", "country": "AT"}, "example.de"),  # the earlier rule wins
        ({"department": "Research Labs", "country": "US"}, "example.com"),  # exact, no substring
        ({"department": "", "country": ""}, "example.com"),  # empty values match nothing
        ({}, "example.com"),
    ],
)
def test_the_first_rule_whose_fields_all_match_wins(
    routing: Router, fields: dict[str, str], domain: str
) -> None:
    assert routing.route(person(**fields)) == domain


def test_a_rule_needs_all_of_its_fields(tmp_path: Path) -> None:
    rules = [{"domain": "example.at", "when": {"country": ["AT"], "department": ["Sales"]}}]
    config = offline_config(
        tmp_path,
        tmp_path / "state.db",
        hybridbox={"domains": rules},
        source={
            "type": "csv",
            "path": str(tmp_path / "hr.csv"),
            "columns": {"anchor": "id", "first_name": "f", "last_name": "l",
                        "fields": {"department": "D", "country": "C"}},
        },
    )  # fmt: skip
    routing = router(config)
    assert routing.route(person(department="Sales", country="AT")) == "example.at"
    assert routing.route(person(department="Sales", country="DE")) == "example.com"
    assert routing.route(person(department="IT", country="AT")) == "example.com"


def test_the_routing_fingerprint_changes_with_the_routing(tmp_path: Path, routing: Router) -> None:
    def fingerprint(default: str) -> str:
        config = offline_config(tmp_path, tmp_path / "s.db", hybridbox={"domain": default})
        return router(config).fingerprint

    plain = fingerprint("example.com")
    assert fingerprint("Example.COM") == plain  # domains are compared in lower case
    assert fingerprint("example.org") != plain
    assert routing.fingerprint != plain


def test_a_rule_on_a_field_the_source_does_not_read_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        offline_config(
            tmp_path,
            tmp_path / "state.db",
            hybridbox={"domains": [{"domain": "labs.example.com", "when": {"team": ["R"]}}]},
        )
    assert "at 'hybridbox.domains[0].when.team'" in str(error.value)
    assert "source.columns.fields" in str(error.value)


def test_a_rule_that_lists_no_value_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        offline_config(
            tmp_path,
            tmp_path / "state.db",
            hybridbox={"domains": [{"domain": "labs.example.com", "when": {}}]},
        )
    assert "hybridbox.domains[0].when" in str(error.value)


@pytest.mark.parametrize(
    ("known", "target"),
    [
        (None, ("b.test", None)),  # first seen: the routed domain, any address
        (Known(domain="b.test", local_part="ann"), ("b.test", "ann")),  # a retry keeps it
        # Re-routed before any mailbox existed: a new address in the new domain.
        (Known(domain="a.test", local_part="ann", mailbox_state="failed"), ("b.test", None)),
        # An unanswered request in the old domain may still land there: it stays.
        (Known(domain="a.test", local_part="ann", unanswered=True), ("a.test", "ann")),
    ],
)
def test_where_a_create_goes(known: Known | None, target: tuple[str, str | None]) -> None:
    assert create_target("b.test", known) == target
