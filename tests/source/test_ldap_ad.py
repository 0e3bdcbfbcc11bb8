"""The LDAP source's Active Directory behaviour on recorded responses (no server needed).

The entries and search results below have the shape ldap3 hands back from a real AD (``dn``,
``raw_attributes`` with byte values, result dicts with the paged-results control). A small
stand-in connection replays them page by page, so the paging loop, the GUID rendering, the
userAccountControl bit and the ranged attribute names are tested without a DC. The Samba AD
integration tests (tests/source/test_ad_samba.py) cover the same paths against a real one.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pytest
from ldap3.core.exceptions import LDAPSocketReceiveError

from syncd.config import LdapSource, SyncConfig
from syncd.errors import ConfigError
from syncd.model import Person, ReadReport, Watermark
from syncd.source import _ad
from syncd.source._ldap_delta import settings_digest
from syncd.source._ldap_entry import EntryMapper
from syncd.source.ldap import PAGED_RESULTS_OID, LdapReader
from tests.support.events import EventCollector, collecting

URL = "ldaps://dc1.example.test"
BASE_DN = "DC=example,DC=test"
BIND_DN = "CN=svc-syncd,OU=Service,DC=example,DC=test"

# objectGUID as AD stores it: the first three fields little-endian. PowerShell shows this one
# as 76543210-ba98-fedc-0123-456789abcdef.
RAW_GUID = bytes.fromhex("1032547698badcfe0123456789abcdef")
GUID_TEXT = "76543210-ba98-fedc-0123-456789abcdef"


# ------------------------------------------------------------------------------------- helpers


@pytest.fixture
def events() -> Iterator[EventCollector]:
    """The events the LDAP source logs."""
    with collecting("syncd.source.ldap") as collector:
        yield collector


def ad_source(**overrides: Any) -> LdapSource:
    data: dict[str, Any] = {
        "type": "ldap",
        "flavor": "active_directory",
        "url": [URL],
        "bind_dn": BIND_DN,
        "bind_password_env": "SYNCD_TEST_UNUSED",
        "base_dn": BASE_DN,
        "page_size": 1000,
        # The recorded pages are the search's alone; the rootDSE reads of delta reads have
        # tests of their own (the end of this file).
        "delta": False,
        **overrides,
    }
    return LdapSource.model_validate(data)


def guid(n: int) -> bytes:
    return uuid.UUID(int=n).bytes_le


def ad_user(
    n: int,
    *,
    uac: bytes = b"512",
    given: list[bytes] | None = None,
    extra: dict[str, list[bytes]] | None = None,
) -> dict[str, Any]:
    """One searchResEntry as ldap3 returns it from AD (raw values are bytes)."""
    raw: dict[str, list[bytes]] = {
        "objectGUID": [guid(n)],
        "givenName": given if given is not None else [f"Given{n}".encode()],
        "sn": [f"Sur{n}".encode()],
        "mail": [f"user{n}@example.test".encode()],
        "userAccountControl": [uac],
        **(extra or {}),
    }
    dn = f"CN=User {n},OU=Staff,{BASE_DN}"
    return {"type": "searchResEntry", "dn": dn, "raw_attributes": raw, "attributes": {}}


def reference(partition: str) -> dict[str, Any]:
    return {"type": "searchResRef", "uri": [f"ldaps://{partition}.example.test/DC={partition}"]}


def result(code: int = 0, cookie: bytes = b"", description: str = "success") -> dict[str, Any]:
    return {
        "result": code,
        "description": description,
        "message": "",
        "referrals": None,
        "controls": {
            PAGED_RESULTS_OID: {
                "description": "Simple Paged Results",
                "criticality": False,
                "value": {"size": 0, "cookie": cookie},
            }
        },
    }


@dataclass
class RecordedConnection:
    """Replays recorded pages; an exception in ``pages`` is raised by that search call."""

    pages: list[tuple[list[dict[str, Any]], dict[str, Any]] | Exception]
    requests: list[dict[str, Any]] = field(default_factory=list)
    response: list[dict[str, Any]] | None = None
    result: dict[str, Any] = field(default_factory=dict)
    unbound: bool = False

    def search(self, base: str, search_filter: str, scope: Any, **kwargs: Any) -> bool:
        self.requests.append({"base": base, "filter": search_filter, **kwargs})
        page = self.pages[len(self.requests) - 1]
        if isinstance(page, Exception):
            raise page
        self.response, self.result = page
        return bool(self.result["result"] == 0)

    def unbind(self) -> None:
        self.unbound = True


def replay(
    config: LdapSource,
    connection: RecordedConnection,
    monkeypatch: pytest.MonkeyPatch,
    sync: SyncConfig | None = None,
) -> tuple[list[Person], ReadReport]:
    reader = LdapReader(config, sync or SyncConfig())
    monkeypatch.setattr(reader, "_connect", lambda: (connection, URL))
    report = ReadReport()
    people = list(reader.read(report))
    assert connection.unbound
    return people, report


def map_entry(
    entry: dict[str, Any], config: LdapSource | None = None, sync: SyncConfig | None = None
) -> tuple[Person | None, ReadReport]:
    report = ReadReport()
    mapper = EntryMapper(config or ad_source(), sync or SyncConfig())
    return mapper.person(entry["dn"], entry["raw_attributes"], report), report


# ----------------------------------------------------------------------------- entry parsing


def test_object_guid_is_rendered_like_powershell_does() -> None:
    assert _ad.guid_string(RAW_GUID) == GUID_TEXT
    entry = ad_user(1)
    entry["raw_attributes"]["objectGUID"] = [RAW_GUID]
    person, report = map_entry(entry)
    assert person is not None
    assert person.anchor == GUID_TEXT
    assert person.origin == f"CN=User 1,OU=Staff,{BASE_DN}"
    assert report.rejected == 0


def test_object_guid_of_the_wrong_length_is_rejected(events: EventCollector) -> None:
    entry = ad_user(1)
    entry["raw_attributes"]["objectGUID"] = [b"\x01\x02\x03"]
    person, report = map_entry(entry)
    assert person is None
    assert report.rejected == 1
    assert report.rejected_anchors == []  # no usable anchor to protect
    (rejected,) = events.named("record.rejected")
    assert rejected.fields["field"] == "anchor"
    assert "16 bytes" in rejected.fields["reason"]
    assert rejected.fields["dn"] == entry["dn"]


@pytest.mark.parametrize(
    ("uac", "disabled"),
    [
        (b"512", False),  # NORMAL_ACCOUNT
        (b"514", True),  # NORMAL_ACCOUNT | ACCOUNTDISABLE
        (b"66048", False),  # ... | DONT_EXPIRE_PASSWORD
        (b"66050", True),  # ... | DONT_EXPIRE_PASSWORD | ACCOUNTDISABLE
    ],
)
def test_user_account_control_disabled_bit(uac: bytes, disabled: bool) -> None:
    person, _ = map_entry(ad_user(1, uac=uac))
    assert person is not None
    assert person.disabled is disabled


def test_user_account_control_that_is_not_a_number_is_rejected(events: EventCollector) -> None:
    person, report = map_entry(ad_user(7, uac=b"enabled"))
    assert person is None
    assert report.rejected_anchors == [str(uuid.UUID(int=7))]
    (rejected,) = events.named("record.rejected")
    assert rejected.fields["field"] == "disabled"


def test_ranged_attribute_name_counts_as_the_attribute() -> None:
    entry = ad_user(1)
    raw = entry["raw_attributes"]
    raw["givenName;range=0-0"] = raw.pop("givenName")
    raw["sn;range=0-*"] = raw.pop("sn")
    person, report = map_entry(entry)
    assert person is not None
    assert (person.first_name, person.last_name) == ("Given1", "Sur1")
    assert report.rejected == 0


def test_other_attribute_options_are_not_the_attribute(events: EventCollector) -> None:
    """``givenName;lang-de`` is a different value than ``givenName``: the name is missing."""
    entry = ad_user(1)
    raw = entry["raw_attributes"]
    raw["givenName;lang-de"] = raw.pop("givenName")
    person, report = map_entry(entry)
    assert person is None
    assert report.rejected == 1
    (rejected,) = events.named("record.rejected")
    assert (rejected.fields["field"], rejected.fields["reason"]) == (
        "first_name",
        "givenName is missing",
    )


def test_attribute_names_are_matched_case_insensitively() -> None:
    entry = ad_user(2)
    raw = entry["raw_attributes"]
    raw["GIVENNAME"] = raw.pop("givenName")
    raw["objectguid"] = raw.pop("objectGUID")
    person, _ = map_entry(entry)
    assert person is not None
    assert person.first_name == "Given2"
    assert person.anchor == str(uuid.UUID(int=2))


def test_multivalued_name_takes_the_first_value_with_a_warning(events: EventCollector) -> None:
    person, report = map_entry(ad_user(3, given=[b"Anna", b"Anne"]))
    assert person is not None
    assert person.first_name == "Anna"
    assert report.warnings == 1
    (warning,) = events.named("record.multivalued")
    assert warning.level == logging.WARNING
    assert warning.fields["anchor"] == str(uuid.UUID(int=3))


def test_names_are_nfc_normalized_and_decoded_as_utf8() -> None:
    decomposed = "Zoe\u0301"  # "Zoé" with a combining accent, as some tools write it
    person, _ = map_entry(ad_user(4, given=[decomposed.encode()]))
    assert person is not None
    assert person.first_name == "Zoé"


def test_name_that_is_not_utf8_is_rejected() -> None:
    person, report = map_entry(ad_user(5, given=[b"J\xfcrgen"]))  # Latin-1, not UTF-8
    assert person is None
    assert report.rejected_anchors == [str(uuid.UUID(int=5))]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b"20260301000000.0Z", date(2026, 3, 1)),  # AD's GeneralizedTime
        (b"20260301000000Z", date(2026, 3, 1)),
        (b"2026-03-01", date(2026, 3, 1)),
        (b"01.03.2026", date(2026, 3, 1)),  # the second configured format
    ],
)
def test_start_date_formats(text: bytes, expected: date) -> None:
    config = ad_source(attributes={"start_date": "extensionAttribute1"})
    sync = SyncConfig(date_format=["%Y-%m-%d", "%d.%m.%Y"])
    entry = ad_user(6, extra={"extensionAttribute1": [text]})
    person, _ = map_entry(entry, config, sync)
    assert person is not None
    assert person.start_date == expected


def test_ad_defaults() -> None:
    reader = LdapReader(ad_source(), SyncConfig())
    assert reader.attributes == ["objectGUID", "givenName", "sn", "mail", "userAccountControl"]
    assert "(&(objectCategory=person)(objectClass=user))" in reader.describe()


def test_openldap_defaults_request_entry_uuid_by_name() -> None:
    config = ad_source(flavor="openldap", url=["ldap://ldap.example.test"])
    reader = LdapReader(config, SyncConfig())
    assert reader.attributes[0] == "entryUUID"  # operational: only returned when named
    assert "userAccountControl" not in reader.attributes


# ---------------------------------------------------------------------------- the paging loop


def test_pages_are_read_until_the_cookie_is_empty(
    monkeypatch: pytest.MonkeyPatch, events: EventCollector
) -> None:
    connection = RecordedConnection(
        [
            ([ad_user(n) for n in range(3)] + [reference("DomainDnsZones")], result(cookie=b"c1")),
            ([ad_user(n) for n in range(3, 5)], result(cookie=b"c2")),
            ([ad_user(5, uac=b"514"), reference("ForestDnsZones")], result(cookie=b"")),
        ]
    )
    people, report = replay(ad_source(), connection, monkeypatch)

    assert report.complete is True
    assert report.read == 6  # search references are not people
    assert [p.anchor for p in people] == [str(uuid.UUID(int=n)) for n in range(6)]
    assert [p.disabled for p in people] == [False] * 5 + [True]
    cookies = [request["paged_cookie"] for request in connection.requests]
    assert cookies == [None, b"c1", b"c2"]
    assert {request["paged_size"] for request in connection.requests} == {1000}
    (done,) = events.named("ldap.read_done")
    assert (done.fields["pages"], done.fields["references_skipped"]) == (3, 2)


def test_ad_page_size_is_capped_at_1000_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, events: EventCollector
) -> None:
    connection = RecordedConnection([([ad_user(1)], result())])
    people, report = replay(ad_source(page_size=5000), connection, monkeypatch)
    assert len(people) == 1
    assert connection.requests[0]["paged_size"] == 1000
    (warning,) = events.named("ldap.page_size_capped")
    assert (warning.fields["requested"], warning.fields["used"]) == (5000, 1000)
    assert report.warnings == 1


def test_openldap_page_size_is_not_capped() -> None:
    config = ad_source(flavor="openldap", url=["ldap://x.example.test"], page_size=5000)
    assert LdapReader(config, SyncConfig()).page_size == 5000


@pytest.mark.parametrize(
    ("code", "description", "kind"),
    [(4, "sizeLimitExceeded", "size limit"), (3, "timeLimitExceeded", "time limit")],
)
def test_limit_on_a_later_page_makes_the_read_incomplete(
    monkeypatch: pytest.MonkeyPatch, code: int, description: str, kind: str
) -> None:
    connection = RecordedConnection(
        [
            ([ad_user(n) for n in range(3)], result(cookie=b"c1")),
            ([ad_user(3)], result(code, description=description)),
        ]
    )
    people, report = replay(ad_source(), connection, monkeypatch)
    assert len(people) == 4  # what arrived stays usable
    assert report.complete is False
    assert report.incomplete_reason is not None
    assert kind in report.incomplete_reason
    assert f"rc {code}" in report.incomplete_reason


def test_dropped_connection_makes_the_read_incomplete(monkeypatch: pytest.MonkeyPatch) -> None:
    connection = RecordedConnection(
        [
            ([ad_user(n) for n in range(2)], result(cookie=b"c1")),
            LDAPSocketReceiveError("error receiving data: [Errno 104] Connection reset by peer"),
        ]
    )
    people, report = replay(ad_source(), connection, monkeypatch)
    assert len(people) == 2
    assert report.complete is False
    assert report.incomplete_reason is not None
    assert "lost after 2 entries" in report.incomplete_reason


def test_referral_from_openldap_makes_the_read_incomplete(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only AD's partition references are expected; elsewhere a reference is missing people."""
    config = ad_source(
        flavor="openldap", url=["ldap://x.example.test"], attributes={"anchor": "objectGUID"}
    )
    connection = RecordedConnection([([ad_user(1), reference("Branch"), ad_user(2)], result())])
    people, report = replay(config, connection, monkeypatch)
    assert len(people) == 1
    assert report.complete is False
    assert report.incomplete_reason is not None
    assert "ldaps://Branch.example.test/DC=Branch" in report.incomplete_reason


