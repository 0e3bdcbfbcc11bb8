"""The LDAP source, flavor active_directory, against a real Samba AD DC (tests/support/samba.py).

The DC holds 300 users under ``OU=Staff`` (some in ``OU=Berlin`` below it), 10% disabled, names
with diacritics and some Cyrillic, plus a computer and a contact that the default person filter
must leave out. syncd binds as an ordinary user, over LDAPS, trusting the DC's own CA.

The DC's self-signed certificate names only ``DC1.example.test``; the tests use that name in the
URL and make it resolve to 127.0.0.1 inside the test process (nothing in /etc is changed).
"""

from __future__ import annotations

import logging
import unicodedata
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import ldap3
import pytest
import trustme

from syncd.config import LdapSource, SyncConfig
from syncd.errors import ConfigError, SourceUnavailable
from syncd.model import Person, ReadReport
from syncd.source.ldap import LdapReader
from tests.support.samba import SESSION_USERS, AdUser, SambaAD

pytestmark = [
    pytest.mark.samba,
    # ldap3 checks host names with ssl.match_hostname, deprecated since Python 3.7; not ours to fix.
    pytest.mark.filterwarnings("ignore:ssl.match_hostname:DeprecationWarning"),
]

PASSWORD_ENV = "SYNCD_TEST_AD_BIND_PASSWORD"

SourceFactory = Callable[..., LdapSource]


@pytest.fixture
def ad_source(samba_ad: SambaAD, monkeypatch: pytest.MonkeyPatch) -> SourceFactory:
    """Build the AD source config syncd would use: LDAPS to the DC's name, its CA, paging by 50."""
    samba_ad.resolve_dc_hostname(monkeypatch)
    monkeypatch.setenv(PASSWORD_ENV, samba_ad.reader_password)

    def make(**overrides: Any) -> LdapSource:
        data: dict[str, Any] = {
            "type": "ldap",
            "flavor": "active_directory",
            "url": samba_ad.ldaps_hostname_url,
            "ca_file": str(samba_ad.ca_file),
            "bind_dn": samba_ad.reader_dn,
            "bind_password_env": PASSWORD_ENV,
            "base_dn": samba_ad.base_dn,
            "page_size": 50,
            "timeout_s": 10,
            "retries": 0,
            **overrides,
        }
        return LdapSource.model_validate(data)

    return make


def read_all(source: LdapSource) -> tuple[list[Person], ReadReport]:
    report = ReadReport()
    people = list(LdapReader(source, SyncConfig()).read(report))
    return people, report


def users_by_anchor(samba_ad: SambaAD) -> dict[str, AdUser]:
    """The fixture's users keyed by the anchor syncd should give them (AD's GUID string)."""
    return {
        str(uuid.UUID(bytes_le=samba_ad.object_guids[user.sam_account_name])): user
        for user in samba_ad.users
    }


@pytest.fixture
def paged_search_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Record the page size of every paged search request ldap3 sends (a spy, not a stub)."""
    calls: list[int] = []
    real_search = ldap3.Connection.search

    def search(self: ldap3.Connection, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("paged_size"):
            calls.append(kwargs["paged_size"])
        return real_search(self, *args, **kwargs)

    monkeypatch.setattr(ldap3.Connection, "search", search)
    yield calls


# ------------------------------------------------------------------------------------- the data


def test_fixture_agrees_with_the_dc_on_who_is_enabled(samba_ad: SambaAD) -> None:
    """The oracle itself: the DC's own bit-0x2 filter finds exactly the users meant as enabled."""
    with samba_ad.admin_connection() as conn:
        conn.search(
            samba_ad.base_dn,
            "(&(objectCategory=person)(objectClass=user)"
            "(!(userAccountControl:1.2.840.113556.1.4.803:=2)))",
            attributes=["sAMAccountName"],
        )
        enabled = {entry.sAMAccountName.value for entry in conn.entries}
    assert enabled == {sam for sam, is_enabled in samba_ad.expected.items() if is_enabled}
    assert 0 < len(samba_ad.expected) - len(enabled) < len(enabled)


def test_reads_exactly_the_users_and_marks_the_disabled_ones(
    samba_ad: SambaAD, ad_source: SourceFactory
) -> None:
    people, report = read_all(ad_source())

    expected = users_by_anchor(samba_ad)
    assert len(people) == len({p.anchor for p in people}), "an entry came back twice"
    # Exactly the users: not the computer (objectClass=user, objectCategory=computer), not the
    # contact (objectCategory=person, objectClass=contact), not the bind account outside the base.
    assert {p.anchor for p in people} == set(expected)
    disabled = {p.anchor for p in people if p.disabled}
    assert disabled == {anchor for anchor, user in expected.items() if not user.enabled}
    assert len(disabled) == SESSION_USERS // 10
    assert report.complete is True
    assert report.incomplete_reason is None
    assert (report.read, report.rejected, report.rejected_anchors) == (SESSION_USERS, 0, [])
    # Log lines name each person by the entry's DN.
    assert {p.origin.lower() for p in people} == {u.dn.lower() for u in expected.values()}


