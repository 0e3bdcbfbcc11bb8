"""The planner is pure: every rule is checked with a fixed today and now."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from syncd.cycle._plan import (
    BACKOFF,
    GuardInput,
    Kind,
    Known,
    Policy,
    after_failure,
    check_guards,
    due_date,
    plan,
    plan_person,
)
from syncd.model import Person

TODAY = date(2026, 11, 25)
NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
POLICY = Policy(provision_days_before=7, update_names=False)


def person(anchor: str = "E1", first: str = "Ada", last: str = "Lovelace", **kw: object) -> Person:
    return Person(anchor, first, last, **kw)  # type: ignore[arg-type]


def kind(p: Person, known: Known | None = None, policy: Policy = POLICY) -> Kind | None:
    action = plan_person(p, known, policy, TODAY, NOW)
    return action.kind if action else None


def test_new_active_person_without_start_date_is_created_and_first_seen() -> None:
    action = plan_person(person(), None, POLICY, TODAY, NOW)
    assert action is not None and action.kind is Kind.CREATE and action.first_seen


def test_disabled_person_without_mailbox_gets_nothing() -> None:
    assert kind(person(disabled=True)) is None


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        (TODAY + timedelta(days=8), Kind.SCHEDULED),  # one day before the window opens
        (TODAY + timedelta(days=7), Kind.CREATE),  # first day of the window
        (TODAY, Kind.CREATE),
        (TODAY - timedelta(days=30), Kind.CREATE),  # started already: create now
    ],
)
def test_start_date_window(start: date, expected: Kind) -> None:
    assert kind(person(start_date=start)) is expected


def test_scheduled_action_carries_due_date_and_zero_days_means_on_the_day() -> None:
    start = TODAY + timedelta(days=20)
    action = plan_person(person(start_date=start), None, POLICY, TODAY, NOW)
    assert action is not None and action.due == start - timedelta(days=7)
    on_the_day = Policy(provision_days_before=0)
    assert due_date(person(start_date=start), on_the_day) == start
    assert kind(person(start_date=TODAY + timedelta(days=1)), policy=on_the_day) is Kind.SCHEDULED
    assert kind(person(start_date=TODAY), policy=on_the_day) is Kind.CREATE


def test_scheduled_person_seen_before_is_not_first_seen_when_due() -> None:
    p = person(start_date=TODAY)
    action = plan_person(p, Known(digest=p.digest), POLICY, TODAY, NOW)
    assert action is not None and action.kind is Kind.CREATE and not action.first_seen


def test_created_mailbox_is_left_alone_unless_names_change_and_updates_are_on() -> None:
    known = Known(digest="x", mailbox_state="created", mailbox_first="Ada", mailbox_last="King")
    renamed = person(last="Lovelace")
    assert kind(renamed, known) is None
    assert kind(renamed, known, Policy(update_names=True)) is Kind.RENAME
    same = Known(digest="x", mailbox_state="adopted", mailbox_first="Ada", mailbox_last="Lovelace")
    assert kind(renamed, same, Policy(update_names=True)) is None


def test_failed_waits_for_backoff_then_retries() -> None:
    later = Known(digest="x", mailbox_state="failed", next_attempt_at=NOW + timedelta(minutes=5))
    due = Known(digest="x", mailbox_state="failed", next_attempt_at=NOW - timedelta(seconds=1))
    assert kind(person(), later) is Kind.WAITING
    assert kind(person(), due) is Kind.RETRY


def test_quarantine_is_released_only_by_a_changed_record() -> None:
    p = person()
    unchanged = Known(digest=p.digest, mailbox_state="quarantined", failed_digest=p.digest)
    changed = Known(digest="old", mailbox_state="quarantined", failed_digest="old")
    assert kind(p, unchanged) is Kind.QUARANTINED
    assert kind(p, changed) is Kind.RETRY


def test_unresolved_intent_is_never_resent_blindly_and_pending_retries() -> None:
    assert kind(person(), Known(digest="x", mailbox_state="intent")) is Kind.UNRESOLVED
    assert kind(person(), Known(digest="x", mailbox_state="pending")) is Kind.RETRY


def test_plan_sorts_actions_and_counts_only_first_seen_as_new() -> None:
    fresh = person("A")
    due = person("B", start_date=TODAY)
    stuck = person("D")
    result = plan(
        [
            (fresh, None),
            (due, Known(digest=due.digest)),
            (person("C", start_date=TODAY + timedelta(days=60)), None),
            (
                stuck,
                Known(digest=stuck.digest, mailbox_state="quarantined", failed_digest=stuck.digest),
            ),
            (person("E"), Known(digest="x", mailbox_state="intent")),
        ],
        POLICY,
        TODAY,
        NOW,
    )
    assert [a.person.anchor for a in result.creates] == ["A", "B"]
    assert result.new_creates == 1
    assert [a.person.anchor for a in result.scheduled] == ["C"]
    assert (result.quarantined, result.unresolved, result.waiting) == (1, 1, 0)


def test_backoff_schedule_then_daily_then_quarantine() -> None:
    delays = []
    attempts = 0
    for _ in range(6):
        decision = after_failure(
            attempts, NOW, NOW, permanent=False, quarantine_attempts=8, quarantine_days=30
        )
        attempts = decision.attempts
        assert decision.state == "failed" and decision.next_attempt_at is not None
        delays.append(decision.next_attempt_at - NOW)
    assert delays[:4] == list(BACKOFF)
    assert delays[4] == delays[5] == timedelta(days=1)
    last = after_failure(7, NOW, NOW, permanent=False, quarantine_attempts=8, quarantine_days=30)
    assert last.state == "quarantined" and last.next_attempt_at is None


def test_quarantine_after_days_and_at_once_for_permanent_errors() -> None:
    old = NOW - timedelta(days=8)
    by_days = after_failure(2, old, NOW, permanent=False, quarantine_attempts=8, quarantine_days=7)
    assert by_days.state == "quarantined"
    permanent = after_failure(
        0, None, NOW, permanent=True, quarantine_attempts=8, quarantine_days=7
    )
    assert permanent.state == "quarantined" and permanent.attempts == 1


def guard(**kw: object) -> GuardInput:
    values: dict[str, object] = {
        "accepted": 1000,
        "complete": True,
        "last_complete_accepted": 1000,
        "new_creates": 5,
        "provisioned": 990,
        "min_source_people": 1,
        "max_source_drop_percent": 20,
        "max_creates_per_cycle": 500,
        "max_creates_percent": 10,
    }
    values.update(kw)
    return GuardInput(**values)  # type: ignore[arg-type]


def test_guards_pass_a_normal_cycle() -> None:
    assert check_guards(guard()) == []


def test_guard_min_source_people_and_drop() -> None:
    assert "min_source_people" in check_guards(guard(accepted=0, min_source_people=1))[0]
    reasons = check_guards(guard(accepted=700))
    assert len(reasons) == 1 and "30.0% drop" in reasons[0]
    assert check_guards(guard(accepted=800)) == []  # exactly 20% is allowed


def test_guard_max_creates_and_allow_creates_override() -> None:
    reasons = check_guards(guard(new_creates=600))
    assert len(reasons) == 1 and "--allow-creates 600" in reasons[0]
    assert check_guards(guard(new_creates=600, allow_creates=600)) == []
    assert check_guards(guard(new_creates=600, allow_creates=599)) != []


def test_guard_percent_not_on_first_read() -> None:
    assert "max_creates_percent" in check_guards(guard(new_creates=200))[0]
    first = guard(new_creates=200, last_complete_accepted=None, provisioned=0)
    assert check_guards(first) == []


def test_counting_plan_keeps_no_actions_but_the_same_counts() -> None:
    rows = [
        (person("A"), None),
        (person("B", start_date=TODAY + timedelta(days=60)), None),
        (person("C"), Known(digest="x", mailbox_state="pending")),
    ]
    kept = plan(rows, POLICY, TODAY, NOW)
    counted = plan(rows, POLICY, TODAY, NOW, keep=False)
    assert (counted.creates, counted.retries, counted.scheduled) == ([], [], [])
    assert (counted.create_count, counted.retry_count, counted.scheduled_count) == (1, 1, 1)
    assert counted.new_creates == kept.new_creates == 1
    assert (kept.create_count, len(kept.creates)) == (1, 1)
