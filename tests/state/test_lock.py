"""The state lock: one syncd per state file."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from syncd.errors import LockHeld
from syncd.state import StateLock


def _try_lock(path: str, queue: multiprocessing.Queue[str]) -> None:
    try:
        StateLock(Path(path)).acquire()
        queue.put("acquired")
    except LockHeld as exc:
        queue.put(str(exc))


def test_lock_excludes_a_second_process_and_is_released(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    lock = StateLock(path)
    lock.acquire()
    queue: multiprocessing.Queue[str] = multiprocessing.Queue()
    other = multiprocessing.Process(target=_try_lock, args=(str(path), queue))
    other.start()
    other.join(10)
    message = queue.get(timeout=5)
    assert "another syncd" in message
    lock.release()
    other = multiprocessing.Process(target=_try_lock, args=(str(path), queue))
    other.start()
    other.join(10)
    assert queue.get(timeout=5) == "acquired"
