"""The local state store: one SQLite file that remembers what syncd saw and did.

- :mod:`syncd.state._store`: :class:`State`, the tables and every query the cycle makes.
- :mod:`syncd.state._schema`: the numbered migrations that build and upgrade the file.
- :mod:`syncd.state._journal`: the provisioner's writes (intents before a send, outcomes after).
- :mod:`syncd.state._lock`: the lock that keeps a state file to one process.

It knows nothing of sources, Hybridbox or the config: it stores what the cycle tells it.
"""

from syncd.state._journal import Failure, Intent, Journal, Outcome
from syncd.state._lock import StateLock
from syncd.state._store import LastRead, State, StoredBlock, iso, parse_iso, utcnow

__all__ = [
    "Failure",
    "Intent",
    "Journal",
    "LastRead",
    "Outcome",
    "State",
    "StateLock",
    "StoredBlock",
    "iso",
    "parse_iso",
    "utcnow",
]
