"""What every source yields: records, the :class:`Source` protocol, and rejecting a record.

Apart from the package's face because the readers (:mod:`syncd.source.csv`,
:mod:`syncd.source.ldap`) need these, and the face imports the readers. The checks both readers
make of a value live here too (control characters, :func:`clean_name`), so that an export and a
directory are held to the same rules.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Generator
from contextlib import closing
from typing import Any, Protocol

from syncd.logs import event
from syncd.model import Person, ReadReport

# Joins the values that make a record's key; a control character no real value holds.
KEY_SEPARATOR = "\x1f"

# What no anchor, name, address, date or status holds: C0 and C1 control characters (a NUL, a
# tab, a line break), the line and paragraph separators and U+FEFF (a byte order mark left in the
# middle of a file). An anchor "E1\x00" would be another person than "E1" for ever after.
# KEY_SEPARATOR is one of them too; the readers report it on their own.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ufeff]")
# The same but KEY_SEPARATOR, as the body of a regex character class: a reader may search a
# whole key at once (and fold in other characters it looks for, in the same single pass).
CONTROL_IN_KEY = "\x00-\x1e\x7f-\x9f\u2028\u2029\ufeff"

Record = tuple[str, str, Any]


def control_character(value: str) -> str | None:
    """The first control character in ``value`` as "U+0000", or None when it has none."""
    match = _CONTROL.search(value)
    return None if match is None else f"U+{ord(match.group()):04X}"


def without_control_characters(value: str) -> str:
    return _CONTROL.sub("", value)


# ----------------------------------------------------------------------------------------- names

# Format characters (Unicode category Cf) are invisible: bidi controls (U+202A-202E, U+2066-2069)
# reverse what follows on screen, zero-width characters (U+200B-200D, U+2060, U+FEFF) and the soft
# hyphen (U+00AD) hide a difference between two names. None belongs in a mailbox's display name.
# The exception: a zero-width (non-)joiner between two letters of a script that needs it
# (Persian "Mohammad‌reza", Devanagari conjuncts) is part of how the name is spelled.
_FORMAT = "Cf"
_JOINERS = frozenset("\u200c\u200d")
# The first letter (or digit, refined below) of a name: str.isalpha's letters; combining marks,
# punctuation, symbols and emoji are none.
_LETTER_OR_NUMBER = re.compile(r"[^\W\d_]")
# Titles that no one is named: a first or last name that is only these lost the name itself
# ("Dr." gives the address dr.meier, for good). Kept to abbreviations that are no name anywhere
# ("Herr" is a surname too).
_TITLES = ("dr", "prof", "mr", "mrs", "ms", "mx")
_ONLY_TITLES = re.compile(rf"(?:(?:{'|'.join(_TITLES)})\.?\s*)+", re.IGNORECASE)
# Their first two letters, in any case: a name starting otherwise skips the regex.
_TITLE_STARTS = frozenset(
    a + b
    for title in _TITLES
    for a in title[0] + title[0].upper()
    for b in title[1] + title[1].upper()
)
# A name longer than this is shown cut in a rejection's reason.
_SHOWN_NAME_CHARS = 40


def _joins(value: str, index: int) -> bool:
    """Whether the joiner at ``index`` sits between two non-ASCII letters or marks."""
    if not 0 < index < len(value) - 1:
        return False
    before, after = value[index - 1], value[index + 1]
    return not (before.isascii() or after.isascii()) and all(
        unicodedata.category(char)[0] in "LM" for char in (before, after)
    )


def _without_format_characters(value: str) -> str:
    return "".join(
        char
        for index, char in enumerate(value)
        if unicodedata.category(char) != _FORMAT or (char in _JOINERS and _joins(value, index))
    ).strip()


def _has_letter(value: str) -> bool:
    return any(match.group().isalpha() for match in _LETTER_OR_NUMBER.finditer(value))


def clean_name(value: str) -> tuple[str, str | None]:
    """A first or last name (stripped, control characters already refused) as a mailbox may
    carry it: ``(name, None)``, or ``(value, reason)`` when the record must be rejected.

    Format characters are removed (see ``_FORMAT``); a name with no letter left (only
    zero-width characters, combining marks, digits, punctuation or emoji) or with only a title
    is refused. Both readers call it for every person they make, so the common name (printable,
    starting with a letter, no title) takes one fast path of three C calls.
    """
    if value.isprintable() and value[:1].isalpha() and value[:2] not in _TITLE_STARTS:
        return value, None
    name = value if value.isprintable() else _without_format_characters(value)
    shown = value if len(value) <= _SHOWN_NAME_CHARS else value[:_SHOWN_NAME_CHARS] + "..."
    # Shown as ASCII with escapes: what an invisible or combining character is must be legible.
    if not (name[:1].isalpha() or _has_letter(name)):
        return value, f"{shown!a} has no letter"
    if _ONLY_TITLES.fullmatch(name) is not None:
        return value, f"{shown!a} is only a title; the name itself is missing"
    return name, None


class Source(Protocol):
    def describe(self) -> str: ...

    def signature(self) -> str:
        """What the keys mean (columns, parsing settings, format version): records stored
        under another signature are never taken as unchanged."""
        ...

    def records(self, report: ReadReport) -> Generator[Record, None, None]: ...

    def person(self, record: Record, report: ReadReport) -> Person | None:
        """The record's person, or None after logging why the record is rejected.

        May raise SourceDataError when the record proves the whole read unusable (the CSV
        reader: UTF-8 read with a single-byte encoding); the cycle has applied nothing then.
        """
        ...

    def origin(self, record: Record) -> str:
        """Where the record is, for log lines ("line 12", a DN)."""
        ...

    def read(self, report: ReadReport) -> Generator[Person, None, None]: ...

    def sample(self, limit: int = 5) -> list[Person]: ...


def people_of(source: Source, report: ReadReport) -> Generator[Person, None, None]:
    """The valid people of a read, in source order (records turned into people one by one)."""
    with closing(source.records(report)) as records:
        for record in records:
            person = source.person(record, report)
            if person is not None:
                yield person


def reject_record(
    log: logging.Logger,
    report: ReadReport,
    source: str,
    anchor: str | None,
    field: str,
    reason: str,
    **where: Any,
) -> None:
    """Count a broken record and log one line saying where it is, which field, and why."""
    report.rejected += 1
    if anchor:
        # A broken record is not a missing one: its person must not drift towards "leaver".
        report.rejected_anchors.append(anchor)
    event(
        log,
        "record.rejected",
        logging.WARNING,
        source=source,
        **where,
        anchor=anchor,
        field=field,
        reason=reason,
    )
