"""Reference address candidates for ``tests/addresses/test_addresses.py``: who, under which config,
got what.

The file ``tests/data/address_candidates.json`` was written by this script from the address code
*before* it was optimised (issue 5), so the test proves the fast paths give the very same
candidates. Regenerate it only when an output change is intended, and review the diff::

    .venv/bin/python -m tests.support.address_reference

Each scenario holds its config and one row per person (bench names in several scripts, many
clashes): anchor, first and last name, email, the address a first provisioning gives them (one
shared ``CandidateSource``, a growing taken set, as ``Allocator.allocate`` uses it) and the
first ``FIRST_N`` candidates of ``candidates()`` (the test checks ``CandidateSource.for_person``
against them too).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from bench.data import people
from syncd.addresses import CandidateSource, candidates, choose
from syncd.config import AddressesConfig
from syncd.model import Person

PATH = Path(__file__).resolve().parents[1] / "data" / "address_candidates.json"
FIRST_N = 5
MAX_N = 99

# anchor, first name, last name, email
Who = tuple[str, str, str, str | None]
# ... and the address a first provisioning gives, and the first FIRST_N candidates
Row = tuple[str, str, str, str | None, str | None, list[str]]

# (name, config, number of people, seed, people transform)
_SCENARIOS: list[tuple[str, dict[str, Any], int, int, str]] = [
    # The benchmark's config: issue 5's profile was taken with it.
    ("bench-de", {"locale": "de"}, 2000, 5, "plain"),
    (
        "initials-no-fallback",
        {
            "templates": ["{f}{last}", "{first}{l}", "{f}{last}{n}"],
            "fallback_template": "{anchor}.{n}",
            "fallback_scripts": [],
        },
        200,
        11,
        "plain",
    ),
    (
        "anchor-sv-preferred",
        {
            "templates": ["..{first}__{last}..{n}", "{anchor}.{first}"],
            "fallback_template": "x.{anchor}{n}",
            "locale": "sv_FI",
            "fallback_scripts": ["Han", "Cyrillic"],
        },
        150,
        12,
        "preferred",
    ),
    # Names over 64 characters: the shortening loop.
    (
        "long-names-fr",
        {"locale": "fr", "templates": ["{first}.{last}", "{last}.{first}{n}"]},
        60,
        13,
        "long",
    ),
]


def _people(count: int, seed: int, transform: str) -> Iterator[Who]:
    """(anchor, first name, last name, email) of bench people, shaped for the scenario."""
    pool = list(people(count * 3 if transform == "long" else count, seed))
    for index in range(count):
        one = pool[index]
        first, last, email = one.first_name, one.last_name, None
        if transform == "long":
            others = pool[count + 2 * index : count + 2 * index + 2]
            first = " ".join([first, *(p.first_name for p in others)])
            last = "-".join([last, *(p.last_name for p in others)] * 2)
        elif transform == "preferred" and index % 3 == 0:
            # Some sources carry a mail address: valid ones, clashing ones, broken ones.
            email = ("ann.lee", f"P{index}.Mail", "bad value", f"x.{one.anchor}")[index % 4]
        yield one.anchor, first, last, email


def compute(config: AddressesConfig, who: list[Who]) -> list[Row]:
    """What the address code gives these people: allocated address and first candidates."""
    source = CandidateSource(config, max_n=MAX_N)
    taken: set[str] = set()
    rows: list[Row] = []
    for anchor, first_name, last_name, email in who:
        person = Person(anchor, first_name, last_name)
        first = list(islice(candidates(person, config, preferred=email), FIRST_N))
        pick = choose(source.for_person(person, email, taken), taken.__contains__)
        if pick is not None:
            taken.add(pick)
        rows.append((anchor, first_name, last_name, email, pick, first))
    return rows


def build() -> dict[str, Any]:
    scenarios = []
    for name, settings, count, seed, transform in _SCENARIOS:
        config = AddressesConfig.model_validate(settings)
        rows = compute(config, list(_people(count, seed, transform)))
        scenarios.append({"name": name, "config": settings, "max_n": MAX_N, "rows": rows})
    return {"first_n": FIRST_N, "scenarios": scenarios}


def _dump(data: dict[str, Any]) -> str:
    # One person per line, so that a regenerated file reviews as a readable diff.
    lines = ["{", f'"first_n": {data["first_n"]},', '"scenarios": [']
    for number, scenario in enumerate(data["scenarios"]):
        header = {key: scenario[key] for key in ("name", "config", "max_n")}
        lines.append(json.dumps(header)[:-1] + ', "rows": [')
        rows = [
            json.dumps(row, ensure_ascii=False, separators=(",", ":")) for row in scenario["rows"]
        ]
        lines.append(",\n".join(rows))
        lines.append("]}," if number < len(data["scenarios"]) - 1 else "]}")
    lines += ["]", "}"]
    return "\n".join(lines) + "\n"


def main() -> None:
    data = build()
    text = _dump(data)
    assert json.loads(text) == json.loads(json.dumps(data)), "the writer lost something"
    PATH.parent.mkdir(parents=True, exist_ok=True)
    PATH.write_text(text, encoding="utf-8")
    print(f"wrote {PATH} ({len(text.encode('utf-8')) // 1024} KiB)")


if __name__ == "__main__":
    main()
