"""Tests for syncd.hybridbox._retry: the retry budget on its own, with a fake sleep and clock.

How the client spends the budget (backoff, Retry-After, giving up) is tested in
tests/hybridbox/test_client.py.
"""

from __future__ import annotations

import pytest

from syncd.errors import HybridboxUnavailable
from syncd.hybridbox import RetryBudget
from tests.support.fake_time import FakeTime


def test_retry_budget_charges_overrunning_sleeps(fake_time: FakeTime) -> None:
    def slow_sleep(seconds: float) -> None:
        fake_time.now += seconds * 3  # e.g. the machine was suspended

    budget = RetryBudget(10, sleep=slow_sleep, clock=fake_time.clock)
    budget.wait(2, reason="test")
    assert budget.spent == 6
    assert budget.remaining == 4
    with pytest.raises(HybridboxUnavailable):
        budget.wait(5, reason="test")
    assert budget.retries == 1
