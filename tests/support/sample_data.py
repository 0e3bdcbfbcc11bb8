"""Deterministic HR exports: the demo's ``config/sample-hr-export.csv`` and big benchmark files.

Run it to (re)write the demo export, or a big file for a benchmark::

    python -m tests.support.sample_data                         # config/sample-hr-export.csv
    python -m tests.support.sample_data --today 2027-03-01      # future starts relative to then
    python -m tests.support.sample_data --rows 100000 --seed 7 --broken 20 --out /tmp/hr.csv

The names are real-world spellings from several countries (umlauts and ß, French accents, Nordic
letters, Polish, Turkish, Vietnamese, a few Cyrillic, Greek and CJK names), because address
generation and transliteration are where an HR sync usually goes wrong.
"""

from __future__ import annotations

import argparse
import csv
import random
import unicodedata
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

COLUMNS = ("employee_id", "first_name", "last_name", "email", "start_date", "status", "department")
Row = tuple[str, str, str, str, str, str, str]

# The committed demo export is generated against this date, so that regenerating it gives the same
# bytes. Its future start dates are "weeks ahead" of this day; pass --today to move them.
SAMPLE_TODAY = date(2026, 11, 25)
SAMPLE_SEED = 2026
SAMPLE_PATH = Path(__file__).resolve().parents[2] / "config" / "sample-hr-export.csv"
MAIL_DOMAIN = "example.com"