def test_no_such_base_dn_on_the_first_page_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    connection = RecordedConnection([([], result(32, description="noSuchObject"))])
    with pytest.raises(ConfigError) as caught:
        replay(ad_source(), connection, monkeypatch)
    assert BASE_DN in str(caught.value)


# ------------------------------------------------------------------------------ bind failures


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        ("52e", "wrong password"),
        ("525", "the bind DN does not exist"),
        ("533", "the account is disabled"),
        ("775", "the account is locked out"),
    ],
)
def test_ad_bind_failure_detail(data: str, detail: str) -> None:
    message = (
        "80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, "
        f"data {data}, v4563\x00"
    )
    assert _ad.bind_failure_detail(message) == detail


def test_ad_bind_error_names_the_bind_dn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCD_TEST_UNUSED", "S3cret-Password!")
    reader = LdapReader(ad_source(), SyncConfig())
    error = reader._bind_error(
        {
            "result": 49,
            "description": "invalidCredentials",
            "message": "80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext "
            "error, data 52e, v4563\x00",
        },
        URL,
    )
    assert isinstance(error, ConfigError)
    assert BIND_DN in str(error)
    assert "wrong password" in str(error)
    assert "S3cret-Password!" not in str(error)
    assert "\x00" not in str(error)


# ------------------------------------------------------------------------------- delta reads

