"""The fast paths added for issue 5 give exactly what the plain code gives.

- ``CandidateSource.for_person`` (shared name candidates) == ``candidates()``;
- ``name_token``'s ASCII fast path == the general path;
- ``LogFileHandler`` still follows a rotation that happens between two events;
- allocating with every known address loaded up front (a first provisioning) issues what
  asking the state batch by batch issues.
"""

from __future__ import annotations

import unicodedata
from itertools import islice
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd import addresses
from syncd.addresses import (
    _DASHES,
    _NOT_TOKEN,
    CandidateSource,
    _is_name_character,
    candidates,
    name_token,
    transliterate,
)
from syncd.config import AddressesConfig
from syncd.logs import LogFileHandler, event, get_logger
from syncd.model import Person

NAMES = st.text(
    alphabet=st.sampled_from(list("AnaMüllerØsteO'Brien -.Παπαδόπουλος王芳_+1")), max_size=12
)
CONFIGS = [
    AddressesConfig(),
    AddressesConfig(locale="de", templates=["{f}{last}", "{first}.{last}{n}"]),
    AddressesConfig(templates=["{first}.{anchor}", "{last}{n}"], fallback_template="x{anchor}{n}"),
]


@settings(max_examples=300, deadline=None)
@given(
    first=NAMES,
    last=NAMES,
    anchor=st.sampled_from(["E1", "e1", "+/=", "K-7"]),
    preferred=st.sampled_from([None, "ana.muller", " Bad Value ", "user.e1", "ana.muller3"]),
    config_index=st.integers(0, len(CONFIGS) - 1),
)
def test_candidate_source_gives_what_candidates_gives(
    first: str, last: str, anchor: str, preferred: str | None, config_index: int
) -> None:
    config = CONFIGS[config_index]
    source = CandidateSource(config, max_n=5)
    person = Person(anchor, first or "x", last or "y")
    twin = Person(anchor + "b", first or "x", last or "y")  # shares the name list
    expected = list(candidates(person, config, preferred=preferred, max_n=5))
    assert list(islice(source.for_person(twin), 2)) == list(
        islice(candidates(twin, config, max_n=5), 2)
    )
    assert list(source.for_person(person, preferred=preferred)) == expected
    assert list(source.for_person(twin)) == list(candidates(twin, config, max_n=5))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=20))
def test_ascii_name_token_fast_path_matches_the_general_path(text: str) -> None:
    kept = "".join(c for c in unicodedata.normalize("NFC", text) if _is_name_character(c))
    general = _DASHES.sub("-", _NOT_TOKEN.sub("", transliterate(kept, None).lower())).strip("-")
    assert name_token(text, None) == general


def test_log_file_handler_follows_a_rotation_between_events(tmp_path: Path) -> None:
    path = tmp_path / "syncd.log"
    handler = LogFileHandler(path, encoding="utf-8")
    log = get_logger("syncd.test_perf_paths")
    log.addHandler(handler)
    log.setLevel("INFO")
    try:
        for index in range(50):  # a burst: lines microseconds apart
            event(log, "test.burst", n=index)
        path.rename(tmp_path / "syncd.log.1")
        handler._last_record -= 1  # a quiet moment, without sleeping in a test
        event(log, "test.after_rotation")
    finally:
        log.removeHandler(handler)
        handler.close()
    assert path.read_text(encoding="utf-8").count("test.after_rotation") == 1
    assert (tmp_path / "syncd.log.1").read_text(encoding="utf-8").count("test.burst") == 50


def test_candidate_source_skips_what_stays_taken_for_everyone_with_the_name() -> None:
    config = AddressesConfig()
    source = CandidateSource(config, max_n=4)
    taken: set[str] = set()
    issued = []
    for number in range(6):  # six Ann Lees: four name candidates, then the fallback
        ann = Person(f"E{number}", "Ann", "Lee")
        issued.append(next(source.for_person(ann, taken=taken)))
        taken.add(issued[-1])
    assert issued == ["ann.lee", "ann.lee2", "ann.lee3", "ann.lee4", "user.e4", "user.e5"]
    later = Person("E9", "Ann", "Lee")
    assert list(source.for_person(later, taken=taken))[:2] == ["user.e9", "user.e9-2"]


