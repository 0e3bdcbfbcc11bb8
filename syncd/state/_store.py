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
  Hybridbox token was last checked, where the next delta read of a directory may start).

All writes of a cycle step happen in one transaction (``with state.transaction():``), so a crash
at any point leaves a state from which the next cycle is correct. Times are UTC ISO-8601 strings.

The file holds personal data: it and its journals are created 0600 whatever the umask, and wider
modes are narrowed when it is opened. A failure of the file itself (full, damaged, no SQLite
file, read-only, locked by another program) is a :class:`~syncd.errors.DiskError`,
:class:`~syncd.errors.StateError` or :class:`~syncd.errors.LockHeld` naming the file and what to
do (see :class:`StateConnection`), never a bare sqlite3 error.

Everything a cycle does per person is plain ``sqlite3`` on :attr:`State.conn`. The migrations and
the reports of ``syncd status``, ``failures``, ``leavers`` and ``addresses`` go through
:attr:`State.db`, sqlite-utils on the same connection, which is made (and sqlite-utils imported)
only when one of them runs.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import sqlite3
import stat
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from syncd.errors import DiskError, LockHeld, StateError, SyncdError
from syncd.logs import (
    event,
    get_logger,
    give_to_directory_owner,
    narrow_mode,
    owner_note,
    user_name,
)
from syncd.model import Watermark
from syncd.state._schema import MIGRATIONS

if TYPE_CHECKING:
    import sqlite_utils

log = get_logger("syncd.state")

# The state holds personal data (names, addresses): its files are for the user syncd runs as
# alone, whatever the umask of the shell it was started from (the unit's UMask=0077 agrees).
PRIVATE_FILE_MODE = 0o600
# The state directory, when syncd creates it (the unit's StateDirectoryMode=0700 agrees).
PRIVATE_DIR_MODE = 0o700
# SQLite's files beside the database, which hold its pages too. SQLite creates them with the
# database file's mode, so a 0600 database gets 0600 journals; older ones are narrowed.
JOURNAL_SUFFIXES = ("-wal", "-shm", "-journal")
# errno values that mean "no room": a full file system, a quota, a file-size limit.
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})

# The condition of the people_leaving index (see syncd.state._schema), written out so that
# queries can use the index.
_LEAVING = "(p.disabled = 1 OR p.missing_count > 0)"

# A person ``p`` who counts as a leaver (parameter: leaver_after_missing, >= 1; so every leaver
# also matches _LEAVING).
_LEAVER = "(p.disabled = 1 OR p.missing_count >= ?)"

# The migration that gave people their routed domain (people.domain): several mail domains.
_DOMAINS_MIGRATION = 5

# A mailbox ``m`` that exists on Hybridbox.
_HAS_MAILBOX = "m.state IN ('created', 'adopted')"

# The meta keys of delta reads (see syncd.source.ldap): where the next one may start (a
# Watermark as JSON), and when the last complete full read started.
WATERMARK_KEY = "watermark"
FULL_READ_KEY = "full_read_at"

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
# The same for a state from before people_leaving (migration 3), which ``syncd plan`` reads
# without migrating it: the same rows, found without the index.
_HOLDER_IF_LEAVING_UNINDEXED = f"LEFT JOIN people p ON p.anchor = a.anchor AND {_LEAVING}"


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


# ---------------------------------------------------------------- the file under the state


class StateConnection(sqlite3.Connection):
    """The state's connection. A statement that fails because of the file under it (full,
    damaged, no SQLite file, read-only, locked by another program) raises DiskError, StateError
    or LockHeld naming the file and what to do, where sqlite3 raises an OperationalError that
    would end in a traceback; other sqlite3 errors (a bug in syncd's SQL) pass unchanged.

    Only statements are wrapped (~1 µs each; a first provisioning of 5,000 people runs ~450),
    here and on its cursors (:class:`StateCursor`), not the rows they yield, which stay at C
    speed: a statement's first step reads the pages a damaged file shows itself on in practice
    (a test corrupts every page but the header), and every write goes through a statement.
    """

    path: Path | None = None
    read_only: bool = False

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        try:
            return super().execute(sql, parameters)
        except sqlite3.DatabaseError as exc:
            raise explained(exc, self) from exc

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> sqlite3.Cursor:
        try:
            return super().executemany(sql, parameters)
        except sqlite3.DatabaseError as exc:
            raise explained(exc, self) from exc

    def executescript(self, sql_script: str, /) -> sqlite3.Cursor:
        try:
            return super().executescript(sql_script)
        except sqlite3.DatabaseError as exc:
            raise explained(exc, self) from exc

    def cursor(self, factory: Any = None) -> Any:
        return super().cursor(factory or StateCursor)


