"""Names that are no names must not become mailboxes; invisible characters must not be kept.

Issue "hostile input must never cost data", item 31: names made only of zero-width characters,
combining marks, emoji or punctuation got mailboxes; bidi overrides (U+202E), zero-width
characters and soft hyphens were kept in display names. Both readers now share one check
(``syncd.source._records.clean_name``): a first or last name needs a letter, a title alone ("Dr.")
is no name, and format characters are removed before the name is used. The LDAP reader refuses
control characters in anchors and names, as the CSV reader does. What is asserted is what an
administrator sees: who was read, and the ``record.rejected`` line with field and reason.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Any

import pytest

from syncd.config import CsvSource, LdapSource, SyncConfig
from syncd.model import Person, ReadReport
from syncd.source._ldap_entry import EntryMapper
from syncd.source._records import clean_name
from syncd.source.csv import CsvReader
from tests.support.events import collecting
from tests.support.site import Row, Site

# Names with no letter: what each is made of, and how the reason shows it (ASCII, escaped).
NO_LETTER = {
    "zero-width characters": ("\u200b\u200c\u200d", r"'\u200b\u200c\u200d' has no letter"),
    "combining marks": ("\u0301\u0308", r"'\u0301\u0308' has no letter"),
    "emoji": ("\U0001f600\U0001f389", r"'\U0001f600\U0001f389' has no letter"),
    "punctuation": ("-.-", "'-.-' has no letter"),
    "digits": ("1234", "'1234' has no letter"),
    "a bidi override": ("\u202e\u202c", r"'\u202e\u202c' has no letter"),
    "a soft hyphen": ("\u00ad", r"'\xad' has no letter"),
}
# Invisible characters inside real names, and the name a mailbox carries.
CLEANED = {
    "a bidi override": ("Anna\u202eMeier", "AnnaMeier"),
    "bidi isolates": ("\u2067Anna\u2069", "Anna"),
    "zero-width space": ("Ann\u200ba", "Anna"),
    "word joiner": ("\u2060Anna", "Anna"),
    "soft hyphen": ("Mül\u00adler", "Müller"),
    "a zero-width joiner between Latin letters": ("An\u200dna", "Anna"),
}


@pytest.mark.parametrize(("value", "reason"), NO_LETTER.values(), ids=list(NO_LETTER))
def test_a_name_without_a_letter_is_refused_with_what_it_holds(value: str, reason: str) -> None:
    assert clean_name(value) == (value, reason)


@pytest.mark.parametrize("value", ["Dr.", "dr", "Prof. Dr.", "MR.", "Ms", "Mx."])
def test_a_title_alone_is_no_name(value: str) -> None:
    assert clean_name(value) == (value, f"{value!r} is only a title; the name itself is missing")


@pytest.mark.parametrize(("value", "name"), CLEANED.values(), ids=list(CLEANED))
def test_format_characters_are_removed_from_names(value: str, name: str) -> None:
    assert clean_name(value) == (name, None)


@pytest.mark.parametrize(
    "value",
    [
        "Drew", "Robinson", "Prosper", "Ólafur", "李", "Ω",
        "Nguyễn", "O'Brien", "Anna\u00a0Maria",
        # A joiner between two letters of a script that needs it is part of the spelling.
        "\u0645\u062d\u0645\u062f\u200c\u0631\u0636\u0627",  # Persian, with a ZWNJ
        "\u0915\u094d\u200d\u0937",  # Devanagari half form, with a ZWJ after the virama
    ],
)  # fmt: skip
def test_real_names_pass_unchanged(value: str) -> None:
    assert clean_name(value) == (value, None)


def test_the_format_character_table_is_this_pythons_category_cf() -> None:
    # clean_name keeps or drops by unicodedata's category; a name of every Cf character of this
    # Python's Unicode (but the joiners) keeps nothing of them.
    every_cf = "".join(
        chr(code) for code in range(0x110000) if unicodedata.category(chr(code)) == "Cf"
    )
    assert clean_name("A" + every_cf + "B") == ("AB", None)


# --------------------------------------------------------------------------------- the CSV reader

HEADER = "employee_id,first_name,last_name\n"


def read_csv(tmp_path: Path, lines: list[str]) -> tuple[list[Person], list[dict[str, Any]]]:
    path = tmp_path / "hr.csv"
    path.write_text(HEADER + "".join(f"{line}\n" for line in lines), encoding="utf-8")
    columns = {"anchor": "employee_id", "first_name": "first_name", "last_name": "last_name"}
    reader = CsvReader(
        CsvSource.model_validate({"type": "csv", "path": str(path), "columns": columns}),
        SyncConfig(),
    )
    with collecting("syncd.source.csv") as events:
        people = list(reader.read(ReadReport()))
    return people, [event.fields for event in events.named("record.rejected")]


def test_csv_rejects_names_without_a_letter_and_titles_naming_field_and_line(
    tmp_path: Path,
) -> None:
    people, rejected = read_csv(
        tmp_path,
        ["E1,Anna,Meier", "E2,\u200b\u200b,Meier", "E3,Bo,\U0001f600", "E4,Dr.,Meier", "E5,Li,Wu"],
    )
    assert [p.anchor for p in people] == ["E1", "E5"]
    assert [(r["line"], r["anchor"], r["field"], r["reason"]) for r in rejected] == [
        (3, "E2", "first_name", r"'\u200b\u200b' has no letter"),
        (4, "E3", "last_name", r"'\U0001f600' has no letter"),
        (5, "E4", "first_name", "'Dr.' is only a title; the name itself is missing"),
    ]


def test_csv_removes_bidi_and_zero_width_characters_from_names(tmp_path: Path) -> None:
    people, rejected = read_csv(tmp_path, ["E1,\u202eAnna\u200b,Mül\u00adler"])
    assert rejected == []
    assert [(p.first_name, p.last_name) for p in people] == [("Anna", "Müller")]


# ------------------------------------------------------------------------------- the LDAP reader

ANCHOR = b"0b4c7c9e-1f7c-4b8e-9e56-6a0d7f3c1a01"


def map_entry(**values: bytes) -> tuple[Person | None, list[dict[str, Any]]]:
    raw = {"entryUUID": [ANCHOR], "givenName": [b"Ada"], "sn": [b"Lovelace"]}
    raw.update({name: [value] for name, value in values.items()})
    source = LdapSource.model_validate(
        {"type": "ldap", "url": ["ldap://ldap.example.test"], "base_dn": "dc=example,dc=test"}
    )
    with collecting("syncd.source.ldap") as events:
        person = EntryMapper(source, SyncConfig()).person(
            "uid=ada,dc=example,dc=test", raw, ReadReport()
        )
    return person, [event.fields for event in events.named("record.rejected")]


CONTROL = "holds the control character"
LDAP_REJECTED = {
    "NUL in the anchor": (
        "entryUUID",
        b"E1\x00",
        "anchor",
        rf"entryUUID 'E1\x00' {CONTROL} U+0000",
    ),
    "ESC in the anchor": (
        "entryUUID",
        b"E\x1b[2J",
        "anchor",
        rf"entryUUID 'E\x1b[2J' {CONTROL} U+001B",
    ),
    "a line break": (
        "givenName",
        b"Ada\nEve",
        "first_name",
        rf"givenName 'Ada\nEve' {CONTROL} U+000A",
    ),
    "a C1 control": ("sn", b"Love\xc2\x9b", "last_name", rf"sn 'Love\x9b' {CONTROL} U+009B"),
    "zero-width only": ("sn", "\u200b".encode(), "last_name", r"sn '\u200b' has no letter"),
    "a title": (
        "givenName",
        b"Dr.",
        "first_name",
        "givenName 'Dr.' is only a title; the name itself is missing",
    ),
}


@pytest.mark.parametrize(
    ("attribute", "value", "field", "reason"), LDAP_REJECTED.values(), ids=list(LDAP_REJECTED)
)
def test_ldap_rejects_control_characters_and_names_that_are_none(
    attribute: str, value: bytes, field: str, reason: str
) -> None:
    person, rejected = map_entry(**{attribute: value})
    assert person is None
    [reject] = rejected
    assert (reject["dn"], reject["field"], reject["reason"]) == (
        "uid=ada,dc=example,dc=test",
        field,
        reason,
    )


def test_ldap_removes_format_characters_from_names() -> None:
    person, rejected = map_entry(givenName="\u2066Ada\u2069".encode(), sn="Love\u00adlace".encode())
    assert rejected == []
    assert person is not None
    assert (person.first_name, person.last_name) == ("Ada", "Lovelace")


# ------------------------------------------------------------------------------------ end to end


def test_hybridbox_gets_clean_display_names_and_nobody_without_a_name(site: Site) -> None:
    site.write_people(
        [
            Row("E1", "\u202eAnna", "Mei\u200ber"),
            Row("E2", "\u0301", "Meier"),
            Row("E3", "Bo", "Day"),
        ]
    )
    result = site.syncd("apply")
    assert result.returncode == 0, result.stderr
    assert sorted(site.remote_names()) == [("Anna", "Meier"), ("Bo", "Day")]
    assert site.addresses_of() == {"E1": "anna.meier", "E3": "bo.day"}
    [rejected] = site.log_events("record.rejected")
    assert "anchor=E2 field=first_name" in rejected
    assert r"has no letter" in rejected
