"""A Hybridbox emulator: a real HTTP server on loopback for demos, tests and benchmarks.

Run it as ``syncd emulator ...`` or ``python -m syncd.emulator ...``; ``--help`` lists the options.
When it is listening it prints exactly one line to stdout (fixtures read the port from it)::

    hybridbox-emulator listening on http://127.0.0.1:8080 account=<uuid> domains=example.com

and it stops cleanly (exit status 0) on SIGTERM or SIGINT. The routes are listed in
:mod:`syncd.emulator.app`, the order in which faults strike in :mod:`syncd.emulator.pipeline`, the
admin API in :mod:`syncd.emulator.admin` and the fault switches in :mod:`syncd.emulator.faults`.
"""

from __future__ import annotations

import argparse
import logging
import sys
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from syncd.emulator.faults import BULK_STATUSES, ERROR_BODIES, PAGE_SIZE_OVERFLOWS, FaultSettings
from syncd.errors import ConfigError, SyncdError

DEFAULT_ACCOUNT_ID = "5f0c7b1e-2a4d-4c8e-9b3f-6d1a0e2c4b7a"
DEFAULT_DOMAIN = "example.com"
DEFAULT_TOKEN = "emulator-token"
LISTENING_PREFIX = "hybridbox-emulator listening on "
# The exit status when the emulator cannot start: the one argparse gives a bad option, so that
# every reason not to start looks the same to a script.
_EXIT_CANNOT_START = 2

__all__ = ["DEFAULT_ACCOUNT_ID", "DEFAULT_DOMAIN", "DEFAULT_TOKEN", "LISTENING_PREFIX", "main"]


def main(argv: list[str] | None = None) -> int:
    """Run the emulator until SIGTERM/SIGINT; 0 on a clean stop, 2 on a usage or setup error."""
    args = _parser().parse_args(argv)
    if args.verbose:
        _log_to_stderr()
    try:
        return _run(args)
    except SyncdError as exc:
        print(f"hybridbox-emulator: {exc}", file=sys.stderr)
        return _EXIT_CANNOT_START


def _run(args: argparse.Namespace) -> int:
    # Imported here so that `--help` and argument errors stay fast and need no web server.
    from syncd.emulator.app import Emulator
    from syncd.emulator.preload import load_preload, read_preload
    from syncd.emulator.server import bind, serve
    from syncd.emulator.store import SqliteJournal, Store

    account_id = _account_id(args.account_id)
    token = _token(args.token_file, args.token)
    domains = _domains(args.domain or [DEFAULT_DOMAIN])
    faults = _fault_settings(args)
    preload = read_preload(args.preload) if args.preload else []

    journal = SqliteJournal(args.state) if args.state else None
    try:
        store = Store(account_id, journal)
        for name in domains:
            store.add_domain(name)
        load_preload(store, preload, domains[0], args.preload or Path("<preload>"))
        emulator = Emulator(
            store=store, token=token, faults=faults, preload=preload, preload_path=args.preload
        )
        try:
            sock = bind(args.host, args.port)
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}",
                hint="pick another --port (0 picks a free one) or --host",
            ) from exc
        host, port = sock.getsockname()[:2]
        url_host = f"[{host}]" if ":" in host else host

        def announce() -> None:
            names = ",".join(domains)
            print(
                f"{LISTENING_PREFIX}http://{url_host}:{port} account={account_id} domains={names}",
                flush=True,
            )

        serve(emulator, sock, announce)
    finally:
        if journal is not None:
            journal.close()
    return 0


# ------------------------------------------------------------------------------ arguments


# ``add_argument`` of the parser or of one of its groups.
_AddArgument = Callable[..., argparse.Action]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="syncd emulator",
        description="Emulate Hybridbox's public mailbox API on a local port, with fault injection. "
        "Faults can also be changed at run time: PUT /_emulator/faults with a JSON object using "
        "the option names with underscores (fail_rate, drop_rate, ...).",
    )
    _add_server_options(parser.add_argument)
    # One group in --help; added in the order the faults strike (see syncd.emulator.pipeline).
    faults = parser.add_argument_group("faults (all off by default)")
    _add_request_faults(faults.add_argument)
    _add_route_faults(faults.add_argument)
    _add_after_write_faults(faults.add_argument)
    _add_answer_shapes(faults.add_argument)
    faults.add_argument(
        "--fault-routes",
        metavar="ROUTE,...",
        default="",
        help="apply request faults only to these routes (bulk_create,create,list,get,rename,"
        "add_alias,get_domain,get_account); default all",
    )
    return parser


