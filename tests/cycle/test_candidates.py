"""Whom the planner looks at, and the queue of creates it hands on (``syncd.cycle._candidates``).

A real HR export, the real CSV reader and staging, a real state file: the read is staged as
``syncd apply`` stages it, then planned and queued; the state's mailboxes are written directly
(as the provisioner's journal would leave them) to set up the later reads.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from syncd.config import CsvSource, SyncConfig
from syncd.cycle import _candidates as candidates_module
from syncd.cycle._candidates import candidates, plan_and_queue, queued_creates, refresh_open
from syncd.cycle._plan import Plan, Policy
from syncd.cycle._route import Router
from syncd.cycle._stage import record_read, stage_source
from syncd.model import ReadReport
from syncd.source.csv import CsvReader
from syncd.state import State, iso

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
TODAY = NOW.date()
POLICY = Policy()
PEOPLE = [
    ("E1", "Ann", "Lee", "2026-11-01"),
    ("E2", "Bob", "Ray", "2026-11-20"),
    ("E3", "Cem", "Oz", "2027-03-01"),  # starts in months: scheduled, not queued
    ("E4", "Dana", "Kim", ""),
    ("E5", "Eve", "Poe", "2026-11-24"),
]


def write_export(path: Path, people: list[tuple[str, str, str, str]]) -> CsvReader:
    with path.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(["employee_id", "first_name", "last_name", "start_date"])
        writer.writerows(people)
    columns = {
        "anchor": "employee_id",
        "first_name": "first_name",
        "last_name": "last_name",
        "start_date": "start_date",
    }
    source = CsvSource.model_validate({"type": "csv", "path": str(path), "columns": columns})
    return CsvReader(source, SyncConfig())


def read_and_plan(state: State, source: CsvReader) -> Plan:
    """Stage a read and plan it, as the apply cycle does before it provisions."""
    report = ReadReport()
    stage_source(state, source, report, routing=Router("example.com"))
    refresh_open(state, POLICY, everyone=True)
    the_plan = plan_and_queue(state, POLICY, TODAY, NOW, default_domain="example.com")
    record_read(state, report, NOW, POLICY)
    return the_plan


def set_mailbox(state: State, anchor: str, status: str, local_part: str, **extra: str) -> None:
    first, last = next((p[1], p[2]) for p in PEOPLE if p[0] == anchor)
    columns = {"first_name": first, "last_name": last, **extra}
    state.conn.execute(
        "INSERT INTO mailboxes (anchor, state, local_part, domain, updated_at, "
        f"{', '.join(columns)}) VALUES (?, ?, ?, 'example.com', ?, "
        f"{', '.join('?' for _ in columns)})",
        (anchor, status, local_part, iso(NOW), *columns.values()),
    )


def test_a_first_read_queues_everyone_due_in_read_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = State(tmp_path / "state.db")
    the_plan = read_and_plan(state, write_export(tmp_path / "hr.csv", PEOPLE))
    assert (the_plan.create_count, the_plan.scheduled_count, the_plan.new_creates) == (4, 1, 4)
    assert not the_plan.creates, "apply plans count; the queue holds the people"
    queued = [(person.anchor, issued) for person, issued, _ in queued_creates(state)]
    assert queued == [("E1", None), ("E2", None), ("E4", None), ("E5", None)]
    # Handed over a chunk at a time, the queue is the same.
    monkeypatch.setattr(candidates_module, "STAGE_CHUNK", 3)
    assert [person.anchor for person, _, _ in queued_creates(state)] == ["E1", "E2", "E4", "E5"]


def test_an_unchanged_read_looks_only_at_people_whose_mailbox_is_not_settled(
    tmp_path: Path,
) -> None:
    state = State(tmp_path / "state.db")
    source = write_export(tmp_path / "hr.csv", PEOPLE)
    read_and_plan(state, source)
    with state.transaction():
        for anchor in ("E1", "E2", "E4"):
            set_mailbox(state, anchor, "created", anchor.lower())
        # E5's create failed and is due again (its address stays issued to it).
        set_mailbox(
            state, "E5", "failed", "eve.poe", next_attempt_at=iso(NOW - timedelta(minutes=1))
        )
    refresh_open(state, POLICY, everyone=True)
    the_plan = read_and_plan(state, source)
    assert (the_plan.create_count, the_plan.retry_count, the_plan.scheduled_count) == (0, 1, 1)
    assert [(p.anchor, issued) for p, issued, _ in queued_creates(state)] == [("E5", "eve.poe")]
    # Nobody with a settled mailbox is even looked at: only the scheduled and the retry.
    looked_at = [person.anchor for person, _ in candidates(state, POLICY)]
    assert looked_at == ["E3", "E5"]


def test_a_changed_record_is_looked_at_even_with_a_settled_mailbox(tmp_path: Path) -> None:
    state = State(tmp_path / "state.db")
    read_and_plan(state, write_export(tmp_path / "hr.csv", PEOPLE))
    with state.transaction():
        for anchor, *_ in PEOPLE:
            set_mailbox(state, anchor, "created", anchor.lower())
    refresh_open(state, POLICY, everyone=True)
    renamed = [("E2", "Bob", "Ray-Smith", "2026-11-20") if p[0] == "E2" else p for p in PEOPLE]
    the_plan = read_and_plan(state, write_export(tmp_path / "hr.csv", renamed))
    assert [person.anchor for person, _ in candidates(state, POLICY)] == ["E2"]
    # Renames are off by default: looked at, and nothing to do.
    assert (the_plan.create_count, the_plan.retry_count, len(the_plan.renames)) == (0, 0, 0)
