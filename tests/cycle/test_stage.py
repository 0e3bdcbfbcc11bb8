"""Staging a read with unchanged blocks gives what reading every record would give.

A real HR export in tmp_path, the real CSV reader and a real state file. Blocks are made small
(``BLOCK_MASK``) so that a few dozen rows make many blocks. The property test runs random sequences
of edits between reads (edit, insert, delete, duplicate, break, reorder) and checks after each read
that the people table, the missing counters, the accepted and rejected counts are those of a plain
model of the rules, and that the block invariants of ``syncd.cycle._stage`` hold.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncd.config import CsvSource, SyncConfig
from syncd.cycle import _stage as stage
from syncd.cycle._plan import Policy
from syncd.cycle._stage import Staged, record_read, stage_source
from syncd.model import Person, ReadReport, person_digest
from syncd.source.csv import CsvReader
from syncd.state import State
from tests.support.events import collecting

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
HEADER = ["employee_id", "first_name", "last_name", "start_date", "status", "department"]


@dataclass(frozen=True)
class HrRow:
    anchor: str
    first: str
    last: str = "Lee"
    start: str = "2026-01-05"
    department: str = "Sales"

    def cells(self) -> list[str]:
        return [self.anchor, self.first, self.last, self.start, "active", self.department]


def write(path: Path, rows: list[HrRow]) -> None:
    with path.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(HEADER)
        writer.writerows(row.cells() for row in rows)


def reader(path: Path, **source: Any) -> CsvReader:
    columns = {
        "anchor": "employee_id",
        "first_name": "first_name",
        "last_name": "last_name",
        "start_date": "start_date",
        "status": "status",
    }
    data = {"type": "csv", "path": str(path), "columns": columns, **source}
    config = CsvSource.model_validate(data)
    return CsvReader(config, SyncConfig())


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stage, "BLOCK_MASK", 0x3)  # blocks of 4 records on average


def cycle(state: State, source: CsvReader, now: datetime = NOW) -> tuple[Staged, ReadReport]:
    """A read as ``syncd apply`` does it: stage, then record (with a run row for the next)."""
    report = ReadReport()
    staged = stage_source(state, source, report)
    record_read(state, report, now, Policy())
    run = state.start_run("c", "apply", "test", now)
    state.finish_run(run, complete=int(report.complete), accepted=staged.accepted, outcome="ok")
    return staged, report


def staged_anchors(state: State) -> list[str]:
    return [row[0] for row in state.conn.execute("SELECT anchor FROM temp.seen ORDER BY seq")]


def people(state: State) -> dict[str, tuple[str, int]]:
    rows = state.conn.execute("SELECT anchor, digest, missing_count FROM people")
    return {anchor: (digest, missing) for anchor, digest, missing in rows}


def check_invariants(state: State) -> None:
    """The invariants of syncd.stage's docstring, read straight from the tables."""
    conn = state.conn
    for block, size, rejects in conn.execute("SELECT id, size, rejects FROM blocks"):
        members = conn.execute("SELECT count(*) FROM people WHERE block = ?", (block,))
        rejected = len(rejects.split(",")) if rejects else 0
        assert members.fetchone()[0] == size - rejected
    dangling = conn.execute(
        "SELECT count(*) FROM people WHERE block IS NOT NULL "
        "AND block NOT IN (SELECT id FROM blocks)"
    )
    assert dangling.fetchone()[0] == 0
    missing = conn.execute("SELECT count(*) FROM people WHERE block IS NOT NULL AND missing_count")
    assert missing.fetchone()[0] == 0


# ------------------------------------------------------------------------- targeted cases


def test_an_unchanged_read_stages_nobody_and_writes_nothing(tmp_path: Path) -> None:
    path, state = tmp_path / "hr.csv", State(tmp_path / "state.db")
    write(path, [HrRow(f"E{i}", f"Ann{i}") for i in range(40)])
    first, _ = cycle(state, reader(path))
    assert first.unchanged == 0 and first.accepted == 40
    again, report = cycle(state, reader(path))
    assert again.unchanged == again.accepted == 40 and report.complete
    assert staged_anchors(state) == []
    assert record_read(state, report, NOW, Policy()) == 0  # no people row changes
    check_invariants(state)