class StateCursor(sqlite3.Cursor):
    """A cursor of :class:`StateConnection` (the cycle's hot reads use their own), explained
    alike."""

    def execute(self, sql: str, parameters: Any = (), /) -> StateCursor:
        try:
            return super().execute(sql, parameters)
        except sqlite3.DatabaseError as exc:
            raise explained(exc, self.connection) from exc

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> StateCursor:
        try:
            return super().executemany(sql, parameters)
        except sqlite3.DatabaseError as exc:
            raise explained(exc, self.connection) from exc


def explained(exc: sqlite3.DatabaseError, conn: sqlite3.Connection) -> Exception:
    """The error to raise for a failed statement on ``conn`` (see :class:`StateConnection`)."""
    path = getattr(conn, "path", None)
    error = storage_error(exc, path, read_only=getattr(conn, "read_only", False))
    if error is not None:
        return error
    earlier = exc.__context__
    if isinstance(earlier, SyncdError):
        # A statement in a `finally` that failed only because the storage failure being
        # handled ended the transaction ("cannot commit - no transaction is active"): the
        # earlier failure is the one to report, not this consequence of it.
        return type(earlier)(earlier.message, hint=earlier.hint)
    return exc


def storage_error(
    exc: sqlite3.DatabaseError, path: Path | None, *, read_only: bool = False
) -> SyncdError | None:
    """What a failed statement means for an administrator, or None for a bug in syncd."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF  # the primary code of an extended one
    where = f"the state database {path}" if path is not None else "syncd's temporary tables"
    directory = path.parent if path is not None else Path(os.environ.get("TMPDIR", "/var/tmp"))
    if code == sqlite3.SQLITE_FULL:
        return DiskError(
            f"cannot write {where}: the disk is full ({exc}); this step was not recorded",
            hint=f"free space there (`df -h {directory}`; temporary tables go to $TMPDIR or "
            "/var/tmp); the next cycle goes on from the last recorded step",
        )
    if code == sqlite3.SQLITE_IOERR:
        return DiskError(
            f"cannot write {where}: {exc}; this step was not recorded",
            hint=f"the disk may be full, over a quota or file-size limit, or failing (`df -h "
            f"{directory}`, `dmesg`); the next cycle goes on from the last recorded step",
        )
    if code == sqlite3.SQLITE_CORRUPT:
        return StateError(
            f"{where} is damaged ({exc}); syncd cannot use it",
            hint="stop syncd, keep a copy of the file, and restore the last backup of it; with "
            "no backup, move it away and rebuild the state with `syncd adopt`",
        )
    if code == sqlite3.SQLITE_NOTADB:
        return StateError(
            f"{where} is not a syncd state: it is no SQLite database ({exc})",
            hint="check state.path; if the state was overwritten, restore it from the backup",
        )
    if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM):
        reason, hint = unwritable(path) if path is not None else ("", "")
        verb = "read" if read_only else "write"
        return StateError(f"cannot {verb} {where}: {exc}{reason}", hint=hint or None)
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return LockHeld(
            f"{where} is locked by another program ({exc})",
            hint="an sqlite3 shell or a backup may be writing to it; syncd waited 5 s: run it "
            "again when that program is done",
        )
    return None


def unwritable(path: Path) -> tuple[str, str]:
    """Why syncd cannot write ``path`` or create files beside it (``"; ..."`` to append to a
    message, or ""), and what to do; by looking, since SQLite only says "readonly"."""
    directory = path.parent
    try:
        read_only_fs = bool(os.statvfs(directory).f_flag & os.ST_RDONLY)
    except OSError:
        read_only_fs = False
    if read_only_fs:
        return (
            f"; {directory} is on a read-only file system",
            "put state.path on a writable file system (under systemd only StateDirectory=, "
            "/var/lib/syncd, and ReadWritePaths= are writable)",
        )
    siblings = [path.with_name(path.name + suffix) for suffix in ("", *JOURNAL_SUFFIXES)]
    for target in (directory, *siblings, path.with_name(path.name + ".lock")):
        if target.exists() and not os.access(target, os.W_OK):
            return _not_writable(target, directory)
    return "", f"check the owner and mode of {directory} and of the files in it"


def _not_writable(target: Path, directory: Path) -> tuple[str, str]:
    foreign = owner_note(target)
    if foreign:
        me = user_name(os.geteuid())
        return (
            foreign,
            f"a run as another user (sudo syncd ...) leaves such files: give them back with "
            f"`chown -R {me}: {directory}`, and run syncd as {me} (sudo -u {me} syncd ...)",
        )
    permissions = oct(stat.S_IMODE(target.stat().st_mode))
    return (
        f"; {target} is not writable (mode {permissions})",
        f"give its owner write permission again: `chmod u+w {target}`",
    )


def os_error(exc: OSError, path: Path, what: str) -> SyncdError:
    """The error for a failed system call on one of the state's files (``what``: "the state
    database", "the lock file", ...)."""
    reason = exc.strerror or str(exc)
    if exc.errno in NO_SPACE_ERRNOS:
        return DiskError(
            f"cannot write {what} {path}: {reason}",
            hint=f"free space on its file system (`df -h {path.parent}`), then run syncd again",
        )
    problem, hint = unwritable(path)
    return StateError(f"cannot open {what} {path}: {reason}{problem}", hint=hint)


