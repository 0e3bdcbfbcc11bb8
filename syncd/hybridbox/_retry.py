"""The retry budget: how many seconds one cycle may spend on a Hybridbox that does not answer.

One :class:`RetryBudget` per cycle is shared by every Hybridbox request of that cycle. It counts
the sleeps before retries and the time spent in attempts that failed (a timeout costs a whole
``hybridbox.timeout_s``), so that a cycle's waiting stays within ``hybridbox.retry_budget_s`` plus
at most one request's timeout: a wait that would overrun it is refused, and so is a new request
once failed attempts have overrun it. It is apart from the client (:mod:`syncd.hybridbox._client`,
which re-exports it) because it is plain bookkeeping of time, with no HTTP in it.
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

# What a give-up message ends with when a later cycle will try again (see ``then``).
RETRIED_NEXT_CYCLE = "the rest is retried next cycle"


# ------------------------------------------------------------------------------- retry budget


class RetryBudget:
    """The seconds one cycle may spend on retries (sleeps and failed attempts), shared by all its
    requests.

    When a wait would overrun it, :meth:`wait` raises ``HybridboxUnavailable`` instead of sleeping,
    and once failed attempts have overrun it :meth:`ensure_left` refuses the next request: the
    cycle stops calling Hybridbox. ``then`` ends those messages: what happens to the work left
    (:data:`RETRIED_NEXT_CYCLE` for a cycle; empty for a one-off command such as ``validate``).
    ``clock`` also times the client's attempts, so that a test's fake clock moves both.
    """

    def __init__(
        self,
        seconds: float,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        then: str = RETRIED_NEXT_CYCLE,
    ) -> None:
        self.seconds = max(0.0, seconds)
        self.spent = 0.0
        self.retries = 0
        self.clock = clock
        self._sleep = sleep
        self.then = then
        self._last_failure = "no answer"

    @property
    def remaining(self) -> float:
        return max(0.0, self.seconds - self.spent)

    def charge(self, seconds: float, *, reason: str) -> None:
        """Count ``seconds`` spent in an attempt that failed (``reason`` says how) as waiting."""
        self.spent += max(0.0, seconds)
        self._last_failure = reason

    def ensure_left(self) -> None:
        """Before a request: refuse it once failed attempts have overrun the budget."""
        if self.spent > self.seconds + _ROUNDING_SLACK_S:
            raise self._give_up(self._last_failure)

    def wait(self, seconds: float, *, reason: str) -> None:
        """Sleep ``seconds`` before a retry; ``reason`` says what went wrong, for the message."""
        seconds = max(0.0, seconds)
        if seconds > self.remaining + _ROUNDING_SLACK_S:
            raise self._give_up(reason)
        started = self.clock()
        self._sleep(seconds)
        # Charge what was asked for, or more if the sleep overran (a suspended machine).
        self.spent += max(seconds, self.clock() - started)
        self.retries += 1

    def _give_up(self, reason: str) -> HybridboxUnavailable:
        event(
            log,
            "hybridbox.gave_up",
            logging.ERROR,
            reason=reason,
            retries=self.retries,
            spent_s=round(self.spent, 1),
            budget_s=self.seconds,
        )
        then = f"; {self.then}" if self.then else ""
        return HybridboxUnavailable(
            f"Hybridbox did not answer usefully (last: {reason}); gave up after "
            f"{self.retries} retries / {self.spent:.1f} s{then}",
            hint=f"the retry budget of {self.seconds:g} s (hybridbox.retry_budget_s) is used up "
            "by waits and failed attempts",
        )
