"""The pure helpers of ``syncd run`` (:mod:`syncd.service._schedule`): the schedule and the STATUS=
line.

The schedule tests compute the real fire times from the trigger the daemon builds (iterating
``get_next_fire_time`` as APScheduler does) over two weeks that contain a change of summer time,
and hold them against an independent expectation: every minute of those two weeks, in UTC, taken
to the zone's wall clock and matched by a plain predicate written here from cron's meaning.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError
from tzlocal import reload_localzone

from syncd.config import ScheduleConfig, parse_config
from syncd.cycle import CycleResult, Plan
from syncd.errors import ConfigError, HybridboxUnavailable
from syncd.model import ReadReport
from syncd.service import next_cycle_times, schedule_zone
from syncd.service._schedule import (
    build_trigger,
    cycle_status,
    describe_schedule,
    failure_status,
    format_duration,
)

BERLIN = ZoneInfo("Europe/Berlin")
# Two weeks each, around Europe/Berlin's changes of 2026: clocks go forward on Sunday 29 March
# (02:00 → 03:00) and back on Sunday 25 October (03:00 → 02:00). Both start on a Monday.
SPRING = (datetime(2026, 3, 23, tzinfo=BERLIN), datetime(2026, 4, 6, tzinfo=BERLIN))
AUTUMN = (datetime(2026, 10, 19, tzinfo=BERLIN), datetime(2026, 11, 2, tzinfo=BERLIN))
MINUTE = timedelta(minutes=1)

Wall = Callable[[datetime], bool]


def fire_times(trigger: Any, start: datetime, end: datetime) -> list[datetime]:
    """What the scheduler would run between ``start`` and ``end``: it asks for the first time
    from ``start``, then for the one after each run, at the run."""
    times: list[datetime] = []
    moment = trigger.get_next_fire_time(None, start)
    while moment is not None and moment < end:
        times.append(moment)
        moment = trigger.get_next_fire_time(moment, moment)
    return times


def matching_minutes(matches: Wall, start: datetime, end: datetime) -> list[datetime]:
    """Every minute from ``start`` to ``end`` whose wall clock in Berlin ``matches`` (each real
    minute once: a repeated hour's minutes twice, a skipped hour's not at all)."""
    found: list[datetime] = []
    moment = start.astimezone(UTC)
    while moment < end:
        local = moment.astimezone(BERLIN)
        if matches(local):
            found.append(local)
        moment += MINUTE
    return found


def shown(times: list[datetime]) -> list[str]:
    """As the daemon shows them: ISO 8601 with the offset in force at that instant."""
    return [t.astimezone(UTC).astimezone(BERLIN).isoformat() for t in times]


def is_weekday(t: datetime) -> bool:
    return t.weekday() < 5  # Python: Monday 0 .. Sunday 6


def is_sunday(t: datetime) -> bool:
    return t.weekday() == 6


# The README's example, the lines of the issue, every spelling of Sunday, and the lines whose
# runs APScheduler 3's own CronTrigger loses after the spring change (midnight; the 1st).
CRON_CASES: dict[str, Wall] = {
    "*/15 7-19 * * 1-5": lambda t: is_weekday(t) and 7 <= t.hour <= 19 and t.minute % 15 == 0,
    "0 9 * * 1-5": lambda t: is_weekday(t) and (t.hour, t.minute) == (9, 0),
    "0 3 * * 0": lambda t: is_sunday(t) and (t.hour, t.minute) == (3, 0),
    "0 3 * * 7": lambda t: is_sunday(t) and (t.hour, t.minute) == (3, 0),
    "0 3 * * sun": lambda t: is_sunday(t) and (t.hour, t.minute) == (3, 0),
    "0 3 * * SUN": lambda t: is_sunday(t) and (t.hour, t.minute) == (3, 0),
    "30 8 * * mon,Wed-fri": lambda t: t.weekday() in (0, 2, 3, 4) and (t.hour, t.minute) == (8, 30),
    "0 12 * * 5-7": lambda t: t.weekday() in (4, 5, 6) and (t.hour, t.minute) == (12, 0),
    "0 0 * * *": lambda t: (t.hour, t.minute) == (0, 0),
    "0 0 1 * *": lambda t: (t.day, t.hour, t.minute) == (1, 0, 0),
    # cron's rule: both day fields restricted, so the 1st, the 15th and every Monday.
    "0 6 1,15 * mon": lambda t: (
        (t.day in (1, 15) or t.weekday() == 0) and (t.hour, t.minute) == (6, 0)
    ),
    # ... but a day field starting with * restricts nothing of the other: odd days that are
    # weekdays.
    "0 6 */2 * 1-5": lambda t: t.day % 2 == 1 and is_weekday(t) and (t.hour, t.minute) == (6, 0),
}


@pytest.mark.parametrize("window", [SPRING, AUTUMN], ids=["spring-forward", "fall-back"])
@pytest.mark.parametrize("line", list(CRON_CASES))
def test_cron_fires_when_cron_would_over_two_weeks_with_a_dst_change(
    line: str, window: tuple[datetime, datetime]
) -> None:
    trigger = build_trigger(ScheduleConfig(cron=line, timezone="Europe/Berlin"))
    expected = matching_minutes(CRON_CASES[line], *window)
    assert expected, "the expectation found nothing: the case is wrong"
    assert shown(fire_times(trigger, *window)) == shown(expected)


def test_the_readme_example_runs_on_mondays_and_never_at_weekends() -> None:
    trigger = build_trigger(ScheduleConfig(cron="*/15 7-19 * * 1-5", timezone="Europe/Berlin"))
    times = fire_times(trigger, *SPRING)
    days = sorted({t.date() for t in times})
    assert [d.strftime("%a") for d in days] == ["Mon", "Tue", "Wed", "Thu", "Fri"] * 2
    assert len(times) == 10 * 13 * 4  # ten weekdays, 07:00-19:45, four an hour
    assert shown(times)[0] == "2026-03-23T07:00:00+01:00"
    assert shown(times)[-1] == "2026-04-03T19:45:00+02:00"


@pytest.mark.parametrize("sunday", ["0", "7", "sun", "Sun"])
def test_sunday_at_three_is_sunday_at_three_in_either_offset(sunday: str) -> None:
    trigger = build_trigger(ScheduleConfig(cron=f"0 3 * * {sunday}", timezone="Europe/Berlin"))
    assert shown(fire_times(trigger, *SPRING)) == [
        "2026-03-29T03:00:00+02:00",  # the first hour after the jump
        "2026-04-05T03:00:00+02:00",
    ]
    assert shown(fire_times(trigger, *AUTUMN)) == [
        "2026-10-25T03:00:00+01:00",  # after the repeated hour, once
        "2026-11-01T03:00:00+01:00",
    ]


@pytest.mark.parametrize("every", ["15m", "45m", "7m", "1h"])
@pytest.mark.parametrize("window", [SPRING, AUTUMN], ids=["spring-forward", "fall-back"])
def test_every_keeps_its_interval_in_real_time_across_a_dst_change(
    every: str, window: tuple[datetime, datetime]
) -> None:
    """``every`` counts elapsed time from the start, whatever the clock does (and whether or not
    it divides the hour): no run lost in the skipped hour, none doubled in the repeated one."""
    schedule = ScheduleConfig(every=every, timezone="Europe/Berlin")
    assert schedule.every is not None
    start, end = window
    trigger = build_trigger(schedule, now=start)
    expected, moment = [], start.astimezone(UTC) + schedule.every
    while moment < end:
        expected.append(moment)
        moment += schedule.every
    assert shown(fire_times(trigger, start, end)) == shown(expected)


# ------------------------------------------------------------------------------ DST surprises


def test_a_time_in_the_skipped_hour_runs_once_an_hour_later() -> None:
    trigger = build_trigger(ScheduleConfig(cron="30 2 * * *", timezone="Europe/Berlin"))
    start, end = datetime(2026, 3, 27, tzinfo=BERLIN), datetime(2026, 4, 1, tzinfo=BERLIN)
    assert shown(fire_times(trigger, start, end)) == [
        "2026-03-27T02:30:00+01:00",
        "2026-03-28T02:30:00+01:00",
        "2026-03-29T03:30:00+02:00",  # 02:30 does not exist that night
        "2026-03-30T02:30:00+02:00",
        "2026-03-31T02:30:00+02:00",
    ]


def test_a_skipped_time_that_lands_on_a_real_one_runs_once() -> None:
    trigger = build_trigger(ScheduleConfig(cron="30 2,3 * * *", timezone="Europe/Berlin"))
    start, end = datetime(2026, 3, 29, tzinfo=BERLIN), datetime(2026, 3, 30, tzinfo=BERLIN)
    assert shown(fire_times(trigger, start, end)) == ["2026-03-29T03:30:00+02:00"]


def test_a_fixed_time_in_the_repeated_hour_runs_once() -> None:
    trigger = build_trigger(ScheduleConfig(cron="30 2 * * *", timezone="Europe/Berlin"))
    start, end = datetime(2026, 10, 24, tzinfo=BERLIN), datetime(2026, 10, 27, tzinfo=BERLIN)
    assert shown(fire_times(trigger, start, end)) == [
        "2026-10-24T02:30:00+02:00",
        "2026-10-25T02:30:00+02:00",  # and not again at 02:30+01:00, an hour later
        "2026-10-26T02:30:00+01:00",
    ]


def test_a_daemon_started_in_the_second_pass_does_not_run_the_first_pass_times_again() -> None:
    trigger = build_trigger(ScheduleConfig(cron="30 2 * * *", timezone="Europe/Berlin"))
    second_pass = datetime(2026, 10, 25, 2, 10, tzinfo=BERLIN, fold=1)
    assert shown([trigger.get_next_fire_time(None, second_pass)]) == ["2026-10-26T02:30:00+01:00"]


@pytest.mark.parametrize("line", ["*/30 * * * *", "0 * * * *"])
def test_a_frequent_line_runs_on_through_the_repeated_hour_at_even_spacing(line: str) -> None:
    """As in cron, a line whose minute or hour starts with * is no fixed time: it keeps its
    rhythm in real time, so the repeated hour gets its runs too."""
    trigger = build_trigger(ScheduleConfig(cron=line, timezone="Europe/Berlin"))
    start, end = datetime(2026, 10, 24, 22, tzinfo=BERLIN), datetime(2026, 10, 25, 6, tzinfo=BERLIN)
    times = [t.astimezone(UTC) for t in fire_times(trigger, start, end)]
    gaps = {later - earlier for earlier, later in pairwise(times)}
    assert len(gaps) == 1, gaps
    real_hours = end.astimezone(UTC) - start.astimezone(UTC)  # 9: the night is an hour longer
    assert len(times) == real_hours / gaps.pop()


def test_a_zone_without_summer_time_and_utc_give_the_same_wall_times() -> None:
    for zone in ("UTC", "Asia/Tokyo"):
        trigger = build_trigger(ScheduleConfig(cron="0 9 * * 1-5", timezone=zone))
        start = datetime(2026, 3, 23, tzinfo=ZoneInfo(zone))
        times = fire_times(trigger, start, start + timedelta(days=14))
        assert [t.strftime("%a %H:%M%z") for t in times][:2] == [
            f"Mon 09:00{start:%z}",
            f"Tue 09:00{start:%z}",
        ]
        assert len(times) == 10


# ------------------------------------------------------------------------------ reading cron


@pytest.mark.parametrize(
    ("field", "weekdays"),
    [
        ("1-5", (1, 2, 3, 4, 5)),
        ("5-7", (0, 5, 6)),
        ("0-6", (0, 1, 2, 3, 4, 5, 6)),
        ("0-7", (0, 1, 2, 3, 4, 5, 6)),
        ("*", (0, 1, 2, 3, 4, 5, 6)),
        ("*/2", (0, 2, 4, 6)),
        ("1-5/2", (1, 3, 5)),
        ("7", (0,)),
        ("0,7", (0,)),
        ("MON,wed-Fri", (1, 3, 4, 5)),
        ("sat,sun", (0, 6)),
        ("fri-7", (0, 5, 6)),
        ("sun-sat/3", (0, 3, 6)),
    ],
)
def test_day_of_week_is_read_as_cron_reads_it(field: str, weekdays: tuple[int, ...]) -> None:
    assert ScheduleConfig(cron=f"0 9 * * {field}").cron_spec().weekdays == weekdays


def test_months_names_and_steps() -> None:
    spec = ScheduleConfig(cron="5-59/20 */6 1,15 JAN-mar,dec *").cron_spec()
    assert (spec.minutes, spec.hours, spec.days) == ((5, 25, 45), (0, 6, 12, 18), (1, 15))
    assert spec.months == (1, 2, 3, 12)
    assert not spec.either_day and spec.frequent  # the hour field starts with *
    fixed = ScheduleConfig(cron="30 2 1 * mon").cron_spec()
    assert fixed.either_day and not fixed.frequent


MINIMAL_CONFIG: dict[str, Any] = {
    "source": {
        "type": "csv",
        "path": "people.csv",
        "columns": {"anchor": "id", "first_name": "first", "last_name": "last"},
    },
    "hybridbox": {
        "url": "http://127.0.0.1:9",
        "account_id": "7c0e6e1a-2f4b-4c8e-9d3a-5b1f0e2d4c6a",
        "domain": "example.com",
        "token_env": "HYBRIDBOX_TOKEN",
    },
}


def load_schedule(tmp_path: Path, **schedule: Any) -> ScheduleConfig:
    path = tmp_path / "syncd.yaml"
    return parse_config({**MINIMAL_CONFIG, "schedule": schedule}, path).schedule


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("61 * * * *", "'61' is not a minute (0-59)"),
        ("0 24 * * *", "'24' is not a hour (0-23)"),
        ("0 0 0 * *", "'0' is not a day of month (1-31)"),
        ("0 0 * 13 *", "'13' is not a month (1-12 or jan..dec)"),
        ("0 9 * * 8", "'8' is not a day of week (0-7 or sun..sat; 0 and 7 are Sunday)"),
        ("0 9 * * 1-8", "'8' is not a day of week"),
        ("0 9 * * monday", "'monday' is not a day of week"),
        (
            "0 9 * * 6-0",
            "a range must go upwards (no wrapping around); Sunday is also 7: write 6-7",
        ),
        ("0 9 * * mon-sun", "Sunday is also 7: write mon-7"),
        ("0 9 * * fri-mon", "a range must go upwards"),
        ("0 20-8 * * *", "a range must go upwards (no wrapping around)"),
        ("5/15 * * * *", "a step needs a range or *, e.g. 5-59/15"),
        ("*/0 * * * *", "the step must be a whole number from 1 to 59"),
        ("*/90 * * * *", "for a longer interval use `every`"),
        ("*/x * * * *", "the step must be a whole number"),
        ("1,,2 * * * *", "'' is not a minute"),
        ("0 9 * * ?", "'?' is not a day of week"),
        ("0 9 L * *", "'L' is not a day of month"),
        ("0 9 * * 1#2", "'1#2' is not a day of week"),
        ("0 9 * *", "has 4 fields; a cron line is 5 fields"),
        ("0 9 * * 1-5 /usr/bin/true", "has 6 fields"),
        ("@daily", "@-names (@daily, @hourly, ...) are not understood here"),
        ("0 0 31 2 *", "never fires: none of its months has day 31"),
        ("0 0 30,31 2 *", "never fires"),
        ("0 9 * * ５", "'５' is not a day of week"),
    ],
)
def test_a_cron_line_cron_would_refuse_stops_the_config_naming_schedule_cron(
    tmp_path: Path, line: str, says: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_schedule(tmp_path, cron=line)
    message = str(caught.value)
    assert "at 'schedule.cron': " in message and says in message, message


def test_cron_lines_cron_accepts_load(tmp_path: Path) -> None:
    for line in ("0 0 29 2 *", "0 0 31 * *", "0 0 30 2 mon", "*/59 * * * *", " 0  9 * *\t1-5 "):
        assert load_schedule(tmp_path, cron=line).cron == " ".join(line.split())


def test_the_timezone_must_be_one_the_machine_knows(tmp_path: Path) -> None:
    assert load_schedule(tmp_path, cron="0 9 * * *", timezone="Europe/Berlin").timezone == (
        "Europe/Berlin"
    )
    for name, says in [
        ("Europe/Berln", "give an IANA name such as Europe/Berlin"),
        ("utc", "did you mean 'UTC'?"),
        ("Europe", "is not a time zone this machine knows"),
        ("../etc/passwd", "is not a time zone this machine knows"),
        ("", "is not a time zone this machine knows"),
    ]:
        with pytest.raises(ConfigError) as caught:
            load_schedule(tmp_path, cron="0 9 * * *", timezone=name)
        assert "at 'schedule.timezone': " in str(caught.value) and says in str(caught.value)


def test_exactly_one_of_every_and_cron() -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        ScheduleConfig(every=timedelta(minutes=5), cron="* * * * *")
    with pytest.raises(ValidationError, match="at least 10s"):
        ScheduleConfig(every=timedelta(seconds=5))


@pytest.fixture
def machine_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Set the machine's zone through TZ (as tzlocal reads it); the real one again after."""

    def set_zone(name: str) -> None:
        monkeypatch.setenv("TZ", name)

    yield set_zone
    monkeypatch.undo()
    reload_localzone()


