"""The files under systemd/: the units pass ``systemd-analyze verify`` and ``security``, and the
logrotate rules parse and really rotate a log that syncd keeps writing.

Runs offline, without a running systemd (a container is fine). Needs ``systemd-analyze`` (Debian
package ``systemd``); the logrotate tests also need ``logrotate`` and are skipped without it.
"""

from __future__ import annotations

import grp
import gzip
import itertools
import logging
import os
import pwd
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from syncd.config import LoggingConfig
from syncd.logs import event, get_logger, setup_logging

SYSTEMD_DIR = Path(__file__).resolve().parents[2] / "systemd"
SERVICES = ["syncd.service", "syncd-once.service"]
UNITS = [*SERVICES, "syncd.timer"]
SYNCD_BIN = "/opt/syncd/venv/bin/syncd"
MAX_EXPOSURE = 1.5

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
LOGROTATE = shutil.which("logrotate") or next(
    (p for p in ("/usr/sbin/logrotate", "/sbin/logrotate") if os.access(p, os.X_OK)), None
)

pytestmark = pytest.mark.systemd
needs_analyze = pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze not installed")
needs_logrotate = pytest.mark.skipif(LOGROTATE is None, reason="logrotate not installed")


# ------------------------------------------------------------------------------------ helpers


def directives(unit: str) -> list[tuple[str, str, str]]:
    """(section, key, value) for every assignment in a unit file, in order, repeats kept."""
    section = ""
    result: list[tuple[str, str, str]] = []
    for raw in (SYSTEMD_DIR / unit).read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        result.append((section, key.strip(), value.strip()))
    return result


def values(unit: str, key: str) -> list[str]:
    return [value for _, k, value in directives(unit) if k == key]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": "", "LC_ALL": "C.UTF-8"}
    return subprocess.run(
        args, capture_output=True, text=True, errors="replace", env=env, timeout=60, check=False
    )


@pytest.fixture
def unit_dir(tmp_path: Path) -> Path:
    """The units copied next to a stub executable that stands in for every ExecStart/ExecReload.

    ``verify`` fails when a command does not exist on this host; /opt/syncd is not installed
    here and /bin/kill (procps) may be missing in a slim container. The paths themselves are
    checked in test_the_units_run_syncd_from_its_venv.
    """
    stub = tmp_path / "syncd"
    stub.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    stub.chmod(0o755)
    for unit in UNITS:
        text = (SYSTEMD_DIR / unit).read_text(encoding="utf-8")
        text = text.replace(SYNCD_BIN, str(stub)).replace("/bin/kill", str(stub))
        (tmp_path / unit).write_text(text, encoding="utf-8")
    return tmp_path


# ------------------------------------------------------------------------------- systemd-analyze


@needs_analyze
@pytest.mark.parametrize("unit", UNITS)
def test_verify_passes_without_warnings(unit_dir: Path, unit: str) -> None:
    assert SYSTEMD_ANALYZE is not None
    result = run(SYSTEMD_ANALYZE, "verify", "--man=no", "--generators=no", str(unit_dir / unit))
    # verify exits 0 even for an unknown key or a bad value ("..., ignoring"), so its output is
    # checked too. Lines about other units on this host (none here) are not our business.
    ours = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if str(unit_dir) in line or any(name in line for name in UNITS)
    ]
    assert result.returncode == 0, result.stderr
    assert ours == []


@needs_analyze
@pytest.mark.parametrize("unit", SERVICES)
def test_security_exposure_is_low(unit_dir: Path, unit: str) -> None:
    assert SYSTEMD_ANALYZE is not None
    result = run(SYSTEMD_ANALYZE, "security", "--offline=yes", "--no-pager", str(unit_dir / unit))
    assert result.returncode == 0, result.stderr
    match = re.search(rf"Overall exposure level for {re.escape(unit)}: (\d+\.\d+)", result.stdout)
    assert match, result.stdout
    exposure = float(match.group(1))
    failing = [line for line in result.stdout.splitlines() if line.startswith("✗")]
    assert exposure <= MAX_EXPOSURE, "\n".join(failing)


