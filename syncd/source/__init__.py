"""Sources of people: an HR CSV export or an LDAP directory (OpenLDAP, Active Directory).

A source streams *records* and turns a record into a :class:`syncd.model.Person` on demand,
filling a :class:`syncd.model.ReadReport` as it goes; the engine knows nothing else about it.

A record is a tuple ``(anchor, key, payload)``. The key is a string that stands for everything
the person is made of (the anchor included): two records with equal keys, read with the same
:meth:`Source.signature`, give equal people. That lets the engine recognise, without building
people, the parts of a read that are the same as last time (see :mod:`syncd.stage`). The
payload is the source's own (a line number, a parsed person).
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from contextlib import closing
from typing import Any, Protocol

from syncd.config import Config, CsvSource
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


def open_source(config: Config) -> Source:
    """The reader for ``config.source``; imports lazily so a CSV site never loads ldap3."""
    if isinstance(config.source, CsvSource):
        from syncd.source.csv import CsvReader

        return CsvReader(config.source, config.sync)
    from syncd.source.ldap import LdapReader

    return LdapReader(config.source, config.sync)


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
