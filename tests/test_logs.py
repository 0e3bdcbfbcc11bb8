"""Log lines as operators read them, and the terminal progress bar."""

from __future__ import annotations

import io
import json
import logging
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import syncd.exit_codes  # noqa: F401  (it makes an unusable log file a ConfigError)
from syncd import logs
from syncd.config import LoggingConfig
from syncd.errors import ConfigError


@pytest.fixture(autouse=True)
def restore_syncd_logger() -> Iterator[None]:
    """setup_logging reconfigures the process-wide "syncd" logger; put it back afterwards."""
    logger = logging.getLogger("syncd")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    for handler in saved[0]:
        logger.addHandler(handler)
    logger.setLevel(saved[1])
    logger.propagate = saved[2]


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_only_on_a_terminal_and_cleared_before_log_lines(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plain = io.StringIO()
    monkeypatch.setattr("sys.stderr", plain)
    logs.progress_bar(10, 100, 5.0)
    assert plain.getvalue() == ""

    terminal = FakeTerminal()
    monkeypatch.setattr("sys.stderr", terminal)
    logs.setup_logging(LoggingConfig(), stderr=True)
    try:
        logs.progress_bar(25, 100, 5.0)
        assert "25/100" in terminal.getvalue() and "ETA 15s" in terminal.getvalue()
        logs.event(logs.get_logger("syncd.test"), "mailbox.created", anchor="E1")
        text = terminal.getvalue()
        # The bar is erased (carriage return + clear line) before the log line is written.
        assert text.index("\r\033[K", text.index("ETA")) < text.index("mailbox.created")
        assert "anchor=E1" in text
    finally:
        logs.setup_logging(LoggingConfig(), stderr=False)


def test_text_line_has_time_level_event_cycle_and_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    logs.setup_logging(LoggingConfig(), stderr=True)
    with logs.cycle_context("abcd1234"):
        logs.event(logs.get_logger("syncd.test"), "record.rejected", 30, reason="two words")
    line = stream.getvalue().strip()
    assert line.endswith('WARNING record.rejected cycle=abcd1234 reason="two words"')


def test_json_lines_and_secrets_are_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    logs.register_secret("hunter2-token")
    logs.setup_logging(LoggingConfig(format="json"), stderr=True)
    logs.event(logs.get_logger("syncd.test"), "hybridbox.retry", detail="Bearer hunter2-token")
    line = stream.getvalue()
    assert '"event": "hybridbox.retry"' in line and "hunter2-token" not in line


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_batch_of_events_writes_the_same_lines_as_one_event_each(
    monkeypatch: pytest.MonkeyPatch, log_format: str
) -> None:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    logs.setup_logging(LoggingConfig(format=log_format), stderr=True)
    log = logs.get_logger("syncd.test")
    items: list[dict[str, Any]] = [
        {"anchor": "E1", "address": "anna@example.com", "mailbox_id": 7},
        {"anchor": "E2", "address": "two words", "mailbox_id": None},
    ]
    with logs.cycle_context("c0ffee00"):
        for item in items:
            logs.event(log, "mailbox.created", **item)
        one_by_one = stream.getvalue()
        stream.seek(0)
        stream.truncate()
        logs.events(log, "mailbox.created", items)
        logs.events(log, "mailbox.created", [])  # nothing to say: no line at all
    batched = stream.getvalue()

    def without_time(text: str) -> list[object]:
        # The lines may straddle a second; everything but the timestamp must be identical.
        if log_format == "text":
            return [line.split(" ", 1)[1] for line in text.splitlines()]
        return [{**json.loads(line), "ts": None} for line in text.splitlines()]

    assert len(batched.splitlines()) == 2
    assert without_time(batched) == without_time(one_by_one)
    assert "cycle" in batched and "mailbox_id" not in batched.splitlines()[1]


# ------------------------------------------------------------------------------ the log file


def test_the_log_file_is_created_0640_whatever_the_umask(tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "syncd.log"
    old = os.umask(0)
    try:
        logs.setup_logging(LoggingConfig(file=log_file), stderr=False)
        logs.event(logs.get_logger("syncd.test"), "mailbox.created", anchor="E1")
    finally:
        os.umask(old)
    assert stat.S_IMODE(log_file.stat().st_mode) == logs.LOG_FILE_MODE == 0o640
    assert stat.S_IMODE(log_file.parent.stat().st_mode) == logs.LOG_DIR_MODE == 0o750


def test_a_log_file_deleted_while_syncd_runs_is_created_again_0640(tmp_path: Path) -> None:
    log_file = tmp_path / "syncd.log"
    logs.setup_logging(LoggingConfig(file=log_file), stderr=False)
    log = logs.get_logger("syncd.test")
    logs.event(log, "first.line")
    log_file.unlink()
    time.sleep(0.01)  # the handler looks at the path again after a quiet moment
    logs.event(log, "second.line")
    assert "second.line" in log_file.read_text()
    assert stat.S_IMODE(log_file.stat().st_mode) == 0o640


def test_a_log_file_on_a_full_disk_is_said_once_on_stderr_not_per_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    logs.setup_logging(LoggingConfig(file=Path("/dev/full")), stderr=False)  # ENOSPC on write
    for number in range(3):
        logs.event(logs.get_logger("syncd.test"), "mailbox.created", anchor=f"E{number}")
    said = stream.getvalue()
    assert said.count("syncd: cannot write the log file /dev/full: No space left on device") == 1
    assert "Traceback" not in said and "Logging error" not in said


def test_a_log_file_that_is_a_directory_is_a_config_error_and_logging_stays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    logs.setup_logging(LoggingConfig(), stderr=True)
    with pytest.raises(ConfigError) as raised:
        logs.setup_logging(LoggingConfig(file=tmp_path), stderr=True)  # a reload to a bad file
    assert str(raised.value).startswith(f"at 'logging.file': {tmp_path} is a directory")
    logs.event(logs.get_logger("syncd.test"), "still.logged")
    assert "still.logged" in stream.getvalue()
