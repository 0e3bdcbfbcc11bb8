"""Tell systemd how the daemon is doing: the plain ``sd_notify`` datagram protocol, no libsystemd.

systemd passes an ``AF_UNIX`` datagram socket in ``$NOTIFY_SOCKET`` (a path, or ``@name`` for an
abstract socket) to a ``Type=notify`` service. Each message is one datagram of ``KEY=value`` lines:
``READY=1`` once the daemon serves, ``STATUS=...`` for ``systemctl status``, ``WATCHDOG=1`` pings
within ``WatchdogSec=``, ``RELOADING=1`` and ``STOPPING=1`` around a reload and a shutdown.

Outside systemd (a terminal, a test, ``syncd apply`` from cron) the variable is unset and every
call does nothing, so callers never check. A failed send is logged at debug level and otherwise
ignored: a missed status line must never stop a sync cycle.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

from syncd.logs import event, get_logger

log = get_logger("syncd.notify")


class Notifier:
    """Sends notifications to systemd; a no-op when ``address`` is None."""

    def __init__(self, address: str | None, *, watchdog_usec: int | None = None) -> None:
        self.address = address
        self.watchdog_usec = watchdog_usec

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """Build from ``$NOTIFY_SOCKET``, ``$WATCHDOG_USEC`` and ``$WATCHDOG_PID``."""
        env = os.environ if environ is None else environ
        return cls(_socket_address(env.get("NOTIFY_SOCKET", "")), watchdog_usec=_watchdog(env))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, **fields: str | int) -> bool:
        """Send one datagram of ``KEY=value`` lines; True if it was sent."""
        if self.address is None or not fields:
            return False
        # A newline inside a value would start a new (bogus) assignment in the datagram.
        lines = [f"{key}={' '.join(str(value).splitlines())}" for key, value in fields.items()]
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto("\n".join(lines).encode("utf-8"), self.address)
        except OSError as exc:
            event(log, "notify.failed", logging.DEBUG, keys=",".join(fields), error=exc)
            return False
        return True

    def ready(self, status: str | None = None) -> None:
        """The daemon is up (also after a reload); ``systemctl start`` returns now."""
        if status is None:
            self.send(READY=1)
        else:
            self.send(READY=1, STATUS=status)

    def status(self, text: str) -> None:
        self.send(STATUS=text)

    def watchdog(self) -> None:
        self.send(WATCHDOG=1)

    def reloading(self) -> None:
        """A reload has begun; send ``ready()`` when it is done. systemd ≥ 253 wants the time."""
        self.send(RELOADING=1, MONOTONIC_USEC=time.monotonic_ns() // 1000)

    def stopping(self) -> None:
        self.send(STOPPING=1)

    def watchdog_interval(self) -> float | None:
        """Seconds between watchdog pings (half of ``WatchdogSec=``), or None without a watchdog."""
        if self.watchdog_usec is None:
            return None
        return self.watchdog_usec / 2 / 1_000_000


def _socket_address(value: str) -> str | None:
    if value.startswith("@"):
        return "\0" + value[1:]  # Linux abstract namespace: a leading NUL byte, not a file
    if value.startswith("/"):
        return value
    if value:
        event(log, "notify.unsupported_socket", logging.DEBUG, notify_socket=value)
    return None


def _watchdog(env: Mapping[str, str]) -> int | None:
    pid = env.get("WATCHDOG_PID", "")
    # The watchdog belongs to the main process only; a child that inherited it must not ping.
    if pid and pid != str(os.getpid()):
        return None
    value = env.get("WATCHDOG_USEC", "")
    if not value:
        return None
    try:
        usec = int(value)
    except ValueError:
        usec = 0
    if usec <= 0:
        event(log, "notify.bad_watchdog_usec", logging.DEBUG, watchdog_usec=value)
        return None
    return usec
