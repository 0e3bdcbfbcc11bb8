"""Several mail domains (issue 18): ``hybridbox.domains`` routes people by their fields.

An emulator serving three domains (example.com, labs.example.com, example.de), an HR export with
a Department column and syncd run as a subprocess. What is asserted is what an administrator
sees: the addresses on Hybridbox and in ``syncd plan``, the log lines, ``syncd moves``,
``syncd status``, ``syncd validate`` and the exit codes.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from syncd.exit_codes import EX_CONFIG, EX_OK
from tests.support.site import DOMAINS, Row, Site

LABS, DE = "labs.example.com", "example.de"


def apply(site: Site) -> None:
    result = site.syncd("apply")
    assert result.returncode == EX_OK, result.stderr[-3000:]


def remote_addresses(site: Site) -> list[str]:
    return sorted(m["primary_email"] for m in site.emulator.mailboxes())


def report(site: Site, *command: str) -> Any:
    result = site.syncd(*command, "--format", "json")
    assert result.returncode == EX_OK, result.stderr
    return json.loads(result.stdout)


def test_rules_route_people_and_each_domain_gets_the_plain_local_part(
    domains_site: Site,
) -> None:
    site = domains_site
    site.write_people(
        [
            Row("E1", "Anna", "Berg", department="Research"),
            Row("E2", "Anna", "Berg"),  # no rule: the default domain
            Row("E3", "Jonas", "Weber", department="Vertrieb"),
            Row("E4", "Anna", "Berg", department="labs"),  # any case
            Row("E5", "Ida", "Lund", department="  Research "),  # trimmed
            Row("E6", "Anna", "Berg", department="Research Labs"),  # no match
        ]
    )
    expected = {
        "E1": "anna.berg@labs.example.com",
        "E2": "anna.berg@example.com",
        "E3": "jonas.weber@example.de",
        "E4": "anna.berg2@labs.example.com",
        "E5": "ida.lund@labs.example.com",
        "E6": "anna.berg2@example.com",
    }
    # plan shows each person's address in the domain the rules give them.
    planned = report(site, "plan")
    assert {row["anchor"]: row["address"] for row in planned} == expected

    apply(site)
    assert site.full_addresses_of() == expected
    assert remote_addresses(site) == sorted(expected.values())
    for domain in DOMAINS:  # Hybridbox has each in the domain the rules chose
        assert {m["primary_email"] for m in site.emulator.mailboxes(domain)} == {
            address for address in expected.values() if address.endswith("@" + domain)
        }
    # One domain per bulk request: three domains, three requests for six people.
    bulk = [r for r in site.emulator.requests() if r["route"] == "bulk_create"]
    assert len(bulk) == 3
    created = "\n".join(site.log_events("mailbox.created"))
    assert "address=jonas.weber@example.de" in created
    assert "address=anna.berg2@labs.example.com" in created


def test_a_department_change_keeps_the_mailbox_and_is_logged_once(domains_site: Site) -> None:
    site = domains_site
    site.write_people([Row("E1", "Anna", "Berg", department="Research")])
    apply(site)
    assert remote_addresses(site) == ["anna.berg@labs.example.com"]

    site.write_people([Row("E1", "Anna", "Berg", department="Vertrieb")])
    planned = report(site, "plan")
    assert [(r["action"], r["address"]) for r in planned] == [
        ("domain_changed", "anna.berg@labs.example.com")
    ]
    apply(site)
    apply(site)  # the next read sees no change: nothing is logged again
    changed = site.log_events("person.domain_changed")
    assert len(changed) == 1, changed
    assert "mailbox_domain=labs.example.com" in changed[0]
    assert "new_domain=example.de" in changed[0]
    assert "anchor=E1" in changed[0]
    # Never a second mailbox: the API cannot move one, and syncd does not make another.
    assert remote_addresses(site) == ["anna.berg@labs.example.com"]
    assert site.full_addresses_of() == {"E1": "anna.berg@labs.example.com"}

    moves = report(site, "moves")
    assert [(m["anchor"], m["address"], m["new_domain"]) for m in moves] == [
        ("E1", "anna.berg@labs.example.com", DE)
    ]
    as_csv = site.syncd("moves", "--format", "csv")
    assert as_csv.returncode == EX_OK
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [(r["anchor"], r["mailbox_domain"], r["new_domain"]) for r in rows] == [("E1", LABS, DE)]
    status = site.syncd("status")
    assert "moves:" in status.stdout and "anna.berg@labs.example.com -> example.de" in status.stdout
    assert [m["anchor"] for m in report_status(site)["moves"]] == ["E1"]

    # Back in Research: the mailbox is where the rules want it again; nothing more is logged.
    site.write_people([Row("E1", "Anna", "Berg", department="Research")])
    apply(site)
    assert len(site.log_events("person.domain_changed")) == 1
    assert site.syncd("moves").stdout.startswith("no moves")


def report_status(site: Site) -> Any:
    result = site.syncd("status", "--format", "json")
    return json.loads(result.stdout)


def test_someone_rerouted_before_their_mailbox_exists_gets_it_in_the_new_domain(
    domains_site: Site,
) -> None:
    site = domains_site
    site.emulator.set_faults(fail_rate=1.0)  # every create fails: E1 waits for a retry
    site.write_people([Row("E1", "Anna", "Berg", department="Research")])
    site.syncd("apply")
    failures = report(site, "failures")
    assert [(f["anchor"], f["local_part"], f["domain"]) for f in failures] == [
        ("E1", "anna.berg", LABS)
    ]
    site.emulator.set_faults(fail_rate=0.0)
    site.write_people([Row("E1", "Anna", "Berg", department="Vertrieb")])
    assert site.syncd("retry", "E1").returncode == EX_OK  # no waiting for the backoff
    apply(site)
    assert remote_addresses(site) == ["anna.berg@example.de"]
    assert site.log_events("person.domain_changed") == []  # nobody had a mailbox to keep


def test_a_rule_on_an_undefined_field_fails_validate_with_the_key_path(
    domains_site: Site,
) -> None:
    site = domains_site
    rules = [*site.settings["hybridbox"]["domains"], {"domain": DE, "when": {"country": ["DE"]}}]
    site.configure(hybridbox={"domains": rules})
    result = site.syncd("validate", "--offline")
    assert result.returncode == EX_CONFIG
    assert "at 'hybridbox.domains[2].when.country'" in result.stderr
    assert "not defined in source.columns.fields" in result.stderr
    assert "Traceback" not in result.stderr


def test_validate_checks_every_domain_and_counts_what_each_rule_takes(
    domains_site: Site,
) -> None:
    site = domains_site
    site.write_people(
        [
            Row("E1", "Anna", "Berg", department="Research"),
            Row("E2", "Ben", "Ott", department="Labs"),
            Row("E3", "Cem", "Aydin", department="Vertrieb"),
            Row("E4", "Dora", "Lind"),
        ]
    )
    result = site.syncd("validate")
    assert result.returncode == EX_OK, result.stderr
    out = result.stdout
    assert "hybridbox.domains[0] (labs.example.com): takes 2 of the 4 sample record(s)" in out
    assert "hybridbox.domains[1] (example.de): takes 1 of the 4 sample record(s)" in out
    assert "hybridbox.domain (example.com, no rule matches): 1 of the 4" in out
    for key in (
        "hybridbox.domain)",
        "hybridbox.domains[0].domain)",
        "hybridbox.domains[1].domain)",
    ):
        assert key in out

    # A domain the account does not have is a config error naming its key.
    rules = [*site.settings["hybridbox"]["domains"], {"domain": "nowhere.example", "when": {
        "department": ["Nowhere"]}}]  # fmt: skip
    site.configure(hybridbox={"domains": rules})
    missing = site.syncd("validate")
    assert missing.returncode == EX_CONFIG
    assert "nowhere.example" in missing.stderr and "hybridbox.domains[2].domain" in missing.stderr


def test_adopt_reads_every_domain(domains_site: Site) -> None:
    site = domains_site
    site.emulator.add_mailbox("anna.berg", "Anna", "Berg", domain=LABS)
    site.emulator.add_mailbox("jonas.weber", "Jonas", "Weber", domain=DE)
    site.write_people(
        [Row("E1", "Anna", "Berg", department="Research"), Row("E2", "Jonas", "Weber")]
    )
    # A first run against domains that already have mailboxes refuses to create.
    refused = site.syncd("apply")
    assert refused.returncode == 75 and "syncd adopt" in refused.stderr
    adopted = site.syncd("adopt")
    assert adopted.returncode == EX_OK, adopted.stderr
    assert site.full_addresses_of() == {
        "E1": "anna.berg@labs.example.com",
        "E2": "jonas.weber@example.de",  # adopted where the mailbox is, not where routed
    }
    apply(site)
    assert len(site.emulator.mailboxes()) == 2  # nobody got a second one
    assert [m["anchor"] for m in report(site, "moves")] == ["E2"]
