"""``syncd run``: the daemon as systemd runs it, and its scheduling rules in-process.

The subprocess tests start ``syncd --config FILE run`` with ``NOTIFY_SOCKET`` pointing at a datagram
socket the test reads (standing in for systemd) and ``WATCHDOG_USEC`` small, against the Hybridbox
emulator. The in-process tests drive :class:`syncd.service._daemon.Daemon` with a fake cycle runner,
for what would be slow or racy through a process (an overlapping run, a failing cycle).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from tzlocal import reload_localzone

from syncd.config import Config, ScheduleConfig, parse_config
from syncd.cycle import CycleOptions, CycleResult, Plan
from syncd.errors import HybridboxUnavailable
from syncd.model import ReadReport
from syncd.service import Daemon, Notifier, next_cycle_times
from tests.support.emulator import RunningEmulator

REPO_ROOT = Path(__file__).resolve().parents[2]
# syncd has no __main__.py (yet): run the CLI's main() the way the console script does.
SYNCD = [sys.executable, "-c", "from syncd.cli._commands import main; raise SystemExit(main())"]
WATCHDOG_USEC = 400_000

# ------------------------------------------------------------------------------ helpers


class NotifyListener:
    """A bound AF_UNIX datagram socket standing in for systemd; keeps every message it got."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[str] = []

    def close(self) -> None:
        self.sock.close()

    def _receive(self, timeout: float) -> str | None:
        self.sock.settimeout(max(timeout, 0.001))
        try:
            message = self.sock.recv(4096).decode("utf-8")
        except TimeoutError:
            return None
        self.messages.append(message)
        return message

    def wait_for(self, predicate: Callable[[str], bool], timeout: float = 10.0) -> str:
        """The first message from now on for which ``predicate`` holds."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            message = self._receive(remaining)
            if message is not None and predicate(message):
                return message
        raise AssertionError(f"no such notification in {timeout}s; got {self.messages[-10:]}")

    def drain(self, duration: float) -> list[str]:
        """Everything that arrives within ``duration`` seconds."""
        got: list[str] = []
        deadline = time.monotonic() + duration
        while (remaining := deadline - time.monotonic()) > 0:
            message = self._receive(remaining)
            if message is not None:
                got.append(message)
        return got


@contextlib.contextmanager
def draining(notify: NotifyListener) -> Iterator[None]:
    """Keep reading notifications, as systemd does, while the test does something slow: the
    kernel queues only a few datagrams (net.unix.max_dgram_qlen), then the daemon's sends wait."""
    done = threading.Event()

    def drain() -> None:
        while not done.is_set():
            notify.drain(0.05)

    thread = threading.Thread(target=drain, name="test-notify-drain")
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def fields(message: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in message.splitlines())


def has(key: str, value: str | None = None) -> Callable[[str], bool]:
    def check(message: str) -> bool:
        found = fields(message).get(key)
        return found is not None and (value is None or found.startswith(value))

    return check


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifyListener]:
    listener = NotifyListener(tmp_path / "notify.sock")
    yield listener
    listener.close()


