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
from collections.abc import Callable
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
        allocators: Callable[[str], Allocator],
        now: datetime,
        counters: Counter[str],
    ) -> None:
        self.config = config
        self.journal = journal
        # The allocator of a domain (an item's domain; "" for the default domain).
        self.allocators = allocators
        self.now = now
        self.counters = counters

    def settle(self, item: Item, mailbox: Mailbox | None, *, origin: str) -> bool:
        """Record what a lookup found for an item. True when it still needs to be sent.

        ``origin`` says why it was looked up. ``intent`` (an interrupted cycle's intent) and
        ``lookup`` (a request that got no answer): our request for this person at this address
        was sent, or may have been, so a mailbox there with their names is the one it created.
        ``taken`` (Hybridbox answered that the address is taken): our request created nothing,
        so a mailbox there with their names is theirs only when the journal says an earlier
        request of ours for them at this address went unanswered. Otherwise it is a namesake's
        (made by hand, or before an older state was restored): taken, never recorded as theirs,
        since a mailbox recorded as a person's is listed as a leaver's one day, for deletion.
        Only ``syncd adopt`` takes existing mailboxes over, on purpose.

        Must be called inside a transaction.
        """
        assert item.local_part is not None
        anchor, local_part = item.person.anchor, item.local_part
        same_name = mailbox is not None and _same_person(mailbox, item.person)
        domain = item.domain
        if same_name and (
            origin != "taken" or self.journal.sent_unanswered(anchor, local_part, domain)
        ):
            assert mailbox is not None
            self._found_ours(item, mailbox, origin)
            return False
        if mailbox is None:
            # A request that got no answer may still land: remembered with the address.
            self.journal.pending(anchor, unanswered=origin != "taken")
            found = "nothing"
        else:
            self._collision(item, mailbox, namesake=same_name)
            found = "a namesake's mailbox syncd never sent" if same_name else "other person"
        event(
            log,
            "intent.resolved" if origin == "intent" else "mailbox.lookup",
            anchor=anchor,
            address=self.journal.address(local_part, domain),
            found=found,
            outcome="will be created",
        )
        if mailbox is not None:
            item.local_part = None
        return True

    def _found_ours(self, item: Item, mailbox: Mailbox, origin: str) -> None:
        """Record the mailbox a request of ours for this person created (see ``settle``)."""
        if origin != "lookup":
            event(
                log,
                "intent.resolved" if origin == "intent" else "mailbox.lookup",
                anchor=item.person.anchor,
                address=self.journal.address(item.local_part or "", item.domain),
                # The interrupted request did reach Hybridbox: record it, never send it again.
                found="this person's mailbox"
                if origin == "intent"
                else "this person's mailbox, from an earlier request of syncd's without answer",
                outcome="recorded as created" if origin == "intent" else "recorded as adopted",
            )
        self.created([(item, mailbox)], adopted=origin == "taken")

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
                    "address": mailbox.primary_email
                    or self.journal.address(item.local_part or "", item.domain),
                    "mailbox_id": mailbox.id,
                }
                for item, mailbox in done
            ],
        )

    def _collision(self, item: Item, mailbox: Mailbox, *, namesake: bool = False) -> None:
        """The address belongs to someone else on Hybridbox: never offer it again.

        ``namesake``: the mailbox there has this person's names but is none of syncd's
        requests; worth a warning (after an older state was restored it may be theirs, and
        README's recovery section says what to do)."""
        local_part, domain = item.local_part or "", item.domain
        self.allocators(item.domain).note_taken(local_part)
        self.journal.collision(item.person.anchor, local_part, domain)
        if not namesake:
            event(
                log,
                "address.collision",
                anchor=item.person.anchor,
                address=self.journal.address(local_part, domain),
                action="trying the next candidate",
            )
            return
        event(
            log,
            "address.taken_by_other",
            logging.WARNING,
            anchor=item.person.anchor,
            address=self.journal.address(local_part, domain),
            mailbox_id=mailbox.id,
            reason="a mailbox with this person's names that syncd never sent a request for "
            "(made by hand, or before an older state was restored): not recorded as theirs",
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
                domain=item.domain or None,
            )
        )
        self.counters["failed"] += 1
        event(
            log,
            "mailbox.quarantined" if decision.state == "quarantined" else "mailbox.failed",
            logging.WARNING,
            anchor=anchor,
            address=self.journal.address(item.local_part, item.domain) if item.local_part else None,
            # Without an address, the domain it was to be created in.
            domain=None if item.local_part else (item.domain or self.journal.domain),
            code=code,
            message=message[:EXCERPT_CHARS],  # cut like any quote of a Hybridbox answer
            attempts=decision.attempts,
            next_attempt=iso(decision.next_attempt_at) if decision.next_attempt_at else None,
            quarantined=decision.state == "quarantined" or None,
        )
