"""The local state store: one SQLite file that remembers what syncd saw and did.

Tables (see :mod:`syncd.state._schema` for the exact schema):

- ``people``: the last accepted version of every person the source returned (names, digest,
  first seen, missing counter). Written only for new or changed people, so a cycle where nothing
  changed writes (almost) nothing.
- ``mailboxes``: one row per person syncd decided to provision, with its lifecycle state:
  ``pending`` (decided, not sent), ``intent`` (sent or about to be sent: outcome unknown until
  resolved), ``created``, ``adopted``, ``failed`` (retried after ``next_attempt_at``) and
  ``quarantined`` (left alone until ``syncd retry`` or the source record changes).
- ``addresses``: every address syncd ever issued, reserved or saw taken; never issued twice.
- ``runs``: one row per cycle: times, completeness of the read, counts, outcome.
- ``blocks``: the blocks of the last read (see :mod:`syncd.cycle._stage`); ``people.block`` says
  which one a person was seen in, ``people.open`` whether the planner must look at them even when
  their record is unchanged.
- ``meta``: small key/value facts (e.g. that ``syncd adopt`` recorded a baseline, when the
  Hybridbox token was last checked).

All writes of a cycle step happen in one transaction (``with state.transaction():``), so a crash
at any point leaves a state from which the next cycle is correct. Times are UTC ISO-8601 strings.

Everything a cycle does per person is plain ``sqlite3`` on :attr:`State.conn`. The migrations and
the reports of ``syncd status``, ``failures``, ``leavers`` and ``addresses`` go through
:attr:`State.db`, sqlite-utils on the same connection, which is made (and sqlite-utils imported)
only when one of them runs.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from syncd.errors import StateError
from syncd.state._schema import MIGRATIONS

if TYPE_CHECKING:
    import sqlite_utils

# The condition of the people_leaving index (see syncd.state._schema), written out so that
# queries can use the index.
_LEAVING = "(p.disabled = 1 OR p.missing_count > 0)"

# A person ``p`` who counts as a leaver (parameter: leaver_after_missing, >= 1; so every leaver
# also matches _LEAVING).
_LEAVER = "(p.disabled = 1 OR p.missing_count >= ?)"

# A mailbox ``m`` that exists on Hybridbox.
_HAS_MAILBOX = "m.state IN ('created', 'adopted')"

# Whether an address row ``a`` (with its holder ``p``) may not be issued to someone new: all
# are, but a leaver's address last seen before the cutoff (first parameter; "" holds every
# address) once they count as a leaver (second parameter: leaver_after_missing).
_TAKEN = f"NOT (a.status = 'issued' AND p.anchor IS NOT NULL AND p.last_seen < ? AND {_LEAVER})"

# An address's holder ``p``, joined only when leaving: only a leaver's address can be free again
# (leaver_after_missing >= 1, so a leaver has disabled = 1 or missing_count > 0), and probing
# the small people_leaving index is ~2.5x faster than probing people itself (the allocator's
# prefix ranges in a 100k state). Everyone else is NULL here, so _TAKEN holds for them.
_HOLDER_IF_LEAVING = (
    f"LEFT JOIN people p INDEXED BY people_leaving ON p.anchor = a.anchor AND {_LEAVING}"
)


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def _reservation_cutoff(now: datetime, reserve_days: int | None) -> str:
    """The ``last_seen`` before which a leaver's address is free again ("": never)."""
    return iso(now - timedelta(days=reserve_days)) if reserve_days is not None else ""


class KnownLocalParts(NamedTuple):
    """Local parts of one domain that the state knows, by what they mean for a new issue."""

    taken: list[str]
    # Known, but their holder's reservation ended: free to issue again (with history).
    free_again: list[str]


@dataclass(frozen=True, slots=True)
class StoredBlock:
    """A block of the last read (see :mod:`syncd.cycle._stage`)."""

    id: int
    digest: bytes
    # Positions in the block of the records that were rejected.
    rejects: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class LastRead:
    """The last complete read, for the source-size guards."""

    started_at: str
    accepted: int


