"""Start dates outside 1900-01-01..2199-12-31 are rejected by both readers (they share DateParser).

"0001-01-01" is a common placeholder for "unknown"; such a date once reached the planner, which
could not subtract the provisioning window from it, and every cycle failed from then on. The CSV
side is in tests/source/test_hostile_csv.py; this is the parser itself and the LDAP mapper, on
entries shaped as ldap3 returns them (no server needed).
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from syncd.config import LdapSource, SyncConfig
from syncd.model import Person, ReadReport
from syncd.source._ldap_entry import EntryMapper
from syncd.source.csv import EARLIEST_START_DATE, LATEST_START_DATE, DateParser
from tests.support.events import collecting


def test_the_parser_refuses_dates_out_of_range_and_says_why() -> None:
    parse = DateParser(["%Y-%m-%d", "%d.%m.%Y"])
    assert parse("0001-01-01") is None
    assert parse("31.12.9999") is None
    assert parse("1900-01-01") == EARLIEST_START_DATE
    assert parse("31.12.2199") == LATEST_START_DATE
    assert "outside 1900-01-01..2199-12-31" in parse.problem("0001-01-01")
    assert "outside 1900-01-01..2199-12-31" in parse.problem("31.12.9999")
    assert parse.problem("someday").startswith("unparseable date 'someday'")


def test_a_cached_answer_is_the_same_answer() -> None:
    parse = DateParser(["%Y-%m-%d"])
    assert [parse("0001-01-01") for _ in range(3)] == [None, None, None]
    assert [parse("2026-03-01") for _ in range(3)] == [date(2026, 3, 1)] * 3


def openldap_source() -> LdapSource:
    return LdapSource.model_validate(
        {
            "type": "ldap",
            "url": ["ldap://ldap.example.test"],
            "base_dn": "ou=people,dc=example,dc=test",
            "attributes": {"start_date": "hrStartDate"},
        }
    )


def map_start(value: bytes) -> tuple[Person | None, ReadReport, list[dict[str, Any]]]:
    raw = {
        "entryUUID": [b"0b4c7c9e-1f7c-4b8e-9e56-6a0d7f3c1a01"],
        "givenName": [b"Ada"],
        "sn": [b"Lovelace"],
        "hrStartDate": [value],
    }
    report = ReadReport()
    mapper = EntryMapper(openldap_source(), SyncConfig(date_format=["%Y-%m-%d", "%d.%m.%Y"]))
    with collecting("syncd.source.ldap") as events:
        person = mapper.person("uid=ada,ou=people,dc=example,dc=test", raw, report)
    return person, report, [event.fields for event in events.named("record.rejected")]


@pytest.mark.parametrize(
    "value", [b"00010101000000Z", b"99991231235959Z", b"0001-01-01", b"01.01.0001"]
)
def test_ldap_rejects_a_start_date_out_of_range(value: bytes) -> None:
    person, report, rejected = map_start(value)
    assert person is None
    assert report.rejected_anchors == ["0b4c7c9e-1f7c-4b8e-9e56-6a0d7f3c1a01"]
    [reject] = rejected
    assert reject["field"] == "start_date"
    assert reject["reason"].startswith(f"hrStartDate {value.decode()!r}: outside 1900-01-01")


@pytest.mark.parametrize(
    ("value", "expected"),
    [(b"19000101000000Z", date(1900, 1, 1)), (b"2199-12-31", date(2199, 12, 31))],
)
def test_ldap_accepts_the_bounds(value: bytes, expected: date) -> None:
    person, _, _ = map_start(value)
    assert person is not None and person.start_date == expected


def test_ldap_still_names_the_formats_for_an_unparseable_date() -> None:
    _, _, [reject] = map_start(b"next monday")
    assert "matches neither %Y-%m-%d or %d.%m.%Y nor LDAP GeneralizedTime" in reject["reason"]
