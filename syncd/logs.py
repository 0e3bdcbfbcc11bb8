"""Log lines an administrator can grep: one event per line, ``key=value`` text or JSON.

Code logs through :func:`event`, which names the event and passes fields as keywords::

    event(log, "mailbox.created", anchor="E1001", address="anna.meier@example.com")

renders as::

    2026-11-25T10:00:00Z INFO mailbox.created cycle=c7f3 anchor=E1001 address=anna.meier@...

The current cycle id (set by the engine) is added to every line of that cycle. Files are opened
with a ``WatchedFileHandler`` (:class:`LogFileHandler`) so that logrotate can move them away: the
handler notices and reopens.
Secrets never reach a log line: nothing here logs config values, and :func:`redact` masks a token
if one ever slips into a message from a library.
"""

from __future__ import annotations

import contextvars
import json
import logging
import logging.handlers
import re
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from syncd.config import LoggingConfig

_cycle_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("cycle_id", default=None)
_SECRETS: set[str] = set()
# Shorter values are not masked: "***" in place of every such short string would garble
# ordinary words in the log.
_SECRET_MIN_CHARS = 6
_BARE = re.compile(r"^[A-Za-z0-9_.@:/+\-]+$")


def register_secret(value: str) -> None:
    """Remember a secret so that it is masked should it ever appear in a log line."""
    if len(value) >= _SECRET_MIN_CHARS:
        _SECRETS.add(value)


def redact(text: str) -> str:
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, "***")
    return text


@contextmanager
def cycle_context(cycle_id: str) -> Iterator[None]:
    token = _cycle_id.set(cycle_id)
    try:
        yield
    finally:
        _cycle_id.reset(token)


def current_cycle() -> str | None:
    return _cycle_id.get()


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one event. ``fields`` values are rendered with str(); None values are left out."""
    if logger.isEnabledFor(level):
        # makeRecord + handle is what Logger.log does, minus findCaller's walk up the stack for
        # a file and line number that no syncd formatter shows: a large share of the cost of a
        # line when a first provisioning logs 100k of them.
        record = logger.makeRecord(
            logger.name, level, "(syncd)", 0, name, (), None, extra={"syncd_fields": fields}
        )
        logger.handle(record)


def events(
    logger: logging.Logger,
    name: str,
    items: Sequence[Mapping[str, Any]],
    level: int = logging.INFO,
) -> None:
    """Log one ``name`` event per item of ``items``: the same lines as that many :func:`event`
    calls, but handled as one record and written at once (a batch of 100 creates is 100 lines
    and one write, not 100 trips through the logging machinery)."""
    if items and logger.isEnabledFor(level):
        record = logger.makeRecord(
            logger.name, level, "(syncd)", 0, name, (), None, extra={"syncd_batch": items}
        )
        logger.handle(record)


def _quote(value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    if text and _BARE.match(text):
        return text
    return json.dumps(text, ensure_ascii=False)


def _fields(record: logging.LogRecord, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    cycle = getattr(record, "syncd_cycle", None)
    if cycle:
        fields["cycle"] = cycle
    for key, value in (getattr(record, "syncd_fields", {}) if given is None else given).items():
        if value is not None:
            fields[key] = value
    return fields


def _each_line(record: logging.LogRecord) -> Iterator[dict[str, Any]]:
    """The fields of every line a record stands for: one, or one per item of a batch."""
    batch: Sequence[Mapping[str, Any]] | None = getattr(record, "syncd_batch", None)
    if batch is None:
        yield _fields(record)
    else:
        for item in batch:
            yield _fields(record, item)


class _CycleFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.syncd_cycle = _cycle_id.get()
        return True


_last_stamp: tuple[int, str] = (-1, "")


def _stamp(created: float) -> str:
    """The record's time in UTC to the second; formatted once per second, not once per line."""
    global _last_stamp
    second = int(created)
    if _last_stamp[0] != second:
        _last_stamp = (second, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second)))
    return _last_stamp[1]


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        head = f"{_stamp(record.created)} {record.levelname} {record.getMessage()}"
        line = "\n".join(
            head + "".join(f" {key}={_quote(value)}" for key, value in fields.items())
            for fields in _each_line(record)
        )
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return redact(line)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        lines = []
        for fields in _each_line(record):
            data: dict[str, Any] = {
                "ts": _stamp(record.created),
                "level": record.levelname,
                "event": record.getMessage(),
            }
            for key, value in fields.items():
                data[key] = value if isinstance(value, int | float | bool) else str(value)
            if record.exc_info:
                data["exception"] = self.formatException(record.exc_info)
            lines.append(json.dumps(data, ensure_ascii=False))
        return redact("\n".join(lines))