DC1 = "CN=NTDS Settings,CN=DC1,CN=Servers,CN=Default-First-Site-Name,CN=Sites,CN=Configuration"
INVOCATION = bytes.fromhex("787cf5d0b9078647a8524b31825e6900")
AD_FILTER = "(&(objectCategory=person)(objectClass=user))"


def root_dse(usn: bytes | None, service: str = DC1) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The rootDSE's answer (only what syncd asks for: highestCommittedUSN, dsServiceName)."""
    raw = {"dsServiceName": [service.encode()]}
    if usn is not None:
        raw["highestCommittedUSN"] = [usn]
    return [{"type": "searchResEntry", "dn": "", "raw_attributes": raw, "attributes": {}}], result()


def ntds_settings(invocation: bytes = INVOCATION) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    entry = {"type": "searchResEntry", "dn": DC1, "raw_attributes": {"invocationId": [invocation]}}
    return [entry], result()


def delta_read(
    connection: RecordedConnection, since: Watermark | None, monkeypatch: pytest.MonkeyPatch
) -> ReadReport:
    reader = LdapReader(ad_source(delta=True), SyncConfig())
    monkeypatch.setattr(reader, "_connect", lambda: (connection, URL))
    report = ReadReport(since=since)
    list(reader.read(report))
    return report