NAMES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "de": (
        ("Anna", "Jürgen", "Björn", "Jörg", "Käthe", "Günther", "Sören", "Uwe", "Ute", "Lena",
         "Maximilian", "Lukas", "Sophie", "Marie", "Felix", "Jonas", "Leonie", "Mia", "Paul",
         "Hannah", "Elias", "Emma", "Katrin", "Stefan", "Sabine", "Dörte", "Ingeborg", "Hans-Peter",
         "Bärbel", "Matthias", "Franziska", "Tobias", "Jörn", "Gisela"),
        ("Müller", "Schneider", "Fischer", "Weiß", "Groß", "Meyer", "Wagner", "Becker", "Schulz",
         "Hoffmann", "Schäfer", "Koch", "Bauer", "Richter", "Klein", "Wolf", "Schröder", "Neumann",
         "Schwarz", "Zimmermann", "Braun", "Krüger", "Hartmann", "Lange", "Werner", "Krause",
         "Meier", "Lehmann", "Köhler", "Weißmüller", "Großkopf", "Müller-Lüdenscheidt",
         "von Bülow", "Jäger", "Günther", "Strauß", "Fuß", "Dreßler"),
    ),
    "fr": (
        ("Éloïse", "François", "Hélène", "Gaëlle", "Jérôme", "Amélie", "Benoît", "Cécile",
         "Mathéo", "Léa", "Chloé", "Noël", "Zoé", "Anaïs", "Raphaël", "Jean-Luc", "Marie-Claire",
         "Loïc", "Maëlle", "Stéphane", "Thérèse", "Aurélien"),
        ("Lefèvre", "Dubois", "Moreau", "Lefebvre", "Girard", "Bonnet", "Dupont", "Rousseau",
         "Mercier", "Fournier", "Chevalier", "Gauthier", "Faure", "Brûlé", "Bérard", "Lemaître",
         "Hébert", "d'Amboise", "de la Fontaine", "Béranger", "Lebœuf", "Lacroix-Mével"),
    ),
    "nordic": (
        ("Åsa", "Søren", "Ørjan", "Bjørn", "Sigríður", "Jón", "Ásgeir", "Eiríkur", "Ingrid",
         "Astrid", "Kristín", "Mikael", "Päivi", "Jussi", "Liisa", "Tuomas", "Märta", "Øystein",
         "Ragnhild", "Nils", "Ville", "Þóra"),
        ("Andersson", "Johansson", "Karlsson", "Nilsson", "Eriksson", "Lindqvist", "Hansen",
         "Jørgensen", "Sørensen", "Ødegård", "Haugen", "Virtanen", "Mäkinen", "Järvinen",
         "Korhonen", "Guðmundsdóttir", "Þórsson", "Jónsdóttir", "Ólafsson", "Kärkkäinen", "Åberg",
         "Bøe"),
    ),
    "es": (
        ("José", "María", "Begoña", "Íñigo", "Ángel", "Lucía", "Martín", "Sofía", "Javier",
         "Alejandro", "Inés", "Raúl", "Nuria", "Andrés", "Pilar", "Joaquín", "María José"),
        ("García López", "Núñez", "Peña", "Fernández", "González", "Rodríguez", "Martínez",
         "Sánchez", "Pérez", "Gómez", "Jiménez", "Muñoz", "Ibáñez", "de la Cruz", "Ortiz",
         "Castaño"),
    ),
    "pl": (
        ("Łukasz", "Wojciech", "Małgorzata", "Żaneta", "Grzegorz", "Agnieszka", "Paweł",
         "Katarzyna", "Michał", "Zofia", "Jędrzej", "Bożena", "Krzysztof", "Ewa", "Piotr",
         "Magdalena"),
        ("Nowak", "Kowalski", "Wiśniewski", "Wójcik", "Kowalczyk", "Kamiński", "Lewandowski",
         "Zieliński", "Szymański", "Woźniak", "Dąbrowski", "Kozłowski", "Brzęczyszczykiewicz",
         "Żółkiewski", "Grzegórzewska", "Szczęsny", "Błaszczykowski", "Łęcka"),
    ),
    "tr": (
        ("Çağla", "Şükrü", "Gül", "İbrahim", "Ayşe", "Mehmet", "Emine", "Mustafa", "Özlem",
         "Ümit", "Barış", "Gökhan", "Elif", "Yağmur", "Serkan", "Derya", "Işıl"),
        ("Yılmaz", "Öztürk", "Kaya", "Demir", "Şahin", "Çelik", "Yıldız", "Yıldırım", "Aydın",
         "Özdemir", "Arslan", "Doğan", "Kılıç", "Aslan", "Çetin", "Koç", "Kurt", "Özkan",
         "Şimşek", "Güneş"),
    ),
    "vi": (
        ("Hương", "Đức", "Thị Mai", "Văn Hùng", "Minh", "Thảo", "Quang", "Ngọc Anh", "Tuấn",
         "Phương", "Hải", "Lan", "Dũng", "Trang"),
        ("Nguyễn", "Trần", "Phạm", "Lê", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng", "Bùi",
         "Đỗ", "Hồ", "Ngô", "Dương"),
    ),
}  # fmt: skip

# How many demo people come from each pool (about 285 + the hand-picked ones below).
SAMPLE_MIX = {"de": 88, "fr": 40, "nordic": 36, "es": 34, "pl": 34, "tr": 30, "vi": 22}

# Hand-picked people: name clashes, scripts without a Latin form, typical trouble makers.
SPECIAL_PEOPLE: tuple[tuple[str, str], ...] = (
    ("Anna", "Müller"),
    ("Anna", "Müller"),
    ("Thomas", "Schmidt"),
    ("Thomas", "Schmidt"),
    ("Thomas", "Schmidt"),
    ("Дмитрий", "Иванов"),
    ("Ольга", "Петрова"),
    ("Олександр", "Шевченко"),
    ("Γιώργος", "Παπαδόπουλος"),
    ("Ελένη", "Νικολάου"),
    ("太郎", "山田"),
    ("芳", "王"),
    ("Siobhán", "Ó Súilleabháin"),
    ("Seán", "O'Brien"),
)

DEPARTMENTS = (
    "Engineering", "Sales", "Finance", "Human Resources", "Marketing", "Operations", "Legal",
    "Customer Support", "IT", "Logistics", "Research & Development", "Facilities",
)  # fmt: skip

