"""A small tmpfs that a test can really fill up, and a way to fill it (root only)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHUNK = 256 * 1024


@contextmanager
def small_disk(mount_point: Path, size: str) -> Iterator[Path]:
    """Mount a tmpfs of ``size`` (``"16m"``) at ``mount_point``; skip the test when the mount
    is not allowed (not root, no mount namespace)."""
    mount_point.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root): {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(disk: Path, leave: int = 0) -> Path:
    """Fill ``disk`` until ``leave`` bytes are free, with one file; returns it (delete to free)."""
    filler = disk / "filler"
    with filler.open("wb") as out:
        while True:
            info = os.statvfs(disk)
            chunk = min(info.f_bavail * info.f_frsize - leave, CHUNK)
            if chunk <= 0:
                break
            try:
                out.write(b"\0" * chunk)
                out.flush()
            except OSError:
                break
    return filler