def watermark(**changes: str) -> Watermark:
    settings = settings_digest(ad_source(delta=True), SyncConfig())
    fields = {"kind": "usn", "value": "4000", "url": URL, "server": DC1,
              "invocation_id": INVOCATION.hex(), "settings": settings} | changes  # fmt: skip
    return Watermark(**fields)


def test_ad_delta_asks_for_the_entries_above_the_watermark(
    monkeypatch: pytest.MonkeyPatch, events: EventCollector
) -> None:
    connection = RecordedConnection([root_dse(b"5000"), ntds_settings(), ([ad_user(1)], result())])
    report = delta_read(connection, watermark(), monkeypatch)

    # The DC's counter and identity are read before the search, then only the changes.
    assert [r["base"] for r in connection.requests] == ["", DC1, BASE_DN]
    assert connection.requests[2]["filter"] == f"(&{AD_FILTER}(uSNChanged>=4001))"
    assert (report.delta, report.complete, report.read) == (True, True, 1)
    assert report.watermark == watermark(value="5000")
    assert events.named("ldap.full_read") == []


@pytest.mark.parametrize(
    ("since", "usn", "said"),
    [
        (watermark(url="ldaps://dc2.example.test"), b"5000", "another server answered"),
        (watermark(server="CN=NTDS Settings,CN=DC2"), b"5000", "another domain controller"),
        (watermark(invocation_id="00" * 16), b"5000", "restored from a backup"),
        (watermark(value="6000"), b"5000", "highestCommittedUSN went backwards (6000 -> 5000)"),
    ],
    ids=["another-url", "another-dc", "restored-dc", "usn-backwards"],
)
def test_ad_reads_everything_when_the_watermark_is_not_this_dcs(
    monkeypatch: pytest.MonkeyPatch,
    events: EventCollector,
    since: Watermark,
    usn: bytes,
    said: str,
) -> None:
    connection = RecordedConnection([root_dse(usn), ntds_settings(), ([ad_user(1)], result())])
    report = delta_read(connection, since, monkeypatch)

    assert connection.requests[2]["filter"] == AD_FILTER
    assert (report.delta, report.complete) == (False, True)
    assert report.full_reason is not None and said in report.full_reason
    (line,) = events.named("ldap.full_read")
    assert line.level == logging.WARNING and said in line.fields["reason"]
    # The full read leaves a watermark of the DC that answered, for the next cycle.
    assert report.watermark == watermark(value=usn.decode())


