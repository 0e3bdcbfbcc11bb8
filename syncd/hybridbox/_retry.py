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
import math
import threading
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
    requests, from every thread that sends them.

    When a wait would overrun it, :meth:`wait` raises ``HybridboxUnavailable`` instead of sleeping,
    and once failed attempts have overrun it :meth:`ensure_left` refuses the next request: the
    cycle stops calling Hybridbox. ``then`` ends those messages: what happens to the work left
    (:data:`RETRIED_NEXT_CYCLE` for a cycle; empty for a one-off command such as ``validate``).
    ``clock`` also times the client's attempts, so that a test's fake clock moves both.

    What is charged is wall-clock time: with several requests in flight, four that wait out the
    same ``Retry-After`` side by side cost that second once, not four times. Each span is charged
    for the part of it after the latest moment already charged, which is exact for spans that
    overlap or follow one another, as the waits of one cycle do.
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
        # Also how the client's other waits sleep (the pace, a pause): one notion of time.
        self.sleep = sleep
        self.then = then
        self._last_failure = "no answer"
        self._charged_until = -math.inf
        self._lock = threading.Lock()

    @property
    def remaining(self) -> float:
        return max(0.0, self.seconds - self.spent)

    def charge_since(self, started: float, *, reason: str) -> None:
        """Count the time since ``started`` (on :attr:`clock`), spent in an attempt that failed
        (``reason`` says how), as waiting."""
        with self._lock:
            self._charge_span(started, self.clock())
            self._last_failure = reason

    def ensure_left(self) -> None:
        """Before a request: refuse it once failed attempts have overrun the budget."""
        with self._lock:
            if self.spent > self.seconds + _ROUNDING_SLACK_S:
                raise self._give_up(self._last_failure)

    def wait(self, seconds: float, *, reason: str) -> None:
        """Sleep ``seconds`` before a retry; ``reason`` says what went wrong, for the message."""
        seconds = max(0.0, seconds)
        with self._lock:
            started = self.clock()
            ends = started + seconds
            if self._uncharged(started, ends) > self.remaining + _ROUNDING_SLACK_S:
                raise self._give_up(reason)
            self._charge_span(started, ends)
            self.retries += 1
        self.sleep(seconds)
        # A sleep that overran (a suspended machine) is charged for what it took.
        with self._lock:
            self._charge_span(ends, self.clock())

    def _uncharged(self, start: float, end: float) -> float:
        return max(0.0, end - max(start, self._charged_until))

    def _charge_span(self, start: float, end: float) -> None:
        self.spent += self._uncharged(start, end)
        self._charged_until = max(self._charged_until, end)

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
