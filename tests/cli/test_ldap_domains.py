"""Several mail domains from a real slapd (issue 18): ``source.attributes.fields`` reads
``departmentNumber``, ``hybridbox.domains`` routes by it, and a change in the directory is seen
by the next (delta) read: ``person.domain_changed`` once, no second mailbox."""

from __future__ import annotations

import json
import uuid

import pytest

from syncd.exit_codes import EX_OK
from tests.support.site import DOMAIN_RULES, Site
from tests.support.slapd import PEOPLE_DN, Slapd, SlapdFactory, ldif_entry, requires_slapd

pytestmark = [pytest.mark.slapd, requires_slapd]

# (uid, given name, surname, departmentNumber or None)
PEOPLE = [
    ("anna1", "Anna", "Berg", "Research"),
    ("anna2", "Anna", "Berg", None),
    ("jonas", "Jonas", "Weber", "VERTRIEB"),
    ("ida", "Ida", "Lund", "Labs"),
]


def _ldif() -> str:
    entries = []
    for uid, first, last, department in PEOPLE:
        attributes = [
            ("objectClass", "inetOrgPerson"),
            ("uid", uid),
            ("entryUUID", str(uuid.uuid5(uuid.NAMESPACE_DNS, uid))),
            ("cn", f"{first} {last}"),
            ("givenName", first),
            ("sn", last),
        ]
        if department:
            attributes.append(("departmentNumber", department))
        entries.append(ldif_entry(f"uid={uid},{PEOPLE_DN}", attributes))
    return "".join(entries)


def _use(site: Site, server: Slapd) -> None:
    password = site.root / "ldap-password"
    password.write_text(server.reader_password)
    password.chmod(0o600)
    site.settings["source"] = {
        "type": "ldap",
        "url": [server.url],
        "bind_dn": server.reader_dn,
        "bind_password_file": str(password),
        "base_dn": server.people_dn,
        "retries": 0,
        "timeout_s": 5,
        "attributes": {"fields": {"department": "departmentNumber"}},
    }
    site.configure(hybridbox={"domains": DOMAIN_RULES})


def _apply(site: Site) -> str:
    result = site.syncd("apply")
    assert result.returncode == EX_OK, result.stderr[-3000:]
    return site.log_events("cycle.summary")[-1]


def test_openldap_people_are_routed_by_an_attribute_and_a_change_keeps_the_mailbox(
    domains_site: Site, slapd_factory: SlapdFactory
) -> None:
    site = domains_site
    server = slapd_factory(_ldif())
    _use(site, server)
    _apply(site)
    assert sorted(m["primary_email"] for m in site.emulator.mailboxes()) == [
        "anna.berg@example.com",
        "anna.berg@labs.example.com",
        "ida.lund@labs.example.com",
        "jonas.weber@example.de",
    ]

    server.modify(f"uid=ida,{PEOPLE_DN}", departmentNumber="Vertrieb")
    summary = _apply(site)
    assert "scan=delta" in summary  # the change came with a delta read
    _apply(site)
    changed = site.log_events("person.domain_changed")
    assert len(changed) == 1 and "new_domain=example.de" in changed[0]
    assert "address=ida.lund@labs.example.com" in changed[0]
    assert len(site.emulator.mailboxes()) == 4  # never a second mailbox
    moves = json.loads(site.syncd("moves", "--format", "json").stdout)
    assert [(m["address"], m["new_domain"]) for m in moves] == [
        ("ida.lund@labs.example.com", "example.de")
    ]

    # New rules: the next read is a full one, so nobody keeps a domain the old rules gave them.
    site.configure(hybridbox={"domains": [*DOMAIN_RULES, {"domain": "example.de", "when": {
        "department": ["Labs"]}}]})  # fmt: skip
    summary = _apply(site)
    assert "scan=full" in summary
    assert "hybridbox.domains changed" in site.log_events("source.scan")[-1]
    assert "scan=delta" in _apply(site)  # and then deltas again