def _add_server_options(add: _AddArgument) -> None:
    """Where to listen, the account it emulates, and where its mailboxes live."""
    add("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    add("--port", type=int, default=8080, help="port; 0 picks a free one (default %(default)s)")
    add("--account-id", default=DEFAULT_ACCOUNT_ID, help="the account UUID (default %(default)s)")
    add(
        "--domain",
        action="append",
        metavar="NAME",
        help=f"a domain of the account; repeat for more (default {DEFAULT_DOMAIN})",
    )
    add("--token-file", type=Path, help="file holding the bearer token to accept")
    add("--token", default=DEFAULT_TOKEN, help="token to accept when no --token-file is given")
    add("--state", type=Path, metavar="FILE", help="SQLite file to keep mailboxes in (else memory)")
    add("--preload", type=Path, metavar="FILE", help="CSV or JSON of mailboxes that already exist")
    add("--verbose", action="store_true", help="log fault changes and errors to stderr")


def _add_request_faults(fadd: _AddArgument) -> None:
    """The dice, and the faults that strike a request before its route sees it."""
    fadd("--seed", type=int, default=0, help="seed of the fault dice (default %(default)s)")
    fadd("--latency-ms", type=int, default=0, metavar="N", help="delay every request by N ms")
    fadd(
        "--latency-jitter-ms",
        type=int,
        default=0,
        metavar="J",
        help="and by up to J ms more, uniformly at random",
    )
    fadd(
        "--rate-limit",
        type=float,
        default=0.0,
        metavar="R",
        help="a token bucket of R requests a second (bursts of max(1, R)); beyond it 429 with "
        "Retry-After = whole seconds until a token is free (at least 1)",
    )
    fadd(
        "--rate-limit-headers",
        action="store_true",
        help="announce the rate limit: X-RateLimit-Limit and X-RateLimit-Remaining on answers",
    )
    fadd(
        "--max-concurrent",
        type=int,
        default=0,
        metavar="K",
        help="503 with Retry-After when more than K requests are being served at once",
    )
    fadd(
        "--rate-limit-every",
        type=int,
        default=0,
        metavar="N",
        help="answer every Nth request 429 with Retry-After",
    )
    fadd("--retry-after", type=int, default=1, metavar="S", help="Retry-After seconds (default 1)")
    fadd(
        "--retry-after-http-date",
        action="store_true",
        help="send Retry-After as an HTTP date instead of seconds",
    )
    fadd(
        "--drop-rate",
        type=_rate,
        default=0.0,
        metavar="R",
        help="close the connection without an answer, before anything is applied",
    )
    fadd("--unavailable-rate", type=_rate, default=0.0, metavar="R", help="503 with Retry-After")
    fadd("--error-rate", type=_rate, default=0.0, metavar="R", help="500 before any write")


def _add_route_faults(fadd: _AddArgument) -> None:
    """What the routes themselves refuse: creates, large batches, single bulk items."""
    fadd("--forbid-create", action="store_true", help="403 forbidden on create: no mailbox.create")
    fadd("--max-batch", type=int, default=0, metavar="N", help="413 for bulk requests over N items")
    fadd(
        "--fail-rate",
        type=_rate,
        default=0.0,
        metavar="R",
        help="fail each bulk item with --fail-code (not created)",
    )
    fadd("--fail-code", default="backend_busy", help="code of those failures (%(default)s)")


def _add_after_write_faults(fadd: _AddArgument) -> None:
    """Faults after a write is applied: the client cannot know that it was."""
    fadd(
        "--drop-after-write-rate",
        type=_rate,
        default=0.0,
        metavar="R",
        help="apply a write, then close the connection without an answer",
    )
    fadd(
        "--error-after-write-rate",
        type=_rate,
        default=0.0,
        metavar="R",
        help="apply a write, then answer 500",
    )
    fadd(
        "--timeout-after-write-rate",
        type=_rate,
        default=0.0,
        metavar="R",
        help="apply a write, then send nothing for --hang-s seconds",
    )
    fadd("--hang-s", type=float, default=60.0, metavar="S", help="see above (default 60)")


def _add_answer_shapes(fadd: _AddArgument) -> None:
    """Answers that are not faults but shapes a real server may choose, and broken answers."""
    fadd("--bulk-status", type=int, choices=BULK_STATUSES, default=200, help="bulk HTTP status")
    fadd("--error-body", choices=ERROR_BODIES, default="json", help="shape of error bodies")
    fadd(
        "--page-size-overflow",
        choices=PAGE_SIZE_OVERFLOWS,
        default="clamp",
        help="page_size over 100: clamp it silently, or reject with 422",
    )
    fadd(
        "--shift-created",
        action="store_true",
        help="answer a bulk create's item i with item i+1's mailbox (all are created)",
    )
    fadd(
        "--drip-bytes-per-s",
        type=float,
        default=0.0,
        metavar="R",
        help="send every answer's body at R bytes a second (0: at once)",
    )


_FAULT_OPTIONS = tuple(
    name for name in FaultSettings.__dataclass_fields__ if name not in {"fault_routes"}
)


def _fault_settings(args: argparse.Namespace) -> FaultSettings:
    changes: dict[str, Any] = {name: getattr(args, name) for name in _FAULT_OPTIONS}
    changes["fault_routes"] = [r.strip() for r in args.fault_routes.split(",") if r.strip()]
    try:
        return FaultSettings().updated(changes)
    except ValueError as exc:
        raise ConfigError(f"bad fault option: {exc}") from exc


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number from 0 to 1") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


def _account_id(text: str) -> str:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise ConfigError(f"--account-id {text!r} is not a UUID") from None


def _domains(names: Sequence[str]) -> list[str]:
    domains: list[str] = []
    for raw in names:
        name = raw.strip().lower()
        if not name or "@" in name or " " in name:
            raise ConfigError(f"--domain {raw!r} is not a domain name like example.com")
        if name not in domains:
            domains.append(name)
    return domains


def _token(token_file: Path | None, token: str) -> str:
    if token_file is None:
        return token
    try:
        value = token_file.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the token file {token_file}: {exc}") from exc
    if not value:
        raise ConfigError(f"the token file {token_file} is empty")
    return value


def _log_to_stderr() -> None:
    from syncd.logs import TextFormatter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(TextFormatter())
    logger = logging.getLogger("syncd")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
