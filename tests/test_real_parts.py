"""A skipped test fails under CI=true (a real part was missing), and only skips elsewhere."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

MISSING_PART = """
import pytest

def test_needs_a_part_that_is_not_there():
    pytest.skip("slapd is not installed")

@pytest.mark.skipif(True, reason="systemd-analyze not installed")
def test_marked_for_a_missing_tool():
    pass

@pytest.mark.xfail(reason="known", strict=False)
def test_expected_failure_is_not_a_skip():
    assert False
"""


def _run(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_missing.py").write_text(MISSING_PART)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    env = {key: value for key, value in os.environ.items() if key != "CI"}
    if ci is not None:
        env["CI"] = ci
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests.support.real_parts", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize("ci", ["true", "1"])
def test_under_ci_a_skip_is_a_failure_that_names_what_is_missing(tmp_path: Path, ci: str) -> None:
    result = _run(tmp_path, ci)
    assert result.returncode == 1, result.stdout
    # A skip in the test body fails it; a skip mark fails its setup (pytest calls that an error).
    assert "1 failed, 1 xfailed, 1 error" in result.stdout
    assert "may not skip: slapd is not installed" in result.stdout
    assert "may not skip: systemd-analyze not installed" in result.stdout


def test_outside_ci_a_missing_part_skips(tmp_path: Path) -> None:
    result = _run(tmp_path, None)
    assert result.returncode == 0, result.stdout
    assert "2 skipped, 1 xfailed" in result.stdout
