"""The HR CSV source: real files in tmp_path, read by the real reader; no mocks."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from syncd.config import CsvSource, SyncConfig
from syncd.errors import ConfigError, SourceDataError
from syncd.model import Person, ReadReport
from syncd.source.csv import CsvReader
from tests.support.sample_data import (
    SAMPLE_PATH,
    SAMPLE_TODAY,
    sample_rows,
    write_hr_csv,
    write_sample_export,
)

HEADER = "employee_id,first_name,last_name,email,start_date,status,department\n"
COLUMNS = {
    "anchor": "employee_id",
    "first_name": "first_name",
    "last_name": "last_name",
    "email": "email",
    "start_date": "start_date",
    "status": "status",
}


# --------------------------------------------------------------------------------- helpers


def make_reader(path: Path, sync: dict[str, Any] | None = None, **source: Any) -> CsvReader:
    data: dict[str, Any] = {"type": "csv", "path": str(path), "columns": dict(COLUMNS)}
    data.update(source)
    return CsvReader(CsvSource.model_validate(data), SyncConfig.model_validate(sync or {}))


def write(tmp_path: Path, content: str | bytes, name: str = "hr.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def read_all(reader: CsvReader) -> tuple[list[Person], ReadReport]:
    report = ReadReport()
    people = list(reader.read(report))
    return people, report


def rejections(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The fields of every ``record.rejected`` event, in order."""
    return [
        dict(getattr(record, "syncd_fields", {}))
        for record in caplog.records
        if record.getMessage() == "record.rejected"
    ]


@pytest.fixture(autouse=True)
def _capture_source_warnings(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    # The syncd logger stops propagating once setup_logging ran in another test; caplog listens
    # on the root logger.
    monkeypatch.setattr(logging.getLogger("syncd"), "propagate", True)
    with caplog.at_level(logging.INFO, logger="syncd.source.csv"):
        yield


# ------------------------------------------------------------------------------- good files


def test_a_good_file_becomes_people_with_their_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        HEADER
        + "E1001, Anna ,Müller,,2024-03-01,active,IT\n"
        + "E1002,Jörg,Weiß,j.weiss@example.com,2026-12-01,terminated,Sales\n"
        + "E1003,Zoé,de la Fontaine,,,Active,Legal\n",
    )
    people, report = read_all(make_reader(path))

    assert people == [
        Person("E1001", "Anna", "Müller", None, date(2024, 3, 1), False),
        Person("E1002", "Jörg", "Weiß", "j.weiss@example.com", date(2026, 12, 1), True),
        Person("E1003", "Zoé", "de la Fontaine", None, None, False),
    ]
    assert [person.origin for person in people] == ["line 2", "line 3", "line 4"]
    assert report.read == 3
    assert report.rejected == 0
    assert report.rejected_anchors == []
    assert report.complete is True
    assert report.incomplete_reason is None


def test_describe_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "hr.csv"
    assert make_reader(path).describe() == f"csv {path}"


def test_a_utf8_bom_is_tolerated(tmp_path: Path) -> None:
    path = write(tmp_path, b"\xef\xbb\xbf" + (HEADER + "E1,Åsa,Ødegård,,,active,IT\n").encode())
    people, report = read_all(make_reader(path))
    assert [(p.anchor, p.first_name, p.last_name) for p in people] == [("E1", "Åsa", "Ødegård")]
    assert report.complete


def test_header_names_are_stripped(tmp_path: Path) -> None:
    path = write(tmp_path, " employee_id , first_name ,last_name\nE1,Ana,Peña\n")
    reader = make_reader(
        path,
        columns={"anchor": "employee_id", "first_name": "first_name", "last_name": "last_name"},
    )
    people, report = read_all(reader)
    assert [p.anchor for p in people] == ["E1"]
    assert report.complete


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_a_custom_delimiter(tmp_path: Path, delimiter: str) -> None:
    text = HEADER + "E1,Łukasz,Wiśniewski,,2024-01-02,active,IT\n"
    path = write(tmp_path, text.replace(",", delimiter))
    people, report = read_all(make_reader(path, delimiter=delimiter))
    assert [(p.anchor, p.last_name, p.start_date) for p in people] == [
        ("E1", "Wiśniewski", date(2024, 1, 2))
    ]
    assert report.complete


