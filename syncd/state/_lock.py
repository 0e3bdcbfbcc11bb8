"""The lock that keeps a state file to one syncd process."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from syncd.errors import LockHeld
from syncd.state._store import make_private_directory, open_private, os_error


class StateLock:
    """An exclusive ``flock`` on ``<state>.lock``: one syncd per state file.

    flock (not a pid file) because the kernel releases it when the process dies, even by SIGKILL,
    so a crash never leaves a stale lock behind. The file is created 0600 (it only holds a pid,
    but sits among the state's files, which are the syncd user's alone).
    """

    def __init__(self, state_path: Path) -> None:
        self.path = state_path.with_name(state_path.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            make_private_directory(self.path.parent)
        except OSError as exc:
            raise os_error(exc, self.path.parent, "the state directory") from None
        try:
            fd, _ = open_private(self.path)
        except OSError as exc:
            raise os_error(exc, self.path, "the lock file") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise LockHeld(
                f"another syncd (pid {holder}) is using the state file {self.path.parent}",
                hint="wait for its cycle to finish; two processes must never share one state",
            ) from None
        # The pid only makes a second process's message clearer ("another syncd (pid N)"): on a
        # full disk it stays unwritten, and the state's first write says what is full.
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
