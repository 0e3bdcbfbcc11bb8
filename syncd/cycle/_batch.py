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
    resends: int = 0
    # Candidates found taken on Hybridbox during this cycle (rare: no empty set per person).
    excluded: frozenset[str] = frozenset()


class Queue:
    """What is left to send: items to send again first, then fresh ones, made on demand."""

    def __init__(self, fresh: Iterator[Item], total: int) -> None:
        self._fresh = fresh
        self._fresh_left = total
        self._again: deque[Item] = deque()

    @property
    def left(self) -> int:
        return len(self._again) + self._fresh_left

    def empty(self) -> bool:
        return self.left == 0

    def push_front(self, items: list[Item]) -> None:
        self._again.extendleft(reversed(items))

    def take(self, size: int) -> list[Item]:
        batch = [self._again.popleft() for _ in range(min(size, len(self._again)))]
        while len(batch) < size and self._fresh_left:
            item = next(self._fresh, None)
            if item is None:  # fewer than announced: someone was settled meanwhile
                self._fresh_left = 0
                break
            batch.append(item)
            self._fresh_left -= 1
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
