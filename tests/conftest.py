"""Shared fixtures. The heavy lifting lives in tests/support/; fixtures here are thin wrappers.

The support modules are registered as plugins so that their fixtures (``emulator``,
``make_emulator``, ``slapd``, ``slapd_factory``, ``samba_ad``) are available to every test
module; ``samba_ad`` only here, once, since two definitions would start two DCs on AD's ports.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support.fake_time import FakeTime
from tests.support.site import Site

if TYPE_CHECKING:
    from tests.support.emulator import RunningEmulator

pytest_plugins = [
    "tests.support.real_parts",
    "tests.support.emulator",
    "tests.support.slapd",
    "tests.support.samba",
]


@pytest.fixture
def site(tmp_path: Path, emulator: RunningEmulator) -> Site:
    """A syncd config, HR export and state dir in tmp_path, pointed at the session's emulator."""
    return Site(tmp_path, emulator)


@pytest.fixture
def fake_time() -> FakeTime:
    """A sleep that only records and a clock it moves (for retries and backoff)."""
    return FakeTime()


@pytest.fixture
def domains_site(tmp_path: Path, domains_emulator: RunningEmulator) -> Site:
    """A site whose people are routed to three domains by their Department column
    (``tests.support.site.DOMAIN_RULES``)."""
    site = Site(tmp_path, domains_emulator)
    site.route_by_department()
    return site
