"""Under ``CI=true`` a test never skips: a skip there means a real part (slapd, Samba,
systemd-analyze, logrotate, ...) was missing, and a green CI must mean that the real parts ran.

On a developer's machine a missing part still skips, with the reason saying what to install.
Registered as a plugin by ``tests/conftest.py``.
"""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest

CI_VALUES = frozenset({"true", "1", "yes"})


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in CI_VALUES


def _reason(report: pytest.TestReport) -> str:
    if isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    return str(report.longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail") and in_ci():
        report.outcome = "failed"
        report.longrepr = (
            f"CI=true, so this test may not skip: {_reason(report)}\n"
            "Install the missing part (`make system-deps` as root on Debian) so that it runs."
        )
