"""``syncd run``: cycles on a schedule, under systemd (``Type=notify``) or in a terminal.

Threads and who does what:

* the **main thread** owns the signals. Handlers only set flags; ``signal.set_wakeup_fd`` wakes
  the main loop, which then stops or reloads. Nothing heavy ever runs inside a handler (and no
  lock is taken there: a handler that interrupts the main thread while it holds that lock would
  deadlock it).
* APScheduler's **executor thread** runs the cycles, one at a time (``max_instances=1``); a run
  that comes due while the previous one still runs is skipped and logged, never queued.
* a **watchdog thread** sends ``WATCHDOG=1`` while the main loop is alive; the cycle's heartbeat
  pings too, so a long cycle shows that it is making progress.

Stopping (SIGTERM/SIGINT) sets the stop event the engine checks between batches: the batch in
flight is finished and recorded, then the cycle returns (its outcome ``stopped``) and the process
exits 0. Reloading (SIGHUP) validates the new config first; a config that does not validate is
logged and the old one stays in force.

After each cycle (and at the start, and after a reload that changes the schedule) the daemon
logs ``daemon.next_cycle at=...`` and writes it to ``status.json`` as ``next_cycle``; it clears
that when it stops, so ``syncd status`` never shows a next cycle nobody will run.

The pure helpers (the trigger for the schedule, the STATUS= line) are in
:mod:`syncd.service._schedule`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.events import (
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobEvent,
    JobExecutionEvent,
    JobSubmissionEvent,
)
from apscheduler.schedulers.background import BackgroundScheduler

from syncd.config import Config, load_config
from syncd.cycle import CycleOptions, CycleResult, new_cycle_id, run_cycle
from syncd.errors import StateError, SyncdError
from syncd.exit_codes import EX_OK
from syncd.logs import cycle_context, event, get_logger, setup_logging
from syncd.service._health import StatusFiles, next_cycle_changed, status_path
from syncd.service._notify import Notifier
from syncd.service._schedule import (
    build_trigger,
    clock,
    cycle_status,
    describe_schedule,
    failure_status,
    format_moment,
    misfire_grace,
    schedule_zone,
    zone_name,
)
from syncd.state import State

log = get_logger("syncd.daemon")

JOB_ID = "sync-cycle"
# How often the main loop looks up when nothing wakes it (and the watchdog's idea of "alive").
MAIN_TICK_S = 1.0

CycleRunner = Callable[[Config, CycleOptions], CycleResult]


def run_daemon(config: Config, config_path: Path) -> int:
    """Run cycles on ``config.schedule`` until SIGTERM/SIGINT; 0 on a clean stop.

    Raises ConfigError or StateError (exit 78) when the config cannot be used at start: a
    machine time zone that cannot be read (when ``schedule.timezone`` is not given), a secret
    that cannot be read, a state that cannot be opened. (A bad cron line never gets this far:
    the config does not load.)
    """
    daemon = Daemon(config, config_path, Notifier.from_env())
    return daemon.run(handle_signals=True)


def check_usable(config: Config) -> None:
    """Fail fast on what would make every cycle fail: schedule, secrets, the state database.

    The secrets are resolved and dropped (a rotated token is read again by every cycle); the
    state is opened (which creates or migrates it) and closed again, because the engine opens it
    itself, under the lock, for each cycle.
    """
    build_trigger(config.schedule)
    config.hybridbox.token()
    source = config.source
    if source.type == "ldap" and source.has_password:
        source.bind_password()
    try:
        State(config.state.path).close()
    except OSError as exc:  # e.g. the directory cannot be created; State reports sqlite errors
        raise StateError(
            f"cannot open the state database {config.state.path}: {exc.strerror or exc}",
            hint="check state.path: its directory must exist or be creatable, writable by syncd",
        ) from None


# ------------------------------------------------------------------------------ the daemon


class Daemon:
    """One ``syncd run`` process. ``runner`` is :func:`syncd.cycle._engine.run_cycle` outside
    tests."""

    def __init__(
        self,
        config: Config,
        config_path: Path,
        notifier: Notifier,
        *,
        runner: CycleRunner = run_cycle,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.notifier = notifier
        self.runner = runner
        # Set on SIGTERM/SIGINT; the engine finishes the batch in flight when it sees it.
        self.stop = threading.Event()
        self.cycles = 0
        self.skipped = 0
        self._scheduler: BackgroundScheduler | None = None
        # Flags written by signal handlers (plain attributes: no lock in a handler).
        self._stop_reason: str | None = None
        self._reload_requested = False
        self._busy = threading.Event()
        self._finished = threading.Event()
        self._alive = time.monotonic()
        self._last_ping = 0.0
        # The last cycle's outcome for STATUS=, without the "next run" part (that one changes).
        self._last_outcome = "no cycle yet"
        self._last_ok: datetime | None = None
        # The zone the schedule was built in (the machine's may change before a reload).
        self._zone: ZoneInfo | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        for end in (self._wake_r, self._wake_w):
            end.setblocking(False)

    # -------------------------------------------------------------- lifecycle

    def run(self, *, handle_signals: bool) -> int:
        """Start, serve until asked to stop, stop. Signals only from the main thread."""
        previous: dict[int, Any] = {}
        previous_wakeup: int | None = None
        try:
            # Before start(): a SIGTERM right after READY=1 must already mean "stop cleanly".
            if handle_signals:
                previous_wakeup = signal.set_wakeup_fd(
                    self._wake_w.fileno(), warn_on_full_buffer=False
                )
                for handled in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    previous[handled] = signal.signal(handled, self._on_signal)
            self.start()
            self._loop()
            self._shutdown()
            return EX_OK
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            if previous_wakeup is not None:
                signal.set_wakeup_fd(previous_wakeup)
            self._finished.set()
            if self._scheduler is not None and self._scheduler.running:
                self._scheduler.shutdown(wait=False)
            self._wake_r.close()
            self._wake_w.close()

    def start(self) -> None:
        """Check the config, start the scheduler and the watchdog, tell systemd we are ready."""
        config = self.config
        check_usable(config)
        schedule = config.schedule
        self._zone = zone = schedule_zone(schedule)
        # The scheduler's own zone too: APScheduler would otherwise ask tzlocal, which may fail.
        scheduler = BackgroundScheduler(timezone=zone)
        scheduler.add_listener(self._on_skipped, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED)
        scheduler.add_job(
            self._cycle,
            trigger=build_trigger(schedule, zone),
            id=JOB_ID,
            name="sync cycle",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=misfire_grace(schedule),
            # Without next_run_time APScheduler computes the first run from the trigger.
            **({"next_run_time": datetime.now().astimezone()} if schedule.run_at_start else {}),
        )
        # Our listener logs skipped runs as daemon.cycle_skipped; APScheduler's own warnings about
        # them (and its info lines about every run) would only repeat that, unformatted.
        logging.getLogger("apscheduler").setLevel(logging.ERROR)
        # Paused until READY=1 is out: systemd must hear "ready" before any cycle's STATUS=.
        scheduler.start(paused=True)
        self._scheduler = scheduler
        interval = self.notifier.watchdog_interval()
        event(
            log,
            "daemon.started",
            schedule=describe_schedule(schedule),
            timezone=zone_name(zone),
            run_at_start=schedule.run_at_start,
            pid=os.getpid(),
            config=self.config_path,
            state=config.state.path,
            notify=self.notifier.enabled,
            watchdog_s=f"{interval:.1f}" if interval else None,
        )
        self.notifier.ready(self.status_text())
        self._announce_next()  # before resume: no cycle writes status.json yet
        scheduler.resume()
        if interval is not None:
            self._last_ping = time.monotonic()
            self.notifier.watchdog()
            threading.Thread(
                target=self._watchdog_loop, args=(interval,), name="syncd-watchdog", daemon=True
            ).start()

    def _loop(self) -> None:
        while self._stop_reason is None:
            self._alive = time.monotonic()
            self._wait_for_wake(self._tick())
            if self._reload_requested:
                self._reload_requested = False
                self.reload()

    def _shutdown(self) -> None:
        event(log, "daemon.stopping", reason=self._stop_reason, cycle_running=self._busy.is_set())
        self.notifier.stopping()
        self.stop.set()
        assert self._scheduler is not None
        self._scheduler.pause()  # no new run may start; the running one sees the stop event
        while self._busy.is_set():
            self._alive = time.monotonic()
            self._wait_for_wake(0.1)
        self._scheduler.shutdown(wait=True)
        self._record_next(None)  # no daemon, no next cycle (a timer's are systemd's to tell)
        event(log, "daemon.stopped", reason=self._stop_reason, cycles=self.cycles)

    # -------------------------------------------------------------- signals and waking

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Only flags here; set_wakeup_fd has already woken the main loop.
        if signum == signal.SIGHUP:
            self._reload_requested = True
        elif self._stop_reason is None:
            self._stop_reason = signal.Signals(signum).name

    def request_stop(self, reason: str = "requested") -> None:
        """Stop as SIGTERM would (from any thread)."""
        if self._stop_reason is None:
            self._stop_reason = reason
        self._wake()

    def request_reload(self) -> None:
        """Reload as SIGHUP would (from any thread)."""
        self._reload_requested = True
        self._wake()

    def schedule_now(self) -> None:
        """Make the next run due now (tests; a run still in progress makes it a skipped one)."""
        assert self._scheduler is not None
        self._scheduler.modify_job(JOB_ID, next_run_time=datetime.now().astimezone())

    def _wake(self) -> None:
        # OSError: the buffer is full (a wake-up is already pending) or closed (we are gone).
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def _wait_for_wake(self, timeout: float) -> None:
        readable, _, _ = select.select([self._wake_r], [], [], timeout)
        if readable:
            with contextlib.suppress(BlockingIOError):
                while self._wake_r.recv(512):
                    pass

    def _tick(self) -> float:
        interval = self.notifier.watchdog_interval()
        return MAIN_TICK_S if interval is None else min(MAIN_TICK_S, interval / 2)

    # -------------------------------------------------------------- reload

    def reload(self) -> bool:
        """Load ``config_path`` again; keep the old config if the new one is not usable."""
        self.notifier.reloading()
        try:
            new = load_config(self.config_path)
            check_usable(new)
            zone = schedule_zone(new.schedule)
        except SyncdError as exc:
            event(
                log,
                "daemon.reload_failed",
                logging.ERROR,
                config=self.config_path,
                kind=type(exc).__name__,
                reason=str(exc),
                kept="the previous config",
            )
            self.notifier.ready(self.status_text())
            return False
        except Exception as exc:
            log.error(
                "daemon.reload_failed",
                exc_info=True,
                extra={
                    "syncd_fields": {
                        "config": self.config_path,
                        "kind": type(exc).__name__,
                        "kept": "the previous config",
                    }
                },
            )
            self.notifier.ready(self.status_text())
            return False
        old = self.config
        if new.logging != old.logging:
            setup_logging(new.logging)
        self.config = new  # the running cycle keeps the config it started with
        assert self._scheduler is not None
        # The machine's zone counts too: `timedatectl set-timezone` and a reload move a cron line.
        changed = new.schedule != old.schedule or zone != self._zone
        if changed:
            self._zone = zone
            self._scheduler.reschedule_job(JOB_ID, trigger=build_trigger(new.schedule, zone))
            self._scheduler.modify_job(JOB_ID, misfire_grace_time=misfire_grace(new.schedule))
        event(
            log,
            "daemon.reloaded",
            config=self.config_path,
            schedule=describe_schedule(new.schedule),
            timezone=zone_name(zone),
            schedule_changed=changed,
        )
        if changed:
            self._announce_next()  # the daemon.next_cycle line a changed schedule deserves
        self.notifier.ready(self.status_text())
        return True

    # -------------------------------------------------------------- the cycle job

    def _cycle(self) -> None:
        """One scheduled run, in the executor thread. Never raises: the daemon keeps going."""
        if self.stop.is_set():
            return
        self._busy.set()
        config = self.config
        started = datetime.now().astimezone()
        self.notifier.status(f"cycle running since {started:%H:%M:%S}; {self._last_outcome}")
        cycle_id = new_cycle_id()
        # Entered by hand so that the failure lines below carry the cycle id too.
        context = cycle_context(cycle_id)
        context.__enter__()
        try:
            result = self.runner(
                config,
                CycleOptions(
                    mode="apply",
                    stop=self.stop,
                    heartbeat=self.heartbeat,
                    cycle_id=cycle_id,
                    reporter=StatusFiles(config),
                ),
            )
        except SyncdError as exc:
            ended = datetime.now().astimezone()
            event(
                log, "daemon.cycle_failed", logging.ERROR, kind=type(exc).__name__, reason=str(exc)
            )
            self._last_outcome = failure_status(exc, ended, self._last_ok)
        except Exception as exc:
            ended = datetime.now().astimezone()
            # Not a failure syncd explains itself: a bug. The traceback is for the report.
            log.error(
                "daemon.cycle_failed",
                exc_info=True,
                extra={
                    "syncd_fields": {
                        "kind": type(exc).__name__,
                        "reason": str(exc),
                        "bug": "please report this with the log",
                    }
                },
            )
            self._last_outcome = failure_status(exc, ended, self._last_ok)
        else:
            ended = datetime.now().astimezone()
            if result.ran_to_end:  # a stopped cycle is not a success (see status.json)
                self._last_ok = ended
            self._last_outcome = cycle_status(result, ended)
        finally:
            context.__exit__(None, None, None)
            self.cycles += 1
            self._busy.clear()
        if not self.stop.is_set():
            self._announce_next()  # logged before STATUS= says the cycle is over
        self.notifier.status(self.status_text())
        self._wake()  # a stop may be waiting for this cycle

    def heartbeat(self) -> None:
        """Called by the engine during long cycles: a watchdog ping, at most every half interval."""
        interval = self.notifier.watchdog_interval()
        if interval is None:
            return
        now = time.monotonic()
        if now - self._last_ping >= interval / 2:
            self._last_ping = now
            self.notifier.watchdog()

    def status_text(self) -> str:
        """The STATUS= line: the last cycle's outcome and, unless stopping, the next run."""
        if self.stop.is_set():
            return self._last_outcome
        return self._last_outcome + self._next_run_text()

    def _next_run_text(self) -> str:
        when = self.next_cycle()
        return f"; next {clock(when)}" if when is not None else ""

    def next_cycle(self) -> datetime | None:
        """When the scheduler starts the next cycle, in the schedule's zone (None: not running).

        Right after a run was handed to the executor the scheduler has already moved this on:
        it holds its job store lock, which ``get_job`` takes too, until it has.
        """
        job = self._scheduler.get_job(JOB_ID) if self._scheduler is not None else None
        when: datetime | None = job.next_run_time if job is not None else None
        if when is None or self._zone is None:
            return when
        # In the schedule's zone also when it was set from the machine's clock (run_at_start).
        return when.astimezone(self._zone)

    def _announce_next(self) -> None:
        """``daemon.next_cycle at=...`` in the log and ``next_cycle`` in status.json."""
        when = self.next_cycle()
        event(log, "daemon.next_cycle", at=format_moment(when) if when else None)
        self._record_next(when)

    def _record_next(self, when: datetime | None) -> None:
        try:
            next_cycle_changed(self.config, when)
        except OSError as exc:  # status.json is for monitoring; the daemon keeps going
            event(
                log,
                "daemon.status_unwritable",
                logging.WARNING,
                path=status_path(self.config),
                reason=exc.strerror or str(exc),
            )

    def _on_skipped(self, job_event: JobEvent) -> None:
        self.skipped += 1
        if isinstance(job_event, JobSubmissionEvent):
            times = job_event.scheduled_run_times
            reason = "the previous cycle is still running"
        else:
            assert isinstance(job_event, JobExecutionEvent)
            times = [job_event.scheduled_run_time]
            reason = "the daemon was late (suspended or overloaded)"
        event(
            log,
            "daemon.cycle_skipped",
            logging.WARNING,
            due=",".join(f"{t:%Y-%m-%dT%H:%M:%S%z}" for t in times) or None,
            reason=reason,
        )

    # -------------------------------------------------------------- watchdog

    def _watchdog_loop(self, interval: float) -> None:
        """Ping while the main loop is alive; a main loop stuck for a whole WatchdogSec is not."""
        withheld = False
        while not self._finished.wait(interval):
            if time.monotonic() - self._alive <= 2 * interval:
                self._last_ping = time.monotonic()
                self.notifier.watchdog()
                withheld = False
            elif not withheld:
                withheld = True
                event(
                    log,
                    "daemon.watchdog_withheld",
                    logging.ERROR,
                    reason="the main loop has not run for a whole watchdog period",
                )
