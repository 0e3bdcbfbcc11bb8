"""Reading the source into a cycle: records, the blocks that did not change, and staging.

A read of 100k people where nothing changed should cost little more than reading the source. So
records are not all turned into people and compared with the state one by one: the read is cut
into *blocks*, and a block that is exactly what an earlier read had (same key for every record,
same source signature) is known unchanged as a whole. Only the records of the other blocks
become people and go to ``temp.seen``, where the planner and :func:`record_read` find them.

Blocks are content-defined, the way backup tools cut files into chunks: a block ends after a
record whose anchor's CRC-32 ends in six zero bits (64 records on average, at most
``BLOCK_MAX``). A new hire, a leaver or an edit changes only its own block wherever it is in the
source, and a block is named by the anchor it starts with (its *head*), which such changes
rarely touch, so the people of a changed block keep their block id.

The state keeps the clean blocks of the last read (``blocks``: head, digest of its keys, size,
and the positions of its rejected records, which are read again each time so that they are
logged again) and, per person, the block they were seen in (``people.block``). After every
applied read:

- every stored block is a block of that read, without duplicate anchors, and the people whose
  ``people.block`` is its id are exactly its accepted records;
- everyone else has ``people.block`` NULL.

So the people of a block that matches are present and unchanged, and a person who is neither in
a matching block nor staged is not in this read. Since a stored block's people were all present
when it was stored, they all have ``missing_count`` 0.

That is also why what a read changes about people (missing, leaver, returned, renamed in the
source: :class:`~syncd.cycle._plan.Transition`) is found among the staged and the unseen people
alone, in SQL, before :func:`record_read` writes the read; ``syncd plan`` lists the same
(:func:`preview_transitions`) and asks for the locators of the unchanged people it may list.

A *delta* read (``report.delta``: only the entries a directory changed since its watermark) is no
read of the whole source, so it has no blocks: every record it returns is staged, and the stored
blocks are left as the last full read kept them, but for those that held someone the delta
changed: their digest is cleared, so that the next full read compares their people one by one
(a block that matched again would bring back the people's old values). Nobody is unseen in a
delta read: it counts no one missing.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import time
import zlib
from collections.abc import Callable, Set
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from syncd.cycle._plan import Change, Policy, Transition
from syncd.cycle._route import Router
from syncd.logs import clear_progress_bar, event, events, get_logger, progress_bar
from syncd.model import Person, ReadReport
from syncd.source import Record, Source
from syncd.state import State, StoredBlock, iso

log = get_logger("syncd.stage")

# A block ends after a record whose anchor's CRC-32 has these bits all zero: 64 on average.
BLOCK_MASK = 0x3F
# ...or after this many records, so that a run of unlucky anchors cannot make one huge block.
BLOCK_MAX = 256
# Staged people are written to SQLite this many at a time.
STAGE_CHUNK = 2000

# Heartbeats (systemd watchdog) and the progress check every this many blocks of a long read.
HEARTBEAT_BLOCKS = 256
# A long read logs ``source.progress`` this often.
PROGRESS_EVERY_S = 5.0

# The people of changed blocks as read (``seq`` is the record's position in the read,
# ``block_no`` its block's number in the read); temp.seen is the same with one row per anchor.
_PERSON_COLUMNS = (
    "first_name TEXT, last_name TEXT, email TEXT, start_date TEXT, disabled INTEGER, "
    "digest TEXT, origin TEXT, seq INTEGER NOT NULL, block_no INTEGER NOT NULL, domain TEXT"
)


@dataclass(slots=True)
class Staged:
    """What a read amounted to, beyond the :class:`~syncd.model.ReadReport`."""

    accepted: int = 0  # people accepted from the read: staged plus unchanged
    unchanged: int = 0  # people in blocks identical to an earlier read (not staged)
    blocks: int = 0
    unchanged_blocks: int = 0


# The unchanged blocks whose records' locators are wanted (``syncd plan`` shows where each person
# it lists is in this read): the ids of some stored blocks, or every one.
Locate = Set[int] | Literal["all"]


@dataclass(slots=True)
class _Stager:
    conn: sqlite3.Connection
    source: Source
    report: ReadReport
    stored: dict[str, StoredBlock]
    key: bytes
    # The mail domain of each staged person (hybridbox.domains; see syncd.cycle._route).
    route: Callable[[Person], str | None]
    locate: Locate = frozenset()
    # People in the last complete read: the likely size of this one, for the progress lines.
    expected: int = 0
    staged: Staged = field(default_factory=Staged)
    rows: list[tuple[object, ...]] = field(default_factory=list)
    matched: list[tuple[object, ...]] = field(default_factory=list)
    new_blocks: list[tuple[object, ...]] = field(default_factory=list)
    # (anchor, locator) of the records of the unchanged blocks in ``locate``.
    located: list[tuple[str, str]] = field(default_factory=list)
    # Heads of every block of this read: a block is named by its head, so only the first block
    # with a given head may be kept (a later one starts with a repeated anchor).
    heads: set[str] = field(default_factory=set)

    def read(self, heartbeat: Callable[[], None] | None) -> None:
        """Cut the records into blocks; hot loop: one append and one CRC-32 per record."""
        crc32 = zlib.crc32
        block: list[Record] = []
        position = 0
        started = last_progress = time.monotonic()
        for record in self.source.records(self.report):
            block.append(record)
            if not crc32(record[0].encode()) & BLOCK_MASK or len(block) >= BLOCK_MAX:
                self.close(block, position)
                position += len(block)
                block = []
                if len(self.rows) >= STAGE_CHUNK:
                    self.flush()
                if not self.staged.blocks % HEARTBEAT_BLOCKS:
                    if heartbeat is not None:
                        heartbeat()
                    now = time.monotonic()
                    self.progress(position, now - started, bar=True)
                    if now - last_progress >= PROGRESS_EVERY_S:
                        last_progress = now
                        self.progress(position, now - started)
        if block:
            # The read may have been cut short inside this block: never keep it as a block.
            self.close(block, position, final=not self.report.complete)
        self.flush()
        clear_progress_bar()

    def progress(self, done: int, elapsed: float, *, bar: bool = False) -> None:
        rate = done / elapsed if elapsed > 0 else 0.0
        if bar:
            progress_bar(done, max(self.expected, done + 1), rate)
            return
        left = self.expected - done
        event(
            log,
            "source.progress",
            records=done,
            expected=self.expected or None,
            rate_per_s=f"{rate:.0f}",
            eta_s=f"{left / rate:.0f}" if rate and left > 0 else None,
        )

    def close(self, block: list[Record], first: int, *, final: bool = False) -> None:
        """Match one finished block against the stored ones, or stage its people."""
        source, report = self.source, self.report
        self.staged.blocks += 1
        digest = hashlib.blake2b(
            "\n".join([record[1] for record in block]).encode(), digest_size=16, key=self.key
        ).digest()
        number = self.staged.blocks - 1
        if self.report.delta:
            # Only the changed entries: no block of the source, nothing to match or to keep.
            self.stage_people(block, first, number, {})
            return
        head = block[0][0]
        repeated = head in self.heads
        self.heads.add(head)
        stored = self.stored.get(head)
        # Rejected records are read again: they are logged (and kept from counting as missing)
        # in every cycle, as if the block had been read record by record.
        parsed: dict[int, Person | None] = {}
        if repeated or stored is None or stored.digest != digest:
            stored = None
        else:
            parsed = {i: source.person(block[i], report) for i in stored.rejects}
            if any(parsed.values()):  # not rejected this time after all: read it all again
                stored = None
        if stored is not None:
            last = first + len(block) - 1
            self.matched.append(
                (stored.id, first, last, source.origin(block[0]), source.origin(block[-1]))
            )
            self.staged.unchanged += len(block) - len(stored.rejects)
            self.staged.unchanged_blocks += 1
            if self.locate == "all" or stored.id in self.locate:
                self.locate_people(block, stored.rejects)
            return
        rejects = self.stage_people(block, first, number, parsed)
        dirty = final or repeated
        self.new_blocks.append(
            (number, head, digest, len(block), ",".join(rejects) or None, int(dirty))
        )

    def stage_people(
        self, block: list[Record], first: int, number: int, parsed: dict[int, Person | None]
    ) -> list[str]:
        """Stage the people of a block that is not known unchanged; the positions of its
        rejected records (``parsed``: those already turned into people)."""
        source, report = self.source, self.report
        rejects: list[str] = []
        rows = self.rows
        for index, record in enumerate(block):
            person = parsed[index] if index in parsed else source.person(record, report)
            if person is None:
                rejects.append(str(index))
                continue
            start_date = person.start_date
            rows.append(
                (
                    person.anchor,
                    person.first_name,
                    person.last_name,
                    person.email,
                    start_date.isoformat() if start_date else None,
                    person.disabled,
                    person.digest,
                    person.origin,
                    first + index,
                    number,
                    self.route(person),
                )
            )
        return rejects

    def locate_people(self, block: list[Record], rejects: tuple[int, ...]) -> None:
        """Note where the people of an unchanged block are in this read: where they are now,
        not where they were (rows above them may have come or gone)."""
        origin = self.source.origin
        self.located += [
            (record[0], origin(record))
            for index, record in enumerate(block)
            if index not in rejects
        ]

    def flush(self) -> None:
        self.conn.executemany(
            "INSERT INTO temp.staged VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", self.rows
        )
        self.rows.clear()


def stage_source(
    state: State,
    source: Source,
    report: ReadReport,
    heartbeat: Callable[[], None] | None = None,
    *,
    use_blocks: bool = True,
    locate: Locate = frozenset(),
    routing: Router | None = None,
) -> Staged:
    """Read the source; stage the people of changed blocks in ``temp.seen``.

    With ``use_blocks=False`` every accepted person is staged (``syncd adopt`` wants them all).
    ``routing`` gives each staged person their mail domain; without it (tests of the staging
    alone) nobody has one.
    Later records with an anchor already seen are rejected (the first record wins). The
    locators of the people of the unchanged blocks in ``locate`` go to ``temp.located``.
    """
    conn = state.conn
    _create_stage_tables(conn)
    stored = state.stored_blocks() if use_blocks else {}
    # The signature keys the block digests: blocks read under other settings never match. So
    # does the routing: under other rules, everyone is routed again.
    signature = source.signature()
    route: Callable[[Person], str | None] = _unrouted
    if routing is not None:
        signature += f"\x1f{routing.fingerprint}"
        route = routing.route
    key = hashlib.blake2b(signature.encode(), digest_size=32).digest()
    last = state.last_complete_read() if state.path is not None else None
    stager = _Stager(
        conn,
        source,
        report,
        stored,
        key,
        route,
        locate,
        expected=last.accepted if last else 0,
    )
    conn.execute("BEGIN")
    try:
        stager.read(heartbeat)
        conn.executemany("INSERT INTO temp.matched VALUES (?, ?, ?, ?, ?, 0)", stager.matched)
        conn.executemany("INSERT INTO temp.new_blocks VALUES (?, ?, ?, ?, ?, ?)", stager.new_blocks)
        conn.executemany("INSERT OR IGNORE INTO temp.located VALUES (?, ?)", stager.located)
        # The first record of an anchor wins (ORDER BY anchor, seq + OR IGNORE). Sorted by
        # anchor, temp.seen is clustered like people and mailboxes, so the cycle's joins walk
        # all three in the same order.
        conn.execute(
            "INSERT OR IGNORE INTO temp.seen SELECT * FROM temp.staged ORDER BY anchor, seq"
        )
        _reject_staged_duplicates(conn, report)
        if stager.matched:
            _reject_duplicates_of_unchanged(conn, report, stager.staged)
        conn.execute("DROP TABLE temp.staged")
    finally:
        conn.execute("COMMIT")
    staged = stager.staged
    staged.accepted = staged.unchanged + int(
        conn.execute("SELECT count(*) FROM temp.seen").fetchone()[0]
    )
    if use_blocks:
        event(
            log,
            "source.compared",
            records=report.read,
            blocks=staged.blocks,
            unchanged_blocks=staged.unchanged_blocks,
            unchanged_people=staged.unchanged,
            staged=staged.accepted - staged.unchanged,
        )
    return staged


def _unrouted(person: Person) -> None:
    return None


def _create_stage_tables(conn: sqlite3.Connection) -> None:
    """The empty temp tables a read is staged in (those of an earlier read are dropped)."""
    for table in ("staged", "seen", "matched", "new_blocks", "located"):
        conn.execute(f"DROP TABLE IF EXISTS temp.{table}")
    conn.execute(f"CREATE TEMP TABLE staged (anchor TEXT, {_PERSON_COLUMNS})")
    conn.execute(
        f"CREATE TEMP TABLE seen (anchor TEXT PRIMARY KEY, {_PERSON_COLUMNS}) WITHOUT ROWID"
    )
    conn.execute(
        "CREATE TEMP TABLE matched (id INTEGER PRIMARY KEY, first_pos INTEGER, last_pos INTEGER, "
        "first_origin TEXT, last_origin TEXT, dirty INTEGER NOT NULL DEFAULT 0)"
    )
    conn.execute(
        "CREATE TEMP TABLE new_blocks (block_no INTEGER PRIMARY KEY, head TEXT, digest BLOB, "
        "size INTEGER, rejects TEXT, dirty INTEGER NOT NULL)"
    )
    conn.execute("CREATE TEMP TABLE located (anchor TEXT PRIMARY KEY, origin TEXT) WITHOUT ROWID")


def _reject_staged_duplicates(conn: sqlite3.Connection, report: ReadReport) -> None:
    staged = conn.execute("SELECT count(*) FROM temp.staged").fetchone()[0]
    seen = conn.execute("SELECT count(*) FROM temp.seen").fetchone()[0]
    if staged == seen:
        return
    duplicates = conn.execute(
        "SELECT d.anchor, d.origin, s.origin, d.block_no FROM temp.staged d "
        "JOIN temp.seen s ON s.anchor = d.anchor WHERE d.seq != s.seq ORDER BY d.seq"
    ).fetchall()
    for anchor, origin, first_origin, number in duplicates:
        reject_duplicate(report, anchor, origin, f"the record at {first_origin or '?'}")
        _dirty_new_block(conn, number)


def _reject_duplicates_of_unchanged(
    conn: sqlite3.Connection, report: ReadReport, staged: Staged
) -> None:
    """Staged people who are also in an unchanged block: one of the two records goes."""
    rows = conn.execute(
        # CROSS JOIN keeps SQLite walking the (few) staged people, not all of people.
        "SELECT s.anchor, s.origin, s.seq, s.block_no, b.id, b.first_pos, b.last_pos, "
        "b.first_origin, b.last_origin FROM temp.seen s CROSS JOIN people p "
        "ON p.anchor = s.anchor CROSS JOIN temp.matched b ON b.id = p.block"
    ).fetchall()
    for anchor, origin, seq, number, block, first_pos, last_pos, first_origin, last_origin in rows:
        span = first_origin if first_pos == last_pos else f"{first_origin} … {last_origin}"
        if seq > last_pos:
            conn.execute("DELETE FROM temp.seen WHERE anchor = ?", (anchor,))
            reject_duplicate(report, anchor, origin, f"a record in {span}")
            _dirty_new_block(conn, number)
        else:
            # The unchanged block holds the later record: it is the one rejected, and the block
            # is not kept (its people stay present; they are compared one by one next time).
            reject_duplicate(report, anchor, f"a record in {span}", f"the record at {origin}")
            conn.execute("UPDATE temp.matched SET dirty = 1 WHERE id = ?", (block,))
            staged.unchanged -= 1


def _dirty_new_block(conn: sqlite3.Connection, number: int) -> None:
    conn.execute("UPDATE temp.new_blocks SET dirty = 1 WHERE block_no = ?", (number,))


def reject_duplicate(report: ReadReport, anchor: str, origin: str, first: str) -> None:
    report.rejected += 1
    event(
        log,
        "record.rejected",
        logging.WARNING,
        where=origin or None,
        anchor=anchor,
        field="anchor",
        reason=f"duplicate anchor, already used by {first}",
    )


def record_read(state: State, report: ReadReport, now: datetime, policy: Policy) -> int:
    """Store what the read found (in one transaction); returns the people rows written.

    New and changed people are written, the blocks of the read are kept, and on a complete full
    read everyone not in it has their missing counter raised (a delta read keeps no blocks and
    counts nobody missing). Nothing is written for the people of unchanged blocks. Once it is
    committed, what it changed about people is logged (see :func:`preview_transitions`): once,
    since the next read compares with what was stored.
    """
    stamp = iso(now)
    with state.transaction() as conn:
        _find_unseen_and_transitions(conn, report, policy)
        if report.delta:
            written = _record_delta(conn, stamp)
        else:
            written = _record_full(conn, state, report, stamp)
    log_transitions(_transitions(state.conn), policy)
    return written


def _record_full(conn: sqlite3.Connection, state: State, report: ReadReport, stamp: str) -> int:
    """Write a read of the whole source (see :func:`record_read`); the rows written."""
    _keep_blocks(conn)
    written = _write_changed_people(conn, stamp)
    written += _move_to_kept_blocks(conn)
    written += conn.execute(
        "UPDATE people SET missing_count = 0, last_seen = ? WHERE missing_count > 0 "
        "AND anchor IN (SELECT anchor FROM temp.seen)",
        (stamp,),
    ).rowcount
    written += conn.execute(
        "UPDATE people SET block = NULL WHERE block IN (SELECT id FROM temp.suspect "
        "UNION ALL SELECT id FROM temp.matched WHERE dirty = 1) "
        "AND anchor NOT IN (SELECT anchor FROM temp.seen)"
    ).rowcount
    if report.complete:
        written += _count_missing(conn, state, stamp)
    return written


def _record_delta(conn: sqlite3.Connection, stamp: str) -> int:
    """Write a delta read (see :func:`record_read`): its new and changed people, with no block
    (the blocks they were in lose their digest, so the next full read looks at their people
    one by one), and those back after missing; the rows written."""
    conn.execute(
        "UPDATE blocks SET digest = x'' WHERE id IN (SELECT p.block FROM temp.seen s "
        "CROSS JOIN people p ON p.anchor = s.anchor WHERE p.digest != s.digest)"
    )
    conn.execute("CREATE TEMP TABLE kept (block_no INTEGER PRIMARY KEY, id INTEGER)")
    written = _write_changed_people(conn, stamp)
    written += conn.execute(
        "UPDATE people SET missing_count = 0, last_seen = ? WHERE missing_count > 0 "
        "AND anchor IN (SELECT anchor FROM temp.seen)",
        (stamp,),
    ).rowcount
    return written


def preview_transitions(state: State, report: ReadReport, policy: Policy) -> list[Transition]:
    """What :func:`record_read` would log about people for this staged read (``syncd plan``),
    found by the same queries, with nothing written but temp tables.

    A person's transition is only ever seen on the read that makes it: the missing counters,
    names and disabled flags it compares with are those the last applied read stored.
    """
    _find_unseen_and_transitions(state.conn, report, policy)
    return _transitions(state.conn)


def _find_unseen_and_transitions(
    conn: sqlite3.Connection, report: ReadReport, policy: Policy
) -> None:
    """``temp.suspect``, ``temp.unseen`` (see :func:`_find_unseen`) and ``temp.transitions``,
    from the state as it was before this read is written."""
    for table in ("suspect", "kept", "unseen", "membership", "before", "transitions"):
        conn.execute(f"DROP TABLE IF EXISTS temp.{table}")
    _find_unseen(conn, report)
    _find_transitions(conn, report, policy)


# The lifecycle transitions of a read (see Transition), in SQL over the few people where they can
# be: the staged people whose record changed or who were missing (``temp.before``), and the
# people a complete read did not find (``temp.unseen``). The unchanged blocks' people are never
# looked at: they were present and unchanged last time, and are so again.
_BEFORE = """
CREATE TEMP TABLE before AS
SELECT s.anchor, s.first_name, s.last_name, s.disabled, s.origin,
       p.first_name AS old_first, p.last_name AS old_last, p.disabled AS was_disabled,
       p.missing_count
