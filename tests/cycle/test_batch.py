"""The provisioner's queue (``syncd.cycle._batch``): items to send again come first, fresh ones are
made only when taken, and a source that runs dry early ends the queue instead of hanging it."""

from __future__ import annotations

from collections.abc import Iterator

from syncd.cycle._batch import Item, Queue
from syncd.model import Person


def items(*anchors: str) -> Iterator[Item]:
    for anchor in anchors:
        yield Item(Person(anchor, "Ann", "Lee"))


def anchors(batch: list[Item]) -> list[str]:
    return [item.person.anchor for item in batch]


def test_fresh_items_are_made_only_when_taken() -> None:
    made: list[str] = []

    def fresh() -> Iterator[Item]:
        for anchor in ("A", "B", "C", "D", "E"):
            made.append(anchor)
            yield Item(Person(anchor, "Ann", "Lee"))

    queue = Queue(fresh(), total=5)
    assert made == [] and queue.left == 5
    assert anchors(queue.take(2)) == ["A", "B"]
    assert made == ["A", "B"] and queue.left == 3


def test_items_sent_again_go_first_in_their_order() -> None:
    queue = Queue(items("A", "B", "C", "D"), total=4)
    first = queue.take(3)
    queue.push_front([first[2], first[0]])  # C and A come back (lost answer, collision)
    assert queue.left == 3
    assert anchors(queue.take(2)) == ["C", "A"]
    assert anchors(queue.take(5)) == ["D"]
    assert queue.empty()


def test_fewer_fresh_items_than_announced_end_the_queue() -> None:
    # Someone announced was settled meanwhile (e.g. by resolving an intent): no hang, no error.
    queue = Queue(items("A", "B"), total=3)
    assert anchors(queue.take(5)) == ["A", "B"]
    assert queue.empty() and queue.take(5) == []


def test_every_batch_is_of_one_domain_and_full_while_its_domain_has_people() -> None:
    # A bulk request carries one domain: people of three domains, interleaved in the source.
    domains = ["a.test", "b.test", "a.test", "c.test", "a.test", "b.test", "a.test"]
    fresh = (Item(Person(f"P{i}", "Ann", "Lee"), domain=d) for i, d in enumerate(domains))
    queue = Queue(fresh, total=len(domains))
    first = queue.take(3)
    assert anchors(first) == ["P0", "P2", "P4"] and {i.domain for i in first} == {"a.test"}
    # P0 comes back (a lost answer): it goes first, with its domain's next fresh one.
    queue.push_front([first[0]])
    assert anchors(queue.take(3)) == ["P0", "P6"]
    # Nothing fresh is left: the fullest bucket, then the other.
    assert anchors(queue.take(3)) == ["P1", "P5"]
    assert anchors(queue.take(3)) == ["P3"]
    assert queue.empty() and queue.take(3) == []
