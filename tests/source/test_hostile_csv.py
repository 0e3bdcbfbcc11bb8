"""Hostile HR exports must never cost data: real files, the real reader, no mocks.

Each case is one way an export has gone wrong in the field: a long notes column, a stray quote,
a placeholder date, a file rewritten under the read, a FIFO, a codec that is no file encoding,
a NUL in an anchor, UTF-8 read as cp1252; and neighbours of them (a header repeated mid-file,
mixed line ends). What is asserted is what an administrator sees: who was read, which record
was rejected with which field and reason, whether the read counts as complete, the message.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncd.config import CsvSource, SyncConfig
from syncd.errors import ConfigError, SourceDataError
from syncd.model import Person, ReadReport
from syncd.source.csv import (
    MAX_FIELD_CHARS,
    MAX_RECORD_LINES,
    PARSER_FIELD_LIMIT,
    CsvReader,
)
from tests.support.events import EventCollector, collecting

HEADER = "employee_id,first_name,last_name,email,start_date,status,notes\n"
COLUMNS = {
    "anchor": "employee_id",
    "first_name": "first_name",
    "last_name": "last_name",
    "email": "email",
    "start_date": "start_date",
    "status": "status",
}


def row(n: int, notes: str = "ok") -> str:
    return f"E{n:05d},First{n},Last{n},,2024-01-01,active,{notes}\n"


def rows(first: int, last: int) -> str:
    return "".join(row(n) for n in range(first, last + 1))


def make_reader(path: Path, **source: Any) -> CsvReader:
    data: dict[str, Any] = {"type": "csv", "path": str(path), "columns": dict(COLUMNS)}
    data.update(source)
    return CsvReader(CsvSource.model_validate(data), SyncConfig())


def write(tmp_path: Path, content: str | bytes) -> Path:
    path = tmp_path / "hr.csv"
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def read_all(reader: CsvReader) -> tuple[list[Person], ReadReport]:
    report = ReadReport()
    return list(reader.read(report)), report


@pytest.fixture
def events() -> Iterator[EventCollector]:
    with collecting("syncd.source.csv") as collector:
        yield collector


def rejected(events: EventCollector) -> list[dict[str, Any]]:
    return [event.fields for event in events.named("record.rejected")]


# ------------------------------------------------------------ 17: a field over the size limit


def test_a_long_field_holding_a_person_shaped_line_makes_nobody_of_it(
    tmp_path: Path, events: EventCollector
) -> None:
    # The csv module's limit used to make the parser give up mid-field and resume on the next
    # line, inside the field: "E00666,Ghost,Person" became a person in a read called complete.
    notes = '"' + "x" * (MAX_FIELD_CHARS + 10) + '\nE00666,Ghost,Person,,,active,zzz\nmore"'
    path = write(tmp_path, HEADER + rows(1, 2) + row(3, notes) + rows(4, 5))

    people, report = read_all(make_reader(path))

    assert [p.anchor for p in people] == ["E00001", "E00002"]
    assert report.complete is False
    assert report.incomplete_reason is not None
    assert "record starting on line 4" in report.incomplete_reason
    assert "nobody is counted as gone" in report.incomplete_reason
    assert report.rejected_anchors == ["E00003"]  # broken, not gone
    [reject] = rejected(events)
    assert (reject["line"], reject["field"]) == (4, "notes")
    assert "looks like a record of its own: 'E00666,Ghost,Person" in reject["reason"]
    [incomplete] = events.named("source.incomplete")
    assert incomplete.fields["reason"] == report.incomplete_reason


def test_a_long_field_on_one_line_is_one_rejected_record_and_the_read_goes_on(
    tmp_path: Path, events: EventCollector
) -> None:
    # Delimiters inside the quotes too: parsed to its real end, the field is one value.
    notes = '"' + "long, notes, " * 20_000 + '"'
    path = write(tmp_path, HEADER + rows(1, 2) + row(3, notes) + rows(4, 5))

    people, report = read_all(make_reader(path))

    assert [p.anchor for p in people] == ["E00001", "E00002", "E00004", "E00005"]
    assert (report.read, report.rejected, report.complete) == (5, 1, True)
    assert report.rejected_anchors == ["E00003"]
    [reject] = rejected(events)
    assert (reject["line"], reject["anchor"], reject["field"]) == (4, "E00003", "notes")
    assert f"260000 characters long, more than {MAX_FIELD_CHARS}" in reject["reason"]


def test_a_long_multiline_note_of_prose_is_rejected_alone(
    tmp_path: Path, events: EventCollector
) -> None:
    paragraph = "Met with HR, IT, Finance, Legal, Sales and Ops, agreed on a plan. " * 400
    notes = '"' + "\n".join([paragraph] * 10) + '"'
    path = write(tmp_path, HEADER + row(1) + row(2, notes) + row(3))

    people, report = read_all(make_reader(path))

    assert [p.anchor for p in people] == ["E00001", "E00003"]
    assert report.complete
    assert [r["field"] for r in rejected(events)] == ["notes"]


def test_a_field_past_the_parsers_own_limit_stops_the_read(
    tmp_path: Path, events: EventCollector
) -> None:
    # A stray quote near the top of a huge file: the field runs past what the parser may hold.
    runaway = '"' + ("y" * 1000 + "\n") * (PARSER_FIELD_LIMIT // 1000 + 10)
    path = write(tmp_path, HEADER + row(1) + row(2, runaway) + rows(3, 4))

    people, report = read_all(make_reader(path))

    assert [p.anchor for p in people] == ["E00001"]
    assert report.complete is False
    assert report.incomplete_reason is not None
    assert "record starting on line 3" in report.incomplete_reason
    assert "parser's limit" in report.incomplete_reason
    assert len(rejected(events)) == 1


# ------------------------------------------------------------ 18: rows a stray quote swallowed


@pytest.mark.parametrize(
    ("stray", "closing", "why"),
    [
        # Opened in notes, closed by a quoted note far below: the right number of fields.
        (40, 40 + MAX_RECORD_LINES + 5, f"more than {MAX_RECORD_LINES}"),
        # Opened in first_name, closed a few rows below: the field count is off.
        (40, 44, "fields, the header 7"),
        # Opened and closed in notes a few rows apart: right count, few lines, but the field
        # holds lines that are rows.
        (40, 44, "looks like a record of its own: 'E00041,First41"),
    ],
    ids=["many-lines", "wrong-width", "swallowed-rows"],
)
def test_a_stray_quote_that_swallows_rows_stops_the_read_incomplete(
    tmp_path: Path, events: EventCollector, stray: int, closing: int, why: str
) -> None:
    lines = [row(n) for n in range(1, 301)]
    if "header" in why:
        lines[stray - 1] = lines[stray - 1].replace(f"First{stray}", f'"First{stray}')
    else:
        lines[stray - 1] = row(stray, '"stray quote')
    lines[closing - 1] = row(closing, '"a quoted note"')
    path = write(tmp_path, HEADER + "".join(lines))

    people, report = read_all(make_reader(path))

    # What came before stands (it may be provisioned); nothing after is guessed at.
    assert [p.anchor for p in people] == [f"E{n:05d}" for n in range(1, stray)]
    assert report.complete is False
    assert report.incomplete_reason is not None
    assert f"record starting on line {stray + 1} ends" in report.incomplete_reason
    assert why in report.incomplete_reason
    assert "a stray '\"'" in report.incomplete_reason
    [reject] = rejected(events)
    assert reject["line"] == stray + 1
    assert reject["anchor"] == f"E{stray:05d}"


def test_a_record_on_exactly_the_most_lines_allowed_is_read(tmp_path: Path) -> None:
    address = '"' + "\n".join(f"address line {i}" for i in range(MAX_RECORD_LINES)) + '"'
    path = write(tmp_path, HEADER + row(1, address) + row(2))
    people, report = read_all(make_reader(path))
    assert [p.anchor for p in people] == ["E00001", "E00002"]
    assert people[1].origin == f"line {MAX_RECORD_LINES + 2}"
    assert report.complete


def test_multiline_notes_with_commas_are_not_taken_for_swallowed_rows(tmp_path: Path) -> None:
    notes = '"Met with HR, IT, Finance, Legal, Sales, Ops, and more\nCall back, later, maybe"'
    path = write(tmp_path, HEADER + row(1, notes) + row(2))
    people, report = read_all(make_reader(path))
    assert [p.anchor for p in people] == ["E00001", "E00002"]
    assert report.complete


# ------------------------------------------------------------------- 19: dates out of range


@pytest.mark.parametrize("text", ["0001-01-01", "1899-12-31", "2200-01-01", "9999-12-31"])
def test_a_start_date_out_of_range_is_a_rejected_field(
    tmp_path: Path, events: EventCollector, text: str
) -> None:
    path = write(tmp_path, HEADER + row(1).replace("2024-01-01", text) + row(2))
    people, report = read_all(make_reader(path))
    assert [p.anchor for p in people] == ["E00002"]
    assert report.complete
    assert report.rejected_anchors == ["E00001"]
    [reject] = rejected(events)
    assert reject["field"] == "start_date"
    assert reject["reason"] == (
        f"date {text!r}: outside 1900-01-01..2199-12-31, no real start date "
        "(a placeholder for 'unknown'?)"
    )


@pytest.mark.parametrize("text", ["1900-01-01", "2199-12-31"])
def test_the_bounds_themselves_are_start_dates(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, HEADER + row(1).replace("2024-01-01", text))
    people, _ = read_all(make_reader(path))
    assert [str(p.start_date) for p in people] == [text]


# ----------------------------------------------------- 23: a file that changes under the read


def test_a_file_appended_to_during_the_read_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + rows(1, 3))
    report = ReadReport()
    people = make_reader(path).read(report)
    assert next(people).anchor == "E00001"
    with path.open("a") as file:
        file.write(row(4))
    with pytest.raises(SourceDataError) as caught:
        list(people)
    message = str(caught.value)
    assert f"HR export {path} changed while it was read (size" in message
    assert "nothing from this read was used" in message
    assert "renamed into place" in message
    assert report.complete is False


def test_a_file_rewritten_in_place_at_the_same_size_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + rows(1, 3))
    report = ReadReport()
    people = make_reader(path).read(report)
    next(people)
    before = path.stat()
    with path.open("r+") as file:  # in place: same inode, same size, names swapped
        file.write(HEADER + rows(1, 3).replace("First2", "Fir2st"))
    # A later mtime for sure, whatever the file system's timestamp granularity.
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
    with pytest.raises(SourceDataError, match="modified again, same size"):
        list(people)
    assert report.complete is False


def test_a_file_replaced_by_rename_during_the_read_is_read_whole(tmp_path: Path) -> None:
    # An export written aside and renamed into place: the open file is still the old one, whole.
    path = write(tmp_path, HEADER + rows(1, 3))
    report = ReadReport()
    people = make_reader(path).read(report)
    first = next(people)
    replacement = tmp_path / "new.csv"
    replacement.write_text(HEADER + rows(7, 9))
    replacement.replace(path)
    assert [first.anchor] + [p.anchor for p in people] == ["E00001", "E00002", "E00003"]
    assert report.complete


# ------------------------------------------------------ 30: sources that are not a file


def test_a_fifo_is_refused_before_reading(tmp_path: Path) -> None:
    fifo = tmp_path / "hr.csv"
    os.mkfifo(fifo)
    outcome: list[BaseException | None] = []

    def read() -> None:
        try:
            read_all(make_reader(fifo))
            outcome.append(None)
        except BaseException as exc:  # handed over to the test's thread
            outcome.append(exc)

    worker = threading.Thread(target=read, daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive(), "the reader waited on the FIFO"
    [error] = outcome
    assert isinstance(error, SourceDataError)
    assert f"HR export {fifo} is a named pipe (FIFO), not a regular file" in str(error)
    assert "source.path" in str(error)


@pytest.mark.parametrize(
    ("path", "kind"), [("/dev/zero", "a character device"), ("/tmp", "a directory")]
)
def test_a_device_or_directory_is_refused(path: str, kind: str) -> None:
    with pytest.raises(SourceDataError) as caught:
        read_all(make_reader(Path(path)))
    assert f"HR export {path} is {kind}, not a regular file" in str(caught.value)
    assert "source.path" in str(caught.value)


# ----------------------------------------------------------------- 30: encodings


@pytest.mark.parametrize(
    ("encoding", "problem"),
    [
        ("rot13", "is not a text encoding"),
        ("base64", "is not a text encoding"),
        ("utf-7", "e-mail addresses with '+' change"),
        ("unicode_escape", "backslash escapes"),
        ("punycode", "host names"),
    ],
)
def test_an_encoding_no_file_is_written_in_is_a_config_error(
    tmp_path: Path, encoding: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        make_reader(tmp_path / "hr.csv", encoding=encoding)
    message = str(caught.value)
    assert message.startswith(f"at 'source.encoding': {encoding!r}")
    assert problem in message


UTF16_TEXT = HEADER + "E1,Åsa,Ødegård,,,active,n\n"


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        (UTF16_TEXT.encode("utf-16"), "utf-16"),  # with its byte order mark
        (UTF16_TEXT.encode("utf-16-le"), "utf-16-le"),
        (UTF16_TEXT.encode("utf-16-be"), "utf-16-be"),
        (UTF16_TEXT.encode("utf-16"), "utf-16-le"),  # the mark is dropped from the header
    ],
)
def test_utf16_exports_are_read(tmp_path: Path, data: bytes, encoding: str) -> None:
    people, report = read_all(make_reader(write(tmp_path, data), encoding=encoding))
    assert [(p.anchor, p.first_name, p.last_name) for p in people] == [("E1", "Åsa", "Ødegård")]
    assert report.complete


@pytest.mark.parametrize("order", ["utf-16-le", "utf-16-be"])
def test_utf16_without_a_byte_order_mark_says_which_to_set(tmp_path: Path, order: str) -> None:
    path = write(tmp_path, UTF16_TEXT.encode(order))
    with pytest.raises(SourceDataError) as caught:
        read_all(make_reader(path, encoding="utf-16"))
    message = str(caught.value)
    assert f"cannot decode HR export {path} as utf-16" in message
    assert f"set source.encoding: {order}" in message


def test_a_utf16_file_declared_utf8_says_so(tmp_path: Path) -> None:
    path = write(tmp_path, UTF16_TEXT.encode("utf-16"))
    with pytest.raises(SourceDataError) as caught:
        read_all(make_reader(path))
    assert "set source.encoding: utf-16" in str(caught.value)


# ------------------------------------------------------- 31: control characters, mojibake


@pytest.mark.parametrize(
    ("line", "field", "char", "logged_anchor"),
    [
        ("\ufeffE00001,Ann,Lee,,,active,n\n", "employee_id", "U+FEFF", "E00001"),
        ('E00001,"Ann\tMarie",Lee,,,active,n\n', "first_name", "U+0009", "E00001"),
        ('E00001,Ann,"Lee\nSmith",,,active,n\n', "last_name", "U+000A", "E00001"),
        ("E00001,Ann,Lee\x07,,,active,n\n", "last_name", "U+0007", "E00001"),
    ],
    ids=["bom-in-anchor", "tab-in-name", "newline-in-name", "bell"],
)
def test_a_control_character_in_a_value_rejects_the_record(
    tmp_path: Path, events: EventCollector, line: str, field: str, char: str, logged_anchor: str
) -> None:
    path = write(tmp_path, HEADER + line + row(2))
    people, report = read_all(make_reader(path))
    assert [p.anchor for p in people] == ["E00002"]
    assert report.complete
    # Kept from counting as missing as the person it most likely is.
    assert report.rejected_anchors == [logged_anchor]
    [reject] = rejected(events)
    assert (reject["field"], reject["anchor"]) == (field, logged_anchor)
    assert reject["reason"].endswith(f"holds the control character {char}")


def test_a_nul_in_an_anchor_rejects_the_record_and_counts_nobody_as_gone(
    tmp_path: Path, events: EventCollector
) -> None:
    # "E00001\x00" would be a second person beside "E00001"; and no export tool writes a NUL.
    path = write(tmp_path, HEADER + "E00001\x00,Ann,Lee,,,active,n\n" + row(2))
    people, report = read_all(make_reader(path))
    assert [p.anchor for p in people] == ["E00002"]
    assert report.complete is False
    assert report.incomplete_reason == (
        "NUL bytes: the file looks damaged (a crash or a disk fault) on line 2; "
        "nobody is counted as gone"
    )
    [reject] = rejected(events)
    assert (reject["line"], reject["field"]) == (2, "employee_id")


def test_a_block_of_zeros_in_place_of_rows_makes_the_read_incomplete(
    tmp_path: Path, events: EventCollector
) -> None:
    # What a crash shortly after the export was written can leave: 4 KiB of NULs over rows 3-60,
    # leaving a row that may even have the right number of fields.
    text = (HEADER + rows(1, 100)).encode()
    start = text.index(b"E00003,First3,") + 20
    damaged = text[:start] + b"\x00" * 4096 + text[start + 4096 :]
    people, report = read_all(make_reader(write(tmp_path, damaged)))
    assert report.complete is False
    assert report.incomplete_reason is not None
    assert "looks damaged" in report.incomplete_reason and "line 4" in report.incomplete_reason
    assert [p.anchor for p in people][:2] == ["E00001", "E00002"]
    assert "E00100" in [p.anchor for p in people]  # the rows after the damage are read
    assert rejected(events)[0]["line"] == 4


def test_whitespace_controls_around_a_value_are_stripped_as_always(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "E00001\t,Ann\t,Lee,,,active,n\n")
    people, report = read_all(make_reader(path))
    assert [(p.anchor, p.first_name) for p in people] == [("E00001", "Ann")]
    assert report.rejected == 0


WESTERN_NAMES = "E1,René,Müller,,,active,n\nE3,Zoë,Ødegård,,,active,n\n"


@pytest.mark.parametrize("declared", ["cp1252", "latin-1", "iso8859-15"])
def test_utf8_read_as_a_single_byte_encoding_is_refused(tmp_path: Path, declared: str) -> None:
    # It decodes without an error ("RenÃ©"): only the shape of the text gives it away.
    path = write(tmp_path, (HEADER + WESTERN_NAMES).encode("utf-8"))
    with pytest.raises(SourceDataError) as caught:
        read_all(make_reader(path, encoding=declared))
    message = str(caught.value)
    assert f"HR export {path} looks like UTF-8 read as {declared}: line 2" in message
    assert "first_name 'RenÃ©' reads 'René' as UTF-8" in message
    assert "set source.encoding: utf-8" in message


def test_utf8_that_cp1252_cannot_even_decode_gets_the_same_advice(tmp_path: Path) -> None:
    # "Ł" is C5 81 in UTF-8, and 0x81 is one of the bytes cp1252 leaves undefined.
    path = write(tmp_path, (HEADER + "E2,Łukasz,Wiśniewski,,,active,n\n").encode("utf-8"))
    with pytest.raises(SourceDataError) as caught:
        read_all(make_reader(path, encoding="cp1252"))
    message = str(caught.value)
    assert "cannot decode" in message and "line 2" in message
    assert "the file reads as UTF-8: set source.encoding: utf-8" in message


def test_a_real_cp1252_export_is_not_taken_for_mojibake(tmp_path: Path) -> None:
    names = "E1,Thérèse,O’Brien,,,active,n\nE2,JOÃO,São Paulo,,,active,n\nE3,Šárka,Žák,,,active,n\n"
    path = write(tmp_path, (HEADER + names).encode("cp1252"))
    people, report = read_all(make_reader(path, encoding="cp1252"))
    assert [(p.first_name, p.last_name) for p in people] == [
        ("Thérèse", "O’Brien"),
        ("JOÃO", "São Paulo"),
        ("Šárka", "Žák"),
    ]
    assert report.rejected == 0


def test_utf8_encoded_twice_in_a_utf8_file_rejects_that_record(
    tmp_path: Path, events: EventCollector
) -> None:
    twice = "René".encode().decode("cp1252")  # what the HR tool stored: 'RenÃ©'
    path = write(tmp_path, HEADER + f"E1,{twice},Lee,,,active,n\n" + "E2,René,Lee,,,active,n\n")
    people, report = read_all(make_reader(path))
    assert [(p.anchor, p.first_name) for p in people] == [("E2", "René")]
    [reject] = rejected(events)
    assert reject["field"] == "first_name"
    assert "looks like UTF-8 encoded twice ('René')" in reject["reason"]
    assert report.complete


# ----------------------------------------------------------------------------- neighbours


@pytest.mark.parametrize("bom", ["", "\ufeff"])
def test_a_header_repeated_mid_file_is_no_person_and_the_read_is_incomplete(
    tmp_path: Path, events: EventCollector, bom: str
) -> None:
    # Two exports joined (each with its header, maybe its BOM): a "first_name last_name" person
    # would get a mailbox, and who is missing from such a file is anyone's guess.
    path = write(tmp_path, HEADER + rows(1, 2) + bom + HEADER + rows(3, 4))
    people, report = read_all(make_reader(path))
    assert [p.anchor for p in people] == ["E00001", "E00002", "E00003", "E00004"]
    assert report.complete is False
    assert report.incomplete_reason is not None
    assert "header line again" in report.incomplete_reason
    assert "(line 4)" in report.incomplete_reason
    [reject] = rejected(events)
    assert reject["line"] == 4


def test_mixed_line_ends_are_all_line_ends(tmp_path: Path) -> None:
    text = HEADER + row(1) + row(2).replace("\n", "\r\n") + row(3).replace("\n", "\r") + row(4)
    people, report = read_all(make_reader(write(tmp_path, text)))
    assert [(p.anchor, p.origin) for p in people] == [
        ("E00001", "line 2"),
        ("E00002", "line 3"),
        ("E00003", "line 4"),
        ("E00004", "line 5"),
    ]
    assert report.complete
