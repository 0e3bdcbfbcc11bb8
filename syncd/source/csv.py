"""The HR export source: people from a CSV file, read as a stream.

The file is parsed row by row (a 1M-row export is never held in memory) and every row becomes a
:class:`~syncd.model.Person` or one ``record.rejected`` warning. Problems that make the whole file
unusable (missing file, empty file, missing columns, wrong encoding) raise
:class:`~syncd.errors.SourceDataError` before, or instead of, yielding anyone.

Completeness matters because only a complete read may count people as missing: the read is
complete when the parser reached the end of the file cleanly. A file cut off mid-record (an
unterminated quoted field at EOF, or a short last line without a newline, as a half-copied
export looks) is read as far as it goes and reported incomplete.
"""

from __future__ import annotations

import codecs
import csv
import logging
from collections.abc import Generator, Iterator
from contextlib import closing
from datetime import date, datetime
from itertools import islice
from operator import itemgetter
from pathlib import Path
from typing import IO, TYPE_CHECKING

from syncd import __version__
from syncd.config import CsvSource, SyncConfig
from syncd.errors import ConfigError, SourceDataError
from syncd.logs import event, get_logger
from syncd.model import Person, ReadReport
from syncd.source._records import KEY_SEPARATOR, Record, people_of, reject_record

if TYPE_CHECKING:
    from _csv import Reader as CsvRowReader

log = get_logger("syncd.source.csv")

_BOM = "\ufeff"
# A UTF-8 BOM decoded as Latin-1/cp1252: the file is UTF-8 but the config says otherwise.
_BOM_AS_LATIN1 = "ï»¿"
_OTHER_DELIMITERS = (",", ";", "\t", "|")
_LINE_ENDS = ("\n", "\r")
# .xlsx (a zip) and .xls (OLE2): a workbook given where an export was meant.
_SPREADSHEET_MAGIC = (b"PK\x03\x04", b"\xd0\xcf\x11\xe0")
# More header names than this are cut short in messages; the admin needs the gist, not 300 names.
_HEADER_SHOWN = 30
# Bump when ``person`` reads a key differently: records stored as unchanged are read again.
_RECORD_FORMAT = 1


class DateParser:
    """Parse start dates with the configured strptime formats, tried in order.

    ``strptime`` costs several microseconds, which adds up over 100k rows, so ISO dates take a
    fast path and results are cached: HR start dates cluster on few distinct days.
    """

    _CACHE_LIMIT = 20_000

    def __init__(self, formats: list[str]) -> None:
        self.formats = tuple(formats)
        self._iso_first = self.formats[0] == "%Y-%m-%d"
        self._cache: dict[str, date | None] = {}

    def __call__(self, text: str) -> date | None:
        """The date, or None when no format matches."""
        try:
            return self._cache[text]
        except KeyError:
            pass
        parsed = self._parse(text)
        if len(self._cache) >= self._CACHE_LIMIT:
            self._cache.clear()
        self._cache[text] = parsed
        return parsed

    def _parse(self, text: str) -> date | None:
        # fromisoformat also accepts forms strptime("%Y-%m-%d") refuses (e.g. "2024W011"), so the
        # fast path only takes the canonical YYYY-MM-DD shape.
        if self._iso_first and len(text) == 10 and text[4] == "-" and text[7] == "-":
            try:
                return date.fromisoformat(text)
            except ValueError:
                pass
        for fmt in self.formats:
            try:
                return datetime.strptime(text, fmt).date()
            except ValueError:
                continue
        return None


class _Lines:
    """The file's lines as the csv module sees them, remembering what the parser cannot tell us.

    ``last`` is the latest physical line (a line without a newline can only be the file's last);
    ``eof`` turns True when the parser asked for a line past the end, which it only does while a
    record is still open, i.e. inside a quoted field that the end of the file cut off.
    """

    __slots__ = ("eof", "file", "last")

    def __init__(self, file: IO[str]) -> None:
        self.file = file
        self.last = ""
        self.eof = False

    def __iter__(self) -> Iterator[str]:
        for line in self.file:
            self.last = line
            yield line
        self.eof = True