def test_without_a_timezone_the_machines_zone_is_used_and_read_afresh(
    machine_zone: Callable[[str], None],
) -> None:
    schedule = ScheduleConfig(cron="0 9 * * 1-5")
    machine_zone("America/New_York")
    assert schedule_zone(schedule).key == "America/New_York"
    now = datetime(2026, 3, 6, 20, tzinfo=UTC)  # a Friday, 15:00 there; it changes on 8 March
    assert [t.isoformat() for t in next_cycle_times(schedule, now)] == [
        "2026-03-09T09:00:00-04:00",
        "2026-03-10T09:00:00-04:00",
        "2026-03-11T09:00:00-04:00",
    ]
    machine_zone("Asia/Kolkata")  # changed between two runs: the next reading sees it
    assert schedule_zone(schedule).key == "Asia/Kolkata"


def test_a_machine_zone_that_cannot_be_used_is_a_config_error_naming_the_key(
    machine_zone: Callable[[str], None],
) -> None:
    machine_zone("CET-1CEST")  # a POSIX TZ rule, not a zone name tzlocal can give
    with pytest.raises(ConfigError, match=r"schedule\.timezone.*machine's own time zone"):
        schedule_zone(ScheduleConfig(cron="0 9 * * 1-5"))
    assert schedule_zone(ScheduleConfig(cron="0 9 * * 1-5", timezone="UTC")).key == "UTC"


