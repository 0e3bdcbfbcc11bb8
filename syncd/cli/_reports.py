"""The ``syncd`` commands that only read the state and print it: status, failures, leavers,
addresses, and the table/CSV/JSON output they share.

They change nothing (the state is opened read-only, no lock is taken), so they live apart from the
commands in :mod:`syncd.cli._commands` that read a source, talk to Hybridbox or write the state.
Their rows come from the report methods of :class:`syncd.state.State` (SQL stays there), as dicts
read through sqlite-utils. The parser and the one place where exceptions become exit codes stay
in :mod:`syncd.cli._commands` (the codes are in :mod:`syncd.exit_codes`).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from syncd.config import Config
from syncd.exit_codes import EX_OK, EX_PARTIAL, EX_STALE


def _print_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    if not rows:
        return

    def cell(row: dict[str, Any], column: str) -> str:
        value = row.get(column)
        return "" if value is None else str(value)

    widths = {c: max(len(c), *(len(cell(r, c)) for r in rows)) for c in columns}
    print("  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip())
    for row in rows:
        print("  ".join(cell(row, c).ljust(widths[c]) for c in columns).rstrip())


def emit_rows(rows: list[dict[str, Any]], columns: Sequence[str], fmt: str) -> None:
    """Print rows as ``--format`` asks: an aligned table (the default), JSON or CSV."""
    if fmt == "json":
        print(json.dumps(rows, indent=2, ensure_ascii=False, default=str))
    elif fmt == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    else:
        _print_table(rows, columns)


# ------------------------------------------------------------------------------------ commands


def _age(stamp: str | None, now: datetime) -> str:
    from syncd.state import parse_iso

    if not stamp:
        return "never"
    seconds = int((now - parse_iso(stamp)).total_seconds())
    if seconds < 120:
        return f"{seconds}s ago"
    if seconds < 7200:
        return f"{seconds // 60}m ago"
    return f"{seconds // 3600}h ago"


def cmd_status(config: Config, args: argparse.Namespace) -> int:
    from syncd import service
    from syncd.state import State, parse_iso

    status = service.read_status(config)
    now = datetime.now(UTC)
    path = config.state.path
    runs: list[dict[str, Any]] = []
    totals: dict[str, Any] = dict(status.get("totals") or {})
    if path.exists():
        state = State(path, read_only=True)
        try:
            runs = state.recent_runs(args.runs)
            totals.update(state.totals(config.sync.leaver_after_missing))
        finally:
            state.close()
    last_success = status.get("last_success")
    max_age = config.health.max_age
    stale = last_success is None or now - parse_iso(last_success) > max_age
    if args.format == "json":
        print(
            json.dumps(
                {**status, "totals": totals, "stale": stale, "runs": runs}, indent=2, default=str
            )
        )
    else:
        print(f"state:        {path}")
        print(
            f"last start:   {status.get('last_start') or 'never'}"
            f" ({_age(status.get('last_start'), now)})"
        )
        print(
            f"last success: {last_success or 'never'} ({_age(last_success, now)}; "
            f"max age {max_age})"
        )
        error = status.get("last_error")
        if error:
            print(f"last error:   {error.get('at')} {error.get('kind')}: {error.get('message')}")
        complete = status.get("source_complete")
        if complete is not None:
            print(
                "source:       "
                + (
                    "complete"
                    if complete
                    else f"INCOMPLETE ({status.get('source_incomplete_reason')})"
                )
            )
        print("totals:       " + " ".join(f"{k}={v}" for k, v in totals.items()))
        if runs:
            print()
            _print_table(
                runs,
                (
                    "id",
                    "started_at",
                    "outcome",
                    "complete",
                    "read",
                    "rejected",
                    "created",
                    "adopted",
                    "failed",
                    "pending",
                    "quarantined",
                ),
            )
    return EX_STALE if stale else EX_OK


def cmd_failures(config: Config, args: argparse.Namespace) -> int:
    from syncd.state import State

    if not config.state.path.exists():
        print("no state yet: nothing has failed")
        return EX_OK
    state = State(config.state.path, read_only=True)
    try:
        rows = state.failures()
    finally:
        state.close()
    for row in rows:
        row["name"] = (
            f"{row.get('person_first') or row.get('first_name') or ''} "
            f"{row.get('person_last') or row.get('last_name') or ''}".strip()
        )
    if not rows and args.format == "table":
        print("no failures")
        return EX_OK
    emit_rows(
        rows,
        (
            "anchor",
            "name",
            "state",
            "last_code",
            "attempts",
            "next_attempt_at",
            "local_part",
            "last_message",
        ),
        args.format,
    )
    return EX_OK


def cmd_leavers(config: Config, args: argparse.Namespace) -> int:
    from syncd.state import State

    if not config.state.path.exists():
        rows: list[dict[str, Any]] = []
    else:
        state = State(config.state.path, read_only=True)
        try:
            rows = state.leavers(config.sync.leaver_after_missing)
        finally:
            state.close()
    for row in rows:
        row["address"] = f"{row['local_part']}@{row['domain']}"
        row["reason"] = "disabled" if row["disabled"] else f"missing {row['missing_count']}x"
    if not rows and args.format == "table":
        print("no leavers")
        return EX_OK
    emit_rows(
        rows,
        ("anchor", "first_name", "last_name", "address", "reason", "last_seen", "mailbox_id"),
        args.format,
    )
    return EX_OK


def cmd_addresses(config: Config, args: argparse.Namespace) -> int:
    from syncd.state import State

    if not config.state.path.exists():
        print(f"{args.address}: never issued")
        return EX_PARTIAL
    state = State(config.state.path, read_only=True)
    try:
        rows = state.address_history(args.address)
    finally:
        state.close()
    if not rows:
        print(f"{args.address}: never issued or seen by syncd")
        return EX_PARTIAL
    emit_rows(
        rows,
        (
            "address",
            "anchor",
            "first_name",
            "last_name",
            "status",
            "issued_at",
            "released_at",
            "reserved_until",
        ),
        args.format,
    )
    return EX_OK
