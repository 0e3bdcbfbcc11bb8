"""The planner's date arithmetic never overflows, whatever date or window it is given.

One person with start date 0001-01-01 (a placeholder for "unknown") used to raise OverflowError
in ``due_date`` in every cycle, so that nobody else was ever provisioned again. The readers now
refuse such dates, but a state written before that still holds them, and the planner is pure: it
is checked here on the extremes directly.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from syncd.cycle._plan import (
    BACKOFF,
    Kind,
    Known,
    Policy,
    after_failure,
    due_date,
    plan,
    plan_person,
)
from syncd.model import Person

TODAY = date(2026, 11, 25)
NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
HUGE = 10**12  # more days than timedelta can hold (999,999,999)


def person(start: date | None, anchor: str = "E1") -> Person:
    return Person(anchor, "Ada", "Lovelace", start_date=start)


@pytest.mark.parametrize(
    ("start", "days", "due"),
    [
        (date.min, 7, date.min),  # the window opens before the first day: it is open
        (date.min, 0, date.min),
        (date.min, HUGE, date.min),
        (date.max, 7, date.max - timedelta(days=7)),
        (date.max, 0, date.max),
        (date.max, HUGE, date.min),
        (date.max, -HUGE, date.max),  # not a valid setting, but still no overflow
        (TODAY, HUGE, date.min),
    ],
)
def test_due_date_is_clamped_not_overflowed(start: date, days: int, due: date) -> None:
    assert due_date(person(start), Policy(provision_days_before=days)) == due


@pytest.mark.parametrize(
    ("start", "days", "expected"),
    [
        (date.min, 7, Kind.CREATE),
        (date.max, 7, Kind.SCHEDULED),
        (date.max, HUGE, Kind.CREATE),
        (TODAY + timedelta(days=30), HUGE, Kind.CREATE),
    ],
)
def test_plan_person_decides_on_extreme_dates(start: date, days: int, expected: Kind) -> None:
    action = plan_person(person(start), None, Policy(provision_days_before=days), TODAY, NOW)
    assert action is not None and action.kind is expected


def test_one_extreme_date_does_not_stop_the_others() -> None:
    people = [
        (person(date.min, "E1"), None),
        (person(date.max, "E2"), None),
        (person(TODAY, "E3"), None),
        (person(None, "E4"), Known(digest="x", mailbox_state="failed", next_attempt_at=None)),
    ]
    result = plan(people, Policy(provision_days_before=HUGE), TODAY, NOW)
    assert [a.person.anchor for a in result.creates] == ["E1", "E2", "E3"]
    assert [a.person.anchor for a in result.retries] == ["E4"]


def test_after_failure_takes_any_quarantine_window_and_any_clock() -> None:
    # quarantine_after.days has no upper bound; timedelta(days=1e12) would overflow.
    decision = after_failure(
        1, NOW, NOW, permanent=False, quarantine_attempts=8, quarantine_days=1e12
    )
    assert decision.state == "failed"
    assert decision.next_attempt_at == NOW + BACKOFF[1]
    end_of_time = datetime.max.replace(tzinfo=UTC)
    last = after_failure(
        0, None, end_of_time, permanent=False, quarantine_attempts=8, quarantine_days=7
    )
    assert (last.state, last.next_attempt_at) == ("failed", end_of_time)