def test_another_encoding_from_the_config(tmp_path: Path) -> None:
    path = write(tmp_path, (HEADER + "E1,Thérèse,Lefèvre,,,active,IT\n").encode("cp1252"))
    people, report = read_all(make_reader(path, encoding="cp1252"))
    assert [(p.first_name, p.last_name) for p in people] == [("Thérèse", "Lefèvre")]
    assert report.complete


def test_quoted_fields_may_hold_delimiters_and_newlines(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        HEADER
        + 'E1,"María José","García, López",,,active,"Research\nand Development"\n'
        + "E2,Ewa,Nowak,,,active,IT\n",
    )
    people, report = read_all(make_reader(path))
    assert [(p.first_name, p.last_name, p.origin) for p in people] == [
        ("María José", "García, López", "line 2"),
        ("Ewa", "Nowak", "line 4"),  # the quoted newline made record 1 two physical lines
    ]
    assert report.complete


def test_blank_lines_and_empty_rows_are_not_records(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "\nE1,Ewa,Nowak,,,active,IT\n\n,,,,,,\r\n")
    people, report = read_all(make_reader(path))
    assert [p.origin for p in people] == ["line 3"]
    assert report.read == 1
    assert report.rejected == 0
    assert report.complete


def test_crlf_line_endings(tmp_path: Path) -> None:
    path = write(tmp_path, (HEADER + "E1,Ewa,Nowak,,,active,IT\n").replace("\n", "\r\n"))
    people, report = read_all(make_reader(path))
    assert [(p.anchor, p.origin) for p in people] == [("E1", "line 2")]
    assert report.complete


def test_a_header_only_file_is_a_complete_read_of_nobody(tmp_path: Path) -> None:
    people, report = read_all(make_reader(write(tmp_path, HEADER)))
    assert people == []
    assert report.read == 0
    assert report.complete


def test_duplicate_anchors_are_left_to_the_engine(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "E1,Ewa,Nowak,,,active,IT\nE1,Ewa,Kowalska,,,active,IT\n")
    people, report = read_all(make_reader(path))
    assert [p.last_name for p in people] == ["Nowak", "Kowalska"]
    assert report.rejected == 0


# ------------------------------------------------------------------- status, dates, email


def test_active_values_are_case_insensitive_and_anything_else_is_disabled(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        HEADER
        + "E1,A,One,,,active,IT\n"
        + "E2,B,Two,,,ON LEAVE,IT\n"
        + "E3,C,Three,,,terminated,IT\n"
        + "E4,D,Four,,,,IT\n"
        + "E5,E,Five,,, Active ,IT\n",
    )
    people, _ = read_all(make_reader(path, active_values=["Active", "on leave"]))
    assert {p.anchor: p.disabled for p in people} == {
        "E1": False,
        "E2": False,
        "E3": True,
        "E4": True,  # an empty status is not an active one
        "E5": False,
    }


def test_without_a_status_column_nobody_is_disabled(tmp_path: Path) -> None:
    path = write(tmp_path, "id,given,family\nE1,Ewa,Nowak\n")
    reader = make_reader(
        path, columns={"anchor": "id", "first_name": "given", "last_name": "family"}
    )
    people, report = read_all(reader)
    assert people == [Person("E1", "Ewa", "Nowak")]
    assert report.complete


def test_date_formats_are_tried_in_order(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        HEADER
        + "E1,A,One,,01.02.2025,active,IT\n"
        + "E2,B,Two,,2025-02-03,active,IT\n"
        + "E3,C,Three,,3/4/2025,active,IT\n"
        + "E4,D,Four,,,active,IT\n",
    )
    sync = {"date_format": ["%d.%m.%Y", "%Y-%m-%d", "%m/%d/%Y"]}
    people, report = read_all(make_reader(path, sync=sync))
    assert {p.anchor: p.start_date for p in people} == {
        "E1": date(2025, 2, 1),
        "E2": date(2025, 2, 3),
        "E3": date(2025, 3, 4),
        "E4": None,
    }
    assert report.rejected == 0


def test_a_date_in_a_format_not_configured_is_rejected(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path, HEADER + "E1,A,One,,01.02.2025,active,IT\n")
    people, report = read_all(make_reader(path))  # only %Y-%m-%d
    assert people == []
    assert report.rejected == 1
    [rejected] = rejections(caplog)
    assert rejected["field"] == "start_date"
    assert "01.02.2025" in rejected["reason"]
    assert "%Y-%m-%d" in rejected["reason"]