def test_an_edit_stages_only_its_block(tmp_path: Path) -> None:
    path, state = tmp_path / "hr.csv", State(tmp_path / "state.db")
    rows = [HrRow(f"E{i}", f"Ann{i}") for i in range(60)]
    write(path, rows)
    cycle(state, reader(path))
    rows[30] = HrRow("E30", "Renamed")
    write(path, rows)
    staged, _ = cycle(state, reader(path))
    assert "E30" in staged_anchors(state)
    assert 0 < len(staged_anchors(state)) < 20 and staged.accepted == 60
    person = Person("E30", "Renamed", "Lee", None, datetime(2026, 1, 5).date())
    assert people(state)["E30"] == (person_digest(person), 0)
    check_invariants(state)


def test_a_leaver_in_an_unchanged_file_position_is_counted_missing(tmp_path: Path) -> None:
    path, state = tmp_path / "hr.csv", State(tmp_path / "state.db")
    rows = [HrRow(f"E{i}", f"Ann{i}") for i in range(60)]
    write(path, rows)
    cycle(state, reader(path))
    del rows[25]
    write(path, rows)
    cycle(state, reader(path))
    cycle(state, reader(path), NOW + timedelta(hours=1))
    counts = {anchor: missing for anchor, (_, missing) in people(state).items()}
    assert counts.pop("E25") == 2 and set(counts.values()) == {0}
    check_invariants(state)


def test_a_new_hire_in_the_middle_leaves_the_other_blocks_alone(tmp_path: Path) -> None:
    path, state = tmp_path / "hr.csv", State(tmp_path / "state.db")
    rows = [HrRow(f"E{i}", f"Ann{i}") for i in range(80)]
    write(path, rows)
    cycle(state, reader(path))
    rows.insert(40, HrRow("N1", "New"))
    write(path, rows)
    staged, _ = cycle(state, reader(path))
    assert "N1" in staged_anchors(state) and staged.unchanged >= 60
    assert staged.accepted == 81
    check_invariants(state)


def test_a_duplicate_after_an_unchanged_block_is_rejected_every_time(tmp_path: Path) -> None:
    path, state = tmp_path / "hr.csv", State(tmp_path / "state.db")
    rows = [HrRow(f"E{i}", f"Ann{i}") for i in range(40)]
    write(path, rows)
    cycle(state, reader(path))
    write(path, [*rows, HrRow("E3", "Impostor")])
    for _ in range(2):
        with collecting("syncd.stage") as events:
            staged, report = cycle(state, reader(path))
        rejected = events.named("record.rejected")
        assert len(rejected) == 1 and rejected[0].fields["anchor"] == "E3"
        assert rejected[0].fields["where"] == "line 42"
        assert staged.accepted == 40 and report.rejected == 1
        assert people(state)["E3"][0] == person_digest(
            Person("E3", "Ann3", "Lee", None, datetime(2026, 1, 5).date())
        )
        check_invariants(state)


def test_a_duplicate_before_an_unchanged_block_wins_as_the_first_record(tmp_path: Path) -> None:
    path, state = tmp_path / "hr.csv", State(tmp_path / "state.db")
    rows = [HrRow(f"E{i}", f"Ann{i}") for i in range(40)]
    write(path, rows)
    cycle(state, reader(path))
    write(path, [HrRow("E30", "Earlier"), *rows])
    with collecting("syncd.stage") as events:
        staged, report = cycle(state, reader(path))
    rejected = events.named("record.rejected")
    assert [e.fields["anchor"] for e in rejected] == ["E30"]
    assert "line 2" in rejected[0].fields["reason"]
    assert staged.accepted == 40 and report.rejected == 1
    earlier = Person("E30", "Earlier", "Lee", None, datetime(2026, 1, 5).date())
    assert people(state)["E30"] == (person_digest(earlier), 0)
    check_invariants(state)
    staged, report = cycle(state, reader(path))  # the same again: the same outcome
    assert staged.accepted == 40 and report.rejected == 1
    assert people(state)["E30"][0] == person_digest(earlier)
    check_invariants(state)