# Start-date offsets in days from "today" for the few people who have not started yet: two inside
# the default 7-day provisioning window, the others weeks ahead.
FUTURE_STARTS = (3, 6, 16, 23, 37, 52)
SAMPLE_TERMINATED = 8
SAMPLE_PREFERRED_EMAILS = 6

# The demo's broken rows: what is wrong, and where in the file they go (0-based data rows).
BROKEN_KINDS = ("missing_id", "empty_last_name", "bad_date", "empty_first_name")
SAMPLE_BROKEN_AT = (17, 99, 181, 263)


def _ascii_local(first: str, last: str) -> str:
    """A plausible preferred address; not syncd's transliteration, just believable test data."""

    def fold(text: str) -> str:
        text = text.replace("ß", "ss").replace("ł", "l").replace("Ł", "L").replace("ø", "o")
        text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
        return "".join(ch for ch in text.lower() if ch.isalnum())

    return f"{fold(first)[:1]}.{fold(last)}"


def _fit(pool: str, first: str, last: str) -> tuple[str, str]:
    """Polish surnames agree with the first name: Zofia Kowalska, Piotr Kowalski."""
    if pool == "pl":
        female = first.endswith("a")
        if female and last.endswith(("ski", "cki")):
            return first, last[:-1] + "a"
        if not female and last.endswith(("ska", "cka")):
            return first, last[:-1] + "i"
    return first, last


def _is_latin(text: str) -> bool:
    return all(ord(char) < 0x250 for char in text)


def _past_start(rng: random.Random, today: date) -> date:
    # Weighted towards recent hires, up to about 15 years back; never within the last fortnight,
    # so that "new" in the demo means the handful of deliberate future starts.
    days = int(rng.triangular(14, 15 * 365, 14))
    return today - timedelta(days=days)


def _broken_row(kind: str, anchor: str, first: str, last: str, department: str) -> Row:
    if kind == "missing_id":
        return ("", first, last, "", "2021-04-01", "active", department)
    if kind == "empty_last_name":
        return (anchor, first, "", "", "2022-09-15", "active", department)
    if kind == "bad_date":
        return (anchor, first, last, "", "2023-02-30", "active", department)
    if kind == "empty_first_name":
        return (anchor, " ", last, "", "2020-01-06", "active", department)
    raise ValueError(f"unknown broken row kind {kind!r}")


def sample_rows(today: date = SAMPLE_TODAY, seed: int = SAMPLE_SEED) -> list[Row]:
    """The demo export's rows (about 300 people, 4 of them broken), without the header."""
    rng = random.Random(seed)
    people: list[tuple[str, str]] = list(SPECIAL_PEOPLE)
    used = {f"{first} {last}" for first, last in people}
    for pool, count in SAMPLE_MIX.items():
        firsts, lasts = NAMES[pool]
        added = 0
        while added < count:
            first, last = _fit(pool, rng.choice(firsts), rng.choice(lasts))
            if f"{first} {last}" in used:
                continue  # the clashes above are the deliberate ones
            used.add(f"{first} {last}")
            people.append((first, last))
            added += 1
    rng.shuffle(people)

    starts = [_past_start(rng, today) for _ in people]
    chosen = rng.sample(range(len(people)), len(FUTURE_STARTS))
    for index, offset in zip(chosen, FUTURE_STARTS, strict=True):
        starts[index] = today + timedelta(days=offset)
    # HR numbers grow with hiring, so the export reads in start-date order like a real one.
    order = sorted(range(len(people)), key=lambda i: (starts[i], people[i]))

    rows: list[Row] = []
    for number, index in enumerate(order):
        first, last = people[index]
        rows.append(
            (
                f"E{10001 + number}",
                first,
                last,
                "",
                starts[index].isoformat(),
                "active",
                rng.choice(DEPARTMENTS),
            )
        )

    past = [i for i, row in enumerate(rows) if row[4] < today.isoformat()]
    for i in rng.sample(past[:-1], SAMPLE_TERMINATED):
        rows[i] = (*rows[i][:5], "terminated", rows[i][6])
    rows[past[-1]] = (*rows[past[-1]][:5], "Active", rows[past[-1]][6])  # HR is not consistent
    latin = [i for i, row in enumerate(rows) if _is_latin(row[1] + row[2])]
    for i in rng.sample(latin, SAMPLE_PREFERRED_EMAILS):
        first, last = rows[i][1], rows[i][2]
        email = f"{_ascii_local(first, last)}@{MAIL_DOMAIN}"
        rows[i] = (rows[i][0], first, last, email, *rows[i][4:])

    for position, kind in zip(SAMPLE_BROKEN_AT, BROKEN_KINDS, strict=True):
        first, last = rng.choice(NAMES["de"][0]), rng.choice(NAMES["de"][1])
        anchor = f"E{19001 + position}"
        rows.insert(position, _broken_row(kind, anchor, first, last, rng.choice(DEPARTMENTS)))
    return rows


