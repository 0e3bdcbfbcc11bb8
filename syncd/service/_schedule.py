"""Pure helpers for ``syncd run``, kept apart from the daemon's threads and signals.

Two jobs:

* **the schedule**: the APScheduler trigger for ``schedule.every``/``schedule.cron``, how late a
  run may start, and how the schedule is spelled in the log;
* **the status line**: the one-line ``STATUS=`` text systemd shows in ``systemctl status`` after a
  cycle (its outcome, or its error cut to fit).

None of it touches the daemon's state, the scheduler, a file or the network (``clock`` reads the
current time when not given ``now``), so it is tested without starting a daemon.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from syncd.config import ScheduleConfig
from syncd.errors import ConfigError

if TYPE_CHECKING:
    from syncd.cycle import CycleResult

# A run the scheduler starts this late is still run; a later one is skipped (and logged).
MISFIRE_GRACE_S = 30
# STATUS= is one line in `systemctl status`; an error message is cut to fit.
STATUS_MESSAGE_MAX = 120


# ------------------------------------------------------------------------------ schedule helpers


def build_trigger(schedule: ScheduleConfig) -> BaseTrigger:
    """The APScheduler trigger for ``schedule``; ConfigError if APScheduler rejects it."""
    if schedule.every is not None:
        return IntervalTrigger(seconds=schedule.every.total_seconds())
    assert schedule.cron is not None  # ScheduleConfig guarantees exactly one of the two
    try:
        return CronTrigger.from_crontab(schedule.cron)
    except ValueError as exc:
        raise ConfigError(
            f"at 'schedule.cron': {schedule.cron!r} is not a valid cron expression: {exc}",
            hint="5 fields: minute hour day-of-month month day-of-week, e.g. '*/15 7-19 * * 1-5'",
        ) from None


def misfire_grace(schedule: ScheduleConfig) -> int:
    """Seconds a run may start late; never so long that it reaches into the next run."""
    if schedule.every is not None:
        return max(1, min(MISFIRE_GRACE_S, int(schedule.every.total_seconds() // 2)))
    return MISFIRE_GRACE_S


def describe_schedule(schedule: ScheduleConfig) -> str:
    if schedule.every is not None:
        return f"every {format_duration(schedule.every)}"
    return f"cron {schedule.cron}"


def format_duration(duration: timedelta) -> str:
    """``15m``, ``1h30m``, ``45s``: the way the config spells durations."""
    seconds = int(duration.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"


# ------------------------------------------------------------------------------ status line


def clock(moment: datetime, now: datetime | None = None) -> str:
    """``12:15`` for today, ``2026-11-26 07:00`` for another day (local time, like cron)."""
    now = now or datetime.now(moment.tzinfo)
    if moment.date() == now.date():
        return moment.strftime("%H:%M")
    return moment.strftime("%Y-%m-%d %H:%M")


def shorten(text: str, limit: int = STATUS_MESSAGE_MAX) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def cycle_status(result: CycleResult, ended: datetime) -> str:
    """``last cycle ok 12:00:03: read=300 created=2 failed=0 pending=0 quarantined=0``."""
    counts = result.counts
    outcome = "stopped early" if result.stopped_early else result.outcome
    fields = " ".join(
        f"{key}={counts.get(key, 0)}"
        for key in ("read", "created", "failed", "pending", "quarantined")
    )
    return f"last cycle {outcome} {ended:%H:%M:%S}: {fields}"


def failure_status(error: BaseException, ended: datetime, last_ok: datetime | None) -> str:
    since = f"; last ok {clock(last_ok, ended)}" if last_ok else "; no successful cycle yet"
    kind = type(error).__name__
    return f"last cycle failed {ended:%H:%M:%S}: {kind}: {shorten(str(error))}{since}"
