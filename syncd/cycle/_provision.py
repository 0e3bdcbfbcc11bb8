"""Apply a plan to Hybridbox without ever creating a mailbox twice.

The protocol for every bulk call (the *intent journal*):

1. choose an address for each person and write the batch to ``mailboxes`` as ``intent`` (and
   the addresses as issued), committed;
2. send the bulk request;
3. record every item's outcome, committed.

Batches are pipelined (see :meth:`Provisioner.create`): batch N is on the wire while batch N+1 is
prepared, and one transaction records the outcomes of batch N-1 and journals batch N+1. The
order per batch is unchanged: intents committed, then sent, then recorded.

A crash between 1 and 3 leaves intents behind; the next cycle resolves each one by looking its
address up on Hybridbox (:meth:`Provisioner.resolve_intents`) before anything new is sent. An
answer that may have been lost (timeout after sending, connection reset, 5xx) is resolved the
same way at once: look up, record what exists, re-send only what is missing.

What each outcome writes and logs is :mod:`syncd.cycle._outcomes`' business; how each fact is
stored, :mod:`syncd.state._journal`'s; how addresses are chosen, :mod:`syncd.cycle._allocate`'s.

Tests kill syncd at the crash points (``SYNCD_TEST_CRASH_AT``): see :mod:`syncd.cycle._crash`.
"""

from __future__ import annotations

import contextvars
import logging
import secrets
import time
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime

from syncd.config import Config
from syncd.cycle import _crash
from syncd.cycle._allocate import Allocator
from syncd.cycle._batch import Answer, Item, Queue
from syncd.cycle._outcomes import Outcomes
from syncd.cycle._plan import Action
from syncd.cycle._run import CycleOptions
from syncd.errors import HybridboxUnavailable, NotAuthorized, SyncdError
from syncd.hybridbox import (
    BatchTooLarge,
    BulkResult,
    HybridboxClient,
    ItemKind,
    Mailbox,
    NewMailbox,
    OutcomeUnknown,
)
from syncd.logs import event, get_logger, progress_bar
from syncd.model import Person
from syncd.state import Intent, Journal, State

log = get_logger("syncd.provision")

# How often one person may be re-sent within a cycle after a lost answer or a collision.
MAX_RESENDS = 3
# A long create logs ``provision.progress`` this often.
PROGRESS_EVERY_S = 5.0
# Random bytes in a batch id (12 hex digits): a label that tells the batches of a state apart.
BATCH_ID_BYTES = 6


