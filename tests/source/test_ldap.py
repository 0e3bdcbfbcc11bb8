"""The LDAP source (flavor openldap) against a real slapd (tests/support/slapd.py).

The session server holds 2,500 generated people with fixed entryUUIDs, names in many scripts and
some disabled via ``employeeType: disabled``. syncd binds as an ordinary reader whose plain
searches stop at 500 entries, so reading everyone proves that paging works. Tests that need an
odd directory (a wrong certificate, broken entries, a server to stop) start their own instance.
"""

from __future__ import annotations

import logging
import time
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ldap3
import pytest
import trustme

from syncd.config import LdapSource, SyncConfig
from syncd.errors import ConfigError, SourceUnavailable
from syncd.model import Person, ReadReport, Watermark
from syncd.source.ldap import LdapReader
from tests.support.events import EventCollector, collecting
from tests.support.slapd import (
    SESSION_PEOPLE,
    Slapd,
    SlapdFactory,
    free_port,
    ldif_entry,
    make_people,
    requires_slapd,
)

pytestmark = [pytest.mark.slapd, requires_slapd]

PASSWORD_ENV = "SYNCD_TEST_LDAP_BIND_PASSWORD"

SourceFactory = Callable[..., LdapSource]


# ------------------------------------------------------------------------------------- helpers


@pytest.fixture
def events() -> Iterator[EventCollector]:
    """The events the LDAP source logs."""
    with collecting("syncd.source.ldap") as collector:
        yield collector


def source_for(server: Slapd, monkeypatch: pytest.MonkeyPatch) -> SourceFactory:
    monkeypatch.setenv(PASSWORD_ENV, server.reader_password)

    def make(**overrides: Any) -> LdapSource:
        data: dict[str, Any] = {
            "type": "ldap",
            "url": [server.url],
            "bind_dn": server.reader_dn,
            "bind_password_env": PASSWORD_ENV,
            "base_dn": server.base_dn,
            "page_size": 500,
            "timeout_s": 5,
            "retries": 0,
            "attributes": {"start_date": "hrStartDate", "disabled": "employeeType"},
            **overrides,
        }
        return LdapSource.model_validate(data)

    return make


@pytest.fixture
def source(slapd: Slapd, monkeypatch: pytest.MonkeyPatch) -> SourceFactory:
    """Build a source config for the session slapd, bound as the paging reader."""
    return source_for(slapd, monkeypatch)


def reader(config: LdapSource, sync: SyncConfig | None = None) -> LdapReader:
    result = LdapReader(config, sync or SyncConfig())
    result.retry_backoff_s = 0.01  # the retry tests should not sleep
    return result


def read_all(config: LdapSource) -> tuple[list[Person], ReadReport]:
    report = ReadReport()
    people = list(reader(config).read(report))
    return people, report


# ------------------------------------------------------------------------------ the happy path


def test_paged_read_returns_every_person_exactly_once(
    slapd: Slapd, source: SourceFactory, events: EventCollector
) -> None:
    people, report = read_all(source())

    assert report.complete is True
    assert report.incomplete_reason is None
    assert report.read == SESSION_PEOPLE
    assert report.rejected == 0
    assert len(people) == SESSION_PEOPLE
    anchors = [p.anchor for p in people]
    assert len(set(anchors)) == len(anchors)
    assert set(anchors) == {p.entry_uuid for p in slapd.people}
    # 2,500 entries for a reader whose plain searches stop at 500: five full pages.
    (done,) = events.named("ldap.read_done")
    assert done.fields["pages"] == 5
    assert done.fields["read"] == SESSION_PEOPLE


