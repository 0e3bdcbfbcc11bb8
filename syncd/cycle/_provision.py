"""Apply a plan to Hybridbox without ever creating a mailbox twice.

The protocol for every bulk call (the *intent journal*):

1. choose an address for each person and write the batch to ``mailboxes`` as ``intent`` (and
   the addresses as issued), committed;
2. send the bulk request;
3. record every item's outcome, committed.

Several batches are in flight at once (see :meth:`Provisioner.create`): as many as the client's
flow control allows (``hybridbox.max_in_flight`` at most, fewer while Hybridbox asks syncd to slow
down) are on the wire, each sent by a worker thread, while the next is prepared; one transaction
records the answers that arrived and journals the next batch. The order per batch is unchanged:
intents committed, then sent, then recorded.

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
from collections import Counter, deque
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
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
# A batch id is a label that tells the batches of a state apart: this many random bytes per
# provisioner (8 hex digits), then the batch's number in it. Random bytes per batch would cost a
# getrandom() call each, ~0.2 ms here: 2 % of a first provisioning.
BATCH_ID_BYTES = 4
# The longest the provisioner waits for an answer without a heartbeat and a progress check.
HEARTBEAT_S = 1.0


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
        self._batch_prefix = secrets.token_hex(BATCH_ID_BYTES)
        self._batches = 0
        # One allocator per domain (local parts are unique per domain), made on first use.
        self.allocators: dict[str, Allocator] = {}
        self._expected = 0  # creates to come: what a new allocator preloads for
        self.journal = Journal(state, self.domain, now)
        self.outcomes = Outcomes(config, self.journal, self.allocator_for, now, self.counters)

    def allocator_for(self, domain: str) -> Allocator:
        """The allocator of ``domain`` ("": the default domain)."""
        domain = domain or self.domain
        allocator = self.allocators.get(domain)
        if allocator is None:
            allocator = self.allocators[domain] = Allocator(
                self.config, self.state, self.now, domain=domain
            )
            if self._expected:
                allocator.preload(self._expected)
        return allocator

    # ------------------------------------------------------------------ helpers

    def _heartbeat(self) -> None:
        if self.options.heartbeat is not None:
            self.options.heartbeat()

    def _stop_requested(self) -> bool:
        return self.options.stop is not None and self.options.stop.is_set()

    # ------------------------------------------------------------------ intents

    def resolve_intents(self) -> None:
        """Settle every intent left by an interrupted cycle, by looking its address up."""
        intents = self.journal.open_intents()
        if not intents:
            return
        event(log, "intent.resolving", count=len(intents))
        # A crash with several batches in flight leaves several batches of intents: they are
        # looked up as many at a time as batches would be sent, and settled a batch at a time.
        context = contextvars.copy_context()  # log lines keep the cycle id

        def look_up(intent: Intent) -> Mailbox | None:
            # A context is entered by one thread at a time: a copy for each lookup.
            return context.copy().run(
                self.client.find_by_address, intent.local_part, intent.domain or self.domain
            )

        with ThreadPoolExecutor(self.client.flow.limit, thread_name_prefix="syncd-lookup") as pool:
            for start in range(0, len(intents), self.batch_size):
                chunk = intents[start : start + self.batch_size]
                found = list(pool.map(look_up, chunk))
                with self.state.transaction():
                    for intent, mailbox in zip(chunk, found, strict=True):
                        person = Person(intent.anchor, intent.first_name, intent.last_name)
                        item = Item(person, intent.local_part, intent.domain or self.domain)
                        self.outcomes.settle(item, mailbox, origin="intent")
                self._heartbeat()

    # ------------------------------------------------------------------ creates

    def create(self, todo: Iterable[tuple[Person, str | None, str]], total: int) -> None:
        """Create mailboxes for ``total`` people, taken from ``todo`` a batch at a time.

        Each person comes with the local part already issued to them by an earlier cycle (a
        retry keeps its address), or None, and the domain their mailbox goes to; each batch is
        of one domain (see :class:`~syncd.cycle._batch.Queue`).

        Up to the flow control's window (``hybridbox.max_in_flight`` at most) of batches are on
        the wire at once, each sent by a worker thread, and one more is *ready*: its addresses
        chosen and journaled as intents, to be sent the moment a slot frees. Whenever answers
        arrive they are read (and the lookups they call for made), then one transaction
        records them and journals the batches that fill the free slots, so their addresses are
        chosen knowing every address an answer said was taken. Every batch's intents are
        committed before it is sent, and a crash anywhere leaves intents that the next start
        resolves by lookup. The database is only ever used from this thread.

        When a batch's sending fails for good (the retry budget ran out, the token was
        refused), nothing new is sent, but the answers to the batches still in flight are
        awaited and recorded before the error is raised: nothing Hybridbox confirmed is lost.
        """
        if not total:
            return
        self._expected = total
        for allocator in self.allocators.values():
            allocator.preload(total)
        # Each item's domain spelled out here, so that what follows never has to default it.
        queue = Queue(
            (
                Item(person, local_part, domain or self.domain)
                for person, local_part, domain in todo
            ),
            total,
        )
        flow = self.client.flow
        started = last_progress = time.monotonic()
        flights: dict[Future[Answer], list[Item]] = {}
        ready: deque[list[Item]] = deque()  # journaled, waiting for a slot
        arrived: list[tuple[list[Item], Answer]] = []  # read, not recorded yet
        failure: Exception | None = None
        with ThreadPoolExecutor(flow.max_in_flight, thread_name_prefix="syncd-bulk") as wire:
            while True:
                # A batch already journaled is sent and recorded even after a stop request: it
                # must not be left behind as intents. Not after a failure: it would fail too.
                while ready and failure is None and len(flights) < flow.limit:
                    batch = ready.popleft()
                    context = contextvars.copy_context()  # log lines keep the cycle id
                    flights[wire.submit(context.run, self._wire, batch)] = batch
                self.counters["in_flight_max"] = max(self.counters["in_flight_max"], len(flights))
                sending = failure is None and not self._stop_requested()
                wanted = self._wanted(flow.limit, len(flights), len(ready)) if sending else 0
                if arrived or (wanted > 0 and not queue.empty()):
                    ready.extend(self._record_and_journal(arrived, wanted, queue))
                    arrived = []
                    if ready and len(flights) < flow.limit:
                        continue  # send them now
                if not flights:
                    if ready and failure is None:
                        continue
                    if queue.empty() or not sending:
                        break
                    continue  # what the last answers sent back to the queue
                done, _ = wait(flights, timeout=HEARTBEAT_S, return_when=FIRST_COMPLETED)
                for future in done:
                    sent = flights.pop(future)
                    try:
                        read = self._read_answer(sent, future.result(), queue)
                    except Exception as exc:  # re-raised once the other flights are recorded
                        failure = failure or exc
                        continue
                    if read is not None:
                        arrived.append(read)
                self._heartbeat()
                last_progress = self._show_progress(
                    total, total - queue.left, started, last_progress
                )
        if failure is not None:
            raise failure
        if not queue.empty():
            self.stopped = True
            event(log, "cycle.stopping", reason="stop requested", left=queue.left)

    @staticmethod
    def _wanted(limit: int, in_flight: int, ready: int) -> int:
        """How many batches to journal now: enough for the free slots and one to spare (sent the
        moment a slot frees), but only one while nothing is on the wire, so that the first is
        sent as soon as it is journaled."""
        if not in_flight and not ready:
            return 1
        return max(0, limit + 1 - in_flight - ready)

    def _record_and_journal(
        self, arrived: list[tuple[list[Item], Answer]], wanted: int, queue: Queue
    ) -> list[list[Item]]:
        """One transaction: record the answers that arrived (what to send again goes back to
        the front of the queue), then choose addresses for up to ``wanted`` batches and journal
        them as intents; those batches, to be sent.

        One commit for all of it: a commit costs about a millisecond (the pages it changed go
        to the WAL), as much as recording a batch, so batches journaled together cost less.
        """
        batches: list[list[Item]] = []
        with self.state.transaction():
            for sent, answer in arrived:
                queue.push_front(self._handle(sent, answer))
            while len(batches) < wanted:
                batch = self._allocate_next(queue)
                if not batch:
                    break
                self._batches += 1
                self._write_intents(batch, f"{self._batch_prefix}-{self._batches}")
                batches.append(batch)
        for _ in batches:
            _crash.crashpoint("after_intents")
        return batches

    def _read_answer(
        self, sent: list[Item], answer: Answer, queue: Queue
    ) -> tuple[list[Item], Answer] | None:
        """Read the answer to a sent batch: the batch and answer to record, or None when the
        batch was refused as too large (nothing of it was created: it goes again, smaller)."""
        answer = self._interpret(sent, answer)
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
            if not batch:
                continue
            for item in self.allocator_for(batch[0].domain).allocate(batch):
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
            Intent(
                i.person.anchor,
                i.local_part or "",
                i.person.first_name,
                i.person.last_name,
                i.domain,
            )
            for i in batch
        ]
        # An address issued again (its holder left more than reserve_days ago) keeps its
        # earlier holder in address_history, for `syncd addresses`. Only the allocator's
        # "known, reservation ended" addresses can be such; the rest are new or already ours.
        allocator = self.allocator_for(batch[0].domain)
        reissued = set(allocator.reissued(i.local_part for i in intents))
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
            return Answer(sent=self.client.send_bulk(batch[0].domain, items))
        except OutcomeUnknown as exc:
            return Answer(unknown=exc, lookups=self._lookups(batch, range(len(batch))))

    def _interpret(self, batch: list[Item], answer: Answer) -> Answer:
        """Read a sent batch's answer, and make the lookups it calls for (no transaction is
        open).

        The answer is parsed here, not in the network thread, so that the network threads do
        only the network. The lookups are made from here too: they are rare (taken addresses,
        answers without an outcome), and what they find is recorded next.
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
            read.lookups = self._lookups(batch, indexes)
        return read

    def _lookups(self, batch: list[Item], indexes: Iterable[int]) -> dict[int, Mailbox | None]:
        """The mailboxes at these items' addresses (by item index)."""
        client = self.client
        return {
            index: client.find_by_address(batch[index].local_part or "", batch[index].domain)
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

    def _address_of(self, local_part: str | None, domain: str | None) -> str | None:
        return self.journal.address(local_part, domain) if local_part else None

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
                    address=self._address_of(known.local_part, known.domain),
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
                address=self._address_of(known.local_part, known.domain),
                mailbox_id=known.mailbox_id,
                old=f"{known.mailbox_first} {known.mailbox_last}",
                new=f"{person.first_name} {person.last_name}",
            )
            self._heartbeat()
