"""Exactly once as a property: Hypothesis drives people, faults, cycles and crashes at random.

Rules add, rename and remove people, flip emulator faults, switch the allocator between asking
the state and preloading it, change how many bulk requests may be in flight, run a cycle, or
crash one at a named point. A crash is simulated
in-process by an exception that no code catches (like SIGKILL, it skips every ``except`` and
leaves the open transaction uncommitted); the SIGKILL itself is exercised by
tests/cycle/test_exactly_once.py. Invariants hold after every step; after a quiet cycle
the state matches Hybridbox.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from syncd.config import Config, parse_config
from syncd.cycle import CycleOptions, _allocate, _crash, run_cycle
from syncd.errors import SyncdError
from syncd.state import State, utcnow
from tests.support.emulator import RunningEmulator

FIRST = ["Ada", "Jürgen", "Zoë", "Olga", "Li"]
LAST = ["Lovelace", "Groß", "Ødegård", "Petrova", "Wang"]
FAULTS: list[dict[str, Any]] = [
    {},
    {"fail_rate": 0.5},
    {"drop_after_write_rate": 0.5},
    {"error_after_write_rate": 0.5},
    {"rate_limit_every": 2, "retry_after": 0},
    {"max_batch": 2},
    # Several batches in flight meet a rate limit (429, Retry-After 1 s: the pace is learned)
    # and a server that serves one request at a time (503: the window shrinks).
    {"rate_limit": 5},
    {"max_concurrent": 1, "latency_ms": 30, "retry_after": 0},
]
IN_FLIGHT = [1, 2, 4]
CRASH_POINTS = ["after_intents", "after_send", "after_answer", "mid_batch"]
PRELOAD_PER_CREATE = _allocate.PRELOAD_PER_CREATE


class Crash(BaseException):
    """Stands in for SIGKILL: nothing catches a BaseException that is not an Exception."""


class Provisioning(RuleBasedStateMachine):
    emulator: RunningEmulator

    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="syncd-machine-"))
        self.people: dict[str, tuple[str, str]] = {}
        self.next_id = 0
        self.max_in_flight = max(IN_FLIGHT)
        self.emulator.reset()
        self.config = self._config()

    def _config(self) -> Config:
        data = {
            "source": {
                "type": "csv",
                "path": str(self.root / "hr.csv"),
                "columns": {"anchor": "id", "first_name": "first", "last_name": "last"},
            },
            "hybridbox": {
                "url": self.emulator.url,
                "account_id": self.emulator.account_id,
                "domain": self.emulator.domain,
                "token_file": str(self.emulator.token_file),
                "batch_size": 3,
                "max_in_flight": self.max_in_flight,
                "timeout_s": 2,
                "max_retry_after_s": 1,
                "retry_budget_s": 5,
            },
            "addresses": {"locale": "de"},
            "state": {"path": str(self.root / "state.db")},
            "sync": {"update_names": True},
            "safety": {
                "max_creates_per_cycle": 1000,
                "max_creates_percent": 100_000,
                "max_source_drop_percent": 100,
                "min_source_people": 0,
            },
        }
        return parse_config(data, self.root / "syncd.yaml")

    def _write_source(self) -> None:
        lines = ["id,first,last"] + [
            f"{anchor},{first},{last}" for anchor, (first, last) in self.people.items()
        ]
        (self.root / "hr.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")

    def _cycle(self) -> None:
        # e.g. the retry budget ran out: recorded, and retried in the next cycle
        with contextlib.suppress(SyncdError):
            run_cycle(self.config, CycleOptions(mode="apply"))

    @initialize()
    def start(self) -> None:
        self._write_source()

    @rule(first=st.sampled_from(FIRST), last=st.sampled_from(LAST))
    def hire(self, first: str, last: str) -> None:
        self.next_id += 1
        self.people[f"E{self.next_id}"] = (first, last)
        self._write_source()

    @rule(data=st.data(), last=st.sampled_from(LAST))
    def rename(self, data: st.DataObject, last: str) -> None:
        if self.people:
            anchor = data.draw(st.sampled_from(sorted(self.people)))
            self.people[anchor] = (self.people[anchor][0], last)
            self._write_source()

    @rule(data=st.data())
    def leave(self, data: st.DataObject) -> None:
        if self.people:
            del self.people[data.draw(st.sampled_from(sorted(self.people)))]
            self._write_source()

    @rule(faults=st.sampled_from(FAULTS))
    def set_faults(self, faults: dict[str, Any]) -> None:
        self.emulator.reset(mailboxes=False, stats=False)
        if faults:
            self.emulator.set_faults(seed=3, **faults)

    @rule()
    def cycle(self) -> None:
        self._cycle()

    @rule(per_create=st.sampled_from([0, PRELOAD_PER_CREATE]))
    def allocation_path(self, per_create: int) -> None:
        """Allocate by asking the state (0: unless it knows no address) or from a preload."""
        _allocate.PRELOAD_PER_CREATE = per_create

    @rule(in_flight=st.sampled_from(IN_FLIGHT))
    def in_flight(self, in_flight: int) -> None:
        self.max_in_flight = in_flight
        self.config = self._config()

    @rule(point=st.sampled_from(CRASH_POINTS))
    def crash(self, point: str) -> None:
        def crashpoint(name: str) -> None:
            if name == point:
                raise Crash(name)

        original = _crash.crashpoint
        _crash.crashpoint = crashpoint
        os.environ[_crash.CRASH_ENV] = point
        try:
            run_cycle(self.config, CycleOptions(mode="apply"))
        except (Crash, SyncdError):
            pass
        finally:
            _crash.crashpoint = original
            del os.environ[_crash.CRASH_ENV]

    def _state_rows(self, sql: str) -> list[Any]:
        path = self.config.state.path
        if not path.exists():
            return []
        state = State(path, read_only=True)
        try:
            return [tuple(row) for row in state.query(sql)]
        finally:
            state.close()

    @invariant()
    def every_remote_mailbox_was_journaled_for_exactly_one_person(self) -> None:
        issued = dict(
            self._state_rows("SELECT address, anchor FROM addresses WHERE anchor NOTNULL")
        )
        remote = [m["primary_email"].lower() for m in self.emulator.mailboxes()]
        assert all(address in issued for address in remote), "a mailbox syncd never journaled"
        owners = Counter(issued[address] for address in remote)
        assert [a for a, n in owners.items() if n > 1] == [], "a person with two mailboxes"

    @invariant()
    def no_address_is_held_by_two_people(self) -> None:
        parts = self._state_rows("SELECT local_part FROM mailboxes WHERE local_part NOTNULL")
        assert len(parts) == len(set(parts))

    def teardown(self) -> None:
        try:
            self.emulator.reset(mailboxes=False, stats=False)
            for _ in range(4):  # quiet cycles: no faults, everyone due
                if self.config.state.path.exists():
                    state = State(self.config.state.path)
                    state.release_for_retry(None, utcnow())
                    state.close()
                self._cycle()
            created = self._state_rows(
                "SELECT anchor, local_part FROM mailboxes WHERE state IN ('created', 'adopted')"
            )
            remote = {m["local_part"] for m in self.emulator.mailboxes()}
            assert {part for _, part in created} == remote, "state and Hybridbox disagree"
            assert set(self.people) <= {anchor for anchor, _ in created}, "someone is missing"
        finally:
            _allocate.PRELOAD_PER_CREATE = PRELOAD_PER_CREATE
            shutil.rmtree(self.root, ignore_errors=True)


@pytest.mark.timeout(600)
def test_exactly_once_under_random_people_faults_and_crashes(emulator: RunningEmulator) -> None:
    Provisioning.emulator = emulator
    run_state_machine_as_test(
        Provisioning,
        settings=settings(
            max_examples=12,
            stateful_step_count=10,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
