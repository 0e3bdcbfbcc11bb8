"""Delta reads from a real slapd, through the CLI: a cycle reads what changed, not everyone.

Each test has a slapd of its own with a few dozen people (the directory is written to between
cycles) and runs ``syncd apply`` as a subprocess, as systemd would. What is asserted is what an
administrator sees: the cycle summary (``scan=delta``/``scan=full``, ``read=``), the log lines
about people and reads, ``syncd plan``, ``syncd status``, ``syncd leavers``, and the mailboxes.
"""

from __future__ import annotations

import json
import re
import sqlite3
from contextlib import closing
from typing import Any

import ldap3
import pytest

from syncd.exit_codes import EX_OK
from tests.support.site import Site, log_field
from tests.support.slapd import SamplePerson, Slapd, SlapdFactory, make_people, requires_slapd

pytestmark = [pytest.mark.slapd, requires_slapd]

PEOPLE = 30
# Everyone's start date (2020-2027 in the generated people) is past: everyone is due.
TODAY = {"SYNCD_TODAY": "2030-01-01"}


def use_slapd(site: Site, server: Slapd, *urls: str, **extra: Any) -> None:
    password = site.root / "ldap-password"
    password.write_text(server.reader_password)
    password.chmod(0o600)
    site.settings["source"] = {
        "type": "ldap",
        "url": list(urls or [server.url]),
        "bind_dn": server.reader_dn,
        "bind_password_file": str(password),
        "base_dn": server.people_dn,
        "page_size": 100,
        "retries": 0,
        "timeout_s": 5,
        "attributes": {"start_date": "hrStartDate", "disabled": "employeeType"},
        **extra,
    }
    site.configure(safety={"max_creates_per_cycle": 5000, "max_creates_percent": 100_000})


def apply(site: Site, *args: str) -> str:
    """Run one cycle; its summary line."""
    result = site.syncd("apply", *args, env=TODAY)
    assert result.returncode == EX_OK, result.stderr[-3000:]
    return site.log_events("cycle.summary")[-1]


def add_person(server: Slapd, uid: str, given: str, surname: str) -> str:
    """Add an entry; its entryUUID (slapd makes one), the person's anchor."""
    dn = f"uid={uid},{server.people_dn}"
    with server.admin() as connection:
        connection.add(dn, ["inetOrgPerson"], {"uid": uid, "cn": f"{given} {surname}",
                                                "givenName": given, "sn": surname})  # fmt: skip
        connection.search(dn, "(objectClass=*)", ldap3.BASE, attributes=["entryUUID"])
        return str(connection.entries[0].entryUUID.value)


def rename(server: Slapd, person: SamplePerson, surname: str) -> None:
    server.modify(person.dn, sn=surname)


def enabled(server: Slapd) -> list[SamplePerson]:
    return [p for p in server.people if not p.disabled]


def meta(site: Site, key: str) -> str | None:
    with closing(sqlite3.connect(site.state_path)) as conn:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])


@pytest.fixture
def server(slapd_factory: SlapdFactory) -> Slapd:
    return slapd_factory(people=make_people(PEOPLE, seed=19))


def test_a_user_added_between_two_delta_cycles_is_created_in_the_second(
    site: Site, server: Slapd
) -> None:
    use_slapd(site, server)
    first = apply(site)
    assert log_field(first, "scan") == "full" and log_field(first, "read") == str(PEOPLE)
    assert len(site.addresses_of()) == len(enabled(server))
    assert 'reason="no watermark stored yet' in site.log_events("source.scan")[-1]

    # The first delta after a full read starts a little before the newest change that read saw
    # (all of this directory, just loaded); the next ones start at the newest change, read again.
    assert log_field(apply(site), "scan") == "delta"
    quiet = apply(site)
    assert (log_field(quiet, "scan"), log_field(quiet, "read"), log_field(quiet, "created")) == (
        "delta",
        "1",
        "0",
    )

    anchor = add_person(server, "newhire", "Nora", "Neumann")
    second = apply(site)
    assert (log_field(second, "scan"), log_field(second, "created")) == ("delta", "1")
    assert site.addresses_of()[anchor] == "nora.neumann"

    # status says which kind of read the last cycle made, and when the next full one is due.
    status = site.syncd("status")
    assert "complete, scan=delta" in status.stdout
    assert re.search(r"full read: +next \S+Z \(in 23h", status.stdout), status.stdout
    runs = json.loads(site.syncd("status", "--format", "json").stdout)["runs"]
    assert [run["scan"] for run in runs] == ["delta", "delta", "delta", "full"]


