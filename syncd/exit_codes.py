"""What each exit code of ``syncd`` means, and which kind of error gives which.

Its own module so that every command module (:mod:`syncd.cli._commands`, :mod:`syncd.cli._reports`)
can return these codes without importing the CLI. Only :mod:`syncd.cli._commands` turns exceptions
into them.

Exit codes (sysexits style; monitoring and systemd depend on them):

====  ==========================================================================
 0    all good
 1    the cycle ran but some people failed (see ``syncd failures``)
 2    ``syncd status``: the last successful cycle is older than health.max_age
 64   wrong command-line usage
 65   bad input data (unreadable/empty HR export, missing columns, bad encoding)
 69   a service is unavailable (LDAP server or Hybridbox unreachable)
 70   internal error (a bug: please report it with the log)
 75   temporary failure: a safety guard refused the cycle, another syncd holds the lock, or
      the disk under the state is full (or failing)
 77   not authorized (Hybridbox rejected the token, or it lacks mailbox.create)
 78   configuration error (the message names the key), or a state database that cannot be
      used (damaged, not SQLite, not writable): both need an administrator, not a retry
====  ==========================================================================
"""

from __future__ import annotations

from syncd.errors import (
    ConfigError,
    DiskError,
    GuardTripped,
    HybridboxUnavailable,
    LockHeld,
    NotAuthorized,
    SourceDataError,
    SourceUnavailable,
    StateError,
    SyncdError,
)

EX_OK = 0
EX_PARTIAL = 1
EX_STALE = 2
EX_USAGE = 64
EX_DATAERR = 65
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_TEMPFAIL = 75
EX_NOPERM = 77
EX_CONFIG = 78

EXIT_CODES: list[tuple[type[SyncdError], int]] = [
    (ConfigError, EX_CONFIG),
    (StateError, EX_CONFIG),
    (SourceDataError, EX_DATAERR),
    (SourceUnavailable, EX_UNAVAILABLE),
    (HybridboxUnavailable, EX_UNAVAILABLE),
    (NotAuthorized, EX_NOPERM),
    (GuardTripped, EX_TEMPFAIL),
    (LockHeld, EX_TEMPFAIL),
    (DiskError, EX_TEMPFAIL),
]


def exit_code_for(error: SyncdError) -> int:
    for kind, code in EXIT_CODES:
        if isinstance(error, kind):
            return code
    return EX_SOFTWARE
