"""Sources of people: an HR CSV export or an LDAP directory (OpenLDAP, Active Directory).

Every source turns its records into :class:`syncd.model.Person` and fills a
:class:`syncd.model.ReadReport` while it is iterated; the engine knows nothing else about it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from syncd.config import Config, CsvSource
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
