"""Pure helpers for ``syncd run``, kept apart from the daemon's threads and signals.

Two jobs:

* **the schedule**: the APScheduler trigger for ``schedule.every``/``schedule.cron`` in
  ``schedule.timezone``, the next cycles it gives (``syncd validate`` prints them), how late a
  run may start, and how the schedule is spelled in the log;
* **the status line**: the one-line ``STATUS=`` text systemd shows in ``systemctl status`` after a
  cycle (its outcome, or its error cut to fit).

None of it touches the daemon's state, the scheduler, a file or the network (``clock`` reads the
current time when not given ``now``; the default zone is the machine's, read from ``TZ`` and
``/etc/localtime``), so it is tested without starting a daemon.

A cron line means what it means to cron, not to APScheduler 3 (whose ``from_crontab`` counts
weekday 0 as Monday and ANDs the two day fields, and whose ``CronTrigger`` skips days across a
change of summer time): the config parses it (:meth:`syncd.config.ScheduleConfig.cron_spec`) and
:class:`CronSchedule`, a trigger of syncd's own, finds its times in the zone's calendar.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.interval import IntervalTrigger
from tzlocal import reload_localzone

from syncd.config import ScheduleConfig
from syncd.errors import ConfigError

if TYPE_CHECKING:
    from syncd.cycle import CycleResult

# A run the scheduler starts this late is still run; a later one is skipped (and logged).
MISFIRE_GRACE_S = 30
# STATUS= is one line in `systemctl status`; an error message is cut to fit.
STATUS_MESSAGE_MAX = 120
# How many coming cycles `syncd validate` shows.
NEXT_CYCLES_SHOWN: Final = 3
# The next fire time is after the previous one by at least this (APScheduler's own step).
ONE_TICK: Final = timedelta(microseconds=1)
# A valid cron line fires within 8 years (29 February skips 2100); a search ends after these.
CRON_SEARCH_DAYS: Final = 9 * 366
DAYS_PER_WEEK: Final = 7


# ------------------------------------------------------------------------------ schedule helpers


def schedule_zone(schedule: ScheduleConfig) -> ZoneInfo:
    """The zone the schedule is read in: ``schedule.timezone``, or the machine's own.

    The machine's is read afresh each time (not APScheduler's cached one), so a reload after
    ``timedatectl set-timezone`` sees the new zone. ConfigError when it cannot be used.
    """
    if schedule.timezone is not None:
        return ZoneInfo(schedule.timezone)  # the config checked that it exists
    try:
        return reload_localzone()
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        reason = " ".join(str(exc).strip("'\"").split())
        raise ConfigError(
            "at 'schedule.timezone': not given, and the machine's own time zone cannot be used "
            f"({reason})",
            hint="set schedule.timezone to an IANA name such as Europe/Berlin, or fix TZ or "
            "/etc/localtime",
        ) from None


def zone_name(zone: ZoneInfo) -> str:
    return zone.key or str(zone)


def _instant(moment: datetime) -> datetime:
    # Two times of one ZoneInfo compare and add by their wall clocks, ignoring `fold`; UTC does not.
    return moment.astimezone(UTC)


class CronSchedule(BaseTrigger):  # type: ignore[misc]  # APScheduler ships no type hints
    """A cron line in a zone, fired as cron fires it; APScheduler asks it for the next time.

    Not APScheduler 3's ``CronTrigger``: besides reading weekday 0 as Monday, it adds days in
    UTC and so skips runs after a change of summer time (``0 0 * * *`` in Europe/Berlin skips
    2026-03-30; ``0 0 1 * *`` from 2026-03-20 skips 1 April). This one walks the zone's calendar
    day by day and turns each matching wall clock time into an instant:

    * a day matches cron's way: both day fields restricted means either may match;
    * a time in the hour skipped when clocks go forward runs once, shifted by the jump (02:30
      runs at 03:30: the instant Python's ``fold=0`` names; once, even where 03:30 fires too);
    * a time in the hour repeated when clocks go back runs the first time only, unless the
      minute or hour field starts with ``*`` (those run on through both hours, as in cron).
    """

    __slots__ = ("days", "line", "months", "spec", "weekdays", "zone")

    def __init__(self, schedule: ScheduleConfig, zone: ZoneInfo) -> None:
        self.line = schedule.cron
        self.spec = schedule.cron_spec()
        self.zone = zone
        self.days = frozenset(self.spec.days)
        self.months = frozenset(self.spec.months)
        self.weekdays = frozenset(self.spec.weekdays)

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        """The first fire time after ``previous_fire_time``, or from ``now`` if there is none."""
        if previous_fire_time is not None:
            threshold = _instant(previous_fire_time) + ONE_TICK
        else:
            threshold = _instant(now)
        # From the day before: a repeated hour at midnight belongs to the day before.
        day = threshold.astimezone(self.zone).date() - timedelta(days=1)
        for _ in range(CRON_SEARCH_DAYS):
            if self.fires_on(day):
                later = [t for t in self.times_on(day) if _instant(t) >= threshold]
                if later:
                    return min(later, key=_instant)
            day += timedelta(days=1)
        return None

    def fires_on(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        by_date = day.day in self.days
        by_weekday = day.isoweekday() % DAYS_PER_WEEK in self.weekdays  # cron's 0 is Sunday
        return by_date or by_weekday if self.spec.either_day else by_date and by_weekday

    def times_on(self, day: date) -> list[datetime]:
        """Every instant the line fires on ``day`` (a local calendar day), in the zone."""
        times: list[datetime] = []
        for hour in self.spec.hours:
            for minute in self.spec.minutes:
                wall = datetime(day.year, day.month, day.day, hour, minute)
                first = wall.replace(tzinfo=self.zone)
                real = _instant(first).astimezone(self.zone)
                times.append(real)  # in a skipped hour: the instant fold=0 names, an hour on
                if not self.spec.frequent or real.replace(tzinfo=None) != wall:
                    continue
                second = wall.replace(tzinfo=self.zone, fold=1)
                if second.utcoffset() != first.utcoffset():  # the clocks went back: twice
                    times.append(_instant(second).astimezone(self.zone))
        return times

    def __str__(self) -> str:
        return f"cron[{self.line} in {zone_name(self.zone)}]"


def build_trigger(
    schedule: ScheduleConfig, zone: ZoneInfo | None = None, *, now: datetime | None = None
) -> BaseTrigger:
    """The APScheduler trigger for ``schedule`` in ``zone`` (default :func:`schedule_zone`).

    ``now`` fixes when an ``every`` schedule starts counting (the daemon leaves it to
    APScheduler: from the moment the trigger is made).
    """
    zone = zone or schedule_zone(schedule)
    if schedule.every is not None:
        interval = schedule.every
        start = {"start_date": now + interval} if now is not None else {}
        return IntervalTrigger(seconds=interval.total_seconds(), timezone=zone, **start)
    return CronSchedule(schedule, zone)


def next_cycle_times(
    schedule: ScheduleConfig, now: datetime, count: int = NEXT_CYCLES_SHOWN
) -> list[datetime]:
    """The next ``count`` times ``schedule`` starts a cycle after ``now``, in its zone, for a
    daemon started at ``now`` (``every`` counts from the start). The cycle ``run_at_start`` adds
    at the start is not among them."""
    zone = schedule_zone(schedule)
    now = now.astimezone(zone)
    trigger = build_trigger(schedule, zone, now=now)
    times: list[datetime] = []
    previous: datetime | None = None
    while len(times) < count:
        moment = trigger.get_next_fire_time(previous, previous or now)
        if moment is None:
            break
        times.append(moment)
        previous = moment
    return times


def format_moment(moment: datetime) -> str:
    """ISO 8601 with the offset, to the second: ``2026-03-30T07:00:00+02:00``."""
    return moment.isoformat(timespec="seconds")


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
    """``last cycle ok 12:00:03: read=300 created=2 failed=0 pending=0 quarantined=0``
    (``stopped`` when a stop cut the cycle short, ``partial`` when some people failed)."""
    counts = result.counts
    fields = " ".join(
        f"{key}={counts.get(key, 0)}"
        for key in ("read", "created", "failed", "pending", "quarantined")
    )
    return f"last cycle {result.outcome} {ended:%H:%M:%S}: {fields}"


def failure_status(error: BaseException, ended: datetime, last_ok: datetime | None) -> str:
    since = f"; last ok {clock(last_ok, ended)}" if last_ok else "; no successful cycle yet"
    kind = type(error).__name__
    return f"last cycle failed {ended:%H:%M:%S}: {kind}: {shorten(str(error))}{since}"
