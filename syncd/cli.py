"""The ``syncd`` command. The only place where exceptions become exit codes.

Exit codes (sysexits style; monitoring and systemd depend on them):

====  ==========================================================================
 0    all good
 1    the cycle ran but some people failed (see ``syncd failures``)
 2    ``syncd status``: the last successful cycle is older than health.max_age
 64   wrong command-line usage
 65   bad input data (unreadable/empty HR export, missing columns, bad encoding)
 69   a service is unavailable (LDAP server or Hybridbox unreachable)
 70   internal error (a bug: please report it with the log)
 75   temporary failure: a safety guard refused the cycle, or another syncd holds the lock
 77   not authorized (Hybridbox rejected the token, or it lacks mailbox.create)
 78   configuration error (the message names the key)
====  ==========================================================================
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from syncd import __version__
from syncd.config import DEFAULT_CONFIG_PATH, Config, LoggingConfig, load_config
from syncd.errors import (
    ConfigError,
    GuardTripped,
    HybridboxUnavailable,
    LockHeld,
    NotAuthorized,
    SourceDataError,
    SourceUnavailable,
    StateError,
    SyncdError,
)
from syncd.logs import log_to_files, setup_logging

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
]


def exit_code_for(error: SyncdError) -> int:
    for kind, code in EXIT_CODES:
        if isinstance(error, kind):
            return code
    return EX_SOFTWARE


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


def _emit(rows: list[dict[str, Any]], columns: Sequence[str], fmt: str) -> None:
    if fmt == "json":
        print(json.dumps(rows, indent=2, ensure_ascii=False, default=str))
    elif fmt == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    else:
        _print_table(rows, columns)


# ------------------------------------------------------------------------------------ commands


def cmd_validate(config: Config, args: argparse.Namespace) -> int:
    from syncd.source import open_source

    print(f"config {config.origin}: valid")
    source = open_source(config)
    print(f"source: {source.describe()}")
    people = source.sample(5)
    print(f"source: read {len(people)} sample record(s):")
    for person in people:
        state = " (disabled)" if person.disabled else ""
        start = f" start={person.start_date}" if person.start_date else ""
        print(f"  {person.anchor}  {person.first_name} {person.last_name}{start}{state}")
    if args.offline:
        print("hybridbox: not checked (--offline)")
        return EX_OK
    from syncd.hybridbox import HybridboxClient

    settings = config.hybridbox
    with HybridboxClient(settings, settings.token()) as client:
        client.check_account()
        domain = client.check_domain(settings.domain)
    ready = domain.get("outbound_routing_ready")
    print(
        f"hybridbox: {settings.url} account {settings.account_id}: token accepted; domain "
        f"{domain.get('name', settings.domain)} status={domain.get('status')} "
        f"outbound_routing_ready={ready}"
    )
    return EX_OK


def _cycle_options(args: argparse.Namespace, mode: str) -> Any:
    from syncd.engine import CycleOptions

    return CycleOptions(mode=mode, allow_creates=getattr(args, "allow_creates", None))  # type: ignore[arg-type]


def cmd_plan(config: Config, args: argparse.Namespace) -> int:
    from syncd.engine import run_cycle

    result = run_cycle(config, _cycle_options(args, "plan"))
    the_plan, domain = result.plan, config.hybridbox.domain
    rows: list[dict[str, Any]] = []
    for action in the_plan.creates + the_plan.retries:
        rows.append(
            {
                "action": action.kind.value,
                "anchor": action.person.anchor,
                "name": f"{action.person.first_name} {action.person.last_name}",
                "detail": action.known.local_part + "@" + domain
                if action.known and action.known.local_part
                else "",
            }
        )
    for action in the_plan.renames:
        old = f"{action.known.mailbox_first} {action.known.mailbox_last}" if action.known else ""
        rows.append(
            {
                "action": "rename",
                "anchor": action.person.anchor,
                "name": f"{action.person.first_name} {action.person.last_name}",
                "detail": f"was {old}",
            }
        )
    for action in the_plan.scheduled:
        rows.append(
            {
                "action": "scheduled",
                "anchor": action.person.anchor,
                "name": f"{action.person.first_name} {action.person.last_name}",
                "detail": f"due {action.due}",
            }
        )
    if not args.summary:
        _emit(rows, ("action", "anchor", "name", "detail"), args.format)
    c = result.counts
    if args.format == "table":
        print(
            f"plan: read={c['read']} rejected={c['rejected']} "
            f"complete={str(result.report.complete).lower()} creates={c['creates']} "
            f"(new={c['new']}) retries={c['retries']} renames={c['renames']} "
            f"scheduled={c['scheduled']} waiting={c['waiting']} "
            f"quarantined={c['quarantined']} unresolved={c['unresolved']}"
        )
        if result.message:
            print(f"guards: apply would refuse: {result.message}")
        print("nothing was changed (plan is a dry run; `syncd apply` applies it)")
    return EX_OK


def cmd_apply(config: Config, args: argparse.Namespace) -> int:
    from syncd.engine import run_cycle

    result = run_cycle(config, _cycle_options(args, "apply"))
    return EX_PARTIAL if result.outcome == "partial" else EX_OK


def cmd_run(config: Config, args: argparse.Namespace) -> int:
    from syncd.daemon import run_daemon

    return run_daemon(config, args.config)


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
    from syncd import health
    from syncd.state import State, parse_iso

    status = health.read_status(config)
    now = datetime.now(UTC)
    path = config.state.path
    runs: list[dict[str, Any]] = []
    totals: dict[str, Any] = dict(status.get("totals") or {})
    if path.exists():
        state = State(path, read_only=True)
        try:
            runs = [dict(row) for row in state.recent_runs(args.runs)]
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
        rows = [dict(row) for row in state.failures()]
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
    _emit(
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


def cmd_retry(config: Config, args: argparse.Namespace) -> int:
    from syncd.state import State, StateLock, utcnow

    if not args.anchor and not args.all:
        raise ConfigError("give an ANCHOR or --all", hint="see `syncd failures`")
    lock = StateLock(config.state.path)
    lock.acquire()
    try:
        state = State(config.state.path)
        try:
            count = state.release_for_retry(None if args.all else args.anchor, utcnow())
        finally:
            state.close()
    finally:
        lock.release()
    if count == 0 and args.anchor:
        print(f"{args.anchor}: not failed or quarantined (see `syncd failures`)")
        return EX_PARTIAL
    print(f"{count} person(s) will be retried in the next cycle")
    return EX_OK


def cmd_adopt(config: Config, args: argparse.Namespace) -> int:
    from syncd.adopt import adopt

    report = adopt(config, dry_run=args.dry_run)
    print(report)
    return EX_OK


def cmd_leavers(config: Config, args: argparse.Namespace) -> int:
    from syncd.state import State

    if not config.state.path.exists():
        rows: list[dict[str, Any]] = []
    else:
        state = State(config.state.path, read_only=True)
        try:
            rows = [dict(r) for r in state.leavers(config.sync.leaver_after_missing)]
        finally:
            state.close()
    for row in rows:
        row["address"] = f"{row['local_part']}@{row['domain']}"
        row["reason"] = "disabled" if row["disabled"] else f"missing {row['missing_count']}x"
    if not rows and args.format == "table":
        print("no leavers")
        return EX_OK
    _emit(
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
        rows = [dict(r) for r in state.address_history(args.address)]
    finally:
        state.close()
    if not rows:
        print(f"{args.address}: never issued or seen by syncd")
        return EX_PARTIAL
    _emit(
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


# ------------------------------------------------------------------------------------ parsing

Command = Callable[[Config, argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on usage errors; syncd uses 2 for a stale status, and 64 (EX_USAGE)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EX_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="syncd",
        description="Provision Hybridbox mailboxes for new hires from LDAP, Active Directory or "
        "an HR CSV export.",
        epilog="Exit codes: 0 ok, 1 some people failed, 2 status too old, 65 bad input data, "
        "69 service unavailable, 75 temporary failure (guard, lock), 77 not authorized, "
        "78 configuration error.",
    )
    parser.add_argument(
        "-c",
        "--config",
        type=Path,
        default=Path(os.environ.get("SYNCD_CONFIG", str(DEFAULT_CONFIG_PATH))),
        help="the YAML config file (default: $SYNCD_CONFIG or %(default)s)",
    )
    parser.add_argument("--version", action="version", version=f"syncd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, handler: Command | None, help_text: str) -> argparse.ArgumentParser:
        command = sub.add_parser(name, help=help_text, description=help_text)
        assert isinstance(command, _Parser)
        command.set_defaults(handler=handler)
        return command

    fmt = {"choices": ("table", "csv", "json"), "default": "table", "help": "output format"}
    validate = add(
        "validate",
        cmd_validate,
        "check the config, read a few source records, check the Hybridbox token and domain",
    )
    validate.add_argument("--offline", action="store_true", help="do not contact Hybridbox")
    plan = add("plan", cmd_plan, "show what `apply` would do; changes nothing")
    plan.add_argument("--format", **fmt)  # type: ignore[arg-type]
    plan.add_argument(
        "--summary", action="store_true", help="print only the counts, not one line per person"
    )
    apply = add("apply", cmd_apply, "run one sync cycle now")
    apply.add_argument(
        "--allow-creates",
        type=int,
        metavar="N",
        help="for this run only, allow up to N creates of people first seen in "
        "this read even above the safety limits",
    )
    add("run", cmd_run, "run as a daemon: cycles on the configured schedule (systemd)")
    status = add(
        "status",
        cmd_status,
        "show the last cycles and totals; exit 2 if the last success is too old",
    )
    status.add_argument("--runs", type=int, default=5, help="how many recent runs to show")
    status.add_argument("--format", choices=("table", "json"), default="table")
    add(
        "failures", cmd_failures, "list people whose mailbox could not be created yet"
    ).add_argument("--format", **fmt)  # type: ignore[arg-type]
    retry = add("retry", cmd_retry, "retry a failed or quarantined person in the next cycle")
    retry.add_argument("anchor", nargs="?", help="the person's anchor (see `syncd failures`)")
    retry.add_argument("--all", action="store_true", help="retry every failed person")
    adopt = add(
        "adopt",
        cmd_adopt,
        "match mailboxes that already exist on Hybridbox to people and record them",
    )
    adopt.add_argument("--dry-run", action="store_true", help="show the matches, record nothing")
    add(
        "leavers",
        cmd_leavers,
        "people who still have a mailbox but are disabled or gone from the source",
    ).add_argument("--format", **fmt)  # type: ignore[arg-type]
    addresses = add("addresses", cmd_addresses, "show who held an address and when")
    addresses.add_argument("address", help="local part or full address")
    addresses.add_argument("--format", **fmt)  # type: ignore[arg-type]
    add("emulator", None, "run the bundled Hybridbox emulator (see `syncd emulator --help`)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "emulator" in argv:
        # Everything after `emulator` belongs to the emulator's own parser.
        from syncd.emulator import main as emulator_main

        return emulator_main(argv[argv.index("emulator") + 1 :])
    args = build_parser().parse_args(argv)
    setup_logging(LoggingConfig(), stderr=True)
    try:
        config = load_config(args.config)
        setup_logging(config.logging)
        code = int(args.handler(config, args))
    except SyncdError as exc:
        # A clean message on the terminal; the same, as an event, in the log file.
        print(f"syncd: {exc}", file=sys.stderr)
        code = exit_code_for(exc)
        log_to_files(
            "command.failed", logging.ERROR, command=args.command, exit_code=code, reason=str(exc)
        )
        return code
    except KeyboardInterrupt:
        print("syncd: interrupted", file=sys.stderr)
        return 130
    except Exception:
        print("syncd: internal error (a bug; please report it with this trace):", file=sys.stderr)
        traceback.print_exc()
        return EX_SOFTWARE
    return code


if __name__ == "__main__":
    sys.exit(main())
