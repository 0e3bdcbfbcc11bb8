"""Delta reads from a real Active Directory (the session's Samba AD DC), through the CLI.

Each test makes an OU of its own with a few users (the session's ``OU=Staff`` is other tests'
oracle, so it is never written to) and runs ``syncd apply`` as a subprocess. Between cycles it
changes the directory as an administrator would; what is asserted is what an administrator sees:
the cycle summary (``scan=``, ``read=``), the log lines, ``syncd plan``, ``syncd leavers``, the
mailboxes and the watermark in the state.

Samba enforces no size limit on a paged search (AD's MaxPageSize is not reproduced), so the read
cut off half way is a connection dropped after a few entries, by a proxy in front of the DC
(tests/support/ldap_proxy.py), which also plays the first DC that stops answering.
"""

from __future__ import annotations

import sqlite3
import uuid
from contextlib import closing
from dataclasses import dataclass
from typing import Any

import ldap3
import pytest

from syncd.exit_codes import EX_OK
from tests.support.ldap_proxy import LdapProxy
from tests.support.samba import DNS_DOMAIN, DOMAIN_DN, UAC_ACCOUNTDISABLE, SambaAD
from tests.support.site import Site, log_field

pytestmark = [pytest.mark.samba]

# Enabled without a password (NORMAL_ACCOUNT | PASSWD_NOTREQD): fast to add; see samba.py.
ENABLED = 0x200 | 0x20
USERS = 5
LDAP_PORT = 389


@dataclass
class Ou:
    """An OU of one test's users, and the administrator's hand on it."""

    dc: SambaAD
    dn: str
    prefix: str

    def user_dn(self, n: int) -> str:
        return f"CN={self.prefix}{n:02d},{self.dn}"

    def add(self, n: int, given: str, surname: str) -> str:
        """Add a user; its objectGUID as syncd writes it (the anchor)."""
        sam = f"{self.prefix}{n:02d}"
        with self.dc.admin_connection() as conn:
            conn.add(
                self.user_dn(n),
                ["top", "person", "organizationalPerson", "user"],
                {"sAMAccountName": sam, "userPrincipalName": f"{sam}@{DNS_DOMAIN}",
                 "givenName": given, "sn": surname, "userAccountControl": str(ENABLED)},
            )  # fmt: skip
            conn.search(self.user_dn(n), "(objectClass=*)", ldap3.BASE, attributes=["objectGUID"])
            return str(uuid.UUID(bytes_le=conn.response[0]["raw_attributes"]["objectGUID"][0]))

    def modify(self, n: int, **values: str) -> None:
        with self.dc.admin_connection() as conn:
            changes = {name: [(ldap3.MODIFY_REPLACE, [value])] for name, value in values.items()}
            conn.modify(self.user_dn(n), changes)

    def delete(self, n: int) -> None:
        with self.dc.admin_connection() as conn:
            conn.delete(self.user_dn(n))


@pytest.fixture
def ou(samba_ad: SambaAD) -> Ou:
    """A fresh OU under the domain with USERS users (a random tag keeps the names apart)."""
    tag = uuid.uuid4().hex[:8]
    made = Ou(samba_ad, f"OU=Delta-{tag},{DOMAIN_DN}", f"d{tag}")
    with samba_ad.admin_connection() as conn:
        conn.add(made.dn, ["top", "organizationalUnit"])
    for n in range(USERS):
        made.add(n, f"Given{n}", f"Sur{n}")
    return made


def use_ad(site: Site, samba_ad: SambaAD, ou: Ou, *urls: str, **extra: Any) -> None:
    """syncd reads the OU as the DC's ordinary reader account, over plain LDAP on loopback."""
    password = site.root / "ad-password"
    password.write_text(samba_ad.reader_password)
    password.chmod(0o600)
    site.settings["source"] = {
        "type": "ldap",
        "flavor": "active_directory",
        "url": list(urls or [f"ldap://127.0.0.1:{LDAP_PORT}"]),
        "bind_dn": samba_ad.reader_dn,
        "bind_password_file": str(password),
        "base_dn": ou.dn,
        "page_size": 5,
        "retries": 0,
        "timeout_s": 10,
        **extra,
    }
    site.configure(safety={"max_creates_per_cycle": 1000, "max_creates_percent": 100_000})


def apply(site: Site, *args: str) -> str:
    """Run one cycle; its summary line."""
    result = site.syncd("apply", *args)
    assert result.returncode == EX_OK, result.stderr[-3000:]
    return site.log_events("cycle.summary")[-1]


def watermark(site: Site) -> str | None:
    with closing(sqlite3.connect(site.state_path)) as conn:
        row = conn.execute("SELECT value FROM meta WHERE key = 'watermark'").fetchone()
        return None if row is None else str(row[0])


