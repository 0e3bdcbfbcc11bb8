"""syncd as a service: the daemon, its schedule, systemd's notify protocol, the health files.

- :mod:`syncd.service._daemon`: ``syncd run``, cycles on a schedule, signals, reloads.
- :mod:`syncd.service._schedule`: the schedule as cron means it, in ``schedule.timezone`` (the
  trigger, the next cycles ``syncd validate`` prints) and the daemon's status texts (pure).
- :mod:`syncd.service._notify`: ``sd_notify`` (``READY=1``, ``STATUS=``, watchdog pings).
- :mod:`syncd.service._health`: ``status.json`` and the Prometheus textfile, written for every
  cycle through :class:`StatusFiles` (a :class:`syncd.cycle.CycleReporter`), and the daemon's
  ``next_cycle``.
"""

from importlib import import_module
from typing import TYPE_CHECKING

from syncd.service._health import StatusFiles, read_status, status_path
from syncd.service._notify import Notifier

if TYPE_CHECKING:
    from syncd.service._daemon import Daemon, run_daemon
    from syncd.service._schedule import (
        describe_schedule,
        format_moment,
        next_cycle_times,
        schedule_zone,
        zone_name,
    )

# The daemon and the schedule load APScheduler and tzlocal; `syncd apply` only needs the health
# files from here, so those two modules are imported on first use of one of their names.
_LAZY = {
    "Daemon": "syncd.service._daemon",
    "run_daemon": "syncd.service._daemon",
    "describe_schedule": "syncd.service._schedule",
    "format_moment": "syncd.service._schedule",
    "next_cycle_times": "syncd.service._schedule",
    "schedule_zone": "syncd.service._schedule",
    "zone_name": "syncd.service._schedule",
}


def __getattr__(name: str) -> object:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_LAZY[name]), name)


__all__ = [
    "Daemon",
    "Notifier",
    "StatusFiles",
    "describe_schedule",
    "format_moment",
    "next_cycle_times",
    "read_status",
    "run_daemon",
    "schedule_zone",
    "status_path",
    "zone_name",
]
