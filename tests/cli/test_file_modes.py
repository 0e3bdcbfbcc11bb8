"""The modes of the files syncd creates, run from a shell (not under the unit's UMask=0077).

The state (personal data), its journals, its lock and status.json are the syncd user's alone
(0600, directory 0700); the log is 0640 (directory 0750); the metrics file is 0644 because
node_exporter reads it as another user. Whatever the umask, and a wider existing file is
narrowed (never widened) with a warning in the log.
"""

from __future__ import annotations

import os
import pwd
import sqlite3
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.site import Site, people


@contextmanager
def umask(mask: int) -> Iterator[None]:
    """The umask a shell would pass on to syncd (the subprocess inherits it)."""
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> str:
    return oct(stat.S_IMODE(path.stat().st_mode))


@pytest.mark.parametrize("shell_umask", [0o022, 0o000, 0o077])
def test_files_syncd_creates_have_their_modes_whatever_the_umask(
    site: Site, shell_umask: int
) -> None:
    state_dir = site.root / "var" / "state"
    log_dir = site.root / "var" / "log"
    metrics = site.root / "metrics" / "syncd.prom"
    site.configure(
        state={"path": str(state_dir / "state.db")},
        logging={"file": str(log_dir / "syncd.log")},
        health={"metrics_file": str(metrics)},
    )
    site.write_people(people(3))
    with umask(shell_umask):
        result = site.syncd("apply")
    assert result.returncode == 0, result.stderr
    assert mode(state_dir) == "0o700"
    for name in ("state.db", "state.db.lock", "status.json"):
        assert mode(state_dir / name) == "0o600", name
    # A directory is made at most 0750; under umask 077 the group loses it (as systemd's
    # LogsDirectoryMode= sets it for the unit, this only concerns runs from a shell).
    assert mode(log_dir) == ("0o700" if shell_umask == 0o077 else "0o750")
    assert mode(log_dir / "syncd.log") == "0o640"
    assert mode(metrics) == "0o644"


def test_an_older_states_wider_modes_are_narrowed_and_said_in_the_log(site: Site) -> None:
    site.write_people(people(2))
    assert site.syncd("apply").returncode == 0
    state = site.state_path
    status = state.with_name("status.json")
    # As an older syncd run from a shell left them: 0644. A reader that keeps the database
    # open keeps SQLite's -wal and -shm files in place after syncd exits.
    reader = sqlite3.connect(state)
    try:
        reader.execute("SELECT count(*) FROM people").fetchone()
        journals = [state.with_name("state.db-wal"), state.with_name("state.db-shm")]
        for path in (state, status, site.log_path, *journals):
            path.chmod(0o644)
        site.write_people(people(3))
        with umask(0o022):
            result = site.syncd("apply")
        assert result.returncode == 0, result.stderr
        for path in (state, status, *journals):
            assert mode(path) == "0o600", path
    finally:
        reader.close()
    assert mode(site.log_path) == "0o640"
    narrowed = site.log_events("state.mode_narrowed")
    assert any(f"path={state} was=0o644 now=0o600" in line for line in narrowed)
    assert any("state.db-wal" in line for line in narrowed)
    assert len(site.log_events("log.mode_narrowed")) == 1


def test_a_narrower_mode_is_left_as_the_admin_set_it(site: Site) -> None:
    site.write_people(people(1))
    assert site.syncd("apply").returncode == 0
    site.log_path.chmod(0o600)
    assert site.syncd("apply").returncode == 0
    assert mode(site.log_path) == "0o600"
    assert site.log_events("log.mode_narrowed") == []


def test_a_run_as_root_in_the_service_users_directories_leaves_the_files_to_that_user(
    site: Site,
) -> None:
    """`sudo syncd apply` next to the service: the files it creates go to the owner of their
    directory (as SQLite does with its journals), or the service could not open them."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    service = pwd.getpwnam("nobody")  # stands in for the syncd user
    state_dir, log_dir = site.state_path.parent, site.root / "log"
    for directory in (state_dir, log_dir):
        directory.mkdir()
        os.chown(directory, service.pw_uid, service.pw_gid)
    site.configure(logging={"file": str(log_dir / "syncd.log")})
    site.write_people(people(2))
    result = site.syncd("apply")
    assert result.returncode == 0, result.stderr
    for path in (site.state_path, state_dir / "state.db.lock", state_dir / "status.json"):
        assert path.stat().st_uid == service.pw_uid, path
    assert (log_dir / "syncd.log").stat().st_uid == service.pw_uid
