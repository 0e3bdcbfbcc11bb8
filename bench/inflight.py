"""Issue 17: a first provisioning with several bulk requests in flight, beside its floors.

    .venv/bin/python bench/inflight.py                   # 20,000 people, the three scenarios
    .venv/bin/python bench/inflight.py --people 2000     # the smoke version

``make bench`` runs these too (``bench/run.py`` calls :func:`bench`). Each scenario starts an
emulator of its own with its switches, gives syncd a fresh state (CSV source, batch 100, the
default ``hybridbox.max_in_flight`` of 4) and runs ``syncd apply`` once, measured like the other
scenarios (wall time of the whole process, peak RSS):

- ``inflight-latency``: every request takes the emulator 200 ms (``--latency-ms 200``). Floors: a
  sequential httpx loop posting the same bodies to the same emulator (the one-at-a-time way), and
  the ideal, requests x 0.2 s / 4. Targets: <= 0.32x the loop, <= 1.15x the ideal.
- ``inflight-rate``: 8 requests a second (``--rate-limit 8``), no latency, no headers. Floor: the
  ideal, requests / 8. Targets: <= 1.25x, and 429s <= 5 % of the requests.
- ``inflight-concurrency``: 2 requests at once (``--max-concurrent 2 --latency-ms 200``). Floor:
  the ideal with 2 in flight, requests x 0.2 s / 2. Target: <= 1.25x, and each person created
  once.

Every scenario also checks that, with no failures, the bulk requests that created mailboxes
number exactly ceil(people / 100) and that everyone got exactly one mailbox.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import data  # noqa: E402
from bench import run as harness  # noqa: E402

PEOPLE = 20_000
LATENCY_S = 0.2
RATE_PER_S = 8
CONCURRENT = 2
DEFAULT_IN_FLIGHT = 4
SCENARIOS = ("inflight-latency", "inflight-rate", "inflight-concurrency")


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    emulator_options: tuple[str, ...]
    # The ideal wall time for this many requests, and how far over it the target allows.
    ideal_s: float
    limit: float
    ideal_name: str


def scenarios(requests: int) -> list[Scenario]:
    return [
        Scenario(
            "inflight-latency",
            ("--latency-ms", str(int(LATENCY_S * 1000))),
            requests * LATENCY_S / DEFAULT_IN_FLIGHT,
            1.15,
            f"ideal {requests} x {LATENCY_S:g} s / {DEFAULT_IN_FLIGHT}",
        ),
        Scenario(
            "inflight-rate",
            ("--rate-limit", str(RATE_PER_S)),
            requests / RATE_PER_S,
            1.25,
            f"ideal {requests} / {RATE_PER_S} per s",
        ),
        Scenario(
            "inflight-concurrency",
            ("--max-concurrent", str(CONCURRENT), "--latency-ms", str(int(LATENCY_S * 1000))),
            requests * LATENCY_S / CONCURRENT,
            1.25,
            f"ideal {requests} x {LATENCY_S:g} s / {CONCURRENT}",
        ),
    ]


def bench(
    work: Path, people: int, chosen: Sequence[str], results: harness.Results, seed: int
) -> None:
    """Run the chosen in-flight scenarios; add their floors, runs and rows to ``results``."""
    export = work / "hr-inflight.csv"
    data.write_csv(export, data.people(people, seed))
    requests = math.ceil(people / harness.BATCH)
    for scenario in scenarios(requests):
        if scenario.name not in chosen:
            continue
        emulator = harness.Emulator(work, *scenario.emulator_options)
        try:
            _measure(work, scenario, emulator, export, people, requests, results)
        finally:
            emulator.stop()


def _measure(
    work: Path,
    scenario: Scenario,
    emulator: harness.Emulator,
    export: Path,
    people: int,
    requests: int,
    results: harness.Results,
) -> None:
    rows = results.rows
    if scenario.name == "inflight-latency":
        harness.progress(f"{scenario.name}: the sequential httpx loop ({requests} requests)")
        loop_s, _ = harness.floor(
            "httpx", emulator.url, emulator.account_id, emulator.token_file, harness.DOMAIN,
            export, harness.BATCH, "floor.", 0,
        )  # fmt: skip
        results.floors["httpx-latency"] = loop_s
        emulator.reset(mailboxes=True)
    state = work / f"state-{scenario.name}.db"
    config = work / f"syncd-{scenario.name}.yaml"
    harness.write_config(config, harness.csv_source(export), emulator, state, 2 * people)
    run = harness.apply(scenario.name, config, emulator, state, work)
    stats = emulator.stats()
    results.runs[scenario.name] = asdict(run)
    results.floors[f"ideal-{scenario.name}"] = scenario.ideal_s

    if scenario.name == "inflight-latency":
        loop_s = results.floors["httpx-latency"]
        rows.append(
            harness.ratio_row(f"{scenario.name}: wall", run.wall_s, loop_s, "httpx loop", 0.32)
        )
    rows.append(
        harness.ratio_row(
            f"{scenario.name}: wall", run.wall_s, scenario.ideal_s, scenario.ideal_name,
            scenario.limit,
        )
    )  # fmt: skip
    by_status = stats["requests"]["by_status"]
    refused = int(by_status.get("429", 0)) + int(by_status.get("503", 0))
    created_by = int(stats["bulk"]["requests"])
    if scenario.name == "inflight-rate":
        share = int(by_status.get("429", 0)) / max(1, run.requests)
        rows.append(
            harness.Row(f"{scenario.name}: 429s", f"{by_status.get('429', 0)}",
                        f"{run.requests} requests", f"{share:.1%}", "<= 5%",
                        "yes" if share <= 0.05 else "NO")
        )  # fmt: skip
    # Bulk requests that the server served (a refused one never reached the route).
    rows.append(
        harness.Row(f"{scenario.name}: bulk requests served", str(created_by),
                    f"ceil(people/{harness.BATCH}) = {requests}", f"refused {refused}",
                    f"= {requests}", "yes" if created_by == requests else "NO")
    )  # fmt: skip
    mailboxes = int(stats["mailboxes"]["total"])
    rows.append(
        harness.Row(f"{scenario.name}: mailboxes", str(mailboxes), f"people {people}", "-",
                    f"= {people}", "yes" if mailboxes == people and run.exit_code == 0 else "NO")
    )  # fmt: skip
    rows.append(
        harness.Row(f"{scenario.name}: most in flight", str(stats["concurrency"]["max_in_service"]),
                    "-", "-", "-", "-")
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--people", type=int, default=PEOPLE)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--seed", type=int, default=harness.SEED)
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    results = harness.Results(people=args.people, machine=harness.machine())
    with tempfile.TemporaryDirectory(prefix="syncd-bench-inflight-") as work:
        bench(Path(work), args.people, chosen, results, args.seed)
    print(harness.table(results.rows))
    return 0 if all(info["exit_code"] == 0 for info in results.runs.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