def test_a_user_added_between_two_delta_cycles_is_created_in_the_second(
    site: Site, samba_ad: SambaAD, ou: Ou
) -> None:
    use_ad(site, samba_ad, ou)
    first = apply(site)
    assert (log_field(first, "scan"), log_field(first, "read"), log_field(first, "created")) == (
        "full", str(USERS), str(USERS)
    )  # fmt: skip
    quiet = apply(site)
    # Above the DC's highestCommittedUSN nothing changed: the delta reads no entry at all.
    assert (log_field(quiet, "scan"), log_field(quiet, "read")) == ("delta", "0")

    anchor = ou.add(USERS, "Nora", "Neumann")
    second = apply(site)
    assert (log_field(second, "scan"), log_field(second, "read"), log_field(second, "created")) == (
        "delta", "1", "1"
    )  # fmt: skip
    assert site.addresses_of()[anchor] == "nora.neumann"
    assert "scan=delta" in site.syncd("status").stdout


def test_a_renamed_user_is_planned_and_applied_as_a_rename(
    site: Site, samba_ad: SambaAD, ou: Ou
) -> None:
    use_ad(site, samba_ad, ou)
    site.configure(sync={"update_names": True})
    apply(site)
    ou.modify(2, sn="Umbenannt")

    plan = site.syncd("plan")
    assert plan.returncode == EX_OK, plan.stderr
    (row,) = [line for line in plan.stdout.splitlines() if line.startswith("rename")]
    assert "Given2 Umbenannt" in row and "was Given2 Sur2" in row

    summary = apply(site)
    assert [log_field(summary, name) for name in ("scan", "read", "renamed")] == [
        "delta", "1", "1"
    ]  # fmt: skip
    assert ("Given2", "Umbenannt") in site.remote_names()


def test_a_deleted_user_is_missing_only_after_the_next_full_read(
    site: Site, samba_ad: SambaAD, ou: Ou
) -> None:
    use_ad(site, samba_ad, ou)
    site.configure(sync={"leaver_after_missing": 1})
    apply(site)
    ou.delete(0)
    ou.modify(1, userAccountControl=str(ENABLED | UAC_ACCOUNTDISABLE))

    delta = apply(site)
    assert (log_field(delta, "scan"), log_field(delta, "read")) == ("delta", "1")
    # The disabled account is in the delta and a leaver at once; the deleted one is not seen.
    (leaver,) = site.log_events("person.leaver")
    assert "first_name=Given1" in leaver and "reason=disabled" in leaver
    assert site.log_events("person.missing") == []

    full = apply(site, "--full")
    assert (log_field(full, "scan"), log_field(full, "leavers")) == ("full", "2")
    gone = site.log_events("person.leaver")[-1]
    assert "first_name=Given0" in gone and "reason=missing" in gone


def test_a_switch_to_another_dc_url_forces_a_full_read(
    site: Site, samba_ad: SambaAD, ou: Ou
) -> None:
    with LdapProxy("127.0.0.1", LDAP_PORT) as first:
        direct = f"ldap://127.0.0.1:{LDAP_PORT}"
        use_ad(site, samba_ad, ou, first.url, direct)
        apply(site)
        assert log_field(apply(site), "scan") == "delta"

        first.stop()
        summary = apply(site)
    assert (log_field(summary, "scan"), log_field(summary, "read")) == ("full", str(USERS))
    (warning,) = site.log_events("ldap.full_read")
    assert f"another server answered ({direct}; the watermark is from {first.url})" in warning
    assert log_field(apply(site), "scan") == "delta"


def test_a_delta_cut_off_is_incomplete_and_keeps_the_watermark(
    site: Site, samba_ad: SambaAD, ou: Ou
) -> None:
    with LdapProxy("127.0.0.1", LDAP_PORT) as proxy:
        use_ad(site, samba_ad, ou, proxy.url)
        assert log_field(apply(site), "complete") == "True"
        kept = watermark(site)
        assert kept is not None
        for n in range(USERS):
            ou.modify(n, title="changed")
        for n in range(USERS + 1, USERS + 11):
            ou.add(n, "Extra", f"Person{n}")
        # The rootDSE and the DC's NTDS Settings are an entry each, then a page of 5 changes,
        # then one entry of the next page (which is not counted: it never ended).
        proxy.cut_after_entries = 8

        summary = apply(site)
    assert proxy.cuts == 1
    assert (log_field(summary, "scan"), log_field(summary, "complete")) == ("delta", "False")
    assert "lost after 5 entries" in site.log_events("source.incomplete")[-1]
    assert watermark(site) == kept  # the next delta reads these changes again
