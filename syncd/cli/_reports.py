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
from typing import TYPE_CHECKING, Any, Protocol

from syncd.config import Config
from syncd.exit_codes import EX_OK, EX_PARTIAL, EX_STALE
from syncd.logs import json_visible, visible

if TYPE_CHECKING:
    from syncd.cycle import CycleResult, Plan


def _text(value: Any) -> str:
    """A cell as text: nothing for None, and true/false as JSON writes them; what a terminal
    would act on or hide shown as an escape (see :func:`syncd.logs.visible`)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return visible(str(value))


def _print_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    if not rows:
        return
    # Each cell made text once (a plan of 100k creates is 600k cells), then measured and printed.
    cells = [[_text(row.get(column)) for column in columns] for row in rows]
    widths = [
        max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)
    ]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += [
        "  ".join(t.ljust(w) for t, w in zip(line, widths, strict=True)).rstrip() for line in cells
    ]
    print("\n".join(lines))


def emit_rows(rows: list[dict[str, Any]], columns: Sequence[str], fmt: str) -> None:
    """Print rows as ``--format`` asks: an aligned table (the default), JSON or CSV."""
    if fmt == "json":
        print(json_visible(json.dumps(rows, indent=2, ensure_ascii=False, default=str)))
    elif fmt == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows({column: _text(row.get(column)) for column in columns} for row in rows)
    else:
        _print_table(rows, columns)


# --------------------------------------------------------------------------------- plan rows

# The columns of `syncd plan`, in every format. ``address`` is the full address; ``provisional``
# is true for a create's or retry's (Hybridbox may still report it taken, and apply then takes
# the next free candidate), false for an address syncd already has on record, empty without one.
PLAN_COLUMNS = ("action", "anchor", "name", "address", "provisional", "locator", "detail")
# The table shows the provisional flag as a mark on the address, explained below the table.
PLAN_TABLE_COLUMNS = ("action", "anchor", "name", "address", "locator", "detail")
PROVISIONAL_MARK = "*"


def plan_rows(the_plan: Plan, domain: str) -> list[dict[str, Any]]:
    """One row per person ``syncd plan`` has something to say about: what apply would do
    (create, retry, rename, scheduled), then what the read changes about people (missing,
    leaver, returned, and name_changed where the mailbox keeps the old name)."""
    rows = []
    for action in the_plan.creates + the_plan.retries:
        person, known = action.person, action.known
        local_part = the_plan.addresses.get(person.anchor)
        attempts = known.attempts if known else 0
        detail = f"after {attempts} failed attempt(s)" if attempts else ""
        in_domain = action.domain or domain
        if local_part is None:
            detail = (
                f"no free address in {in_domain}: every candidate is taken (apply would "
                "quarantine them)"
            )
        address = f"{local_part}@{in_domain}" if local_part else None
        row = _plan_row(action.kind.value, person, address, person.origin, detail)
        row["provisional"] = True if local_part else None
        rows.append(row)
    for action in the_plan.renames:
        person, known = action.person, action.known
        old = f"{known.mailbox_first} {known.mailbox_last}" if known else ""
        address = (
            f"{known.local_part}@{known.domain or domain}" if known and known.local_part else None
        )
        rows.append(_plan_row("rename", person, address, person.origin, f"was {old}"))
    for action in the_plan.scheduled:
        person = action.person
        detail = f"due {action.due}, in {action.domain or domain}"
        rows.append(_plan_row("scheduled", person, None, person.origin, detail))
    for transition in the_plan.lifecycle:
        said = _transition_detail(transition)
        if said is not None:
            change = str(transition.change)
            rows.append(_plan_row(change, transition, transition.address, transition.locator, said))
    return rows


class _Named(Protocol):
    """Whom a plan row is about: a person, or a lifecycle transition (both say so)."""

    @property
    def anchor(self) -> str: ...
    @property
    def first_name(self) -> str: ...
    @property
    def last_name(self) -> str: ...


class _Lifecycle(_Named, Protocol):
    """A lifecycle transition as a row shows it (see syncd.cycle's Plan.lifecycle)."""

    @property
    def change(self) -> str: ...  # a StrEnum: missing, leaver, returned, name_changed
    @property
    def reason(self) -> str | None: ...
    @property
    def missing(self) -> int: ...
    @property
    def disabled(self) -> bool: ...
    @property
    def domain(self) -> str | None: ...
    @property
    def mailbox_domain(self) -> str | None: ...
    @property
    def applied(self) -> bool: ...
    @property
    def old_first(self) -> str | None: ...
    @property
    def old_last(self) -> str | None: ...


def _plan_row(
    action: str, who: _Named, address: str | None, locator: str | None, detail: str
) -> dict[str, Any]:
    return {
        "action": action,
        "anchor": who.anchor,
        "name": f"{who.first_name} {who.last_name}",
        "address": address,
        # An address syncd has on record is not provisional (creates and retries say so).
        "provisional": False if address else None,
        "locator": locator or None,
        "detail": detail,
    }


def _transition_detail(transition: _Lifecycle) -> str | None:
    """What a lifecycle row says; None for a name change that a rename (or the mailbox still
    to be created) carries anyway: the row of that action shows it."""
    change, missing = str(transition.change), transition.missing
    reads = f"{missing} complete read{'s' if missing != 1 else ''}"
    if change == "missing":
        return f"not in this complete read: missing from {reads}"
    if change == "leaver":
        why = (
            "disabled in the source" if transition.reason == "disabled" else f"missing from {reads}"
        )
        return f"{why}: now a leaver (`syncd leavers`); the mailbox stays"
    if change == "returned":
        back = (
            f"back after missing from {reads}"
            if transition.reason == "missing"
            else "enabled again"
        )
        return back + (", but disabled" if transition.disabled else "")
    if change == "domain_changed":
        return (
            f"now routed to {transition.domain}: keeps the mailbox in "
            f"{transition.mailbox_domain} (`syncd moves`)"
        )
    if transition.applied:
        return None
    return (
        f"was {transition.old_first} {transition.old_last}; the mailbox keeps the old name "
        "(sync.update_names is off)"
    )


def _plan_table_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows as the table shows them: a provisional address marked, the flag folded in."""
    return [
        {**row, "address": row["address"] + PROVISIONAL_MARK} if row["provisional"] else row
        for row in rows
    ]


# The counts of the plan's summary, in this order (see syncd.cycle._engine's _plan_counts).
PLAN_COUNTS = (
    "read", "rejected", "creates", "new", "retries", "renames", "scheduled", "waiting",
    "quarantined", "unresolved", "no_address", "missing", "new_leavers", "returned",
    "name_changes",
)  # fmt: skip


def print_plan(result: CycleResult, domain: str, fmt: str, *, summary: bool) -> None:
    """``syncd plan``'s output: the rows (unless ``summary``), and the counts and the guards'
    verdict. CSV and JSON keep stdout to the data; the refusal goes to stderr there."""
    counts = {key: result.counts.get(key, 0) for key in PLAN_COUNTS}
    complete, scan = result.report.complete, result.report.scan
    if summary and fmt == "json":
        data = {"complete": complete, "scan": scan, **counts, "refused": result.message or None}
        print(json_visible(json.dumps(data, indent=2, ensure_ascii=False)))
    elif summary and fmt == "csv":
        row = {"complete": complete, "scan": scan, **counts}
        emit_rows([row], ("complete", "scan", *PLAN_COUNTS), "csv")
    elif not summary:
        rows = plan_rows(result.plan, domain)
        if fmt == "table":
            emit_rows(_plan_table_rows(rows), PLAN_TABLE_COLUMNS, fmt)
        else:
            emit_rows(rows, PLAN_COLUMNS, fmt)
        if fmt == "table" and any(row["provisional"] for row in rows):
            print(
                f"{PROVISIONAL_MARK} provisional: free as far as syncd knows; if Hybridbox "
                "reports one taken, apply takes the next free one"
            )
    if fmt != "table":
        if result.message:
            print(f"syncd: apply would refuse: {result.message}", file=sys.stderr)
        return
    c = counts
    print(
        f"plan: read={c['read']} rejected={c['rejected']} complete={str(complete).lower()} "
        f"creates={c['creates']} (new={c['new']}) retries={c['retries']} "
        f"renames={c['renames']} scheduled={c['scheduled']} waiting={c['waiting']} "
        f"quarantined={c['quarantined']} unresolved={c['unresolved']} "
        f"no_address={c['no_address']} missing={c['missing']} new_leavers={c['new_leavers']} "
        f"returned={c['returned']} name_changes={c['name_changes']} scan={scan}"
    )
    if scan == "delta":
        print(
            "note: a delta read (only the entries changed since the last read) counts nobody "
            "missing; `syncd plan --full` reads everything"
        )
    if result.message:
        print(f"guards: apply would refuse: {result.message}")
    if result.counts.get("unchecked_first_run"):
        print(
            "note: the state has no mailbox yet, so apply first checks that the Hybridbox domain "
            "has none either (if it has, run `syncd adopt` first); plan does not contact Hybridbox"
        )
    print("nothing was changed (plan is a dry run; `syncd apply` applies it)")


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


# A next cycle this long past while no cycle runs: the daemon that announced it is gone.
NEXT_CYCLE_OVERDUE_S = 120
_OUTCOME_NOTES = {
    "partial": " (some people failed; see `syncd failures`)",
    "stopped": " (a stop cut the cycle short; the people it did not reach are for the next one)",
}


def _span(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    return f"{seconds // 60}m" if seconds < 7200 else f"{seconds // 3600}h{seconds % 3600 // 60}m"


def _cycle_lines(status: dict[str, Any], now: datetime) -> list[str]:
    """``syncd status``'s lines about the last outcome and the next cycle (the daemon's)."""
    lines = []
    outcome = status.get("last_outcome")
    if outcome:
        lines.append(f"last outcome: {outcome}{_OUTCOME_NOTES.get(outcome, '')}")
    when = status.get("next_cycle")
    if not when:
        lines.append(
            "next cycle:   none from syncd: no `syncd run` daemon is running (under the timer: "
            "systemctl list-timers syncd.timer)"
        )
        return lines
    try:
        late = (now - datetime.fromisoformat(when)).total_seconds()
    except (TypeError, ValueError):
        return [*lines, f"next cycle:   {when}"]
    if late <= 0:
        note = f"in {_span(-late)}"
    elif status.get("running"):
        note = "due; a cycle is still running"
    elif late > NEXT_CYCLE_OVERDUE_S:
        note = f"overdue by {_span(late)}: is the `syncd run` daemon still running?"
    else:
        note = "due now"
    return [*lines, f"next cycle:   {when} ({note})"]


# The columns of the recent runs under `syncd status`.
STATUS_RUN_COLUMNS = (
    "id", "started_at", "outcome", "complete", "scan", "read", "rejected", "created", "adopted",
    "failed", "pending", "quarantined",
)  # fmt: skip


def _full_read_note(due: Any, now: datetime) -> str:
    """When the next full read (the only kind that finds leavers) comes, in words."""
    from syncd.state import parse_iso

    try:
        late = (now - parse_iso(str(due))).total_seconds()
    except ValueError:
        return ""
    when = f"in {_span(-late)}" if late < 0 else "in the next cycle"
    return f" ({when}; until then cycles read only the changes, which count nobody missing)"


def cmd_status(config: Config, args: argparse.Namespace) -> int:
    from syncd import service
    from syncd.state import State, parse_iso

    status = service.read_status(config)
    now = datetime.now(UTC)
    path = config.state.path
    runs: list[dict[str, Any]] = []
    moves: list[dict[str, Any]] = []
    totals: dict[str, Any] = dict(status.get("totals") or {})
    if path.exists():
        state = State(path, read_only=True)
        try:
            runs = state.recent_runs(args.runs)
            totals.update(state.totals(config.sync.leaver_after_missing))
            moves = _with_addresses(state.moves())
        finally:
            state.close()
    last_success = status.get("last_success")
    stale = last_success is None or now - parse_iso(last_success) > config.health.max_age
    if args.format == "json":
        # ASCII with escapes (json.dumps' default), and DEL escaped too (json_visible).
        text = json.dumps(
            # next_cycle: null when no daemon announced one (a timer, or no syncd run).
            {
                **status,
                "next_cycle": status.get("next_cycle"),
                "totals": totals,
                "stale": stale,
                "runs": runs,
                # People whose fields route them to another domain than their mailbox's.
                "moves": moves,
            },
            indent=2,
            default=str,
        )
        print(json_visible(text))
    else:
        for line in _status_lines(config, status, totals, now):
            print(line)
        if moves:
            print(
                f"moves:        {len(moves)} person(s) whose fields now point to another domain "
                "keep the mailbox they have (Hybridbox cannot move one):"
            )
            for row in moves:
                print(
                    visible(
                        f"  {row['anchor']}  {row['first_name']} {row['last_name']}  "
                        f"{row['address']} -> {row['new_domain']}"
                    )
                )
        if runs:
            print()
            _print_table(runs, STATUS_RUN_COLUMNS)
    return EX_STALE if stale else EX_OK


def _status_lines(
    config: Config, status: dict[str, Any], totals: dict[str, Any], now: datetime
) -> list[str]:
    """The text of `syncd status` above the table of recent runs."""
    last_start, last_success = status.get("last_start"), status.get("last_success")
    lines = [
        f"state:        {config.state.path}",
        f"last start:   {last_start or 'never'} ({_age(last_start, now)})",
        f"last success: {last_success or 'never'} ({_age(last_success, now)}; "
        f"max age {config.health.max_age})",
        *_cycle_lines(status, now),
    ]
    error = status.get("last_error")
    if error:
        # A message may quote the source or Hybridbox: shown, not acted on by the terminal.
        message = visible(f"{error.get('at')} {error.get('kind')}: {error.get('message')}")
        lines.append(f"last error:   {message}")
    complete = status.get("source_complete")
    if complete is not None:
        reason = status.get("source_incomplete_reason")
        source = "complete" if complete else visible(f"INCOMPLETE ({reason})")
        scan = status.get("source_scan")
        lines.append(f"source:       {source}" + (f", scan={scan}" if scan else ""))
    due = status.get("next_full_read")
    if due:
        lines.append(f"full read:    next {visible(str(due))}{_full_read_note(due, now)}")
    lines.append("totals:       " + " ".join(f"{k}={v}" for k, v in totals.items()))
    return lines


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
            "domain",
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


def _with_addresses(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mailbox rows (``local_part``, ``mailbox_domain``) with their full ``address``."""
    for row in rows:
        row["address"] = f"{row['local_part']}@{row['mailbox_domain']}"
    return rows


# The columns of `syncd moves`.
MOVES_COLUMNS = (
    "anchor", "first_name", "last_name", "address", "mailbox_domain", "new_domain", "last_seen",
    "mailbox_id",
)  # fmt: skip


def cmd_moves(config: Config, args: argparse.Namespace) -> int:
    """The people whose fields route them to another domain than their mailbox's."""
    from syncd.state import State

    rows: list[dict[str, Any]] = []
    if config.state.path.exists():
        state = State(config.state.path, read_only=True)
        try:
            rows = _with_addresses(state.moves())
        finally:
            state.close()
    if not rows and args.format == "table":
        print("no moves: every mailbox is in the domain its person is routed to")
        return EX_OK
    emit_rows(rows, MOVES_COLUMNS, args.format)
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
