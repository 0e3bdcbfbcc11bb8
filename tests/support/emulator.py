"""The Hybridbox emulator as a real subprocess, for tests and benchmarks.

``RunningEmulator`` starts ``python -m syncd.emulator --port 0 ...``, reads the port from the one
line the emulator prints when it listens, writes the bearer token to a 0600 file in a private temp
directory, and talks to the admin API (``/_emulator/...``) for the helpers. It stops the process
with SIGTERM (then SIGKILL after a few seconds) on exit::

    with RunningEmulator(max_batch=50, domains=("example.com", "example.org")) as emu:
        emu.set_faults(fail_rate=0.5)
        ... point syncd at emu.url with emu.token_file and emu.account_id ...
        assert emu.stats()["bulk"]["requests"] == 3

Keyword arguments other than the named ones are emulator options: ``fail_rate=0.1`` becomes
``--fail-rate 0.1``, ``forbid_create=True`` becomes ``--forbid-create``.

Pytest fixtures, meant to be imported into ``tests/conftest.py``::

    from tests.support.emulator import emulator, emulator_session, make_emulator  # noqa: F401

* ``emulator``: a RunningEmulator with default options (domain ``example.com``), shared by the
  whole session but reset (mailboxes, faults, statistics) before each test, so it costs
  nothing per test;
* ``make_emulator(**options)``: a fresh emulator of its own for this test (custom options,
  ``--state``, ``--preload``, restarts); all are stopped when the test ends.
"""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import pytest

from syncd.emulator import DEFAULT_ACCOUNT_ID, LISTENING_PREFIX

TEST_TOKEN = "emulator-test-token-4f9d2c"
STARTUP_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0
REPO_ROOT = Path(__file__).resolve().parents[2]


class EmulatorError(RuntimeError):
    """The emulator did not start, or an admin call failed."""


