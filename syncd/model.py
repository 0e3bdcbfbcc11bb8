"""The records that flow between the stages of a cycle.

``Person`` is deliberately a frozen, slotted dataclass rather than a pydantic model: a cycle builds
one per source record (100k and more), and validation has already happened in the source adapter.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
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
    # The values of ``source.columns.fields`` / ``source.attributes.fields``, as (name, value)
    # pairs in the config's order: what ``hybridbox.domains`` routes people by.
    fields: tuple[tuple[str, str], ...] = ()

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
    if person.fields:
        # Only when fields are configured: a state from before them keeps every digest, so an
        # upgrade does not make everyone look changed.
        text += "".join(f"\x1e{name}\x1f{value}" for name, value in person.fields)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=12).hexdigest()


@dataclass(frozen=True, slots=True)
class Watermark:
    """Where the next *delta* read of a directory may start: the server's own change counter
    at a complete read, and what it is valid for (see :mod:`syncd.source.ldap`).

    A change counter means something only on the server that kept it, for the search it was
    taken with: a delta read starts from one only on that server (``url``; for AD also the same
    domain controller, ``server``, not restored from a backup, ``invocation_id``) and with the
    same search settings (``settings``, a digest).
    """

    kind: str  # "usn": AD's highestCommittedUSN; "csn": OpenLDAP's entryCSN
    value: str  # the USN in digits, or a CSN
    url: str  # the source.url that answered
    server: str = ""  # AD: the DC's dsServiceName
    invocation_id: str = ""  # AD: the DC's invocationId (hex); another one means a restore
    settings: str = ""
    # OpenLDAP without contextCSN: the highest entryCSN the reads so far returned, where the
    # delta read after the next one starts.
    seen: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Watermark | None:
        """The watermark stored as ``text``, or None when it is not one (a newer or damaged
        value is no reason to fail a cycle: a full read needs none)."""
        try:
            data = json.loads(text)
            mark = cls(**{key: str(data.get(key, "")) for key in cls.__dataclass_fields__})
        except (ValueError, TypeError, AttributeError):
            return None
        usable = mark.kind == "csn" or (mark.kind == "usn" and mark.value.isdigit())
        return mark if usable and mark.value and mark.url else None


@dataclass(slots=True)
class ReadReport:
    """What a source read amounted to; filled in while the read is iterated.

    ``complete`` is True only when the source was read to its proper end (CSV: end of file with the
    expected header; LDAP: last page with an empty cookie and success). An incomplete read may still
    provision the people it did return, but it never counts anyone as missing.

    A *delta* read (``delta``, LDAP only) returns only the entries changed since ``since``: even
    when complete it says nothing about who is absent, so only a complete *full* read
    (:attr:`absences_known`) counts anyone missing or measures the source's size.
    """

    read: int = 0
    rejected: int = 0
    complete: bool = False
    incomplete_reason: str | None = None
    warnings: int = 0
    # Anchors of rejected records (when they had one): they are not "missing" from the source,
    # only broken in it, so they must not count towards leaving.
    rejected_anchors: list[str] = field(default_factory=list)
    # Set before the read: where a delta read may start (None: read everything).
    since: Watermark | None = None
    # Set by the read: whether it read only the changes since ``since``; why it read everything
    # although ``since`` was given (another server answered, ...); and, when it completed, where
    # the next delta read may start (None: the server keeps no usable change order).
    delta: bool = False
    full_reason: str | None = None
    watermark: Watermark | None = None

    @property
    def scan(self) -> str:
        """``delta`` or ``full``: what the cycle summary and ``syncd status`` say."""
        return "delta" if self.delta else "full"

    @property
    def absences_known(self) -> bool:
        """Whether whoever is not in this read is absent from the source: a complete full read."""
        return self.complete and not self.delta