def test_an_empty_email_is_none(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "E1,A,One,  ,,active,IT\nE2,B,Two, b@example.com ,,active,IT\n")
    people, _ = read_all(make_reader(path))
    assert [p.email for p in people] == [None, "b@example.com"]


# --------------------------------------------------------------------------------- bad rows

GOOD_ROW = "E9,Good,Row,,2024-01-01,active,IT\n"


@pytest.mark.parametrize(
    ("bad_row", "anchor", "field", "reason"),
    [
        (",Anna,Müller,,2024-01-01,active,IT\n", "", "employee_id", "empty"),
        ("E2,  ,Müller,,2024-01-01,active,IT\n", "E2", "first_name", "empty"),
        ("E2,Anna,,,2024-01-01,active,IT\n", "E2", "last_name", "empty"),
        ("E2,Anna,Müller,,2023-02-30,active,IT\n", "E2", "start_date", "unparseable date"),
        ("E2,Anna,Müller,,2024-01-01\n", "E2", "status", "short row"),
        ("E2,Anna,Müller,,2024-01-01,active,IT,extra\n", "E2", "department", "long row"),
    ],
    ids=["missing-anchor", "empty-first", "empty-last", "bad-date", "short-row", "long-row"],
)
def test_a_bad_row_is_rejected_with_one_log_line_and_the_read_goes_on(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    bad_row: str,
    anchor: str,
    field: str,
    reason: str,
) -> None:
    # A blank line and a multi-line record first, so that "line" must be the physical line.
    path = write(
        tmp_path,
        HEADER + "\n" + 'E1,Ewa,Nowak,,,active,"Research\nDevelopment"\n' + bad_row + GOOD_ROW,
    )
    people, report = read_all(make_reader(path))

    assert [p.anchor for p in people] == ["E1", "E9"]
    assert report.read == 3
    assert report.rejected == 1
    assert report.rejected_anchors == ([anchor] if anchor else [])
    assert report.complete

    [rejected] = rejections(caplog)
    assert rejected["source"] == "csv"
    assert rejected["line"] == 5
    assert rejected["anchor"] == anchor
    assert rejected["field"] == field
    assert rejected["reason"].startswith(reason)
    [record] = [r for r in caplog.records if r.getMessage() == "record.rejected"]
    assert record.levelno == logging.WARNING


def test_a_row_over_the_csv_field_limit_is_rejected_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    huge = "x" * 200_000  # over the csv module's 131072-character field limit
    path = write(tmp_path, HEADER + f"E1,A,One,,,active,{huge}\n" + GOOD_ROW)
    people, report = read_all(make_reader(path))
    assert [p.anchor for p in people] == ["E9"]
    assert report.rejected == 1
    assert report.complete
    [rejected] = rejections(caplog)
    assert rejected["line"] == 2
    assert "unreadable row" in rejected["reason"]


# ------------------------------------------------------------------ files that are unusable


def test_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.csv"
    with pytest.raises(SourceDataError) as caught:
        read_all(make_reader(path))
    message = str(caught.value)
    assert message.startswith(f"cannot read HR export {path}: No such file")
    assert "source.path" in message


@pytest.mark.parametrize("content", [b"", b"\n\n", b"\xef\xbb\xbf", b" , ,\n"])
def test_an_empty_file(tmp_path: Path, content: bytes) -> None:
    path = write(tmp_path, content)
    with pytest.raises(SourceDataError, match=r"is empty"):
        read_all(make_reader(path))


def test_missing_columns_are_named_with_the_columns_that_are_there(tmp_path: Path) -> None:
    path = write(tmp_path, "employee_id,given_name,last_name,email,start_date,status\n")
    with pytest.raises(SourceDataError) as caught:
        read_all(make_reader(path))
    message = str(caught.value)
    assert "'first_name'" in message
    assert "'employee_id', 'given_name', 'last_name', 'email', 'start_date', 'status'" in message
    assert "delimiter" not in message  # no false hint


def test_a_case_only_mismatch_is_pointed_out(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER.replace("first_name", "First_Name"))
    with pytest.raises(SourceDataError) as caught:
        read_all(make_reader(path))
    assert "'First_Name' differs from 'first_name' only in case" in str(caught.value)


