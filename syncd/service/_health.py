"""Health for monitoring: ``status.json`` beside the state, and an optional Prometheus textfile.

``status.json`` is rewritten atomically (write a temp file, then rename) after every cycle, so a
reader never sees half a file. ``last_success`` moves only when a cycle runs to its end (outcome
``ok`` or ``partial``; not ``stopped``, not an error): a monitoring check compares it with
``health.max_age`` (``syncd status`` does exactly that). The daemon adds ``next_cycle``, the
start of its next cycle, and clears it when it stops; without a daemon there is none.

``status.json`` is the syncd user's alone (0600, like the state beside it: ``syncd status`` runs
as that user); the metrics file is 0644, for node_exporter. Whatever the umask. A file that
cannot be written is said on stderr and in the log, and never fails the cycle it reports on; on
a full disk ``status.json`` is rewritten in place, so that it does not keep saying
``running: true``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from syncd.config import Config
from syncd.errors import ConfigError, SyncdError
from syncd.logs import give_to_directory_owner, log_to_files
from syncd.state import State, iso, parse_iso, utcnow

if TYPE_CHECKING:
    from syncd.cycle import CycleResult

STATUS_FILE = "status.json"
# status.json names the last error, which may name a person: the syncd user's alone, like the
# state beside it (`syncd status` runs as that user: `sudo -u syncd syncd status`).
STATUS_FILE_MODE = 0o600
# node_exporter runs as its own user, in no group of syncd's, and must read the metrics file;
# it holds only counts, timestamps and 0/1 flags, nothing about a person.
METRICS_FILE_MODE = 0o644
# errno values that mean "no room": a full file system, a quota, a file-size limit.
_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
# One read-change-write at a time: the daemon writes from its cycle thread and its main thread.
_WRITING = threading.Lock()


def status_path(config: Config) -> Path:
    return config.state.directory / STATUS_FILE


def read_status(config: Config) -> dict[str, Any]:
    try:
        data = json.loads(status_path(config).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_atomic(path: Path, text: str, mode: int) -> None:
    """Write ``path`` (``mode``, whatever the umask) through a temp file and a rename, so that a
    reader never sees half a file. Raises OSError."""
    data = text.encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            os.fchmod(handle.fileno(), mode)
            give_to_directory_owner(handle.fileno(), path.parent)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if exc.errno not in _NO_SPACE or not path.is_file():
            raise
        # A full disk has no room for a second copy, but the file's own blocks hold a new
        # version of about its size: better a rewrite in place (a reader may catch it half
        # written, for a moment) than a status.json that says "running" until the disk is freed.
        _rewrite_in_place(path, data, mode)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _rewrite_in_place(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.fchmod(fd, mode)
        written = 0
        while written < len(data):
            written += os.pwrite(fd, data[written:], written)
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


@contextlib.contextmanager
def _reported(path: Path, consequence: str) -> Iterator[None]:
    """Say on stderr and in the log that ``path`` could not be written, instead of raising: the
    cycle it reports on is done (or failed for its own reason) either way."""
    try:
        yield
    except OSError as exc:
        reason = f"cannot write {path}: {exc.strerror or exc}; {consequence}"
        print(f"syncd: {reason}", file=sys.stderr, flush=True)
        log_to_files("health.write_failed", logging.ERROR, path=path, reason=reason)


def _update(config: Config, **changes: Any) -> dict[str, Any]:
    with _WRITING:
        data = read_status(config)
        data.update(changes)
        path = status_path(config)
        with _reported(
            path,
            "it keeps what it said before (maybe running: true) until a cycle "
            "can write it; free space or fix the permissions there",
        ):
            _write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n", STATUS_FILE_MODE)
    return data


def cycle_started(config: Config, started: datetime) -> None:
    _update(config, last_start=iso(started), running=True, pid=os.getpid())


def cycle_finished(config: Config, result: CycleResult) -> None:
    changes: dict[str, Any] = {
        "running": False,
        "last_cycle": result.cycle_id,
        "last_end": iso(utcnow()),
        "last_outcome": result.outcome,
        "source_complete": result.report.complete,
        "source_incomplete_reason": result.report.incomplete_reason,
        # full or delta (LDAP with source.delta); and when the next full read is due (null for
        # a source always read in full).
        "source_scan": result.report.scan,
        "next_full_read": iso(result.next_full_read) if result.next_full_read else None,
        "last_counts": result.counts,
        "totals": result.totals,
    }
    if result.ran_to_end:
        # A stopped cycle left people due for the next one: no success, and no error either
        # (an earlier error stays the last one).
        changes.update(last_success=iso(result.started_at), last_error=None)
    write_metrics(config, _update(config, **changes))


def next_cycle_changed(config: Config, when: datetime | None) -> None:
    """Record the daemon's next cycle (ISO 8601 with the schedule zone's offset), or that there
    is none (the daemon stops)."""
    _update(config, next_cycle=when.isoformat(timespec="seconds") if when else None)


def cycle_failed(config: Config, state: State, started: datetime, error: Exception) -> None:
    data = _update(
        config,
        running=False,
        last_end=iso(utcnow()),
        last_outcome="error",
        last_error={"at": iso(started), "kind": type(error).__name__, "message": str(error)},
        **_totals(config, state),
    )
    write_metrics(config, data)


def _totals(config: Config, state: State) -> dict[str, Any]:
    """``totals`` for status.json, or nothing (the last ones stay) when the state that failed
    the cycle cannot be read either (damaged): the failure must be recorded all the same."""
    try:
        return {"totals": state.totals(config.sync.leaver_after_missing)}
    except SyncdError:
        return {}


def write_metrics(config: Config, data: dict[str, Any]) -> None:
    """Prometheus text exposition format for node_exporter's textfile collector."""
    path = config.health.metrics_file
    if path is None:
        return
    lines = []

    def metric(name: str, value: float, help_text: str) -> None:
        lines.extend(
            [
                f"# HELP syncd_{name} {help_text}",
                f"# TYPE syncd_{name} gauge",
                f"syncd_{name} {value:.15g}",
            ]
        )

    for key in ("last_success", "last_start", "last_end"):
        if data.get(key):
            stamp = parse_iso(data[key]).timestamp()
            metric(f"{key}_timestamp_seconds", stamp, f"Unix time of the {key.replace('_', ' ')}")
    metric(
        "last_cycle_ok",
        1 if data.get("last_outcome") in ("ok", "partial") else 0,
        "1 when the last cycle succeeded",
    )
    metric(
        "source_complete",
        1 if data.get("source_complete") else 0,
        "1 when the last read of the source was complete",
    )
    for key, value in (data.get("totals") or {}).items():
        metric(key, value, f"current number of {key}")
    with _reported(path, "node_exporter keeps the figures of an earlier cycle"):
        _write_atomic(path, "\n".join(lines) + "\n", METRICS_FILE_MODE)


class StatusFiles:
    """Keeps ``status.json`` and the metrics file for every cycle it is given to as reporter
    (``CycleOptions.reporter``): ``syncd apply`` and the daemon's cycles, not ``plan``.
    """

    def __init__(self, config: Config) -> None:
        metrics = config.health.metrics_file
        if metrics is not None and metrics.is_dir():
            # Found before the cycle, not after it did its work.
            raise ConfigError(
                f"at 'health.metrics_file': {metrics} is a directory",
                hint=f"give a file in it, such as {metrics / 'syncd.prom'}: node_exporter's "
                "textfile collector reads *.prom files",
            )
        self.config = config

    def started(self, at: datetime) -> None:
        cycle_started(self.config, at)

    def finished(self, result: CycleResult) -> None:
        cycle_finished(self.config, result)

    def failed(self, state: State, at: datetime, error: Exception) -> None:
        cycle_failed(self.config, state, at, error)
