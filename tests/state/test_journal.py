"""The provisioner's state writes (syncd/state/_journal.py), one fact at a time, on a real file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from syncd.state import Failure, Intent, Journal, Outcome, State

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _journal(tmp_path: Path) -> tuple[State, Journal]:
    state = State(tmp_path / "state.db")
    return state, Journal(state, "example.com", NOW)


def _mailbox(state: State, anchor: str) -> dict[str, object]:
    (row,) = state.query("SELECT * FROM mailboxes WHERE anchor = ?", (anchor,))
    return dict(row)


def test_intents_issue_addresses_and_keep_an_earlier_holder_in_the_history(
    tmp_path: Path,
) -> None:
    state, journal = _journal(tmp_path)
    with state.transaction() as conn:  # Ada held ada.lovelace long ago
        conn.execute(
            "INSERT INTO addresses (address, anchor, status, issued_at) "
            "VALUES ('ada.lovelace@example.com', 'OLD', 'issued', '2020-01-01T00:00:00Z')"
        )
        journal.intents(
            [Intent("E1", "ada.lovelace", "Ada", "Lovelace"), Intent("E2", "alan", "Alan", "T")],
            "batch1",
            reissued={"ada.lovelace"},
        )
    assert _mailbox(state, "E1")["state"] == "intent"
    assert _mailbox(state, "E1")["batch_id"] == "batch1"
    holders = {r["address"]: r["anchor"] for r in state.query("SELECT * FROM addresses")}
    assert holders == {"ada.lovelace@example.com": "E1", "alan@example.com": "E2"}
    history = [tuple(r) for r in state.query("SELECT address, anchor FROM address_history")]
    assert history == [("ada.lovelace@example.com", "OLD")]
    assert [i.anchor for i in journal.open_intents()] == ["E1", "E2"]


def test_a_created_mailbox_clears_what_earlier_failures_left(tmp_path: Path) -> None:
    state, journal = _journal(tmp_path)
    with state.transaction():
        journal.failed(
            Failure("E1", "ada", "Ada", "L", "digest", "failed", 2, NOW - timedelta(days=1),
                    NOW + timedelta(hours=1), "quota_exceeded", "full")
        )  # fmt: skip
    assert journal.failures_so_far("E1") == (2, NOW - timedelta(days=1))
    with state.transaction():
        journal.intents([Intent("E1", "ada", "Ada", "L")], "b", reissued=())
        journal.created([Outcome("E1", "id-1", "ada", "Ada", "L")])
    row = _mailbox(state, "E1")
    assert (row["state"], row["mailbox_id"], row["attempts"]) == ("created", "id-1", 0)
    assert row["last_code"] is None and row["next_attempt_at"] is None
    assert journal.failures_so_far("E1") == (0, None)
    assert journal.open_intents() == []


def test_a_collision_takes_the_address_from_everyone_and_sends_the_person_again(
    tmp_path: Path,
) -> None:
    state, journal = _journal(tmp_path)
    with state.transaction():
        journal.intents([Intent("E1", "ada", "Ada", "L")], "b", reissued=())
        journal.collision("E1", "ada")
    (address,) = state.query("SELECT anchor, status FROM addresses")
    assert (address["anchor"], address["status"]) == (None, "taken")
    row = _mailbox(state, "E1")
    assert (row["state"], row["local_part"]) == ("pending", None)


def test_pending_keeps_the_address_and_a_rename_updates_the_names(tmp_path: Path) -> None:
    state, journal = _journal(tmp_path)
    with state.transaction():
        journal.intents([Intent("E1", "ada", "Ada", "Byron")], "b", reissued=())
        journal.pending("E1")
        journal.renamed("E1", "Ada", "Lovelace")
    row = _mailbox(state, "E1")
    assert (row["state"], row["local_part"], row["last_name"]) == ("pending", "ada", "Lovelace")
