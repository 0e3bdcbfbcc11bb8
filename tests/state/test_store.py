"""The state store: schema migrations, transactions, and the queries the CLI reports from."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from syncd.errors import StateError
from syncd.model import Watermark
from syncd.state import State, iso
from syncd.state._schema import MIGRATIONS

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def add_person(state: State, anchor: str, *, missing: int = 0, disabled: bool = False) -> None:
    state.conn.execute(
        "INSERT INTO people (anchor, first_name, last_name, email, start_date, disabled, digest, "
        "first_seen, last_seen, missing_count) "
        "VALUES (?, 'Ada', 'Lovelace', NULL, NULL, ?, 'd', ?, ?, ?)",
        (anchor, int(disabled), iso(NOW), iso(NOW), missing),
    )


def add_mailbox(state: State, anchor: str, status: str, local_part: str | None = None) -> None:
    state.conn.execute(
        "INSERT INTO mailboxes (anchor, state, local_part, domain, updated_at, attempts, "
        "next_attempt_at) VALUES (?, ?, ?, 'example.com', ?, 3, ?)",
        (anchor, status, local_part, iso(NOW), iso(NOW + timedelta(hours=6))),
    )


def test_new_state_is_migrated_to_the_latest_schema_in_wal_mode(tmp_path: Path) -> None:
    state = State(tmp_path / "state.db")
    assert state.schema_version() == len(MIGRATIONS)
    assert state.scalar("PRAGMA journal_mode") == "wal"
    assert {"people", "mailboxes", "addresses", "runs", "meta"} <= set(state.db.table_names())
    state.close()
    again = State(tmp_path / "state.db")  # reopening runs no migration twice
    assert again.schema_version() == len(MIGRATIONS)


def test_state_from_a_newer_syncd_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    conn.close()
    with pytest.raises(StateError, match="newer"):
        State(path)


def test_a_failed_transaction_leaves_nothing_behind(tmp_path: Path) -> None:
    state = State(tmp_path / "state.db")
    with pytest.raises(RuntimeError), state.transaction():
        add_person(state, "E1")
        raise RuntimeError("crash mid-batch")
    assert state.scalar("SELECT count(*) FROM people") == 0


def test_release_for_retry_makes_failed_and_quarantined_due(tmp_path: Path) -> None:
    state = State(tmp_path / "state.db")
    add_mailbox(state, "E1", "failed")
    add_mailbox(state, "E2", "quarantined")
    add_mailbox(state, "E3", "created", "ada.lovelace")
    assert state.release_for_retry("E2", NOW) == 1
    row = state.query("SELECT * FROM mailboxes WHERE anchor = 'E2'")[0]
    assert (row["state"], row["attempts"], row["next_attempt_at"]) == ("failed", 0, iso(NOW))
    assert state.release_for_retry(None, NOW) == 2
    assert state.query("SELECT state FROM mailboxes WHERE anchor = 'E3'")[0][0] == "created"


def test_taken_addresses_hold_a_leavers_address_for_reserve_days(tmp_path: Path) -> None:
    state = State(tmp_path / "state.db")
    add_person(state, "STAYS")
    add_person(state, "LEFT_LONG_AGO", missing=3)
    add_person(state, "LEFT_RECENTLY", missing=3)
    state.conn.execute(
        "UPDATE people SET last_seen = ? WHERE anchor = 'LEFT_LONG_AGO'",
        (iso(NOW - timedelta(days=400)),),
    )
    state.conn.execute(
        "UPDATE people SET last_seen = ? WHERE anchor = 'LEFT_RECENTLY'",
        (iso(NOW - timedelta(days=10)),),
    )
    rows = [
        ("stays@example.com", "STAYS", "issued"),
        ("old@example.com", "LEFT_LONG_AGO", "issued"),
        ("recent@example.com", "LEFT_RECENTLY", "issued"),
        ("seen@example.com", None, "taken"),
    ]
    for address, anchor, status in rows:
        state.conn.execute(
            "INSERT INTO addresses (address, anchor, status, issued_at) VALUES (?, ?, ?, ?)",
            (address, anchor, status, iso(NOW)),
        )
    wanted = [row[0] for row in rows] + ["free@example.com"]
    everything = {row[0] for row in rows}
    assert state.taken_addresses(wanted, NOW) == everything  # no reservation end given
    reserved = state.taken_addresses(wanted, NOW, reserve_days=365, leaver_after_missing=3)
    assert reserved == everything - {"old@example.com"}
    # Not yet a leaver (missing from fewer reads than needed): still held.
    assert "old@example.com" in state.taken_addresses(
        wanted, NOW, reserve_days=365, leaver_after_missing=4
    )


def test_known_addresses_from_a_prefix_give_every_holder_and_the_reservations(
    tmp_path: Path,
) -> None:
    state = State(tmp_path / "state.db")
    add_person(state, "STAYS")
    add_person(state, "LEFT", missing=3)
    state.conn.execute(
        "UPDATE people SET last_seen = ? WHERE anchor = 'LEFT'", (iso(NOW - timedelta(days=400)),)
    )
    rows = [
        ("ann.lee@example.com", "STAYS"),
        ("ann.lee2@example.com", "LEFT"),
        ("ann.lee-wong@example.com", None),
        ("ann.leeds@other.org", None),
        ("ann.le@example.com", None),
        ("anna.lee@example.com", None),
    ]
    for address, anchor in rows:
        state.conn.execute(
            "INSERT INTO addresses (address, anchor, status, issued_at) VALUES (?, ?, ?, ?)",
            (address, anchor, "issued" if anchor else "taken", iso(NOW)),
        )
    known = state.known_local_parts_from(
        ["ann.lee"], "example.com", NOW, reserve_days=365, leaver_after_missing=3
    )
    # Other domains are left out; the local parts that start with "ann.lee" are all there.
    assert sorted(known.taken) == ["ann.lee", "ann.lee-wong"]
    assert known.free_again == ["ann.lee2"]  # its holder left more than reserve_days ago
    assert len(state.known_local_parts_from(["ann.lee"], "example.com", NOW, limit=2).taken) == 2
    # Several starts in one query; the limit is for all of them together.
    both = state.known_local_parts_from(["ann.le", "anna"], "example.com", NOW)
    assert sorted(both.taken) == ["ann.le", "ann.lee", "ann.lee-wong", "ann.lee2", "anna.lee"]
    assert state.known_local_parts_from(["bob"], "example.com", NOW) == ([], [])


def test_known_local_parts_are_those_of_the_domain(tmp_path: Path) -> None:
    state = State(tmp_path / "state.db")
    add_person(state, "LEFT", missing=3)
    state.conn.execute(
        "UPDATE people SET last_seen = ? WHERE anchor = 'LEFT'", (iso(NOW - timedelta(days=400)),)
    )
    for address, anchor in [("ann@example.com", None), ("bob@other.org", None),
                            ("old@example.com", "LEFT")]:  # fmt: skip
        state.conn.execute(
            "INSERT INTO addresses (address, anchor, status, issued_at) VALUES (?, ?, ?, ?)",
            (address, anchor, "issued" if anchor else "taken", iso(NOW)),
        )
    asked = ["ann", "bob", "old", "new"]
    known = state.known_local_parts(asked, "example.com", NOW, reserve_days=365)
    assert known.taken == ["ann"] and known.free_again == ["old"]
    assert state.known_local_parts(asked, "other.org", NOW).taken == ["bob"]
    # The answer agrees with the full-address question.
    full = state.taken_addresses([f"{lp}@example.com" for lp in asked], NOW, reserve_days=365)
    assert full == {"ann@example.com"}


def test_leavers_are_disabled_or_missing_people_with_a_mailbox(tmp_path: Path) -> None:
    state = State(tmp_path / "state.db")
    add_person(state, "GONE", missing=3)
    add_person(state, "ALMOST", missing=2)
    add_person(state, "OFF", disabled=True)
    add_person(state, "NOBOX", missing=5)
    for anchor in ("GONE", "ALMOST", "OFF"):
        add_mailbox(state, anchor, "created", anchor.lower())
    assert state.leaver_count(3) == 2
    assert sorted(row["anchor"] for row in state.leavers(3)) == ["GONE", "OFF"]


def test_last_complete_read_ignores_incomplete_plan_and_failed_runs(tmp_path: Path) -> None:
    state = State(tmp_path / "state.db")
    good = state.start_run("c1", "apply", "csv", NOW)
    state.finish_run(good, complete=1, outcome="ok", accepted=100)
    for mode, complete, outcome in (("apply", 0, "ok"), ("plan", 1, "ok"), ("apply", 1, "error")):
        run = state.start_run("cx", mode, "csv", NOW)
        state.finish_run(run, complete=complete, outcome=outcome, accepted=5)
    last = state.last_complete_read()
    assert last is not None and last.accepted == 100


def _run(state: State, scan: str, accepted: int, *, complete: bool = True) -> None:
    run = state.start_run("c", "apply", "ldap", NOW)
    state.finish_run(run, complete=int(complete), scan=scan, accepted=accepted, outcome="ok")


def test_the_last_complete_read_is_the_last_complete_full_read(tmp_path: Path) -> None:
    """A delta read's few people are no size of the source: the guards compare with the last
    complete full read, however many deltas came after it."""
    state = State(tmp_path / "state.db")
    _run(state, "full", 1000)
    _run(state, "delta", 3)
    _run(state, "full", 900, complete=False)
    last = state.last_complete_read()
    assert last is not None and last.accepted == 1000


def test_a_watermark_is_kept_forgotten_and_survives_damage(tmp_path: Path) -> None:
    state = State(tmp_path / "state.db")
    assert (state.watermark(), state.last_full_read()) == (None, None)
    mark = Watermark("usn", "4711", "ldaps://dc1", "CN=NTDS Settings,CN=DC1", "ab" * 16, "s1")
    state.keep_watermark(mark, NOW)
    assert (state.watermark(), state.last_full_read()) == (mark, NOW)
    # A delta read moves the watermark, not the time of the last full read.
    later = Watermark("usn", "4800", "ldaps://dc1", mark.server, mark.invocation_id, "s1")
    state.keep_watermark(later, None)
    assert (state.watermark(), state.last_full_read()) == (later, NOW)
    # A full read that could make none forgets it: an old one would hide the changes since.
    state.keep_watermark(None, NOW + timedelta(days=1))
    assert (state.watermark(), state.last_full_read()) == (None, NOW + timedelta(days=1))
    # A value that is no watermark (damaged, or from a newer syncd) means a full read.
    with state.transaction():
        state.set_meta("watermark", '{"kind": "usn", "value": "x"}')
    assert state.watermark() is None
