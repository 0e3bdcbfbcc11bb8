"""Log lines as operators read them, and the terminal progress bar."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from syncd import logs
from syncd.config import LoggingConfig


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
