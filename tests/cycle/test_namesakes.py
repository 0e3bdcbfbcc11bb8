"""A mailbox that carries a new hire's name is theirs only when syncd's own journal sent it.

Issue "hostile input must never cost data", item 24: a namesake's mailbox made by hand was
adopted as the new hire's, who then got no mailbox of their own, and the stranger's mailbox could
later be listed as the new hire's when they left, for an administrator to delete. Now an
``already_exists`` answer is resolved by adoption only when the intent journal holds a request of
ours for this person at that address that went unanswered; anything else is taken, and the next
candidate is used. (The crash paths, where the journal holds the intent, are
tests/cycle/test_exactly_once.py.)
"""

from __future__ import annotations

import json
import logging
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
from tests.support.events import collecting
from tests.support.site import Row, Site

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
ANNA = Person("E1", "Anna", "Meier")


def _by_hand(local_part: str = "anna.meier") -> Mailbox:
    return Mailbox(
        "by-hand", local_part, "example.com", f"{local_part}@example.com", "Anna", "Meier"
    )


class _Cycle:
    """One cycle's journal and outcomes on a state file (a new one per cycle, as apply makes)."""

    def __init__(self, tmp_path: Path, state: State) -> None:
        config = offline_config(tmp_path, tmp_path / "state.db")
        self.state = state
        self.journal = Journal(state, "example.com", NOW)
        self.counters: Counter[str] = Counter()
        allocator = Allocator(config, state, NOW)
        self.outcomes = Outcomes(
            config, self.journal, lambda _domain: allocator, NOW, self.counters
        )

    def send(self, item: Item) -> None:
        """Journal the item as an intent, as the provisioner does before each request."""
        with self.state.transaction():
            self.journal.intents(
                [Intent(item.person.anchor, item.local_part or "", "Anna", "Meier")], "b", ()
            )

    def settle(self, item: Item, mailbox: Mailbox | None, origin: str) -> bool:
        with self.state.transaction():
            return self.outcomes.settle(item, mailbox, origin=origin)


@pytest.fixture
def state(tmp_path: Path) -> State:
    return State(tmp_path / "state.db")


def _row(state: State) -> dict[str, object]:
    (row,) = state.query("SELECT state, local_part, mailbox_id, last_code FROM mailboxes")
    return dict(row)


def test_a_namesake_made_by_hand_is_taken_and_never_recorded_as_the_new_hires(
    tmp_path: Path, state: State
) -> None:
    cycle = _Cycle(tmp_path, state)
    item = Item(ANNA, "anna.meier")
    cycle.send(item)
    with collecting("syncd.provision") as log:
        again = cycle.settle(item, _by_hand(), "taken")
    assert again is True and item.local_part is None  # she gets her next candidate
    assert _row(state) == {
        "state": "pending", "local_part": None, "mailbox_id": None, "last_code": None
    }  # fmt: skip
    (address,) = state.query("SELECT address, anchor, status FROM addresses")
    assert tuple(address) == ("anna.meier@example.com", None, "taken")
    assert not cycle.counters  # nothing adopted
    (warning,) = log.named("address.taken_by_other")
    assert warning.level == logging.WARNING
    assert warning.fields["anchor"] == "E1"
    assert warning.fields["address"] == "anna.meier@example.com"
    assert warning.fields["mailbox_id"] == "by-hand"
    assert "not recorded as theirs" in warning.fields["reason"]


def test_a_request_of_ours_that_went_unanswered_is_adopted_when_its_resend_is_taken(
    tmp_path: Path, state: State
) -> None:
    # Cycle 1: the request for anna.meier got no answer, and the lookup found nothing yet.
    first = _Cycle(tmp_path, state)
    item = Item(ANNA, "anna.meier")
    first.send(item)
    assert first.settle(item, None, "lookup") is True
    assert _row(state)["last_code"] == "sent_unanswered"
    # Cycle 2: the retry keeps its address; Hybridbox says taken: that late create was ours.
    second = _Cycle(tmp_path, state)
    retry = Item(ANNA, "anna.meier")
    second.send(retry)
    mailbox = Mailbox(
        "ours", "anna.meier", "example.com", "anna.meier@example.com", "Anna", "Meier"
    )
    assert second.settle(retry, mailbox, "taken") is False
    assert _row(state) == {
        "state": "adopted", "local_part": "anna.meier", "mailbox_id": "ours", "last_code": None
    }  # fmt: skip
    assert second.counters == {"adopted": 1}