def test_candidate_source_keeps_clashing_names_when_its_cache_is_full(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(addresses, "_SHARED_CACHE_MAX", 8)
    config = AddressesConfig()
    source = CandidateSource(config, max_n=4)
    taken: set[str] = set()
    for number in range(3):  # three Ann Lees: the shared list learns to skip two addresses
        ann = Person(f"E{number}", "Ann", "Lee")
        taken.add(next(source.for_person(ann, taken=taken)))
    for number in range(20):  # many other names overflow the cache, more than once
        next(source.for_person(Person(f"X{number}", f"Bo{number}", "Day"), taken=taken))
    shared = source._shared[("ann", "lee")]
    assert shared.skip == 2 and len(source._shared) <= 8  # skips ann.lee, ann.lee2
    later = Person("E9", "Ann", "Lee")
    assert list(source.for_person(later, taken=taken)) == [
        c for c in candidates(later, config, max_n=4) if c not in taken
    ]


# ------------------------------------------------------------------ allocation: preload vs query

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
) -> tuple[list[str | None], list[tuple[str, str]]]:
    """The local parts a Provisioner gives ``hires`` (two batches) against a state holding
    ``existing`` addresses (local part, kind), and the address history it then records."""
    import syncd.provision
    from syncd.config import parse_config
    from syncd.engine import CycleOptions
    from syncd.provision import Provisioner, _Item
    from syncd.state import State, iso, utcnow

    monkeypatch.setattr(syncd.provision, "PRELOAD_PER_CREATE", 10**6)
    path = tmp_path / ("pre.db" if preload else "query.db")
    path.unlink(missing_ok=True)
    config = parse_config(
        {
            "source": {
                "type": "csv",
                "path": str(tmp_path / "hr.csv"),
                "columns": {"anchor": "id", "first_name": "first", "last_name": "last"},
            },
            "hybridbox": {
                "url": "http://127.0.0.1:9",
                "account_id": "5f0c7b1e-2a4d-4c8e-9b3f-6d1a0e2c4b7a",
                "domain": "example.com",
                "token_file": str(tmp_path / "token"),
                "batch_size": 3,
            },
            "addresses": {"reserve_days": 30},
            "sync": {"leaver_after_missing": 1},
            "state": {"path": str(path)},
        },
        tmp_path / "syncd.yaml",
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
    if preload:  # as create() does; without it, every batch asks the state
        provisioner._preload(len(hires))
    assert provisioner._knows_all is preload
    given: list[str | None] = []
    for start in range(0, len(hires), 3):
        batch = [
            _Item(Person(f"N{start + i}", first, last))
            for i, (first, last) in enumerate(hires[start : start + 3])
        ]
        with state.transaction():
            allocated = provisioner._allocate(batch)
            provisioner._write_intents(allocated, "b")
        given += [item.local_part for item in batch]
    history = [
        (row["address"], row["anchor"])
        for row in state.query("SELECT address, anchor FROM address_history ORDER BY address")
    ]
    state.close()
    return given, history


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


@pytest.mark.parametrize("preload", [False, True])
def test_allocation_paths_skip_reserved_and_reissue_expired(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, preload: bool
) -> None:
    existing = [("ann.lee", "leaver_expired"), ("ann.lee2", "leaver_reserved"),
                ("bo.day", "collision"), ("zoe.gross", "present")]  # fmt: skip
    hires = [("Ann", "Lee"), ("Ann", "Lee"), ("Bo", "Day"), ("Zoë", "Groß")]
    given, history = _allocations(
        tmp_path, existing, hires, preload=preload, monkeypatch=monkeypatch
    )
    assert given == ["ann.lee", "ann.lee3", "bo.day2", "zoe.gross2"]
    assert history == [("ann.lee@example.com", "H0")]
