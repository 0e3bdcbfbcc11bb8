"""The provisioner's writes to the state: the intent journal, and each mailbox's outcome.

:mod:`syncd.cycle._provision` decides what happened and when to commit (a batch's intents before it
is sent; its outcomes together with the next batch's intents); this module only knows how each fact
is stored. Every method runs inside the caller's transaction.

A mailbox row goes ``intent`` (journaled, maybe sent) → ``created`` / ``adopted`` (Hybridbox has
it), or back to ``pending`` (nothing there: send again), or to ``failed`` / ``quarantined`` (with
the attempts and backoff of :func:`syncd.cycle._plan.after_failure`). A ``pending`` row whose
request went unanswered keeps that fact (``SENT_UNANSWERED``) with its address: it is the only
evidence that a mailbox found there later may be ours. Issuing an address writes it
to ``addresses``; one issued again after its holder's reservation ended first keeps that holder in
``address_history``.
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from syncd.state._store import State, iso, parse_iso


class Intent(NamedTuple):
    """One person of a batch about to be sent (a tuple: 100k of them in a first run)."""

    anchor: str
    local_part: str
    first_name: str
    last_name: str
    # The mail domain it is sent to ("": the journal's default domain).
    domain: str = ""


class Outcome(NamedTuple):
    """A mailbox Hybridbox has for a person (created by this batch, or found and adopted)."""

    anchor: str
    mailbox_id: str
    local_part: str
    first_name: str
    last_name: str


@dataclass(frozen=True, slots=True)
class Failure:
    """A create that did not happen, with what :func:`syncd.cycle._plan.after_failure` decided."""

    anchor: str
    local_part: str | None
    first_name: str
    last_name: str
    digest: str
    state: str
    attempts: int
    first_failed_at: datetime
    next_attempt_at: datetime | None
    code: str
    message: str
    # The mail domain it was to be created in (None: the journal's default domain).
    domain: str | None = None


# ``last_code`` of a person whose create was sent (or may have been: a crash) but never answered,
# and whose address held nothing when looked up: that request may still land, so a later "taken"
# at the same address may be it (see Journal.sent_unanswered). It belongs to the row's
# local_part: an intent for another address drops it.
SENT_UNANSWERED = "sent_unanswered"
_OTHER_ADDRESS_THAN_UNANSWERED = (
    f"mailboxes.last_code = '{SENT_UNANSWERED}' AND (mailboxes.local_part IS NOT "
    "excluded.local_part OR mailboxes.domain IS NOT excluded.domain)"
)

_INTENT_SQL = (
    "INSERT INTO mailboxes (anchor, state, local_part, domain, first_name, last_name, batch_id, "
    "updated_at) VALUES (?, 'intent', ?, ?, ?, ?, ?, ?) ON CONFLICT(anchor) DO UPDATE SET "
    "state = 'intent', local_part = excluded.local_part, domain = excluded.domain, "
    "first_name = excluded.first_name, "
    "last_name = excluded.last_name, batch_id = excluded.batch_id, "
    "updated_at = excluded.updated_at, "
    f"last_code = CASE WHEN {_OTHER_ADDRESS_THAN_UNANSWERED} THEN NULL "
    "ELSE mailboxes.last_code END, "
    f"last_message = CASE WHEN {_OTHER_ADDRESS_THAN_UNANSWERED} THEN NULL "
    "ELSE mailboxes.last_message END"
)
_ISSUED_SQL = (
    "INSERT INTO addresses (address, anchor, status, issued_at) VALUES (?, ?, 'issued', ?) "
    "ON CONFLICT(address) DO UPDATE SET anchor = excluded.anchor, status = 'issued', "
    "issued_at = excluded.issued_at WHERE addresses.anchor IS NOT excluded.anchor"
)
_HISTORY_SQL = (
    "INSERT INTO address_history (address, anchor, issued_at, released_at) "
    "SELECT address, anchor, issued_at, ? FROM addresses "
    "WHERE address = ? AND anchor IS NOT NULL AND anchor != ?"
)
_CREATED_SQL = (
    "UPDATE mailboxes SET state = ?, mailbox_id = ?, local_part = ?, first_name = ?, "
    "last_name = ?, attempts = 0, first_failed_at = NULL, next_attempt_at = NULL, "
    "last_code = NULL, last_message = NULL, failed_digest = NULL, created_at = ?, "
    "updated_at = ? WHERE anchor = ?"
)
_FAILED_SQL = (
    "INSERT INTO mailboxes (anchor, state, local_part, domain, first_name, last_name, "
    "attempts, first_failed_at, next_attempt_at, last_code, last_message, "
    "failed_digest, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT(anchor) DO UPDATE SET state = excluded.state, domain = excluded.domain, "
    # Another domain than the row's (re-routed before any mailbox existed): its address there.
    "local_part = CASE WHEN mailboxes.domain IS NOT excluded.domain THEN excluded.local_part "
    "ELSE mailboxes.local_part END, attempts = excluded.attempts, "
    "first_failed_at = excluded.first_failed_at, "
    "next_attempt_at = excluded.next_attempt_at, last_code = excluded.last_code, "
    "last_message = excluded.last_message, failed_digest = excluded.failed_digest, "
    "updated_at = excluded.updated_at"
)


class Journal:
    """The state writes of one cycle's provisioning, stamped ``now``; ``domain`` is the domain
    of the writes that name none (the config's default domain)."""

    def __init__(self, state: State, domain: str, now: datetime) -> None:
        self.state = state
        self.domain = domain
        self.stamp = iso(now)

    def address(self, local_part: str, domain: str | None = None) -> str:
        return f"{local_part}@{domain or self.domain}"

    def open_intents(self) -> list[Intent]:
        """The intents an interrupted cycle left behind, each with the domain it was sent to."""
        rows = self.state.query(
            "SELECT anchor, local_part, first_name, last_name, domain FROM mailboxes "
            "WHERE state = 'intent'"
        )
        return [
            Intent(
                row["anchor"],
                row["local_part"],
                row["first_name"] or "",
                row["last_name"] or "",
                row["domain"] or self.domain,
            )
            for row in rows
        ]

    def intents(self, batch: Sequence[Intent], batch_id: str, reissued: Container[str]) -> None:
        """Journal a batch as intents and issue their addresses. ``reissued``: the local parts
        among them whose earlier holder's reservation ended (their history is kept)."""
        conn, stamp = self.state.conn, self.stamp
        issued = [(self.address(i.local_part, i.domain), i.anchor, stamp) for i in batch]
        again = [
            (stamp, address, i.anchor)
            for (address, _, _), i in zip(issued, batch, strict=True)
            if i.local_part in reissued
        ]
        if again:
            conn.executemany(_HISTORY_SQL, again)
        conn.executemany(_ISSUED_SQL, issued)
        conn.executemany(
            _INTENT_SQL,
            [
                (
                    i.anchor,
                    i.local_part,
                    i.domain or self.domain,
                    i.first_name,
                    i.last_name,
                    batch_id,
                    stamp,
                )
                for i in batch
            ],
        )

    def created(self, done: Sequence[Outcome], *, adopted: bool = False) -> None:
        """Hybridbox has these mailboxes: one statement for the lot."""
        state, stamp = ("adopted" if adopted else "created"), self.stamp
        self.state.conn.executemany(
            _CREATED_SQL,
            [
                (state, o.mailbox_id, o.local_part, o.first_name, o.last_name, stamp, stamp,
                 o.anchor)
                for o in done
            ],
        )  # fmt: skip

    def pending(self, anchor: str, *, unanswered: bool = False) -> None:
        """Nothing was created for this intent: send it again (same address).

        ``unanswered``: its request was sent (or may have been) and got no answer, so it may
        still land; remembered until the address is settled (see :meth:`sent_unanswered`).
        """
        if not unanswered:
            self.state.conn.execute(
                "UPDATE mailboxes SET state = 'pending', updated_at = ? WHERE anchor = ?",
                (self.stamp, anchor),
            )
            return
        self.state.conn.execute(
            "UPDATE mailboxes SET state = 'pending', last_code = ?, last_message = ?, "
            "updated_at = ? WHERE anchor = ?",
            (
                SENT_UNANSWERED,
                "sent without an answer, and nothing was found at the address: sent again",
                self.stamp,
                anchor,
            ),
        )

    def sent_unanswered(self, anchor: str, local_part: str, domain: str | None = None) -> bool:
        """Whether an earlier request of ours for this person at this address went unanswered
        (see :meth:`pending`): then a mailbox found there now may be the one it created."""
        row = self.state.conn.execute(
            "SELECT 1 FROM mailboxes WHERE anchor = ? AND local_part = ? AND domain = ? "
            "AND last_code = ?",
            (anchor, local_part, domain or self.domain, SENT_UNANSWERED),
        ).fetchone()
        return row is not None

    def collision(self, anchor: str, local_part: str, domain: str | None = None) -> None:
        """Someone else holds this address on Hybridbox: never offer it again, and let the
        person get another one."""
        self.state.conn.execute(
            "INSERT INTO addresses (address, anchor, status, issued_at) VALUES (?, NULL, "
            "'taken', ?) ON CONFLICT(address) DO UPDATE SET anchor = NULL, status = 'taken'",
            (self.address(local_part, domain), self.stamp),
        )
        self.state.conn.execute(
            # An unanswered request's mark belongs to the address given up here.
            "UPDATE mailboxes SET state = 'pending', local_part = NULL, updated_at = ?1, "
            "last_message = CASE WHEN last_code = ?2 THEN NULL ELSE last_message END, "
            "last_code = CASE WHEN last_code = ?2 THEN NULL ELSE last_code END WHERE anchor = ?3",
            (self.stamp, SENT_UNANSWERED, anchor),
        )

    def failures_so_far(self, anchor: str) -> tuple[int, datetime | None]:
        """How often creating this person's mailbox failed before, and since when."""
        row = self.state.conn.execute(
            "SELECT attempts, first_failed_at FROM mailboxes WHERE anchor = ?", (anchor,)
        ).fetchone()
        if row is None:
            return 0, None
        first = row["first_failed_at"]
        return int(row["attempts"]), parse_iso(first) if first else None

    def failed(self, failure: Failure) -> None:
        f = failure
        self.state.conn.execute(
            _FAILED_SQL,
            (
                f.anchor,
                f.state,
                f.local_part,
                f.domain or self.domain,
                f.first_name,
                f.last_name,
                f.attempts,
                iso(f.first_failed_at),
                iso(f.next_attempt_at) if f.next_attempt_at else None,
                f.code,
                f.message[:500],
                f.digest,
                self.stamp,
            ),
        )

    def renamed(self, anchor: str, first_name: str, last_name: str) -> None:
        self.state.conn.execute(
            "UPDATE mailboxes SET first_name = ?, last_name = ?, updated_at = ? WHERE anchor = ?",
            (first_name, last_name, self.stamp, anchor),
        )
