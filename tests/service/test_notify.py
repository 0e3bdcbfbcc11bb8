"""syncd.notify against real AF_UNIX datagram sockets, the way systemd listens for them."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.service import Notifier


class Listener:
    """A bound notify socket standing in for systemd; ``name`` is what goes in NOTIFY_SOCKET."""

    def __init__(self, sock: socket.socket, name: str) -> None:
        self.sock = sock
        self.name = name

    def receive(self) -> str:
        return self.sock.recv(4096).decode("utf-8")


@pytest.fixture
def path_listener(tmp_path: Path) -> Iterator[Listener]:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(5)
        yield Listener(sock, str(path))


@pytest.fixture
def abstract_listener() -> Iterator[Listener]:
    name = f"syncd-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        yield Listener(sock, "@" + name)


def test_each_call_sends_its_exact_datagram(path_listener: Listener) -> None:
    notifier = Notifier.from_env({"NOTIFY_SOCKET": path_listener.name})
    assert notifier.enabled

    notifier.ready()
    assert path_listener.receive() == "READY=1"
    notifier.ready(status="idle, next cycle 10:15")
    assert path_listener.receive() == "READY=1\nSTATUS=idle, next cycle 10:15"
    notifier.status("cycle c7f3: 120 people read")
    assert path_listener.receive() == "STATUS=cycle c7f3: 120 people read"
    notifier.watchdog()
    assert path_listener.receive() == "WATCHDOG=1"
    notifier.stopping()
    assert path_listener.receive() == "STOPPING=1"
    assert notifier.send(STATUS="x", ERRNO=5)
    assert path_listener.receive() == "STATUS=x\nERRNO=5"


def test_reloading_carries_the_monotonic_time(path_listener: Listener) -> None:
    notifier = Notifier.from_env({"NOTIFY_SOCKET": path_listener.name})
    before = time.monotonic_ns() // 1000
    notifier.reloading()
    after = time.monotonic_ns() // 1000

    first, second = path_listener.receive().split("\n")
    assert first == "RELOADING=1"
    key, value = second.split("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after


def test_abstract_socket(abstract_listener: Listener) -> None:
    notifier = Notifier.from_env({"NOTIFY_SOCKET": abstract_listener.name})
    notifier.ready(status="ready")
    assert abstract_listener.receive() == "READY=1\nSTATUS=ready"


def test_newlines_in_a_value_cannot_inject_assignments(path_listener: Listener) -> None:
    notifier = Notifier.from_env({"NOTIFY_SOCKET": path_listener.name})
    notifier.status("source failed\nREADY=1")
    assert path_listener.receive() == "STATUS=source failed READY=1"


def test_from_env_reads_the_process_environment(
    path_listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", path_listener.name)
    Notifier.from_env().ready()
    assert path_listener.receive() == "READY=1"


@pytest.mark.parametrize("value", [None, "", "relative/path", "vsock:2:1234"])
def test_without_a_usable_socket_every_call_is_a_no_op(value: str | None) -> None:
    env = {} if value is None else {"NOTIFY_SOCKET": value}
    notifier = Notifier.from_env(env)
    assert not notifier.enabled
    assert notifier.send(READY=1) is False
    notifier.ready()
    notifier.status("x")
    notifier.watchdog()
    notifier.reloading()
    notifier.stopping()


def test_a_send_error_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Our logger does not propagate once setup_logging ran elsewhere; make caplog see it.
    monkeypatch.setattr(logging.getLogger("syncd"), "propagate", True)
    notifier = Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    with caplog.at_level(logging.DEBUG, logger="syncd.notify"):
        assert notifier.send(READY=1) is False
        notifier.ready()
        notifier.watchdog()
    assert [r.getMessage() for r in caplog.records] == ["notify.failed"] * 3


def test_a_closed_listener_does_not_raise(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.close()  # the path stays, nobody listens: sendto fails with ECONNREFUSED
    assert Notifier.from_env({"NOTIFY_SOCKET": str(path)}).send(WATCHDOG=1) is False


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "120000000"}, 60.0),
        ({"WATCHDOG_USEC": "120000000", "WATCHDOG_PID": str(os.getpid())}, 60.0),
        ({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": ""}, 1.5),
        ({"WATCHDOG_USEC": "120000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
        ({}, None),
        ({"WATCHDOG_USEC": ""}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "2m"}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    assert Notifier.from_env(env).watchdog_interval() == expected


def test_watchdog_interval_does_not_need_a_socket() -> None:
    # systemd sets both together, but the interval is about the watchdog, not the socket.
    notifier = Notifier.from_env({"WATCHDOG_USEC": "10000000"})
    assert not notifier.enabled
    assert notifier.watchdog_interval() == 5.0