# ------------------------------------------------------------------------------ next cycles


def test_next_cycle_times_are_the_schedules_next_three_in_its_zone() -> None:
    friday = datetime(2026, 3, 27, 10, tzinfo=BERLIN)
    cron = ScheduleConfig(cron="0 9 * * 1-5", timezone="Europe/Berlin")
    assert [t.isoformat() for t in next_cycle_times(cron, friday)] == [
        "2026-03-30T09:00:00+02:00",
        "2026-03-31T09:00:00+02:00",
        "2026-04-01T09:00:00+02:00",
    ]
    every = ScheduleConfig(every="45m", timezone="Europe/Berlin", run_at_start=False)
    night = datetime(2026, 3, 29, 1, 0, tzinfo=BERLIN)
    assert [t.isoformat() for t in next_cycle_times(every, night, 4)] == [
        "2026-03-29T01:45:00+01:00",
        "2026-03-29T03:30:00+02:00",  # 45 real minutes later: the clock jumped meanwhile
        "2026-03-29T04:15:00+02:00",
        "2026-03-29T05:00:00+02:00",
    ]
    utc_now = datetime(2026, 3, 27, 9, tzinfo=UTC)  # any zone in, the schedule's zone out
    assert next_cycle_times(cron, utc_now)[0].isoformat() == "2026-03-30T09:00:00+02:00"


