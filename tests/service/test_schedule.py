"""The pure helpers of ``syncd run`` (:mod:`syncd.service._schedule`): the schedule and the STATUS=
line."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from syncd.config import ScheduleConfig
from syncd.cycle import CycleResult, Plan
from syncd.errors import ConfigError, HybridboxUnavailable
from syncd.model import ReadReport
from syncd.service._schedule import (
    build_trigger,
    cycle_status,
    describe_schedule,
    failure_status,
    format_duration,
)


def test_schedule_helpers() -> None:
    assert format_duration(timedelta(minutes=15)) == "15m"
    assert format_duration(timedelta(hours=1, minutes=30)) == "1h30m"
    every = ScheduleConfig(every=timedelta(minutes=15))
    cron = ScheduleConfig(cron="*/15 7-19 * * 1-5")
    assert describe_schedule(every) == "every 15m"
    assert describe_schedule(cron) == "cron */15 7-19 * * 1-5"
    assert build_trigger(cron) is not None
    with pytest.raises(ConfigError, match=r"schedule\.cron"):
        build_trigger(ScheduleConfig(cron="61 * * * *"))


def test_status_lines_are_one_short_line() -> None:
    result = CycleResult("c1", "apply", datetime.now(), ReadReport(), Plan())
    result.counts = {"read": 300, "created": 2, "failed": 0, "pending": 0, "quarantined": 0}
    ended = datetime(2026, 11, 25, 12, 0, 3)
    assert cycle_status(result, ended) == (
        "last cycle ok 12:00:03: read=300 created=2 failed=0 pending=0 quarantined=0"
    )
    error = HybridboxUnavailable("x" * 500 + "\nsecond line")
    text = failure_status(error, ended, None)
    assert "\n" not in text and len(text) < 220
    assert text.startswith("last cycle failed 12:00:03: HybridboxUnavailable: xxx")
