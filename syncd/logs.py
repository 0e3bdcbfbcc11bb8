"""Log lines an administrator can grep: one event per line, ``key=value`` text or JSON.

Code logs through :func:`event`, which names the event and passes fields as keywords::

    event(log, "mailbox.created", anchor="E1001", address="anna.meier@example.com")

renders as::

    2026-11-25T10:00:00Z INFO mailbox.created cycle=c7f3 anchor=E1001 address=anna.meier@...

The current cycle id (set by the engine) is added to every line of that cycle. Files are opened
with a ``WatchedFileHandler`` (:class:`LogFileHandler`) so that logrotate can move them away: the
handler notices and reopens. The log holds names and addresses, so the file is created 0640
(LOG_FILE_MODE) whatever the umask, and a wider existing one is narrowed; a line that cannot be
written (a full disk) is one line on stderr, not a traceback per line.
Secrets never reach a log line: nothing here logs config values, and :func:`redact` masks a token
if one ever slips into a message from a library.
"""

from __future__ import annotations

import contextvars
import errno
import io
import json
import logging
import logging.handlers
import os
import pwd
import re
import stat
import sys
import time
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from syncd.errors import ConfigError

if TYPE_CHECKING:
    from syncd.config import LoggingConfig

_cycle_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("cycle_id", default=None)
_SECRETS: set[str] = set()
# Shorter values are not masked: "***" in place of every such short string would garble
# ordinary words in the log.
_SECRET_MIN_CHARS = 6
_BARE = re.compile(r"^[A-Za-z0-9_.@:/+\-]+$")

# The log file: personal data (names, addresses), so not for everyone; readable by the group for
# the admins who read logs (Debian's `adm`, or the syncd group), as /var/log files usually are.
LOG_FILE_MODE = 0o640
# A log directory syncd creates itself (systemd's LogsDirectoryMode= in the unit says the same).
LOG_DIR_MODE = 0o750


def narrow_mode(fd: int, allowed: int) -> int | None:
    """Take away the permission bits of an open regular file that ``allowed`` does not give (a
    file from an older syncd, or made under umask 022); never adds any. The old mode when it
    changed, else None. A file of another owner cannot be changed: it stays as it is."""
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode) or not stat.S_IMODE(mode) & ~allowed:
        return None
    try:
        os.fchmod(fd, stat.S_IMODE(mode) & allowed)
    except PermissionError:
        return None
    return stat.S_IMODE(mode)


def give_to_directory_owner(fd: int, directory: Path) -> None:
    """When root creates a file in another user's directory (``sudo syncd apply`` in the service
    user's /var/lib/syncd), give the new file to that user, as SQLite does with its journals:
    a root-owned state, lock, log or status.json would lock the service out. Only for files
    syncd has just created (by descriptor, so no symlink can redirect it)."""
    if os.geteuid() != 0:
        return
    # A file system that refuses (NFS with root_squash) leaves it root's; the service then
    # says whose it is when it cannot open it.
    with suppress(OSError):
        owner = os.stat(directory)
        if owner.st_uid != 0:
            os.fchown(fd, owner.st_uid, owner.st_gid)


def owner_note(path: Path) -> str:
    """``"; PATH belongs to root, not to syncd, the user syncd runs as"`` when ``path`` (or the
    directory it would be created in) has another owner than this process; else "". The usual
    cause is a run as root (``sudo syncd apply``) that created a file the service cannot open."""
    try:
        target = path if path.exists() else path.parent
    except OSError:  # a directory this user may not enter: its owner is the note
        target = path.parent
    try:
        owner = target.stat().st_uid
    except OSError:
        return ""
    me = os.geteuid()
    if owner == me:
        return ""
    return (
        f"; {target} belongs to {user_name(owner)}, not to {user_name(me)}, the user syncd runs as"
    )


