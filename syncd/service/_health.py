"""Health for monitoring: ``status.json`` beside the state, and an optional Prometheus textfile.

``status.json`` is rewritten atomically (write a temp file, then rename) after every cycle, so a
reader never sees half a file. ``last_success`` moves only when a cycle succeeds: a monitoring
check compares it with ``health.max_age`` (``syncd status`` does exactly that).
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from syncd.config import Config
from syncd.state import State, iso, parse_iso, utcnow

if TYPE_CHECKING:
    from syncd.cycle import CycleResult

STATUS_FILE = "status.json"


def status_path(config: Config) -> Path:
    return config.state.directory / STATUS_FILE


def read_status(config: Config) -> dict[str, Any]:
    try:
        data = json.loads(status_path(config).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _update(config: Config, **changes: Any) -> dict[str, Any]:
    data = read_status(config)
    data.update(changes)
    _write_atomic(status_path(config), json.dumps(data, indent=2, sort_keys=True) + "\n")
    return data


def cycle_started(config: Config, started: datetime) -> None:
    _update(config, last_start=iso(started), running=True, pid=os.getpid())


def cycle_finished(config: Config, result: CycleResult) -> None:
    data = _update(
        config,
        running=False,
        last_cycle=result.cycle_id,
        last_end=iso(utcnow()),
        last_outcome=result.outcome,
        last_success=iso(result.started_at),
        last_error=None,
        source_complete=result.report.complete,
        source_incomplete_reason=result.report.incomplete_reason,
        last_counts=result.counts,
        totals=result.totals,
    )
    write_metrics(config, data)


def cycle_failed(config: Config, state: State, started: datetime, error: Exception) -> None:
    data = _update(
        config,
        running=False,
        last_end=iso(utcnow()),
        last_outcome="error",
        last_error={"at": iso(started), "kind": type(error).__name__, "message": str(error)},
        totals=state.totals(config.sync.leaver_after_missing),
    )
    write_metrics(config, data)


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
    _write_atomic(path, "\n".join(lines) + "\n")


class StatusFiles:
    """Keeps ``status.json`` and the metrics file for every cycle it is given to as reporter
    (``CycleOptions.reporter``): ``syncd apply`` and the daemon's cycles, not ``plan``.
    """

    def __init__(self, config: Config) -> None:
        self.config = config

    def started(self, at: datetime) -> None:
        cycle_started(self.config, at)

    def finished(self, result: CycleResult) -> None:
        cycle_finished(self.config, result)

    def failed(self, state: State, at: datetime, error: Exception) -> None:
        cycle_failed(self.config, state, at, error)
