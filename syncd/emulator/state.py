"""What every request of the emulator shares: the store, the live faults, statistics, the token.

One :class:`EmulatorState` is handed to the request pipeline, the public API and the admin API.
``POST /_emulator/reset`` replaces ``faults`` and ``stats`` with new objects, so the others must
read those attributes from the state at each request rather than keep their own reference.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from syncd.emulator.faults import FaultInjector, FaultSettings
from syncd.emulator.stats import Stats
from syncd.emulator.store import Store


class EmulatorState:
    """State shared by all requests: store, faults, statistics, token."""

    def __init__(
        self,
        *,
        store: Store,
        token: str,
        faults: FaultSettings,
        preload: list[dict[str, Any]] | None = None,
        preload_path: Path | None = None,
    ) -> None:
        self.store = store
        self.account_id = store.account_id
        self.token = token.encode()  # bytes, as hmac.compare_digest wants them
        # Kept so that a reset can go back to the faults the emulator was started with.
        self.initial_faults = faults
        self.faults = FaultInjector(faults)
        self.stats = Stats()
        # Kept so that a reset can recreate the preloaded mailboxes.
        self.preload = preload or []
        self.preload_path = preload_path or Path("<preload>")
        # The last public request's number; restarts from 0 when the statistics are reset.
        self.seq = 0

    @property
    def default_domain(self) -> str:
        return next(iter(self.store.domains.values())).name
