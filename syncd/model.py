"""The records that flow between the stages of a cycle.

``Person`` is deliberately a frozen, slotted dataclass rather than a pydantic model: a cycle builds
one per source record (100k and more), and validation has already happened in the source adapter.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date


@dataclass(frozen=True, slots=True)
class Person:
    """One person as the source describes them, normalized.

    ``anchor`` is the stable identity (entryUUID, objectGUID, employee number, HR id); never the
    email address, which changes with names.
    """

    anchor: str
    first_name: str
    last_name: str
    email: str | None = None
    start_date: date | None = None
    disabled: bool = False
    digest: str = field(default="", compare=False)
    # Where the record came from ("line 12", a DN), for log lines; not part of the identity.
    origin: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.digest:
            object.__setattr__(self, "digest", person_digest(self))


def person_digest(person: Person) -> str:
    """A short hash of everything syncd acts on, so that "changed?" is one string comparison."""
    text = "\x1f".join(
        (
            person.first_name,
            person.last_name,
            person.email or "",
            person.start_date.isoformat() if person.start_date else "",
            "1" if person.disabled else "0",
        )
    )
    return hashlib.blake2b(text.encode("utf-8"), digest_size=12).hexdigest()


@dataclass(slots=True)
class ReadReport:
    """What a source read amounted to; filled in while the read is iterated.

    ``complete`` is True only when the source was read to its proper end (CSV: end of file with the
    expected header; LDAP: last page with an empty cookie and success). An incomplete read may still
    provision the people it did return, but it never counts anyone as missing.
    """

    read: int = 0
    rejected: int = 0
    complete: bool = False
    incomplete_reason: str | None = None
    warnings: int = 0
    # Anchors of rejected records (when they had one): they are not "missing" from the source,
    # only broken in it, so they must not count towards leaving.
    rejected_anchors: list[str] = field(default_factory=list)