class State:
    """Typed access to the state database. Every method is one query or one transaction."""

    def __init__(self, path: Path | None, *, read_only: bool = False) -> None:
        self.path = path
        self.read_only = read_only
        try:
            if path is None:
                conn = sqlite3.connect(":memory:", isolation_level=None)
            elif read_only:
                conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(path, isolation_level=None)
        except OSError as exc:
            raise StateError(
                f"cannot create the state directory {path.parent if path else ''}: {exc.strerror}",
                hint="check state.path and that syncd's user may write there",
            ) from None
        except sqlite3.Error as exc:
            raise StateError(f"cannot open state database {path}: {exc}") from None
        try:
            conn.row_factory = sqlite3.Row
            if not read_only:
                conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode is durable against process crashes (our failure model);
            # only an OS crash may lose the last transactions, never corrupt the file.
            conn.execute("PRAGMA synchronous=NORMAL")
            # Checkpoint (copy the WAL into the file, with an fsync) every ~40 MB instead of
            # every ~4 MB: a first provisioning commits once per batch, touching pages all over
            # the address index, and the default made checkpoints a third of its commit time.
            conn.execute("PRAGMA wal_autocheckpoint=10000")
            conn.execute("PRAGMA busy_timeout=5000")
            conn.execute("PRAGMA temp_store=FILE")
        except sqlite3.Error as exc:
            raise StateError(f"cannot open state database {path}: {exc}") from None
        self.conn = conn
        if not read_only:
            self._migrate()
        elif self.schema_version() > len(MIGRATIONS):
            raise StateError(f"state database {path} is from a newer syncd")

    # ---------------------------------------------------------------- plumbing

    def schema_version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    @property
    def current(self) -> bool:
        """True when the schema is this syncd's (a read-only state may be older)."""
        return self.schema_version() == len(MIGRATIONS)

    def _migrate(self) -> None:
        version = self.schema_version()
        if version > len(MIGRATIONS):
            raise StateError(
                f"state database {self.path} has schema version {version}, newer than this "
                f"syncd understands ({len(MIGRATIONS)})",
                hint="upgrade syncd, or restore the matching backup",
            )
        # A current state has nothing to run, so it never touches self.db (nor sqlite-utils).
        for number, migration in enumerate(MIGRATIONS[version:], start=version + 1):
            with self.transaction():
                migration(self.db)
                if not self.conn.in_transaction:
                    # Its first statements are committed already; recording the version would
                    # hide that the rest never ran.
                    raise StateError(
                        f"schema migration {number} ended its own transaction",
                        hint="a migration must not call sqlite-utils' Table.create or "
                        "Table.transform (they commit): see syncd/state/_schema.py",
                    )
                self.conn.execute(f"PRAGMA user_version={number}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            # Something in the block may have ended the transaction itself (see _migrate); a
            # ROLLBACK then would fail and hide the error that got us here.
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()

    @cached_property
    def db(self) -> sqlite_utils.Database:
        """This state's connection through sqlite-utils: for the migrations and the reports.

        Imported here, on first use, because importing sqlite-utils costs ~30 ms on top of
        syncd's own imports (``python -X importtime``), which a cycle on a current state, the
        every-few-minutes case, does not need to pay. The connection is left as ``State`` set it
        up: no ``recursive_triggers`` pragma, and no installed sqlite-utils plugin may register
        functions on it.
        """
        import sqlite_utils

        return sqlite_utils.Database(self.conn, recursive_triggers=False, execute_plugins=False)

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        return self.conn.execute(sql, params).fetchall()

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self.conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    # ---------------------------------------------------------------- meta

    def get_meta(self, key: str) -> str | None:
        value = self.scalar("SELECT value FROM meta WHERE key = ?", (key,))
        return None if value is None else str(value)

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    # ---------------------------------------------------------------- runs

    def start_run(self, cycle_id: str, mode: str, source: str, started_at: datetime) -> int:
        with self.transaction():
            cursor = self.conn.execute(
                "INSERT INTO runs(cycle_id, mode, started_at, source) VALUES (?, ?, ?, ?)",
                (cycle_id, mode, iso(started_at), source),
            )
        return int(cursor.lastrowid or 0)

    def finish_run(self, run_id: int, **values: Any) -> None:
        values["finished_at"] = iso(utcnow())
        columns = ", ".join(f"{key} = ?" for key in values)
        with self.transaction():
            self.conn.execute(f"UPDATE runs SET {columns} WHERE id = ?", (*values.values(), run_id))

    def last_complete_read(self) -> LastRead | None:
        row = self.conn.execute(
            "SELECT started_at, accepted FROM runs WHERE complete = 1 AND mode = 'apply' "
            "AND outcome IN ('ok', 'partial') ORDER BY id DESC LIMIT 1"
        ).fetchone()
        return None if row is None else LastRead(row["started_at"], int(row["accepted"] or 0))

    def stored_blocks(self) -> dict[str, StoredBlock]:
        """The blocks of the last read by head (one per ~64 people: small even at 1M)."""
        blocks: dict[str, StoredBlock] = {}
        for head, id_, digest, rejects in self.conn.execute(
            "SELECT head, id, digest, rejects FROM blocks"
        ):
            positions = tuple(int(i) for i in rejects.split(",")) if rejects else ()
            blocks[head] = StoredBlock(id_, bytes(digest), positions)
        return blocks

    # ---------------------------------------------------------------- counts

    def counts(self) -> dict[str, int]:
        rows = self.query("SELECT state, count(*) AS n FROM mailboxes GROUP BY state")
        counts = {row["state"]: int(row["n"]) for row in rows}
        counts["people"] = int(self.scalar("SELECT count(*) FROM people") or 0)
        return counts

    def totals(self, leaver_after_missing: int) -> dict[str, int]:
        """The totals status.json, `syncd status` and the summary report."""
        counts = self.counts()
        return {
            "people": counts.get("people", 0),
            "mailboxes": counts.get("created", 0) + counts.get("adopted", 0),
            "pending": counts.get("failed", 0) + counts.get("pending", 0) + counts.get("intent", 0),
            "quarantined": counts.get("quarantined", 0),
            "leavers": self.leaver_count(leaver_after_missing),
        }

    def provisioned_count(self) -> int:
        return int(self.scalar(f"SELECT count(*) FROM mailboxes m WHERE {_HAS_MAILBOX}") or 0)

    def has_intents(self) -> bool:
        return self.scalar("SELECT 1 FROM mailboxes WHERE state = 'intent' LIMIT 1") is not None

    def has_any_mailbox(self) -> bool:
        return self.scalar("SELECT 1 FROM mailboxes LIMIT 1") is not None

    # ---------------------------------------------------------------- addresses

    def address_count(self, at_most: int) -> int:
        """How many addresses the state knows, counting no further than ``at_most``."""
        return int(
            self.scalar("SELECT count(*) FROM (SELECT 1 FROM addresses LIMIT ?)", (at_most,)) or 0
        )

    def taken_addresses(
        self,
        addresses: Iterable[str],
        now: datetime,
        *,
        reserve_days: int | None = None,
        leaver_after_missing: int = 3,
    ) -> set[str]:
        """Which of these addresses may not be issued to someone new.

        Taken: every address syncd issued or saw taken on Hybridbox. With ``reserve_days``, the
        address of a leaver (disabled, or missing from ``leaver_after_missing`` complete reads)
        last seen more than ``reserve_days`` ago is free again (Hybridbox still has the final
        word: if the mailbox was not deleted there, the create reports it taken).
        """
        # One JSON parameter, not an IN list: a single statement text that SQLite compiles once,
        # however many addresses are asked about.
        rows = self.conn.execute(
            "SELECT a.address FROM json_each(?) j CROSS JOIN addresses a ON a.address = j.value "
            f"{_HOLDER_IF_LEAVING} WHERE {_TAKEN}",
            (
                json.dumps(list(addresses)),
                _reservation_cutoff(now, reserve_days),
                leaver_after_missing,
            ),
        )
        return {address for (address,) in rows}

    def known_local_parts(
        self,
        local_parts: Iterable[str],
        domain: str,
        now: datetime,
        *,
        reserve_days: int | None = None,
        leaver_after_missing: int = 3,
    ) -> KnownLocalParts:
        """The allocator's question (hundreds of local parts per batch, in one domain): which of
        these the state knows, split into taken (see :meth:`taken_addresses`) and free again (a
        leaver's reservation that ended)."""
        return self._grouped(
            f"SELECT j.value AS local_part, {_TAKEN} AS taken FROM json_each(?) j "
            f"CROSS JOIN addresses a ON a.address = j.value || ? {_HOLDER_IF_LEAVING}",
            (_reservation_cutoff(now, reserve_days), leaver_after_missing,
             json.dumps(list(local_parts)), "@" + domain),
        )  # fmt: skip

    def known_local_parts_from(
        self,
        starts: Iterable[str],
        domain: str,
        now: datetime,
        *,
        reserve_days: int | None = None,
        leaver_after_missing: int = 3,
        limit: int = 5000,
    ) -> KnownLocalParts:
        """Like :meth:`known_local_parts`, for every known local part in ``domain`` that
        starts with one of ``starts`` (at most ``limit`` in all): an index range per clashing
        name, where probing ``anna.mueller2``, ``anna.mueller3``, ... one by one would take a
        query per few."""
        suffix = "@" + domain
        # Addresses are lower-case ASCII; "~" sorts after every character they may hold.
        return self._grouped(
            "SELECT substr(a.address, 1, length(a.address) - ?) AS local_part, "
            f"{_TAKEN} AS taken FROM json_each(?) j CROSS JOIN addresses a "
            f"ON a.address >= j.value AND a.address < j.value || '~' {_HOLDER_IF_LEAVING} "
            "WHERE substr(a.address, ?) = ? LIMIT ?",
            (len(suffix), _reservation_cutoff(now, reserve_days), leaver_after_missing,
             json.dumps(list(starts)), -len(suffix), suffix, limit),
        )  # fmt: skip

    def _grouped(self, select: str, params: Sequence[object]) -> KnownLocalParts:
        """Run a select of (local_part, taken) with SQLite joining each group into one string:
        thousands of local parts come back as two strings, not as thousands of rows for Python
        to take apart one by one. (Local parts never hold a line break: syncd issues
        ``[a-z0-9._-]``; one adopted from Hybridbox with a line break in it would at worst make
        its pieces look taken, which only makes the allocator pass over a free address.)"""
        groups = {
            taken: joined
            for taken, joined in self.conn.execute(
                f"SELECT taken, group_concat(local_part, char(10)) FROM ({select}) GROUP BY taken",
                params,
            )
        }
        return KnownLocalParts(
            taken=groups[1].split("\n") if 1 in groups else [],
            free_again=groups[0].split("\n") if 0 in groups else [],
        )

    # ---------------------------------------------------------------- retries

    def release_for_retry(self, anchor: str | None, now: datetime) -> int:
        """Make failed or quarantined people due now (``syncd retry``); returns how many."""
        where = "state IN ('failed', 'quarantined')"
        params: tuple[Any, ...] = (iso(now), iso(now))
        if anchor is not None:
            where += " AND anchor = ?"
            params += (anchor,)
        with self.transaction():
            cursor = self.conn.execute(
                f"UPDATE mailboxes SET state = 'failed', attempts = 0, first_failed_at = NULL, "
                f"next_attempt_at = ?, updated_at = ? WHERE {where}",
                params,
            )
        return cursor.rowcount

    # ---------------------------------------------------------------- leavers

    def leaver_count(self, leaver_after_missing: int) -> int:
        return int(
            self.scalar(
                # From the (few) leaver candidates in their index, not from every mailbox.
                "SELECT count(*) FROM people p CROSS JOIN mailboxes m ON m.anchor = p.anchor "
                f"WHERE {_LEAVING} AND {_LEAVER} AND {_HAS_MAILBOX}",
                (leaver_after_missing,),
            )
            or 0
        )

    # ---------------------------------------------------------------- reports (sqlite-utils)

    # What `syncd status`, `failures`, `leavers` and `addresses` print: rows as dicts, from a
    # read-only state, once per command. (The totals of `syncd status` come from totals(),
    # which every cycle also writes to status.json: plain SQL, so that the two agree and a
    # cycle does not import sqlite-utils.)

    def recent_runs(self, limit: int = 10) -> list[dict[str, Any]]:
        return list(self.db["runs"].rows_where(order_by="id DESC", limit=limit))

    def failures(self) -> list[dict[str, Any]]:
        return list(
            self.db.query(
                "SELECT m.*, p.first_name AS person_first, p.last_name AS person_last "
                "FROM mailboxes m LEFT JOIN people p USING (anchor) "
                "WHERE m.state IN ('failed', 'quarantined', 'pending', 'intent') "
                "ORDER BY m.state, m.next_attempt_at"
            )
        )

    def leavers(self, leaver_after_missing: int) -> list[dict[str, Any]]:
        return list(
            self.db.query(
                "SELECT p.anchor, p.first_name, p.last_name, p.disabled, p.missing_count, "
                "p.last_seen, m.local_part, m.domain, m.mailbox_id, m.state "
                # From the leaver candidates in their index, as leaver_count.
                "FROM people p CROSS JOIN mailboxes m ON m.anchor = p.anchor "
                f"WHERE {_LEAVING} AND {_LEAVER} AND {_HAS_MAILBOX} "
                "ORDER BY p.last_seen, p.anchor",
                (leaver_after_missing,),
            )
        )

    def address_history(self, address: str) -> list[dict[str, Any]]:
        """Every holder of an address (full, or a local part in any domain), oldest first."""
        selects = []
        # A state from before migration 2, opened read-only (so not migrated), has no history.
        if self.db["address_history"].exists():
            selects.append(
                "SELECT h.address, h.anchor, p.first_name, p.last_name, h.issued_at, "
                "h.released_at, 'released' AS status FROM address_history h "
                "LEFT JOIN people p ON p.anchor = h.anchor "
                "WHERE h.address = ? OR h.address LIKE ?"
            )
        selects.append(
            "SELECT a.address, a.anchor, p.first_name, p.last_name, a.issued_at, "
            "NULL AS released_at, a.status FROM addresses a "
            "LEFT JOIN people p ON p.anchor = a.anchor WHERE a.address = ? OR a.address LIKE ?"
        )
        return list(
            self.db.query(
                " UNION ALL ".join(selects) + " ORDER BY issued_at",
                (address.lower(), address.lower() + "@%") * len(selects),
            )
        )