@pytest.mark.parametrize(("actual", "configured"), [(";", ","), ("\t", ","), (",", ";")])
def test_a_wrong_delimiter_gets_a_hint(tmp_path: Path, actual: str, configured: str) -> None:
    path = write(tmp_path, (HEADER + "E1,A,One,,,active,IT\n").replace(",", actual))
    with pytest.raises(SourceDataError) as caught:
        read_all(make_reader(path, delimiter=configured))
    assert f"set source.delimiter: {actual!r}" in str(caught.value)


def test_nothing_is_yielded_before_the_header_is_checked(tmp_path: Path) -> None:
    path = write(tmp_path, "id,name\nE1,Ewa\n")
    people = make_reader(path).read(ReadReport())
    with pytest.raises(SourceDataError):
        next(people)


def test_undecodable_bytes_name_the_line_and_the_encoding(tmp_path: Path) -> None:
    latin1 = "E2,Thérèse,Lefèvre,,,active,IT\n".encode("latin-1")
    path = write(tmp_path, (HEADER + GOOD_ROW).encode() + latin1)
    with pytest.raises(SourceDataError) as caught:
        read_all(make_reader(path))
    message = str(caught.value)
    assert "as utf-8" in message
    assert "line 3" in message
    assert "source.encoding" in message


def test_a_utf8_bom_read_as_latin1_gets_a_hint(tmp_path: Path) -> None:
    path = write(tmp_path, b"\xef\xbb\xbf" + HEADER.encode())
    with pytest.raises(SourceDataError) as caught:
        read_all(make_reader(path, encoding="latin-1"))
    assert "set source.encoding: utf-8" in str(caught.value)


def test_an_unknown_encoding_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"source\.encoding"):
        make_reader(tmp_path / "hr.csv", encoding="utf-9")


# ------------------------------------------------------------------------- completeness


def test_a_file_cut_off_inside_a_quoted_field_is_incomplete(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path, HEADER + GOOD_ROW + 'E2,Anna,Müller,,,active,"Research and')
    people, report = read_all(make_reader(path))
    assert [p.anchor for p in people] == ["E9"]  # what came before is still usable
    assert report.complete is False
    assert report.incomplete_reason is not None
    assert "quoted field" in report.incomplete_reason
    assert report.rejected_anchors == ["E2"]
    [rejected] = rejections(caplog)
    assert rejected["line"] == 3


def test_a_short_last_line_without_newline_is_incomplete(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path, HEADER + GOOD_ROW + "E2,Anna,Mül")
    people, report = read_all(make_reader(path))
    assert [p.anchor for p in people] == ["E9"]
    assert report.complete is False
    assert report.incomplete_reason is not None
    assert "line 3" in report.incomplete_reason
    assert [r["field"] for r in rejections(caplog)] == ["email"]


def test_a_full_last_line_without_newline_is_complete(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + GOOD_ROW.rstrip("\n"))
    people, report = read_all(make_reader(path))
    assert [p.anchor for p in people] == ["E9"]
    assert report.complete


def test_a_short_row_with_its_newline_does_not_make_the_read_incomplete(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "E2,Anna\n")
    _, report = read_all(make_reader(path))
    assert report.rejected == 1
    assert report.complete


def test_complete_is_only_set_at_the_end(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + GOOD_ROW + GOOD_ROW.replace("E9", "E10"))
    report = ReadReport(complete=True)
    people = make_reader(path).read(report)
    next(people)
    assert report.complete is False
    list(people)
    assert report.complete is True


# ---------------------------------------------------------------------------- streaming


def _file_position(path: Path) -> int | None:
    """Where this process's open descriptor on ``path`` stands (Linux /proc), or None if closed."""
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == str(path):
                with open(f"/proc/self/fdinfo/{fd}") as info:
                    return int(info.readline().split()[1])
        except OSError:
            continue
    return None


