"""How much syncd sends to Hybridbox at once, and how fast: it follows what the server says.

One :class:`FlowControl` per client, shared by every thread that sends through it. It keeps two
limits, both learned while the cycle runs:

- The *window* (:attr:`FlowControl.limit`): how many bulk requests the provisioner keeps
  outstanding, from 1 to ``hybridbox.max_in_flight``. Like TCP's congestion window: congestion
  (a 429, a 503, a timeout) halves it, rounded up, once per round (an answer to a request sent
  before the last cut does not cut again: the requests of one burst are one signal), and a run of
  :data:`CLEAN_RUN` clean answers raises it by one. A level at or below which congestion came
  before is tried again only after twice as many clean answers for each time, so that a server
  that serves two requests at once is not asked for a third every second.
- The *pace*: after a 429, requests per second, spaced evenly. A 429 says the server counts
  requests over time, not at once: the rate it accepted between the last two 429s is what it
  allows, and the pace is raised slowly (:data:`RATE_GROWTH_PER_S`) while no 429 comes, to find
  out whether it allows more. A server that announces its limit (``RateLimit-Limit`` or
  ``X-RateLimit-Limit``, over the window of ``RateLimit-Policy``'s ``w=``, else a second) is paced
  at exactly that; guessing stops.

A 429 or 503 with ``Retry-After`` also pauses every sender until then: the other threads' next
requests wait in :meth:`FlowControl.wait_turn`. Those waits are not retries, so they are not
charged to the retry budget; the retry of the request that was refused is (by the client).
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from syncd.logs import event, get_logger

log = get_logger("syncd.hybridbox")

# Clean answers in a row that raise the window by one (doubled per earlier failure at the level
# it would rise to). 16 keeps a probe of a known ceiling to a few per thousand requests.
CLEAN_RUN = 16
# How fast a learned pace grows while no 429 comes: 2 % of it per second, so that a pace learned
# a little low catches up within seconds and one a little high meets the next 429 within tens of
# seconds, not at once.
RATE_GROWTH_PER_S = 0.02
# A rate measured over less than this is noise (a burst the server let through); the pace is then
# halved instead.
MIN_MEASURED_SPAN_S = 0.5
# A pace below this is a server that wants nothing from us; waiting longer than a minute between
# requests would only look like a hang.
MIN_RATE_PER_S = 1 / 60

# "RateLimit-Policy: 100;w=60" (draft-ietf-httpapi-ratelimit-headers): the window in seconds.
_POLICY_WINDOW = re.compile(r";\s*w\s*=\s*(\d+(?:\.\d+)?)")
_LIMIT_HEADERS = ("ratelimit-limit", "x-ratelimit-limit")
_POLICY_HEADERS = ("ratelimit-policy", "x-ratelimit-policy")


@dataclass(frozen=True, slots=True)
class Ticket:
    """A request's turn: which round of the window it was sent in, and when."""

    round: int
    sent_at: float = 0.0


