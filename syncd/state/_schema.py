"""The state database's schema: the migrations that build it, oldest first.

Migration ``n`` (counting from 1) takes a state from ``PRAGMA user_version`` ``n - 1`` to ``n``;
:meth:`syncd.state._store.State._migrate` runs the ones a state has not had yet, each in one
transaction. A state past a migration never runs it again, so a change to the schema is a new
migration at the end. Each script is split on ``;`` into statements, so none may hold a ``;`` of
its own (in a string literal or a trigger body).
"""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 1: the initial schema
    """
    CREATE TABLE people (
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
    ) WITHOUT ROWID;

    CREATE TABLE mailboxes (
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
    ) WITHOUT ROWID;
    CREATE INDEX mailboxes_state ON mailboxes(state);

    CREATE TABLE addresses (
        address TEXT PRIMARY KEY,
        anchor TEXT,
        status TEXT NOT NULL,
        issued_at TEXT NOT NULL,
        released_at TEXT,
        reserved_until TEXT
    ) WITHOUT ROWID;
    CREATE INDEX addresses_anchor ON addresses(anchor);

    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        cycle_id TEXT NOT NULL,
        mode TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        source TEXT,
        complete INTEGER,
        incomplete_reason TEXT,
        read INTEGER, rejected INTEGER, accepted INTEGER,
        new INTEGER, created INTEGER, adopted INTEGER, renamed INTEGER, failed INTEGER,
        pending INTEGER, quarantined INTEGER, scheduled INTEGER, leavers INTEGER,
        outcome TEXT,
        message TEXT,
        exit_code INTEGER
    );

    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
    """,
    # 2: earlier holders of an address that was issued again after its reservation ended
    """
    CREATE TABLE address_history (
        address TEXT NOT NULL,
        anchor TEXT,
        issued_at TEXT NOT NULL,
        released_at TEXT NOT NULL
    );
    CREATE INDEX address_history_address ON address_history(address);
    """,
    # 3: the blocks of the last read (see syncd.stage) and who is in which; who needs the
    # planner even when unchanged (``open``); the leaver candidates, indexed
    """
    CREATE TABLE blocks (
        id INTEGER PRIMARY KEY,
        head TEXT NOT NULL UNIQUE,
        digest BLOB NOT NULL,
        size INTEGER NOT NULL,
        rejects TEXT
    );
    ALTER TABLE people ADD COLUMN block INTEGER;
    ALTER TABLE people ADD COLUMN open INTEGER NOT NULL DEFAULT 1;
    CREATE INDEX people_block ON people(block);
    CREATE INDEX people_open ON people(block) WHERE open = 1;
    CREATE INDEX people_leaving ON people(anchor) WHERE disabled = 1 OR missing_count > 0;
    """,
]
