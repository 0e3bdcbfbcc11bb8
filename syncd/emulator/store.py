"""The emulator's mailboxes: plain dicts in memory, optionally written through to SQLite.

Reads never touch SQLite: at start the whole file is loaded into the dicts, and each request's
changes are written back in one transaction (``with store.transaction(): ...``). There are no
deletes (Hybridbox has no delete route), so per-domain lists in creation order make paging a slice.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from syncd.errors import StateError

QUOTA_BYTES = 10 * 1024**3  # what every emulated mailbox is allowed: 10 GiB
WORKSPACE_NAME = "Default workspace"


def now_iso() -> str:
    """UTC now as ISO-8601 with milliseconds, e.g. ``2026-11-25T10:00:00.123Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def domain_id_for(account_id: str, name: str) -> str:
    """Domain ids are derived from account and name so that they survive restarts."""
    return str(uuid.uuid5(uuid.UUID(account_id), f"domain:{name}"))


def workspace_id_for(account_id: str) -> str:
    return str(uuid.uuid5(uuid.UUID(account_id), "workspace:default"))


@dataclass(frozen=True, slots=True)
class Domain:
    id: str
    name: str
    workspace_id: str
    created_at: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "status": "active",
            "outbound_routing_ready": True,
            "workspace_id": self.workspace_id,
            "workspace_name": WORKSPACE_NAME,
            "created_at": self.created_at,
        }


@dataclass(slots=True)
class Mailbox:
    id: str
    domain: Domain
    local_part: str
    first_name: str
    last_name: str
    created_at: str
    updated_at: str
    # Aliases as full addresses, in the order they were added: {address: is_catch_all}.
    aliases: dict[str, bool] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"{self.local_part}@{self.domain.name}"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "local_part": self.local_part,
            "domain_id": self.domain.id,
            "domain_name": self.domain.name,
            "primary_email": f"{self.local_part}@{self.domain.name}",
            "first_name": self.first_name,
            "last_name": self.last_name,
            "status": "active",
            "quota": {"allowed": QUOTA_BYTES, "used": 0},
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "aliases": [
                {"alias": alias, "is_catch_all": catch_all}
                for alias, catch_all in self.aliases.items()
            ],
            "workspace_id": self.domain.workspace_id,
            "workspace_name": WORKSPACE_NAME,
        }


class AddressTaken(Exception):
    """The address is already a mailbox's primary address or alias."""


