"""The lock that keeps a state file to one syncd process."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from syncd.errors import LockHeld, StateError


class StateLock:
    """An exclusive ``flock`` on ``<state>.lock``: one syncd per state file.

    flock (not a pid file) because the kernel releases it when the process dies, even by SIGKILL,
    so a crash never leaves a stale lock behind.
    """

    def __init__(self, state_path: Path) -> None:
        self.path = state_path.with_name(state_path.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StateError(
                f"cannot create the lock file {self.path}: {exc.strerror}",
                hint="check state.path and that syncd's user may write there",
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise LockHeld(
                f"another syncd (pid {holder}) is using the state file {self.path.parent}",
                hint="wait for its cycle to finish; two processes must never share one state",
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
