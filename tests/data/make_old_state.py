"""Make the old state files in tests/data/ that tests/state/test_old_states.py migrates.

Each fixture is the state file a real older syncd wrote. For each one this script checks out the
commit in a git worktree under /tmp, starts *that commit's* Hybridbox emulator and runs *that
commit's* ``syncd apply`` three times, with ``PYTHONPATH`` pointing at the worktree and this
repository's virtualenv (nothing is installed). The HR export and the config are the same for all:

1. Ada Lovelace (E1), Alan Turing (E2), Grace Hopper (E3): three mailboxes created.
2. Ada is gone from the export (a leaver: ``leaver_after_missing`` is 1), Alan's status is ``left``
   (a leaver: disabled), Katherine Johnson (E4) is new while the emulator fails every create
   (``fail_rate`` 1, ``backend_busy``): E4 is ``failed``, due again 15 minutes later.
3. Ada's mailbox is deleted on Hybridbox and a new Ada Lovelace (E5) joins; with
   ``reserve_days`` 0 her address is free again: from schema 2 on, E5 gets ``ada.lovelace`` and
   the first Ada moves to ``address_history``; at schema 1 (no reservations end yet) E5 gets
   ``ada.lovelace2``. E4 is not due yet, so stays ``failed``.

The fixtures (``PRAGMA user_version`` in brackets; today's syncd has 5 migrations):

- ``state-v1-1f31b51.db`` [1]: 1f31b51, the last commit before migration 2 (and the first with
  both ``apply`` and the emulator). Opening it runs migrations 2 and 3.
- ``state-v2-9376d38.db`` [2]: 9376d38, the last commit before migration 3; the oldest schema
  with ``address_history``, so the oldest with a history entry. Opening it runs migration 3.
- ``state-v3-6776a3d.db`` [3]: 6776a3d, the last commit before migration 4 (``runs.scan``).
  Opening it runs migration 4.
- ``state-v4-issue19.db`` [4]: made by the code that added migration 4 (issue 19, delta reads),
  from its working tree before it was committed; 8c28ef6 is that commit, the last before
  migration 5. Opening it runs migration 5. It is also the single-domain state that
  tests/state/test_old_states.py routes to several domains.
- ``state-v5-issue18.db`` [5]: the schema of today's syncd, made fresh by the code that added
  migration 5 (issue 18, several mail domains), from its working tree before it was committed
  (no commit to check out: ``None`` below): the reference the migrated and the fresh schemas are
  held to.

Run from the repository root: ``.venv/bin/python tests/data/make_old_state.py [FILE ...]`` (all
of them when none is named). It overwrites the fixtures; their timestamps are those of the run.
A fixture whose commit is ``None`` is made by this checkout itself.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent
FIXTURES: dict[str, str | None] = {
    "state-v1-1f31b51.db": "1f31b51b8bd253d66afa46c954363e3c70f08a31",
    "state-v2-9376d38.db": "9376d38aec4d57176f909675a05988acfc5941a6",
    "state-v3-6776a3d.db": "6776a3dac6a2a37e04042921ddd7c8960cddeddc",
    "state-v4-issue19.db": "8c28ef6c7d1d2e36284b7277aa08388b5c24a824",
    "state-v5-issue18.db": None,
}
TOKEN = "old-state-fixture-token"
LISTENING_PREFIX = "hybridbox-emulator listening on "  # the same in all three commits
COLUMNS = ["employee_id", "first_name", "last_name", "email", "start_date", "status"]
ADA, ALAN, GRACE = ("E1", "Ada", "Lovelace"), ("E2", "Alan", "Turing"), ("E3", "Grace", "Hopper")
KATHERINE, NEW_ADA = ("E4", "Katherine", "Johnson"), ("E5", "Ada", "Lovelace")


class OldSyncd:
    """One older commit checked out under /tmp, its emulator running, a config and HR export."""

    def __init__(self, commit: str | None, work: Path) -> None:
        self.work = work
        # No commit: this checkout, as it is (nothing to check out, nothing to remove after).
        self.worktree = commit is not None
        self.tree = work / "tree" if commit is not None else REPO_ROOT
        if commit is not None:
            subprocess.run(
                ["git", "-C", str(REPO_ROOT), "worktree", "add", "--detach", str(self.tree),
                 commit],
                check=True,
                capture_output=True,
            )  # fmt: skip
        self.env = {**os.environ, "PYTHONPATH": str(self.tree)}
        (work / "token").write_text(TOKEN + "\n")
        (work / "token").chmod(0o600)  # syncd refuses a token file others may read
        command = [sys.executable, "-m", "syncd.emulator", "--port", "0"]
        self.emulator = subprocess.Popen(
            [*command, "--token-file", str(work / "token")],
            cwd=self.tree,
            env=self.env,
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        assert self.emulator.stdout is not None
        line = self.emulator.stdout.readline()
        assert line.startswith(LISTENING_PREFIX), line
        self.url = line[len(LISTENING_PREFIX) :].split()[0]
        self.admin = httpx.Client(base_url=self.url + "/_emulator", timeout=10)
        self.state = work / "state" / "state.db"
        self.write_config()

    def write_config(self) -> None:
        config = {
            "source": {
                "type": "csv",
                "path": str(self.work / "hr.csv"),
                "columns": {column: column for column in COLUMNS[1:]} | {"anchor": "employee_id"},
            },
            "hybridbox": {
                "url": self.url,
                "account_id": "5f0c7b1e-2a4d-4c8e-9b3f-6d1a0e2c4b7a",
                "domain": "example.com",
                "token_file": str(self.work / "token"),
                "batch_size": 10,
            },
            "state": {"path": str(self.state)},
            "logging": {"file": str(self.work / "syncd.log")},
            "sync": {"leaver_after_missing": 1},
            "addresses": {"reserve_days": 0},
            "safety": {"max_creates_percent": 100, "max_source_drop_percent": 100},
        }
        (self.work / "syncd.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    def apply(self, people: list[tuple[str, ...]]) -> None:
        with (self.work / "hr.csv").open("w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file)
            writer.writerow(COLUMNS)
            for anchor, first, last, *status in people:
                writer.writerow([anchor, first, last, "", "", status[0] if status else "active"])
        result = subprocess.run(
            [sys.executable, "-m", "syncd", "--config", str(self.work / "syncd.yaml"), "apply"],
            cwd=self.tree,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        print(f"  apply -> exit {result.returncode}")
        # 0: all done; 1: partial (a create failed), as the second cycle means it to be.
        assert result.returncode in (0, 1), result.stderr

    def delete_mailbox(self, local_part: str) -> None:
        """Delete one mailbox behind syncd's back (the emulator has no route for one: reset its
        mailboxes and put the others back)."""
        items: list[dict[str, Any]] = self.admin.get("/mailboxes").json()["items"]
        self.admin.post("/reset", json={"faults": False, "stats": False}).raise_for_status()
        keep = [m for m in items if m["local_part"] != local_part]
        self.admin.post("/mailboxes", json=keep).raise_for_status()

    def close(self) -> None:
        self.admin.close()
        self.emulator.terminate()
        self.emulator.wait(timeout=10)
        if self.worktree:
            subprocess.run(
                ["git", "-C", str(REPO_ROOT), "worktree", "remove", "--force", str(self.tree)],
                check=True,
            )


def make(name: str, commit: str | None) -> None:
    print(f"{name}: syncd at {commit[:7] if commit else 'this checkout'}")
    with tempfile.TemporaryDirectory(prefix="syncd-old-state-") as tmp:
        old = OldSyncd(commit, Path(tmp))
        try:
            old.apply([ADA, ALAN, GRACE])
            old.admin.put("/faults", json={"fail_rate": 1.0}).raise_for_status()
            old.apply([(*ALAN, "left"), GRACE, KATHERINE])
            old.admin.put("/faults", json={"fail_rate": 0.0}).raise_for_status()
            old.delete_mailbox("ada.lovelace")
            # Ada's reservation ends once a second (the clock's step) has passed since she
            # was last seen: the first cycle.
            time.sleep(1.1)
            old.apply([(*ALAN, "left"), GRACE, KATHERINE, NEW_ADA])
        finally:
            old.close()
        # syncd closed the file, so the WAL is checkpointed into it and gone.
        assert not old.state.with_name("state.db-wal").exists()
        shutil.copyfile(old.state, DATA / name)
        with closing(sqlite3.connect(old.state)) as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version >= 2:  # the schema that has address_history
                assert conn.execute("SELECT anchor FROM address_history").fetchall() == [("E1",)]
    print(f"  -> tests/data/{name}: user_version {version}, {(DATA / name).stat().st_size} bytes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("files", nargs="*", metavar="FILE", help=", ".join(FIXTURES))
    names = parser.parse_args().files or list(FIXTURES)
    unknown = set(names) - set(FIXTURES)
    if unknown:
        parser.error(f"no such fixture: {', '.join(sorted(unknown))}")
    for name in names:
        make(name, FIXTURES[name])


if __name__ == "__main__":
    main()