@pytest.fixture(scope="module")
def huge_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200k rows (about 9 MB), written by repetition because only its size matters here."""
    path = tmp_path_factory.mktemp("huge") / "hr.csv"
    with open(path, "w", encoding="utf-8", newline="") as file:
        file.write(HEADER)
        file.writelines(
            f"E{number},Åsa,Ødegård,,2024-01-01,active,IT\n" for number in range(200_000)
        )
    return path


def test_reading_is_a_stream(huge_export: Path) -> None:
    people = make_reader(huge_export).read(ReadReport())
    first = next(people)
    position = _file_position(huge_export)
    people.close()

    assert first.anchor == "E0"
    assert position is not None
    # Only the text layer's read-ahead has been taken, not the file.
    assert position < 256 * 1024 < huge_export.stat().st_size
    assert _file_position(huge_export) is None  # closing the generator closed the file


def test_sample_stops_early_and_skips_bad_rows(tmp_path: Path, huge_export: Path) -> None:
    path = write(tmp_path, HEADER + ",No,Id,,,active,IT\n" + GOOD_ROW + "E10,A,B,,,active,IT\n")
    assert [p.anchor for p in make_reader(path).sample()] == ["E9", "E10"]
    assert [p.anchor for p in make_reader(huge_export).sample(3)] == ["E0", "E1", "E2"]
    assert _file_position(huge_export) is None


def test_a_generated_export_with_broken_rows_is_counted_exactly(tmp_path: Path) -> None:
    # Speed is measured in bench/, not here; this checks the counts on a realistic mix.
    path = tmp_path / "hr.csv"
    write_hr_csv(path, 5_000, seed=7, broken=20)
    logging.getLogger("syncd.source.csv").setLevel(logging.ERROR)  # 20 rejections, no noise
    people, report = read_all(make_reader(path))
    assert len(people) == 4_980
    assert (report.read, report.rejected, report.complete) == (5_000, 20, True)
    assert len(report.rejected_anchors) == 15  # the "missing id" kind has no anchor


# ---------------------------------------------------------------------- the demo export


def test_the_demo_export_is_what_the_generator_writes(tmp_path: Path) -> None:
    path = tmp_path / "sample.csv"
    write_sample_export(path)
    assert path.read_bytes() == SAMPLE_PATH.read_bytes()


def test_the_demo_export_reads_as_the_demo_needs(caplog: pytest.LogCaptureFixture) -> None:
    people, report = read_all(make_reader(SAMPLE_PATH))
    names = [(p.first_name, p.last_name) for p in people]

    assert report.complete
    assert 3 <= report.rejected <= 5
    assert 280 <= report.read <= 320
    assert len(people) == report.read - report.rejected
    assert {r["field"] for r in rejections(caplog)} >= {"employee_id", "last_name", "start_date"}
    assert names.count(("Anna", "Müller")) == 2
    assert names.count(("Thomas", "Schmidt")) == 3
    text = "".join(first + last for first, last in names)
    for letter in ("ß", "ü", "é", "ø", "ñ", "ł", "ş", "ễ", "Д", "Γ", "山"):
        assert letter in text, letter
    future = [p for p in people if p.start_date and p.start_date > SAMPLE_TODAY]
    assert 3 <= len(future) <= 10
    assert len(people) - len(future) > 250
    assert 3 <= sum(p.disabled for p in people) <= 15
    assert 2 <= sum(p.email is not None for p in people) <= 10
    assert len({p.anchor for p in people}) == len(people)


def test_the_demo_rows_are_deterministic() -> None:
    assert sample_rows() == sample_rows()
    assert sample_rows(seed=1) != sample_rows()


# --------------------------------------------------------------------------------- fields


def test_fields_are_read_trimmed_and_count_as_a_change_of_the_person(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "E1,Ada,Lovelace,,,active, Research \nE2,Alan,Turing,,,,\n")
    columns = {**COLUMNS, "fields": {"department": "department"}}
    people, report = read_all(make_reader(path, columns=columns))
    assert report.complete
    assert [p.fields for p in people] == [(("department", "Research"),), (("department", ""),)]
    # Without fields the digest is what it always was; a department change changes it.
    plain, _ = read_all(make_reader(path))
    assert plain[0].fields == () and plain[0].digest != people[0].digest
    moved = write(tmp_path, HEADER + "E1,Ada,Lovelace,,,active,Sales\n", "moved.csv")
    (after,), _ = read_all(make_reader(moved, columns=columns))
    assert after.digest != people[0].digest


def test_a_missing_field_column_names_its_key(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "E1,Ada,Lovelace,,,active,R\n")
    columns = {**COLUMNS, "fields": {"country": "Country"}}
    with pytest.raises(SourceDataError) as error:
        read_all(make_reader(path, columns=columns))
    assert "'Country' (source.columns.fields.country)" in str(error.value)
