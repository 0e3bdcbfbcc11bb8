"""State files written by older releases (tests/data/state-v*.db) still work: opened by today's
code they get every migration and keep every row, the read-only commands report them as they
are, and a cycle runs on them.

All were made the same way by tests/data/make_old_state.py: three cycles over Ada Lovelace (E1,
then gone from the export), Alan Turing (E2, then disabled), Grace Hopper (E3), Katherine Johnson
(E4, whose create failed) and a second Ada Lovelace (E5, who got the first Ada's address again
where the release kept an address history).
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from syncd.exit_codes import EX_OK, EX_STALE
from syncd.state import State
from syncd.state._schema import MIGRATIONS
from tests.state.schema_facts import schema_of
from tests.support.site import Row, Site

FIXTURES = sorted((Path(__file__).resolve().parents[1] / "data").glob("state-v*.db"))
# Python's start-up writes one line per import to stderr ("import time: ... | sqlite_utils").
IMPORT_TIMES = {"PYTHONPROFILEIMPORTTIME": "1"}


def _imported(module: str, import_times: str) -> bool:
    """Whether ``python -X importtime`` output has ``module`` (at any depth of nesting)."""
    return re.search(rf"^import time: .*\| +{re.escape(module)}$", import_times, re.M) is not None


def _version(path: Path) -> int:
    with closing(sqlite3.connect(path)) as conn:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _rows(conn: sqlite3.Connection) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table."""
    conn.row_factory = sqlite3.Row
    tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    return {t: [dict(row) for row in conn.execute(f"SELECT * FROM {t}")] for t in tables}


def _sorted(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda row: [str(value) for value in row.values()])


