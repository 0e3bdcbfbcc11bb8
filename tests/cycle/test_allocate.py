"""Address allocation (syncd/cycle/_allocate.py): what a cycle issues, by either path.

A first provisioning loads every known address up front and allocates without a query; other
cycles ask the state batch by batch. Both must issue the same addresses: reserved leavers' and
Hybridbox collisions' skipped, expired reservations issued again with their history.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.cycle import CycleOptions, _allocate
from syncd.cycle._batch import Item
from syncd.cycle._provision import Provisioner
from syncd.model import Person
from syncd.state import State, iso, utcnow
from tests.support.configs import offline_config

HELD_PARTS = st.sampled_from(["ann.lee", "ann.lee2", "ann.lee3", "bo.day", "zoe.gross"])
HOLDER_KINDS = st.sampled_from(["present", "leaver_reserved", "leaver_expired", "collision"])
ALLOC_NAMES = st.sampled_from([("Ann", "Lee"), ("Ann", "Lee-Wong"), ("Bo", "Day"), ("Zoë", "Groß")])


def _allocations(
    tmp_path: Path,
    existing: list[tuple[str, str]],
    hires: list[tuple[str, str]],
    *,
    preload: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[list[str | None], list[tuple[str, str]], list[str]]:
    """The local parts a Provisioner gives ``hires`` (in batches of 3) against a state holding
    ``existing`` addresses (local part, kind), the address history it then records, and the
    anchors of those left without an address (every candidate taken)."""
    monkeypatch.setattr(_allocate, "PRELOAD_PER_CREATE", 10**6)
    path = tmp_path / ("pre.db" if preload else "query.db")
    path.unlink(missing_ok=True)
    config = offline_config(
        tmp_path,
        path,
        hybridbox={"batch_size": 3},
        addresses={"reserve_days": 30},
        sync={"leaver_after_missing": 1},
    )
    now = utcnow()
    seen = {"leaver_expired": "2020-01-01T00:00:00Z"}.get
    state = State(path)
    with state.transaction() as conn:
        for number, (local_part, kind) in enumerate(existing):
            anchor = None if kind == "collision" else f"H{number}"
            conn.execute(
                "INSERT OR IGNORE INTO addresses (address, anchor, status, issued_at) "
                "VALUES (?, ?, ?, ?)",
                (f"{local_part}@example.com", anchor, "taken" if anchor is None else "issued",
                 iso(now)),
            )  # fmt: skip
            if anchor is not None:
                conn.execute(
                    "INSERT INTO people (anchor, first_name, last_name, digest, first_seen, "
                    "last_seen, missing_count) VALUES (?, 'X', 'Y', 'd', ?, ?, ?)",
                    (anchor, iso(now), seen(kind, iso(now)), int(kind != "present")),
                )
    provisioner = Provisioner(config, state, None, now, CycleOptions())  # type: ignore[arg-type]
    allocator = provisioner.allocator_for(config.hybridbox.domain)
    if preload:  # as create() does; without it, every batch asks the state
        allocator.preload(len(hires))
    assert allocator.knows_all is preload
    given: list[str | None] = []
    hopeless: list[str] = []
    for start in range(0, len(hires), 3):
        batch = [
            Item(Person(f"N{start + i}", first, last))
            for i, (first, last) in enumerate(hires[start : start + 3])
        ]
        with state.transaction():
            hopeless += [item.person.anchor for item in allocator.allocate(batch)]
            provisioner._write_intents(batch, "b")
        given += [item.local_part for item in batch]
    history = [
        (row["address"], row["anchor"])
        for row in state.query("SELECT address, anchor FROM address_history ORDER BY address")
    ]
    state.close()
    return given, history, hopeless


@settings(max_examples=60, deadline=None)
@given(
    existing=st.lists(st.tuples(HELD_PARTS, HOLDER_KINDS), max_size=6),
    hires=st.lists(ALLOC_NAMES, min_size=1, max_size=7),
)
def test_allocation_with_everything_preloaded_matches_asking_the_state(
    tmp_path_factory: pytest.TempPathFactory,
    existing: list[tuple[str, str]],
    hires: list[tuple[str, str]],
) -> None:
    """A first provisioning knows every unavailable address up front (no queries); it must
    issue exactly what asking the state batch by batch issues: reserved leavers' and
    collisions' addresses skipped, expired reservations issued again (with history)."""
    tmp_path = tmp_path_factory.mktemp("alloc")
    with pytest.MonkeyPatch.context() as monkeypatch:
        queried = _allocations(tmp_path, existing, hires, preload=False, monkeypatch=monkeypatch)
        preloaded = _allocations(tmp_path, existing, hires, preload=True, monkeypatch=monkeypatch)
    assert preloaded == queried
    issued = [part for part in queried[0] if part]
    assert len(issued) == len(set(issued)) == len(hires)
    assert queried[2] == []


@pytest.mark.parametrize("preload", [False, True])
def test_allocation_paths_skip_reserved_and_reissue_expired(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, preload: bool
) -> None:
    existing = [("ann.lee", "leaver_expired"), ("ann.lee2", "leaver_reserved"),
                ("bo.day", "collision"), ("zoe.gross", "present")]  # fmt: skip
    hires = [("Ann", "Lee"), ("Ann", "Lee"), ("Bo", "Day"), ("Zoë", "Groß")]
    given, history, hopeless = _allocations(
        tmp_path, existing, hires, preload=preload, monkeypatch=monkeypatch
    )
    assert given == ["ann.lee", "ann.lee3", "bo.day2", "zoe.gross2"]
    assert history == [("ann.lee@example.com", "H0")]
    assert hopeless == []


@pytest.mark.parametrize("preload", [False, True])
def test_a_person_whose_every_candidate_is_taken_is_returned_hopeless(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, preload: bool
) -> None:
    """The provisioner records such a person as failed (no_free_address) instead of sending."""
    names = ["ann.lee", *(f"ann.lee{n}" for n in range(2, 100))]
    fallbacks = ["user.n0", *(f"user.n0-{n}" for n in range(2, 100))]
    existing = [(part, "present") for part in names + fallbacks]
    hires = [("Ann", "Lee"), ("Bo", "Day")]
    given, _, hopeless = _allocations(
        tmp_path, existing, hires, preload=preload, monkeypatch=monkeypatch
    )
    assert given == [None, "bo.day"]
    assert hopeless == ["N0"]