@needs_analyze
def test_the_timer_fires_every_15_minutes() -> None:
    assert SYSTEMD_ANALYZE is not None
    (calendar,) = values("syncd.timer", "OnCalendar")
    result = run(SYSTEMD_ANALYZE, "calendar", "--iterations=3", calendar)
    assert result.returncode == 0, result.stderr
    elapse = re.compile(r"^\s*(?:Next elapse|Iter\. #\d+): \w+ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)")
    stamps = [
        datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S")
        for match in map(elapse.match, result.stdout.splitlines())
        if match
    ]
    assert len(stamps) == 3, result.stdout
    assert {(b - a).total_seconds() for a, b in itertools.pairwise(stamps)} == {900}
    assert all(stamp.minute % 15 == 0 and stamp.second == 0 for stamp in stamps)


# ------------------------------------------------------------------------------ what the units say


def test_the_daemon_is_a_notify_service_with_a_watchdog() -> None:
    unit = "syncd.service"
    assert values(unit, "Type") == ["notify"]
    assert values(unit, "NotifyAccess") == ["main"]
    (watchdog,) = values(unit, "WatchdogSec")
    assert re.fullmatch(r"\d+s", watchdog) and int(watchdog[:-1]) >= 30
    assert values(unit, "ExecReload") == ["/bin/kill -HUP $MAINPID"]
    assert values(unit, "Restart") == ["on-failure"]
    # A configuration error (EX_CONFIG) must not turn into a restart loop.
    (prevent,) = values(unit, "RestartPreventExitStatus")
    assert "78" in prevent.split()
    assert values(unit, "TimeoutStopSec")


def test_the_units_run_syncd_from_its_venv() -> None:
    config = f"{SYNCD_BIN} --config /etc/syncd/syncd.yaml"
    assert values("syncd.service", "ExecStart") == [f"{config} run"]
    assert values("syncd-once.service", "ExecStart") == [f"{config} apply"]
    assert values("syncd-once.service", "Type") == ["oneshot"]


@pytest.mark.parametrize("unit", SERVICES)
def test_identity_directories_and_credentials(unit: str) -> None:
    user = values(unit, "User")
    assert (user and user != ["root"]) or values(unit, "DynamicUser") == ["yes"]
    assert values(unit, "StateDirectory") == ["syncd"]
    assert values(unit, "LogsDirectory") == ["syncd"]
    assert values(unit, "ConfigurationDirectory") == ["syncd"]
    assert values(unit, "ProtectSystem") == ["strict"]
    assert values(unit, "CapabilityBoundingSet") == [""]
    assert values(unit, "NoNewPrivileges") == ["yes"]
    assert values(unit, "RestrictAddressFamilies") == ["AF_UNIX AF_INET AF_INET6"]
    assert values(unit, "UMask") == ["0077"]
    credentials = dict(value.split(":", 1) for value in values(unit, "LoadCredential"))
    assert credentials == {
        "hybridbox-token": "/etc/syncd/credentials/hybridbox-token",
        "ldap-bind-password": "/etc/syncd/credentials/ldap-bind-password",
    }
    # The only SetCredential= lines are the empty defaults for a missing file: never a secret.
    assert sorted(values(unit, "SetCredential")) == [
        "hybridbox-token:\\n",
        "ldap-bind-password:\\n",
    ]


def test_the_one_shot_is_sandboxed_exactly_like_the_daemon() -> None:
    daemon_only = {
        "Type",
        "NotifyAccess",
        "ExecStart",
        "ExecReload",
        "WatchdogSec",
        "Restart",
        "RestartSec",
        "RestartPreventExitStatus",
        "TimeoutStartSec",
    }

    def sandbox(unit: str) -> list[tuple[str, str]]:
        return [
            (key, value)
            for section, key, value in directives(unit)
            if section == "Service" and key not in daemon_only
        ]

    assert sandbox("syncd-once.service") == sandbox("syncd.service")


def test_the_timer_starts_the_one_shot_not_the_daemon() -> None:
    assert values("syncd.timer", "Unit") == ["syncd-once.service"]
    assert values("syncd.timer", "Persistent") == ["true"]
    assert values("syncd.timer", "RandomizedDelaySec")
    assert values("syncd.timer", "WantedBy") == ["timers.target"]
    # The one-shot is started by the timer only; it must not be enabled on its own.
    assert not [key for section, key, _ in directives("syncd-once.service") if section == "Install"]


# ------------------------------------------------------------------------------------- logrotate