def write_sample_export(
    path: Path = SAMPLE_PATH, today: date = SAMPLE_TODAY, seed: int = SAMPLE_SEED
) -> None:
    """Write the demo export (what ``config/sample-hr-export.csv`` holds)."""
    _write(path, sample_rows(today, seed))


def hr_rows(n: int, seed: int, broken: int = 0, today: date = SAMPLE_TODAY) -> Iterator[Row]:
    """``n`` data rows, ``broken`` of them (spread evenly) rejected by any sane reader."""
    rng = random.Random(seed)
    pools = list(NAMES)
    weights = [SAMPLE_MIX[key] for key in pools]
    broken = min(broken, n)
    step = n // broken if broken else 0
    future_days = [today + timedelta(days=offset) for offset in FUTURE_STARTS]
    for number in range(n):
        pool = rng.choices(pools, weights)[0]
        first, last = _fit(pool, rng.choice(NAMES[pool][0]), rng.choice(NAMES[pool][1]))
        anchor = f"E{number + 1:07d}"
        department = rng.choice(DEPARTMENTS)
        if step and number % step == step // 2 and number // step < broken:
            kind = BROKEN_KINDS[(number // step) % len(BROKEN_KINDS)]
            yield _broken_row(kind, anchor, first, last, department)
            continue
        roll = rng.random()
        start = rng.choice(future_days) if roll < 0.01 else _past_start(rng, today)
        status = "terminated" if roll > 0.97 else "active"
        email = f"{_ascii_local(first, last)}{number}@{MAIL_DOMAIN}" if 0.5 < roll < 0.52 else ""
        yield (anchor, first, last, email, start.isoformat(), status, department)


def write_hr_csv(
    path: Path, n: int, seed: int, broken: int = 0, today: date = SAMPLE_TODAY
) -> None:
    """Write an export of ``n`` people (``broken`` of them bad rows) with the demo's columns."""
    _write(path, hr_rows(n, seed, broken, today))


def _write(path: Path, rows: Iterator[Row] | list[Row]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=None, help="default: the demo export")
    parser.add_argument("--today", type=date.fromisoformat, default=SAMPLE_TODAY)
    parser.add_argument("--rows", type=int, default=None, help="write a big file of N people")
    parser.add_argument("--seed", type=int, default=SAMPLE_SEED)
    parser.add_argument("--broken", type=int, default=0, help="bad rows in a big file")
    args = parser.parse_args(argv)
    if args.rows is None:
        write_sample_export(args.out or SAMPLE_PATH, args.today, args.seed)
    else:
        if args.out is None:
            parser.error("--rows needs --out")
        write_hr_csv(args.out, args.rows, args.seed, args.broken, args.today)


if __name__ == "__main__":
    main()