FROM temp.seen s CROSS JOIN people p ON p.anchor = s.anchor
WHERE p.digest != s.digest OR p.missing_count > 0
"""
_TRANSITION_COLUMNS = (
    "rank INTEGER, change TEXT, anchor TEXT, first_name TEXT, last_name TEXT, address TEXT, "
    "locator TEXT, reason TEXT, missing INTEGER, old_first TEXT, old_last TEXT, "
    "applied INTEGER, disabled INTEGER, domain TEXT, mailbox_domain TEXT"
)
# A mailbox ``m`` on Hybridbox (0, not NULL, for a person without a mailbox row), and the address
# it has or was issued.
_HAS_MAILBOX = "coalesce(m.state IN ('created', 'adopted'), 0)"
_ADDRESS = "CASE WHEN m.local_part IS NOT NULL THEN m.local_part || '@' || m.domain END"
# Listed and logged in this order (then by anchor): missing, leaver, returned, name changed.
_SEEN_TRANSITIONS = f"""
INSERT INTO temp.transitions
SELECT 3, 'returned', b.anchor, b.first_name, b.last_name, {_ADDRESS}, b.origin,
       CASE WHEN b.missing_count > 0 THEN 'missing' ELSE 'disabled' END, b.missing_count,
       NULL, NULL, 0, b.disabled, NULL, NULL
