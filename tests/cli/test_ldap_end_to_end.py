"""LDAP to Hybridbox end to end: the session slapd's 2,500 people, through the real CLI."""

from __future__ import annotations

import pytest

from tests.support.site import Site
from tests.support.slapd import Slapd, requires_slapd

pytestmark = [pytest.mark.slapd, requires_slapd]


def use_slapd(site: Site, slapd: Slapd, **extra: object) -> None:
    password = site.root / "ldap-password"
    password.write_text(slapd.reader_password)
    password.chmod(0o600)
    site.settings["source"] = {
        "type": "ldap",
        "url": slapd.url,
        "bind_dn": slapd.reader_dn,
        "bind_password_file": str(password),
        "base_dn": f"ou=people,{slapd.base_dn}",
        "page_size": 400,
        "attributes": {"start_date": "hrStartDate", "disabled": "employeeType"},
        **extra,
    }
    site.configure(
        hybridbox={"batch_size": 100, "timeout_s": 30},
        addresses={"locale": "de"},
        safety={"max_creates_per_cycle": 5000},
    )


def test_every_enabled_person_gets_exactly_one_mailbox(site: Site, slapd: Slapd) -> None:
    use_slapd(site, slapd)
    enabled = {p.entry_uuid: p for p in slapd.people if not p.disabled}
    first = site.syncd("apply", env={"SYNCD_TODAY": "2030-01-01"}, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    remote = site.emulator.mailboxes()
    assert len(remote) == len(enabled)
    assert len({m["local_part"] for m in remote}) == len(enabled)
    assert set(site.addresses_of()) == set(enabled)  # anchored on entryUUID
    # Names reach Hybridbox exactly as the directory has them, in every script.
    assert sorted((m["first_name"], m["last_name"]) for m in remote) == sorted(
        (p.given_name, p.surname) for p in enabled.values()
    )
    summary = site.log_events("cycle.summary")[-1]
    assert "complete=True" in summary and f"read={len(slapd.people)}" in summary

    second = site.syncd("apply", env={"SYNCD_TODAY": "2030-01-01"}, timeout=300)
    assert second.returncode == 0
    assert len(site.emulator.mailboxes()) == len(enabled)
    assert "created=0" in site.log_events("cycle.summary")[-1]


def test_an_incomplete_read_provisions_what_it_read_but_counts_nobody_missing(
    site: Site, slapd: Slapd
) -> None:
    use_slapd(site, slapd)
    site.configure(sync={"leaver_after_missing": 1}, safety={"max_source_drop_percent": 100})
    assert site.syncd("apply", env={"SYNCD_TODAY": "2030-01-01"}, timeout=300).returncode == 0
    # The limited reader hits the server's size limit after 500 entries: an incomplete read.
    site.settings["source"]["bind_dn"] = slapd.limited_reader_dn
    (site.root / "ldap-password").write_text(slapd.limited_reader_password)
    site.write_config()
    result = site.syncd("apply", env={"SYNCD_TODAY": "2030-01-01"}, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "complete=False" in site.log_events("cycle.summary")[-1]
    assert site.log_events("source.incomplete")
    leavers = site.syncd("leavers")
    assert leavers.returncode == 0 and "no leavers" in leavers.stdout
