"""The exceptions syncd raises on purpose.

Each class names a *kind* of failure; only ``syncd.cli._commands`` turns them into exit codes.
Messages are written for a tired administrator: what went wrong, where, and what to do about it.
They must never contain a secret (token, password).
"""

from __future__ import annotations


class SyncdError(Exception):
    """Base class for failures that syncd explains itself (never shown as a traceback)."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message


class ConfigError(SyncdError):
    """The configuration is wrong: a bad key, a missing secret, a wrong URL, a rejected filter."""


class SourceDataError(SyncdError):
    """The source data cannot be used: unreadable or empty file, missing columns, bad encoding."""


class SourceUnavailable(SyncdError):
    """The source cannot be reached (LDAP server down on every URL)."""


class HybridboxUnavailable(SyncdError):
    """Hybridbox did not answer usefully within the retry budget (5xx, 429, network errors)."""


class NotAuthorized(SyncdError):
    """Hybridbox refused the token (401) or the token lacks a capability (403)."""


class GuardTripped(SyncdError):
    """A safety guard refused to apply this cycle (source too small, too many creates, ...)."""


class LockHeld(SyncdError):
    """Another syncd process holds the lock on the same state file."""


class StateError(SyncdError):
    """The state database cannot be used: it cannot be opened or written (permissions, a
    read-only file system), is damaged or no SQLite file at all, or is from a newer syncd. It
    needs an administrator, so it is not retried on its own (exit 78)."""


class DiskError(SyncdError):
    """The state database (its journal, SQLite's temporary files) could not be written because
    the file system is full, over a quota or a file-size limit, or reports an I/O error. What
    the failed step was writing is not recorded, so nothing unconfirmed is; once there is space
    again, the next cycle goes on (exit 75)."""