FROM temp.before b LEFT JOIN mailboxes m ON m.anchor = b.anchor
WHERE b.missing_count > 0 OR (b.was_disabled AND NOT b.disabled AND {_HAS_MAILBOX})
UNION ALL
SELECT 2, 'leaver', b.anchor, b.first_name, b.last_name, {_ADDRESS}, b.origin, 'disabled', 0,
       NULL, NULL, 0, 1, NULL, NULL
FROM temp.before b LEFT JOIN mailboxes m ON m.anchor = b.anchor
WHERE b.disabled AND NOT b.was_disabled AND {_HAS_MAILBOX} AND b.missing_count < :leaver_after
UNION ALL
SELECT 4, 'name_changed', b.anchor, b.first_name, b.last_name, {_ADDRESS}, b.origin, NULL, 0,
       b.old_first, b.old_last, :rename OR NOT {_HAS_MAILBOX}, b.disabled, NULL, NULL
FROM temp.before b LEFT JOIN mailboxes m ON m.anchor = b.anchor
WHERE b.first_name != b.old_first OR b.last_name != b.old_last
UNION ALL
SELECT 5, 'domain_changed', s.anchor, s.first_name, s.last_name, {_ADDRESS}, s.origin, NULL, 0,
       NULL, NULL, 0, s.disabled, s.domain, m.domain
