"""What a cycle is asked to do, what it returns, and who is told how it went.

Its own module because the engine, the provisioner and the commands that start cycles all need
these records, and none of them should import the others to get them.
"""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal, Protocol

from syncd.cycle._plan import Plan
from syncd.errors import ConfigError
from syncd.model import ReadReport
from syncd.state import State


class CycleReporter(Protocol):
    """Told when an ``apply`` cycle starts and how it ended (``syncd.service`` writes
    ``status.json`` and the metrics file from it). The engine does not know what is done with it.
    """

    def started(self, at: datetime) -> None: ...

    def finished(self, result: CycleResult) -> None: ...

    def failed(self, state: State, at: datetime, error: Exception) -> None: ...


# Test-only: a fixed "today" (YYYY-MM-DD) for start-date tests across days.
TODAY_ENV = "SYNCD_TODAY"
# Random bytes in a cycle id (8 hex digits): short on every log line, and enough to tell the
# cycles of a log apart.
CYCLE_ID_BYTES = 4


@dataclass(slots=True)
class CycleOptions:
    mode: Literal["apply", "plan"] = "apply"
    allow_creates: int | None = None
    today: date | None = None
    # Set by the daemon on SIGTERM: finish the batch in flight, record it, stop.
    stop: threading.Event | None = None
    # Called regularly during long cycles (systemd watchdog pings).
    heartbeat: Callable[[], None] | None = None
    # Given by the daemon so that its own lines about the cycle (e.g. a failure) carry the id.
    cycle_id: str | None = None
    # Told when an apply cycle starts and ends (status.json); None for a cycle nobody watches.
    reporter: CycleReporter | None = None
    # `apply --full`, `plan --full`: read the whole directory even when a delta read would do.
    full: bool = False


@dataclass(slots=True)
class CycleResult:
    cycle_id: str
    mode: str
    started_at: datetime
    report: ReadReport
    plan: Plan
    counts: dict[str, int] = field(default_factory=dict)
    # State totals after the cycle (people, mailboxes, pending, quarantined, leavers).
    totals: dict[str, int] = field(default_factory=dict)
    duration_s: float = 0.0
    stopped_early: bool = False
    message: str = ""
    # A source read in deltas (LDAP with source.delta): when the next full read is due (the
    # start of the next cycle when none is stored yet); None for a source always read in full.
    next_full_read: datetime | None = None

    @property
    def outcome(self) -> str:
        """``ok``; ``partial`` when some people failed (exit code 1); ``stopped`` when a stop
        request (SIGTERM to the daemon) cut the cycle short: the batch in flight was finished and
        recorded, the people not reached are left for the next cycle (failures, if any, are in
        the counts)."""
        if self.stopped_early:
            return "stopped"
        return "partial" if self.counts.get("failed", 0) else "ok"

    @property
    def ran_to_end(self) -> bool:
        """Whether everyone due was attempted (``ok`` or ``partial``): only such a cycle is a
        success for ``status.json``'s ``last_success``; a stopped one is neither that nor an
        error."""
        return not self.stopped_early


def today_for(options: CycleOptions, now: datetime) -> date:
    if options.today is not None:
        return options.today
    forced = os.environ.get(TODAY_ENV)
    if forced:
        try:
            return date.fromisoformat(forced)
        except ValueError:
            raise ConfigError(f"{TODAY_ENV}={forced!r} is not a YYYY-MM-DD date") from None
    return now.date()


def new_cycle_id() -> str:
    return secrets.token_hex(CYCLE_ID_BYTES)