class FlowControl:
    """The window and the pace of one client's requests (see the module's text). Thread-safe."""

    def __init__(
        self,
        max_in_flight: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.max_in_flight = max(1, max_in_flight)
        self.limit = self.max_in_flight
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._round = 0
        self._clean = 0
        self._failures_at: dict[int, int] = {}  # window level -> congestion seen there
        self._paused_until = 0.0
        # The pace: None until a 429 or an announced limit; then requests per second, set at
        # _rate_since, growing from then unless announced.
        self._rate: float | None = None
        self._rate_since = 0.0
        self._announced = False
        self._next_slot = 0.0
        # What the server accepted since the last 429 (or since the first request).
        self._accepted = 0
        self._counting_since: float | None = None
        self.rate_limited = 0  # 429s seen

    # -- before a request

    def wait_turn(self) -> Ticket:
        """Wait until this thread may send (a pause, the pace), and take the next slot."""
        while True:
            with self._lock:
                now = self._clock()
                if self._counting_since is None:
                    self._counting_since = now
                wait = self._paused_until - now
                if wait <= 0:
                    rate = self._pace(now)
                    if rate is None or self._next_slot <= now:
                        if rate is not None:
                            self._next_slot = max(self._next_slot, now) + 1 / rate
                        return Ticket(self._round, now)
                    wait = self._next_slot - now
            self._sleep(wait)

    @property
    def pace(self) -> float | None:
        """Requests per second now, or None while unpaced."""
        with self._lock:
            return self._pace(self._clock())

    def _pace(self, now: float) -> float | None:
        if self._rate is None or self._announced:
            return self._rate
        return self._rate * (1 + RATE_GROWTH_PER_S * max(0.0, now - self._rate_since))

    # -- after an answer

    def answered(self, ticket: Ticket, headers: Mapping[str, str], *, clean: bool) -> None:
        """The server answered without asking us to slow down (``clean``: it also did not fail)."""
        with self._lock:
            self._accepted += 1
            self._read_announced(headers)
            if not clean:
                self._clean = 0
                return
            self._clean += 1
            if self.limit < self.max_in_flight and self._clean >= self._run_to_raise():
                # Answers of any round count: each says the server copes.
                self._set_limit(self.limit + 1, "clean_answers")

    def congested(
        self,
        ticket: Ticket,
        reason: str,
        retry_after: float | None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """The server said slow down: ``reason`` is ``429``, ``503`` or ``timeout``."""
        with self._lock:
            now = self._clock()
            self._clean = 0
            if headers is not None:
                self._read_announced(headers)
            if retry_after is not None and retry_after > 0:
                self._paused_until = max(self._paused_until, now + retry_after)
            if reason == "429":
                self.rate_limited += 1
                self._learn_rate(now, ticket)
            if ticket.round == self._round:
                level = self.limit
                self._failures_at[level] = self._failures_at.get(level, 0) + 1
                self._round += 1
                self._set_limit((level + 1) // 2, reason)

    # -- the window

    def _run_to_raise(self) -> int:
        # Congestion at a level says the levels above it would fail too.
        above = self.limit + 1
        doublings = sum(n for level, n in self._failures_at.items() if level >= above)
        return CLEAN_RUN << doublings

    def _set_limit(self, limit: int, reason: str) -> None:
        limit = max(1, min(self.max_in_flight, limit))
        self._clean = 0
        if limit == self.limit:
            return
        event(log, "hybridbox.in_flight", **{"from": self.limit}, to=limit, reason=reason)
        self.limit = limit

    # -- the pace

    def _learn_rate(self, now: float, ticket: Ticket) -> None:
        """A 429: pace at what the server accepted since the last one."""
        if self._announced:
            return
        if self._rate is not None and ticket.sent_at <= self._rate_since:
            # Sent before the pace was set (four in flight meet the limit together): it says
            # nothing about the new pace; halving it again for each would leave a pace that
            # takes a minute to grow back.
            return
        since = self._counting_since if self._counting_since is not None else now
        span = now - since
        current = self._pace(now)
        if span >= MIN_MEASURED_SPAN_S and self._accepted:
            rate = self._accepted / span
        elif current is not None:
            rate = current / 2
        else:
            # The first 429, right after a burst the server let through: the burst's rate says
            # nothing yet. Count from here; the next 429 tells.
            self._accepted, self._counting_since = 0, now
            return
        self._set_rate(max(MIN_RATE_PER_S, rate), now, reason="429")
        self._accepted, self._counting_since = 0, now

    def _read_announced(self, headers: Mapping[str, str]) -> None:
        limit = _first_number(headers, _LIMIT_HEADERS)
        if limit is None or limit <= 0:
            return
        window = 1.0
        for name in _POLICY_HEADERS:
            match = _POLICY_WINDOW.search(headers.get(name, ""))
            if match is not None and float(match.group(1)) > 0:
                window = float(match.group(1))
                break
        rate = max(MIN_RATE_PER_S, limit / window)
        if not self._announced or rate != self._rate:
            self._announced = True
            self._set_rate(rate, self._clock(), reason="announced")

    def _set_rate(self, rate: float, now: float, *, reason: str) -> None:
        self._rate, self._rate_since = rate, now
        event(log, "hybridbox.pace", rate_per_s=f"{rate:.2f}", reason=reason)


def _first_number(headers: Mapping[str, str], names: tuple[str, ...]) -> float | None:
    for name in names:
        raw = headers.get(name)
        if raw is None:
            continue
        # "10" or, in some drafts, "10, 10;w=1": the first number is the limit.
        head = raw.split(",", 1)[0].split(";", 1)[0].strip()
        try:
            value = float(head)
        except ValueError:
            continue
        if math.isfinite(value):
            return value
    return None