FROM temp.seen s CROSS JOIN people p ON p.anchor = s.anchor
CROSS JOIN mailboxes m ON m.anchor = s.anchor
WHERE p.domain IS NOT s.domain AND m.domain != s.domain AND {_HAS_MAILBOX}
"""
# Only a complete read counts anyone as missing; _count_missing then adds the 1 to their
# counter. A disabled person with a mailbox is a leaver already: missing adds nothing to that.
_UNSEEN_TRANSITIONS = f"""
INSERT INTO temp.transitions
SELECT 1, 'missing', p.anchor, p.first_name, p.last_name, {_ADDRESS}, NULL, NULL, 1,
       NULL, NULL, 0, p.disabled, NULL, NULL
FROM temp.unseen u CROSS JOIN people p ON p.anchor = u.anchor
LEFT JOIN mailboxes m ON m.anchor = u.anchor
WHERE p.missing_count = 0
UNION ALL
SELECT 2, 'leaver', p.anchor, p.first_name, p.last_name, {_ADDRESS}, NULL, 'missing',
       p.missing_count + 1, NULL, NULL, 0, 0, NULL, NULL
FROM temp.unseen u CROSS JOIN people p ON p.anchor = u.anchor
LEFT JOIN mailboxes m ON m.anchor = u.anchor
WHERE p.missing_count + 1 = :leaver_after AND NOT p.disabled AND {_HAS_MAILBOX}
"""


def _find_transitions(conn: sqlite3.Connection, report: ReadReport, policy: Policy) -> None:
    """``temp.transitions``: what this read changes about people (before it is written)."""
    params = {"leaver_after": policy.leaver_after_missing, "rename": int(policy.update_names)}
    conn.execute(_BEFORE)
    conn.execute(f"CREATE TEMP TABLE transitions ({_TRANSITION_COLUMNS})")
    conn.execute(_SEEN_TRANSITIONS, params)
    if report.absences_known:
        conn.execute(_UNSEEN_TRANSITIONS, params)


def _transitions(conn: sqlite3.Connection) -> list[Transition]:
    cursor = conn.cursor()
    cursor.row_factory = None  # plain tuples, whatever the connection's row factory
    rows = cursor.execute(
        "SELECT change, anchor, first_name, last_name, address, locator, reason, missing, "
        "old_first, old_last, applied, disabled, domain, mailbox_domain FROM temp.transitions "
        "ORDER BY rank, anchor"
    )
    return [
        Transition(
            change=Change(row[0]),
            anchor=row[1],
            first_name=row[2],
            last_name=row[3],
            address=row[4],
            locator=row[5],
            reason=row[6],
            missing=int(row[7] or 0),
            old_first=row[8],
            old_last=row[9],
            applied=bool(row[10]),
            disabled=bool(row[11]),
            domain=row[12],
            mailbox_domain=row[13],
        )
        for row in rows
    ]


def log_transitions(transitions: list[Transition], policy: Policy) -> None:
    """One line per transition: ``person.missing``, ``person.leaver`` (a warning: a mailbox to
    deal with), ``person.returned``, ``person.name_changed``. Consecutive lines of one kind go
    out as one batch (the same lines, one write): a delta read that found 1,000 renames logs
    1,000 lines without 1,000 trips through the logging machinery."""
    batch: list[dict[str, Any]] = []
    kind: tuple[str, int] | None = None
    for t in transitions:
        name, level, fields = _transition_line(t, policy)
        if kind != (name, level):
            if kind is not None:
                events(log, kind[0], batch, kind[1])
            kind, batch = (name, level), []
        batch.append(fields)
    if kind is not None:
        events(log, kind[0], batch, kind[1])


def _transition_line(t: Transition, policy: Policy) -> tuple[str, int, dict[str, Any]]:
    """The event, level and fields of one transition's line."""
    # The names as two fields, as the export and `syncd leavers` have them.
    who: dict[str, Any] = {
        "anchor": t.anchor,
        "first_name": t.first_name,
        "last_name": t.last_name,
        "address": t.address,
    }
    if t.change is Change.MISSING:
        fields = {**who, "missing": t.missing, "leaver_after": policy.leaver_after_missing}
        return "person.missing", logging.INFO, fields
    if t.change is Change.LEAVER:
        missing = t.missing if t.reason == "missing" else None
        return "person.leaver", logging.WARNING, {**who, "reason": t.reason, "missing": missing}
    if t.change is Change.RETURNED:
        fields = {
            **who,
            "where": t.locator or None,
            "was": t.reason,
            "missing": t.missing or None,
            "disabled": t.disabled or None,
        }
        return "person.returned", logging.INFO, fields
    if t.change is Change.DOMAIN_CHANGED:
        fields = {
            **who,
            "mailbox_domain": t.mailbox_domain,
            "new_domain": t.domain,
            "where": t.locator or None,
            "action": f"keeps the mailbox in {t.mailbox_domain}: Hybridbox cannot move one, "
            "and syncd never makes a second (listed by `syncd moves`)",
        }
        return "person.domain_changed", logging.WARNING, fields
    fields = {
        **who,
        "old": f"{t.old_first} {t.old_last}",
        "where": t.locator or None,
        "applied": t.applied,
    }
    return "person.name_changed", logging.INFO, fields