def test_the_mark_of_an_unanswered_request_belongs_to_its_address(
    tmp_path: Path, state: State
) -> None:
    cycle = _Cycle(tmp_path, state)
    item = Item(ANNA, "anna.meier")
    cycle.send(item)
    cycle.settle(item, None, "lookup")  # unanswered at anna.meier
    moved = Item(ANNA, "anna.meier2")  # a new address for her (say, the old one became reserved)
    cycle.send(moved)
    assert _row(state)["last_code"] is None
    assert cycle.settle(moved, _by_hand("anna.meier2"), "taken") is True
    assert _row(state)["state"] == "pending" and not cycle.counters


def test_an_address_given_up_to_someone_else_takes_its_mark_along(
    tmp_path: Path, state: State
) -> None:
    cycle = _Cycle(tmp_path, state)
    item = Item(ANNA, "anna.meier")
    cycle.send(item)
    cycle.settle(item, None, "lookup")
    cycle.send(item)
    other = Mailbox("x", "anna.meier", "example.com", "anna.meier@example.com", "Anne", "Maier")
    assert cycle.settle(item, other, "taken") is True
    assert _row(state) == {
        "state": "pending", "local_part": None, "mailbox_id": None, "last_code": None
    }  # fmt: skip


def test_a_taken_answer_with_nothing_found_keeps_the_mark_of_an_earlier_unanswered_request(
    tmp_path: Path, state: State
) -> None:
    cycle = _Cycle(tmp_path, state)
    item = Item(ANNA, "anna.meier")
    cycle.send(item)
    cycle.settle(item, None, "lookup")
    cycle.send(item)
    # "Taken" but nothing there yet: the unanswered request may still land, so the mark stays.
    assert cycle.settle(item, None, "taken") is True
    assert _row(state)["last_code"] == "sent_unanswered"


# ------------------------------------------------------------------------- end to end (CLI)


def test_a_new_hire_whose_name_a_hand_made_mailbox_has_gets_a_mailbox_of_her_own(
    site: Site,
) -> None:
    site.write_people([Row("E0", "Grace", "Hopper")])
    assert site.syncd("apply").returncode == 0  # syncd knows the domain: no first-run guard
    by_hand = site.emulator.add_mailbox("anna.meier", "Anna", "Meier")
    site.write_people([Row("E0", "Grace", "Hopper"), Row("E1", "Anna", "Meier")])

    applied = site.syncd("apply")

    assert applied.returncode == 0, applied.stderr
    assert site.addresses_of()["E1"] == "anna.meier2"
    annas = {
        m["local_part"]: m["id"] for m in site.emulator.mailboxes() if m["last_name"] == "Meier"
    }
    assert set(annas) == {"anna.meier", "anna.meier2"}
    with site.db() as conn:
        (mailbox_id,) = conn.execute(
            "SELECT mailbox_id FROM mailboxes WHERE anchor = 'E1'"
        ).fetchone()
    assert mailbox_id == annas["anna.meier2"] != by_hand["id"]
    (warning,) = site.log_events("address.taken_by_other")
    assert "anchor=E1" in warning and "address=anna.meier@example.com" in warning
    # `syncd addresses` shows the hand-made one as taken by nobody syncd knows.
    history = site.syncd("addresses", "anna.meier", "--format", "json")
    assert [(r["anchor"], r["status"]) for r in json.loads(history.stdout)] == [(None, "taken")]
    # When she leaves, her own mailbox is the one listed, never the namesake's.
    site.write_people([Row("E0", "Grace", "Hopper"), Row("E1", "Anna", "Meier", status="inactive")])
    assert site.syncd("apply").returncode == 0
    leavers = json.loads(site.syncd("leavers", "--format", "json").stdout)
    assert [(r["anchor"], r["address"]) for r in leavers] == [("E1", "anna.meier2@example.com")]
