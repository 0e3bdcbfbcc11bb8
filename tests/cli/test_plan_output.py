"""`syncd plan` says who would get which mailbox, where each record is, and exits as monitoring
needs; and it stays a dry run: the state file and Hybridbox are byte for byte as they were.

Through the real CLI against the emulator (the ``site`` fixture), as an administrator runs it.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.site import Row, Site, people
from tests.support.slapd import Slapd, requires_slapd

EX_OK, EX_CHANGES, EX_TEMPFAIL = 0, 1, 75
FOOTNOTE = "* provisional: free as far as syncd knows"


def plan_json(site: Site, *args: str, env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    result = site.syncd("plan", "--format", "json", *args, env=env)
    assert result.returncode == EX_OK, result.stderr
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def by_anchor(rows: list[dict[str, Any]], action: str | None = None) -> dict[str, dict[str, Any]]:
    return {row["anchor"]: row for row in rows if action is None or row["action"] == action}


def state_files(site: Site) -> dict[str, bytes]:
    """Every file beside the state (the database, status.json, the lock), with the content of
    any write-ahead log. Left out: SQLite's shared-memory index (``-shm``, no data) and an empty
    ``-wal``, which a read-only reader creates when they are missing and cannot remove."""
    files = {path.name: path.read_bytes() for path in sorted(site.state_path.parent.iterdir())}
    files.pop(site.state_path.name + "-shm", None)
    if not files.get(site.state_path.name + "-wal", b"x"):
        del files[site.state_path.name + "-wal"]
    return files


# ------------------------------------------------------------------------------ addresses


def test_plan_shows_the_address_each_create_would_get_in_every_format(site: Site) -> None:
    site.write_people([Row("E1", "Ada", "Lovelace"), Row("E2", "Alan", "Turing")])
    assert site.syncd("apply").returncode == 0
    site.write_people(
        [
            Row("E1", "Ada", "Lovelace"),
            Row("E2", "Alan", "Turing"),
            Row("E3", "Ada", "Lovelace"),  # her first choice is E1's: the next one
            Row("E4", "Grace", "Hopper", email="amazing.grace@example.com"),
            Row("E5", "Ada", "Lovelace"),  # and the one after, not the one E3 would take
        ]
    )

    rows = by_anchor(plan_json(site))
    assert set(rows) == {"E3", "E4", "E5"}
    assert rows["E3"] == {
        "action": "create",
        "anchor": "E3",
        "name": "Ada Lovelace",
        "address": "ada.lovelace2@example.com",
        "provisional": True,
        "locator": "line 4",
        "detail": "",
    }
    assert rows["E4"]["address"] == "amazing.grace@example.com"  # the export's wish
    assert rows["E5"]["address"] == "ada.lovelace3@example.com"

    table = site.syncd("plan")
    assert table.returncode == EX_OK, table.stderr
    header, *lines = table.stdout.splitlines()
    assert header.split() == ["ACTION", "ANCHOR", "NAME", "ADDRESS", "LOCATOR", "DETAIL"]
    e3 = next(line for line in lines if line.startswith("create  E3"))
    assert "ada.lovelace2@example.com*" in e3 and "line 4" in e3
    assert FOOTNOTE in table.stdout

    as_csv = site.syncd("plan", "--format", "csv")
    assert as_csv.returncode == EX_OK, as_csv.stderr
    records = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert list(records[0]) == [
        "action", "anchor", "name", "address", "provisional", "locator", "detail",
    ]  # fmt: skip
    assert {r["anchor"]: (r["address"], r["provisional"], r["locator"]) for r in records} == {
        "E3": ("ada.lovelace2@example.com", "true", "line 4"),
        "E4": ("amazing.grace@example.com", "true", "line 5"),
        "E5": ("ada.lovelace3@example.com", "true", "line 6"),
    }

    # What plan said is what apply does (Hybridbox reported no collision).
    assert site.syncd("apply").returncode == 0
    parts = site.addresses_of()
    assert (parts["E3"], parts["E4"], parts["E5"]) == (
        "ada.lovelace2",
        "amazing.grace",
        "ada.lovelace3",
    )


def test_a_retry_shows_the_address_it_keeps_and_a_rename_the_mailbox_s(site: Site) -> None:
    site.configure(sync={"update_names": True})
    site.write_people([Row("E1", "Ada", "Byron"), Row("E2", "Alan", "Turing")])
    site.emulator.set_faults(fail_rate=1.0)
    assert site.syncd("apply").returncode == 1  # both failed; retried after the backoff
    site.emulator.set_faults(fail_rate=0.0)
    backoff_over = "UPDATE mailboxes SET next_attempt_at = '2000-01-01T00:00:00Z' WHERE anchor = ?"
    with site.db() as conn:
        conn.execute(backoff_over, ("E1",))
    assert site.syncd("apply").returncode == 0
    assert site.mailbox_states() == {"E1": "created", "E2": "failed"}
    with site.db() as conn:
        conn.execute(backoff_over, ("E2",))
    site.write_people([Row("E1", "Ada", "Lovelace"), Row("E2", "Alan", "Turing")])

    rows = by_anchor(plan_json(site))
    assert rows["E1"]["action"] == "rename"
    assert rows["E1"]["address"] == "ada.byron@example.com" and rows["E1"]["provisional"] is False
    assert rows["E1"]["detail"] == "was Ada Byron"
    assert rows["E2"]["action"] == "retry"
    assert rows["E2"]["address"] == "alan.turing@example.com" and rows["E2"]["provisional"]
    assert rows["E2"]["detail"] == "after 1 failed attempt(s)"


def test_a_create_with_every_candidate_taken_says_so(site: Site) -> None:
    site.configure(addresses={"templates": ["{first}.{last}"], "fallback_template": "{anchor}"})
    site.write_people([Row("E1", "Alan", "Turing")])
    assert site.syncd("apply").returncode == 0
    taken = ["ada.lovelace", "e9", *(f"e9-{n}" for n in range(2, 100))]
    with site.db() as conn:  # what Hybridbox reported taken in earlier cycles, say
        conn.executemany(
            "INSERT INTO addresses (address, status, issued_at) "
            "VALUES (?, 'taken', '2026-01-01T00:00:00Z')",
            [(f"{local_part}@example.com",) for local_part in taken],
        )
    site.write_people([Row("E1", "Alan", "Turing"), Row("E9", "Ada", "Lovelace")])

    (row,) = plan_json(site)
    assert row["anchor"] == "E9" and row["address"] is None and row["provisional"] is None
    assert row["detail"].startswith("no free address in example.com: every candidate is taken")
    assert "no_address=1" in site.syncd("plan", "--summary").stdout
    assert site.syncd("apply").returncode == EX_CHANGES  # exit 1: one person failed
    assert site.mailbox_states()["E9"] == "quarantined"  # as plan said


def test_a_scheduled_hire_has_no_address_yet(site: Site) -> None:
    site.write_people([Row("E1", "Ada", "Lovelace", start="2027-03-01")])
    (row,) = plan_json(site, env={"SYNCD_TODAY": "2026-12-01"})
    assert row["action"] == "scheduled" and row["detail"] == "due 2027-02-22, in example.com"
    assert row["address"] is None and row["provisional"] is None and row["locator"] == "line 2"


def test_the_locator_is_where_the_record_is_now_after_rows_moved(site: Site) -> None:
    """A scheduled hire in a block that did not change is not parsed again; the plan still
    says on which line of this export they are, not of the last one."""
    staff = people(400)
    staff[300] = Row("E00301", "Ada", "Lovelace", start="2027-03-01")
    site.write_people(staff)
    assert site.syncd("apply", env={"SYNCD_TODAY": "2026-12-01"}).returncode == 0

    site.write_people([Row("N1", "New", "Hire", start="2027-03-01"), *staff])  # one row on top
    rows = by_anchor(plan_json(site, env={"SYNCD_TODAY": "2026-12-01"}), "scheduled")
    assert rows["E00301"]["locator"] == "line 303"  # was line 302
    assert rows["N1"]["locator"] == "line 2"
    compared = site.log_events("source.compared")[-1]
    assert "unchanged_people=0" not in compared  # Ada's block was recognised, not re-read

    site.write_people([*reversed(staff)])  # every row moved: every block read again
    rows = by_anchor(plan_json(site, env={"SYNCD_TODAY": "2026-12-01"}), "scheduled")
    assert rows["E00301"]["locator"] == f"line {400 - 300 + 1}"


# -------------------------------------------------------------------------------- exit codes


def test_check_exits_1_with_changes_0_without_and_75_when_a_guard_would_refuse(
    site: Site,
) -> None:
    site.write_people(people(10))
    assert site.syncd("plan").returncode == EX_OK  # without --check: 0 whatever it shows
    assert site.syncd("plan", "--check").returncode == EX_CHANGES
    assert site.syncd("apply").returncode == 0
    quiet = site.syncd("plan", "--check")
    assert quiet.returncode == EX_OK, quiet.stderr
    assert "creates=0" in quiet.stdout
    site.write_people(people(11))  # a cycle killed after journaling: apply would finish it
    killed = site.syncd("apply", env={"SYNCD_TEST_CRASH_AT": "after_intents"})
    assert killed.returncode != 0 and site.mailbox_states()["E00011"] == "intent"
    assert site.syncd("plan", "--check").returncode == EX_CHANGES
    assert site.syncd("apply").returncode == 0
    assert site.syncd("plan", "--check").returncode == EX_OK
    site.write_people(people(10))  # only E00011 is missing: 1 of 11, the guard lets it pass
    assert site.syncd("plan", "--check").returncode == EX_OK  # a missing row is no change

    site.write_people(people(5))  # half the staff gone: the shrink guard refuses
    refused = site.syncd("plan", "--check", "--format", "json")
    assert refused.returncode == EX_TEMPFAIL
    assert "apply would refuse: the source shrank from 11 to 5" in refused.stderr
    missing = json.loads(refused.stdout)  # stdout stays JSON: who the read misses
    assert [(row["action"], row["anchor"]) for row in missing] == [
        ("missing", f"E{i:05d}") for i in range(6, 12)
    ]
    table = site.syncd("plan")
    assert table.returncode == EX_TEMPFAIL
    assert "guards: apply would refuse: the source shrank" in table.stdout
    assert site.syncd("apply").returncode == EX_TEMPFAIL  # as apply does


def test_check_with_creates_over_the_limit_exits_75_not_1(site: Site) -> None:
    site.configure(safety={"max_creates_per_cycle": 3})
    site.write_people(people(5))
    result = site.syncd("plan", "--check")
    assert result.returncode == EX_TEMPFAIL
    assert "more than safety.max_creates_per_cycle=3" in result.stdout
    assert result.stdout.count("create ") == 5  # what it would have done is still shown


def test_summary_prints_only_the_counts_in_every_format(site: Site) -> None:
    site.write_people(people(4))
    table = site.syncd("plan", "--summary")
    assert table.returncode == EX_OK, table.stderr
    assert "create " not in table.stdout
    assert "plan: read=4 rejected=0 complete=true creates=4 (new=4)" in table.stdout
    assert "nothing was changed" in table.stdout
    data = json.loads(site.syncd("plan", "--summary", "--format", "json").stdout)
    assert data["creates"] == 4 and data["complete"] is True and data["refused"] is None
    (counts,) = csv.DictReader(
        io.StringIO(site.syncd("plan", "--summary", "--format", "csv").stdout)
    )
    assert counts["creates"] == "4" and counts["complete"] == "true"


def test_a_first_run_says_that_apply_checks_the_domain_first(site: Site) -> None:
    site.write_people(people(2))
    result = site.syncd("plan")
    assert "apply first checks that the Hybridbox domain has none" in result.stdout
    assert site.syncd("apply").returncode == 0
    site.write_people(people(3))
    assert "apply first checks" not in site.syncd("plan").stdout


# ---------------------------------------------------------------------------- a dry run


def test_plan_leaves_the_state_file_and_hybridbox_untouched(site: Site) -> None:
    """Every kind of row at once (create, retry, rename, scheduled, missing, leaver, returned,
    name change), and afterwards the state directory is byte for byte what apply left."""
    site.configure(sync={"leaver_after_missing": 1}, safety={"max_source_drop_percent": 100})
    staff = [
        Row("E1", "Ada", "Byron"),
        Row("E2", "Alan", "Turing"),
        Row("E3", "Grace", "Hopper"),
        Row("E4", "Kathe", "Kollwitz"),
    ]
    site.write_people(staff)
    assert site.syncd("apply").returncode == 0
    site.write_people([staff[0], staff[1], staff[2]])  # Kathe leaves
    assert site.syncd("apply").returncode == 0
    site.write_people(
        [
            Row("E1", "Ada", "Lovelace"),  # renamed: the mailbox keeps its name (update_names off)
            staff[1],  # Alan stays
            staff[3],  # Kathe is back, Grace is gone
            Row("E5", "Edsger", "Dijkstra"),
            Row("E6", "Barbara", "Liskov", start="2099-01-01"),
        ]
    )
    before, mailboxes = state_files(site), site.emulator.mailboxes()
    logged = [len(site.log_events(f"person.{what}")) for what in ("missing", "leaver", "returned")]

    for fmt in ("table", "csv", "json"):
        result = site.syncd("plan", "--format", fmt)
        assert result.returncode == EX_OK, result.stderr
    rows = plan_json(site)

    assert state_files(site) == before
    assert site.emulator.mailboxes() == mailboxes
    assert [(row["action"], row["anchor"]) for row in rows] == [
        ("create", "E5"),
        ("scheduled", "E6"),
        ("missing", "E3"),
        ("leaver", "E3"),
        ("returned", "E4"),
        ("name_changed", "E1"),
    ]
    named = by_anchor(rows)
    assert named["E1"]["detail"] == (
        "was Ada Byron; the mailbox keeps the old name (sync.update_names is off)"
    )
    assert named["E1"]["address"] == "ada.byron@example.com"
    assert named["E4"]["locator"] == "line 4" and named["E4"]["address"].startswith("kathe.")
    # Plan logs none of the person.* lines that apply will log.
    assert logged == [
        len(site.log_events(f"person.{w}")) for w in ("missing", "leaver", "returned")
    ]
    assert not site.log_events("person.name_changed")


def test_plan_without_a_state_file_creates_none(site: Site) -> None:
    site.write_people(people(3))
    rows = plan_json(site)
    assert [row["address"] for row in rows] == [
        "first1.last1@example.com", "first2.last2@example.com", "first3.last3@example.com",
    ]  # fmt: skip
    assert not site.state_path.exists()
    assert site.emulator.mailboxes() == []


# ------------------------------------------------------------------------------------ LDAP


@pytest.mark.slapd
@requires_slapd
def test_an_ldap_plan_locates_each_person_by_dn(site: Site, slapd: Slapd, tmp_path: Path) -> None:
    password = tmp_path / "ldap-password"
    password.write_text(slapd.reader_password)
    password.chmod(0o600)
    site.settings["source"] = {
        "type": "ldap",
        "url": slapd.url,
        "bind_dn": slapd.reader_dn,
        "bind_password_file": str(password),
        "base_dn": f"ou=people,{slapd.base_dn}",
        "attributes": {"start_date": "hrStartDate", "disabled": "employeeType"},
    }
    site.configure(safety={"max_creates_per_cycle": 5000})
    result = site.syncd("plan", "--format", "json", env={"SYNCD_TODAY": "2030-01-01"}, timeout=300)
    assert result.returncode == EX_OK, result.stderr[-2000:]
    rows = by_anchor(json.loads(result.stdout), "create")
    enabled = [p for p in slapd.people if not p.disabled]
    assert len(rows) == len(enabled)
    for person in enabled[:50]:
        assert rows[person.entry_uuid]["locator"] == person.dn
        assert rows[person.entry_uuid]["address"].endswith("@example.com")