def logrotate_config(tmp_path: Path, log_dir: Path) -> Path:
    """The rules with the log path moved to ``log_dir`` and ``su`` set to the user running us."""
    text = (SYSTEMD_DIR / "syncd.logrotate").read_text(encoding="utf-8")
    assert "/var/log/syncd/*.log {" in text
    text = text.replace("/var/log/syncd/", f"{log_dir}/")
    if os.geteuid() == 0:
        me = f"su {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name}"
        text = text.replace("su syncd syncd", me)
    else:
        text = text.replace("su syncd syncd", "")  # an unprivileged logrotate cannot switch
    config = tmp_path / "syncd.logrotate"
    config.write_text(text, encoding="utf-8")
    config.chmod(0o644)  # logrotate ignores rule files that others can write
    return config


def logrotate(config: Path, state: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    assert LOGROTATE is not None
    result = run(LOGROTATE, *flags, "--state", str(state), str(config))
    assert result.returncode == 0, result.stderr
    assert "error:" not in result.stderr, result.stderr
    return result


def test_logrotate_rules_have_the_agreed_policy() -> None:
    lines = {
        line.strip()
        for line in (SYSTEMD_DIR / "syncd.logrotate").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.strip().startswith("#")
    }
    expected = {"weekly", "rotate 8", "compress", "delaycompress", "missingok", "notifempty"}
    assert expected <= lines
    assert not lines & {"copytruncate", "postrotate", "create"}


@needs_logrotate
def test_logrotate_parses_the_rules(tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    config = logrotate_config(tmp_path, log_dir)
    result = logrotate(config, tmp_path / "state", "--debug")
    assert f"rotating pattern: {log_dir}/*.log  weekly (8 rotations)" in result.stderr


@pytest.fixture
def restore_syncd_logger() -> Iterator[None]:
    logger = logging.getLogger("syncd")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    logger.handlers[:] = saved[0]
    logger.setLevel(saved[1])
    logger.propagate = saved[2]


@needs_logrotate
@pytest.mark.usefixtures("restore_syncd_logger")
def test_syncd_keeps_logging_across_a_real_rotation(tmp_path: Path) -> None:
    """No copytruncate, no postrotate: syncd's file handler follows the move by itself."""
    log_dir = tmp_path / "log"
    log_dir.mkdir(mode=0o750)
    config = logrotate_config(tmp_path, log_dir)
    setup_logging(LoggingConfig(file=log_dir / "syncd.log", stderr=False))
    log = get_logger("syncd.test")

    event(log, "test.before_first_rotation")
    logrotate(config, tmp_path / "state", "--force")
    assert not (log_dir / "syncd.log").exists()  # nocreate: syncd makes the next one itself
    event(log, "test.after_first_rotation")
    logrotate(config, tmp_path / "state", "--force")
    event(log, "test.after_second_rotation")

    def events(name: str) -> list[str]:
        opener = gzip.open if name.endswith(".gz") else open
        with opener(log_dir / name, "rt", encoding="utf-8") as file:
            return [line.split()[2] for line in file]

    assert events("syncd.log") == ["test.after_second_rotation"]
    assert events("syncd.log.1") == ["test.after_first_rotation"]  # delaycompress: still plain
    assert events("syncd.log.2.gz") == ["test.before_first_rotation"]
    assert sorted(p.name for p in log_dir.iterdir()) == [
        "syncd.log",
        "syncd.log.1",
        "syncd.log.2.gz",
    ]


# ------------------------------------------------------------------------------- systemd/README


def test_the_units_point_to_an_install_guide_that_covers_them() -> None:
    """Every unit that says "see systemd/README.md" gets a guide that installs it, loads its
    credentials, and checks it the way the tests do."""
    guide = (SYSTEMD_DIR / "README.md").read_text(encoding="utf-8")
    for unit in UNITS:
        if "see systemd/README.md" in (SYSTEMD_DIR / unit).read_text(encoding="utf-8"):
            assert re.search(rf"^cp .*systemd/{re.escape(unit)}\b", guide, re.M), unit
    copied = re.findall(
        r"(?<![\w/])systemd/([\w.-]+)", " ".join(re.findall(r"^cp .*$", guide, re.M))
    )
    assert copied and all((SYSTEMD_DIR / name).is_file() for name in copied), copied
    for unit in SERVICES:
        for credential in values(unit, "LoadCredential"):
            name, _, source = credential.partition(":")
            assert f"install -m 0600 /dev/stdin {source}" in guide, credential
            assert f"_credential: {name}" in guide, credential
    assert "systemd-analyze security --offline=yes" in guide
    assert "runuser -u syncd --" in guide
    assert "useradd --system" in guide and values("syncd.service", "User") == ["syncd"]
