"""What each outcome of a create writes (syncd/cycle/_outcomes.py), on a real state file.

The end-to-end behaviour (crashes, lost answers, collisions over HTTP) is in
tests/cycle/test_exactly_once.py and tests/cycle/test_state_machine.py; these pin down each
settlement on its own.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from syncd.cycle._allocate import Allocator
from syncd.cycle._batch import Item
from syncd.cycle._outcomes import Outcomes
from syncd.hybridbox import Mailbox
from syncd.model import Person
from syncd.state import Intent, Journal, State
from tests.support.configs import offline_config

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
ADA = Person("E1", "Ada", "Lovelace")


def _mailbox(local_part: str, first: str = "Ada", last: str = "Lovelace") -> Mailbox:
    return Mailbox("mb-1", local_part, "example.com", f"{local_part}@example.com", first, last)


@pytest.fixture
def setup(tmp_path: Path) -> tuple[State, Outcomes, Counter[str]]:
    config = offline_config(
        tmp_path, tmp_path / "state.db", safety={"quarantine_after": {"attempts": 2, "days": 30}}
    )
    state = State(tmp_path / "state.db")
    journal = Journal(state, "example.com", NOW)
    counters: Counter[str] = Counter()
    allocator = Allocator(config, state, NOW)
    outcomes = Outcomes(config, journal, lambda _domain: allocator, NOW, counters)
    with state.transaction():
        journal.intents([Intent("E1", "ada.lovelace", "Ada", "Lovelace")], "b1", reissued=())
    return state, outcomes, counters


def _row(state: State) -> dict[str, object]:
    (row,) = state.query("SELECT state, mailbox_id, local_part, attempts FROM mailboxes")
    return dict(row)


def test_the_same_person_found_is_recorded_and_not_sent_again(
    setup: tuple[State, Outcomes, Counter[str]],
) -> None:
    state, outcomes, counters = setup
    item = Item(ADA, "ada.lovelace")
    with state.transaction():
        # Names compare without case and surrounding blanks: Hybridbox may tidy them.
        again = outcomes.settle(
            item, _mailbox("ada.lovelace", " ada ", "LOVELACE"), origin="intent"
        )
    assert again is False
    assert _row(state) == {
        "state": "created",
        "mailbox_id": "mb-1",
        "local_part": "ada.lovelace",
        "attempts": 0,
    }
    assert counters == {"created": 1}


def test_a_taken_address_holding_this_persons_names_is_adopted_only_if_syncd_sent_it(
    setup: tuple[State, Outcomes, Counter[str]],
) -> None:
    state, outcomes, counters = setup
    # The bulk call said "taken", and the lookup found a mailbox named Ada Lovelace there. Made by
    # hand, it is a namesake's: taken, never hers (tests/cycle/test_namesakes.py has the rest).
    with state.transaction():
        again = outcomes.settle(Item(ADA, "ada.lovelace"), _mailbox("ada.lovelace"), origin="taken")
    assert again is True
    assert _row(state)["state"] == "pending"
    assert not counters


def test_someone_else_at_the_address_is_a_collision_and_the_address_is_dropped(
    setup: tuple[State, Outcomes, Counter[str]],
) -> None:
    state, outcomes, counters = setup
    item = Item(ADA, "ada.lovelace")
    with state.transaction():
        again = outcomes.settle(item, _mailbox("ada.lovelace", "Ada", "Byron"), origin="taken")
    assert again is True
    assert item.local_part is None  # the next candidate is chosen when it is sent again
    statuses = {r["address"]: r["status"] for r in state.query("SELECT * FROM addresses")}
    assert statuses["ada.lovelace@example.com"] == "taken"
    assert not counters


def test_nothing_at_the_address_keeps_it_for_the_resend(
    setup: tuple[State, Outcomes, Counter[str]],
) -> None:
    state, outcomes, counters = setup
    item = Item(ADA, "ada.lovelace")
    with state.transaction():
        assert outcomes.settle(item, None, origin="lookup") is True
    assert item.local_part == "ada.lovelace"
    assert _row(state)["state"] == "pending"
    assert not counters


def test_failures_back_off_then_quarantine(setup: tuple[State, Outcomes, Counter[str]]) -> None:
    state, outcomes, counters = setup
    item = Item(ADA, "ada.lovelace")
    with state.transaction():
        outcomes.failed(item, "quota_exceeded", "the domain is full", permanent=False)
    first = dict(state.query("SELECT state, attempts, next_attempt_at FROM mailboxes")[0])
    assert (first["state"], first["attempts"]) == ("failed", 1)
    assert first["next_attempt_at"] is not None
    with state.transaction():
        outcomes.failed(item, "quota_exceeded", "the domain is full", permanent=False)
    assert _row(state)["state"] == "quarantined"  # quarantine_after.attempts = 2
    assert counters == {"failed": 2}


def test_an_invalid_item_is_quarantined_at_once(
    setup: tuple[State, Outcomes, Counter[str]],
) -> None:
    state, outcomes, _ = setup
    with state.transaction():
        outcomes.failed(Item(ADA, "ada.lovelace"), "invalid_name", "bad", permanent=True)
    assert _row(state)["state"] == "quarantined"
