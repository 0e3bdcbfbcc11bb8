"""syncd as a service: the daemon, its schedule, systemd's notify protocol, the health files.

- :mod:`syncd.service._daemon`: ``syncd run``, cycles on a schedule, signals, reloads.
- :mod:`syncd.service._schedule`: the APScheduler trigger and the daemon's status texts (pure).
- :mod:`syncd.service._notify`: ``sd_notify`` (``READY=1``, ``STATUS=``, watchdog pings).
- :mod:`syncd.service._health`: ``status.json`` and the Prometheus textfile, written for every
  cycle through :class:`StatusFiles` (a :class:`syncd.cycle.CycleReporter`).
"""

from syncd.service._daemon import Daemon, run_daemon
from syncd.service._health import StatusFiles, read_status, status_path
from syncd.service._notify import Notifier

__all__ = ["Daemon", "Notifier", "StatusFiles", "read_status", "run_daemon", "status_path"]