def test_ad_without_a_usn_is_read_in_full_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, events: EventCollector
) -> None:
    connection = RecordedConnection([root_dse(None), ([ad_user(1)], result())])
    report = delta_read(connection, watermark(), monkeypatch)

    assert connection.requests[1]["filter"] == AD_FILTER
    assert (report.delta, report.complete, report.watermark) == (False, True, None)
    (warning,) = events.named("ldap.no_change_order")
    assert "highestCommittedUSN" in warning.fields["reason"]
    assert events.named("ldap.full_read") == []
    assert report.warnings == 1


def test_a_delta_read_cut_short_leaves_no_watermark(monkeypatch: pytest.MonkeyPatch) -> None:
    connection = RecordedConnection(
        [
            root_dse(b"5000"),
            ntds_settings(),
            ([ad_user(1)], result(cookie=b"c1")),
            ([ad_user(2)], result(4, description="sizeLimitExceeded")),
        ]
    )
    report = delta_read(connection, watermark(), monkeypatch)

    assert (report.delta, report.complete, report.watermark) == (True, False, None)
    assert report.incomplete_reason is not None and "size limit" in report.incomplete_reason


def test_openldap_entries_without_entry_csn_make_no_watermark_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, events: EventCollector
) -> None:
    """A directory that keeps no change order (lastmod off, or entryCSN hidden by an ACL)."""
    config = ad_source(
        flavor="openldap", url=[URL], attributes={"anchor": "objectGUID"}, delta=True
    )
    naming = {"type": "searchResEntry", "dn": "", "attributes": {},
              "raw_attributes": {"namingContexts": [BASE_DN.encode()]}}  # fmt: skip
    suffix = {"type": "searchResEntry", "dn": BASE_DN, "attributes": {}, "raw_attributes": {}}
    connection = RecordedConnection(
        [([naming], result()), ([suffix], result()), ([ad_user(1), ad_user(2)], result())]
    )
    reader = LdapReader(config, SyncConfig())
    monkeypatch.setattr(reader, "_connect", lambda: (connection, URL))
    report = ReadReport()
    list(reader.read(report))

    assert "entryCSN" in connection.requests[2]["attributes"]
    assert (report.complete, report.watermark, report.warnings) == (True, None, 1)
    (warning,) = events.named("ldap.no_change_order")
    assert "2 of the 2 entries read carry no entryCSN" in warning.fields["reason"]
    assert "source.delta: false" in warning.fields["action"]
