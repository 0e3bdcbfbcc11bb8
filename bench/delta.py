"""Delta reads (issue 19): an LDAP cycle costs what changed, not the size of the directory.

Run by ``bench/run.py`` as the scenario ``ldap-delta`` (after ``ldap-first``, on a copy of its
state, against the same slapd and emulator):

    .venv/bin/python bench/run.py --scenarios ldap-delta                 # 100k people
    .venv/bin/python bench/run.py --people 20000 --scenarios ldap-delta --no-results

- ``ldap-delta-full``: ``syncd apply --full`` with ``source.delta`` on, nothing changed: a full
  read (which also asks for every entry's ``entryCSN``) against the raw ldap3 floor, <= 1.3x.
- ``ldap-delta-none``: a delta cycle where nothing changed, against the start-up floor (``python
  -c 'import syncd...'``), <= 2x.
- ``ldap-delta-1pct``: a delta cycle after 1 % of the entries were modified (their ``sn``, so
  every one is a changed person: a ``person.name_changed`` line and a ``people`` row each),
  against the start-up floor plus a raw ldap3 read of exactly those entries (the floor
  ``ldap3-changed``: ``bench/floors.py ldap3 ... CSN`` in a fresh process), <= 2x.

The directory is loaded by slapadd just before, so every entryCSN is within a second or two: the
first delta after a full read reads everything once more (it starts a little before the newest
change the full read saw), and a batch of changes is read again by the delta after the one that
found it (a delta starts at the newest change the reads before the last one saw; see
syncd/source/_ldap_delta.py). Those reads are made untimed before each measured one, so each
measured delta reads what it is meant to: nothing (but the newest entry, read again) or the 1 %.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# The share of entries the 1 % scenario modifies.
CHANGED_SHARE = 0.01
TARGET_FULL = 1.3
TARGET_NONE = 2.0
TARGET_CHANGED = 2.0
# A CSN for an instant (count, server id and modification number zero: the lowest of it).
CSN_FORMAT = "%Y%m%d%H%M%S.%fZ#000000#000#000000"


def csn_now(back_s: float = 1.0) -> str:
    """A CSN a little before now: slapd runs on this machine, on the same clock."""
    return datetime.fromtimestamp(time.time() - back_s, UTC).strftime(CSN_FORMAT)


# --------------------------------------------------------------------------- in bench/run.py


@dataclass(frozen=True, slots=True)
class Setup:
    """What run.py has running, and its helpers (passed in: run.py runs as __main__)."""

    work: Path
    n: int
    repeat: int
    server: Any  # tests.support.slapd.Slapd
    emulator: Any  # run.Emulator
    password_file: Path
    config: Path  # a syncd config with source.delta on
    state: Path  # a copy of the provisioned LDAP state
    apply: Callable[..., Any]  # run.apply(scenario, config, emulator, state, work, *args)
    best: Callable[[list[Any]], Any]


def modify(setup: Setup, count: int, round_no: int) -> None:
    """Change the surname of ``count`` people (spread over the directory), as the root DN."""
    import ldap3

    from tests.support.slapd import PEOPLE_DN

    step = max(1, setup.n // count)
    with setup.server.admin() as conn:
        # bench/data.py numbers the people from 1 and names their entries uid=u0000001,...
        for number in range(1 + round_no % step, setup.n + 1, step)[:count]:
            conn.modify(
                f"uid=u{number:07d},{PEOPLE_DN}",
                {"sn": [(ldap3.MODIFY_REPLACE, [f"Delta{round_no}x{number}"])]},
            )


def changed_floor_run(setup: Setup, csn: str) -> tuple[float, int]:
    """A raw ldap3 read of the entries changed since ``csn`` (``bench/floors.py ldap3``), in a
    fresh process, as run.py's floors are."""
    import subprocess

    from tests.support.slapd import PEOPLE_DN

    server = setup.server
    result = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("floors.py")), "ldap3", server.url,
         server.root_dn,
         str(setup.password_file), PEOPLE_DN, "1000", csn],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise SystemExit(f"floor ldap3-changed failed: {result.stderr[-2000:]}")
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    return float(answer["seconds"]), int(answer["count"])


def run_scenarios(setup: Setup, floors: dict[str, float]) -> dict[str, Any]:
    """The three scenarios; their runs by name (the floor of the 1 % scenario goes to
    ``floors['ldap3-changed']``)."""
    apply, best, repeat = setup.apply, setup.best, setup.repeat
    config, emulator, state, work = setup.config, setup.emulator, setup.state, setup.work

    def cycle(scenario: str, *args: str) -> Any:
        return apply(scenario, config, emulator, state, work, *args)

    runs: dict[str, Any] = {}
    runs["ldap-delta-full"] = best([cycle("ldap-delta-full", "--full") for _ in range(repeat)])
    cycle("ldap-delta-warmup")  # the first delta after a full read: see the module docstring
    cycle("ldap-delta-warmup")
    runs["ldap-delta-none"] = best([cycle("ldap-delta-none") for _ in range(repeat)])

    changed = max(1, round(setup.n * CHANGED_SHARE))
    changed_runs, changed_floors = [], []
    for round_no in range(repeat):
        before = csn_now()
        modify(setup, changed, round_no)
        seconds, count = changed_floor_run(setup, before)
        if count != changed:
            raise SystemExit(f"the ldap3-changed floor read {count} entries, expected {changed}")
        changed_floors.append(seconds)
        changed_runs.append(cycle("ldap-delta-1pct"))
        cycle("ldap-delta-warmup")  # reads this batch once more, before the next one
    runs["ldap-delta-1pct"] = best(changed_runs)
    floors["ldap3-changed"] = min(changed_floors)
    return runs


def rows(runs: dict[str, dict[str, Any]], floors: dict[str, float], ratio_row: Any) -> list[Any]:
    """The results table's rows of these scenarios (``ratio_row`` is run.py's)."""
    found = []
    if full := runs.get("ldap-delta-full"):
        found.append(
            ratio_row("ldap-delta-full: wall", full["wall_s"], floors["ldap3"], "ldap3",
                      TARGET_FULL)
        )  # fmt: skip
    if none := runs.get("ldap-delta-none"):
        found.append(
            ratio_row("ldap-delta-none: wall", none["wall_s"], floors["startup"],
                      "python + imports", TARGET_NONE)
        )  # fmt: skip
    if changed := runs.get("ldap-delta-1pct"):
        floor_s = floors["startup"] + floors["ldap3-changed"]
        found.append(
            ratio_row("ldap-delta-1pct: wall", changed["wall_s"], floor_s,
                      "start-up + ldap3 read of the 1 %", TARGET_CHANGED)
        )  # fmt: skip
    return found
