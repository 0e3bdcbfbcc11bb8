"""status.json and the metrics file when their disk fails them: written whatever it takes, or
said on stderr; never an exception out of the cycle they report on."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from syncd.errors import DiskError
from syncd.service import StatusFiles
from syncd.state import State
from tests.service.small_disk import fill, small_disk
from tests.support.configs import offline_config

STARTED = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def test_a_full_disk_still_gets_running_false_into_status_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with small_disk(tmp_path / "disk", "1m") as disk:
        config = offline_config(tmp_path, disk / "state.db")
        files = StatusFiles(config)
        files.started(STARTED)
        assert json.loads((disk / "status.json").read_text())["running"] is True
        fill(disk)  # no room for a second copy, so no write-and-rename
        state = State(None)
        files.failed(state, STARTED, DiskError("cannot write the state database"))
        status = json.loads((disk / "status.json").read_text())
    assert status["running"] is False
    assert status["last_error"]["kind"] == "DiskError"
    assert capsys.readouterr().err == ""


def test_a_status_json_that_cannot_be_written_at_all_is_said_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with small_disk(tmp_path / "disk", "1m") as disk:
        config = offline_config(tmp_path, disk / "state.db")
        fill(disk)
        StatusFiles(config).started(STARTED)  # no exception: the cycle goes on
        assert not (disk / "status.json").exists()
    err = capsys.readouterr().err
    assert f"syncd: cannot write {disk / 'status.json'}: No space left on device" in err