# ------------------------------------------------------------------------------ texts


def test_schedule_helpers() -> None:
    assert format_duration(timedelta(minutes=15)) == "15m"
    assert format_duration(timedelta(hours=1, minutes=30)) == "1h30m"
    assert describe_schedule(ScheduleConfig(every=timedelta(minutes=15))) == "every 15m"
    assert describe_schedule(ScheduleConfig(cron="*/15 7-19 * * 1-5")) == "cron */15 7-19 * * 1-5"


def test_status_lines_are_one_short_line() -> None:
    result = CycleResult("c1", "apply", datetime.now(), ReadReport(), Plan())
    result.counts = {"read": 300, "created": 2, "failed": 0, "pending": 0, "quarantined": 0}
    ended = datetime(2026, 11, 25, 12, 0, 3)
    assert cycle_status(result, ended) == (
        "last cycle ok 12:00:03: read=300 created=2 failed=0 pending=0 quarantined=0"
    )
    result.counts["failed"] = 1
    assert cycle_status(result, ended).startswith("last cycle partial 12:00:03:")
    result.stopped_early = True
    assert cycle_status(result, ended).startswith("last cycle stopped 12:00:03: read=300")
    assert (result.outcome, result.ran_to_end) == ("stopped", False)
    error = HybridboxUnavailable("x" * 500 + "\nsecond line")
    text = failure_status(error, ended, None)
    assert "\n" not in text and len(text) < 220
    assert text.startswith("last cycle failed 12:00:03: HybridboxUnavailable: xxx")