class LogFileHandler(logging.handlers.WatchedFileHandler):
    """A WatchedFileHandler that does not ``stat`` the file for every line of a burst.

    WatchedFileHandler checks whether logrotate moved the file before every record, one
    ``os.stat`` per line, which is most of the cost of logging 100k ``mailbox.created`` lines.
    Here a record that follows the previous one within ``BURST_S`` skips the check, as long as
    the last check is less than ``RECHECK_S`` old: a rotation during a burst is noticed within a
    second, and one in a quiet moment (anything slower than a millisecond apart, such as a
    logrotate run between two events) at once, as before.
    """

    BURST_S = 0.001
    RECHECK_S = 1.0

    def __init__(self, filename: str | Path, encoding: str | None = None) -> None:
        super().__init__(filename, encoding=encoding)
        self._last_record = 0.0
        self._last_check = 0.0

    def reopenIfNeeded(self) -> None:
        now = time.monotonic()
        quiet = now - self._last_record >= self.BURST_S
        self._last_record = now
        if quiet or now - self._last_check >= self.RECHECK_S:
            self._last_check = now
            super().reopenIfNeeded()


class _TerminalHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """stderr; when it is a terminal, clears the progress bar before each line (it is redrawn)."""

    def emit(self, record: logging.LogRecord) -> None:
        global _bar_shown
        if _bar_shown:
            self.stream.write("\r\033[K")
            _bar_shown = False
        super().emit(record)


_bar_shown = False
_terminal: tuple[object, bool] = (None, False)


def _is_terminal(stream: Any) -> bool:
    """``stream.isatty()``, asked once per stream: it is a system call, made once per batch."""
    global _terminal
    if _terminal[0] is not stream:
        _terminal = (stream, stream.isatty())
    return _terminal[1]


def progress_bar(done: int, total: int, rate: float) -> None:
    """Redraw a one-line progress bar on stderr, only when stderr is a terminal."""
    global _bar_shown
    if not _is_terminal(sys.stderr) or total <= 0:
        return
    width = 30
    filled = width * done // total
    eta = f"{(total - done) / rate:.0f}s" if rate > 0 else "?"
    sys.stderr.write(
        f"\r\033[K[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {rate:.0f}/s ETA {eta}"
    )
    sys.stderr.flush()
    _bar_shown = done < total
    if not _bar_shown:
        sys.stderr.write("\r\033[K")


def clear_progress_bar() -> None:
    """Take the progress bar off the terminal, if one is shown."""
    global _bar_shown
    if _bar_shown:
        sys.stderr.write("\r\033[K")
        sys.stderr.flush()
        _bar_shown = False


def setup_logging(config: LoggingConfig, *, stderr: bool | None = None) -> None:
    """(Re)configure the ``syncd`` logger from the config; safe to call again on reload."""
    root = logging.getLogger("syncd")
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel(config.level)
    root.propagate = False
    formatter: logging.Formatter = JsonFormatter() if config.format == "json" else TextFormatter()
    handlers: list[logging.Handler] = []
    if stderr if stderr is not None else config.stderr:
        handlers.append(_TerminalHandler(sys.stderr))
    if config.file is not None:
        Path(config.file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(LogFileHandler(config.file, encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(_CycleFilter())
        root.addHandler(handler)


def log_to_files(name: str, level: int, **fields: Any) -> None:
    """Log an event to the log file(s) only: for errors the CLI already printed on stderr."""
    root = logging.getLogger("syncd")
    record = root.makeRecord(
        root.name, level, "(cli)", 0, name, (), None, extra={"syncd_fields": fields}
    )
    for handler in root.handlers:
        if isinstance(handler, logging.FileHandler) and record.levelno >= handler.level:
            handler.handle(record)


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name if name.startswith("syncd") else f"syncd.{name}")
