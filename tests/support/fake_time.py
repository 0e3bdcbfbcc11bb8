"""A fake sleep and clock for code that waits (the retry budget, the client's backoff)."""

from __future__ import annotations


class FakeTime:
    """A sleep that only records, and a clock that moves when it is called."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now