class Store:
    """Mailboxes by id, by address and per domain; ``journal`` persists changes when given."""

    def __init__(self, account_id: str, journal: SqliteJournal | None = None) -> None:
        self.account_id = account_id
        self.workspace_id = workspace_id_for(account_id)
        self.journal = journal
        self.domains: dict[str, Domain] = {}  # by id
        self._domains_by_name: dict[str, Domain] = {}
        self._mailboxes: dict[str, Mailbox] = {}  # by id
        self._ordered: list[Mailbox] = []  # creation order, so that a page is a slice
        self._by_domain: dict[str, list[Mailbox]] = {}
        self._addresses: dict[str, Mailbox] = {}  # primary addresses and aliases, lowercase
        self._dirty: dict[str, Mailbox] = {}
        self._in_transaction = False
        if journal is not None:
            journal.check_account(account_id)
            for name in journal.domain_names():
                self.add_domain(name)
            self._load()

    # ------------------------------------------------------------------ domains

    def add_domain(self, name: str) -> Domain:
        name = name.strip().lower()
        existing = self._domains_by_name.get(name)
        if existing is not None:
            return existing
        domain = Domain(domain_id_for(self.account_id, name), name, self.workspace_id, now_iso())
        self.domains[domain.id] = domain
        self._domains_by_name[name] = domain
        self._by_domain[domain.id] = []
        if self.journal is not None:
            self.journal.save_domain(name)
        return domain

    def domain(self, name_or_id: str) -> Domain | None:
        return self.domains.get(name_or_id) or self._domains_by_name.get(name_or_id.lower())

    # ------------------------------------------------------------------ reads

    def __len__(self) -> int:
        return len(self._mailboxes)

    def get(self, mailbox_id: str) -> Mailbox | None:
        return self._mailboxes.get(mailbox_id)

    def by_address(self, address: str) -> Mailbox | None:
        """The mailbox whose primary address or alias this is (case-insensitive)."""
        return self._addresses.get(address.lower())

    def all(self) -> Iterable[Mailbox]:
        return iter(self._ordered)

    def page(
        self,
        *,
        domain: Domain | None,
        workspace_id: str | None,
        search: str | None,
        offset: int,
        limit: int,
    ) -> tuple[list[Mailbox], int]:
        """One page of mailboxes in creation order, and the total that match."""
        if workspace_id is not None and workspace_id != self.workspace_id:
            return [], 0
        pool = self._by_domain[domain.id] if domain is not None else self._ordered
        if not search:
            return pool[offset : offset + limit], len(pool)
        needle = search.casefold()
        matches = [mailbox for mailbox in pool if _matches(mailbox, needle)]
        return matches[offset : offset + limit], len(matches)

    # ------------------------------------------------------------------ writes

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group one request's changes into one SQLite transaction.

        Changes are made in memory first; if writing them fails, memory is reloaded from the file
        so that the two never disagree.
        """
        self._in_transaction = True
        try:
            yield
            if self.journal is not None and self._dirty:
                try:
                    self.journal.save_mailboxes(self._dirty.values())
                except sqlite3.Error:
                    self._load()
                    raise
        finally:
            self._dirty.clear()
            self._in_transaction = False

    def create(
        self,
        domain: Domain,
        local_part: str,
        first_name: str,
        last_name: str,
        *,
        mailbox_id: str | None = None,
        created_at: str | None = None,
        aliases: dict[str, bool] | None = None,
    ) -> Mailbox:
        address = f"{local_part}@{domain.name}"
        if address in self._addresses:
            raise AddressTaken(address)
        wanted_aliases = {alias.lower(): catch_all for alias, catch_all in (aliases or {}).items()}
        for alias in wanted_aliases:
            if alias in self._addresses or alias == address:
                raise AddressTaken(alias)
        if mailbox_id is not None and mailbox_id in self._mailboxes:
            raise AddressTaken(f"mailbox id {mailbox_id}")
        stamp = created_at or now_iso()
        mailbox = Mailbox(
            id=mailbox_id or str(uuid.uuid4()),
            domain=domain,
            local_part=local_part,
            first_name=first_name,
            last_name=last_name,
            created_at=stamp,
            updated_at=stamp,
            aliases=wanted_aliases,
        )
        self._index(mailbox)
        self._touch(mailbox)
        return mailbox

    def rename(self, mailbox: Mailbox, first_name: str | None, last_name: str | None) -> None:
        if first_name is not None:
            mailbox.first_name = first_name
        if last_name is not None:
            mailbox.last_name = last_name
        mailbox.updated_at = now_iso()
        self._touch(mailbox)

    def add_alias(self, mailbox: Mailbox, address: str, is_catch_all: bool) -> None:
        key = address.lower()
        if key in self._addresses:
            raise AddressTaken(address)
        mailbox.aliases[key] = is_catch_all
        mailbox.updated_at = now_iso()
        self._addresses[key] = mailbox
        self._touch(mailbox)

    def clear(self) -> None:
        self._mailboxes.clear()
        self._ordered.clear()
        self._addresses.clear()
        for mailboxes in self._by_domain.values():
            mailboxes.clear()
        if self.journal is not None:
            self.journal.clear()

    def truncate(self, keep: int) -> int:
        """Forget every mailbox but the first ``keep`` created; returns how many went.

        Rolls the emulator back to an earlier point (a benchmark repeats a run from the same
        start), which the public API cannot: it has no delete.
        """
        gone = self._ordered[keep:]
        if not gone:
            return 0
        del self._ordered[keep:]
        gone_ids = {mailbox.id for mailbox in gone}
        for domain_id in {mailbox.domain.id for mailbox in gone}:
            # One pass per domain (list.remove per mailbox made 1,000 of 100k take minutes).
            mailboxes = self._by_domain[domain_id]
            mailboxes[:] = [m for m in mailboxes if m.id not in gone_ids]
        for mailbox in gone:
            del self._mailboxes[mailbox.id]
            for address in (mailbox.address, *mailbox.aliases):
                if self._addresses.get(address) is mailbox:
                    del self._addresses[address]
            self._dirty.pop(mailbox.id, None)
        if self.journal is not None:
            self.journal.delete_mailboxes(m.id for m in gone)
        return len(gone)

    # ------------------------------------------------------------------ internals

    def _index(self, mailbox: Mailbox) -> None:
        self._mailboxes[mailbox.id] = mailbox
        self._ordered.append(mailbox)
        self._by_domain[mailbox.domain.id].append(mailbox)
        self._addresses[mailbox.address] = mailbox
        for alias in mailbox.aliases:
            self._addresses[alias] = mailbox

    def _touch(self, mailbox: Mailbox) -> None:
        if self.journal is None:
            return
        if self._in_transaction:
            self._dirty[mailbox.id] = mailbox
        else:
            self.journal.save_mailboxes([mailbox])

    def _load(self) -> None:
        assert self.journal is not None
        self._mailboxes.clear()
        self._ordered.clear()
        self._addresses.clear()
        for mailboxes in self._by_domain.values():
            mailboxes.clear()
        for row in self.journal.load_mailboxes():
            domain = self.add_domain(row["domain_name"])
            self._index(
                Mailbox(
                    id=row["id"],
                    domain=domain,
                    local_part=row["local_part"],
                    first_name=row["first_name"],
                    last_name=row["last_name"],
                    created_at=row["created_at"],
                    updated_at=row["updated_at"],
                    aliases={str(k): bool(v) for k, v in json.loads(row["aliases"]).items()},
                )
            )


def _matches(mailbox: Mailbox, needle: str) -> bool:
    return (
        needle in mailbox.address.casefold()
        or needle in mailbox.first_name.casefold()
        or needle in mailbox.last_name.casefold()
    )


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS domains (name TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS mailboxes (
    seq INTEGER PRIMARY KEY,           -- creation order, which the list route follows
    id TEXT NOT NULL UNIQUE,
    domain_name TEXT NOT NULL,
    local_part TEXT NOT NULL,
    first_name TEXT NOT NULL,
    last_name TEXT NOT NULL,
    aliases TEXT NOT NULL,             -- JSON object {address: is_catch_all}
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (domain_name, local_part)
);
"""


