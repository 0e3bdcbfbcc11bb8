"""The local state store: one SQLite file that remembers what syncd saw and did.

- :mod:`syncd.state._store`: :class:`State`, the tables and every query the cycle makes.
- :mod:`syncd.state._schema`: the numbered migrations that build and upgrade the file.
- :mod:`syncd.state._journal`: the provisioner's writes (intents before a send, outcomes after).
- :mod:`syncd.state._lock`: the lock that keeps a state file to one process.

It knows nothing of sources, Hybridbox or the config: it stores what the cycle tells it.

sqlite-utils or plain sqlite3, on the one connection:

- sqlite-utils (``State.db``) builds and migrates the schema (``create_table``, ``add_column``,
  ``create_index``) and reads the reports (``syncd status`` runs, ``failures``, ``leavers``,
  ``addresses``). It cannot say WITHOUT ROWID, a UNIQUE column or a partial index: those
  statements stay SQL in ``_schema``.
- Plain sqlite3 (``State.conn``) for everything a cycle runs per person or per batch: staging
  and blocks, the candidate and address queries, the intent journal, the totals. Their SQL was
  tuned against the 100k-people benchmark (bench/): ``executemany``, ``json_each``, tuples
  rather than dicts; a layer in between would only cost there.
- sqlite-utils is imported on first use of ``State.db`` only: it costs ~30 ms on top of syncd's
  imports, and a cycle on a current state (no migration) never needs it.
"""

from syncd.state._journal import SENT_UNANSWERED, Failure, Intent, Journal, Outcome
from syncd.state._lock import StateLock
from syncd.state._store import LastRead, State, StoredBlock, iso, parse_iso, utcnow

__all__ = [
    "SENT_UNANSWERED",
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
