"""Benchmark syncd at 100,000 people (issue 5): each scenario beside its floor, in one run.

    .venv/bin/python bench/run.py                        # 100k people, every default scenario
    .venv/bin/python bench/run.py --people 2000 --no-results        # the smoke version
    .venv/bin/python bench/run.py --people 1000000 --scenarios csv-steady   # opt-in, long

What it does: generates the people once (seeded), writes them as an HR CSV (plus a copy with 1 %
new hires appended) and as LDIF, loads a throwaway slapd offline with slapadd and starts it on a
free loopback port, starts the Hybridbox emulator (no faults), measures the floors, then runs
``syncd --config FILE apply`` as a subprocess for each scenario:

- ``csv-first``: first provisioning of everyone from the CSV (empty state, empty emulator);
- ``csv-steady``: the same CSV again, nothing changed;
- ``csv-newhires``: the CSV with 1 % new hires appended (repeated from the same state and emulator
  contents, rolled back before each repeat, each run paired with a steady run just before it:
  the figure is the median of the paired differences);
- ``ldap-first``: first provisioning from LDAP (the setup of ``ldap-steady``; reported, no target);
- ``inflight``: a first provisioning of 20,000 people with several bulk requests in flight,
  against an emulator that is slow, rate-limited or serves two at once (``bench/inflight.py``).
- ``ldap-steady``: the LDAP source again, nothing changed (a full read: ``source.delta`` off).
- ``ldap-delta``: delta reads of the same directory, in ``bench/delta.py`` (its docstring says
  what each of ``ldap-delta-full``, ``-none`` and ``-1pct`` measures).

Figures per ``syncd apply``: the wall time of the whole process (start-up included, as cron sees
it); its peak RSS (``ru_maxrss`` from ``wait4`` on that very child, forked from the small
wrapper ``measure.py`` so that the harness's own memory does not count); HTTP requests the emulator
counted (admin stats, reset before each run); rows written to the state store, counted by
diffing a snapshot taken before the run against the file after it: rows inserted or changed plus
rows deleted, per table (a rewrite that leaves a row byte-identical is not counted; the temporary
staging table is not part of the file and not counted).

Cheap runs are repeated (``--repeat``, default 5: the machine is noisy) and the fastest kept; RSS is
the highest seen.
The machine is shared and noisy: read the ratios, not the absolute times.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import json
import math
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

from bench import data, delta  # noqa: E402
from bench.floors import LDAP_ATTRIBUTES, LDAP_FILTER  # noqa: E402
from tests.support.slapd import PEOPLE_DN, Slapd  # noqa: E402

BENCH_DIR = REPO / "bench"
FLOORS = BENCH_DIR / "floors.py"
MEASURE = BENCH_DIR / "measure.py"
DOMAIN = "example.com"
BATCH = 100
LDAP_PAGE = 1000
SEED = 5
NEW_HIRE_SHARE = 0.01
RSS_TARGET_MB = 120.0
SCENARIOS = ("csv-first", "csv-steady", "csv-newhires", "ldap-first", "ldap-steady",
             "ldap-delta", "inflight")  # fmt: skip
# The modules a CSV `syncd apply` imports, to show what start-up alone costs.
STARTUP_IMPORTS = "import syncd.cli, syncd.cycle, syncd.source.csv, syncd.hybridbox"
# What each scenario needs to have run before it (in the same state file).
NEEDS = {"csv-steady": "csv-first", "csv-newhires": "csv-first", "ldap-steady": "ldap-first",
         "ldap-delta": "ldap-first"}  # fmt: skip


# ------------------------------------------------------------------------------- measuring


@dataclass(slots=True)
class Run:
    """One measured ``syncd apply``."""

    scenario: str
    wall_s: float
    rss_mb: float
    exit_code: int
    requests: int = 0
    bulk_requests: int = 0
    rows_written: int = 0
    log_tail: str = ""
    # New hires only: the median over the repeats of (this run - a steady run just before it).
    extra_s: float | None = None


@dataclass(slots=True)
class Row:
    """One line of the results table."""

    scenario: str
    figure: str
    floor: str
    ratio: str
    target: str
    met: str


@dataclass(slots=True)
class Results:
    people: int
    machine: dict[str, str]
    floors: dict[str, float] = field(default_factory=dict)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)


def run_measured(cmd: Sequence[str], log: Path) -> Run:
    """Wall time and peak RSS of one child process, through the fresh wrapper measure.py."""
    with log.open("ab") as out:
        result = subprocess.run(
            [sys.executable, "-I", "-S", str(MEASURE), *cmd],
            stdout=subprocess.PIPE,
            stderr=out,
            check=False,
        )
    if result.returncode != 0:
        raise SystemExit(f"measure.py failed ({result.returncode}); see {log}")
    answer = json.loads(result.stdout.decode().strip().splitlines()[-1])
    return Run("", float(answer["wall_s"]), float(answer["rss_mb"]), int(answer["exit_code"]))


def floor(kind: str, *args: str | Path | int) -> tuple[float, int]:
    """Run one floor in a fresh process; returns (seconds of the work, items handled)."""
    result = subprocess.run(
        [sys.executable, str(FLOORS), kind, *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"floor {kind} failed ({result.returncode}): {result.stderr[-2000:]}")
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    return float(answer["seconds"]), int(answer["count"])


def best_floor(repeat: int, kind: str, *args: str | Path | int) -> tuple[float, int]:
    results = [floor(kind, *args) for _ in range(repeat)]
    return min(seconds for seconds, _ in results), results[0][1]


def ldapsearch_floor(server: Slapd, password_file: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        ["ldapsearch", "-x", "-LLL", "-H", server.url, "-D", server.root_dn, "-y",
         str(password_file), "-b", PEOPLE_DN, "-E", "pr=1000/noprompt", LDAP_FILTER,
         *LDAP_ATTRIBUTES],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
    )  # fmt: skip
    return time.perf_counter() - start


# --------------------------------------------------------------------------- state rows


def snapshot(db: Path, copy: Path) -> None:
    """A consistent copy of the state (WAL included) to diff against after the run."""
    copy.unlink(missing_ok=True)
    target = sqlite3.connect(copy)
    try:
        if db.exists():
            source = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            try:
                source.backup(target)
            finally:
                source.close()
    finally:
        target.close()


def restore(copy: Path, db: Path) -> None:
    """Put a snapshot back as the state file (its WAL and shared memory files go)."""
    for leftover in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        leftover.unlink(missing_ok=True)
    source = sqlite3.connect(f"file:{copy}?mode=ro", uri=True)
    target = sqlite3.connect(db)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()


def rows_written(before: Path, after: Path) -> int:
    """Rows inserted or changed, plus rows deleted, over every table of the state file."""
    if not after.exists():
        return 0
    conn = sqlite3.connect(f"file:{after}?mode=ro", uri=True)
    try:
        conn.execute("ATTACH DATABASE ? AS old", (f"file:{before}?mode=ro",))
        old_tables = {
            name
            for (name,) in conn.execute("SELECT name FROM old.sqlite_master WHERE type='table'")
        }
        total = 0
        for (table,) in conn.execute(
            "SELECT name FROM main.sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
        ).fetchall():
            quoted = '"' + table.replace('"', '""') + '"'
            if table not in old_tables:
                total += conn.execute(f"SELECT count(*) FROM main.{quoted}").fetchone()[0]
                continue
            keys = [r[1] for r in conn.execute(f"PRAGMA main.table_info({quoted})") if r[5]]
            key = ", ".join(f'"{k}"' for k in keys) or "rowid"
            total += conn.execute(
                f"SELECT count(*) FROM (SELECT * FROM main.{quoted} "
                f"EXCEPT SELECT * FROM old.{quoted})"
            ).fetchone()[0]
            total += conn.execute(
                f"SELECT count(*) FROM (SELECT {key} FROM old.{quoted} "
                f"EXCEPT SELECT {key} FROM main.{quoted})"
            ).fetchone()[0]
        return int(total)
    finally:
        conn.close()


# ------------------------------------------------------------------------------- emulator


class Emulator:
    """The emulator as a subprocess on a free loopback port, with its admin API."""

    def __init__(self, work: Path, *options: str) -> None:
        self.token_file = work / "hybridbox-token"
        self.token_file.write_text("bench-token-" + os.urandom(8).hex() + "\n")
        self.token_file.chmod(0o600)
        self._log = (work / "emulator.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "syncd.emulator", "--port", "0", "--domain", DOMAIN,
             "--token-file", str(self.token_file), *options],
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            cwd=REPO,
        )  # fmt: skip
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if not line.startswith("hybridbox-emulator listening on "):
            self.stop()
            raise SystemExit(f"the emulator did not start: {line!r} (see {self._log.name})")
        words = line.split()
        self.url = words[3]
        self.account_id = words[4].removeprefix("account=")
        self.admin = httpx.Client(base_url=self.url, timeout=60)

    def stats(self) -> dict[str, Any]:
        answer: dict[str, Any] = self.admin.get("/_emulator/stats").raise_for_status().json()
        return answer

    def reset(self, *, mailboxes: bool) -> None:
        body = {"mailboxes": mailboxes, "faults": False, "stats": True}
        self.admin.post("/_emulator/reset", json=body).raise_for_status()

    def mailbox_count(self) -> int:
        return int(self.stats()["mailboxes"]["total"])

    def keep(self, count: int) -> None:
        """Back to the first ``count`` mailboxes (a repeated run starts where the first did)."""
        body = {"keep": count, "faults": False, "stats": True}
        self.admin.post("/_emulator/reset", json=body).raise_for_status()

    def stop(self) -> None:
        with contextlib.suppress(AttributeError):
            self.admin.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


# --------------------------------------------------------------------------------- config


def write_config(
    path: Path, source: dict[str, Any], emulator: Emulator, state: Path, creates: int
) -> None:
    config = {
        "source": source,
        "hybridbox": {
            "url": emulator.url,
            "account_id": emulator.account_id,
            "domain": DOMAIN,
            "token_file": str(emulator.token_file),
            "batch_size": BATCH,
        },
        "addresses": {"locale": "de"},
        "state": {"path": str(state)},
        "logging": {"file": str(path.with_suffix(".log")), "level": "INFO", "stderr": False},
        # A first provisioning of everyone is the point here, not something to stop.
        "safety": {"max_creates_per_cycle": creates, "max_creates_percent": 100},
    }
    # JSON is YAML; no need to depend on a YAML writer.
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")


def csv_source(path: Path) -> dict[str, Any]:
    return {
        "type": "csv",
        "path": str(path),
        "columns": {
            "anchor": "employee_id",
            "first_name": "first_name",
            "last_name": "last_name",
            "email": "email",
            "start_date": "start_date",
            "status": "status",
        },
    }


def ldap_source(server: Slapd, password_file: Path) -> dict[str, Any]:
    return {
        "type": "ldap",
        "url": server.url,
        "bind_dn": server.root_dn,
        "bind_password_file": str(password_file),
        "base_dn": PEOPLE_DN,
        "page_size": LDAP_PAGE,
        "attributes": {
            "first_name": "givenName",
            "last_name": "sn",
            "email": "mail",
            "start_date": "hrStartDate",
            "disabled": "employeeType",
        },
        "disabled_values": ["disabled"],
        # ldap-steady measures a full read; the delta reads are ldap-delta's (bench/delta.py).
        "delta": False,
    }


def syncd_command(config: Path) -> list[str]:
    script = Path(sys.executable).parent / "syncd"
    program = str(script) if script.exists() else shutil.which("syncd")
    if program is None:
        raise SystemExit("no syncd command found: run `make venv` (pip install -e .) first")
    return [program, "--config", str(config), "apply"]


def apply(
    scenario: str, config: Path, emulator: Emulator, state: Path, work: Path, *args: str
) -> Run:
    """One measured ``syncd apply [ARGS]`` with its requests and state rows."""
    before = work / f"{state.stem}.before.db"
    snapshot(state, before)
    emulator.reset(mailboxes=False)
    log = work / f"{scenario}.out"
    run = run_measured([*syncd_command(config), *args], log)
    run.scenario = scenario
    stats = emulator.stats()
    run.requests = int(stats["requests"]["total"])
    run.bulk_requests = int(stats["bulk"]["requests"])
    run.rows_written = rows_written(before, state)
    for leftover in (
        before,
        before.with_name(before.name + "-wal"),
        before.with_name(before.name + "-shm"),
    ):
        leftover.unlink(missing_ok=True)
    if run.exit_code != 0:
        syncd_log = config.with_suffix(".log")
        tail = syncd_log.read_text(errors="replace")[-2000:] if syncd_log.exists() else ""
        run.log_tail = log.read_text(errors="replace")[-2000:] + tail
    progress(
        f"{scenario}: {run.wall_s:.2f}s rss={run.rss_mb:.0f}MB requests={run.requests} "
        f"bulk={run.bulk_requests} rows={run.rows_written} exit={run.exit_code}"
    )
    return run


def best(runs: list[Run]) -> Run:
    """The fastest run, carrying the highest RSS seen over all of them."""
    fastest = min(runs, key=lambda r: r.wall_s)
    fastest.rss_mb = max(r.rss_mb for r in runs)
    return fastest


# -------------------------------------------------------------------------------- output


def progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def machine() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "?"
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "ram": memory,
        "python": platform.python_version(),
        "os": platform.platform(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def ratio_row(scenario: str, figure: float, floor_s: float, floor_name: str, limit: float) -> Row:
    ratio = figure / floor_s if floor_s > 0 else math.inf
    return Row(
        scenario,
        f"{figure:.2f} s",
        f"{floor_name} {floor_s:.2f} s",
        f"{ratio:.2f}x",
        f"<= {limit:g}x",
        "yes" if ratio <= limit else "NO",
    )


def table(rows: list[Row]) -> str:
    header = Row("scenario", "figure", "floor", "ratio", "target", "met?")
    cells = [list(asdict(r).values()) for r in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(results: Results) -> str:
    m = results.machine
    head = "| scenario | figure | floor | ratio | target | met? |\n|---|---|---|---|---|---|\n"
    body = "".join(
        f"| {r.scenario} | {r.figure} | {r.floor} | {r.ratio} | {r.target} | {r.met} |\n"
        for r in results.rows
    )
    floors = "".join(f"- {name}: {value:.3f} s\n" for name, value in results.floors.items())
    return (
        f"# syncd benchmark: {results.people:,} people\n\n"
        f"Generated by `bench/run.py --people {results.people}` on {m['date']}.\n\n"
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram']} RAM; Python {m['python']}; "
        f"{m['os']}.\n\n"
        "Wall time is the whole `syncd apply` process (start-up included). RSS is the peak "
        "resident set of that process. Requests are those the emulator counted. State rows are "
        "rows inserted, changed or deleted in the state file (diff of a snapshot before the run "
        "against the file after it). The machine is shared: compare ratios, not times. Cheap "
        "runs are repeated and the fastest kept (the new-hires run from the same state and "
        "emulator contents each time, each paired with a steady run just before it; its figure "
        "is the median of the paired differences). The HR export has the 13 columns of a "
        "typical HR report, of which syncd reads 6. syncd runs from bytecode, as an installed "
        "copy does. A steady-state cycle does not contact Hybridbox (its last token check, by "
        "the run before, is younger than `hybridbox.check_every`).\n\n"
        f"{head}{body}\nFloors (fastest of the repeats; the work itself without start-up, except "
        "`startup`, which is a whole `python -c 'import syncd...'` process; the httpx floors "
        "read the rows and build the bodies inside the timed loop, and `httpx-newhires` skips "
        "the rows before the new hires before its clock starts):\n\n"
        f"{floors}"
    )


# ------------------------------------------------------------------------------- the run


def selected(scenarios: Sequence[str]) -> list[str]:
    """The chosen scenarios plus what they need, in the canonical order."""
    wanted = set(scenarios)
    for name in scenarios:
        if name in NEEDS:
            wanted.add(NEEDS[name])
    return [name for name in SCENARIOS if name in wanted]


def build_rows(results: Results, n: int, new_hires: int) -> None:
    runs, floors, rows = results.runs, results.floors, results.rows

    def run(name: str) -> dict[str, Any] | None:
        return runs.get(name)

    def count_row(scenario: str, what: str, figure: int, expected: int) -> None:
        rows.append(
            Row(f"{scenario}: {what}", str(figure), f"ceil(people/{BATCH}) = {expected}",
                f"{figure / expected:.2f}x" if expected else "-", f"= {expected}",
                "yes" if figure == expected else "NO")
        )  # fmt: skip

    first = run("csv-first")
    if first:
        rows.append(ratio_row("csv-first: wall", first["wall_s"], floors["httpx"], "httpx", 1.25))
        count_row("csv-first", "bulk requests", first["bulk_requests"], math.ceil(n / BATCH))
    ldap_steady = run("ldap-steady")
    if ldap_steady:
        rows.append(
            ratio_row("ldap-steady: wall", ldap_steady["wall_s"], floors["ldap3"], "ldap3", 1.3)
        )
        rows.append(
            Row("ldap-steady: wall (reference)", f"{ldap_steady['wall_s']:.2f} s",
                f"ldapsearch {floors['ldapsearch']:.2f} s",
                f"{ldap_steady['wall_s'] / floors['ldapsearch']:.2f}x", "-", "-")
        )  # fmt: skip
    steady = run("csv-steady")
    if steady:
        rows.append(ratio_row("csv-steady: wall", steady["wall_s"], floors["csv"], "csv.reader", 5))
        if "startup" in floors:
            rows.append(
                Row("csv-steady: wall (reference)", f"{steady['wall_s']:.2f} s",
                    f"python + imports {floors['startup']:.2f} s",
                    f"{steady['wall_s'] / floors['startup']:.2f}x", "-", "-")
            )  # fmt: skip
    newhires = run("csv-newhires")
    if newhires and (newhires.get("extra_s") is not None or steady):
        extra = newhires["extra_s"]
        if extra is None:  # results of an older bench: two separate series
            assert steady is not None
            extra = newhires["wall_s"] - steady["wall_s"]
        httpx_new = floors["httpx-newhires"]
        ratio = extra / httpx_new if httpx_new > 0 else math.inf
        paired = " (median of pairs)" if newhires["extra_s"] is not None else ""
        rows.append(
            Row("csv-newhires: wall - steady", f"{extra:.2f} s{paired}",
                f"httpx {httpx_new:.2f} s ({math.ceil(new_hires / BATCH)} bulk)",
                f"{ratio:.2f}x", "<= 1.25x", "yes" if ratio <= 1.25 else "NO")
        )  # fmt: skip
        count_row("csv-newhires", "bulk requests", newhires["bulk_requests"],
                  math.ceil(new_hires / BATCH))  # fmt: skip
        per_change = newhires["rows_written"] / new_hires if new_hires else math.inf
        # "Proportional to the changes": a handful of rows per new hire (person, mailbox,
        # address, ...) plus the run's own bookkeeping; 100k-proportional writes fail this.
        rows.append(
            Row("csv-newhires: state rows", str(newhires["rows_written"]),
                f"new hires {new_hires}", f"{per_change:.2f}/hire", "<= 10/hire",
                "yes" if per_change <= 10 else "NO")
        )  # fmt: skip
    rows += delta.rows(runs, floors, ratio_row)
    for name in ("csv-steady", "ldap-steady", "ldap-first"):
        info = run(name)
        if info:
            rows.append(Row(f"{name}: state rows", str(info["rows_written"]), "-", "-", "-", "-"))
    if ldap_first := run("ldap-first"):
        rows.append(
            ratio_row("ldap-first: wall (info)", ldap_first["wall_s"], floors["httpx"], "httpx",
                      math.inf)
        )  # fmt: skip
        rows[-1].target, rows[-1].met = "-", "-"
    for name, info in runs.items():
        rows.append(
            Row(f"{name}: peak RSS", f"{info['rss_mb']:.0f} MB", "-", "-",
                f"<= {RSS_TARGET_MB:g} MB", "yes" if info["rss_mb"] <= RSS_TARGET_MB else "NO")
        )  # fmt: skip
        if info["exit_code"] != 0:
            rows.append(Row(f"{name}: exit code", str(info["exit_code"]), "-", "-", "0", "NO"))
    baseline = BENCH_DIR / "results-100000.json"
    if n > 100_000 and steady and baseline.exists():
        base_runs = json.loads(baseline.read_text())["runs"]
        if "csv-steady" in base_runs:
            base = float(base_runs["csv-steady"]["rss_mb"])
            ratio = steady["rss_mb"] / base
            rows.append(
                Row("csv-steady: peak RSS vs 100k", f"{steady['rss_mb']:.0f} MB",
                    f"100k run {base:.0f} MB", f"{ratio:.2f}x", "<= 1.5x",
                    "yes" if ratio <= 1.5 else "NO")
            )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated, from {','.join(SCENARIOS)} (needed ones are added)",
    )
    parser.add_argument("--repeat", type=int, default=5, help="runs of the cheap measurements")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--no-results", action="store_true", help="do not write bench/RESULTS*")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(SCENARIOS))
    if unknown:
        parser.error(
            f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}"
        )
    scenarios = selected(chosen)

    # An installed syncd runs from bytecode (pip and Debian's packaging compile it); an editable
    # checkout where PYTHONDONTWRITEBYTECODE is set would compile every module on every start.
    compileall.compile_dir(REPO / "syncd", quiet=1)
    work = Path(tempfile.mkdtemp(prefix="syncd-bench-"))
    try:
        results = bench(work, args.people, scenarios, args.repeat, args.seed)
    finally:
        if args.keep:
            progress(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    print(table(results.rows))
    document = {
        "people": results.people,
        "machine": results.machine,
        "floors": results.floors,
        "runs": results.runs,
        "rows": [asdict(r) for r in results.rows],
    }
    if args.json:
        args.json.write_text(json.dumps(document, indent=2))
    if not args.no_results:
        suffix = "" if args.people == 100_000 else f"-{args.people}"
        (BENCH_DIR / f"RESULTS{suffix}.md").write_text(markdown(results), encoding="utf-8")
        (BENCH_DIR / f"results-{args.people}.json").write_text(json.dumps(document, indent=2))
    failed = [name for name, info in results.runs.items() if info["exit_code"] != 0]
    return 1 if failed else 0


def bench(work: Path, n: int, scenarios: list[str], repeat: int, seed: int) -> Results:
    results = Results(people=n, machine=machine())
    new_hires = max(1, round(n * NEW_HIRE_SHARE))
    use_ldap = any(s.startswith("ldap") for s in scenarios)

    progress(f"generating {n:,} people (+{new_hires:,} new hires) in {work}")
    base_csv, newhires_csv = work / "hr.csv", work / "hr-newhires.csv"
    data.write_csv(base_csv, data.people(n, seed))
    if "csv-newhires" in scenarios:
        data.write_csv(newhires_csv, data.people(n + new_hires, seed))

    with contextlib.ExitStack() as stack:
        server: Slapd | None = None
        password_file = work / "ldap-password"
        if use_ldap:
            progress("loading slapd offline (slapadd)")
            ldif = "".join(data.ldif_for(p) for p in data.people(n, seed))
            # entryCSN indexed, as a directory read in deltas should have it (README).
            server = Slapd(work / "slapd", ldif, indexes=("entryCSN",))
            stack.enter_context(server)
            # The root DN: the reader accounts cap pages at 500 entries, the floors use 1000.
            password_file.write_text(server.root_password)  # no newline: ldapsearch -y
            password_file.chmod(0o600)
        emulator = Emulator(work)
        stack.callback(emulator.stop)

        progress("measuring floors")
        floors = results.floors
        if any(s.startswith("csv") for s in scenarios):
            floors["csv"], _ = best_floor(repeat, "csv", base_csv)
        if server is not None:
            floors["ldap3"], count = best_floor(
                repeat, "ldap3", server.url, server.root_dn, password_file, PEOPLE_DN, LDAP_PAGE
            )
            if count != n:
                raise SystemExit(f"the ldap3 floor read {count} entries, expected {n}")
            floors["ldapsearch"] = min(
                ldapsearch_floor(server, password_file) for _ in range(repeat)
            )
        if "csv-first" in scenarios or "ldap-first" in scenarios:
            # Distinct local parts per repeat: the emulator keeps what the earlier ones created.
            floors["httpx"] = min(
                floor("httpx", emulator.url, emulator.account_id, emulator.token_file, DOMAIN,
                      base_csv, BATCH, f"floor{i}.", 0)[0]
                for i in range(repeat)
            )  # fmt: skip
        if "csv-newhires" in scenarios:
            floors["httpx-newhires"] = min(
                floor("httpx", emulator.url, emulator.account_id, emulator.token_file, DOMAIN,
                      newhires_csv, BATCH, f"floornew{i}.", n)[0]
                for i in range(repeat)
            )  # fmt: skip
        # Not a floor of the issue, a reference: what start-up and imports alone cost.
        floors["startup"] = min(
            run_measured([sys.executable, "-c", STARTUP_IMPORTS], work / "startup.out").wall_s
            for _ in range(repeat)
        )
        progress("floors: " + ", ".join(f"{k}={v:.3f}s" for k, v in floors.items()))
        emulator.reset(mailboxes=True)

        creates = 2 * (n + new_hires)
        csv_config, csv_state = work / "syncd-csv.yaml", work / "state-csv.db"
        write_config(csv_config, csv_source(base_csv), emulator, csv_state, creates)
        runs: dict[str, Run] = {}
        if "csv-first" in scenarios:
            runs["csv-first"] = apply("csv-first", csv_config, emulator, csv_state, work)
        if "csv-steady" in scenarios:
            runs["csv-steady"] = best(
                [apply("csv-steady", csv_config, emulator, csv_state, work) for _ in range(repeat)]
            )
        if "csv-newhires" in scenarios:
            hires_config = work / "syncd-csv-newhires.yaml"
            write_config(hires_config, csv_source(newhires_csv), emulator, csv_state, creates)
            # Repeated from the same start (state and emulator rolled back) like the cheap runs,
            # each run paired with a steady run from that start just before it: the figure is
            # the median of the paired differences, so that the machine's drift between two
            # separate series of ~1 s runs does not decide it.
            start, before = work / "state-csv.newhires-start.db", emulator.mailbox_count()
            snapshot(csv_state, start)
            hires, extras = [], []
            for attempt in range(repeat):
                if attempt:
                    restore(start, csv_state)
                    emulator.keep(before)
                steady_before = apply("csv-steady", csv_config, emulator, csv_state, work)
                restore(start, csv_state)
                hires.append(apply("csv-newhires", hires_config, emulator, csv_state, work))
                extras.append(hires[-1].wall_s - steady_before.wall_s)
            runs["csv-newhires"] = best(hires)
            runs["csv-newhires"].extra_s = statistics.median(extras)

        if server is not None:
            # A fresh emulator: the LDAP people have the CSV people's names, and their
            # addresses are already taken there.
            emulator.reset(mailboxes=True)
            ldap_config, ldap_state = work / "syncd-ldap.yaml", work / "state-ldap.db"
            write_config(ldap_config, ldap_source(server, password_file), emulator, ldap_state,
                         creates)  # fmt: skip
            runs["ldap-first"] = apply("ldap-first", ldap_config, emulator, ldap_state, work)
            if "ldap-steady" in scenarios:
                runs["ldap-steady"] = best(
                    [apply("ldap-steady", ldap_config, emulator, ldap_state, work)
                     for _ in range(repeat)]
                )  # fmt: skip
            if "ldap-delta" in scenarios:
                delta_config, delta_state = work / "syncd-delta.yaml", work / "state-delta.db"
                snapshot(ldap_state, delta_state)
                write_config(delta_config, {**ldap_source(server, password_file), "delta": True},
                             emulator, delta_state, creates)  # fmt: skip
                progress("ldap-delta: the first cycle reads everything (no watermark yet)")
                apply("ldap-delta-first", delta_config, emulator, delta_state, work)
                setup = delta.Setup(work, n, repeat, server, emulator, password_file,
                                    delta_config, delta_state, apply, best)  # fmt: skip
                runs.update(delta.run_scenarios(setup, floors))

    for name, run in runs.items():
        results.runs[name] = asdict(run)
        if run.exit_code != 0:
            progress(f"{name} exited {run.exit_code}; the end of its output:\n{run.log_tail}")
    build_rows(results, n, new_hires)
    if "inflight" in scenarios:
        # Issue 17's scenarios: each with an emulator of its own (latency, rate and concurrency
        # limits), at 20,000 people at most (they measure waiting, not size).
        from bench import inflight  # here: bench.inflight imports this module

        inflight.bench(work, min(n, inflight.PEOPLE), inflight.SCENARIOS, results, seed)
    return results


if __name__ == "__main__":
    sys.exit(main())
