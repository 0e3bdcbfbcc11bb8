"""The ``syncd`` command. The only place where exceptions become exit codes (the mapping is
:mod:`syncd.exit_codes`).

The commands that change something (validate, plan, apply, run, retry, adopt) are here, and
``config``, which prints what a config file may hold; the ones that only read the state and print it
(status, failures, leavers, moves, addresses) are in :mod:`syncd.cli._reports`.

Exit codes: see :mod:`syncd.exit_codes`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from syncd import __version__
from syncd.cli._reports import (
    cmd_addresses,
    cmd_failures,
    cmd_leavers,
    cmd_moves,
    cmd_status,
    print_plan,
)
from syncd.config import (
    DEFAULT_CONFIG_PATH,
    Config,
    CsvSource,
    LoggingConfig,
    check_secrets,
    config_file_warnings,
    load_config,
)
from syncd.errors import ConfigError, SyncdError
from syncd.exit_codes import (
    EX_OK,
    EX_PARTIAL,
    EX_SOFTWARE,
    EX_TEMPFAIL,
    EX_UNAVAILABLE,
    EX_USAGE,
    exit_code_for,
)
from syncd.logs import log_to_files, setup_logging

if TYPE_CHECKING:
    from syncd.source.csv import CsvReader
    from syncd.source.ldap import LdapReader

# ------------------------------------------------------------------------------------ commands


def cmd_validate(config: Config, args: argparse.Namespace) -> int:
    """Check the config, then the source and Hybridbox, each printing its lines as it goes
    (a problem on stderr, as every error; a warning on a ``warning:`` line), then one verdict.
    Exit 0 when valid, warnings or not; else the exit code of the first problem."""
    from datetime import UTC, datetime

    from syncd import service

    # Loading the config (every key) and reading its secrets happened before: a problem there
    # ends the command with its own message.
    print(f"config {config.origin}: keys and secrets OK")
    # The schedule as the daemon will run it: a cron line's meaning shows in its next times.
    schedule = config.schedule
    where = (
        "counted from the daemon's start (the times: if it started now)"
        if schedule.every is not None
        else f"in {service.zone_name(service.schedule_zone(schedule))}"
    )
    also = "; run_at_start: one more cycle when the daemon starts" if schedule.run_at_start else ""
    print(f"schedule: {service.describe_schedule(schedule)}, {where}{also}")
    for moment in service.next_cycle_times(schedule, datetime.now(UTC)):
        print(f"schedule: next {service.format_moment(moment)} ({moment:%a})")
    checks: list[tuple[str, Callable[[Config], list[str]]]] = [("source", _validate_source)]
    if not args.offline:
        checks.append(("hybridbox", _validate_hybridbox))
    codes: list[int] = []
    warnings = 0
    for name, check in checks:
        try:
            found = check(config)
        except SyncdError as exc:
            codes.append(_validation_problem(name, exc))
            continue
        for warning in found:
            print(f"warning: {warning}")
        warnings += len(found)
    if args.offline:
        print("hybridbox: not checked (--offline)")
    return _validation_verdict(config, codes, warnings)


def _validate_source(config: Config) -> list[str]:
    """Read a few people; the warnings: a source in which syncd would find nobody, configured
    attributes no sample entry has, an LDAP password sent unencrypted."""
    source = _validation_reader(config)
    print(f"source: {source.describe()}")
    people, warnings = source.probe(5)
    print(f"source: read {len(people)} sample record(s):")
    from collections import Counter

    from syncd.cycle import router

    routing = router(config)
    for person in people:
        state = " (disabled)" if person.disabled else ""
        start = f" start={person.start_date}" if person.start_date else ""
        domain = f" -> {routing.route(person)}" if routing.rules else ""
        print(f"  {person.anchor}  {person.first_name} {person.last_name}{start}{state}{domain}")
    if routing.rules:
        taken = Counter(routing.rule_of(person) for person in people)
        for index, rule in enumerate(config.hybridbox.domains):
            print(
                f"hybridbox.domains[{index}] ({rule.domain}): takes {taken[index]} of the "
                f"{len(people)} sample record(s)"
            )
        print(
            f"hybridbox.domain ({config.hybridbox.domain}, no rule matches): "
            f"{taken[None]} of the {len(people)} sample record(s)"
        )
    return warnings


def _validation_reader(config: Config) -> CsvReader | LdapReader:
    """The configured reader, as its own type: ``probe`` is for ``syncd validate`` only, not a
    part of every source. (A CSV site never imports ldap3.)"""
    if isinstance(config.source, CsvSource):
        from syncd.source.csv import CsvReader

        return CsvReader(config.source, config.sync)
    from syncd.source.ldap import LdapReader

    return LdapReader(config.source, config.sync)


def _validate_hybridbox(config: Config) -> list[str]:
    from syncd.hybridbox import HybridboxClient

    settings = config.hybridbox
    # in_cycle=False: no next cycle retries what validate could not check, so its messages
    # must not say one does. A wrong hybridbox.url fails at the first contact, in seconds.
    with HybridboxClient(settings, settings.token(), in_cycle=False) as client:
        client.check_account()
        print(f"hybridbox: {settings.url} account {settings.account_id}: token accepted")
        for name, key in settings.domain_keys().items():
            domain = client.check_domain(name, key)
            print(
                f"hybridbox: domain {domain.get('name', name)} ({key}) "
                f"status={domain.get('status')} "
                f"outbound_routing_ready={domain.get('outbound_routing_ready')}"
            )
    return []


def _validation_problem(check: str, error: SyncdError) -> int:
    """Report a failed check as every error is reported (stderr, log file); its exit code."""
    code = exit_code_for(error)
    print(f"syncd: {check}: {error}", file=sys.stderr, flush=True)
    log_to_files(
        "command.failed",
        logging.ERROR,
        command="validate",
        check=check,
        exit_code=code,
        reason=str(error),
    )
    return code


def _validation_verdict(config: Config, codes: list[int], warnings: int) -> int:
    """The one verdict line; the exit code of the first problem, or 0 (warnings included)."""
    sys.stderr.flush()
    if codes:
        print(f"config {config.origin}: NOT valid ({_count(len(codes), 'problem')}; see above)")
        return codes[0]
    if warnings:
        print(f"config {config.origin}: valid, with {_count(warnings, 'warning')}")
    else:
        print(f"config {config.origin}: valid")
    return EX_OK


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _cycle_options(config: Config, args: argparse.Namespace, mode: str) -> Any:
    from syncd.cycle import CycleOptions
    from syncd.service import StatusFiles

    return CycleOptions(
        mode=mode,  # type: ignore[arg-type]
        allow_creates=getattr(args, "allow_creates", None),
        reporter=StatusFiles(config) if mode == "apply" else None,
        full=getattr(args, "full", False),
    )


# `plan --check`: apply would change something (ldap2pg's --check says so with 1, too).
EX_PLAN_HAS_CHANGES = 1


def cmd_plan(config: Config, args: argparse.Namespace) -> int:
    """What apply would do, changing nothing. Exit 75 when a guard would refuse the cycle (as
    apply would exit); with ``--check``, 1 when apply would change something on Hybridbox
    (create, retry, rename, finish an interrupted cycle's creates) and 0 when not, for
    monitoring."""
    from syncd.cycle import run_cycle

    result = run_cycle(config, _cycle_options(config, args, "plan"))
    print_plan(result, config.hybridbox.domain, args.format, summary=args.summary)
    if result.message:
        return EX_TEMPFAIL
    if args.check and result.plan.changes:
        return EX_PLAN_HAS_CHANGES
    return EX_OK


def cmd_apply(config: Config, args: argparse.Namespace) -> int:
    from syncd.cycle import run_cycle

    result = run_cycle(config, _cycle_options(config, args, "apply"))
    return EX_PARTIAL if result.outcome == "partial" else EX_OK


def cmd_run(config: Config, args: argparse.Namespace) -> int:
    from syncd.service import run_daemon

    return run_daemon(config, args.config)


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
    from syncd.cycle import adopt

    report = adopt(config, dry_run=args.dry_run)
    print(report)
    return EX_OK


def cmd_config(args: argparse.Namespace) -> int:
    """``syncd config example|keys``; takes no Config, because it is what one starts from."""
    from syncd.config import render_example_config, render_key_tables

    text = render_example_config() if args.config_action == "example" else render_key_tables()
    # UTF-8 whatever the locale says: the example becomes a config file, which syncd reads as UTF-8.
    sys.stdout.buffer.write(text.encode("utf-8"))
    sys.stdout.buffer.flush()
    return EX_OK


# ------------------------------------------------------------------------------------ parsing

Command = Callable[[Config, argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on usage errors; syncd uses 2 for a stale status, and 64 (EX_USAGE)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EX_USAGE, f"{self.prog}: error: {message}\n")


AddCommand = Callable[[str, Command | None, str], argparse.ArgumentParser]
# --format of the commands that print rows.
FORMATS = ("table", "csv", "json")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="syncd",
        description="Provision Hybridbox mailboxes for new hires from LDAP, Active Directory or "
        "an HR CSV export.",
        epilog="Exit codes: 0 ok, 1 some people failed, 2 status too old, 65 bad input data, "
        "69 service unavailable, 75 temporary failure (guard, lock, full disk), "
        "77 not authorized, 78 configuration error, 141 output pipe closed.",
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

    _add_cycle_commands(add)
    _add_report_commands(add)
    _add_config_command(
        add("config", None, "print the annotated example config or the table of every key")
    )
    add("emulator", None, "run the bundled Hybridbox emulator (see `syncd emulator --help`)")
    return parser


# --full of plan and apply.
_FULL_HELP = (
    "read the whole directory in this cycle, even where source.delta would read only the "
    "changes since the last read (only a full read counts anyone missing)"
)


def _add_cycle_commands(add: AddCommand) -> None:
    """The commands that read the source or change something: validate, plan, apply, run,
    retry, adopt."""
    validate = add(
        "validate",
        cmd_validate,
        "check the config, read a few source records, check the Hybridbox token and domain",
    )
    validate.add_argument("--offline", action="store_true", help="do not contact Hybridbox")
    plan = add("plan", cmd_plan, "show what `apply` would do; changes nothing")
    plan.add_argument("--format", choices=FORMATS, default="table", help="output format")
    plan.add_argument(
        "--summary", action="store_true", help="print only the counts, not one line per person"
    )
    plan.add_argument(
        "--check",
        action="store_true",
        help="exit 1 when apply would create, retry or rename anything (or finish an "
        "interrupted cycle's creates), 0 when not (exit 75 when a guard would refuse the "
        "cycle, with or without --check)",
    )
    plan.add_argument("--full", action="store_true", help=_FULL_HELP)
    apply = add("apply", cmd_apply, "run one sync cycle now")
    apply.add_argument("--full", action="store_true", help=_FULL_HELP)
    apply.add_argument(
        "--allow-creates",
        type=int,
        metavar="N",
        help="for this run only, allow up to N creates of people first seen in "
        "this read even above the safety limits",
    )
    add("run", cmd_run, "run as a daemon: cycles on the configured schedule (systemd)")
    retry = add("retry", cmd_retry, "retry a failed or quarantined person in the next cycle")
    retry.add_argument("anchor", nargs="?", help="the person's anchor (see `syncd failures`)")
    retry.add_argument("--all", action="store_true", help="retry every failed person")
    adopt = add(
        "adopt",
        cmd_adopt,
        "match mailboxes that already exist on Hybridbox to people and record them",
    )
    adopt.add_argument("--dry-run", action="store_true", help="show the matches, record nothing")


def _add_report_commands(add: AddCommand) -> None:
    """The commands that only read the state: status, failures, leavers, moves, addresses."""
    status = add(
        "status",
        cmd_status,
        "show the last cycles and totals; exit 2 if the last success is too old",
    )
    status.add_argument("--runs", type=int, default=5, help="how many recent runs to show")
    status.add_argument("--format", choices=("table", "json"), default="table")
    failures = add("failures", cmd_failures, "list people whose mailbox could not be created yet")
    leavers = add(
        "leavers",
        cmd_leavers,
        "people who still have a mailbox but are disabled or gone from the source",
    )
    moves = add(
        "moves",
        cmd_moves,
        "people whose fields now route them to another domain than their mailbox's",
    )
    addresses = add("addresses", cmd_addresses, "show who held an address and when")
    addresses.add_argument("address", help="local part or full address")
    for command in (failures, leavers, moves, addresses):
        command.add_argument("--format", choices=FORMATS, default="table", help="output format")


def _add_config_command(config: argparse.ArgumentParser) -> None:
    config.description = (
        "Print documentation generated from syncd's config schema, the one source of every "
        "key's description, default and example. Needs no config file (--config is ignored)."
    )
    actions = config.add_subparsers(dest="config_action", metavar="ACTION", required=True)
    for name, help_text, description in (
        (
            "example",
            "print an annotated example config, every key with what it does and its default",
            "Print an annotated example config (YAML) on stdout: every key with its description "
            "and default, with an HR CSV export as the source. It is config/syncd.example.yaml; "
            "start a new installation with `syncd config example > /etc/syncd/syncd.yaml`.",
        ),
        (
            "keys",
            "print the Markdown tables of every key: path, default, meaning",
            "Print the Markdown tables of every config key (key path, default, meaning) on "
            "stdout, the CSV and the LDAP source keys included. They are README's 'Every key' "
            "tables.",
        ),
    ):
        actions.add_parser(name, help=help_text, description=description)


# The commands that use the Hybridbox token, and those that read the source (and so an LDAP bind
# password): each checks those secrets at its start, even when it then contacts nothing (`apply`
# with nobody new, `validate --offline`), so a leaked or broken secret cannot go unnoticed.
TOKEN_COMMANDS = frozenset({"validate", "apply", "run", "adopt"})
SOURCE_COMMANDS = frozenset({"validate", "plan", "apply", "run", "adopt"})

# What a Unix tool killed by SIGPIPE reports (128 + 13); syncd keeps SIGPIPE ignored, as Python
# does, because a write to a closed LDAP or Hybridbox socket must be an error, not a death.
EX_CLOSED_PIPE = 128 + 13

# The options before the command that take a value (the command word is the first other word).
_GLOBAL_OPTIONS_WITH_VALUE = ("-c", "--config")
# What the emulator needs beyond syncd's own dependencies (pyproject's `emulator` extra).
EMULATOR_PACKAGES = frozenset({"starlette", "uvicorn", "httptools", "uvloop", "anyio", "h11"})


def _command_index(argv: Sequence[str]) -> int | None:
    """Where the command word is: the first word that is neither an option nor an option's
    value (so `syncd retry emulator` retries a person called "emulator")."""
    index = 0
    while index < len(argv):
        word = argv[index]
        if word in _GLOBAL_OPTIONS_WITH_VALUE:
            index += 2
        elif word.startswith("-"):
            index += 1
        else:
            return index
    return None


def _run_emulator(argv: list[str]) -> int:
    try:
        # The emulator imports its web server only once it has parsed its arguments.
        from syncd.emulator import main as emulator_main

        return emulator_main(argv)
    except ImportError as exc:
        missing = (exc.name or "").partition(".")[0]
        if missing not in EMULATOR_PACKAGES:
            raise
        print(
            f"syncd: the emulator needs packages that are not installed ({missing}): "
            "pip install 'syncd[emulator]'",
            file=sys.stderr,
        )
        return EX_UNAVAILABLE


def main(argv: Sequence[str] | None = None) -> int:
    """The ``syncd`` command; returns its exit code."""
    try:
        code = _main(argv)
        sys.stdout.flush()  # a closed pipe shows here when the output fit in the pipe's buffer
    except BrokenPipeError:
        return _closed_pipe()
    return code


def _closed_pipe() -> int:
    """The reader of our output went away (``syncd status | head -3``): stop quietly, as a Unix
    tool does, instead of a traceback. Python would flush stdout again at exit and complain, so
    stdout is pointed at /dev/null first."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EX_CLOSED_PIPE


def _warn_about_config_file(config: Config) -> None:
    """A warning on stderr and, as a ``config.insecure`` event, in the log file; not a refusal."""
    for warning in config_file_warnings(config):
        print(f"syncd: warning: {warning}", file=sys.stderr)
        log_to_files("config.insecure", logging.WARNING, path=config.origin, reason=warning)


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _command_index(argv)
    if command is not None and argv[command] == "emulator":
        # Everything after `emulator` belongs to the emulator's own parser.
        return _run_emulator(argv[command + 1 :])
    args = build_parser().parse_args(argv)
    if args.command == "config":
        return cmd_config(args)  # before loading a config: there may be none yet
    setup_logging(LoggingConfig(), stderr=True)
    try:
        config = load_config(args.config)
        setup_logging(config.logging)
        _warn_about_config_file(config)
        check_secrets(
            config,
            hybridbox=args.command in TOKEN_COMMANDS,
            source=args.command in SOURCE_COMMANDS,
        )
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
    except BrokenPipeError:
        raise  # not a bug: main() ends quietly
    except Exception:
        print("syncd: internal error (a bug; please report it with this trace):", file=sys.stderr)
        traceback.print_exc()
        return EX_SOFTWARE
    return code


if __name__ == "__main__":
    sys.exit(main())