def test_a_rejected_row_in_an_unchanged_block_is_logged_again_and_not_missing(
    tmp_path: Path,
) -> None:
    path, state = tmp_path / "hr.csv", State(tmp_path / "state.db")
    rows = [HrRow(f"E{i}", f"Ann{i}") for i in range(40)]
    write(path, rows)
    cycle(state, reader(path))
    rows[10] = HrRow("E10", "Ann10", start="31.02.2026")
    write(path, rows)
    for _ in range(3):
        with collecting("syncd.source.csv") as events:
            staged, report = cycle(state, reader(path))
        assert [e.fields["anchor"] for e in events.named("record.rejected")] == ["E10"]
        assert staged.accepted == 39 and report.rejected == 1
        assert people(state)["E10"][1] == 0  # broken, not gone
        check_invariants(state)
    assert staged.unchanged == 39  # the block with the broken row is matched too


def test_other_source_settings_never_match_stored_blocks(tmp_path: Path) -> None:
    path, state = tmp_path / "hr.csv", State(tmp_path / "state.db")
    write(path, [HrRow(f"E{i}", f"Ann{i}") for i in range(40)])
    cycle(state, reader(path))
    staged, _ = cycle(state, reader(path, active_values=["active", "on leave"]))
    assert staged.unchanged == 0 and staged.accepted == 40
    check_invariants(state)


def test_a_cut_off_read_counts_nobody_missing_and_keeps_no_cut_block(tmp_path: Path) -> None:
    path, state = tmp_path / "hr.csv", State(tmp_path / "state.db")
    rows = [HrRow(f"E{i}", f"Ann{i}") for i in range(40)]
    write(path, rows)
    cycle(state, reader(path))
    text = path.read_text(encoding="utf-8")
    path.write_text(text[: text.index("E20,")] + "E20,Ann20", encoding="utf-8")  # no newline
    staged, report = cycle(state, reader(path))
    assert not report.complete and staged.accepted == 20
    assert {missing for _, missing in people(state).values()} == {0}
    check_invariants(state)
    write(path, rows)
    staged, report = cycle(state, reader(path))
    assert report.complete and staged.accepted == 40
    assert {missing for _, missing in people(state).values()} == {0}
    check_invariants(state)


def test_a_long_read_logs_its_progress_against_the_last_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stage, "HEARTBEAT_BLOCKS", 2)
    monkeypatch.setattr(stage, "PROGRESS_EVERY_S", 0.0)
    path, state = tmp_path / "hr.csv", State(tmp_path / "state.db")
    write(path, [HrRow(f"E{i}", f"Ann{i}") for i in range(60)])
    cycle(state, reader(path))
    with collecting("syncd.stage") as events:
        cycle(state, reader(path))
    lines = events.named("source.progress")
    assert lines and all(line.fields["expected"] == 60 for line in lines)
    assert [line.fields["records"] for line in lines] == sorted(
        line.fields["records"] for line in lines
    )
    assert 0 < lines[-1].fields["records"] < 60


# ------------------------------------------------------------------------- the property


ANCHORS = [f"E{i}" for i in range(24)]
ROWS = st.builds(
    HrRow,
    anchor=st.sampled_from(ANCHORS),
    first=st.sampled_from(["Ann", "Bo", "Cy"]),
    start=st.sampled_from(["2026-01-05", "2026-02-01", "not a date"]),
)
EDITS = st.one_of(
    st.tuples(st.just("insert"), st.integers(0, 60), ROWS),
    st.tuples(st.just("replace"), st.integers(0, 60), ROWS),
    st.tuples(st.just("delete"), st.integers(0, 60), st.none()),
    st.tuples(st.just("duplicate"), st.integers(0, 60), st.integers(0, 60)),
    st.tuples(st.just("move"), st.integers(0, 60), st.integers(0, 60)),
    st.tuples(st.just("department"), st.integers(0, 60), st.none()),
)


