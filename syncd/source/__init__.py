"""Sources of people: an HR CSV export or an LDAP directory (OpenLDAP, Active Directory).

Every source turns its records into :class:`syncd.model.Person` and fills a
:class:`syncd.model.ReadReport` while it is iterated; the engine knows nothing else about it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, Protocol

from syncd.config import Config, CsvSource
from syncd.logs import event
from syncd.model import Person, ReadReport


class Source(Protocol):
    def describe(self) -> str: ...

    def read(self, report: ReadReport) -> Iterator[Person]: ...

    def sample(self, limit: int = 5) -> list[Person]: ...


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