def test_people_come_back_intact(slapd: Slapd, source: SourceFactory) -> None:
    people, _ = read_all(source())
    by_anchor = {p.anchor: p for p in people}
    scripts_seen: set[str] = set()
    for expected in slapd.people:
        person = by_anchor[expected.entry_uuid]
        assert person.first_name == unicodedata.normalize("NFC", expected.given_name)
        assert person.last_name == unicodedata.normalize("NFC", expected.surname)
        assert person.email == expected.mail
        # hrStartDate holds ISO dates and GeneralizedTime; both parse to the same date.
        assert person.start_date == expected.start_date
        assert person.disabled is expected.disabled
        assert person.origin == expected.dn
        scripts_seen.update(unicodedata.name(ch).split()[0] for ch in person.first_name)
    assert {"CYRILLIC", "GREEK", "CJK", "HANGUL", "ARABIC", "HEBREW", "LATIN"} <= scripts_seen
    assert sum(p.disabled for p in people) == sum(p.disabled for p in slapd.people) > 0


def test_people_are_streamed_page_by_page(source: SourceFactory) -> None:
    """The first person arrives before the rest of the directory has been fetched."""
    report = ReadReport()
    iterator = reader(source(page_size=100)).read(report)
    first = next(iterator)
    assert first.anchor
    assert report.read <= 100  # only the first page has been looked at
    rest = list(iterator)
    assert len(rest) + 1 == SESSION_PEOPLE
    assert report.complete


def test_ldaps_with_ca_file(slapd: Slapd, source: SourceFactory) -> None:
    people, report = read_all(source(url=[slapd.ldaps_url], ca_file=str(slapd.ca_file)))
    assert report.complete
    assert len(people) == SESSION_PEOPLE


def test_start_tls_with_ca_file(slapd: Slapd, source: SourceFactory) -> None:
    people, report = read_all(source(start_tls=True, ca_file=str(slapd.ca_file)))
    assert report.complete
    assert len(people) == SESSION_PEOPLE


def test_tls_verify_false_warns_on_every_read(
    slapd: Slapd, source: SourceFactory, events: EventCollector
) -> None:
    config = source(url=[slapd.ldaps_url], tls_verify=False)
    ldap_reader = reader(config)
    for _ in range(2):
        report = ReadReport()
        assert sum(1 for _ in ldap_reader.read(report)) == SESSION_PEOPLE
        assert report.warnings >= 1
    warnings = events.named("ldap.tls_unverified")
    assert len(warnings) == 2
    assert all(w.level == logging.WARNING for w in warnings)


def test_sample_returns_a_few_people(source: SourceFactory) -> None:
    people = reader(source()).sample(limit=5)
    assert 1 <= len(people) <= 5
    assert all(p.anchor and p.first_name and p.last_name for p in people)


def test_describe_names_url_base_and_filter(slapd: Slapd, source: SourceFactory) -> None:
    text = reader(source()).describe()
    assert text == f"ldap {slapd.url} base={slapd.base_dn} filter=(objectClass=inetOrgPerson)"


def test_custom_filter_narrows_the_read(slapd: Slapd, source: SourceFactory) -> None:
    people, report = read_all(source(filter="(&(objectClass=inetOrgPerson)(uid=u00001*))"))
    assert report.complete
    assert sorted(p.origin for p in people) == sorted(
        p.dn for p in slapd.people if p.uid.startswith("u00001")
    )


# ------------------------------------------------------------------------------- TLS failures


def test_ldaps_without_ca_file_is_an_untrusted_certificate(
    slapd: Slapd, source: SourceFactory
) -> None:
    with pytest.raises(ConfigError) as caught:
        reader(source(url=[slapd.ldaps_url])).sample()
    message = str(caught.value)
    assert "certificate" in message
    assert "not trusted" in message
    assert "source.ca_file" in message


def test_ldaps_with_the_wrong_ca_is_an_untrusted_certificate(
    slapd: Slapd, source: SourceFactory, tmp_path: Path
) -> None:
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    with pytest.raises(ConfigError) as caught:
        reader(source(url=[slapd.ldaps_url], ca_file=str(other_ca))).sample()
    message = str(caught.value)
    assert "not trusted" in message
    assert str(other_ca) in message  # says which ca_file did not fit


