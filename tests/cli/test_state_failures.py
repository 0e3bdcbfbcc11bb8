"""When the files under syncd fail it: a damaged or foreign state file, one syncd may not write,
a full disk, a log or metrics path that is a directory. Each ends in one message that says what,
where and what to do, with its documented exit code; never exit 70 with a traceback.

Full disks are real: a small tmpfs mounted for the test (as root; skipped otherwise) and, for any
user, a file-size limit (RLIMIT_FSIZE, which makes writes fail with EFBIG). Permissions are real
too: as root the test drops the capabilities that let root ignore them (setpriv), so that a file
of another user is as closed to syncd as it is to the service user.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.service.small_disk import fill, small_disk
from tests.support.site import REPO_ROOT, Site, people

EX_TEMPFAIL, EX_CONFIG = 75, 78
PAGE = 4096
# The capabilities that let root read and write any file and chmod anyone's.
ROOT_FILE_CAPABILITIES = "-dac_override,-dac_read_search,-fowner"


def run(
    site: Site,
    *args: str,
    prefix: Sequence[str] = (),
    file_size_limit: int | None = None,
) -> subprocess.CompletedProcess[str]:
    """``site.syncd(*args)``, optionally under a command prefix or a file-size limit."""

    def limit() -> None:
        if file_size_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    return subprocess.run(
        [*prefix, sys.executable, "-m", "syncd", "--config", str(site.config_path), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        timeout=120,
        check=False,
        preexec_fn=limit,
    )


def as_unprivileged(site: Site, *args: str) -> subprocess.CompletedProcess[str]:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv, to run syncd without root's file capabilities")
    prefix = ["setpriv", "--bounding-set", ROOT_FILE_CAPABILITIES, "--"]
    return run(site, *args, prefix=prefix)


def assert_explained(result: subprocess.CompletedProcess[str], code: int, *texts: str) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    for text in texts:
        assert text in result.stderr, result.stderr


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """16 MB: filled, it fails a cycle; freed, it holds 900 more people."""
    with small_disk(tmp_path / "disk", "16m") as mount_point:
        yield mount_point


# ------------------------------------------------------------------- a state syncd cannot use


def test_a_damaged_state_exits_78_and_says_to_restore_the_backup(site: Site) -> None:
    site.write_people(people(20))
    assert site.syncd("apply").returncode == 0
    data = bytearray(site.state_path.read_bytes())
    data[PAGE:] = b"\xa5" * (len(data) - PAGE)  # every page but the header page
    site.state_path.write_bytes(bytes(data))
    for command in ("apply", "status"):
        result = site.syncd(command)
        assert_explained(
            result,
            EX_CONFIG,
            f"the state database {site.state_path} is damaged",
            "restore the last backup",
        )
    assert len(site.emulator.mailboxes()) == 20


def test_a_file_that_is_no_sqlite_database_is_not_taken_for_a_state(site: Site) -> None:
    site.state_path.parent.mkdir()
    site.state_path.write_text("employee_id,first_name\nE1,Ada\n" * 50)
    site.state_path.chmod(0o644)
    site.write_people(people(1))
    result = site.syncd("apply")
    assert_explained(
        result,
        EX_CONFIG,
        f"the state database {site.state_path} is not a syncd state: it is no SQLite database",
        "check state.path",
    )
    assert site.emulator.mailboxes() == []
    assert "command.failed" in site.log_path.read_text()
    # Not syncd's file, so not narrowed to 0600 either (state.path may point at the export).
    assert site.state_path.stat().st_mode & 0o777 == 0o644


def test_an_empty_state_file_starts_a_new_state_with_a_warning(site: Site) -> None:
    # `install -m 0600 /dev/null state.db` is a way to give the state an owner in advance; a
    # state truncated by a failed copy looks the same, hence the warning.
    site.state_path.parent.mkdir()
    site.state_path.touch()
    site.write_people(people(2))
    result = site.syncd("apply")
    assert result.returncode == 0, result.stderr
    assert len(site.log_events("state.empty_file")) == 1
    assert "restore the backup" in site.log_events("state.empty_file")[0]
    assert len(site.emulator.mailboxes()) == 2


def test_a_state_path_that_is_a_directory_names_the_key(site: Site) -> None:
    site.state_path.mkdir(parents=True)
    site.write_people(people(1))
    result = site.syncd("apply")
    assert_explained(result, EX_CONFIG, f"at 'state.path': {site.state_path} is a directory")


def test_a_state_of_another_user_names_the_owner_and_the_chown(site: Site) -> None:
    """The admin's case: `sudo syncd apply` left a root-owned state that the service user cannot
    open. Here the roles are swapped (the files belong to nobody, syncd runs as root without
    its file capabilities): the same permission check, the same message."""
    site.write_people(people(2))
    assert site.syncd("apply").returncode == 0
    directory = site.state_path.parent
    os.chown(site.state_path, 65534, 65534)  # nobody
    result = as_unprivileged(site, "apply")
    assert_explained(
        result,
        EX_CONFIG,
        f"cannot open the state database {site.state_path}: Permission denied; "
        f"{site.state_path} belongs to nobody, not to root, the user syncd runs as",
        f"give them back with `chown -R root: {directory}`, and run syncd as root",
    )


def test_a_read_only_state_file_is_said_so(site: Site) -> None:
    site.write_people(people(2))
    assert site.syncd("apply").returncode == 0
    site.state_path.chmod(0o400)
    result = as_unprivileged(site, "apply")
    assert_explained(
        result,
        EX_CONFIG,
        f"cannot open the state database {site.state_path}: Permission denied; "
        f"{site.state_path} is not writable (mode 0o400)",
        f"`chmod u+w {site.state_path}`",
    )
    # Reading it is fine: `syncd status` needs no write.
    status = as_unprivileged(site, "status")
    assert status.returncode == 0, status.stderr


def test_a_state_directory_syncd_may_not_write_stops_at_the_lock(site: Site) -> None:
    site.write_people(people(1))
    assert site.syncd("apply").returncode == 0
    directory = site.state_path.parent
    (directory / "state.db.lock").unlink()
    directory.chmod(0o555)
    try:
        result = as_unprivileged(site, "apply")
    finally:
        directory.chmod(0o700)
    assert_explained(
        result,
        EX_CONFIG,
        f"cannot open the lock file {directory / 'state.db.lock'}: Permission denied; "
        f"{directory} is not writable (mode 0o555)",
    )


def test_a_state_on_a_read_only_file_system_is_said_so(site: Site, disk: Path) -> None:
    site.configure(state={"path": str(disk / "state.db")})
    site.write_people(people(2))
    assert site.syncd("apply").returncode == 0
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    result = site.syncd("apply")
    assert_explained(
        result,
        EX_CONFIG,
        f"{disk} is on a read-only file system",
        "put state.path on a writable file system",
    )


# ------------------------------------------------------------------------------ a full disk


def test_a_disk_that_fills_during_a_cycle_fails_it_cleanly_and_status_json_says_so(
    site: Site, disk: Path
) -> None:
    site.configure(state={"path": str(disk / "state.db")})
    site.write_people(people(5))
    assert site.syncd("apply").returncode == 0
    # Room for the cycle to start (a WAL page, its index, status.json), not to record 900 people.
    filler = fill(disk, leave=64 * 1024)
    site.write_people(people(900))
    result = site.syncd("apply")
    assert_explained(
        result,
        EX_TEMPFAIL,
        f"cannot write the state database {disk / 'state.db'}",
        f"df -h {disk}",
    )
    status = json.loads((disk / "status.json").read_text())
    assert status["running"] is False
    assert status["last_outcome"] == "error" and status["last_error"]["kind"] == "DiskError"
    assert len(site.log_events("command.failed")) == 1  # the log is on another disk
    assert len(site.emulator.mailboxes()) == 5  # nothing was sent that was not recorded first

    filler.unlink()
    again = site.syncd("apply")
    assert again.returncode == 0, again.stderr
    assert len(site.emulator.mailboxes()) == 900


def test_a_full_log_disk_is_said_once_and_the_cycle_still_runs(site: Site, disk: Path) -> None:
    log = disk / "syncd.log"
    site.configure(logging={"file": str(log)})
    site.write_people(people(3))
    fill(disk)
    result = site.syncd("apply")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count(f"syncd: cannot write the log file {log}: No space left") == 1
    assert "Traceback" not in result.stderr
    assert len(site.emulator.mailboxes()) == 3


def test_a_file_size_limit_fails_the_cycle_with_a_message_not_a_traceback(site: Site) -> None:
    site.write_people(people(5))
    assert site.syncd("apply").returncode == 0
    site.write_people(people(900))
    limit = max(site.state_path.stat().st_size, site.log_path.stat().st_size) + 64 * 1024
    result = run(site, "apply", file_size_limit=limit)
    assert_explained(result, EX_TEMPFAIL, f"cannot write the state database {site.state_path}")
    assert site.status()["running"] is False
    assert site.status()["last_error"]["kind"] == "DiskError"
    assert len(site.emulator.mailboxes()) == 5


# --------------------------------------------------------- a log or metrics path that is a dir


def test_a_log_file_that_is_a_directory_names_logging_file(site: Site) -> None:
    site.log_path.mkdir()
    site.write_people(people(1))
    result = site.syncd("apply")
    assert_explained(
        result,
        EX_CONFIG,
        f"at 'logging.file': {site.log_path} is a directory",
        f"such as {site.log_path / 'syncd.log'}",
    )
    assert site.emulator.mailboxes() == []


def test_a_log_directory_syncd_may_not_enter_is_a_message_not_a_traceback(site: Site) -> None:
    # The packaged install's case: /var/log/syncd made by a run as root (0750), then the
    # service user asks for a log file in it. Roles swapped as above: the directory is nobody's.
    log_dir = site.root / "logs"
    log_dir.mkdir(mode=0o700)
    os.chown(log_dir, 65534, 65534)  # nobody
    site.configure(logging={"file": str(log_dir / "syncd.log")})
    site.write_people(people(1))
    result = as_unprivileged(site, "apply")
    assert_explained(
        result,
        EX_CONFIG,
        f"at 'logging.file': cannot open the log file {log_dir / 'syncd.log'}: Permission denied",
        f"{log_dir} belongs to nobody, not to root",
    )


def test_a_metrics_file_that_is_a_directory_names_health_metrics_file(site: Site) -> None:
    metrics = site.root / "metrics"
    metrics.mkdir()
    site.configure(health={"metrics_file": str(metrics)})
    site.write_people(people(1))
    result = site.syncd("apply")
    assert_explained(result, EX_CONFIG, f"at 'health.metrics_file': {metrics} is a directory")
    assert site.emulator.mailboxes() == []  # found before the cycle, not after it


def test_a_status_json_syncd_cannot_replace_is_said_and_the_cycle_counts(site: Site) -> None:
    site.write_people(people(2))
    status = site.state_path.parent / "status.json"
    status.mkdir(parents=True)  # what a rename cannot replace
    result = site.syncd("apply")
    assert result.returncode == 0, result.stderr
    assert f"syncd: cannot write {status}: Is a directory" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(site.log_events("health.write_failed")) == 2  # the cycle's start and its end
    with sqlite3.connect(site.state_path) as conn:
        assert conn.execute("SELECT outcome FROM runs").fetchall() == [("ok",)]