def test_anchors_are_the_object_guids_as_ad_writes_them(
    samba_ad: SambaAD, ad_source: SourceFactory
) -> None:
    people, _ = read_all(ad_source())

    by_sam = {user.sam_account_name: anchor for anchor, user in users_by_anchor(samba_ad).items()}
    assert {p.anchor for p in people} == set(by_sam.values())
    # The DC itself resolves AD's string form in <GUID=...>: each anchor finds its own entry.
    with samba_ad.admin_connection() as conn:
        for person in people:
            assert person.anchor == str(uuid.UUID(person.anchor))  # canonical: lower, no braces
            conn.search(
                f"<GUID={person.anchor}>",
                "(objectClass=*)",
                ldap3.BASE,
                attributes=["sAMAccountName"],
            )
            (entry,) = conn.entries
            assert by_sam[entry.sAMAccountName.value] == person.anchor


def test_names_and_mail_come_back_intact(samba_ad: SambaAD, ad_source: SourceFactory) -> None:
    people, _ = read_all(ad_source())

    expected = users_by_anchor(samba_ad)
    for person in people:
        user = expected[person.anchor]
        assert (person.first_name, person.last_name) == (user.given_name, user.surname)
        assert person.email == user.mail
        assert unicodedata.is_normalized("NFC", person.first_name + person.last_name)
    names = {(p.first_name, p.last_name) for p in people}
    for fixed in [("Jürgen", "Müller"), ("Hélène", "Lefèvre"), ("Bjørn", "Ødegård")]:
        assert fixed in names
    assert ("Łukasz", "Brzęczyszczykiewicz") in names
    assert ("Þórunn", "Sigurðardóttir") in names
    assert ("Иван", "Петров") in names


@pytest.mark.parametrize("page_size", [50, 7])
def test_paging_smaller_than_the_user_count_still_returns_everyone(
    samba_ad: SambaAD,
    ad_source: SourceFactory,
    paged_search_calls: list[int],
    page_size: int,
) -> None:
    people, report = read_all(ad_source(page_size=page_size))

    assert sorted(p.anchor for p in people) == sorted(users_by_anchor(samba_ad))
    assert report.complete is True
    # Samba honours the page size (real AD caps it at MaxPageSize, which Samba does not have).
    pages = -(-SESSION_USERS // page_size)
    assert pages <= len(paged_search_calls) <= pages + 1
    assert set(paged_search_calls) == {page_size}


def test_sample_returns_a_few_people(samba_ad: SambaAD, ad_source: SourceFactory) -> None:
    sample = LdapReader(ad_source(), SyncConfig()).sample(limit=5)

    expected = users_by_anchor(samba_ad)
    assert len(sample) == 5
    assert all(expected[p.anchor].given_name == p.first_name for p in sample)


# ------------------------------------------------------------------------------- binds and TLS


def test_wrong_password_is_a_config_error_naming_the_bind_dn(
    samba_ad: SambaAD, ad_source: SourceFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "Not-The-Password-1")

    with pytest.raises(ConfigError) as caught:
        read_all(ad_source())

    message = str(caught.value)
    assert samba_ad.reader_dn in message
    assert "wrong password" in message  # AD's "data 52e", explained
    assert "Not-The-Password-1" not in message
    assert samba_ad.reader_password not in message


def test_a_disabled_bind_account_is_a_config_error_saying_so(
    samba_ad: SambaAD, ad_source: SourceFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, samba_ad.disabled_reader_password)

    with pytest.raises(ConfigError) as caught:
        read_all(ad_source(bind_dn=samba_ad.disabled_reader_dn))

    message = str(caught.value)
    assert samba_ad.disabled_reader_dn in message
    assert "disabled" in message  # AD's "data 533", explained
    assert samba_ad.disabled_reader_password not in message


def test_a_user_principal_name_works_as_bind_dn(
    samba_ad: SambaAD, ad_source: SourceFactory
) -> None:
    """AD accepts ``user@domain`` in a simple bind; admins often configure it that way."""
    people, report = read_all(ad_source(bind_dn=samba_ad.reader_upn))

    assert len(people) == SESSION_USERS
    assert report.complete is True


def test_without_verification_it_reads_but_logs_a_warning(
    samba_ad: SambaAD, ad_source: SourceFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="syncd")

    people, report = read_all(ad_source(url=samba_ad.ldaps_url, ca_file=None, tls_verify=False))

    assert len(people) == SESSION_USERS
    assert report.complete is True
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("syncd") and r.levelno == logging.WARNING
    ]
    # The event syncd.source.ldap logs for tls_verify: false (one key=value line per event).
    assert "ldap.tls_unverified" in warnings


def test_certificate_not_naming_the_host_is_refused(
    samba_ad: SambaAD, ad_source: SourceFactory
) -> None:
    """The DC's certificate names DC1.example.test, not 127.0.0.1: the CA alone is not enough."""
    with pytest.raises((SourceUnavailable, ConfigError)) as caught:
        read_all(ad_source(url=samba_ad.ldaps_url))

    assert "127.0.0.1" in str(caught.value)


def test_certificate_from_another_ca_is_refused(
    samba_ad: SambaAD, ad_source: SourceFactory, tmp_path: Any
) -> None:
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))

    with pytest.raises((SourceUnavailable, ConfigError)):
        read_all(ad_source(ca_file=str(other_ca)))
