"""Whom the planner looks at in a cycle, and the queue of creates handed to the provisioner.

After :mod:`syncd.cycle._stage` has staged the read (the new and changed people in ``temp.seen``,
the unchanged blocks in ``temp.matched``), the candidates are found in SQL: the staged people joined
with the state, plus the unchanged people whose ``people.open`` flag says that the planner could
still decide something about them. Planning those few streams the creates and retries into
``temp.todo``, which :func:`queued_creates` hands to :mod:`syncd.cycle._provision` a chunk at a
time.

This lives apart from :mod:`syncd.cycle._engine` because it is a different kind of code: the engine
only decides the order of a cycle's steps, while this is the SQL that keeps a cycle over 100k
people fast and small (a steady cycle looks at almost nobody; a first provisioning never holds
everyone in memory). It depends on the staging tables and the state's schema, and it can change
for speed without the order of the cycle changing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import date, datetime
from typing import Any

from syncd.cycle._plan import Action, Kind, Known, Plan, Policy, create_target, plan_person
from syncd.cycle._stage import STAGE_CHUNK
from syncd.model import Person
from syncd.state import SENT_UNANSWERED, State, parse_iso

_COLUMNS = """s.anchor, s.first_name, s.last_name, s.email, s.start_date, s.disabled, s.digest,
       s.origin, p.digest AS known_digest, m.state, m.local_part, m.mailbox_id,
       m.first_name AS mailbox_first, m.last_name AS mailbox_last, m.attempts,
       m.next_attempt_at, m.failed_digest, s.seq, 1 AS in_read, m.domain AS mailbox_domain,
       m.last_code, s.domain"""
# The position of ``in_read`` in a candidate row: 1 for the people this read returned, 0 for
# those it did not (only a delta read has those; see _DELTA_UNCHANGED_CANDIDATES).
_IN_READ = 18
# The positions of the mailbox row's domain and last code, and of the person's routed domain
# (None: not routed yet, a state from before hybridbox.domains: the default domain).
_MAILBOX_DOMAIN, _LAST_CODE, _ROUTED = 19, 20, 21

# The people the planner must look at: (1) the staged ones that are new, changed, or without a
# settled mailbox; (2) the unchanged ones (in unchanged blocks) that are ``open``: whose mailbox
# is not settled (scheduled, failed, quarantined, never created) or awaits a rename. Everyone
# else (the steady-state majority) is provably a no-op for the planner, so a 100k-person cycle
# where nothing changed looks at almost nobody.
_STAGED_CANDIDATES = f"""
SELECT {_COLUMNS}
FROM temp.seen s
LEFT JOIN people p ON p.anchor = s.anchor
LEFT JOIN mailboxes m ON m.anchor = s.anchor
WHERE p.anchor IS NULL OR p.digest != s.digest OR m.anchor IS NULL
   OR m.state NOT IN ('created', 'adopted')
   OR m.first_name IS NOT s.first_name OR m.last_name IS NOT s.last_name
"""
# Their locator is in temp.located when the read was asked for it (``syncd plan`` shows it);
# apply's is empty, and the planner does not need it.
_UNCHANGED_CANDIDATES = """
SELECT p.anchor, p.first_name, p.last_name, p.email, p.start_date, p.disabled, p.digest,
       coalesce(l.origin, '') AS origin, p.digest AS known_digest, m.state, m.local_part,
       m.mailbox_id, m.first_name AS mailbox_first, m.last_name AS mailbox_last, m.attempts,
       m.next_attempt_at, m.failed_digest, b.first_pos AS seq, 1 AS in_read,
       m.domain AS mailbox_domain, m.last_code, p.domain
FROM temp.matched b
JOIN people p ON p.block = b.id{open}
LEFT JOIN mailboxes m ON m.anchor = p.anchor
LEFT JOIN temp.located l ON l.anchor = p.anchor
WHERE p.anchor NOT IN (SELECT anchor FROM temp.seen)
"""
# A delta read returns only the changed people; everyone else the state holds as present (not
# missing from the last complete full read) is unchanged, wherever their block: those of them
# that are open (a start date to wait for, a failure to retry) are looked at as after a full
# read. They are not *in* this read (``in_read`` 0), which matters for renames (plan_and_queue).
_DELTA_UNCHANGED_CANDIDATES = """
SELECT p.anchor, p.first_name, p.last_name, p.email, p.start_date, p.disabled, p.digest,
       '' AS origin, p.digest AS known_digest, m.state, m.local_part,
       m.mailbox_id, m.first_name AS mailbox_first, m.last_name AS mailbox_last, m.attempts,
       m.next_attempt_at, m.failed_digest, -1 AS seq, 0 AS in_read,
       m.domain AS mailbox_domain, m.last_code, p.domain