def test_a_renamed_user_is_planned_and_applied_as_a_rename(site: Site, server: Slapd) -> None:
    use_slapd(site, server)
    site.configure(sync={"update_names": True})
    apply(site)
    person = enabled(server)[0]
    rename(server, person, "Umbenannt")

    plan = site.syncd("plan", env=TODAY)
    assert plan.returncode == EX_OK, plan.stderr
    (row,) = [line for line in plan.stdout.splitlines() if line.startswith("rename")]
    assert person.entry_uuid in row and "Umbenannt" in row
    assert "scan=delta" in plan.stdout

    summary = apply(site)
    assert (log_field(summary, "scan"), log_field(summary, "renamed")) == ("delta", "1")
    assert (person.given_name, "Umbenannt") in site.remote_names()
    (changed,) = site.log_events("person.name_changed")
    assert person.entry_uuid in changed


def test_a_deleted_user_is_missing_only_after_the_next_full_read(site: Site, server: Slapd) -> None:
    use_slapd(site, server)
    site.configure(sync={"leaver_after_missing": 1})
    apply(site)
    gone = enabled(server)[0]
    with server.admin() as connection:
        connection.delete(gone.dn)

    delta = apply(site)
    assert log_field(delta, "scan") == "delta"
    # A delta read does not see the deletion, and never counts anyone missing (nor does it
    # trip the source-size guards with its few entries).
    assert site.log_events("person.missing") == site.log_events("person.leaver") == []
    assert "no leavers" in site.syncd("leavers").stdout
    # plan says the same, and what a full read would say (changing nothing).
    assert gone.entry_uuid not in site.syncd("plan", env=TODAY).stdout
    plan = site.syncd("plan", "--full", env=TODAY)
    assert plan.returncode == EX_OK and "scan=full" in plan.stdout
    rows = [line for line in plan.stdout.splitlines() if gone.entry_uuid in line]
    assert [row.split()[0] for row in rows] == ["missing", "leaver"]

    full = apply(site, "--full")
    assert log_field(full, "scan") == "full" and log_field(full, "leavers") == "1"
    assert 'reason="asked for (--full)"' in site.log_events("source.scan")[-1]
    (leaver,) = site.log_events("person.leaver")
    assert gone.entry_uuid in leaver and "reason=missing" in leaver
    assert gone.entry_uuid in site.syncd("leavers").stdout


def test_full_read_every_expiry_forces_a_full_read(site: Site, server: Slapd) -> None:
    use_slapd(site, server, full_read_every="12h")
    apply(site)
    assert log_field(apply(site), "scan") == "delta"
    # Half a day later (the state's record of the last full read, moved back).
    with closing(sqlite3.connect(site.state_path)) as conn:
        conn.execute("UPDATE meta SET value = '2020-01-01T00:00:00Z' WHERE key = 'full_read_at'")
        conn.commit()

    summary = apply(site)
    assert log_field(summary, "scan") == "full" and log_field(summary, "read") == str(PEOPLE)
    reason = site.log_events("source.scan")[-1]
    assert "2020-01-01T00:00:00Z" in reason and "source.full_read_every (12h)" in reason
    assert log_field(apply(site), "scan") == "delta"


def test_a_switch_to_another_server_forces_a_full_read(
    site: Site, slapd_factory: SlapdFactory
) -> None:
    people = make_people(PEOPLE, seed=19)
    first, second = slapd_factory(people=people), slapd_factory(people=people)
    use_slapd(site, first, first.url, second.url)
    apply(site)
    assert log_field(apply(site), "scan") == "delta"

    first.stop()
    summary = apply(site)
    assert log_field(summary, "scan") == "full" and log_field(summary, "read") == str(PEOPLE)
    (warning,) = site.log_events("ldap.full_read")
    assert f"another server answered ({second.url}; the watermark is from {first.url})" in warning
    assert log_field(apply(site), "scan") == "delta"  # from the second server's watermark


def test_a_delta_cut_off_by_a_size_limit_is_incomplete_and_keeps_the_watermark(
    site: Site, slapd_factory: SlapdFactory
) -> None:
    # The limited reader's searches stop at 500 entries: 450 people are read whole, but a
    # delta of 510 changed entries is cut off.
    people = make_people(450, seed=20)
    server = slapd_factory(people=people)
    use_slapd(site, server, bind_dn=server.limited_reader_dn)
    (site.root / "ldap-password").write_text(server.limited_reader_password)
    assert log_field(apply(site), "complete") == "True"
    watermark = meta(site, "watermark")
    assert watermark is not None
    with server.admin() as connection:
        for person in people:
            connection.modify(person.dn, {"title": [(ldap3.MODIFY_REPLACE, ["changed"])]})
    for n in range(60):
        add_person(server, f"extra{n:02d}", "Extra", f"Person{n}")

    summary = apply(site)
    assert (log_field(summary, "scan"), log_field(summary, "complete")) == ("delta", "False")
    assert "size limit" in site.log_events("source.incomplete")[-1]
    assert meta(site, "watermark") == watermark  # the next delta reads these changes again
    status = site.syncd("status")
    assert "INCOMPLETE" in status.stdout and "scan=delta" in status.stdout
