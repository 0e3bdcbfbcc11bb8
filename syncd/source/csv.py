"""The HR export source: people from a CSV file, read as a stream.

The file is parsed row by row (a 1M-row export is never held in memory) and every row becomes a
:class:`~syncd.model.Person` or one ``record.rejected`` warning. Problems that make the whole file
unusable (missing file, empty file, missing columns, wrong encoding) raise
:class:`~syncd.errors.SourceDataError` before, or instead of, yielding anyone.

Completeness matters because only a complete read may count people as missing: the read is
complete when the parser reached the end of the file cleanly. A file cut off mid-record (an
unterminated quoted field at EOF, or a short last line without a newline, as a half-copied
export looks) is read as far as it goes and reported incomplete.

Hostile input must never cost data: nothing is guessed. A record whose end the parser cannot be
sure of (a stray quote that swallowed the lines after it) stops the read, reported incomplete,
rather than resuming mid-record; a file that changed while it was read, a source that is not a
regular file, an encoding that is no text encoding and UTF-8 read as cp1252 (mojibake) are
refused outright; an out-of-range date or a control character is a rejected record.
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
import os
import re
import stat
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
from syncd.source._records import (
    CONTROL_IN_KEY,
    KEY_SEPARATOR,
    Record,
    clean_name,
    control_character,
    people_of,
    reject_record,
    without_control_characters,
)

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
# 2: out-of-range dates, control characters, a repeated header and mojibake are refused.
_RECORD_FORMAT = 2

# Start dates outside this range are placeholders for "unknown" (0001-01-01, 9999-12-31) or
# typos (20224-01-01), never a real first day; and 0001-01-01 minus the provisioning window
# does not exist, which once made every cycle fail. The bounds are wide on purpose: a start date
# in 1950 (someone's original hire date) or in 2150 is odd but harmless.
EARLIEST_START_DATE = date(1900, 1, 1)
LATEST_START_DATE = date(2199, 12, 31)

# A field longer than this is a rejected record (a whole document pasted into a notes column).
# It is the csv module's default limit, which every export syncd has read so far lived within.
MAX_FIELD_CHARS = 131_072
# The parser itself is allowed this much, so that a field over MAX_FIELD_CHARS is still parsed
# to its real end and rejected as one record; at the csv default the parser gave up mid-field
# and resumed *inside* it, turning the field's text into people. It bounds memory (the parser
# holds a field as UCS-4: 16 MB) when a stray quote swallows the rest of a huge file; a field
# over it stops the read (incomplete), since where the record ends is then unknown.
PARSER_FIELD_LIMIT = 4 * 1024 * 1024
# A record spanning more physical lines than this is not a postal address or a note with a few
# paragraphs but, in all likelihood, a stray '"' that swallowed the rows after it; its end is a
# guess, so the read stops there (incomplete). 100 lines is far beyond any multi-line field
# seen in HR exports, and far below the thousands of rows a runaway quote swallows.
MAX_RECORD_LINES = 100
# A token at the anchor's place in a line inside a quoted field that has no whitespace: with a
# full row's worth of delimiters around it, that line looks like a record a stray quote swallowed.
_TOKEN = re.compile(r"\S+")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
# No export tool writes a NUL. A run of them is what a crash leaves in a file written just before
# it (delayed allocation: a block of zeros in place of rows), so it marks damage, not a value.
_DAMAGE = "\x00"
# Values quoted in messages are cut to this many characters: a runaway field may be megabytes.
_SHOWN_CHARS = 80

# Text codecs Python has that are not file encodings: they rewrite the text while decoding it
# (backslash escapes, UTF-7's "+" runs that would eat "a+b@example.com", host-name codecs), so a
# read "succeeds" with values nobody wrote.
_NOT_FILE_ENCODINGS = {
    "unicode-escape": "it interprets backslash escapes",
    "raw-unicode-escape": "it interprets backslash escapes",
    "utf-7": "'+' starts an encoded run in it, so e-mail addresses with '+' change",
    "punycode": "it is for host names",
    "idna": "it is for host names",
    "undefined": "it decodes nothing",
}
# A generic "utf-16"/"utf-32" needs a byte order mark; these say which way round a file without
# one is.
_NEEDS_BOM = {"utf-16": "utf-16-le or utf-16-be", "utf-32": "utf-32-le or utf-32-be"}
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_UTF16_HINT = "the file starts with a UTF-16 byte order mark: set source.encoding: utf-16"
_ENCODING_HINT = "use the file's character encoding, such as utf-8, utf-16, cp1252 or latin-1"
# A UTF-8 lead byte (two- to four-byte sequences) and a continuation byte.
_UTF8_LEADS = range(0xC2, 0xF5)
_UTF8_CONTINUATIONS = range(0x80, 0xC0)
# Where a UTF-8 file read as UTF-8 may still hold mojibake: text encoded twice by the HR tool.
_DOUBLE_ENCODINGS = ("cp1252", "latin-1")
# Error paths that look at the raw file read it in chunks of this many bytes.
_SNIFF_CHUNK = 1 << 20

_FILE_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISSOCK, "a socket"),
)

# What the checks of an odd record (see ``CsvReader._odd_record``) decide.
_GO, _SKIP, _STOP = 0, 1, 2


class DateParser:
    """Parse start dates with the configured strptime formats, tried in order.

    ``strptime`` costs several microseconds, which adds up over 100k rows, so ISO dates take a
    fast path and results are cached: HR start dates cluster on few distinct days.

    A date outside EARLIEST_START_DATE..LATEST_START_DATE is no start date (see there): it is
    refused like an unparseable one, and :meth:`problem` says which of the two it was.
    """

    _CACHE_LIMIT = 20_000

    def __init__(self, formats: list[str]) -> None:
        self.formats = tuple(formats)
        self._iso_first = self.formats[0] == "%Y-%m-%d"
        self._cache: dict[str, date | None] = {}

    def __call__(self, text: str) -> date | None:
        """The date, or None when no format matches or the date is out of range."""
        try:
            return self._cache[text]
        except KeyError:
            pass
        parsed = self._parse(text)
        if parsed is not None and out_of_range(parsed) is not None:
            parsed = None
        if len(self._cache) >= self._CACHE_LIMIT:
            self._cache.clear()
        self._cache[text] = parsed
        return parsed

    def problem(self, text: str) -> str:
        """Why ``text`` gave None: out of range, or unparseable (the slow path of a rejection)."""
        parsed = self._parse(text)
        reason = out_of_range(parsed) if parsed is not None else None
        if reason is not None:
            return f"date {text!r}: {reason}"
        return f"unparseable date {text!r} (sync.date_format: {', '.join(self.formats)})"

    def parse_any(self, text: str) -> date | None:
        """The date in any range (for the LDAP mapper's messages); not cached."""
        return self._parse(text)

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


def out_of_range(value: date) -> str | None:
    """Why ``value`` cannot be a start date, or None when it can (CSV and LDAP share this)."""
    if EARLIEST_START_DATE <= value <= LATEST_START_DATE:
        return None
    return (
        f"outside {EARLIEST_START_DATE.isoformat()}..{LATEST_START_DATE.isoformat()}, "
        "no real start date (a placeholder for 'unknown'?)"
    )


class _Lines:
    """The file's lines as the csv module sees them, remembering what the parser cannot tell us.

    ``last`` is the latest physical line (a line without a newline can only be the file's last);
    ``eof`` turns True when the parser asked for a line past the end, which it only does while a
    record is still open, i.e. inside a quoted field that the end of the file cut off. ``odd``
    turns True with ``eof``, on a line longer than MAX_FIELD_CHARS (it may hold a field too long
    to accept) and on a line with a NUL (see _DAMAGE): the one flag the hot loop looks at; the
    reader resets it once it has looked. The csv parser never reads ahead, so the lines since
    the last record are the current one's. (Both tests are C-speed: memchr for the NUL.)
    """

    __slots__ = ("eof", "file", "last", "odd")

    def __init__(self, file: IO[str]) -> None:
        self.file = file
        self.last = ""
        self.eof = False
        self.odd = False

    def __iter__(self) -> Iterator[str]:
        limit, damage = MAX_FIELD_CHARS, _DAMAGE  # locals: read once per line each
        for line in self.file:
            self.last = line
            if len(line) > limit or damage in line:
                self.odd = True
            yield line
        self.eof = self.odd = True


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
        _check_file_encoding(config.encoding, codec)
        # Excel and many HR tools write a UTF-8 BOM; utf-8-sig drops it and reads plain UTF-8 too.
        self.encoding = "utf-8-sig" if codec == "utf-8" else config.encoding
        self._codec = codec
        self._utf8 = codec in ("utf-8", "utf-8-sig")
        # What UTF-8 text looks like when it was read with a wrong single-byte encoding (or, read
        # as UTF-8, when the HR tool encoded it twice); None: no such check for this codec.
        self._mojibake_codecs = _DOUBLE_ENCODINGS if self._utf8 else (codec,)
        leads, continuations = _utf8_misread(self._mojibake_codecs)
        self._mojibake = re.compile(f"[{leads}][{continuations}]") if leads else None
        # One pass over each new or changed key looks for both control characters and the
        # second character of mojibake (a symbol no name holds, mostly): a regex search costs
        # about 0.25 µs a key, and the precise checks run only on a hit.
        self._suspect = re.compile(f"[{CONTROL_IN_KEY}{continuations}]")
        # Where each field sits in a record's key; set from the header by records().
        self._key_width = 3
        self._key_fields: list[str] = []
        self._k_email = self._k_start = self._k_status = -1
        # The extra fields (source.columns.fields) sit at the end of the key, in config order.
        self._field_names = tuple(config.columns.fields)
        self._k_fields = -1

    def describe(self) -> str:
        return f"csv {self.path}"

    def sample(self, limit: int = 5) -> list[Person]:
        """The first ``limit`` valid people, for ``syncd validate``; stops reading early."""
        with closing(self.read(ReadReport())) as people:
            return list(islice(people, limit))

    def probe(self, limit: int = 5) -> tuple[list[Person], list[str]]:
        """:meth:`sample`, and a warning for ``syncd validate`` when syncd would find nobody in
        the export (no usable row means every row was read and rejected)."""
        report = ReadReport()
        with closing(self.read(report)) as people:
            sample = list(islice(people, limit))
        if sample:
            return sample, []
        if report.read == 0:
            return [], [f"source.path: HR export {self.path} has no rows: syncd would see nobody"]
        return [], [
            f"source: none of the {report.read} rows of {self.path} is usable: each was "
            "rejected (the record.rejected lines above say why), so syncd would see nobody"
        ]

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
                sorted(columns.fields.items()),
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

        Raises SourceDataError (before yielding anything) when the file cannot be opened, is not
        a regular file, is empty or lacks a configured column; whenever bytes cannot be decoded;
        and at the end when the file changed while it was read.
        """
        report.complete = False
        report.incomplete_reason = None
        file, opened = self._open()
        # The csv module's default limit made the parser give up mid-field and resume inside it;
        # see PARSER_FIELD_LIMIT. Module-wide, so only ever raised (nothing else in syncd reads
        # CSV; a caller that set a higher limit keeps it).
        if csv.field_size_limit() < PARSER_FIELD_LIMIT:
            csv.field_size_limit(PARSER_FIELD_LIMIT)
        with file:
            lines = _Lines(file)
            rows = csv.reader(iter(lines), delimiter=self.config.delimiter)
            try:
                yield from self._read_rows(rows, lines, report)
            except UnicodeDecodeError as exc:
                raise self._decode_error(exc) from None
            except UnicodeError as exc:
                # Not a bad byte but a codec refusing the stream (utf-16 without a byte order
                # mark): it would otherwise end in a traceback.
                raise self._codec_error(exc) from None
            except csv.Error as exc:
                # Only the header gets here; a data record the parser gives up on stops the read.
                raise SourceDataError(
                    f"cannot parse the header of HR export {self.path} "
                    f"(line {rows.line_num}): {exc}"
                ) from None
            except OSError as exc:
                raise SourceDataError(
                    f"error while reading HR export {self.path} after line {rows.line_num}: "
                    f"{exc.strerror or exc}"
                ) from None
            self._check_unchanged(file, opened, report)

    def _open(self) -> tuple[IO[str], os.stat_result]:
        """Open the export, refusing anything but a regular file before reading a byte.

        A FIFO or a device (/dev/zero) would be read forever. O_NONBLOCK keeps the open itself
        from waiting for a FIFO's writer; the descriptor is made blocking again for the read.
        """
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as exc:
            raise SourceDataError(
                f"cannot read HR export {self.path}: {exc.strerror or exc}",
                hint="check source.path and that syncd's user may read the file",
            ) from None
        try:
            opened = os.fstat(fd)
            if not stat.S_ISREG(opened.st_mode):
                kind = next(
                    (name for test, name in _FILE_KINDS if test(opened.st_mode)), "not a file"
                )
                raise SourceDataError(
                    f"HR export {self.path} is {kind}, not a regular file: syncd reads the "
                    "export to its end, which such a source does not have; nothing was read",
                    hint="set source.path to the exported CSV file itself",
                )
            os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
        # io.open closes fd itself if it fails.
        return open(fd, encoding=self.encoding, newline=""), opened

    def _check_unchanged(self, file: IO[str], opened: os.stat_result, report: ReadReport) -> None:
        """Refuse a read of a file that was rewritten or appended to while it was read.

        The rows read may be spliced from two versions (an anchor from one and names from the
        other: a name change nobody made, or a person nobody is). Records already yielded cannot
        be taken back, but the cycle stages the whole read before it plans anything, so raising
        here means nothing of it is used: stronger than reporting it incomplete, which would
        still provision (and, in today's engine, rename) from spliced rows. A file *replaced*
        (written elsewhere, renamed into place) does not get here: the open descriptor still
        reads the old file whole, which is a consistent read.
        """
        now = os.fstat(file.fileno())
        if (now.st_size, now.st_mtime_ns) == (opened.st_size, opened.st_mtime_ns):
            return
        change = (
            f"size {opened.st_size} -> {now.st_size} bytes"
            if now.st_size != opened.st_size
            else "modified again, same size"
        )
        reason = f"HR export {self.path} changed while it was read ({change})"
        self._incomplete(report, reason)
        raise SourceDataError(
            f"{reason}: rows may be spliced from two versions, so nothing from this read was used",
            hint="the next cycle reads it again; have the export written to a temporary file and "
            "renamed into place, then no read can see it half-written",
        )

    def origin(self, record: Record) -> str:
        return f"line {record[2]}"

    def person(self, record: Record, report: ReadReport) -> Person | None:
        """The person in one record, or None after a ``record.rejected`` line saying why.

        Raises SourceDataError when the record shows that the whole file is read with the wrong
        encoding (UTF-8 read as cp1252: "RenÃ© MÃ¼ller"). Only records that are new or changed
        get here (the stager skips unchanged blocks), so these checks cost a steady cycle nothing.
        """
        anchor, key, line = record
        values = key.split(KEY_SEPARATOR)
        columns = self.config.columns
        if len(values) != self._key_width:
            reason = "a value holds the control character U+001F"
            self._reject(report, line, anchor, "*", reason)
            return None
        suspect = self._suspect.search(key) is not None
        if suspect and self._mojibake is not None and self._mojibake.search(key):
            mojibake = self._mojibake_reason(values, line)
            if mojibake is not None:
                self._reject(report, line, anchor, *mojibake)
                return None
        first = values[1].strip()
        last = values[2].strip()
        if (
            last == columns.last_name
            and first == columns.first_name
            and anchor.removeprefix(_BOM) == columns.anchor
        ):
            # Two exports joined into one file: the rows after this line may repeat (first one
            # wins) or contradict those before; counting anyone as gone from it is a guess.
            reason = "the header line again: the file looks like two exports joined"
            self._reject(report, line, "", "*", reason)
            self._incomplete(report, f"{reason} (line {line})")
            return None
        if suspect and self._reject_control(report, values, line):
            return None
        names = self._required(report, line, anchor, first, last)
        if names is None:
            return None
        first, last = names
        start_date = None
        if self._k_start >= 0:
            text = values[self._k_start].strip()
            if text:
                start_date = self.parse_date(text)
                if start_date is None:
                    reason = self.parse_date.problem(text)
                    self._reject(report, line, anchor, columns.start_date or "", reason)
                    return None
        email = (values[self._k_email].strip() or None) if self._k_email >= 0 else None
        disabled = (
            self._k_status >= 0
            and values[self._k_status].strip().casefold() not in self.active_values
        )
        fields: tuple[tuple[str, str], ...] = ()
        if self._k_fields >= 0:
            fields = tuple(
                zip(self._field_names, (v.strip() for v in values[self._k_fields :]), strict=True)
            )
        return Person(
            anchor, first, last, email, start_date, disabled, origin=f"line {line}", fields=fields
        )

    def _required(
        self, report: ReadReport, line: int, anchor: str, first: str, last: str
    ) -> tuple[str, str] | None:
        """``person``'s check of the anchor and the names: the names as a mailbox may carry
        them (see ``clean_name``), or None after rejecting the record with field and reason."""
        columns = self.config.columns
        if not anchor or not first or not last:
            if not anchor:
                field = columns.anchor
            elif not first:
                field = columns.first_name
            else:
                field = columns.last_name
            self._reject(report, line, anchor, field, "empty")
            return None
        first, first_problem = clean_name(first)
        last, last_problem = clean_name(last)
        if first_problem is not None or last_problem is not None:
            field = columns.first_name if first_problem is not None else columns.last_name
            self._reject(report, line, anchor, field, first_problem or last_problem or "")
            return None
        return first, last

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
        self._k_fields = len(wanted) if columns.fields else -1
        wanted += [header.index(name) for name in columns.fields.values()]
        self._key_width = len(wanted)
        self._key_fields = [header[index] for index in wanted]
        key_of = itemgetter(*wanted)
        join = KEY_SEPARATOR.join
        # rows.line_num counts the physical lines consumed so far, so a record starts on the line
        # after the previous record's last one (quoted fields may span lines).
        line_num = rows.line_num

        try:
            # A plain for loop is the fast path (a 100k export goes through it in a blink): one
            # comparison and one flag per record pick out the rare odd one (several lines, a very
            # long line, the end of the file inside quotes) for a closer look.
            for row in rows:
                start, line_num = line_num + 1, rows.line_num
                if line_num != start or lines.odd:
                    verdict = self._odd_record(report, row, start, line_num, header, lines)
                    if verdict == _STOP:
                        return
                    if verdict == _SKIP:
                        continue
                if len(row) != width:
                    if self._bad_width(report, row, start, header, i_anchor, lines):
                        return
                    continue
                anchor = row[i_anchor].strip()
                if not anchor and not any(value.strip() for value in row):
                    continue  # a row of empty cells, as spreadsheets leave at the end
                report.read += 1
                yield anchor, join(key_of(row)), start
        except csv.Error as exc:
            # The parser gave up inside a record (a field over PARSER_FIELD_LIMIT). It would
            # resume on the next physical line, which may be inside that record: text of a field
            # taken for people. Where the record ends is unknown, so the read stops here.
            start = line_num + 1
            why = f"a field runs past {PARSER_FIELD_LIMIT} characters, the parser's limit ({exc})"
            self._unsure(report, start, rows.line_num, "", columns.anchor, why)
            return

        # A record may have said otherwise on the way (``person``: the header repeated).
        if report.incomplete_reason is None:
            report.complete = True

    def _odd_record(
        self,
        report: ReadReport,
        row: list[str],
        start: int,
        end: int,
        header: list[str],
        lines: _Lines,
    ) -> int:
        """A closer look at a record on lines ``start``..``end`` that the hot loop found odd:
        ``_GO`` (read it as usual), ``_SKIP`` (rejected) or ``_STOP`` (the read ends here)."""
        i_anchor = header.index(self.config.columns.anchor)
        if lines.eof:
            self._cut_off_in_quotes(report, row, start, header, i_anchor)
            return _STOP
        lines.odd = False
        anchor = _plain_anchor(row, i_anchor)
        if end != start:
            doubt = self._doubt(row, start, end, header, i_anchor)
            if doubt is not None:
                self._unsure(report, start, end, anchor, *doubt)
                return _STOP
        damaged = next((i for i, value in enumerate(row) if _DAMAGE in value), None)
        if damaged is not None:
            # The rows the damage overwrote are gone from this read without a trace: nobody
            # may count as missing from it. The records around it are delimited as ever.
            report.read += 1
            reason = "NUL bytes: the file looks damaged (a crash or a disk fault)"
            self._reject(report, start, anchor, header[min(damaged, len(header) - 1)], reason)
            self._incomplete(report, f"{reason} on line {start}; nobody is counted as gone")
            return _SKIP
        # A record whose lines are certain but with a field too long to be a value: the parser
        # read it to its real end (PARSER_FIELD_LIMIT), so rejecting it alone is safe.
        too_long = next((i for i, value in enumerate(row) if len(value) > MAX_FIELD_CHARS), None)
        if too_long is None:
            return _GO
        report.read += 1
        field = header[min(too_long, len(header) - 1)]
        reason = (
            f"unreadable row: the field is {len(row[too_long])} characters long, more than "
            f"{MAX_FIELD_CHARS} (a document pasted into it?)"
        )
        self._reject(report, start, anchor, field, reason)
        return _SKIP

    def _doubt(
        self, row: list[str], start: int, end: int, header: list[str], i_anchor: int
    ) -> tuple[str, str] | None:
        """Why the end of a record over several lines is in doubt, as (field, why); None when
        it looks like what it should be: a quoted value with a few line breaks in it.

        A stray '"' opens a quoted field that runs on until the next '"' in the file, swallowing
        the rows between; the parser cannot tell. What gives it away: many lines, a wrong number
        of fields, or a line inside the field that looks like a row of its own.
        """
        width = len(header)
        span = end - start + 1
        # The field holding the line breaks: where the stray quote most likely is.
        multi = next((i for i, value in enumerate(row) if _LINE_BREAK.search(value)), width - 1)
        field = header[min(multi, width - 1)]
        if span > MAX_RECORD_LINES:
            return field, f"it spans {span} lines ({start}-{end}), more than {MAX_RECORD_LINES}"
        if len(row) != width:
            return field, (
                f"it spans {span} lines (lines {start}-{end}) and has {len(row)} fields, "
                f"the header {width}"
            )
        delimiter = self.config.delimiter
        for value in row:
            for piece in _LINE_BREAK.split(value)[1:]:
                parts = piece.split(delimiter)
                if len(parts) >= width and _TOKEN.fullmatch(parts[i_anchor].strip()):
                    shown = piece if len(piece) <= _SHOWN_CHARS else piece[:_SHOWN_CHARS] + "..."
                    return field, (
                        f"a line inside its field looks like a record of its own: {shown!r} "
                        f"(lines {start}-{end})"
                    )
        return None

    def _unsure(
        self, report: ReadReport, start: int, end: int, anchor: str, field: str, why: str
    ) -> None:
        """Reject the record on lines ``start``..``end`` and end the read as incomplete.

        Resuming after it would mean guessing where the next record starts: on the next line
        there may be the rest of this one (a field's text taken for a person: a mailbox for
        someone who does not exist). What was read before it stands; nobody is counted as gone.
        """
        report.read += 1
        self._reject(report, start, anchor, field, f"cannot tell where this record ends: {why}")
        self._incomplete(
            report,
            f"cannot tell where the record starting on line {start} ends: {why}; a stray '\"' "
            f"in it? The read stopped there: nothing after line {start} was read and nobody is "
            "counted as gone; fix the export and the next cycle reads it all",
        )

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
                *columns.fields.values(),
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

    def _reject_control(self, report: ReadReport, values: list[str], line: int) -> bool:
        """Reject a record with a control character (a NUL, a tab, a BOM) in a value: an anchor
        "E1\\x00" is another person than "E1", and a name with one is no mailbox name.

        False (nothing rejected) when they are only whitespace around values ("E1\\t"), which
        is stripped anyway, as it always was.
        """
        found = next(
            (
                (i, char)
                for i, value in enumerate(values)
                if (char := control_character(value.strip())) is not None
            ),
            None,
        )
        if found is None:
            return False
        index, char = found
        value = values[index].strip()
        shown = value if len(value) <= _SHOWN_CHARS else value[:_SHOWN_CHARS] + "..."
        # Broken, not gone: logged (and kept from counting as missing) as the person it most
        # likely is, the anchor without its invisible characters.
        anchor = without_control_characters(values[0]).strip()
        reason = f"{shown!r} holds the control character {char}"
        self._reject(report, line, anchor, self._key_fields[index], reason)
        return True

    def _mojibake_reason(self, values: list[str], line: int) -> tuple[str, str] | None:
        """(field, reason) when a value is UTF-8 text decoded with a single-byte encoding
        ("RenÃ©" for "René"); None when the pattern was a coincidence.

        With a single-byte source.encoding the whole file is read wrongly: the read is refused
        (every name would become a mailbox named in mojibake). Read as UTF-8, it is text the HR
        tool encoded twice: no setting fixes that, so only that record is rejected.
        """
        assert self._mojibake is not None
        for index, value in enumerate(values):
            if value.isascii() or not self._mojibake.search(value):
                continue
            fixed = _as_utf8(value, self._mojibake_codecs)
            if fixed is None:
                continue
            field = self._key_fields[index]
            if not self._utf8:
                raise SourceDataError(
                    f"HR export {self.path} looks like UTF-8 read as {self.config.encoding}: "
                    f"line {line}, {field} {value!r} reads {fixed!r} as UTF-8; nothing from "
                    "this read was used",
                    hint="set source.encoding: utf-8",
                )
            return field, f"{value!r} looks like UTF-8 encoded twice ({fixed!r}); fix it at HR"
        return None

    def _codec_error(self, exc: UnicodeError) -> SourceDataError:
        """The codec refused the stream as a whole (no byte order mark for utf-16/utf-32)."""
        message = f"cannot decode HR export {self.path} as {self.config.encoding}: {exc}"
        need = _NEEDS_BOM.get(self._codec)
        if need is None:
            return SourceDataError(message, hint="set source.encoding to the file's encoding")
        order = _utf16_order(self.path) if self._codec == "utf-16" else None
        return SourceDataError(
            message,
            hint="the file has no byte order mark to say which way round it is: set "
            f"source.encoding: {order or need}",
        )

    def _missing_columns_error(self, missing: list[str], header: list[str]) -> SourceDataError:
        # Each missing header beside the key(s) that name it: the admin fixes the key or the file.
        keys: dict[str, list[str]] = {}
        columns = self.config.columns
        named = [(key, getattr(columns, key)) for key in type(columns).model_fields]
        named += [(f"fields.{key}", name) for key, name in columns.fields.items()]
        for key, name in named:
            if isinstance(name, str):
                keys.setdefault(name, []).append(f"source.columns.{key}")
        names = ", ".join(f"{name!r} ({', '.join(keys.get(name, []))})" for name in missing)
        shown = ", ".join(repr(name) for name in header[:_HEADER_SHOWN])
        if len(header) > _HEADER_SHOWN:
            shown += f", ... ({len(header) - _HEADER_SHOWN} more)"
        message = f"HR export {self.path} lacks the column(s) {names}; its header has: {shown}"
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
        elif not self._codec.startswith("utf-16") and _starts_with(self.path, _UTF16_BOMS):
            hints.append(_UTF16_HINT)
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
        where = f"on line {line}" if line else "somewhere"
        byte = f" (byte {bad})" if bad else ""
        message = (
            f"cannot decode HR export {self.path} as {self.config.encoding}: "
            f"bad bytes {where}{byte}: {exc.reason}"
        )
        if _starts_with(self.path, _SPREADSHEET_MAGIC):
            return SourceDataError(
                message,
                hint="this is a spreadsheet workbook, not CSV: have HR export it as CSV",
            )
        if self._codec.startswith(("utf-16", "utf-32")):
            order = _utf16_order(self.path) if self._codec.startswith("utf-16") else None
            return SourceDataError(
                message,
                hint=f"set source.encoding: {order}"
                if order is not None and order != self._codec
                else "set source.encoding to the file's encoding (e.g. utf-8): it does not "
                "read as this one",
            )
        if _starts_with(self.path, _UTF16_BOMS):
            return SourceDataError(message, hint=_UTF16_HINT)
        if not self._utf8 and _reads_as_utf8(self.path):
            # cp1252 leaves five bytes undefined, two of them in UTF-8's "Ł" and "Ś".
            hint = "the file reads as UTF-8: set source.encoding: utf-8"
            return SourceDataError(message, hint=hint)
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
    except (OSError, UnicodeError):
        pass  # the message goes without the line rather than with a traceback
    return None, None


def _reads_as_utf8(path: Path) -> bool:
    """Whether the whole file is valid UTF-8 holding something beyond ASCII (an error path)."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
    beyond_ascii = False
    try:
        with open(path, "rb") as raw:
            while chunk := raw.read(_SNIFF_CHUNK):
                decoder.decode(chunk)
                beyond_ascii = beyond_ascii or not chunk.isascii()
            decoder.decode(b"", final=True)
    except (OSError, UnicodeError):
        return False
    return beyond_ascii


def _check_file_encoding(name: str, codec: str) -> None:
    """Raise ConfigError unless ``codec`` can decode a CSV file as it was written."""
    try:
        # What open() itself asks of an encoding: rot13 (text to text) and base64 (bytes to
        # bytes) are codecs, but not text encodings.
        io.TextIOWrapper(io.BytesIO(), encoding=codec)
    except LookupError:
        raise ConfigError(
            f"at 'source.encoding': {name!r} is not a text encoding (it converts text to text "
            "or bytes to bytes); no file is written in it",
            hint=_ENCODING_HINT,
        ) from None
    why = _NOT_FILE_ENCODINGS.get(codec)
    if why is not None:
        raise ConfigError(
            f"at 'source.encoding': {name!r} cannot be used for an HR export: {why}",
            hint=_ENCODING_HINT,
        )


def _utf8_misread(names: tuple[str, ...]) -> tuple[str, str]:
    """UTF-8 lead and continuation bytes as the single-byte encodings ``names`` decode them
    ("Ã" and "©" for the two bytes of "é"), as regex character class bodies; empty for
    multi-byte encodings, whose characters do not map to single bytes."""
    leads: set[str] = set()
    continuations: set[str] = set()
    high = bytes(range(0x80, 0x100))
    for name in names:
        if len(high.decode(name, errors="replace")) != len(high):
            continue
        leads.update(bytes([byte]).decode(name, errors="ignore") for byte in _UTF8_LEADS)
        continuations.update(
            bytes([byte]).decode(name, errors="ignore") for byte in _UTF8_CONTINUATIONS
        )
    leads.discard("")
    continuations.discard("")
    if not leads or not continuations:
        return "", ""
    return (
        "".join(re.escape(char) for char in sorted(leads)),
        "".join(re.escape(char) for char in sorted(continuations)),
    )


def _as_utf8(value: str, names: tuple[str, ...]) -> str | None:
    """``value`` as it reads when its bytes under one of ``names`` are decoded as UTF-8, when
    that succeeds and changes it: the proof that the pattern was mojibake, not a coincidence."""
    for name in names:
        try:
            fixed = value.encode(name).decode("utf-8")
        except UnicodeError:
            continue
        if fixed != value:
            return fixed
    return None


def _plain_anchor(row: list[str], i_anchor: int) -> str:
    """The row's anchor for a log line, or "" when it cannot be one (a runaway field)."""
    anchor = row[i_anchor].strip() if i_anchor < len(row) else ""
    if len(anchor) > _SHOWN_CHARS or _LINE_BREAK.search(anchor):
        return ""
    return anchor


def _utf16_order(path: Path) -> str | None:
    """utf-16-le or utf-16-be from where the NUL bytes of ASCII text sit, or None."""
    try:
        with open(path, "rb") as raw:
            head = raw.read(2)
    except OSError:
        return None
    if len(head) == 2 and head[0] and not head[1]:
        return "utf-16-le"
    if len(head) == 2 and head[1] and not head[0]:
        return "utf-16-be"
    return None


def _starts_with(path: Path, prefixes: tuple[bytes, ...]) -> bool:
    try:
        with open(path, "rb") as raw:
            return raw.read(8).startswith(prefixes)
    except OSError:
        return False


def _hex(data: bytes) -> str:
    return " ".join(f"0x{byte:02x}" for byte in data)