def write_people(path: Path, count: int, *, first_id: int = 1) -> None:
    lines = ["id,first,last"]
    lines += [f"E{n:04d},Anna{n},Meier" for n in range(first_id, first_id + count)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def config_data(
    tmp_path: Path, emulator: RunningEmulator | None, **overrides: Any
) -> dict[str, Any]:
    token_file = tmp_path / "token"
    if emulator is not None:
        token_file = emulator.token_file
    elif not token_file.exists():
        token_file.touch(mode=0o600)
        token_file.write_text("not-a-real-token\n")
    data: dict[str, Any] = {
        "source": {
            "type": "csv",
            "path": str(tmp_path / "people.csv"),
            "columns": {"anchor": "id", "first_name": "first", "last_name": "last"},
        },
        "hybridbox": {
            "url": emulator.url if emulator else "http://127.0.0.1:9",
            "account_id": emulator.account_id
            if emulator
            else "7c0e6e1a-2f4b-4c8e-9d3a-5b1f0e2d4c6a",
            "domain": emulator.domain if emulator else "example.com",
            "token_file": str(token_file),
            "timeout_s": 5,
            "retry_budget_s": 5,
        },
        "state": {"path": str(tmp_path / "state" / "state.db")},
        "logging": {"file": str(tmp_path / "syncd.log"), "stderr": False},
        "safety": {"max_creates_percent": 10000},
        "schedule": {"every": "10s"},
    }
    for section, values in overrides.items():
        data[section] = {**data.get(section, {}), **values}
    return data


def write_config(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def start_daemon(config: Path, notify: NotifyListener, tmp_path: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(
        NOTIFY_SOCKET=str(notify.path),
        WATCHDOG_USEC=str(WATCHDOG_USEC),
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])),
    )
    env.pop("WATCHDOG_PID", None)
    with (tmp_path / "daemon.stderr").open("ab") as stderr:
        return subprocess.Popen(
            [*SYNCD, "--config", str(config), "run"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=env,
            cwd=tmp_path,
        )


@pytest.fixture
def daemons() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Daemons a test starts; killed if the test left them running."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def log_events(tmp_path: Path, name: str, file: str = "syncd.log") -> list[str]:
    path = tmp_path / file
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    return [line for line in text.splitlines() if f" {name} " in f"{line} "]


def state_rows(tmp_path: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(tmp_path / "state" / "state.db") as conn:
        return conn.execute(sql).fetchall()


def status_json(tmp_path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((tmp_path / "state" / "status.json").read_text())
    return data


def syncd_command(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SYNCD, "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        check=False,
    )


# ------------------------------------------------------------------------------ as systemd runs it


def test_ready_status_watchdog_reload_and_stop(
    tmp_path: Path,
    notify: NotifyListener,
    make_emulator: Callable[..., RunningEmulator],
    daemons: list[subprocess.Popen[bytes]],
) -> None:
    emulator = make_emulator()
    write_people(tmp_path / "people.csv", 3)
    good = config_data(tmp_path, emulator)
    config = write_config(tmp_path / "syncd.yaml", good)
    daemon = start_daemon(config, notify, tmp_path)
    daemons.append(daemon)

    ready = notify.wait_for(has("READY", "1"))
    assert "next" in fields(ready)["STATUS"] or "ready" in fields(ready)["STATUS"]
    first = notify.wait_for(has("STATUS", "last cycle ok"))
    assert "read=3 created=3 failed=0" in fields(first)["STATUS"]
    assert "; next " in fields(first)["STATUS"]
    assert len(emulator.mailboxes()) == 3

    # Watchdog pings every WATCHDOG_USEC/2 while idle: several in a second.
    pings = [m for m in notify.drain(1.0) if has("WATCHDOG", "1")(m)]
    assert len(pings) >= 3

    # logrotate moves the file away; the daemon's next lines go to a new file of the old name.
    (tmp_path / "syncd.log").rename(tmp_path / "syncd.log.1")

    # A broken config on SIGHUP is refused; the daemon keeps the old one and keeps cycling.
    write_people(tmp_path / "people.csv", 4)
    write_config(config, {**good, "schedule": {"every": "10s", "cron": "* * * * *"}})
    daemon.send_signal(signal.SIGHUP)
    notify.wait_for(has("RELOADING", "1"))
    notify.wait_for(has("READY", "1"))
    failed = log_events(tmp_path, "daemon.reload_failed")
    assert len(failed) == 1 and "schedule" in failed[0] and "kept=" in failed[0]
    second = notify.wait_for(has("STATUS", "last cycle ok"), timeout=15)
    assert "read=4 created=1" in fields(second)["STATUS"]
    assert daemon.poll() is None

    started = time.monotonic()
    daemon.send_signal(signal.SIGTERM)
    notify.wait_for(has("STOPPING", "1"))
    assert daemon.wait(10) == 0
    assert time.monotonic() - started < 5
    assert len(log_events(tmp_path, "daemon.started", "syncd.log.1")) == 1
    assert len(log_events(tmp_path, "cycle.summary", "syncd.log.1")) == 1
    assert len(log_events(tmp_path, "cycle.summary")) == 1
    stopped = log_events(tmp_path, "daemon.stopped")
    assert len(stopped) == 1 and "reason=SIGTERM" in stopped[0]
    assert len(emulator.mailboxes()) == 4


def test_sigterm_during_a_slow_cycle_records_whole_batches_and_restart_duplicates_nothing(
    tmp_path: Path,
    notify: NotifyListener,
    make_emulator: Callable[..., RunningEmulator],
    daemons: list[subprocess.Popen[bytes]],
) -> None:
    emulator = make_emulator(latency_ms=300)
    write_people(tmp_path / "people.csv", 50)
    data = config_data(tmp_path, emulator, hybridbox={"batch_size": 5})
    config = write_config(tmp_path / "syncd.yaml", data)
    daemon = start_daemon(config, notify, tmp_path)
    daemons.append(daemon)
    notify.wait_for(has("READY", "1"))
    notify.wait_for(has("STATUS", "cycle running"))
    # The daemon's own log says when the first batch is in (asking the emulator would queue
    # behind the slow requests).
    deadline = time.monotonic() + 20
    while len(log_events(tmp_path, "mailbox.created")) < 5:
        assert time.monotonic() < deadline, "no batch was created in 20s"
        time.sleep(0.02)

    daemon.send_signal(signal.SIGTERM)
    notify.wait_for(has("STOPPING", "1"))
    assert daemon.wait(10) == 0

    created_remote = {m["primary_email"] for m in emulator.mailboxes()}
    assert 5 <= len(created_remote) < 50, "the stop did not cut the cycle short"
    states = dict(state_rows(tmp_path, "SELECT state, count(*) FROM mailboxes GROUP BY state"))
    assert "intent" not in states, f"an interrupted batch was left unrecorded: {states}"
    assert states.get("created", 0) == len(created_remote)
    assert log_events(tmp_path, "daemon.stopped")

    # Stopped, not ok: in the summary, the runs table, status.json, STATUS= and `syncd status`.
    summary = log_events(tmp_path, "cycle.summary")
    assert len(summary) == 1 and " outcome=stopped " in summary[0], summary
    # Four batches were on the wire when the stop came (hybridbox.max_in_flight's default):
    # each was finished and recorded, above.
    assert " in_flight_max=4 " in summary[0], summary
    assert state_rows(tmp_path, "SELECT outcome, exit_code FROM runs") == [("stopped", 0)]
    status = status_json(tmp_path)
    assert (status["last_outcome"], status["running"], status["next_cycle"]) == (
        "stopped",
        False,
        None,
    )
    assert "last_success" not in status, "a stopped cycle is not a success"
    notify.drain(0.2)
    assert any(has("STATUS", "last cycle stopped ")(m) for m in notify.messages), notify.messages
    shown = syncd_command(config, "status")
    assert shown.returncode == 2, shown.stderr  # no success yet: stale
    assert "last outcome: stopped (a stop cut the cycle short" in shown.stdout
    assert "next cycle:   none from syncd" in shown.stdout
    assert " stopped " in shown.stdout.split("\n\n")[-1]  # the runs table
    as_json = json.loads(syncd_command(config, "status", "--format", "json").stdout)
    assert (as_json["last_outcome"], as_json["next_cycle"]) == ("stopped", None)

    # The next run finishes the job without creating anyone twice.
    apply = syncd_command(config, "apply")
    assert apply.returncode == 0, apply.stderr
    addresses = [m["primary_email"] for m in emulator.mailboxes()]
    assert len(addresses) == 50 == len(set(addresses))
    assert state_rows(tmp_path, "SELECT count(*) FROM mailboxes WHERE state = 'created'") == [(50,)]
    assert status_json(tmp_path)["last_outcome"] == "ok"
    assert "last_success" in status_json(tmp_path)


def test_the_daemon_logs_and_records_its_next_cycle_and_forgets_it_when_it_stops(
    tmp_path: Path,
    notify: NotifyListener,
    make_emulator: Callable[..., RunningEmulator],
    daemons: list[subprocess.Popen[bytes]],
) -> None:
    emulator = make_emulator()
    write_people(tmp_path / "people.csv", 2)
    data = config_data(tmp_path, emulator)
    # Far from this machine's zone, and cron's Sunday: the answer shows both.
    data["schedule"] = {"cron": "0 3 * * 0", "timezone": "Pacific/Auckland"}
    config = write_config(tmp_path / "syncd.yaml", data)
    daemon = start_daemon(config, notify, tmp_path)
    daemons.append(daemon)
    notify.wait_for(has("STATUS", "last cycle ok"))  # run_at_start, whatever the cron says

    schedule = ScheduleConfig(cron="0 3 * * 0", timezone="Pacific/Auckland")
    expected = next_cycle_times(schedule, datetime.now(UTC), 1)[0].isoformat()
    assert expected[10:19] == "T03:00:00" and expected[-6:] in ("+12:00", "+13:00")
    assert datetime.fromisoformat(expected).strftime("%a") == "Sun"
    announced = log_events(tmp_path, "daemon.next_cycle")
    assert len(announced) == 2, announced  # at the start (the run_at_start cycle), after it
    # The first is the run_at_start cycle: now, said in the schedule's zone too.
    assert announced[0].split(" at=")[1][-6:] in ("+12:00", "+13:00")
    assert announced[-1].endswith(f" daemon.next_cycle at={expected}")
    assert log_events(tmp_path, "cycle.summary")[0] < announced[-1]  # after the cycle
    assert status_json(tmp_path)["next_cycle"] == expected
    with draining(notify):
        shown = syncd_command(config, "status")
        as_json = json.loads(syncd_command(config, "status", "--format", "json").stdout)
    assert f"next cycle:   {expected} (in " in shown.stdout, shown.stdout
    assert "last outcome: ok" in shown.stdout
    assert as_json["next_cycle"] == expected

    daemon.send_signal(signal.SIGTERM)
    notify.wait_for(has("STOPPING", "1"))
    assert daemon.wait(10) == 0
    assert status_json(tmp_path)["next_cycle"] is None
    assert "next cycle:   none from syncd" in syncd_command(config, "status").stdout


def _bad_cron(data: dict[str, Any], tmp_path: Path) -> None:
    data["schedule"] = {"cron": "61 * * * *"}


def _cron_sunday_as_8(data: dict[str, Any], tmp_path: Path) -> None:
    data["schedule"] = {"cron": "0 3 * * 8"}


def _unknown_zone(data: dict[str, Any], tmp_path: Path) -> None:
    data["schedule"] = {"every": "10s", "timezone": "Europe/Berln"}


def _state_unopenable(data: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "BLOCKER").write_text("a file where the state directory should be\n")
    data["state"]["path"] = str(tmp_path / "BLOCKER" / "state.db")


def _missing_secret(data: dict[str, Any], tmp_path: Path) -> None:
    data["hybridbox"]["token_file"] = str(tmp_path / "missing-token")


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (_bad_cron, "at 'schedule.cron'"),
        (_cron_sunday_as_8, "at 'schedule.cron'"),
        (_unknown_zone, "at 'schedule.timezone'"),
        (_state_unopenable, "state"),
        (_missing_secret, "token"),
    ],
    ids=["bad-cron", "weekday-8", "unknown-zone", "state-unopenable", "missing-secret"],
)
def test_config_unusable_at_start_exits_78_without_ready(
    tmp_path: Path,
    notify: NotifyListener,
    daemons: list[subprocess.Popen[bytes]],
    breakage: Callable[[dict[str, Any], Path], None],
    expected: str,
) -> None:
    data = config_data(tmp_path, None)
    breakage(data, tmp_path)
    config = write_config(tmp_path / "syncd.yaml", data)
    daemon = start_daemon(config, notify, tmp_path)
    daemons.append(daemon)
    assert daemon.wait(20) == 78
    assert not [m for m in notify.drain(0.2) if has("READY")(m)]
    stderr = (tmp_path / "daemon.stderr").read_text()
    assert expected in stderr, stderr


# ------------------------------------------------------------------------------ in-process rules


class FakeRunner:
    """Stands in for run_cycle: records calls; can block, raise, or return a result."""

    def __init__(self) -> None:
        self.calls: list[CycleOptions] = []
        self.release = threading.Event()
        self.release.set()
        self.entered = threading.Event()
        self.errors: list[BaseException] = []

    def __call__(self, config: Config, options: CycleOptions) -> CycleResult:
        self.calls.append(options)
        self.entered.set()
        assert options.heartbeat is not None
        options.heartbeat()
        self.release.wait(10)
        if self.errors:
            raise self.errors.pop(0)
        result = CycleResult("c0ffee00", "apply", datetime.now(), ReadReport(read=7), Plan())
        result.counts = {"read": 7, "created": 2, "failed": 0, "pending": 1, "quarantined": 0}
        return result


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def named(self, name: str) -> list[dict[str, Any]]:
        return [
            {**getattr(r, "syncd_fields", {}), "exc_info": r.exc_info}
            for r in self.records
            if r.getMessage() == name
        ]


@pytest.fixture
def captured() -> Iterator[Captured]:
    logger = logging.getLogger("syncd")
    handler, level = Captured(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def run_another(daemon: Daemon) -> None:
    """One more cycle now. The counter goes up just before the scheduler sees the last run
    end, and a run made due before that is skipped (as it should be): then ask again."""
    wanted = daemon.cycles + 1
    deadline = time.monotonic() + 5
    while daemon.cycles < wanted:
        assert time.monotonic() < deadline, "no further cycle ran in time"
        skipped = daemon.skipped
        daemon.schedule_now()

        def ran_or_skipped(since: int = skipped) -> bool:
            return daemon.cycles >= wanted or daemon.skipped > since

        with contextlib.suppress(AssertionError):
            wait_until(ran_or_skipped, 1.0)


@pytest.fixture
def in_process(tmp_path: Path) -> Iterator[Callable[..., tuple[Daemon, FakeRunner]]]:
    """Start a Daemon with a FakeRunner in a thread; stop it at the end of the test."""
    running: list[tuple[Daemon, threading.Thread]] = []

    def start(**schedule: Any) -> tuple[Daemon, FakeRunner]:
        data = config_data(tmp_path, None)
        data["schedule"] = schedule or {"every": "10s"}
        path = write_config(tmp_path / "syncd.yaml", data)
        runner = FakeRunner()
        daemon = Daemon(parse_config(data, path), path, Notifier(None), runner=runner)
        thread = threading.Thread(target=daemon.run, kwargs={"handle_signals": False})
        thread.start()
        running.append((daemon, thread))
        return daemon, runner

    yield start
    for daemon, thread in running:
        daemon.request_stop("test over")
        thread.join(10)
        assert not thread.is_alive()


def test_a_run_due_while_a_cycle_runs_is_skipped_not_queued(
    in_process: Callable[..., tuple[Daemon, FakeRunner]], captured: Captured
) -> None:
    daemon, runner = in_process()
    runner.release.clear()
    assert runner.entered.wait(5), "run_at_start did not start a cycle"
    daemon.schedule_now()
    wait_until(lambda: daemon.skipped == 1)
    runner.release.set()
    wait_until(lambda: daemon.cycles == 1)
    time.sleep(0.3)  # a queued run would start now
    assert len(runner.calls) == 1
    skipped = captured.named("daemon.cycle_skipped")
    assert len(skipped) == 1 and "still running" in skipped[0]["reason"]


def test_a_failing_cycle_is_logged_and_the_daemon_keeps_going(
    in_process: Callable[..., tuple[Daemon, FakeRunner]], captured: Captured
) -> None:
    daemon, runner = in_process()
    runner.release.clear()
    runner.errors = [HybridboxUnavailable("Hybridbox answered 503 five times"), KeyError("bug")]
    assert runner.entered.wait(5)
    runner.release.set()
    wait_until(lambda: daemon.cycles == 1)
    assert (
        daemon.status_text().startswith("last cycle failed")
        and "HybridboxUnavailable: Hybridbox answered 503" in daemon.status_text()
    )
    run_another(daemon)
    run_another(daemon)
    assert daemon.status_text().startswith("last cycle ok")
    failures = captured.named("daemon.cycle_failed")
    assert [f["kind"] for f in failures] == ["HybridboxUnavailable", "KeyError"]
    assert failures[0]["exc_info"] is None, "a SyncdError is explained, not traced"
    assert failures[1]["exc_info"] is not None, "an unexpected error keeps its traceback"
    assert all(options.stop is daemon.stop for options in runner.calls)


def test_sighup_with_a_valid_config_replaces_the_schedule(
    tmp_path: Path, in_process: Callable[..., tuple[Daemon, FakeRunner]], captured: Captured
) -> None:
    daemon, runner = in_process(every="10s", run_at_start=False)
    assert not runner.entered.wait(0.3), "run_at_start: false still ran a cycle at start"
    data = config_data(tmp_path, None, schedule={"every": "1h", "run_at_start": False})
    write_config(daemon.config_path, data)
    daemon.request_reload()
    wait_until(lambda: bool(captured.named("daemon.reloaded")))
    assert daemon.config.schedule.every == timedelta(hours=1)
    reloaded = captured.named("daemon.reloaded")[0]
    assert reloaded["schedule"] == "every 1h" and reloaded["schedule_changed"] is True


def test_stop_waits_for_the_cycle_in_flight_and_passes_the_stop_event(
    in_process: Callable[..., tuple[Daemon, FakeRunner]], captured: Captured
) -> None:
    daemon, runner = in_process()
    runner.release.clear()
    assert runner.entered.wait(5)
    daemon.request_stop("test")
    wait_until(lambda: bool(captured.named("daemon.stopping")))
    assert runner.calls[0].stop is not None
    wait_until(runner.calls[0].stop.is_set)
    time.sleep(0.2)
    assert not captured.named("daemon.stopped"), "stopped before the cycle ended"
    runner.release.set()
    wait_until(lambda: bool(captured.named("daemon.stopped")))
    assert daemon.cycles == 1


def test_run_at_start_with_a_cron_line_runs_at_once_then_waits_for_the_cron_time(
    in_process: Callable[..., tuple[Daemon, FakeRunner]], captured: Captured
) -> None:
    """A cron line says when; run_at_start still runs one cycle at the start, whatever its hours
    say (documented), and the daemon says when the next one is."""
    daemon, runner = in_process(cron="0 3 * * 0", timezone="Europe/Berlin")
    assert runner.entered.wait(5), "run_at_start did not run a cycle at the start"
    wait_until(lambda: len(captured.named("daemon.next_cycle")) == 2)
    expected = next_cycle_times(daemon.config.schedule, datetime.now(UTC), 1)[0]
    assert captured.named("daemon.next_cycle")[-1]["at"] == expected.isoformat()
    assert daemon.next_cycle() == expected
    time.sleep(0.3)
    assert len(runner.calls) == 1, "a second cycle ran before the cron time"


def test_without_run_at_start_the_first_cycle_waits_and_its_time_is_logged_at_start(
    in_process: Callable[..., tuple[Daemon, FakeRunner]], captured: Captured
) -> None:
    _, runner = in_process(cron="0 3 * * 7", timezone="Europe/Berlin", run_at_start=False)
    wait_until(lambda: bool(captured.named("daemon.next_cycle")))
    at = datetime.fromisoformat(captured.named("daemon.next_cycle")[0]["at"])
    assert at.strftime("%a %H:%M") == "Sun 03:00"  # 7 is Sunday, as 0 is
    assert at.utcoffset() in (timedelta(hours=1), timedelta(hours=2))
    assert not runner.entered.wait(0.3)
    started = captured.named("daemon.started")[0]
    assert (started["timezone"], started["run_at_start"]) == ("Europe/Berlin", False)


def test_a_stopped_cycle_is_said_so_and_is_not_the_last_success(
    in_process: Callable[..., tuple[Daemon, FakeRunner]], captured: Captured
) -> None:
    daemon, runner = in_process()
    assert runner.entered.wait(5)
    wait_until(lambda: daemon.cycles == 1)
    assert daemon.status_text().startswith("last cycle ok")
    runner.errors = [HybridboxUnavailable("down")]
    run_another(daemon)
    assert "; last ok " in daemon.status_text()
    ok_since = daemon.status_text().split("; last ok ")[1]

    def stopped_result(config: Config, options: CycleOptions) -> CycleResult:
        result = FakeRunner()(config, options)
        result.stopped_early = True
        return result

    daemon.runner = stopped_result
    run_another(daemon)
    assert daemon.status_text().startswith("last cycle stopped ")
    runner.errors = [HybridboxUnavailable("down again")]
    daemon.runner = runner
    run_another(daemon)
    assert daemon.status_text().split("; last ok ")[1] == ok_since, "the stop moved last ok"


@pytest.fixture
def machine_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Set the machine's zone through TZ (as tzlocal reads it); the real one again after."""

    def set_zone(name: str) -> None:
        monkeypatch.setenv("TZ", name)

    yield set_zone
    monkeypatch.undo()
    reload_localzone()


def test_a_reload_after_the_machines_zone_changed_moves_the_cron_schedule(
    in_process: Callable[..., tuple[Daemon, FakeRunner]],
    captured: Captured,
    machine_zone: Callable[[str], None],
) -> None:
    """No `schedule.timezone`: the machine's zone, read again on reload even when the config did
    not change (after `timedatectl set-timezone`), so the cron line does not stay in the old one."""
    machine_zone("Europe/Berlin")
    daemon, _ = in_process(cron="0 9 * * 1-5", run_at_start=False)
    wait_until(lambda: bool(captured.named("daemon.next_cycle")))
    before = datetime.fromisoformat(captured.named("daemon.next_cycle")[-1]["at"])
    machine_zone("America/New_York")
    daemon.request_reload()
    wait_until(lambda: bool(captured.named("daemon.reloaded")))
    reloaded = captured.named("daemon.reloaded")[0]
    assert (reloaded["schedule_changed"], reloaded["timezone"]) == (True, "America/New_York")
    after = datetime.fromisoformat(captured.named("daemon.next_cycle")[-1]["at"])
    assert (before.strftime("%H:%M"), after.strftime("%H:%M")) == ("09:00", "09:00")
    assert after.utcoffset() in (timedelta(hours=-4), timedelta(hours=-5))
    assert daemon.next_cycle() == after
