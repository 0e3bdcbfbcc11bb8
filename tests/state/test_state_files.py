"""The files under the state: their modes, and what a failure of them becomes.

A failure of the file itself (no SQLite file, a damaged page, a write refused) is a StateError or
DiskError naming the file; a mistake in syncd's own SQL stays a sqlite3 error (a bug, exit 70).
"""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.errors import StateError
from syncd.state import State, StateLock, utcnow

PAGE = 4096


@pytest.fixture
def no_umask() -> Iterator[None]:
    """The widest umask: whatever syncd creates is as open as its own code makes it."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_state_its_journals_its_directory_and_its_lock_are_private(
    tmp_path: Path, no_umask: None
) -> None:
    path = tmp_path / "state" / "state.db"
    lock = StateLock(path)
    lock.acquire()
    state = State(path)
    try:
        with state.transaction():
            state.set_meta("k", "v")
        assert mode(path.parent) == 0o700
        for name in ("state.db", "state.db-wal", "state.db-shm", "state.db.lock"):
            assert mode(path.with_name(name)) == 0o600, name
    finally:
        state.close()
        lock.release()


def test_a_wider_existing_state_is_narrowed_but_a_narrower_one_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    State(path).close()
    path.chmod(0o664)
    State(path).close()
    assert mode(path) == 0o600
    path.chmod(0o400 | 0o200)  # 0600 already: nothing to narrow, nothing widened
    State(path).close()
    assert mode(path) == 0o600


def test_a_file_that_is_no_database_is_a_state_error_and_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "hr.csv"  # state.path pointing at the wrong file
    path.write_text("employee_id,first_name\n" * 100)
    path.chmod(0o644)
    with pytest.raises(StateError) as raised:
        State(path)
    assert str(raised.value).startswith(f"the state database {path} is not a syncd state")
    assert mode(path) == 0o644


def test_a_damaged_page_found_by_a_query_is_a_state_error(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    state = State(path)
    with state.transaction():
        for number in range(500):
            state.set_meta(f"key{number}", "x" * 200)
    state.close()
    data = bytearray(path.read_bytes())
    data[PAGE:] = b"\x5a" * (len(data) - PAGE)
    path.write_bytes(bytes(data))
    damaged = State(path)  # the header page is whole: the damage shows on the first read
    try:
        with pytest.raises(StateError, match=r"is damaged.*restore the last backup"):
            damaged.get_meta("key1")
        with pytest.raises(StateError, match="is damaged"):  # the cycle's own cursors too
            damaged.conn.cursor().execute("SELECT value FROM meta")
    finally:
        damaged.close()


def test_a_bug_in_sql_stays_a_sqlite_error(tmp_path: Path) -> None:
    state = State(tmp_path / "state.db")
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        state.query("SELECT * FROM no_such_table")
    state.close()


def test_recording_a_failed_cycle_never_hides_the_failure(tmp_path: Path) -> None:
    state = State(tmp_path / "state.db")
    run = state.start_run("c1", "apply", "csv", utcnow())
    state.conn.execute("PRAGMA query_only=1")  # every write is now refused, as on a bad disk
    state.finish_run(run, outcome="error", message="the disk is full")  # logged, not raised
    with pytest.raises(StateError, match="cannot write the state database"):
        state.finish_run(run, outcome="ok")
    state.conn.execute("PRAGMA query_only=0")
    assert state.scalar("SELECT finished_at FROM runs WHERE id = ?", (run,)) is None
    with state.transaction():  # the failed writes left no transaction open behind them
        state.set_meta("after", "ok")
    state.close()


def test_a_state_path_that_is_a_directory_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(StateError) as raised:
        State(tmp_path)
    assert str(raised.value).startswith(f"at 'state.path': {tmp_path} is a directory")