def _find_unseen(conn: sqlite3.Connection, report: ReadReport) -> None:
    """``temp.suspect``: the stored blocks this read did not find as they were, whose people are
    in doubt (none for a delta read, which reads no blocks); and on a complete full read
    ``temp.unseen``: the people it did not find."""
    conn.execute(
        "CREATE TEMP TABLE suspect AS SELECT id FROM blocks "
        "WHERE id NOT IN (SELECT id FROM temp.matched) AND ?",
        (int(not report.delta),),
    )
    if report.absences_known:
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS rejected (anchor TEXT PRIMARY KEY)")
        conn.execute("DELETE FROM temp.rejected")
        conn.executemany(
            "INSERT OR IGNORE INTO temp.rejected VALUES (?)",
            ((anchor,) for anchor in report.rejected_anchors),
        )
        # A rejected record is broken in the source, not gone from it.
        conn.execute(
            "CREATE TEMP TABLE unseen AS SELECT anchor FROM people "
            "WHERE (block IS NULL OR block IN (SELECT id FROM temp.suspect)) "
            "AND anchor NOT IN (SELECT anchor FROM temp.seen) "
            "AND anchor NOT IN (SELECT anchor FROM temp.rejected)"
        )


def _write_changed_people(conn: sqlite3.Connection, stamp: str) -> int:
    """Insert the new people of the read and update the changed ones; the rows written."""
    return conn.execute(
        "INSERT INTO people (anchor, first_name, last_name, email, start_date, disabled, "
        "digest, first_seen, last_seen, missing_count, block, open, domain) "
        "SELECT s.anchor, s.first_name, s.last_name, s.email, s.start_date, s.disabled, "
        "s.digest, :now, :now, 0, k.id, 1, s.domain FROM temp.seen s "
        "LEFT JOIN people p ON p.anchor = s.anchor "
        "LEFT JOIN temp.kept k ON k.block_no = s.block_no "
        # The domain alone differs when the rules changed (see syncd.cycle._route).
        "WHERE p.anchor IS NULL OR p.digest != s.digest OR p.domain IS NOT s.domain "
        "ON CONFLICT(anchor) DO UPDATE SET first_name = excluded.first_name, "
        "last_name = excluded.last_name, email = excluded.email, "
        "start_date = excluded.start_date, disabled = excluded.disabled, "
        "digest = excluded.digest, last_seen = excluded.last_seen, missing_count = 0, "
        "block = excluded.block, open = 1, domain = excluded.domain",
        {"now": stamp},
    ).rowcount


