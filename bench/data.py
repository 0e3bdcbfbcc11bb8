"""The benchmark's people: generated once (seeded), written as an HR CSV and as LDIF.

Everyone is active and has started already, so that a first provisioning creates exactly one
mailbox per person and the bulk request count is exactly ``ceil(N / batch_size)``. Names come from
the demo's pools (German, French, Nordic, Spanish, Polish, Turkish, Vietnamese) plus a few percent
Cyrillic, Greek and CJK names; a share of compound surnames keeps address clashes at a realistic
level instead of 100k people sharing a few thousand "first.last" pairs.

The CSV and the LDIF hold the same people in the same order; the CSV anchor is the HR id
(``E0000001``), the LDAP anchor the entry's fixed ``entryUUID``.
"""

from __future__ import annotations

import csv
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from tests.support.sample_data import NAMES, SAMPLE_MIX
from tests.support.slapd import PEOPLE_DN, ldif_entry

# What a real HR system's export carries (Workday, Personio, BambooHR reports look like this):
# the six columns syncd reads, and the usual others, which it must skip at no cost.
CSV_COLUMNS = (
    "employee_id", "first_name", "last_name", "email", "start_date", "status",
    "department", "job_title", "manager_id", "location", "cost_center", "employment_type",
    "work_phone",
)  # fmt: skip
_DEPARTMENTS = ("Engineering", "Sales", "Customer Success", "Finance", "People", "Operations")
_TITLES = ("Specialist", "Senior Specialist", "Team Lead", "Manager", "Analyst", "Associate")
_LOCATIONS = ("Berlin", "Paris", "Stockholm", "Madrid", "Warsaw", "Istanbul", "Remote")
_TYPES = ("full_time", "full_time", "full_time", "part_time", "contractor")

# Non-Latin names: transliterated (Cyrillic, Greek) or sent to the fallback template (Han).
_OTHER_SCRIPTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "ru": (("Анна", "Сергей", "Юлия", "Дмитрий", "Ольга"), ("Иванова", "Петров", "Смирнова")),
    "el": (("Γιώργος", "Μαρία", "Ελένη", "Νίκος"), ("Παπαδόπουλος", "Οικονόμου", "Νικολάου")),
    "zh": (("伟", "芳", "秀英", "娜"), ("王", "李", "张", "欧阳")),
}
_POOLS = {**NAMES, **_OTHER_SCRIPTS}
_WEIGHTS = {**SAMPLE_MIX, "ru": 4, "el": 3, "zh": 3}
_COMPOUND_SHARE = 0.4
_TODAY = date(2026, 11, 25)


@dataclass(frozen=True, slots=True)
class BenchPerson:
    number: int
    entry_uuid: str
    first_name: str
    last_name: str
    start_date: date

    @property
    def anchor(self) -> str:
        return f"E{self.number:07d}"

    @property
    def uid(self) -> str:
        return f"u{self.number:07d}"


def people(n: int, seed: int) -> Iterator[BenchPerson]:
    """``n`` deterministic people; the first ``k`` of ``people(n + m)`` equal ``people(k)``."""
    rng = random.Random(seed)
    pools = list(_POOLS)
    weights = [_WEIGHTS[pool] for pool in pools]
    for number in range(1, n + 1):
        pool = rng.choices(pools, weights)[0]
        firsts, lasts = _POOLS[pool]
        first, last = rng.choice(firsts), rng.choice(lasts)
        if rng.random() < _COMPOUND_SHARE:
            other = rng.choice(lasts)
            if other != last:
                last = f"{last} {other}" if pool in ("es", "zh") else f"{last}-{other}"
        # Started between two weeks and fifteen years ago: nobody is a future start.
        start = _TODAY - timedelta(days=rng.randrange(14, 15 * 365))
        yield BenchPerson(
            number, str(uuid.UUID(int=rng.getrandbits(128), version=4)), first, last, start
        )


def write_csv(path: Path, rows: Iterator[BenchPerson]) -> int:
    """Write the HR export; returns the number of people written."""
    count = 0
    with open(path, "w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for person in rows:
            n = person.number
            writer.writerow(
                (person.anchor, person.first_name, person.last_name, "",
                 person.start_date.isoformat(), "active",
                 _DEPARTMENTS[n % len(_DEPARTMENTS)], _TITLES[n * 7 % len(_TITLES)],
                 f"E{max(1, n // 8):07d}", _LOCATIONS[n * 3 % len(_LOCATIONS)],
                 f"CC-{4000 + n % 120}", _TYPES[n % len(_TYPES)], f"+49 30 {n % 10_000_000:07d}")
            )  # fmt: skip
            count += 1
    return count


def ldif_for(person: BenchPerson) -> str:
    return ldif_entry(
        f"uid={person.uid},{PEOPLE_DN}",
        [
            ("objectClass", "inetOrgPerson"),
            ("objectClass", "hrPerson"),
            ("uid", person.uid),
            ("entryUUID", person.entry_uuid),
            ("employeeNumber", person.anchor),
            ("cn", f"{person.first_name} {person.last_name}"),
            ("givenName", person.first_name),
            ("sn", person.last_name),
            ("hrStartDate", person.start_date.isoformat()),
        ],
    )