FROM people p{index}
LEFT JOIN mailboxes m ON m.anchor = p.anchor
WHERE p.missing_count = 0 AND p.anchor NOT IN (SELECT anchor FROM temp.seen){open}
"""

# Open: what the planner decides about this person can change without their record changing
# (see plan.plan_person): no settled mailbox and not disabled, or a rename still to make.
_OPEN_SQL = """
UPDATE people SET open = x.open FROM (
    SELECT p.anchor, CASE
        WHEN m.state IN ('created', 'adopted') THEN (:rename AND (
            m.first_name IS NOT p.first_name OR m.last_name IS NOT p.last_name))
        WHEN p.disabled THEN 0 ELSE 1 END AS open
    FROM people p LEFT JOIN mailboxes m ON m.anchor = p.anchor
    WHERE {scope}
) x WHERE people.anchor = x.anchor AND people.open IS NOT x.open
"""
# The meta key holding the policy the ``open`` flags were computed under: flags computed while
# renames were off say nothing about who awaits a rename now.
OPEN_POLICY_KEY = "open_policy"


def open_policy(policy: Policy) -> str:
    return "rename" if policy.update_names else "keep"


def _candidates_sql(state: State, policy: Policy, *, delta: bool = False) -> str:
    """The candidates query, in read order. Every unchanged person is looked at when the
    ``open`` flags were computed under another policy (only in ``syncd plan``: ``apply``
    recomputes them first); an older state (``syncd plan`` does not migrate) has no blocks."""
    if not state.current:
        return _STAGED_CANDIDATES + "ORDER BY seq"
    trusted = state.get_meta(OPEN_POLICY_KEY) == open_policy(policy)
    if delta:
        # The open people, from the partial index that holds only them (a few in 100k).
        unchanged = _DELTA_UNCHANGED_CANDIDATES.format(
            index=" INDEXED BY people_open" if trusted else "",
            open=" AND p.open = 1" if trusted else "",
        )
    else:
        unchanged = _UNCHANGED_CANDIDATES.format(open=" AND p.open = 1" if trusted else "")
    return f"{_STAGED_CANDIDATES} UNION ALL {unchanged} ORDER BY seq"


def refresh_open(
    state: State, policy: Policy, *, everyone: bool = False, delta: bool = False
) -> None:
    """Recompute ``people.open`` for the people this cycle looked at (or for everyone): after
    a delta read, the people it returned and every open one."""
    if everyone:
        scope = "1"
    elif delta:
        # One IN list, not `... OR p.open = 1`: SQLite would walk all of people for the OR.
        scope = (
            "p.anchor IN (SELECT anchor FROM temp.seen UNION ALL "
            "SELECT anchor FROM people INDEXED BY people_open WHERE open = 1)"
        )
    else:
        scope = (
            "p.anchor IN (SELECT anchor FROM temp.seen) "
            "OR (p.open = 1 AND p.block IN (SELECT id FROM temp.matched))"
        )
    with state.transaction() as conn:
        conn.execute(_OPEN_SQL.format(scope=scope), {"rename": int(policy.update_names)})
        if everyone:
            state.set_meta(OPEN_POLICY_KEY, open_policy(policy))


def _rows(state: State, sql: str, params: Sequence[object] = ()) -> sqlite3.Cursor:
    """A cursor that yields plain tuples: the hot loops read columns by position (a
    ``sqlite3.Row`` looked up by name costs about 0.1 µs per column, per row)."""
    cursor = state.conn.cursor()
    cursor.row_factory = None
    return cursor.execute(sql, params)


def candidates(
    state: State, policy: Policy, *, delta: bool = False
) -> Iterator[tuple[Person, Known | None]]:
    for row in _rows(state, _candidates_sql(state, policy, delta=delta)):
        yield _person_from_row(row), _known_from_row(row)


def _target(row: Sequence[Any], known: Known | None, default: str) -> tuple[str, str | None]:
    """The domain a create or retry in this candidate row goes to, and its issued local part."""
    return create_target(row[_ROUTED] or default, known)


def _person_from_row(row: Sequence[Any]) -> Person:
    """The person in the first eight columns (those of ``_COLUMNS`` and of ``temp.todo``)."""
    anchor, first_name, last_name, email, start_date, disabled, digest, origin = row[:8]
    return Person(
        anchor,
        first_name,
        last_name,
        email,
        date.fromisoformat(start_date) if start_date else None,
        bool(disabled),
        digest,
        origin or "",
    )


def _known_from_row(row: Sequence[Any]) -> Known | None:
    """What the state knows, from the columns after the person's (see ``_COLUMNS``)."""
    known_digest, state, local_part, mailbox_id, first, last, attempts, next_at, failed = row[8:17]
    if known_digest is None and state is None:
        return None
    return Known(
        domain=row[_MAILBOX_DOMAIN],
        unanswered=row[_LAST_CODE] == SENT_UNANSWERED,
        digest=known_digest,
        mailbox_state=state,
        local_part=local_part,
        mailbox_id=mailbox_id,
        mailbox_first=first,
        mailbox_last=last,
        attempts=int(attempts or 0),
        next_attempt_at=parse_iso(next_at) if next_at else None,
        failed_digest=failed,
    )