def open_private(path: Path, *, narrow: bool = True) -> tuple[int, bool]:
    """Open ``path`` for reading and writing, creating it PRIVATE_FILE_MODE whatever the umask,
    or (``narrow``) narrowing a wider existing one, with a warning; the descriptor and whether
    the file is new. Raises OSError."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        fd = os.open(path, os.O_RDWR)
        if narrow:
            _narrow(fd, path)
        return fd, False
    os.fchmod(fd, PRIVATE_FILE_MODE)  # the umask may have taken the owner's bits
    give_to_directory_owner(fd, path.parent)
    return fd, True


def make_private_directory(directory: Path) -> None:
    """Create the state directory (PRIVATE_DIR_MODE) if it is missing. Raises OSError."""
    directory.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)


def _narrow(fd: int, path: Path) -> None:
    was = narrow_mode(fd, PRIVATE_FILE_MODE)
    if was is not None:
        event(
            log,
            "state.mode_narrowed",
            logging.WARNING,
            path=path,
            was=oct(was),
            now=oct(PRIVATE_FILE_MODE),
            reason="the state holds personal data",
        )


def _narrow_state_files(path: Path) -> None:
    """Narrow the database and its journals to PRIVATE_FILE_MODE; only once SQLite took it for a
    database, so that a state.path pointing at another file (the HR export) leaves it alone."""
    for name in (path.name, *(path.name + suffix for suffix in JOURNAL_SUFFIXES)):
        with contextlib.suppress(OSError):  # gone, or not ours: SQLite says what matters
            fd = os.open(path.with_name(name), os.O_RDONLY)
            try:
                _narrow(fd, path.with_name(name))
            finally:
                os.close(fd)


def _prepare_file(path: Path) -> None:
    """Before SQLite opens ``path``: create it 0600 (SQLite would make it 0644 minus the umask;
    its journals get the file's mode), and say in words what keeps syncd from writing it."""
    if path.is_dir():
        raise StateError(
            f"at 'state.path': {path} is a directory",
            hint=f"state.path names the database file, such as {path / 'state.db'}",
        )
    try:
        make_private_directory(path.parent)
    except OSError as exc:
        raise os_error(exc, path.parent, "the state directory") from None
    try:
        fd, created = open_private(path, narrow=False)
    except OSError as exc:
        raise os_error(exc, path, "the state database") from None
    try:
        if not created and os.fstat(fd).st_size == 0:
            event(
                log,
                "state.empty_file",
                logging.WARNING,
                path=path,
                reason="the state database is an empty file: syncd starts a new state in it; "
                "if it held syncd's state before (a failed copy or restore), stop syncd and "
                "restore the backup",
            )
    finally:
        os.close(fd)


def _connect(path: Path | None, *, read_only: bool) -> StateConnection:
    """Open the connection (the file prepared first when it may be written)."""
    try:
        if path is None:
            conn = sqlite3.connect(":memory:", isolation_level=None, factory=StateConnection)
        elif read_only:
            conn = sqlite3.connect(
                f"file:{path}?mode=ro", uri=True, isolation_level=None, factory=StateConnection
            )
        else:
            _prepare_file(path)
            conn = sqlite3.connect(path, isolation_level=None, factory=StateConnection)
    except sqlite3.DatabaseError as exc:
        raise (storage_error(exc, path, read_only=read_only) or exc) from exc
    assert isinstance(conn, StateConnection)
    conn.path, conn.read_only = path, read_only
    return conn


class State:
    """Typed access to the state database. Every method is one query or one transaction."""

    def __init__(self, path: Path | None, *, read_only: bool = False) -> None:
        self.path = path
        self.read_only = read_only
        conn = _connect(path, read_only=read_only)
        try:
            conn.row_factory = sqlite3.Row
            if not read_only:
                conn.execute("PRAGMA journal_mode=WAL")  # raises if the file is no database
                if path is not None:
                    _narrow_state_files(path)
            # NORMAL in WAL mode is durable against process crashes (our failure model);
            # only an OS crash may lose the last transactions, never corrupt the file.
            conn.execute("PRAGMA synchronous=NORMAL")
            # Checkpoint (copy the WAL into the file, with an fsync) every ~40 MB instead of
            # every ~4 MB: a first provisioning commits once per batch, touching pages all over
            # the address index, and the default made checkpoints a third of its commit time.
            conn.execute("PRAGMA wal_autocheckpoint=10000")
            conn.execute("PRAGMA busy_timeout=5000")
            conn.execute("PRAGMA temp_store=FILE")
            self.conn: sqlite3.Connection = conn
            if not read_only:
                self._migrate()
            elif self.schema_version() > len(MIGRATIONS):
                raise StateError(f"state database {path} is from a newer syncd")
        except BaseException:
            conn.close()
            raise
        self._holder_if_leaving = (
            _HOLDER_IF_LEAVING if self.current else _HOLDER_IF_LEAVING_UNINDEXED
        )

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
            self.conn.execute("COMMIT")
        except BaseException:
            # Something in the block may have ended the transaction itself (see _migrate); a
            # ROLLBACK then would fail and hide the error that got us here. A COMMIT that failed
            # (a full disk) may leave it open: rolled back, so the next step can begin anew.
            if self.conn.in_transaction:
                with contextlib.suppress(sqlite3.Error, SyncdError):
                    self.conn.execute("ROLLBACK")
            raise

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
        """Record the end of a cycle. Recording a failed one (``outcome="error"``) never raises:
        when the state cannot be written (the disk that failed the cycle is still full), the
        caller's own error is the one to report, so this one is only logged."""
        values["finished_at"] = iso(utcnow())
        columns = ", ".join(f"{key} = ?" for key in values)
        try:
            with self.transaction():
                self.conn.execute(
                    f"UPDATE runs SET {columns} WHERE id = ?", (*values.values(), run_id)
                )
        except (DiskError, StateError, LockHeld) as exc:
            if values.get("outcome") != "error":
                raise
            event(log, "state.run_not_recorded", logging.ERROR, run=run_id, reason=str(exc))

    def last_complete_read(self) -> LastRead | None:
        """The last complete *full* read: a delta read returns the changed people only, which
        says nothing about the size of the source (runs before migration 4 were all full)."""
        full = " AND coalesce(scan, 'full') = 'full'" if self._runs_have_scan else ""
        row = self.conn.execute(
            "SELECT started_at, accepted FROM runs WHERE complete = 1 AND mode = 'apply' "
            f"AND outcome IN ('ok', 'partial'){full} ORDER BY id DESC LIMIT 1"
        ).fetchone()
        return None if row is None else LastRead(row["started_at"], int(row["accepted"] or 0))

    @cached_property
    def _runs_have_scan(self) -> bool:
        """Whether ``runs`` has migration 4's ``scan`` (``syncd plan`` reads older states as
        they are)."""
        return any(row[1] == "scan" for row in self.conn.execute("PRAGMA table_info(runs)"))

    # ---------------------------------------------------------------- delta reads

    def watermark(self) -> Watermark | None:
        """Where the next delta read may start, as the last recorded complete read left it."""
        text = self.get_meta(WATERMARK_KEY)
        return Watermark.from_json(text) if text else None

    def last_full_read(self) -> datetime | None:
        """When the last recorded complete full read of a delta-reading source started."""
        text = self.get_meta(FULL_READ_KEY)
        try:
            return parse_iso(text) if text else None
        except ValueError:
            return None

    def keep_watermark(self, watermark: Watermark | None, full_read_at: datetime | None) -> None:
        """After a complete read was recorded: where the next delta read may start (None forgets
        the stored one: this read could not make one, and an older one would hide the changes
        since), and for a full read, when it started."""
        with self.transaction():
            if watermark is None:
                self.conn.execute("DELETE FROM meta WHERE key = ?", (WATERMARK_KEY,))
            else:
                self.set_meta(WATERMARK_KEY, watermark.to_json())
            if full_read_at is not None:
                self.set_meta(FULL_READ_KEY, iso(full_read_at))

    def stored_blocks(self) -> dict[str, StoredBlock]:
        """The blocks of the last read by head (one per ~64 people: small even at 1M)."""
        blocks: dict[str, StoredBlock] = {}
        for head, id_, digest, rejects in self.conn.execute(
            "SELECT head, id, digest, rejects FROM blocks"
        ):
            positions = tuple(int(i) for i in rejects.split(",")) if rejects else ()
            blocks[head] = StoredBlock(id_, bytes(digest), positions)
        return blocks

    def open_blocks(self) -> set[int]:
        """The blocks holding someone the planner looks at even when unchanged (``open``): few,
        and read from the partial index that holds only them."""
        return {
            block
            for (block,) in self.conn.execute(
                "SELECT DISTINCT block FROM people INDEXED BY people_open "
                "WHERE open = 1 AND block IS NOT NULL"
            )
        }

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

    @cached_property
    def _holder_if_leaving(self) -> str:
        """The join of an address's holder for this state's schema (see _HOLDER_IF_LEAVING):
        ``syncd plan`` may read a state too old for the index, without migrating it."""
        return _HOLDER_IF_LEAVING if self.current else _HOLDER_IF_LEAVING_UNINDEXED

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
            f"{self._holder_if_leaving} WHERE {_TAKEN}",
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
            f"CROSS JOIN addresses a ON a.address = j.value || ? {self._holder_if_leaving}",
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
            f"ON a.address >= j.value AND a.address < j.value || '~' {self._holder_if_leaving} "
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

    def moves(self) -> list[dict[str, Any]]:
        """The people whose mailbox is in another domain than the last read routed them to
        (``hybridbox.domains``): they keep it, since Hybridbox cannot move a mailbox; an
        administrator decides. A state from before migration 5 (read-only, so not migrated)
        has none."""
        if self.schema_version() < _DOMAINS_MIGRATION:
            return []
        return list(
            self.db.query(
                "SELECT p.anchor, p.first_name, p.last_name, m.local_part, "
                "m.domain AS mailbox_domain, p.domain AS new_domain, m.mailbox_id, p.last_seen "
                "FROM people p CROSS JOIN mailboxes m ON m.anchor = p.anchor "
                f"WHERE p.domain IS NOT NULL AND p.domain != m.domain AND {_HAS_MAILBOX} "
                "ORDER BY p.anchor"
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