def _move_to_kept_blocks(conn: sqlite3.Connection) -> int:
    """Point the unchanged people of changed blocks (the same person, maybe in another block
    now) at the kept block they were read in, or none; the rows written."""
    conn.execute(
        "CREATE TEMP TABLE membership (anchor TEXT PRIMARY KEY, block INTEGER) WITHOUT ROWID"
    )
    conn.execute(
        "INSERT INTO temp.membership SELECT s.anchor, k.id FROM temp.seen s "
        "LEFT JOIN temp.kept k ON k.block_no = s.block_no"
    )
    block_of = "(SELECT m.block FROM temp.membership m WHERE m.anchor = people.anchor)"
    return conn.execute(
        f"UPDATE people SET block = {block_of} "
        f"WHERE anchor IN (SELECT anchor FROM temp.membership) AND block IS NOT {block_of}"
    ).rowcount


def _count_missing(conn: sqlite3.Connection, state: State, stamp: str) -> int:
    """Raise the missing counter of everyone a complete read did not find; the rows written."""
    last = state.last_complete_read()
    previous = last.started_at if last else stamp
    # missing_count 0 means: present in the last complete full read, so that is when this
    # person was last seen (or later: a delta read since may have returned them).
    return conn.execute(
        "UPDATE people SET last_seen = CASE WHEN missing_count = 0 THEN max(last_seen, ?) "
        "ELSE last_seen END, missing_count = missing_count + 1 "
        "WHERE anchor IN (SELECT anchor FROM temp.unseen)",
        (previous,),
    ).rowcount