class Provisioner:
    def __init__(
        self,
        config: Config,
        state: State,
        client: HybridboxClient,
        now: datetime,
        options: CycleOptions,
    ) -> None:
        self.config = config
        self.state = state
        self.client = client
        self.now = now
        self.options = options
        self.domain = config.hybridbox.domain.lower()
        self.batch_size = config.hybridbox.batch_size
        self.counters: Counter[str] = Counter()
        self.stopped = False
        self.allocator = Allocator(config, state, now)
        self.journal = Journal(state, self.domain, now)
        self.outcomes = Outcomes(config, self.journal, self.allocator, now, self.counters)

    # ------------------------------------------------------------------ helpers

    def _heartbeat(self) -> None:
        if self.options.heartbeat is not None:
            self.options.heartbeat()

    def _stop_requested(self) -> bool:
        return self.options.stop is not None and self.options.stop.is_set()

    # ------------------------------------------------------------------ guards

    def first_run_reasons(self) -> list[str]:
        """A first run against a domain that already has mailboxes must adopt, not create."""
        if self.state.get_meta("baseline") is not None:
            return []
        existing = next(iter(self.client.list_mailboxes(self.domain)), None)
        if existing is None:
            return []
        return [
            f"syncd's state is empty but the Hybridbox domain {self.domain} already has "
            f"mailboxes (e.g. {existing.primary_email}); run `syncd adopt` once so that "
            f"existing staff are matched to their mailboxes instead of getting new ones"
        ]

    # ------------------------------------------------------------------ intents

    def resolve_intents(self) -> None:
        """Settle every intent left by an interrupted cycle, by looking its address up."""
        intents = self.journal.open_intents()
        if not intents:
            return
        event(log, "intent.resolving", count=len(intents))
        for intent in intents:
            person = Person(intent.anchor, intent.first_name, intent.last_name)
            mailbox = self.client.find_by_address(intent.local_part, self.domain)
            with self.state.transaction():
                self.outcomes.settle(Item(person, intent.local_part), mailbox, origin="intent")
            self._heartbeat()

    # ------------------------------------------------------------------ creates

    def create(self, todo: Iterable[tuple[Person, str | None]], total: int) -> None:
        """Create mailboxes for ``total`` people, taken from ``todo`` a batch at a time.

        Each person comes with the local part already issued to them by an earlier cycle (a
        retry keeps its address), or None.

        Pipelined: while batch N is on the wire (a worker thread does its HTTP: the bulk call and
        any lookups the answer calls for), batch N+1 gets its addresses and, in one transaction,
        is journaled together with the outcomes of batch N-1; N+1 is sent as soon as N's answer
        is in, and N's answer is read while N+1 is on the wire. So every batch's intents are
        committed before it is sent, an answer is recorded one batch later (a crash in between
        leaves intents, resolved by lookup as always), and there is one commit per batch. The
        database is only ever used from this thread, the client only from the worker.
        """
        if not total:
            return
        self.allocator.preload(total)
        queue = Queue((Item(person, local_part) for person, local_part in todo), total)
        started = last_progress = time.monotonic()
        flight: tuple[list[Item], Future[Answer]] | None = None
        answered: tuple[list[Item], Answer] | None = None  # not recorded yet
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="syncd-bulk") as wire:
            while True:
                # A batch already journaled is always sent and recorded, even after a stop
                # request: it must not be left behind as intents.
                batch = [] if self._stop_requested() else self._allocate_next(queue)
                if batch or answered:
                    self._record_and_journal(answered, batch, queue)
                    answered = None
                arrived: tuple[list[Item], Answer] | None = None
                if flight is not None:
                    sent, future = flight
                    flight = None
                    arrived = (sent, future.result())
                if batch:
                    # On the wire before the last answer is read: the server works meanwhile.
                    context = contextvars.copy_context()  # log lines keep the cycle id
                    flight = (batch, wire.submit(context.run, self._wire, batch))
                if arrived is not None:
                    answered = self._read_answer(*arrived, queue, wire)
                elif not batch and answered is None and (queue.empty() or self._stop_requested()):
                    break
                self._heartbeat()
                last_progress = self._show_progress(
                    total, total - queue.left, started, last_progress
                )
        if not queue.empty():
            self.stopped = True
            event(log, "cycle.stopping", reason="stop requested", left=queue.left)

    def _record_and_journal(
        self, answered: tuple[list[Item], Answer] | None, batch: list[Item], queue: Queue
    ) -> None:
        """One transaction: record the last answer (what to send again goes back to the front
        of the queue) and journal the next batch as intents."""
        with self.state.transaction():
            if answered is not None:
                queue.push_front(self._handle(*answered))
            if batch:
                self._write_intents(batch, secrets.token_hex(BATCH_ID_BYTES))
        if batch:
            _crash.crashpoint("after_intents")

    def _read_answer(
        self, sent: list[Item], answer: Answer, queue: Queue, wire: ThreadPoolExecutor
    ) -> tuple[list[Item], Answer] | None:
        """Read the answer to a sent batch: the batch and answer to record, or None when the
        batch was refused as too large (nothing of it was created: it goes again, smaller)."""
        answer = self._interpret(sent, answer, wire)
        if answer.too_large is not None:
            self._shrink(sent, answer.too_large)
            queue.push_front(sent)
            return None
        return sent, answer

    def _show_progress(self, total: int, done: int, started: float, last_progress: float) -> float:
        """Redraw the progress bar, and log a progress line every PROGRESS_EVERY_S; returns
        when the last line was logged."""
        elapsed = time.monotonic() - started
        progress_bar(done, total, done / elapsed if elapsed else 0.0)
        if time.monotonic() - last_progress >= PROGRESS_EVERY_S:
            last_progress = time.monotonic()
            self._progress(total, done, started)
        return last_progress

    def _allocate_next(self, queue: Queue) -> list[Item]:
        """The next batch, every item with an address; empty when nothing is left."""
        while not queue.empty():
            batch = queue.take(self.batch_size)
            for item in self.allocator.allocate(batch):
                self.outcomes.failed(
                    item, "no_free_address", "every address candidate is taken", permanent=True
                )
            batch = [item for item in batch if item.local_part is not None]
            if batch:
                return batch
        return []

    def _progress(self, total: int, done: int, started: float) -> None:
        elapsed = time.monotonic() - started
        rate = done / elapsed if elapsed else 0.0
        event(
            log,
            "provision.progress",
            done=done,
            total=total,
            created=self.counters["created"],
            rate_per_s=f"{rate:.0f}",
            eta_s=f"{(total - done) / rate:.0f}" if rate else None,
        )

    def _write_intents(self, batch: list[Item], batch_id: str) -> None:
        """Journal a batch as intents, addresses issued (inside a transaction)."""
        intents = [
            Intent(i.person.anchor, i.local_part or "", i.person.first_name, i.person.last_name)
            for i in batch
        ]
        # An address issued again (its holder left more than reserve_days ago) keeps its
        # earlier holder in address_history, for `syncd addresses`. Only the allocator's
        # "known, reservation ended" addresses can be such; the rest are new or already ours.
        reissued = set(self.allocator.reissued(i.local_part for i in intents))
        self.journal.intents(intents, batch_id, reissued)

    def _wire(self, batch: list[Item]) -> Answer:
        """Send one journaled batch (worker thread): only the network, so that the thread's
        turn (and the server's) comes round again as soon as possible.

        What the answer says is read by :meth:`_interpret`, and what it means for the state is
        decided by :meth:`_handle`, both in the thread that owns the database.
        """
        items = [
            NewMailbox(i.person.first_name, i.person.last_name, i.local_part or "") for i in batch
        ]
        try:
            return Answer(sent=self.client.send_bulk(self.domain, items))
        except OutcomeUnknown as exc:
            return Answer(unknown=exc, lookups=self._lookups(batch, range(len(batch))))

    def _interpret(self, batch: list[Item], answer: Answer, wire: ThreadPoolExecutor) -> Answer:
        """Read a sent batch's answer, and have the lookups it calls for made (no transaction
        is open).

        The answer is parsed here, not in the network thread, so that the next batch is on the
        wire meanwhile. Lookups still go through ``wire``: the client is only used by one
        thread at a time (they are rare: taken addresses, answers without an outcome).
        """
        if answer.sent is None:
            return answer
        read = Answer()
        try:
            read.result = self.client.read_bulk(answer.sent)
        except BatchTooLarge as exc:
            return Answer(too_large=exc)
        except OutcomeUnknown as exc:
            read.unknown = exc
            indexes: list[int] = list(range(len(batch)))
        else:
            _crash.crashpoint("after_answer")
            indexes = [f.index for f in read.result.failed if f.kind is ItemKind.TAKEN]
            indexes += read.result.unknown
        if indexes:
            context = contextvars.copy_context()
            read.lookups = wire.submit(context.run, self._lookups, batch, indexes).result()
        return read

    def _lookups(self, batch: list[Item], indexes: Iterable[int]) -> dict[int, Mailbox | None]:
        """The mailboxes at these items' addresses (by item index)."""
        client, domain = self.client, self.domain
        return {
            index: client.find_by_address(batch[index].local_part or "", domain)
            for index in indexes
            if 0 <= index < len(batch)
        }

    def _shrink(self, batch: list[Item], too_large: BatchTooLarge) -> None:
        if len(batch) == 1:
            raise HybridboxUnavailable(
                "Hybridbox refuses even a single-item bulk request as too large"
            ) from None
        # Halve rather than jump to a limit the server may state: the documented API promises
        # no such field, and halving converges in a few requests either way.
        self.batch_size = max(1, len(batch) // 2)
        event(
            log,
            "batch.shrunk",
            logging.WARNING,
            batch_size=self.batch_size,
            was=len(batch),
            reason=str(too_large),
            note="kept for the rest of this cycle",
        )

    def _handle(self, batch: list[Item], answer: Answer) -> list[Item]:
        """Record one batch's answer (inside a transaction); the items to send again."""
        if answer.unknown is not None:
            event(
                log,
                "hybridbox.outcome_unknown",
                logging.WARNING,
                items=len(batch),
                reason=str(answer.unknown),
            )
            again = [
                item
                for index, item in enumerate(batch)
                if self.outcomes.settle(item, answer.lookups.get(index), origin="lookup")
            ]
            return self._limit_resends(again)
        assert answer.result is not None
        return self._record(batch, answer.result, answer.lookups)

    def _limit_resends(self, items: list[Item]) -> list[Item]:
        again = []
        for item in items:
            item.resends += 1
            if item.resends <= MAX_RESENDS:
                again.append(item)
        return again

    def _record(
        self, batch: list[Item], result: BulkResult, lookups: dict[int, Mailbox | None]
    ) -> list[Item]:
        """Record a bulk answer (inside a transaction); the items to send again.

        The lookups were made by _wire: no network I/O while the database is locked.
        """
        again: list[Item] = []
        done = [(batch[c.index], c.mailbox) for c in result.created if 0 <= c.index < len(batch)]
        halfway = max(1, len(batch) // 2)
        self.outcomes.created(done[:halfway])
        if len(done) >= halfway:
            _crash.crashpoint("mid_batch")
        self.outcomes.created(done[halfway:])
        for failure in result.failed:
            if not 0 <= failure.index < len(batch):
                continue
            item = batch[failure.index]
            if failure.kind is ItemKind.TAKEN:
                if self.outcomes.settle(item, lookups.get(failure.index), origin="taken"):
                    item.excluded |= {item.local_part or ""}
                    again.append(item)
            else:
                self.outcomes.failed(
                    item,
                    failure.code,
                    failure.message,
                    permanent=failure.kind is ItemKind.INVALID,
                )
        for index in result.unknown:
            if 0 <= index < len(batch) and self.outcomes.settle(
                batch[index], lookups.get(index), origin="lookup"
            ):
                again.append(batch[index])
        return self._limit_resends(again)

    # ------------------------------------------------------------------ renames

    def rename(self, actions: list[Action]) -> None:
        for action in actions:
            if self._stop_requested():
                self.stopped = True
                return
            known, person = action.known, action.person
            if known is None or not known.mailbox_id:
                continue
            try:
                mailbox = self.client.rename(known.mailbox_id, person.first_name, person.last_name)
            except (HybridboxUnavailable, NotAuthorized):
                raise
            except SyncdError as exc:
                self.counters["failed"] += 1
                event(
                    log,
                    "mailbox.rename_failed",
                    logging.WARNING,
                    anchor=person.anchor,
                    mailbox_id=known.mailbox_id,
                    reason=str(exc),
                )
                continue
            with self.state.transaction():
                self.journal.renamed(person.anchor, mailbox.first_name, mailbox.last_name)
            self.counters["renamed"] += 1
            event(
                log,
                "mailbox.renamed",
                anchor=person.anchor,
                mailbox_id=known.mailbox_id,
                old=f"{known.mailbox_first} {known.mailbox_last}",
                new=f"{person.first_name} {person.last_name}",
            )
            self._heartbeat()