def plan_and_queue(
    state: State,
    policy: Policy,
    today: date,
    now: datetime,
    *,
    delta: bool = False,
    default_domain: str = "",
) -> Plan:
    """Plan with counts only, queueing the people to create or retry in ``temp.todo``.

    A first provisioning of 100k people would otherwise hold 100k actions in memory until they
    are sent; the queue lets :func:`queued_creates` hand them over a chunk at a time. It holds
    what the provisioner needs (the person and the address already issued to them, if any), so
    handing over is a plain read of this table.

    After a ``delta`` read, a rename is planned only for the people it returned (see
    :func:`_decide`).
    """
    conn = state.conn
    conn.execute("DROP TABLE IF EXISTS temp.todo")
    conn.execute(
        "CREATE TEMP TABLE todo (anchor TEXT, first_name TEXT, last_name TEXT, email TEXT, "
        "start_date TEXT, disabled INTEGER, digest TEXT, origin TEXT, local_part TEXT, "
        "domain TEXT)"
    )
    insert = "INSERT INTO temp.todo VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    result = Plan(keep=False)
    queued: list[tuple[object, ...]] = []
    for row in _rows(state, _candidates_sql(state, policy, delta=delta)):
        known = _known_from_row(row)
        action = _decide(result, row, _person_from_row(row), known, policy, today, now)
        if action is None:
            continue
        result.add(action)
        if action.kind in (Kind.CREATE, Kind.RETRY):
            domain, local_part = _target(row, known, default_domain)
            queued.append((*row[:8], local_part, domain))
            if len(queued) >= STAGE_CHUNK:
                conn.executemany(insert, queued)
                queued.clear()
    conn.executemany(insert, queued)
    return result


def _decide(
    result: Plan,
    row: Sequence[Any],
    person: Person,
    known: Known | None,
    policy: Policy,
    today: date,
    now: datetime,
) -> Action | None:
    """The planner's action for one candidate row; a rename of someone the read did not return
    (only a delta read leaves such people among the candidates) is counted as waiting instead.

    The names in the state are only as good as the read that wrote them, which may have been
    incomplete (the rename then waits for a complete read of that person, see the engine). A
    complete delta read vouches for the people it returned, and for nobody else: the others
    wait for the next full read (or for their own next change).
    """
    action = plan_person(person, known, policy, today, now)
    if action is not None and action.kind is Kind.RENAME and not row[_IN_READ]:
        result.renames_waiting += 1
        return None
    return action


def plan_in_full(
    state: State,
    policy: Policy,
    today: date,
    now: datetime,
    *,
    delta: bool = False,
    default_domain: str = "",
) -> tuple[Plan, list[tuple[Person, str | None, str]]]:
    """``syncd plan``: every decision kept, and the people to create or retry in the order
    ``apply`` would send them (creates and retries mixed, in read order, as
    :func:`plan_and_queue` queues them), each with the address already issued to them, if any."""
    result = Plan()
    sending: list[tuple[Person, str | None, str]] = []
    for row in _rows(state, _candidates_sql(state, policy, delta=delta)):
        known = _known_from_row(row)
        person = _person_from_row(row)
        action = _decide(result, row, person, known, policy, today, now)
        if action is None:
            continue
        domain, local_part = _target(row, known, default_domain)
        if action.kind in (Kind.CREATE, Kind.RETRY, Kind.SCHEDULED):
            action = replace(action, domain=domain)
        result.add(action)
        if action.kind in (Kind.CREATE, Kind.RETRY):
            sending.append((person, local_part, domain))
    return result, sending


def queued_creates(state: State) -> Iterator[tuple[Person, str | None, str]]:
    """The queued creates and retries: each person with the address issued to them, if any,
    and the domain their mailbox goes to.

    Each chunk is fetched whole before it is handed on, so no read is open while the
    provisioner writes.
    """
    last = 0
    while True:
        rows = _rows(
            state,
            "SELECT anchor, first_name, last_name, email, start_date, disabled, digest, origin, "
            "local_part, rowid, domain FROM temp.todo WHERE rowid > ? ORDER BY rowid LIMIT ?",
            (last, STAGE_CHUNK),
        ).fetchall()
        if not rows:
            return
        last = rows[-1][9]
        for row in rows:
            yield _person_from_row(row), row[8], row[10]
