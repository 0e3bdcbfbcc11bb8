"""What the emulator has seen: request counts by route and status, items, faults, recent requests.

Only public API requests are counted (the admin API under ``/_emulator/`` is not). A request whose
connection was dropped on purpose is counted with the status ``"dropped"``.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

RECENT_REQUESTS = 1000


@dataclass(slots=True)
class RequestRecord:
    """One public request as the admin API shows it (never the token)."""

    seq: int
    route: str
    method: str
    path: str
    status: int | str
    fault: str | None
    authorized: bool
    items: int | None = None
    created: int | None = None
    failed: int | None = None
    idempotency_key: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "route": self.route,
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "fault": self.fault,
            "authorized": self.authorized,
            "items": self.items,
            "created": self.created,
            "failed": self.failed,
            "idempotency_key": self.idempotency_key,
        }


@dataclass(slots=True)
class Stats:
    started: float = field(default_factory=time.time)
    requests: int = 0
    by_route: dict[str, Counter[str]] = field(default_factory=dict)
    by_status: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    bulk_requests: int = 0
    bulk_items: int = 0
    created_by_api: int = 0
    created_behind: int = 0
    failed_items: Counter[str] = field(default_factory=Counter)
    renamed: int = 0
    aliases_added: int = 0
    # The most public requests that were being served at once.
    max_in_service: int = 0
    recent: deque[RequestRecord] = field(default_factory=lambda: deque(maxlen=RECENT_REQUESTS))

    def record(self, record: RequestRecord) -> None:
        self.requests += 1
        status = str(record.status)
        self.by_route.setdefault(record.route, Counter())[status] += 1
        self.by_status[status] += 1
        if record.fault is not None:
            self.faults[record.fault] += 1
        self.recent.append(record)

    def to_json(self, mailbox_total: int) -> dict[str, Any]:
        return {
            "uptime_s": round(time.time() - self.started, 3),
            "requests": {
                "total": self.requests,
                "by_route": {route: dict(counts) for route, counts in self.by_route.items()},
                "by_status": dict(self.by_status),
            },
            "faults": dict(self.faults),
            "concurrency": {"max_in_service": self.max_in_service},
            "bulk": {
                "requests": self.bulk_requests,
                "items": self.bulk_items,
                "failed_items": dict(self.failed_items),
            },
            "mailboxes": {
                "total": mailbox_total,
                "created_by_api": self.created_by_api,
                "created_behind": self.created_behind,
                "renamed": self.renamed,
                "aliases_added": self.aliases_added,
            },
        }
