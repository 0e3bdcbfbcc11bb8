"""A steady cycle (nothing new, nothing to send) loads only what it uses.

Every 15 minutes, for years, syncd's usual cycle reads the source, finds nothing new and ends;
start-up is a large part of it (bench/: csv-steady). The packages' faces import their heavier
modules on first use, and this pins it: the HTTP client, the scheduler, the docs renderer and
sqlite-utils stay unloaded.
"""

from __future__ import annotations

import re

from tests.support.site import Site, people

NOT_NEEDED = (
    "httpx",
    "apscheduler",
    "tzlocal",
    "sqlite_utils",
    "ldap3",
    "starlette",
    "syncd.config._docs",
    "syncd.service._daemon",
    "syncd.cycle._adopt",
)


def imported(import_times: str) -> set[str]:
    return set(re.findall(r"^import time: .*\| +(\S+)$", import_times, re.M))


def test_a_steady_cycle_loads_no_http_client_scheduler_or_renderer(site: Site) -> None:
    site.write_people(people(3))
    assert site.syncd("apply").returncode == 0
    steady = site.syncd("apply", env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert steady.returncode == 0, steady.stderr
    modules = imported(steady.stderr)
    assert "syncd.cycle._engine" in modules  # the import times are there
    assert sorted(set(NOT_NEEDED) & modules) == []
