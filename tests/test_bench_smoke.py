"""The benchmark harness at 2,000 people, so that it cannot rot (timings are not asserted).

Runs ``bench/run.py --people 2000`` as a subprocess against a real slapd and the emulator, then
checks that every scenario produced its rows, that every ``syncd apply`` succeeded, and that the
first provisioning sent exactly ceil(N/100) bulk requests.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.slapd import requires_slapd

REPO = Path(__file__).resolve().parents[1]
PEOPLE = 2000
NEW_HIRES = 20  # 1 %

pytestmark = [pytest.mark.slapd, requires_slapd]


@pytest.fixture(scope="module")
def bench_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    out = tmp_path_factory.mktemp("bench") / "results.json"
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run.py"), "--people", str(PEOPLE),
         "--repeat", "1", "--no-results", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    answer: dict[str, object] = json.loads(out.read_text())
    answer["stdout"] = result.stdout
    return answer


def test_every_scenario_has_its_rows(bench_results: dict[str, object]) -> None:
    rows = bench_results["rows"]
    assert isinstance(rows, list)
    names = {row["scenario"] for row in rows}
    for expected in (
        "csv-first: wall",
        "csv-first: bulk requests",
        "csv-steady: wall",
        "csv-newhires: wall - steady",
        "csv-newhires: bulk requests",
        "csv-newhires: state rows",
        "ldap-steady: wall",
        "ldap-steady: wall (reference)",
        "ldap-delta-full: wall",
        "ldap-delta-none: wall",
        "ldap-delta-1pct: wall",
        "inflight-latency: wall",
        "inflight-rate: 429s",
        "inflight-concurrency: mailboxes",
    ):
        assert expected in names
    for scenario in ("csv-first", "csv-steady", "csv-newhires", "ldap-first", "ldap-steady"):
        assert f"{scenario}: peak RSS" in names
    # The printed table is the same rows.
    stdout = bench_results["stdout"]
    assert isinstance(stdout, str)
    assert "csv-first: wall" in stdout and "met?" in stdout


def test_every_apply_succeeded(bench_results: dict[str, object]) -> None:
    runs = bench_results["runs"]
    assert isinstance(runs, dict)
    assert {name: run["exit_code"] for name, run in runs.items()} == dict.fromkeys(runs, 0)


def test_first_provisioning_sends_exactly_one_bulk_request_per_batch(
    bench_results: dict[str, object],
) -> None:
    runs = bench_results["runs"]
    assert isinstance(runs, dict)
    assert runs["csv-first"]["bulk_requests"] == math.ceil(PEOPLE / 100)
    assert runs["ldap-first"]["bulk_requests"] == math.ceil(PEOPLE / 100)
    assert runs["csv-newhires"]["bulk_requests"] == math.ceil(NEW_HIRES / 100)
    # Nothing changed: no creates at all.
    assert runs["csv-steady"]["bulk_requests"] == 0
    assert runs["ldap-steady"]["bulk_requests"] == 0


def test_floors_were_measured(bench_results: dict[str, object]) -> None:
    floors = bench_results["floors"]
    assert isinstance(floors, dict)
    assert set(floors) == {"csv", "ldap3", "ldapsearch", "httpx", "httpx-newhires", "startup",
                           "ldap3-changed", "httpx-latency", "ideal-inflight-latency",
                           "ideal-inflight-rate", "ideal-inflight-concurrency"}  # fmt: skip
    assert all(seconds > 0 for seconds in floors.values())
