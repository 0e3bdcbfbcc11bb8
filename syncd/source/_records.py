"""What every source yields: records, the :class:`Source` protocol, and rejecting a record.

Apart from the package's face because the readers (:mod:`syncd.source.csv`,
:mod:`syncd.source.ldap`) need these, and the face imports the readers.
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from contextlib import closing
from typing import Any, Protocol

from syncd.logs import event
from syncd.model import Person, ReadReport

# Joins the values that make a record's key; a control character no real value holds.
KEY_SEPARATOR = "\x1f"

Record = tuple[str, str, Any]


class Source(Protocol):
    def describe(self) -> str: ...

    def signature(self) -> str:
        """What the keys mean (columns, parsing settings, format version): records stored
        under another signature are never taken as unchanged."""
        ...

    def records(self, report: ReadReport) -> Generator[Record, None, None]: ...

    def person(self, record: Record, report: ReadReport) -> Person | None:
        """The record's person, or None after logging why the record is rejected."""
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
