"""`syncd validate` as an administrator reads it: a line per check, problems on stderr, warnings on
`warning:` lines, and one verdict at the end; exit 0 when valid (with warnings or not)."""

from __future__ import annotations

import subprocess

import pytest

from tests.support.site import Row, Site, people
from tests.support.slapd import Slapd, requires_slapd

EX_DATAERR, EX_NOPERM = 65, 77


def verdicts(result: subprocess.CompletedProcess[str], site: Site) -> list[str]:
    return [
        line for line in result.stdout.splitlines() if line.startswith(f"config {site.config_path}")
    ]


def test_a_valid_config_gets_one_verdict_after_every_check(site: Site) -> None:
    site.write_people(people(3))
    result = site.syncd("validate")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"config {site.config_path}: keys and secrets OK"
    assert any("token accepted" in line for line in lines)
    assert verdicts(result, site) == [lines[0], f"config {site.config_path}: valid"]
    assert lines[-1] == f"config {site.config_path}: valid"
    assert "warning:" not in result.stdout


def test_a_missing_column_names_its_key_and_the_verdict_comes_last(site: Site) -> None:
    site.csv_path.write_text("id,first_name,last_name,email,start_date,status\nE1,Ada,L,,,\n")
    result = site.syncd("validate")
    assert result.returncode == EX_DATAERR
    # The header looked for, beside the key that names it, and the header the file has.
    assert "'employee_id' (source.columns.anchor)" in result.stderr
    assert "its header has: 'id', 'first_name'" in result.stderr
    assert result.stderr.startswith(f"syncd: source: HR export {site.csv_path} lacks")
    # Hybridbox is still checked, so one run shows every problem; nothing says "valid" before.
    assert "token accepted" in result.stdout
    lines = result.stdout.splitlines()
    assert lines[-1] == f"config {site.config_path}: NOT valid (1 problem; see above)"
    assert not any(line.endswith(": valid") for line in lines)
    assert "Traceback" not in result.stderr


def test_a_rejected_token_fails_validate_after_the_source_lines(site: Site) -> None:
    site.write_people(people(2))
    wrong = site.root / "wrong-token"
    wrong.write_text("not-the-token\n")
    wrong.chmod(0o600)
    site.configure(hybridbox={"token_file": str(wrong)})
    result = site.syncd("validate")
    assert result.returncode == EX_NOPERM
    assert "not-the-token" not in result.stdout + result.stderr
    assert "source: read 2 sample record(s):" in result.stdout
    assert result.stderr.startswith("syncd: hybridbox: ")
    assert result.stdout.splitlines()[-1].endswith(": NOT valid (1 problem; see above)")


def test_offline_checks_no_hybridbox_and_warns_about_an_export_without_usable_rows(
    site: Site,
) -> None:
    site.write_people([Row("E1", "", "Lovelace"), Row("E2", "Grace", "")])
    result = site.syncd("validate", "--offline")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert (
        f"warning: source: none of the 2 rows of {site.csv_path} is usable: each was rejected "
        "(the record.rejected lines above say why), so syncd would see nobody"
    ) in lines
    assert "hybridbox: not checked (--offline)" in lines
    assert lines[-1] == f"config {site.config_path}: valid, with 1 warning"
    assert "record.rejected" in result.stderr


def test_an_export_with_only_its_header_is_a_warning(site: Site) -> None:
    site.write_people([])
    result = site.syncd("validate", "--offline")
    assert result.returncode == 0, result.stderr
    assert f"warning: source.path: HR export {site.csv_path} has no rows" in result.stdout


# --------------------------------------------------------------------------------------- LDAP


def use_slapd(site: Site, slapd: Slapd, **source: object) -> None:
    password = site.root / "ldap-password"
    password.write_text(slapd.reader_password)
    password.chmod(0o600)
    site.settings["source"] = {
        "type": "ldap",
        "url": slapd.url,
        "bind_dn": slapd.reader_dn,
        "bind_password_file": str(password),
        "base_dn": f"ou=people,{slapd.base_dn}",
        **source,
    }
    site.write_config()


@requires_slapd
@pytest.mark.slapd
def test_ldap_a_misspelled_attribute_is_named_with_its_key(site: Site, slapd: Slapd) -> None:
    use_slapd(site, slapd, attributes={"first_name": "givenNme"})
    result = site.syncd("validate", "--offline")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert (
        "warning: source.attributes.first_name: none of the 5 sample entries has the attribute "
        "'givenNme'; did you mean 'givenName'?"
    ) in lines
    assert any(line.startswith("warning: source: none of the 5 sample entries") for line in lines)
    assert lines[-1] == f"config {site.config_path}: valid, with 2 warnings"
    assert slapd.reader_password not in result.stdout + result.stderr


@requires_slapd
@pytest.mark.slapd
def test_ldap_a_base_dn_without_people_is_a_warning(site: Site, slapd: Slapd) -> None:
    # It exists (so the server does not refuse the search), but nobody lives there.
    use_slapd(site, slapd, base_dn=f"ou=service,{slapd.base_dn}")
    result = site.syncd("validate", "--offline")
    assert result.returncode == 0, result.stderr
    assert (
        f"warning: source.base_dn: the search below 'ou=service,{slapd.base_dn}' with "
        "source.filter '(objectClass=inetOrgPerson)' found no entries, so syncd would see nobody"
    ) in result.stdout
    assert "source: read 0 sample record(s):" in result.stdout


@requires_slapd
@pytest.mark.slapd
def test_ldap_a_password_sent_unencrypted_to_another_host_is_a_warning(
    site: Site, slapd: Slapd
) -> None:
    # The loopback slapd answers first; the failover is another host, over plain ldap://.
    use_slapd(site, slapd, url=[slapd.url, "ldap://ldap2.example.org"])
    result = site.syncd("validate", "--offline")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stdout.splitlines() if line.startswith("warning:")]
    assert warnings == [
        f"warning: source.url: ldap://ldap2.example.org sends the password of source.bind_dn "
        f"'{slapd.reader_dn}' unencrypted (source.start_tls is false); use an ldaps:// URL or "
        "set source.start_tls: true"
    ]
    assert result.stdout.splitlines()[-1] == f"config {site.config_path}: valid, with 1 warning"


@requires_slapd
@pytest.mark.slapd
def test_ldap_a_good_config_has_no_warnings(site: Site, slapd: Slapd) -> None:
    use_slapd(site, slapd, attributes={"start_date": "hrStartDate", "disabled": "employeeType"})
    result = site.syncd("validate", "--offline")
    assert result.returncode == 0, result.stderr
    assert "warning:" not in result.stdout
    assert "source: read 5 sample record(s):" in result.stdout
    assert result.stdout.splitlines()[-1] == f"config {site.config_path}: valid"
