"""The schedule and the cycle's fate as an admin sees them through the CLI, as a real process:
``validate`` prints the next cycles, a bad cron line stops every command, ``status`` shows the
last outcome and the daemon's next cycle, and what SIGTERM does to ``syncd apply``."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from tests.support.site import REPO_ROOT, Site, people

EX_STALE, EX_CONFIG = 2, 78
NEXT_LINE = re.compile(r"^schedule: next (\S+) \((\w{3})\)$", re.MULTILINE)


def next_lines(output: str) -> list[datetime]:
    found = NEXT_LINE.findall(output)
    times = [datetime.fromisoformat(stamp) for stamp, _ in found]
    assert [day for _, day in found] == [t.strftime("%a") for t in times]
    return times


def weekdays_at_nine(after: datetime, zone: ZoneInfo, count: int) -> list[datetime]:
    """The first ``count`` weekdays at 09:00 in ``zone`` after ``after``, day by day."""
    found: list[datetime] = []
    day = after.astimezone(zone).date()
    while len(found) < count:
        moment = datetime(day.year, day.month, day.day, 9, tzinfo=zone)
        if day.weekday() < 5 and moment > after:
            found.append(moment)
        day += timedelta(days=1)
    return found


def test_validate_prints_the_next_three_cron_times_in_the_schedules_zone(site: Site) -> None:
    site.write_people(people(2))
    site.configure(schedule={"cron": "0 9 * * 1-5", "timezone": "America/New_York"})
    zone = ZoneInfo("America/New_York")
    before = datetime.now(UTC)
    result = site.syncd("validate", "--offline")
    after = datetime.now(UTC)
    assert result.returncode == 0, result.stderr
    assert (
        "schedule: cron 0 9 * * 1-5, in America/New_York; run_at_start: one more cycle when "
        "the daemon starts\n" in result.stdout
    )
    shown = next_lines(result.stdout)
    assert len(shown) == 3
    # ISO 8601 with the offset that holds on that day there; weekdays only, none skipped.
    assert shown in (weekdays_at_nine(before, zone, 3), weekdays_at_nine(after, zone, 3))
    assert [t.utcoffset() for t in shown] == [t.astimezone(zone).utcoffset() for t in shown]


def test_validate_shows_cron_sunday_as_sunday(site: Site) -> None:
    site.write_people(people(1))
    site.configure(schedule={"cron": "0 3 * * 7", "timezone": "Europe/Berlin"})
    result = site.syncd("validate", "--offline")
    assert result.returncode == 0, result.stderr
    shown = next_lines(result.stdout)
    assert [t.strftime("%a %H:%M") for t in shown] == ["Sun 03:00"] * 3
    assert {b - a for a, b in pairwise(shown)} <= {
        timedelta(days=7),
        timedelta(days=7, hours=1),  # a week with a change of summer time in it
        timedelta(days=7, hours=-1),
    }


def test_validate_shows_every_counted_from_now(site: Site) -> None:
    site.write_people(people(1))
    site.configure(schedule={"every": "45m", "run_at_start": False})
    before = datetime.now(UTC).replace(microsecond=0)  # the lines show whole seconds
    result = site.syncd("validate", "--offline")
    assert result.returncode == 0, result.stderr
    counted = "counted from the daemon's start (the times: if it started now)"
    assert f"schedule: every 45m, {counted}\n" in result.stdout
    shown = next_lines(result.stdout)
    assert len(shown) == 3
    assert shown[1] - shown[0] == shown[2] - shown[1] == timedelta(minutes=45)
    assert timedelta(minutes=45) <= shown[0] - before < timedelta(minutes=46)


@pytest.mark.parametrize("command", ["validate", "plan", "apply", "status"])
def test_a_bad_cron_line_stops_every_command_with_78_naming_the_key(
    site: Site, command: str
) -> None:
    site.write_people(people(1))
    site.configure(schedule={"cron": "*/15 7-19 * * 1-8"})
    result = site.syncd(command)
    assert result.returncode == EX_CONFIG, result.stdout
    assert "at 'schedule.cron': " in result.stderr
    assert "'8' is not a day of week (0-7 or sun..sat; 0 and 7 are Sunday)" in result.stderr
    assert site.emulator.mailboxes() == []


def test_an_unknown_timezone_stops_validate_with_78_naming_the_key(site: Site) -> None:
    site.configure(schedule={"cron": "0 9 * * 1-5", "timezone": "Europe/Berln"})
    result = site.syncd("validate", "--offline")
    assert result.returncode == EX_CONFIG
    assert "at 'schedule.timezone': 'Europe/Berln' is not a time zone" in result.stderr


# ------------------------------------------------------------------------------ status


def write_status(site: Site, **fields: object) -> None:
    path = site.state_path.parent / "status.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(fields), encoding="utf-8")


def test_status_shows_the_last_outcome_and_the_daemons_next_cycle(site: Site) -> None:
    site.write_people(people(2))
    assert site.syncd("apply").returncode == 0
    status = site.status()
    assert "next_cycle" not in status  # `apply` alone: no daemon has said anything
    shown = site.syncd("status")
    assert shown.returncode == 0, shown.stderr
    assert "last outcome: ok\n" in shown.stdout
    assert (
        "next cycle:   none from syncd: no `syncd run` daemon is running (under the timer: "
        "systemctl list-timers syncd.timer)" in shown.stdout
    )
    assert json.loads(site.syncd("status", "--format", "json").stdout)["next_cycle"] is None

    soon = (datetime.now(UTC) + timedelta(minutes=14, seconds=30)).astimezone(
        ZoneInfo("Europe/Berlin")
    )
    write_status(site, **{**status, "next_cycle": soon.isoformat(timespec="seconds")})
    shown = site.syncd("status")
    assert f"next cycle:   {soon.isoformat(timespec='seconds')} (in 14m)" in shown.stdout
    as_json = json.loads(site.syncd("status", "--format", "json").stdout)
    assert as_json["next_cycle"] == soon.isoformat(timespec="seconds")


def test_status_says_when_the_announced_next_cycle_never_came(site: Site) -> None:
    """A daemon killed (SIGKILL, OOM) cannot clear its next_cycle: status says it is overdue."""
    site.write_people(people(1))
    assert site.syncd("apply").returncode == 0
    long_ago = (datetime.now(UTC) - timedelta(hours=3)).isoformat(timespec="seconds")
    write_status(site, **{**site.status(), "next_cycle": long_ago, "running": False})
    shown = site.syncd("status")
    assert f"next cycle:   {long_ago} (overdue by 3h0m: is the `syncd run` daemon still" in (
        shown.stdout
    )
    write_status(site, **{**site.status(), "running": True})
    assert "(due; a cycle is still running)" in site.syncd("status").stdout


def test_status_shows_a_stopped_cycle_as_stopped(site: Site) -> None:
    site.write_people(people(1))
    assert site.syncd("apply").returncode == 0
    before = site.status()
    write_status(site, **{**before, "last_outcome": "stopped"})
    shown = site.syncd("status")
    assert "last outcome: stopped (a stop cut the cycle short; the people it did not reach" in (
        shown.stdout
    )


# ------------------------------------------------------------------------------ SIGTERM


def test_sigterm_to_apply_ends_it_by_the_signal_and_the_next_apply_duplicates_nothing(
    site: Site,
) -> None:
    """``syncd apply`` (the timer's oneshot) does not catch SIGTERM: it dies by it (exit status
    143 in a shell; systemd counts it a clean stop). The batch in flight may stay as intents,
    which the next cycle resolves by lookup before sending anything."""
    site.write_people(people(60))
    site.emulator.set_faults(latency_ms=300)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "syncd", "--config", str(site.config_path), "apply"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while len(site.log_events("mailbox.created")) < 10:
            assert process.poll() is None, "apply ended before it was stopped"
            assert time.monotonic() < deadline, "no batch was created in 30s"
            time.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == -signal.SIGTERM
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        assert process.stderr is not None
        process.stderr.close()
    assert len(site.emulator.mailboxes()) < 60, "the signal came too late to cut the cycle"
    assert not site.log_events("cycle.summary"), "a killed apply writes no summary"

    site.emulator.set_faults(latency_ms=0)
    again = site.syncd("apply")
    assert again.returncode == 0, again.stderr
    addresses = [m["primary_email"] for m in site.emulator.mailboxes()]
    assert len(addresses) == 60 == len(set(addresses))
    assert " outcome=ok " in site.log_events("cycle.summary")[-1]
    with site.db() as conn:
        outcomes = [row[0] for row in conn.execute("SELECT outcome FROM runs ORDER BY id")]
    assert outcomes == [None, "ok"]  # the killed apply never got to record how it ended


def test_weekdays_at_nine_helper_counts_from_the_day_after_a_late_start() -> None:
    zone = ZoneInfo("Europe/Berlin")
    friday_evening = datetime(2026, 3, 27, 18, tzinfo=zone)
    assert [t.date() for t in weekdays_at_nine(friday_evening, zone, 2)] == [
        date(2026, 3, 30),
        date(2026, 3, 31),
    ]
