"""Bad sources through the real CLI: a clear message, the right exit code, the state untouched."""

from __future__ import annotations

import hashlib

from tests.support.site import Row, Site, people

EX_DATAERR, EX_TEMPFAIL = 65, 75


def state_fingerprint(site: Site) -> str:
    """People and mailboxes as stored: what a refused cycle must leave exactly as it was."""
    with site.db() as conn:
        rows = conn.execute("SELECT * FROM people ORDER BY anchor").fetchall()
        rows += conn.execute("SELECT * FROM mailboxes ORDER BY anchor").fetchall()
        rows += conn.execute("SELECT * FROM addresses ORDER BY address").fetchall()
    return hashlib.sha256(repr([tuple(r) for r in rows]).encode()).hexdigest()


def provisioned(site: Site, n: int = 20) -> str:
    site.write_people(people(n))
    assert site.syncd("apply").returncode == 0
    return state_fingerprint(site)


def test_half_the_rows_trips_the_drop_guard_and_changes_nothing(site: Site) -> None:
    before = provisioned(site)
    site.write_people(people(10))
    result = site.syncd("apply")
    assert result.returncode == EX_TEMPFAIL
    assert "shrank from 20 to 10 people (50.0% drop" in result.stderr
    assert state_fingerprint(site) == before
    assert "nothing was applied" in result.stderr


def test_empty_export_is_refused_with_exit_65(site: Site) -> None:
    before = provisioned(site)
    site.csv_path.write_text("")
    result = site.syncd("apply")
    assert result.returncode == EX_DATAERR
    assert "empty" in result.stderr and str(site.csv_path) in result.stderr
    assert state_fingerprint(site) == before


def test_header_only_export_trips_the_minimum_guard(site: Site) -> None:
    before = provisioned(site)
    site.write_people([])
    result = site.syncd("apply")
    assert result.returncode == EX_TEMPFAIL
    assert "min_source_people" in result.stderr
    assert state_fingerprint(site) == before


def test_wrong_delimiter_says_which_one_to_use(site: Site) -> None:
    before = provisioned(site)
    text = site.csv_path.read_text().replace(",", ";")
    site.csv_path.write_text(text)
    result = site.syncd("apply")
    assert result.returncode == EX_DATAERR
    assert "delimiter" in result.stderr and "';'" in result.stderr
    assert state_fingerprint(site) == before


def test_non_utf8_bytes_name_the_line_and_the_encoding(site: Site) -> None:
    before = provisioned(site, 3)
    with site.csv_path.open("ab") as file:
        file.write("E99,Jos\xe9,Garc\xeda,,,active\n".encode("latin-1"))
    result = site.syncd("apply")
    assert result.returncode == EX_DATAERR
    assert "line 5" in result.stderr and "encoding" in result.stderr
    assert state_fingerprint(site) == before


def test_truncated_export_is_incomplete_provisions_what_it_has_and_loses_nobody(
    site: Site,
) -> None:
    site.configure(sync={"leaver_after_missing": 1})
    provisioned(site, 4)
    site.write_people([*people(4), Row("E00005", "New", "Hire")])
    with site.csv_path.open("a") as file:
        file.write('E00006,"Cut')
    result = site.syncd("apply")
    assert result.returncode == 0, result.stderr
    assert "complete=False" in site.log_events("cycle.summary")[-1]
    assert site.addresses_of()["E00005"] == "new.hire"
    with site.db() as conn:
        assert conn.execute("SELECT max(missing_count) FROM people").fetchone()[0] == 0


def test_duplicate_anchors_keep_the_first_and_name_both_lines(site: Site) -> None:
    site.write_people(
        [Row("E1", "Ada", "Lovelace"), Row("E2", "Alan", "Turing"), Row("E1", "Eve", "Impostor")]
    )
    result = site.syncd("apply")
    assert result.returncode == 0, result.stderr
    (rejected,) = site.log_events("record.rejected")
    assert "anchor=E1" in rejected and "line 4" in rejected and "line 2" in rejected
    assert site.addresses_of() == {"E1": "ada.lovelace", "E2": "alan.turing"}
