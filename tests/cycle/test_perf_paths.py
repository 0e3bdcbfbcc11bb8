"""The fast paths added for issue 5 give exactly what the plain code gives.

- ``CandidateSource.for_person`` (shared name candidates) == ``candidates()``;
- ``name_token``'s ASCII fast path == the general path;
- ``LogFileHandler`` still follows a rotation that happens between two events.

(The allocator's preload path is checked against its query path in tests/cycle/test_allocate.py.)
"""

from __future__ import annotations

import unicodedata
from itertools import islice
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.addresses import CandidateSource, _candidates, candidates
from syncd.addresses._names import (
    _DASHES,
    _NOT_TOKEN,
    _is_name_character,
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
    monkeypatch.setattr(_candidates, "_SHARED_CACHE_MAX", 8)
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
