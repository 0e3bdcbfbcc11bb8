"""What a read changes about people is logged, once each: ``person.missing`` at the first
absence from a complete read, ``person.leaver`` when they cross ``sync.leaver_after_missing``
(or are disabled with a mailbox), ``person.returned`` when they are seen (or enabled) again, and
``person.name_changed`` with whether the mailbox will carry the new name.

End to end through the CLI (``site``): the lines are read from the log file, as an administrator
greps it, over several cycles.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from syncd.config import CsvSource, SyncConfig
from syncd.cycle import _stage as stage
from syncd.cycle._plan import Policy
from syncd.cycle._stage import record_read, stage_source
from syncd.model import ReadReport
from syncd.source.csv import CsvReader
from syncd.state import State, utcnow
from tests.support.site import Row, Site, people

EVENTS = ("missing", "leaver", "returned", "name_changed")


def lines(site: Site) -> dict[str, list[str]]:
    """Every person.* line of the log so far, by event."""
    return {what: site.log_events(f"person.{what}") for what in EVENTS}


def counts(site: Site) -> dict[str, int]:
    return {what: len(found) for what, found in lines(site).items()}


def apply(site: Site) -> None:
    result = site.syncd("apply")
    assert result.returncode == 0, result.stderr


STAFF = [Row("E1", "Ada", "Lovelace"), Row("E2", "Alan", "Turing"), Row("E3", "Grace", "Hopper")]


def test_missing_then_leaver_then_returned_each_once(site: Site) -> None:
    site.configure(sync={"leaver_after_missing": 3}, safety={"max_source_drop_percent": 60})
    site.write_people(STAFF)
    apply(site)
    site.write_people(STAFF[:2])  # Grace is gone

    apply(site)
    (missing,) = lines(site)["missing"]
    assert " INFO person.missing " in missing
    assert "anchor=E3 first_name=Grace last_name=Hopper address=grace.hopper@example.com" in missing
    assert "missing=1 leaver_after=3" in missing
    apply(site)  # missing from 2 of 3 reads: nothing new to say
    assert counts(site) == {"missing": 1, "leaver": 0, "returned": 0, "name_changed": 0}

    apply(site)
    (leaver,) = lines(site)["leaver"]
    assert " WARNING person.leaver " in leaver
    assert "anchor=E3" in leaver and "address=grace.hopper@example.com" in leaver
    assert "reason=missing missing=3" in leaver
    apply(site)
    apply(site)
    assert counts(site) == {"missing": 1, "leaver": 1, "returned": 0, "name_changed": 0}

    site.write_people(STAFF)  # she is back
    apply(site)
    apply(site)
    (returned,) = lines(site)["returned"]
    assert " INFO person.returned " in returned
    assert (
        "anchor=E3 first_name=Grace last_name=Hopper address=grace.hopper@example.com" in returned
    )
    assert 'where="line 4" was=missing missing=5' in returned
    assert counts(site) == {"missing": 1, "leaver": 1, "returned": 1, "name_changed": 0}


def test_incomplete_reads_log_nobody_missing(site: Site) -> None:
    site.configure(sync={"leaver_after_missing": 1}, safety={"max_source_drop_percent": 60})
    site.write_people(STAFF)
    apply(site)
    site.write_people(STAFF[:2])
    with site.csv_path.open("a") as file:
        file.write('E4,"Kathe')  # cut off inside a quoted field: the read is incomplete
    for _ in range(3):
        apply(site)
    assert counts(site) == {"missing": 0, "leaver": 0, "returned": 0, "name_changed": 0}

    site.write_people(STAFF[:2])  # complete: missing and, with leaver_after_missing 1, a leaver
    apply(site)
    apply(site)
    assert counts(site) == {"missing": 1, "leaver": 1, "returned": 0, "name_changed": 0}
    assert "missing=1" in lines(site)["leaver"][0]


def test_a_person_without_a_mailbox_is_missing_but_never_a_leaver(site: Site) -> None:
    site.configure(sync={"leaver_after_missing": 1}, safety={"max_source_drop_percent": 60})
    site.write_people([*STAFF, Row("E9", "Future", "Hire", start="2099-01-01")])
    apply(site)
    site.write_people(STAFF)
    apply(site)
    (missing,) = lines(site)["missing"]
    assert "anchor=E9" in missing and "address=" not in missing
    assert counts(site)["leaver"] == 0  # `syncd leavers` lists mailboxes; E9 has none


def test_disabled_with_a_mailbox_is_a_leaver_at_once_and_enabled_again_returns(
    site: Site,
) -> None:
    site.write_people(STAFF)
    apply(site)
    site.write_people([STAFF[0], Row("E2", "Alan", "Turing", status="left"), STAFF[2]])
    apply(site)
    apply(site)
    (leaver,) = lines(site)["leaver"]
    assert "anchor=E2" in leaver and "reason=disabled" in leaver and "missing=" not in leaver
    assert "address=alan.turing@example.com" in leaver

    site.write_people(STAFF)
    apply(site)
    apply(site)
    (returned,) = lines(site)["returned"]
    assert "anchor=E2" in returned and "was=disabled" in returned
    assert counts(site) == {"missing": 0, "leaver": 1, "returned": 1, "name_changed": 0}


def test_a_name_change_is_logged_once_saying_whether_it_is_applied(site: Site) -> None:
    site.write_people([Row("E1", "Ada", "Byron")])
    apply(site)
    site.write_people([Row("E1", "Ada", "Lovelace")])
    apply(site)
    apply(site)
    (changed,) = lines(site)["name_changed"]
    assert (
        "anchor=E1 first_name=Ada last_name=Lovelace address=ada.byron@example.com "
        'old="Ada Byron" where="line 2" applied=False'
    ) in changed
    assert site.emulator.mailboxes()[0]["last_name"] == "Byron"

    site.configure(sync={"update_names": True})
    site.write_people([Row("E1", "Ada", "King")])
    apply(site)
    apply(site)
    assert len(lines(site)["name_changed"]) == 2
    assert 'old="Ada Lovelace"' in lines(site)["name_changed"][1]
    assert "applied=True" in lines(site)["name_changed"][1]
    assert site.emulator.mailboxes()[0]["last_name"] == "King"
    # Turning update_names on renames the mailbox to the name the source has had since, but
    # that change was logged when it happened (applied=False): not again.


def test_a_person_missing_then_renamed_on_return_gets_both_lines(site: Site) -> None:
    site.configure(safety={"max_source_drop_percent": 60})
    site.write_people(STAFF)
    apply(site)
    site.write_people(STAFF[:2])
    apply(site)
    site.write_people([*STAFF[:2], Row("E3", "Grace", "Murray")])
    apply(site)
    (returned,) = lines(site)["returned"]
    (changed,) = lines(site)["name_changed"]
    assert "anchor=E3 first_name=Grace last_name=Murray" in returned
    assert 'last_name=Murray address=grace.hopper@example.com old="Grace Hopper"' in changed


def test_two_people_swapping_names_keep_their_own_addresses(site: Site) -> None:
    """The lines say plainly that the addresses stay with the anchors: E1's mailbox is still
    ada.lovelace@ although the source now calls E1 Alan Turing."""
    site.write_people(STAFF[:2])
    apply(site)
    site.write_people([Row("E1", "Alan", "Turing"), Row("E2", "Ada", "Lovelace")])
    apply(site)
    first, second = lines(site)["name_changed"]
    assert "anchor=E1 first_name=Alan last_name=Turing address=ada.lovelace@example.com" in first
    assert 'old="Ada Lovelace"' in first
    assert "anchor=E2 first_name=Ada last_name=Lovelace address=alan.turing@example.com" in second
    assert 'old="Alan Turing"' in second
    assert "applied=False" in first and "applied=False" in second


def test_a_refused_cycle_logs_nothing_and_the_next_one_logs_once(site: Site) -> None:
    site.write_people(people(10))
    apply(site)
    site.write_people(people(5))  # a drop of half: the guard refuses the cycle
    assert site.syncd("apply").returncode == 75
    assert counts(site)["missing"] == 0
    site.configure(safety={"max_source_drop_percent": 60})
    apply(site)
    apply(site)
    assert sorted(line.split("anchor=")[1].split()[0] for line in lines(site)["missing"]) == [
        f"E{i:05d}" for i in range(6, 11)
    ]


# --------------------------------------------------------------- a steady read stays cheap


def test_the_transitions_never_walk_the_people_table(tmp_path: Path) -> None:
    """The lines come from the few staged and missing people: every query that finds them
    reaches people and mailboxes by key, never by a scan of the whole table (a steady cycle over
    100k people must not pay a pass over them)."""
    path, state = tmp_path / "hr.csv", State(tmp_path / "state.db")
    with path.open("w", encoding="utf-8") as file:
        file.write("employee_id,first_name,last_name\n")
        file.writelines(f"{r.anchor},{r.first},{r.last}\n" for r in people(300))
    columns = {"anchor": "employee_id", "first_name": "first_name", "last_name": "last_name"}
    config = CsvSource.model_validate({"type": "csv", "path": str(path), "columns": columns})
    for _ in range(2):  # the second read is the steady one: nothing staged
        report = ReadReport()
        stage_source(state, CsvReader(config, SyncConfig()), report)
        record_read(state, report, utcnow(), Policy())
    assert report.complete
    for sql in (stage._BEFORE, stage._SEEN_TRANSITIONS, stage._UNSEEN_TRANSITIONS):
        steps = query_plan(state.conn, sql)
        assert steps and not [s for s in steps if s.startswith("SCAN") and s[5:6] in "pm"], steps


def query_plan(conn: sqlite3.Connection, sql: str) -> list[str]:
    """The steps of a transition query, as SQLite would run it now (its temp tables are there,
    left by the last record_read)."""
    select = sql.replace("INSERT INTO temp.transitions", "").replace(
        "CREATE TEMP TABLE before AS", ""
    )
    params = {"leaver_after": 3, "rename": 0}
    return [str(row[3]) for row in conn.execute("EXPLAIN QUERY PLAN " + select, params)]