def _keep_blocks(conn: sqlite3.Connection) -> None:
    """Make ``blocks`` the clean blocks of this read; ``temp.kept`` maps their numbers in the
    read to their ids."""
    conn.execute("DELETE FROM blocks WHERE id IN (SELECT id FROM temp.matched WHERE dirty = 1)")
    # A changed block keeps its row (and id) when its head is the same.
    conn.execute(
        "INSERT INTO blocks (head, digest, size, rejects) "
        "SELECT head, digest, size, rejects FROM temp.new_blocks WHERE dirty = 0 "
        "ON CONFLICT(head) DO UPDATE SET digest = excluded.digest, size = excluded.size, "
        "rejects = excluded.rejects "
        "WHERE blocks.id NOT IN (SELECT id FROM temp.matched)"
    )
    conn.execute("CREATE TEMP TABLE kept (block_no INTEGER PRIMARY KEY, id INTEGER)")
    conn.execute(
        "INSERT INTO temp.kept SELECT n.block_no, b.id FROM temp.new_blocks n "
        "CROSS JOIN blocks b ON b.head = n.head AND b.digest = n.digest WHERE n.dirty = 0"
    )
    conn.execute(
        "DELETE FROM blocks WHERE id IN (SELECT id FROM temp.suspect) "
        "AND id NOT IN (SELECT id FROM temp.kept)"
    )