@pytest.fixture(params=FIXTURES, ids=[path.stem for path in FIXTURES])
def old_state(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A copy of one fixture (opening a WAL file writes beside it, so never the original)."""
    copy = tmp_path / "old" / "state.db"
    copy.parent.mkdir()
    shutil.copyfile(request.param, copy)
    return copy


def test_the_fixtures_span_every_schema_version_and_are_small() -> None:
    versions = [_version(path) for path in FIXTURES]
    assert min(versions) == 1 and max(versions) == len(MIGRATIONS)
    for path in FIXTURES:
        assert path.stat().st_size < 100_000
        assert not path.with_name(path.name + "-wal").exists()


def test_opening_an_old_state_runs_every_migration_and_keeps_every_row(
    old_state: Path, tmp_path: Path
) -> None:
    version = _version(old_state)
    with closing(sqlite3.connect(old_state)) as conn:
        before = _rows(conn)
        columns = {t: [c[1] for c in conn.execute(f"PRAGMA table_info({t})")] for t in before}
    state = State(old_state)
    assert state.schema_version() == len(MIGRATIONS)
    after = _rows(state.conn)
    for table, rows in before.items():
        kept = [{column: row[column] for column in columns[table]} for row in after[table]]
        assert _sorted(kept) == _sorted(rows), table
    if version < 3:  # the columns migration 3 added hold their defaults
        assert {(row["open"], row["block"]) for row in after["people"]} == {(1, None)}
    if version < 4:  # runs before migration 4 were all full reads: scan is NULL, read as full
        assert {row["scan"] for row in after["runs"]} == {None}
        assert state.last_complete_read() is not None
    assert schema_of(state.conn) == schema_of(State(tmp_path / "fresh.db").conn)

    mailboxes = {row["anchor"]: row["state"] for row in after["mailboxes"]}
    assert mailboxes == {"E1": "created", "E2": "created", "E3": "created", "E4": "failed",
                         "E5": "created"}  # fmt: skip
    assert [row["outcome"] for row in after["runs"]] == ["ok", "partial", "ok"]
    assert [row["anchor"] for row in state.leavers(1)] == ["E1", "E2"]
    assert [row["anchor"] for row in after["address_history"]] == (["E1"] if version >= 2 else [])
    assert state.failures()[0]["last_code"] == "backend_busy"


def _report(site: Site, *command: str) -> Any:
    result = site.syncd(*command, "--format", "json")
    assert result.returncode == EX_OK, result.stderr
    return json.loads(result.stdout)


def _reports_read_it_as_it_is(site: Site, version: int) -> None:
    status = site.syncd("status", "--format", "json")
    assert status.returncode == EX_STALE  # no status.json here: no success on record
    report = json.loads(status.stdout)
    assert [run["outcome"] for run in report["runs"]] == ["ok", "partial", "ok"]
    assert report["totals"] == {"people": 5, "mailboxes": 4, "pending": 1, "quarantined": 0,
                                "leavers": 2}  # fmt: skip
    failures = _report(site, "failures")
    assert [(row["anchor"], row["last_code"]) for row in failures] == [("E4", "backend_busy")]
    leavers = _report(site, "leavers")
    assert [(row["anchor"], row["reason"]) for row in leavers] == [
        ("E1", "missing 2x"),
        ("E2", "disabled"),
    ]
    holders = [row["anchor"] for row in _report(site, "addresses", "ada.lovelace")]
    assert holders == (["E1", "E5"] if version >= 2 else ["E1"])
    assert _version(site.state_path) == version  # read-only: not migrated


def test_the_cli_reports_an_old_state_and_cycles_on_it(site: Site, old_state: Path) -> None:
    version = _version(old_state)
    site.state_path.parent.mkdir(parents=True)
    shutil.copyfile(old_state, site.state_path)
    site.configure(sync={"leaver_after_missing": 1}, addresses={"reserve_days": 0})
    _reports_read_it_as_it_is(site, version)

    site.write_people([Row("E2", "Alan", "Turing", status="left"), Row("E3", "Grace", "Hopper"),
                       Row("E4", "Katherine", "Johnson"), Row("E5", "Ada", "Lovelace"),
                       Row("E6", "Mary", "Jackson")])  # fmt: skip
    migrating = site.syncd("apply", env=IMPORT_TIMES)
    assert migrating.returncode == EX_OK, migrating.stderr
    assert _version(site.state_path) == len(MIGRATIONS)
    assert _imported("sqlite_utils", migrating.stderr) == (version < len(MIGRATIONS))
    assert site.mailbox_states()["E6"] == "created"

    assert site.syncd("retry", "--all").returncode == EX_OK  # E4 need not wait for its backoff
    steady = site.syncd("apply", env=IMPORT_TIMES)
    assert steady.returncode == EX_OK, steady.stderr
    assert _imported("syncd.state", steady.stderr)  # the import times are there
    assert not _imported("sqlite_utils", steady.stderr)  # a current state: nothing to migrate
    assert set(site.mailbox_states().values()) == {"created"}
    assert site.addresses_of()["E4"] == "katherine.johnson"


def test_an_old_single_domain_state_keeps_every_mailbox_where_it_is_under_domain_rules(
    domains_site: Site,
) -> None:
    """The state of the last release with one domain (schema 4), opened with three domains
    routed by department: the mailboxes it recorded stay in example.com; a person the rules now
    send elsewhere is a move (logged once, listed), never a second mailbox; new people and a
    failed create go to the domain the rules give them."""
    site = domains_site
    single_domain = next(path for path in FIXTURES if _version(path) == len(MIGRATIONS) - 1)
    site.state_path.parent.mkdir(parents=True)
    shutil.copyfile(single_domain, site.state_path)
    site.configure(sync={"leaver_after_missing": 1}, addresses={"reserve_days": 0})
    site.write_people([Row("E2", "Alan", "Turing", status="left"),
                       Row("E3", "Grace", "Hopper", department="Research"),
                       Row("E4", "Katherine", "Johnson", department="Vertrieb"),
                       Row("E5", "Ada", "Lovelace"),
                       Row("E6", "Mary", "Jackson", department="Research")])  # fmt: skip
    result = site.syncd("apply")
    assert result.returncode == EX_OK, result.stderr
    assert _version(site.state_path) == len(MIGRATIONS)
    assert site.full_addresses_of() == {
        "E1": "ada.lovelace@example.com",  # a leaver's mailbox stays recorded
        "E2": "alan.turing@example.com",
        "E3": "grace.hopper@example.com",  # provisioned before: kept where it is
        "E4": "katherine.johnson@example.de",  # its create had failed: made where routed now
        "E5": "ada.lovelace@example.com",
        "E6": "mary.jackson@labs.example.com",
    }
    # Only the two new mailboxes were made (this emulator never had the old ones).
    assert sorted(m["primary_email"] for m in site.emulator.mailboxes()) == [
        "katherine.johnson@example.de",
        "mary.jackson@labs.example.com",
    ]
    changed = site.log_events("person.domain_changed")
    assert len(changed) == 1 and "anchor=E3" in changed[0]
    assert "mailbox_domain=example.com" in changed[0]
    assert "new_domain=labs.example.com" in changed[0]
    moves = _report(site, "moves")
    assert [(m["anchor"], m["address"]) for m in moves] == [("E3", "grace.hopper@example.com")]