def user_name(uid: int) -> str:
    """The login name of ``uid`` for a message, or the number when it has none."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


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


# Beyond this code point an escape needs eight hex digits (\U...), below 0x100 two (\x..).
_BMP_LAST = 0xFFFF
_LATIN1_LAST = 0xFF
# JSON writes a character beyond the BMP as two escaped UTF-16 halves.
_ASTRAL_BASE, _HIGH_HALF, _LOW_HALF = 0x10000, 0xD800, 0xDC00


def _escape(char: str) -> str:
    code = ord(char)
    if code <= _LATIN1_LAST:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= _BMP_LAST else f"\\U{code:08x}"


def visible(text: str) -> str:
    """``text`` with every character a terminal acts on or hides instead of showing written as
    an escape (``\\x1b``, ``\\u202e``): C0 and C1 controls (ESC starts colour and cursor
    sequences, CR overwrites the line), DEL, the line and paragraph separators, and format
    characters (U+202E shows what follows reversed, zero-width ones hide a difference). The
    source, an older state or a Hybridbox message may hold them; reports and log lines show
    them this way.

    One C call for the usual cell: ``isprintable`` is false exactly for those (and for blanks
    other than a space, which are shown as they are)."""
    if text.isprintable():
        return text
    return "".join(
        char if char.isprintable() or unicodedata.category(char) == "Zs" else _escape(char)
        for char in text
    )


def _json_escape(char: str) -> str:
    code = ord(char)
    if code < _ASTRAL_BASE:
        return f"\\u{code:04x}"
    code -= _ASTRAL_BASE
    return f"\\u{_HIGH_HALF + (code >> 10):04x}\\u{_LOW_HALF + (code & 0x3FF):04x}"


# What json.dumps leaves as it is: DEL and every character beyond ASCII.
_JSON_RAW = re.compile("[\x7f-\U0010ffff]")


def json_visible(text: str) -> str:
    """JSON text with what ``visible`` escapes written as JSON escapes: json.dumps escapes the
    C0 controls only (DEL, C1 controls and U+202E stay raw with ``ensure_ascii=False``). Only
    string contents can hold such characters, so the JSON means the same."""
    if text.isascii() and "\x7f" not in text:
        return text
    return _JSON_RAW.sub(
        lambda match: match.group() if match.group().isprintable() else _json_escape(match.group()),
        text,
    )


def _quote(value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    if text and _BARE.match(text):
        return text
    return json_visible(json.dumps(text, ensure_ascii=False))


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
            lines.append(json_visible(json.dumps(data, ensure_ascii=False)))
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
        # The mode the file had before it was narrowed to LOG_FILE_MODE, if it was (see _open).
        self.narrowed_from: int | None = None
        self._failure: str | None = None
        super().__init__(filename, encoding=encoding)
        self._last_record = 0.0
        self._last_check = 0.0

    def _open(self) -> io.TextIOWrapper:
        """Open for appending, creating the file LOG_FILE_MODE whatever the umask (also when it
        is created again after logrotate moved it, or after someone deleted it)."""
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
        try:
            fd = os.open(self.baseFilename, flags | os.O_EXCL, LOG_FILE_MODE)
            os.fchmod(fd, LOG_FILE_MODE)  # the umask took bits away at creation
            give_to_directory_owner(fd, Path(self.baseFilename).parent)
        except FileExistsError:
            fd = os.open(self.baseFilename, flags, LOG_FILE_MODE)
            self.narrowed_from = narrow_mode(fd, LOG_FILE_MODE) or self.narrowed_from
        return open(fd, "a", encoding=self.encoding, errors=self.errors)

    def handleError(self, record: logging.LogRecord) -> None:
        """A line that cannot be written (a full disk, a deleted directory) is said once on
        stderr, instead of logging's traceback for every line that follows."""
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):
            super().handleError(record)  # a bug in formatting, not the file
            return
        reason = error.strerror or str(error)
        if reason != self._failure:
            self._failure = reason
            sys.stderr.write(
                f"syncd: cannot write the log file {self.baseFilename}: {reason}; log lines "
                "are lost until that is fixed (they still go to stderr if logging.stderr is on)\n"
            )

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
    """(Re)configure the ``syncd`` logger from the config; safe to call again on reload.

    An unusable ``logging.file`` raises (a ConfigError) before
    anything changes, so a reload to a bad file keeps the logging that works.
    """
    handlers: list[logging.Handler] = []
    if stderr if stderr is not None else config.stderr:
        handlers.append(_TerminalHandler(sys.stderr))
    file_handler = None if config.file is None else _file_handler(Path(config.file))
    if file_handler is not None:
        handlers.append(file_handler)
    root = logging.getLogger("syncd")
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel(config.level)
    root.propagate = False
    formatter: logging.Formatter = JsonFormatter() if config.format == "json" else TextFormatter()
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(_CycleFilter())
        root.addHandler(handler)
    if file_handler is not None and file_handler.narrowed_from is not None:
        event(
            root,
            "log.mode_narrowed",
            logging.WARNING,
            path=file_handler.baseFilename,
            was=oct(file_handler.narrowed_from),
            now=oct(LOG_FILE_MODE),
            reason="the log holds names and addresses",
        )


def _file_handler(path: Path) -> LogFileHandler:
    """The handler of ``logging.file``, or the error that says why it cannot be opened."""
    try:
        # Inside the try: asking is refused too when the directory may not be entered.
        if path.is_dir():
            raise ConfigError(
                f"at 'logging.file': {path} is a directory",
                hint=f"give a file name in it, such as {path / 'syncd.log'}",
            )
        path.parent.mkdir(parents=True, exist_ok=True, mode=LOG_DIR_MODE)
        return LogFileHandler(path, encoding="utf-8")
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if exc.errno == errno.EROFS:
            hint = "use a writable file system (under systemd: LogsDirectory=, /var/log/syncd)"
        else:
            hint = "make it writable by the user syncd runs as, or choose another logging.file"
        raise ConfigError(
            f"at 'logging.file': cannot open the log file {path}: {reason}{owner_note(path)}",
            hint=hint,
        ) from None


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
