"""Fault switches: what can go wrong, and the seeded dice that decide when.

The same names are used by the command-line options (with hyphens: ``--fail-rate``) and by the
admin API (``PUT /_emulator/faults`` with ``{"fail_rate": 0.1}``; hyphens are accepted too).
Rates are probabilities from 0 to 1 rolled once per request (or per bulk item for ``fail_rate``)
with one ``random.Random(seed)``, so the same requests against the same settings see the same
faults.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

# Route names, as used by ``fault_routes`` and in the request statistics.
PUBLIC_ROUTES = (
    "bulk_create",
    "create",
    "list",
    "get",
    "rename",
    "add_alias",
    "get_domain",
    "get_account",
)
WRITE_ROUTES = frozenset({"bulk_create", "create", "rename", "add_alias"})
CREATE_ROUTES = frozenset({"bulk_create", "create"})

BULK_STATUSES = (200, 201, 207)
ERROR_BODIES = ("json", "detail", "text", "html")
PAGE_SIZE_OVERFLOWS = ("clamp", "reject")


@dataclass(slots=True)
class FaultSettings:
    """Every switch, with its default (all faults off)."""

    latency_ms: int = 0
    # Up to this many ms more, uniformly at random (a server whose answers do not all take as
    # long).
    latency_jitter_ms: int = 0
    # A token bucket of this many requests a second (bursts of a second's worth); 0: none.
    rate_limit: float = 0.0
    # Announce it: X-RateLimit-Limit and X-RateLimit-Remaining on every answer.
    rate_limit_headers: bool = False
    # 503 when more than this many requests are being served at once; 0: no limit.
    max_concurrent: int = 0
    rate_limit_every: int = 0
    drop_rate: float = 0.0
    unavailable_rate: float = 0.0
    error_rate: float = 0.0
    forbid_create: bool = False
    max_batch: int = 0
    fail_rate: float = 0.0
    fail_code: str = "backend_busy"
    drop_after_write_rate: float = 0.0
    error_after_write_rate: float = 0.0
    timeout_after_write_rate: float = 0.0
    hang_s: float = 60.0
    retry_after: int = 1
    retry_after_http_date: bool = False
    bulk_status: int = 200
    error_body: str = "json"
    page_size_overflow: str = "clamp"
    # Wrong answers a broken server may give: each created mailbox reported at the previous item's
    # index (item i answered with item i+1's mailbox), and an answer body sent at this many bytes
    # a second (0: at once).
    shift_created: bool = False
    drip_bytes_per_s: float = 0.0
    # Route names the request-level faults apply to; empty means every public route.
    fault_routes: list[str] = field(default_factory=list)
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def updated(self, changes: Mapping[str, Any]) -> FaultSettings:
        """A copy with ``changes`` applied; raises ValueError naming the first bad key or value."""
        current = self.as_dict()
        for raw_key, value in changes.items():
            key = raw_key.replace("-", "_")
            if key not in current:
                known = ", ".join(sorted(current))
                raise ValueError(f"unknown fault {raw_key!r}; known: {known}")
            current[key] = _coerce(key, value)
        return FaultSettings(**current)


_RATES = {
    "drop_rate",
    "unavailable_rate",
    "error_rate",
    "fail_rate",
    "drop_after_write_rate",
    "error_after_write_rate",
    "timeout_after_write_rate",
}
_COUNTS = {
    "latency_ms",
    "latency_jitter_ms",
    "max_concurrent",
    "rate_limit_every",
    "max_batch",
    "retry_after",
}


def _coerce(key: str, value: Any) -> Any:
    """Check one setting's type and range; JSON numbers and CLI strings both arrive here."""
    if key in _RATES:
        rate = _number(key, value)
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"{key} must be between 0 and 1, not {value!r}")
        return rate
    if key in _COUNTS or key == "seed":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{key} must be a whole number, not {value!r}")
        if key != "seed" and value < 0:
            raise ValueError(f"{key} must be 0 or more, not {value!r}")
        return value
    if key in {"hang_s", "drip_bytes_per_s", "rate_limit"}:
        seconds_or_rate = _number(key, value)
        if seconds_or_rate < 0:
            raise ValueError(f"{key} must be 0 or more, not {value!r}")
        return seconds_or_rate
    if key in {"forbid_create", "retry_after_http_date", "shift_created", "rate_limit_headers"}:
        if not isinstance(value, bool):
            raise ValueError(f"{key} must be true or false, not {value!r}")
        return value
    if key == "fail_code":
        if not isinstance(value, str) or not value:
            raise ValueError(f"fail_code must be a non-empty string, not {value!r}")
        return value
    if key == "bulk_status":
        if value not in BULK_STATUSES or isinstance(value, bool):
            raise ValueError(f"bulk_status must be one of {BULK_STATUSES}, not {value!r}")
        return value
    if key == "error_body":
        return _choice(key, value, ERROR_BODIES)
    if key == "page_size_overflow":
        return _choice(key, value, PAGE_SIZE_OVERFLOWS)
    if key == "fault_routes":
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ValueError("fault_routes must be a list of route names")
        unknown = [item for item in value if item not in PUBLIC_ROUTES]
        if unknown:
            raise ValueError(
                f"unknown route {unknown[0]!r} in fault_routes; known: {PUBLIC_ROUTES}"
            )
        return list(value)
    raise AssertionError(f"no coercion for {key}")  # every field is listed above


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key} must be a number, not {value!r}")
    return float(value)


