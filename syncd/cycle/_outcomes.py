"""What each outcome of a create means for the state, the log and the cycle's counters.

The provisioner (:mod:`syncd.cycle._provision`) decides *when* an item is settled: after a bulk
answer, a lookup, or the resolution of an interrupted cycle's intent. This module says *what* each
settlement writes: the journal row (through :mod:`syncd.state._journal`), one log line per person,
and the counter the cycle summary shows. None does any I/O but the state's; the caller holds the
transaction that the writes belong to (a write outside one commits on its own).
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime

from syncd.config import Config
from syncd.cycle._allocate import Allocator
from syncd.cycle._batch import Item
from syncd.cycle._plan import after_failure
from syncd.hybridbox import EXCERPT_CHARS, Mailbox
from syncd.logs import event, events, get_logger
from syncd.model import Person
from syncd.state import Failure, Journal, Outcome, iso

# The provisioner's logger: these lines are its outcomes, and operators filter on the name.
log = get_logger("syncd.provision")


def _same_person(mailbox: Mailbox, person: Person) -> bool:
    return (
        mailbox.first_name.strip().casefold() == person.first_name.strip().casefold()
        and mailbox.last_name.strip().casefold() == person.last_name.strip().casefold()
    )


class Outcomes:
    """Records items as created, adopted, collided, pending or failed."""

    def __init__(
        self,
        config: Config,
        journal: Journal,
        allocator: Allocator,
        now: datetime,
        counters: Counter[str],
    ) -> None:
        self.config = config
        self.journal = journal
        self.allocator = allocator
        self.now = now
        self.counters = counters

    def settle(self, item: Item, mailbox: Mailbox | None, *, origin: str) -> bool:
        """Record what a lookup found for an item. True when it still needs to be sent.

        Must be called inside a transaction.
        """
        assert item.local_part is not None
        if mailbox is not None and _same_person(mailbox, item.person):
            if origin == "intent":
                # The interrupted request did reach Hybridbox: record it, never send it again.
                event(
                    log,
                    "intent.resolved",
                    anchor=item.person.anchor,
                    address=self.journal.address(item.local_part),
                    found="this person's mailbox",
                    outcome="recorded as created",
                )
            self.created([(item, mailbox)], adopted=origin == "taken")
            return False
        if mailbox is not None:
            self._collision(item)
        else:
            self.journal.pending(item.person.anchor)
        event(
            log,
            "intent.resolved" if origin == "intent" else "mailbox.lookup",
            anchor=item.person.anchor,
            address=self.journal.address(item.local_part),
            found="other person" if mailbox is not None else "nothing",
            outcome="will be created",
        )
        if mailbox is not None:
            item.local_part = None
        return True

    def created(self, done: list[tuple[Item, Mailbox]], *, adopted: bool = False) -> None:
        """Record created (or adopted) mailboxes: one statement for the lot, one line each."""
        if not done:
            return
        self.journal.created(
            [
                Outcome(
                    item.person.anchor,
                    mailbox.id,
                    mailbox.local_part or item.local_part or "",
                    mailbox.first_name,
                    mailbox.last_name,
                )
                for item, mailbox in done
            ],
            adopted=adopted,
        )
        state = "adopted" if adopted else "created"
        self.counters[state] += len(done)
        events(
            log,
            f"mailbox.{state}",
            [
                {
                    "anchor": item.person.anchor,
                    "address": mailbox.primary_email or self.journal.address(item.local_part or ""),
                    "mailbox_id": mailbox.id,
                }
                for item, mailbox in done
            ],
        )

    def _collision(self, item: Item) -> None:
        """The address belongs to someone else on Hybridbox: never offer it again."""
        local_part = item.local_part or ""
        self.allocator.note_taken(local_part)
        self.journal.collision(item.person.anchor, local_part)
        event(
            log,
            "address.collision",
            anchor=item.person.anchor,
            address=self.journal.address(local_part),
            action="trying the next candidate",
        )

    def failed(self, item: Item, code: str, message: str, *, permanent: bool) -> None:
        anchor = item.person.anchor
        attempts, first_failed = self.journal.failures_so_far(anchor)
        quarantine = self.config.safety.quarantine_after
        decision = after_failure(
            attempts,
            first_failed,
            self.now,
            permanent=permanent,
            quarantine_attempts=quarantine.attempts,
            quarantine_days=quarantine.days,
        )
        self.journal.failed(
            Failure(
                anchor=anchor,
                local_part=item.local_part,
                first_name=item.person.first_name,
                last_name=item.person.last_name,
                digest=item.person.digest,
                state=decision.state,
                attempts=decision.attempts,
                first_failed_at=first_failed or self.now,
                next_attempt_at=decision.next_attempt_at,
                code=code,
                message=message,
            )
        )
        self.counters["failed"] += 1
        event(
            log,
            "mailbox.quarantined" if decision.state == "quarantined" else "mailbox.failed",
            logging.WARNING,
            anchor=anchor,
            address=self.journal.address(item.local_part) if item.local_part else None,
            code=code,
            message=message[:EXCERPT_CHARS],  # cut like any quote of a Hybridbox answer
            attempts=decision.attempts,
            next_attempt=iso(decision.next_attempt_at) if decision.next_attempt_at else None,
            quarantined=decision.state == "quarantined" or None,
        )
