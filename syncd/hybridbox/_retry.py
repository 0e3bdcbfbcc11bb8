"""The retry budget: how many seconds one cycle may spend waiting before retries.

One :class:`RetryBudget` per cycle is shared by every Hybridbox request of that cycle; when a wait
would overrun it, the cycle stops calling Hybridbox. It is apart from the client
(:mod:`syncd.hybridbox._client`, which re-exports it) because it is plain bookkeeping of waits, with
no HTTP in it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from syncd.errors import HybridboxUnavailable
from syncd.logs import event, get_logger

# The client's logger: the budget's events are about the client's retries, and operators filter
# on it.
log = get_logger("syncd.hybridbox")

# A wait may overrun what is left by this much: float rounding of the seconds spent so far must
# not refuse a wait of exactly what is left.
_ROUNDING_SLACK_S = 1e-9


# ------------------------------------------------------------------------------- retry budget


class RetryBudget:
    """The seconds one cycle may spend sleeping before retries, shared by all its requests.

    When a wait would overrun it, :meth:`wait` raises ``HybridboxUnavailable`` instead of sleeping:
    the cycle stops calling Hybridbox and the rest is retried next cycle.
    """

    def __init__(
        self,
        seconds: float,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.seconds = max(0.0, seconds)
        self.spent = 0.0
        self.retries = 0
        self._sleep = sleep
        self._clock = clock

    @property
    def remaining(self) -> float:
        return max(0.0, self.seconds - self.spent)

    def wait(self, seconds: float, *, reason: str) -> None:
        """Sleep ``seconds`` before a retry; ``reason`` says what went wrong, for the message."""
        seconds = max(0.0, seconds)
        if seconds > self.remaining + _ROUNDING_SLACK_S:
            event(
                log,
                "hybridbox.gave_up",
                logging.ERROR,
                reason=reason,
                retries=self.retries,
                spent_s=round(self.spent, 1),
                budget_s=self.seconds,
            )
            raise HybridboxUnavailable(
                f"Hybridbox did not answer usefully (last: {reason}); gave up after "
                f"{self.retries} retries / {self.spent:.1f} s; the rest is retried next cycle",
                hint=f"the cycle's retry budget of {self.seconds:g} s (hybridbox.retry_budget_s) "
                "is used up",
            )
        started = self._clock()
        self._sleep(seconds)
        # Charge what was asked for, or more if the sleep overran (a suspended machine).
        self.spent += max(seconds, self._clock() - started)
        self.retries += 1
