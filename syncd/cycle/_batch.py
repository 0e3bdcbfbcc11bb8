"""What the provisioner's batches are made of: the items, the queue they are taken from, the answer.

Plain data and a queue, with no database and no network: :class:`syncd.cycle._provision.Provisioner`
decides what happens to them. They live apart so that the provisioner's pipeline reads as the
protocol (journal, send, record) rather than as bookkeeping.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from syncd.hybridbox import BatchTooLarge, BulkResult, Mailbox, OutcomeUnknown, SentBulk
from syncd.model import Person


@dataclass(slots=True)
class Item:
    person: Person
    local_part: str | None = None
    # The mail domain it is created in ("": the config's default domain; see Queue).
    domain: str = ""
    resends: int = 0
    # Candidates found taken on Hybridbox during this cycle (rare: no empty set per person).
    excluded: frozenset[str] = frozenset()


class Queue:
    """What is left to send: items to send again first, then fresh ones, made on demand.

    Every batch it hands out is of one domain (a bulk request carries one). Fresh items wait in
    their domain's bucket until it holds a whole batch, or nothing fresh is left: with one
    domain, batches are exactly as the source order cuts them; with several, no bucket ever
    holds more than a batch, so memory stays a batch per domain.
    """

    def __init__(self, fresh: Iterator[Item], total: int) -> None:
        self._fresh = fresh
        self._fresh_left = total
        self._again: deque[Item] = deque()
        self._buckets: dict[str, deque[Item]] = {}
        self._bucketed = 0

    @property
    def left(self) -> int:
        return len(self._again) + self._bucketed + self._fresh_left

    def empty(self) -> bool:
        return self.left == 0

    def push_front(self, items: list[Item]) -> None:
        self._again.extendleft(reversed(items))

    def take(self, size: int) -> list[Item]:
        """The next batch, at most ``size`` items of one domain: those to send again first
        (then filled up with their domain's fresh ones), else a domain's full bucket, else,
        when nothing fresh is left, the fullest bucket."""
        batch = self._take_again(size) if self._again else []
        domain = batch[0].domain if batch else None
        if domain is None:
            domain = next((d for d, b in self._buckets.items() if len(b) >= size), None)
        if domain is not None:
            self._unbucket(domain, batch, size)
        while len(batch) < size and self._fresh_left:
            item = next(self._fresh, None)
            if item is None:  # fewer than announced: someone was settled meanwhile
                self._fresh_left = 0
                break
            self._fresh_left -= 1
            if item.domain == domain:
                batch.append(item)
                continue
            bucket = self._buckets.setdefault(item.domain, deque())
            bucket.append(item)
            self._bucketed += 1
            if len(bucket) >= size:
                if domain is not None:
                    break  # this batch goes as it is; that full bucket is the next one
                domain = item.domain
                self._unbucket(domain, batch, size)
        if domain is None and self._bucketed:  # nothing fresh is left
            domain = max(self._buckets, key=lambda d: len(self._buckets[d]))
            self._unbucket(domain, batch, size)
        return batch

    def _unbucket(self, domain: str, batch: list[Item], size: int) -> None:
        bucket = self._buckets.get(domain)
        while bucket and len(batch) < size:
            batch.append(bucket.popleft())
            self._bucketed -= 1

    def _take_again(self, size: int) -> list[Item]:
        """Items to send again, of the first one's domain, in their order."""
        domain = self._again[0].domain
        batch: list[Item] = []
        others: deque[Item] = deque()
        while self._again and len(batch) < size:
            item = self._again.popleft()
            (batch if item.domain == domain else others).append(item)
        others.extend(self._again)
        self._again = others
        return batch


@dataclass(slots=True)
class Answer:
    """What the wire brought back for one batch: the answer as sent back (``sent``, not read
    yet), or exactly one of the three that reading it gives, plus lookups."""

    sent: SentBulk | None = None
    result: BulkResult | None = None
    too_large: BatchTooLarge | None = None
    unknown: OutcomeUnknown | None = None
    # Addresses looked up because the answer said taken or unknown (by item index).
    lookups: dict[int, Mailbox | None] = field(default_factory=dict)
