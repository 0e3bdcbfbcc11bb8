"""Sources of people: an HR CSV export or an LDAP directory (OpenLDAP, Active Directory).

A source streams *records* and turns a record into a :class:`syncd.model.Person` on demand,
filling a :class:`syncd.model.ReadReport` as it goes; the engine knows nothing else about it.

A record is a tuple ``(anchor, key, payload)``. The key is a string that stands for everything
the person is made of (the anchor included): two records with equal keys, read with the same
:meth:`Source.signature`, give equal people. That lets the engine recognise, without building
people, the parts of a read that are the same as last time (see :mod:`syncd.cycle._stage`). The
payload is the source's own (a line number, a parsed person).

The face is this package (:func:`open_source` and what a reader yields) and its two adapters,
:mod:`syncd.source.csv` and :mod:`syncd.source.ldap`, imported on demand so that a CSV site never
loads ldap3. What the readers share is in :mod:`syncd.source._records`; what only LDAP needs is in
the ``_ldap_*`` and ``_ad`` modules.
"""

from __future__ import annotations

from syncd.config import Config, CsvSource
from syncd.source._records import KEY_SEPARATOR, Record, Source, people_of, reject_record

__all__ = ["KEY_SEPARATOR", "Record", "Source", "open_source", "people_of", "reject_record"]


def open_source(config: Config) -> Source:
    """The reader for ``config.source``; imports lazily so a CSV site never loads ldap3."""
    if isinstance(config.source, CsvSource):
        from syncd.source.csv import CsvReader

        return CsvReader(config.source, config.sync)
    from syncd.source.ldap import LdapReader

    return LdapReader(config.source, config.sync)