def test_start_tls_with_the_wrong_ca_is_an_untrusted_certificate(
    source: SourceFactory, tmp_path: Path
) -> None:
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    with pytest.raises(ConfigError, match="not trusted"):
        reader(source(start_tls=True, ca_file=str(other_ca))).sample()


def test_certificate_for_another_host_name(
    slapd_factory: SlapdFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = slapd_factory(cert_names=["ldap.example.test"])
    config = source_for(server, monkeypatch)(url=[server.ldaps_url], ca_file=str(server.ca_file))
    with pytest.raises(ConfigError) as caught:
        reader(config).sample()
    message = str(caught.value)
    assert "not valid for the host name" in message
    assert "127.0.0.1" in message


def test_missing_ca_file_is_a_config_error(source: SourceFactory, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"source\.ca_file"):
        reader(source(start_tls=True, ca_file=str(tmp_path / "nope.pem")))


# ----------------------------------------------------------------------------- other failures


def test_wrong_password_names_the_bind_dn_but_not_the_password(
    slapd: Slapd, source: SourceFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "Not-the-Password-4711"
    monkeypatch.setenv(PASSWORD_ENV, wrong)
    with pytest.raises(ConfigError) as caught:
        list(reader(source()).read(ReadReport()))
    message = str(caught.value)
    assert slapd.reader_dn in message
    assert "rc 49" in message
    assert wrong not in message
    assert slapd.reader_password not in message


def test_server_down_tries_every_url_then_gives_up(
    source: SourceFactory, events: EventCollector
) -> None:
    down = [f"ldap://127.0.0.1:{free_port()}", f"ldap://127.0.0.1:{free_port()}"]
    started = time.monotonic()
    with pytest.raises(SourceUnavailable) as caught:
        list(reader(source(url=down, retries=1)).read(ReadReport()))
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert all(url in message for url in down)
    assert "2 time(s)" in message
    assert len(events.named("ldap.connect_failed")) == 4  # 2 URLs x (1 + 1 retry)


def test_failover_to_the_second_url(
    slapd: Slapd, source: SourceFactory, events: EventCollector
) -> None:
    down = f"ldap://127.0.0.1:{free_port()}"
    people, report = read_all(source(url=[down, slapd.url]))
    assert report.complete
    assert len(people) == SESSION_PEOPLE
    (failed,) = events.named("ldap.connect_failed")
    assert failed.fields["url"] == down
    (connected,) = events.named("ldap.connected")
    assert connected.fields["url"] == slapd.url


@pytest.mark.parametrize(
    ("bad_filter", "problem"),
    [
        ("(objectClass=inetOrgPerson", "not a valid LDAP filter"),
        ("(&(objectClass=person)(uid=a)))", "not a valid LDAP filter"),
        ("(given name=Anna)", "not an attribute name"),
    ],
)
def test_filter_syntax_error_before_connecting(
    source: SourceFactory, bad_filter: str, problem: str
) -> None:
    # Nothing listens on this URL: a ConfigError (not SourceUnavailable) proves no connection.
    config = source(url=[f"ldap://127.0.0.1:{free_port()}"], filter=bad_filter)
    with pytest.raises(ConfigError) as caught:
        LdapReader(config, SyncConfig())
    assert problem in str(caught.value)
    assert "source.filter" in str(caught.value)


def test_unknown_base_dn_is_a_config_error(source: SourceFactory) -> None:
    base = "ou=nobody,dc=example,dc=org"
    with pytest.raises(ConfigError) as caught:
        list(reader(source(base_dn=base)).read(ReadReport()))
    assert base in str(caught.value)
    assert "source.base_dn" in str(caught.value)


def test_size_limit_mid_read_is_incomplete(
    slapd: Slapd, source: SourceFactory, monkeypatch: pytest.MonkeyPatch, events: EventCollector
) -> None:
    """The reader without size.prtotal hits the server's limit after 500: no exception."""
    monkeypatch.setenv(PASSWORD_ENV, slapd.limited_reader_password)
    people, report = read_all(source(bind_dn=slapd.limited_reader_dn, page_size=200))
    assert report.complete is False
    assert report.incomplete_reason is not None
    assert "size limit" in report.incomplete_reason
    assert "sizeLimitExceeded" in report.incomplete_reason
    assert 0 < len(people) == report.read <= 500
    (incomplete,) = events.named("source.incomplete")
    assert incomplete.level == logging.WARNING


def test_server_stopped_mid_read_is_incomplete(
    slapd_factory: SlapdFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = slapd_factory(people=make_people(1200, seed=7))
    config = source_for(server, monkeypatch)(page_size=400)
    report = ReadReport()
    people: list[Person] = []
    for person in reader(config).read(report):
        people.append(person)
        if len(people) == 1:
            server.stop()  # the first page is already here; the second request finds no server
    assert report.complete is False
    assert report.incomplete_reason is not None
    assert "lost" in report.incomplete_reason
    assert len(people) == 400  # the first page stays usable
    assert report.read == 400


def test_referral_mid_read_is_incomplete(
    slapd_factory: SlapdFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    referral = ldif_entry(
        "ou=elsewhere,ou=people,dc=example,dc=org",
        [
            ("objectClass", "referral"),
            ("objectClass", "extensibleObject"),
            ("ou", "elsewhere"),
            ("ref", "ldap://other.example.test/ou=elsewhere,dc=example,dc=org"),
        ],
    )
    server = slapd_factory(referral, people=make_people(30, seed=3))
    people, report = read_all(source_for(server, monkeypatch)())
    assert report.complete is False
    assert report.incomplete_reason is not None
    assert "referr" in report.incomplete_reason
    assert "other.example.test" in report.incomplete_reason
    assert len(people) <= 30


# ----------------------------------------------------------------------------- broken entries


def _odd_entries() -> str:
    def person(uid: str, *extra: tuple[str, str]) -> str:
        return ldif_entry(
            f"uid={uid},ou=people,dc=example,dc=org",
            [
                ("objectClass", "inetOrgPerson"),
                ("objectClass", "hrPerson"),
                ("uid", uid),
                ("cn", uid),
                *extra,
            ],
        )

    return "".join(
        [
            person("ok", ("employeeNumber", "E1"), ("givenName", "Ok"), ("sn", "Person")),
            # No employeeNumber: no anchor at all.
            person("no-anchor", ("givenName", "No"), ("sn", "Anchor")),
            # An anchor but no givenName: rejected, and its anchor is reported.
            person("no-given", ("employeeNumber", "E2"), ("sn", "Given")),
            # A start date no format matches.
            person(
                "bad-date",
                ("employeeNumber", "E3"),
                ("givenName", "Bad"),
                ("sn", "Date"),
                ("hrStartDate", "next spring"),
            ),
            # Two given names: the first is used, with a warning.
            person(
                "two-names",
                ("employeeNumber", "E4"),
                ("givenName", "Marie"),
                ("givenName", "Zoé"),
                ("sn", "Curie"),
            ),
        ]
    )


def test_broken_entries_are_rejected_with_their_dn(
    slapd_factory: SlapdFactory, monkeypatch: pytest.MonkeyPatch, events: EventCollector
) -> None:
    server = slapd_factory(_odd_entries())
    config = source_for(server, monkeypatch)(
        attributes={"anchor": "employeeNumber", "start_date": "hrStartDate"}
    )
    people, report = read_all(config)

    assert report.complete
    assert report.read == 5
    assert report.rejected == 3
    assert sorted(report.rejected_anchors) == ["E2", "E3"]
    assert {p.anchor: p.first_name for p in people} == {"E1": "Ok", "E4": "Marie"}

    rejected = {e.fields["dn"]: e.fields for e in events.named("record.rejected")}
    assert set(rejected) == {
        "uid=no-anchor,ou=people,dc=example,dc=org",
        "uid=no-given,ou=people,dc=example,dc=org",
        "uid=bad-date,ou=people,dc=example,dc=org",
    }
    no_anchor = rejected["uid=no-anchor,ou=people,dc=example,dc=org"]
    assert no_anchor["source"] == "ldap"
    assert no_anchor["anchor"] is None
    assert no_anchor["field"] == "anchor"
    assert "employeeNumber" in no_anchor["reason"]
    no_given = rejected["uid=no-given,ou=people,dc=example,dc=org"]
    assert (no_given["anchor"], no_given["field"]) == ("E2", "first_name")
    assert rejected["uid=bad-date,ou=people,dc=example,dc=org"]["field"] == "start_date"

    (multi,) = events.named("record.multivalued")
    assert multi.fields["dn"] == "uid=two-names,ou=people,dc=example,dc=org"
    assert multi.fields["field"] == "first_name"
    assert report.warnings == 1


# ---------------------------------------------------------------------------------- delta reads


def csn_of(server: Slapd, dn: str, attribute: str = "entryCSN") -> list[str]:
    """An entry's entryCSN (or contextCSN) values, as the root DN reads them."""
    with server.admin() as connection:
        connection.search(dn, "(objectClass=*)", ldap3.BASE, attributes=[attribute])
        return sorted(v.decode() for v in connection.response[0]["raw_attributes"][attribute])


def read_since(config: LdapSource, since: Watermark | None) -> tuple[list[Person], ReadReport]:
    report = ReadReport(since=since)
    return list(reader(config).read(report)), report


def test_without_contextcsn_the_watermark_comes_from_the_entries_one_read_behind(
    slapd_factory: SlapdFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    people = make_people(20, seed=31)
    server = slapd_factory(people=people)
    config = source_for(server, monkeypatch)()
    newest = max(csn_of(server, p.dn)[0] for p in people)

    _, full = read_since(config, None)
    assert full.watermark is not None and full.watermark.kind == "csn"
    # The full read's own newest CSN, and where the first delta starts: before it by the
    # read's duration and a minute, since a write during the read may be older than it.
    assert full.watermark.seen == newest
    assert full.watermark.value < newest

    server.modify(people[3].dn, sn="Neu")
    changed, first = read_since(config, full.watermark)
    assert first.delta and first.complete
    assert "Neu" in {p.last_name for p in changed}
    assert first.watermark is not None
    # The next delta starts where the reads before this one ended: at the full read's newest,
    # which it reads again (>=), with the change after it.
    assert first.watermark.value == newest
    assert first.watermark.seen == csn_of(server, people[3].dn)[0]
    again, second = read_since(config, first.watermark)
    assert {p.anchor for p in again} == {
        p.entry_uuid for p in people if csn_of(server, p.dn)[0] >= newest
    }
    assert second.watermark is not None and second.watermark.value == first.watermark.seen


def test_with_syncprov_the_watermark_is_the_context_csn_read_before_the_search(
    slapd_factory: SlapdFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    people = make_people(20, seed=32)
    server = slapd_factory(people=people, overlays=("syncprov",))
    config = source_for(server, monkeypatch)()
    server.modify(people[0].dn, sn="Vorher")  # syncprov keeps contextCSN from the first write
    (context,) = csn_of(server, server.base_dn, "contextCSN")

    _, full = read_since(config, None)
    assert full.watermark is not None
    assert (full.watermark.value, full.watermark.seen) == (context, "")

    server.modify(people[5].dn, sn="Nachher")
    changed, delta = read_since(config, full.watermark)
    assert delta.delta and delta.complete
    # The boundary entry (its CSN is the contextCSN) and the one changed since.
    assert {p.last_name for p in changed} == {"Vorher", "Nachher"}
    assert delta.watermark is not None
    assert delta.watermark.value == csn_of(server, server.base_dn, "contextCSN")[0]