def _choice(key: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{key} must be one of {', '.join(choices)}, not {value!r}")
    return str(value)


class FaultInjector:
    """Holds the live settings and rolls the dice for them.

    ``rate_limit_every`` counts the requests it applies to; the count restarts whenever the
    settings are replaced, so "every 3rd request" means every 3rd one from that moment on.
    """

    def __init__(self, settings: FaultSettings) -> None:
        self.settings = settings
        self._rng = random.Random(settings.seed)
        # Jitter has dice of its own, so that turning it on leaves the other faults' rolls as
        # they were for the same seed.
        self._jitter_rng = random.Random(settings.seed)
        self._rate_limit_count = 0
        self.bucket = _bucket(settings)

    def replace(self, settings: FaultSettings) -> None:
        reseed = settings.seed != self.settings.seed
        self.settings = settings
        self._rate_limit_count = 0
        self.bucket = _bucket(settings)
        if reseed:
            self._rng = random.Random(settings.seed)
            self._jitter_rng = random.Random(settings.seed)

    def reseed(self) -> None:
        self._rng = random.Random(self.settings.seed)
        self._jitter_rng = random.Random(self.settings.seed)
        self._rate_limit_count = 0
        self.bucket = _bucket(self.settings)

    def latency_s(self) -> float:
        """How long this request takes the emulator: ``latency_ms`` plus up to the jitter."""
        settings = self.settings
        extra = (
            self._jitter_rng.uniform(0, settings.latency_jitter_ms)
            if settings.latency_jitter_ms
            else 0
        )
        return (settings.latency_ms + extra) / 1000

    def applies_to(self, route: str) -> bool:
        routes = self.settings.fault_routes
        return not routes or route in routes

    def roll(self, rate: float) -> bool:
        """True with probability ``rate``; draws a number only when 0 < rate < 1."""
        if rate <= 0.0:
            return False
        if rate >= 1.0:
            return True
        return self._rng.random() < rate

    def rate_limited(self) -> bool:
        every = self.settings.rate_limit_every
        if every <= 0:
            return False
        self._rate_limit_count += 1
        return self._rate_limit_count % every == 0


def _bucket(settings: FaultSettings) -> TokenBucket | None:
    return TokenBucket(settings.rate_limit) if settings.rate_limit > 0 else None


class TokenBucket:
    """``rate`` requests a second: a bucket of ``max(1, rate)`` tokens (a second's worth, so a
    client may burst that much), refilled at ``rate`` a second, starting full."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self._clock = clock
        self._filled_at = clock()

    def take(self) -> float | None:
        """Take a token: None when there was one, else the seconds until there is one."""
        self._refill()
        if self.tokens >= 1:
            self.tokens -= 1
            return None
        return (1 - self.tokens) / self.rate

    @property
    def remaining(self) -> int:
        self._refill()
        return int(self.tokens)

    def _refill(self) -> None:
        now = self._clock()
        self.tokens = min(self.capacity, self.tokens + (now - self._filled_at) * self.rate)
        self._filled_at = now
