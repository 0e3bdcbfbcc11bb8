"""The state database's schema: the migrations that build it, oldest first.

Migration ``n`` (counting from 1) takes a state from ``PRAGMA user_version`` ``n - 1`` to ``n``;
:meth:`syncd.state._store.State._migrate` runs the ones a state has not had yet, each in one
transaction, on the state's own connection seen through ``sqlite_utils.Database``. A state past a
migration never runs it again, so a change to the schema is a new migration at the end (and a
fixture of the release before it in tests/data: see tests/data/make_old_state.py).

sqlite-utils writes what it can say: the rowid tables (``create_table``), the plain indexes
(``create_index``) and new columns (``add_column``). It cannot make a WITHOUT ROWID table, a
UNIQUE column or a partial index; those statements stay SQL, each marked where it is.

For a new migration:

- Use ``db.create_table`` and ``db.execute`` the statements of ``table.transform_sql(...)``, never
  ``Table.create`` or ``Table.transform``: those two wrap their work in ``with conn:``, which
  commits, and would end the migration's transaction half way (``State._migrate`` then refuses
  it rather than record a half-made schema as done). ``transform_sql`` re-creates the table's
  indexes only from sqlite-utils 3.38 on; pyproject.toml still allows 3.36.
- sqlite-utils cannot transform the WITHOUT ROWID tables (``people``, ``mailboxes``,
  ``addresses``, ``meta``): it copies the rows by ``rowid``, which they lack, into a rowid
  table. Rebuild those in SQL.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from sqlite_utils import Database
    from sqlite_utils.db import Table

Migration = Callable[["Database"], None]

# The counters of a run, one INTEGER column each, in this order.
_RUN_COUNTS = ("read", "rejected", "accepted", "new", "created", "adopted", "renamed", "failed",
               "pending", "quarantined", "scheduled", "leavers")  # fmt: skip


def _table(db: Database, name: str) -> Table:
    # db[name] is a Table or a View; a state has no views.
    return cast("Table", db[name])


# SQL, not sqlite-utils: WITHOUT ROWID, which it has no option for. These tables are keyed by
# text (anchor, address, key); WITHOUT ROWID stores each as one B-tree in key order, not a rowid
# table plus an index on the key, and every state file since the first has them so.
_WITHOUT_ROWID_TABLES = (
    """CREATE TABLE people (
        anchor TEXT PRIMARY KEY,
        first_name TEXT NOT NULL,
        last_name TEXT NOT NULL,
        email TEXT,
        start_date TEXT,
        disabled INTEGER NOT NULL DEFAULT 0,
        digest TEXT NOT NULL,
        first_seen TEXT NOT NULL,
        last_seen TEXT NOT NULL,
        missing_count INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID""",
    """CREATE TABLE mailboxes (
        anchor TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        local_part TEXT,
        domain TEXT NOT NULL,
        mailbox_id TEXT,
        first_name TEXT,
        last_name TEXT,
        batch_id TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        first_failed_at TEXT,
        next_attempt_at TEXT,
        last_code TEXT,
        last_message TEXT,
        failed_digest TEXT,
        created_at TEXT,
        updated_at TEXT NOT NULL
    ) WITHOUT ROWID""",
    """CREATE TABLE addresses (
        address TEXT PRIMARY KEY,
        anchor TEXT,
        status TEXT NOT NULL,
        issued_at TEXT NOT NULL,
        released_at TEXT,
        reserved_until TEXT
    ) WITHOUT ROWID""",
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
)


def _initial(db: Database) -> None:
    """1: the initial schema."""
    for create in _WITHOUT_ROWID_TABLES:
        db.execute(create)
    _table(db, "mailboxes").create_index(["state"], index_name="mailboxes_state")
    _table(db, "addresses").create_index(["anchor"], index_name="addresses_anchor")
    db.create_table(
        "runs",
        {
            "id": int,
            "cycle_id": str,
            "mode": str,
            "started_at": str,
            "finished_at": str,
            "source": str,
            "complete": int,
            "incomplete_reason": str,
            **dict.fromkeys(_RUN_COUNTS, int),
            "outcome": str,
            "message": str,
            "exit_code": int,
        },
        pk="id",
        not_null={"cycle_id", "mode", "started_at"},
    )


def _address_history(db: Database) -> None:
    """2: earlier holders of an address that was issued again after its reservation ended."""
    db.create_table(
        "address_history",
        {"address": str, "anchor": str, "issued_at": str, "released_at": str},
        not_null={"address", "issued_at", "released_at"},
    ).create_index(["address"], index_name="address_history_address")


def _blocks(db: Database) -> None:
    """3: the blocks of the last read (see :mod:`syncd.cycle._stage`) and who is in which; who
    needs the planner even when unchanged (``open``); the leaver candidates, indexed."""
    # SQL: sqlite-utils has no UNIQUE column. A unique index made apart would work alike, but
    # state files from the releases before have sqlite_autoindex_blocks_1: one schema, not two.
    db.execute(
        """CREATE TABLE blocks (
            id INTEGER PRIMARY KEY,
            head TEXT NOT NULL UNIQUE,
            digest BLOB NOT NULL,
            size INTEGER NOT NULL,
            rejects TEXT
        )"""
    )
    people = _table(db, "people")
    people.add_column("block", int)
    people.add_column("open", int, not_null_default=1)
    people.create_index(["block"], index_name="people_block")
    # SQL: partial indexes, which create_index cannot make. people_leaving's condition is
    # written out again in syncd.state._store (_LEAVING) so that the leaver queries can use it.
    db.execute("CREATE INDEX people_open ON people(block) WHERE open = 1")
    db.execute(
        "CREATE INDEX people_leaving ON people(anchor) WHERE disabled = 1 OR missing_count > 0"
    )


def _scan(db: Database) -> None:
    """4: which kind of read each run made (``full`` or ``delta``, see :mod:`syncd.source.ldap`):
    only a complete *full* read is the last good size of the source. Older runs (NULL) were all
    full reads. The delta reads' watermark lives in ``meta``."""
    _table(db, "runs").add_column("scan", str)


def _domains(db: Database) -> None:
    """5: several mail domains (``hybridbox.domains``): ``people.domain``, the domain the last
    read routed each person to. A mailbox keeps the domain it was created in (``mailboxes.domain``,
    there since the first schema, as every address in ``addresses`` has its domain), so people
    provisioned before keep their mailbox where it is: they start with its domain, and a later
    read that routes them elsewhere is a move to report, never a second mailbox. The others have
    NULL until the next read routes them."""
    _table(db, "people").add_column("domain", str)
    db.execute(
        "UPDATE people SET domain = (SELECT m.domain FROM mailboxes m "
        "WHERE m.anchor = people.anchor AND m.state IN ('created', 'adopted'))"
    )


MIGRATIONS: list[Migration] = [_initial, _address_history, _blocks, _scan, _domains]