class SqliteJournal:
    """The SQLite file behind ``--state``: WAL mode, one transaction per call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            # isolation_level=None: transactions are opened explicitly, one per save.
            self._db = sqlite3.connect(path, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            # OFF still survives a crash or kill of the emulator (the OS has the data), only not
            # a power loss, which an emulator need not; it halves the cost of each commit.
            self._db.execute("PRAGMA synchronous=OFF")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StateError(
                f"cannot open the emulator state file {path}: {exc}",
                hint="check the path and its permissions, or leave out --state to keep state "
                "in memory",
            ) from exc

    def close(self) -> None:
        self._db.close()

    def check_account(self, account_id: str) -> None:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'account_id'").fetchone()
        if row is None:
            self._db.execute("INSERT INTO meta VALUES ('account_id', ?)", (account_id,))
        elif row["value"] != account_id:
            raise StateError(
                f"the emulator state file {self.path} belongs to account {row['value']}, "
                f"not {account_id}",
                hint=f"pass --account-id {row['value']} or use another --state file",
            )

    def domain_names(self) -> list[str]:
        return [row["name"] for row in self._db.execute("SELECT name FROM domains ORDER BY name")]

    def save_domain(self, name: str) -> None:
        self._db.execute("INSERT OR IGNORE INTO domains VALUES (?)", (name,))

    def load_mailboxes(self) -> list[sqlite3.Row]:
        return self._db.execute("SELECT * FROM mailboxes ORDER BY seq").fetchall()

    def save_mailboxes(self, mailboxes: Iterable[Mailbox]) -> None:
        rows = [
            (
                mailbox.id,
                mailbox.domain.name,
                mailbox.local_part,
                mailbox.first_name,
                mailbox.last_name,
                json.dumps(mailbox.aliases),
                mailbox.created_at,
                mailbox.updated_at,
            )
            for mailbox in mailboxes
        ]
        self._db.execute("BEGIN")
        try:
            self._db.executemany(
                "INSERT INTO mailboxes (id, domain_name, local_part, first_name, last_name,"
                " aliases, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET first_name = excluded.first_name,"
                " last_name = excluded.last_name, aliases = excluded.aliases,"
                " updated_at = excluded.updated_at",
                rows,
            )
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def delete_mailboxes(self, ids: Iterable[str]) -> None:
        self._db.execute("BEGIN")
        self._db.executemany("DELETE FROM mailboxes WHERE id = ?", ((i,) for i in ids))
        self._db.execute("COMMIT")

    def clear(self) -> None:
        self._db.execute("DELETE FROM mailboxes")