class CsvReader:
    """Reads people from the HR export described by ``source`` (see ``CsvSource``)."""

    def __init__(self, config: CsvSource, sync: SyncConfig) -> None:
        self.config = config
        self.path = Path(config.path)
        self.parse_date = DateParser(sync.date_format)
        self.active_values = frozenset(v.strip().casefold() for v in config.active_values)
        try:
            codec = codecs.lookup(config.encoding).name
        except LookupError:
            raise ConfigError(
                f"at 'source.encoding': unknown encoding {config.encoding!r}",
                hint="use a Python codec name such as utf-8, cp1252 or latin-1",
            ) from None
        # Excel and many HR tools write a UTF-8 BOM; utf-8-sig drops it and reads plain UTF-8 too.
        self.encoding = "utf-8-sig" if codec == "utf-8" else config.encoding
        # Where each field sits in a record's key; set from the header by records().
        self._key_width = 3
        self._k_email = self._k_start = self._k_status = -1

    def describe(self) -> str:
        return f"csv {self.path}"

    def sample(self, limit: int = 5) -> list[Person]:
        """The first ``limit`` valid people, for ``syncd validate``; stops reading early."""
        with closing(self.read(ReadReport())) as people:
            return list(islice(people, limit))

    def signature(self) -> str:
        """What a record's key means: the columns it is made of and how they are read."""
        columns = self.config.columns
        return repr(
            (
                "csv",
                _RECORD_FORMAT,
                # A new syncd may read values differently: its first cycle reads every record.
                __version__,
                columns.anchor,
                columns.first_name,
                columns.last_name,
                columns.email,
                columns.start_date,
                columns.status,
                sorted(self.active_values),
                self.parse_date.formats,
            )
        )

    def read(self, report: ReadReport) -> Generator[Person, None, None]:
        """Yield one Person per valid row (``records`` then ``person``, for callers that want
        people rather than records: ``syncd validate``, ``syncd adopt``, tests)."""
        return people_of(self, report)

    def records(self, report: ReadReport) -> Generator[Record, None, None]:
        """Yield one record per data row, ``(anchor, key, line)``; fill ``report`` as the file is
        read. The key joins the configured columns' raw values: equal keys, equal people.

        Raises SourceDataError (before yielding anything) when the file cannot be opened, is
        empty or lacks a configured column, and whenever bytes cannot be decoded.
        """
        report.complete = False
        report.incomplete_reason = None
        try:
            file = open(self.path, encoding=self.encoding, newline="")  # noqa: SIM115
        except OSError as exc:
            raise SourceDataError(
                f"cannot read HR export {self.path}: {exc.strerror or exc}",
                hint="check source.path and that syncd's user may read the file",
            ) from None
        with file:
            lines = _Lines(file)
            rows = csv.reader(iter(lines), delimiter=self.config.delimiter)
            try:
                yield from self._read_rows(rows, lines, report)
            except UnicodeDecodeError as exc:
                raise self._decode_error(exc) from None
            except csv.Error as exc:
                # Only the header gets here; data rows with bad quoting are rejected one by one.
                raise SourceDataError(
                    f"cannot parse the header of HR export {self.path} "
                    f"(line {rows.line_num}): {exc}"
                ) from None
            except OSError as exc:
                raise SourceDataError(
                    f"error while reading HR export {self.path} after line {rows.line_num}: "
                    f"{exc.strerror or exc}"
                ) from None

    def origin(self, record: Record) -> str:
        return f"line {record[2]}"

    def person(self, record: Record, report: ReadReport) -> Person | None:
        """The person in one record, or None after a ``record.rejected`` line saying why."""
        anchor, key, line = record
        values = key.split(KEY_SEPARATOR)
        columns = self.config.columns
        if len(values) != self._key_width:
            reason = "a value holds the control character U+001F"
            self._reject(report, line, anchor, "*", reason)
            return None
        first = values[1].strip()
        last = values[2].strip()
        if not anchor or not first or not last:
            if not anchor:
                field = columns.anchor
            elif not first:
                field = columns.first_name
            else:
                field = columns.last_name
            self._reject(report, line, anchor, field, "empty")
            return None
        start_date = None
        if self._k_start >= 0:
            text = values[self._k_start].strip()
            if text:
                start_date = self.parse_date(text)
                if start_date is None:
                    formats = ", ".join(self.parse_date.formats)
                    reason = f"unparseable date {text!r} (sync.date_format: {formats})"
                    self._reject(report, line, anchor, columns.start_date or "", reason)
                    return None
        email = (values[self._k_email].strip() or None) if self._k_email >= 0 else None
        disabled = (
            self._k_status >= 0
            and values[self._k_status].strip().casefold() not in self.active_values
        )
        return Person(anchor, first, last, email, start_date, disabled, origin=f"line {line}")

    # ------------------------------------------------------------------------------- the rows

    def _read_rows(self, rows: CsvRowReader, lines: _Lines, report: ReadReport) -> Iterator[Record]:
        header = self._read_header(rows, report)
        columns = self.config.columns
        width = len(header)
        i_anchor = header.index(columns.anchor)
        # The key: anchor, first and last name, then the optional columns that are configured.
        wanted = [i_anchor, header.index(columns.first_name), header.index(columns.last_name)]
        self._k_email = self._k_start = self._k_status = -1
        if columns.email:
            self._k_email = len(wanted)
            wanted.append(header.index(columns.email))
        if columns.start_date:
            self._k_start = len(wanted)
            wanted.append(header.index(columns.start_date))
        if columns.status:
            self._k_status = len(wanted)
            wanted.append(header.index(columns.status))
        self._key_width = len(wanted)
        key_of = itemgetter(*wanted)
        join = KEY_SEPARATOR.join
        # rows.line_num counts the physical lines consumed so far, so a record starts on the line
        # after the previous record's last one (quoted fields may span lines).
        line_num = rows.line_num

        while True:
            try:
                # A plain for loop is the fast path (a 100k export goes through it in a blink);
                # the try around it only catches the rare malformed record, after which the
                # parser resumes on the next line.
                for row in rows:
                    start, line_num = line_num + 1, rows.line_num
                    if lines.eof:
                        self._cut_off_in_quotes(report, row, start, header, i_anchor)
                        return
                    if len(row) != width:
                        if self._bad_width(report, row, start, header, i_anchor, lines):
                            return
                        continue
                    anchor = row[i_anchor].strip()
                    if not anchor and not any(value.strip() for value in row):
                        continue  # a row of empty cells, as spreadsheets leave at the end
                    report.read += 1
                    yield anchor, join(key_of(row)), start
                break
            except csv.Error as exc:
                # A malformed record (e.g. a field over the size limit); the parser has consumed
                # its lines and resumes at the next one.
                start, line_num = line_num + 1, rows.line_num
                report.read += 1
                self._reject(report, start, "", columns.anchor, f"unreadable row: {exc}")

        report.complete = True

    def _cut_off_in_quotes(
        self, report: ReadReport, row: list[str], start: int, header: list[str], i_anchor: int
    ) -> None:
        """The parser had to ask for more input to finish this record: the file ends inside a
        quoted field. What was read before is sound; this record is not."""
        report.read += 1
        anchor = row[i_anchor].strip() if i_anchor < len(row) else ""
        field = header[min(len(row), len(header)) - 1]
        reason = f"file ends inside a quoted field that starts on line {start}"
        self._reject(report, start, anchor, field, reason)
        self._incomplete(report, reason + " (the export looks cut off)")

    def _bad_width(
        self,
        report: ReadReport,
        row: list[str],
        start: int,
        header: list[str],
        i_anchor: int,
        lines: _Lines,
    ) -> bool:
        """Reject a row with too few or too many fields; True when it was the cut-off end."""
        if not row or not any(value.strip() for value in row):
            return False  # a blank line is not a record
        report.read += 1
        width = len(header)
        anchor = row[i_anchor].strip() if i_anchor < len(row) else ""
        if len(row) > width:
            reason = (
                f"long row: {len(row)} fields, header has {width} "
                f"(a value with an unquoted {self.config.delimiter!r}?)"
            )
            self._reject(report, start, anchor, header[-1], reason)
            return False
        field = header[len(row)]
        if lines.last.endswith(_LINE_ENDS):
            self._reject(report, start, anchor, field, f"short row: {len(row)} of {width} fields")
            return False
        # Only the file's last line can lack a newline: this is where the export stops.
        reason = f"last line cut off: {len(row)} of {width} fields, no newline"
        self._reject(report, start, anchor, field, reason)
        self._incomplete(report, f"{reason} on line {start}: the export looks cut off")
        return True

    def _read_header(self, rows: CsvRowReader, report: ReadReport) -> list[str]:
        header: list[str] = []
        for row in rows:
            if row and any(value.strip() for value in row):
                header = row
                break
        if not header:
            raise SourceDataError(
                f"HR export {self.path} is empty: no header line",
                hint="the export may have failed; nothing was read and nothing will change",
            )
        header = [name.strip() for name in header]
        header[0] = header[0].removeprefix(_BOM).strip()
        columns = self.config.columns
        wanted = [
            name
            for name in (
                columns.anchor,
                columns.first_name,
                columns.last_name,
                columns.start_date,
                columns.status,
                columns.email,
            )
            if name is not None
        ]
        missing = [name for name in wanted if name not in header]
        if missing:
            raise self._missing_columns_error(missing, header)
        for name in wanted:
            if header.count(name) > 1:
                # The first one wins; say so, since the other may be the one HR meant.
                report.warnings += 1
                event(
                    log,
                    "source.warning",
                    logging.WARNING,
                    source="csv",
                    reason=f"column {name!r} appears {header.count(name)} times in the header; "
                    "using the first",
                )
        return header

    # ------------------------------------------------------------------------- what went wrong

    def _reject(self, report: ReadReport, line: int, anchor: str, field: str, reason: str) -> None:
        reject_record(log, report, "csv", anchor, field, reason, line=line)

    def _incomplete(self, report: ReadReport, reason: str) -> None:
        report.complete = False
        report.incomplete_reason = reason
        event(log, "source.incomplete", logging.WARNING, source="csv", reason=reason)

    def _missing_columns_error(self, missing: list[str], header: list[str]) -> SourceDataError:
        names = ", ".join(repr(name) for name in missing)
        shown = ", ".join(repr(name) for name in header[:_HEADER_SHOWN])
        if len(header) > _HEADER_SHOWN:
            shown += f", ... ({len(header) - _HEADER_SHOWN} more)"
        message = (
            f"HR export {self.path} lacks the column(s) {names} named in source.columns; "
            f"its header has: {shown}"
        )
        by_case = {name.casefold(): name for name in header}
        case_only = [
            f"{by_case[name.casefold()]!r} differs from {name!r} only in case"
            for name in missing
            if name.casefold() in by_case
        ]
        hints: list[str] = []
        if case_only:
            hints.append(
                "; ".join(case_only) + " (header names must match exactly; fix source.columns)"
            )
        delimiter = self._guess_delimiter(missing, header)
        if delimiter is not None:
            hints.append(
                f"the header looks separated by {delimiter!r}, not "
                f"{self.config.delimiter!r}: set source.delimiter: {delimiter!r}"
            )
        if header[0].startswith(_BOM_AS_LATIN1):
            hints.append("the file starts with a UTF-8 BOM: set source.encoding: utf-8")
        return SourceDataError(message, hint="; ".join(hints) or None)

    def _guess_delimiter(self, missing: list[str], header: list[str]) -> str | None:
        """Another delimiter under which the header has the missing columns, if one exists."""
        text = self.config.delimiter.join(header)
        for candidate in _OTHER_DELIMITERS:
            if candidate == self.config.delimiter or candidate not in text:
                continue
            names = {name.strip().strip('"').casefold() for name in text.split(candidate)}
            if all(name.casefold() in names for name in missing) or len(header) == 1:
                return candidate
        return None

    def _decode_error(self, exc: UnicodeDecodeError) -> SourceDataError:
        """Re-read the file as bytes to say on which line the undecodable bytes are.

        The text layer decodes in chunks ahead of the parser, so neither knows the line; this
        slow path runs only once, on the way to an error.
        """
        line, bad = _find_undecodable(self.path, self.encoding)
        where = f"line {line}" if line else "somewhere"
        byte = f" (byte {bad})" if bad else ""
        message = (
            f"cannot decode HR export {self.path} as {self.config.encoding}: "
            f"bad bytes on {where}{byte}: {exc.reason}"
        )
        if _starts_with(self.path, _SPREADSHEET_MAGIC):
            return SourceDataError(
                message,
                hint="this is a spreadsheet workbook, not CSV: have HR export it as CSV",
            )
        return SourceDataError(
            message,
            hint="set source.encoding to the file's encoding, e.g. cp1252 or latin-1 for "
            "exports from older Windows tools",
        )


def _find_undecodable(path: Path, encoding: str) -> tuple[int | None, str | None]:
    """The first line (1-based) holding bytes that ``encoding`` cannot decode, and those bytes."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    try:
        with open(path, "rb") as raw:
            for number, chunk in enumerate(raw, start=1):
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError as exc:
                    return number, _hex(exc.object[exc.start : exc.end])
            decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        return None, _hex(exc.object[exc.start : exc.end])
    except OSError:
        pass
    return None, None


def _starts_with(path: Path, prefixes: tuple[bytes, ...]) -> bool:
    try:
        with open(path, "rb") as raw:
            return raw.read(8).startswith(prefixes)
    except OSError:
        return False


def _hex(data: bytes) -> str:
    return " ".join(f"0x{byte:02x}" for byte in data)
