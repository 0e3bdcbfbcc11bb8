"""The schema the migrations build (syncd/state/_schema.py), and how State runs them."""

from __future__ import annotations

import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
import sqlite_utils
from sqlite_utils.db import Table

from syncd.errors import StateError
from syncd.state import State
from syncd.state._schema import MIGRATIONS, Migration
from tests.state.schema_facts import normal_sql, schema_of

# The state file made by the code that added the last migration (issue 18), whose schema today's
# migrations must make: how it was made is in tests/data/make_old_state.py.
PREVIOUS_RELEASE = Path(__file__).resolve().parents[1] / "data" / "state-v5-issue18.db"


def test_a_fresh_state_has_the_schema_the_previous_release_made(tmp_path: Path) -> None:
    shutil.copyfile(PREVIOUS_RELEASE, tmp_path / "previous.db")
    with closing(sqlite3.connect(tmp_path / "previous.db")) as conn:
        previous = schema_of(conn)
        previous_version = conn.execute("PRAGMA user_version").fetchone()[0]
    fresh = State(tmp_path / "fresh.db")
    assert fresh.schema_version() == previous_version == len(MIGRATIONS)
    assert schema_of(fresh.conn) == previous
    # What the comparison rests on: tables WITHOUT ROWID, partial indexes with their WHERE.
    assert previous["tables"]["people"]["without_rowid"] == 1
    assert previous["tables"]["people"]["indexes"]["people_leaving"]["sql"].endswith(
        "where disabled = 1 or missing_count > 0"
    )


def test_normal_sql_ignores_only_how_names_are_quoted_and_spaced() -> None:
    made_by_hand = "CREATE INDEX people_open ON people(block) WHERE open = 1"
    made_by_sqlite_utils = "CREATE INDEX [people_open]\n    ON [people] ([block]) WHERE open = 1;"
    assert normal_sql(made_by_hand) == normal_sql(made_by_sqlite_utils)
    assert normal_sql(made_by_hand) != normal_sql(made_by_hand.replace("= 1", "= 0"))


def _with_migration(monkeypatch: pytest.MonkeyPatch, migration: Migration) -> None:
    monkeypatch.setattr("syncd.state._store.MIGRATIONS", [*MIGRATIONS, migration])


def test_a_migration_that_fails_half_way_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    State(tmp_path / "state.db").close()

    def half_done(db: sqlite_utils.Database) -> None:
        db.create_table("extra", {"id": int}, pk="id")
        people = db["people"]
        assert isinstance(people, Table)
        people.add_column("extra", str)
        raise RuntimeError("crash in the middle of a migration")

    _with_migration(monkeypatch, half_done)
    with pytest.raises(RuntimeError, match="crash"):
        State(tmp_path / "state.db")
    with closing(sqlite3.connect(tmp_path / "state.db")) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert "extra" not in {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        assert "extra" not in {row[1] for row in conn.execute("PRAGMA table_info(people)")}


def test_a_migration_that_commits_on_its_own_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    State(tmp_path / "state.db").close()

    def commits(db: sqlite_utils.Database) -> None:
        extra = db["extra"]
        assert isinstance(extra, Table)
        extra.create({"id": int}, pk="id")  # runs in `with conn:`, which commits

    _with_migration(monkeypatch, commits)
    with pytest.raises(
        StateError, match=f"migration {len(MIGRATIONS) + 1} ended its own transaction"
    ):
        State(tmp_path / "state.db")
    monkeypatch.undo()
    assert State(tmp_path / "state.db").schema_version() == len(MIGRATIONS)  # not recorded