def apply_edit(rows: list[HrRow], edit: tuple[str, int, Any]) -> None:
    kind, index, value = edit
    if kind == "insert":
        rows.insert(index % (len(rows) + 1), value)
    elif not rows:
        return
    elif kind == "replace":
        rows[index % len(rows)] = value
    elif kind == "delete":
        del rows[index % len(rows)]
    elif kind == "duplicate":
        rows.insert(value % (len(rows) + 1), rows[index % len(rows)])
    elif kind == "move":
        rows.insert(value % len(rows), rows.pop(index % len(rows)))
    else:  # a column syncd does not read: the key, and so the blocks, stay the same
        row = rows[index % len(rows)]
        rows[index % len(rows)] = HrRow(row.anchor, row.first, row.last, row.start, "Ops")


@dataclass
class Model:
    """The rules, record by record: first valid record of an anchor wins; the others are
    rejected; people not accepted (and not rejected) in a complete read are one read more
    missing."""

    people: dict[str, tuple[str, int]]

    def read(self, rows: list[HrRow], *, cut: bool) -> tuple[int, int]:
        accepted: dict[str, str] = {}
        rejected_anchors: set[str] = set()
        rejected = 0
        if cut:  # the last line lost its end: rejected, and the read is incomplete
            rejected += 1
            rejected_anchors.add(rows[-1].anchor)
            rows = rows[:-1]
        for row in rows:
            try:
                start = datetime.strptime(row.start, "%Y-%m-%d").date()
            except ValueError:
                rejected += 1
                rejected_anchors.add(row.anchor)
                continue
            if row.anchor in accepted:
                rejected += 1
                continue
            person = Person(row.anchor, row.first, row.last, None, start)
            accepted[row.anchor] = person_digest(person)
        for anchor, (digest, missing) in list(self.people.items()):
            if not cut and anchor not in accepted and anchor not in rejected_anchors:
                self.people[anchor] = (digest, missing + 1)
        for anchor, digest in accepted.items():
            self.people[anchor] = (digest, 0)
        return len(accepted), rejected


def reads(initial: list[HrRow], rounds: list[list[tuple[str, int, Any]]]) -> Iterator[list[HrRow]]:
    rows = list(initial)
    yield list(rows)
    for edits in rounds:
        for edit in edits:
            apply_edit(rows, edit)
        yield list(rows)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    initial=st.lists(ROWS, max_size=40),
    rounds=st.lists(st.lists(EDITS, max_size=4), min_size=1, max_size=5),
    cuts=st.lists(st.booleans(), min_size=6, max_size=6),
)
def test_staging_with_blocks_matches_the_record_by_record_rules(
    tmp_path_factory: pytest.TempPathFactory,
    initial: list[HrRow],
    rounds: list[list[tuple[str, int, Any]]],
    cuts: list[bool],
) -> None:
    root = tmp_path_factory.mktemp("stage")
    path, state = root / "hr.csv", State(root / "state.db")
    model = Model({})
    logging.getLogger("syncd").setLevel(logging.ERROR)  # thousands of rejections otherwise
    try:
        for number, rows in enumerate(reads(initial, rounds)):
            cut = cuts[number] and bool(rows)
            write(path, rows)
            if cut:  # the export was cut off inside its last line
                text = path.read_text(encoding="utf-8")
                path.write_text(text[: text.rstrip("\n").rindex(",", 0, -12)], encoding="utf-8")
            staged, report = cycle(state, reader(path), NOW + timedelta(hours=number))
            accepted, rejected = model.read(rows, cut=cut)
            assert report.complete is not cut
            assert (staged.accepted, report.rejected) == (accepted, rejected)
            assert people(state) == model.people
            check_invariants(state)
    finally:
        logging.getLogger("syncd").setLevel(logging.NOTSET)
        state.close()
