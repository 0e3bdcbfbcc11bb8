"""status.json, `syncd status` and the Prometheus textfile, as monitoring reads them."""

from __future__ import annotations

import json
import time

from tests.support.site import Site, people


def test_a_failed_cycle_records_its_error_but_never_moves_last_success(site: Site) -> None:
    site.write_people(people(5))
    assert site.syncd("apply").returncode == 0
    good = site.status()
    assert good["last_outcome"] == "ok" and good["last_error"] is None
    assert good["totals"]["mailboxes"] == 5 and good["source_complete"] is True

    time.sleep(1.1)  # status times have one-second resolution
    site.write_people(people(1))  # an 80% drop: the guard refuses the cycle
    assert site.syncd("apply").returncode == 75
    failed = site.status()
    assert failed["last_success"] == good["last_success"]
    assert failed["last_start"] != good["last_start"]
    assert failed["last_outcome"] == "error"
    assert failed["last_error"]["kind"] == "GuardTripped"
    assert "shrank" in failed["last_error"]["message"]


def test_status_json_format_and_metrics_file(site: Site) -> None:
    metrics = site.root / "syncd.prom"
    site.configure(health={"metrics_file": str(metrics)})
    site.write_people(people(3))
    assert site.syncd("apply").returncode == 0
    status = site.syncd("status", "--format", "json")
    assert status.returncode == 0
    data = json.loads(status.stdout)
    assert data["last_counts"]["created"] == 3 and data["stale"] is False
    assert data["runs"][0]["outcome"] == "ok"
    text = metrics.read_text()
    assert "syncd_last_cycle_ok 1" in text
    stamp = next(line for line in text.splitlines() if line.startswith("syncd_last_success_"))
    assert abs(float(stamp.split()[1]) - time.time()) < 120  # UTC, not local time


def test_status_before_any_cycle_is_stale(site: Site) -> None:
    result = site.syncd("status")
    assert result.returncode == 2
    assert "never" in result.stdout