class RunningEmulator:
    """One emulator subprocess; a context manager (``start`` / ``stop`` also work by hand)."""

    def __init__(
        self,
        *,
        domains: Sequence[str] = ("example.com",),
        token: str = TEST_TOKEN,
        account_id: str = DEFAULT_ACCOUNT_ID,
        state: Path | None = None,
        preload: Path | None = None,
        extra_args: Sequence[str] = (),
        **options: Any,
    ) -> None:
        self.domains = tuple(domains)
        self.domain = self.domains[0]
        self.token = token
        self.account_id = account_id
        self.state = state
        self.preload = preload
        self.extra_args = tuple(extra_args)
        self.options = dict(options)
        self.workdir = Path(tempfile.mkdtemp(prefix="hybridbox-emulator-"))
        self.token_file = self.workdir / "token"
        self.stderr_path = self.workdir / "stderr.log"
        self.url = ""
        self.host = ""
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None
        self._admin: httpx.Client | None = None
        _write_private(self.token_file, token + "\n")

    # ------------------------------------------------------------------ lifecycle

    @property
    def api_url(self) -> str:
        """The base of the account's routes: ``{url}/v1/public/accounts/{account_id}``."""
        return f"{self.url}/v1/public/accounts/{self.account_id}"

    def command(self) -> list[str]:
        args = [sys.executable, "-m", "syncd.emulator", "--host", "127.0.0.1", "--port", "0"]
        args += ["--account-id", self.account_id, "--token-file", str(self.token_file)]
        for domain in self.domains:
            args += ["--domain", domain]
        if self.state is not None:
            args += ["--state", str(self.state)]
        if self.preload is not None:
            args += ["--preload", str(self.preload)]
        for name, value in self.options.items():
            flag = "--" + name.replace("_", "-")
            if value is True:
                args.append(flag)
            elif value is False or value is None:
                continue
            elif isinstance(value, list | tuple):
                args += [flag, ",".join(str(item) for item in value)]
            else:
                args += [flag, str(value)]
        return args + list(self.extra_args)

    def start(self) -> RunningEmulator:
        if self.process is not None:
            raise EmulatorError("the emulator is already running")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        with self.stderr_path.open("ab") as stderr:
            self.process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                cwd=self.workdir,
                env=env,
            )
        self.returncode = None
        try:
            line = self._read_listening_line()
        except BaseException:
            self._terminate()
            raise
        # "hybridbox-emulator listening on http://HOST:PORT account=... domains=..."
        self.url = line[len(LISTENING_PREFIX) :].split()[0]
        self.host, _, port = self.url.removeprefix("http://").rpartition(":")
        self.port = int(port)
        self._admin = httpx.Client(base_url=self.url, timeout=10.0)
        return self

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after a few seconds; returns the exit status."""
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        self._terminate()
        return self.returncode

    def restart(self) -> RunningEmulator:
        """Stop and start again with the same options (a new port); state survives with --state."""
        self.stop()
        return self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> RunningEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def _read_listening_line(self) -> str:
        assert self.process is not None and self.process.stdout is not None
        stdout = self.process.stdout
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        buffer = b""
        with selectors.DefaultSelector() as selector:
            selector.register(stdout, selectors.EVENT_READ)
            while b"\n" not in buffer:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise EmulatorError(
                        f"the emulator printed no listening line in {STARTUP_TIMEOUT_S} s; "
                        f"stderr:\n{self.stderr()}"
                    )
                if not selector.select(remaining):
                    continue
                chunk = os.read(stdout.fileno(), 4096)
                if not chunk:
                    status = self.process.wait(STOP_TIMEOUT_S)
                    raise EmulatorError(
                        f"the emulator exited with status {status} before listening; "
                        f"command: {' '.join(self.command())}\nstderr:\n{self.stderr()}"
                    )
                buffer += chunk
        line = buffer.split(b"\n", 1)[0].decode()
        if not line.startswith(LISTENING_PREFIX):
            raise EmulatorError(f"unexpected first line from the emulator: {line!r}")
        return line

    def _terminate(self) -> None:
        process = self.process
        if process is None:
            return
        self.process = None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()
        self.returncode = process.returncode

    # ------------------------------------------------------------------ admin API helpers

    def admin(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call ``/_emulator{path}``; returns the JSON answer, raises EmulatorError if not 2xx."""
        if self._admin is None:
            raise EmulatorError("the emulator is not running")
        response = self._admin.request(method, f"/_emulator{path}", **kwargs)
        if not response.is_success:
            raise EmulatorError(
                f"{method} /_emulator{path} answered {response.status_code}: {response.text}"
            )
        return response.json()

    def faults(self) -> dict[str, Any]:
        result: dict[str, Any] = self.admin("GET", "/faults")
        return result

    def set_faults(self, **faults: Any) -> dict[str, Any]:
        """Change fault switches (names as the options, e.g. ``fail_rate=0.2``); returns all."""
        result: dict[str, Any] = self.admin("PUT", "/faults", json=faults)
        return result

    def mailboxes(self, domain: str | None = None) -> list[dict[str, Any]]:
        """Every mailbox (of one domain, if given), in creation order, as the API shows them."""
        params = {"domain": domain} if domain else None
        items: list[dict[str, Any]] = self.admin("GET", "/mailboxes", params=params)["items"]
        return items

    def add_mailbox(
        self,
        local_part: str,
        first_name: str = "Existing",
        last_name: str = "Person",
        *,
        domain: str | None = None,
        aliases: Sequence[str] = (),
        **extra: Any,
    ) -> dict[str, Any]:
        """Create a mailbox behind syncd's back; returns it. Raises EmulatorError if refused."""
        record: dict[str, Any] = {
            "local_part": local_part,
            "first_name": first_name,
            "last_name": last_name,
            "domain": domain or self.domain,
            "aliases": list(aliases),
            **extra,
        }
        mailbox: dict[str, Any] = self.admin("POST", "/mailboxes", json=record)
        return mailbox

    def add_mailboxes(self, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Create many behind syncd's back; returns ``{"created": [...], "failed": [...]}``."""
        result: dict[str, Any] = self.admin("POST", "/mailboxes", json=list(records))
        return result

    def stats(self) -> dict[str, Any]:
        """Counters: ``requests.total``, ``requests.by_route``, ``bulk.items``, ``mailboxes``..."""
        result: dict[str, Any] = self.admin("GET", "/stats")
        return result

    def requests(self) -> list[dict[str, Any]]:
        """The last 1,000 public requests (route, status, fault, item counts), oldest first."""
        items: list[dict[str, Any]] = self.admin("GET", "/requests")["items"]
        return items

    def reset(self, *, mailboxes: bool = True, faults: bool = True, stats: bool = True) -> None:
        """Back to the start: preloaded mailboxes only, the options' faults, zero counters."""
        self.admin(
            "POST", "/reset", json={"mailboxes": mailboxes, "faults": faults, "stats": stats}
        )

    def client(self, **kwargs: Any) -> httpx.Client:
        """An httpx client for the public API: base URL ``api_url`` and the bearer token."""
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        kwargs.setdefault("timeout", 10.0)
        return httpx.Client(base_url=self.api_url, headers=headers, **kwargs)


def _write_private(path: Path, text: str) -> None:
    """Write a secret file that only its owner can read (mode 0600 from the start)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


# ------------------------------------------------------------------------------ pytest fixtures


@pytest.fixture(scope="session")
def emulator_session() -> Iterator[RunningEmulator]:
    """One emulator with default options for the whole session (use ``emulator`` in tests)."""
    with RunningEmulator() as running:
        yield running


@pytest.fixture
def emulator(emulator_session: RunningEmulator) -> RunningEmulator:
    """The session's emulator, reset to empty with no faults and zero counters."""
    if emulator_session.process is None or emulator_session.process.poll() is not None:
        emulator_session.stop()
        emulator_session.start()
    emulator_session.reset()
    return emulator_session


@pytest.fixture(scope="session")
def domains_emulator_session() -> Iterator[RunningEmulator]:
    """One emulator serving three domains for the whole session (see ``domains_emulator``)."""
    with RunningEmulator(domains=("example.com", "labs.example.com", "example.de")) as running:
        yield running


@pytest.fixture
def domains_emulator(domains_emulator_session: RunningEmulator) -> RunningEmulator:
    """The session's three-domain emulator, reset to empty with no faults and zero counters."""
    running = domains_emulator_session
    if running.process is None or running.process.poll() is not None:
        running.stop()
        running.start()
    running.reset()
    return running


MakeEmulator = Callable[..., RunningEmulator]


@pytest.fixture
def make_emulator() -> Iterator[MakeEmulator]:
    """A factory: ``make_emulator(max_batch=10, state=path)`` starts one; all stop at test end."""
    started: list[RunningEmulator] = []

    def make(**options: Any) -> RunningEmulator:
        running = RunningEmulator(**options)
        started.append(running)
        return running.start()

    yield make
    for running in started:
        running.close()
