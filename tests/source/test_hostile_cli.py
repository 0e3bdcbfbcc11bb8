"""Hostile HR exports through the real CLI and the emulator: no mailbox for a non-person, nobody
counted as gone, a clear message and the documented exit code.

The export here has a free-text ``notes`` column after the six syncd reads, as HR reports do.
``leaver_after_missing: 1`` makes any wrong "missing" show at once as a raised counter.
"""

from __future__ import annotations

import os

from syncd.source.csv import MAX_FIELD_CHARS
from tests.support.site import Site, people

EX_OK, EX_DATAERR, EX_CONFIG = 0, 65, 78
HEADER = "employee_id,first_name,last_name,email,start_date,status,notes\n"


def line(anchor: str, first: str, last: str, notes: str = "ok") -> str:
    return f"{anchor},{first},{last},,,active,{notes}\n"


def staff(first: int, last: int) -> list[str]:
    return [line(f"E{n:05d}", f"First{n}", f"Last{n}") for n in range(first, last + 1)]


def provisioned(site: Site, n: int) -> None:
    site.configure(sync={"leaver_after_missing": 1})
    site.write_people(people(n))
    result = site.syncd("apply")
    assert result.returncode == EX_OK, result.stderr


def most_missing(site: Site) -> int:
    with site.db() as conn:
        return int(conn.execute("SELECT max(missing_count) FROM people").fetchone()[0])


def test_17_a_long_notes_field_makes_no_mailbox_for_its_text_and_loses_nobody(
    site: Site,
) -> None:
    provisioned(site, 20)
    # E00020's notes: over the csv module's field limit, then a line that reads like a person.
    # The old reader resumed inside the field and created "Ghost Person" in a "complete" read.
    notes = '"' + "x" * (MAX_FIELD_CHARS + 100) + '\nE00666,Ghost,Person,,,active,x\n"'
    text = HEADER + "".join(staff(1, 19))
    text += line("E00021", "New", "Hire") + line("E00020", "First20", "Last20", notes)
    site.csv_path.write_text(text)

    result = site.syncd("apply")

    assert result.returncode == EX_OK, result.stderr
    assert site.addresses_of()["E00021"] == "new.hire"  # the complete part is provisioned
    assert "E00666" not in site.mailbox_states()
    assert ("Ghost", "Person") not in site.remote_names()
    assert len(site.emulator.mailboxes()) == 21
    assert most_missing(site) == 0
    [summary] = site.log_events("cycle.summary")[-1:]
    assert "complete=False" in summary and "created=1" in summary
    [incomplete] = site.log_events("source.incomplete")[:1]
    assert "record starting on line 22" in incomplete
    [rejected] = site.log_events("record.rejected")
    assert "anchor=E00020" in rejected and "line=22" in rejected and "field=notes" in rejected


def test_18_a_stray_quote_makes_the_read_incomplete_and_nobody_a_leaver(site: Site) -> None:
    provisioned(site, 40)
    rows = [line("N00001", "Nina", "New"), line("N00002", "Noah", "New"), *staff(1, 40)]
    # E00037's notes open a quote that E00039's quoted note closes: E00038 and E00039 vanished
    # into one field of E00037, in a read that used to be reported complete.
    rows[2 + 36] = line("E00037", "First37", "Last37", '"see HR')
    rows[2 + 38] = line("E00039", "First39", "Last39", '"transfer, 2024"')
    site.csv_path.write_text(HEADER + "".join(rows))

    for _ in range(2):  # the same broken export in cycle after cycle costs nobody
        result = site.syncd("apply")
        assert result.returncode == EX_OK, result.stderr
        assert most_missing(site) == 0

    addresses = site.addresses_of()
    assert (addresses["N00001"], addresses["N00002"]) == ("nina.new", "noah.new")
    assert len(site.emulator.mailboxes()) == 42  # two new hires, nothing else
    summary = site.log_events("cycle.summary")[-1]
    assert "complete=False" in summary
    incomplete = site.log_events("source.incomplete")[-1]
    assert "record starting on line 40 ends" in incomplete
    assert "stray" in incomplete

    # Fixed at HR: a complete read again, and still nobody lost.
    rows[2 + 36] = line("E00037", "First37", "Last37", "see HR")
    site.csv_path.write_text(HEADER + "".join(rows))
    result = site.syncd("apply")
    assert result.returncode == EX_OK, result.stderr
    assert "complete=True" in site.log_events("cycle.summary")[-1]
    assert most_missing(site) == 0


def test_30_a_fifo_as_the_source_exits_65_at_once(site: Site) -> None:
    provisioned(site, 3)
    site.csv_path.unlink()
    os.mkfifo(site.csv_path)
    result = site.syncd("apply", timeout=60)
    assert result.returncode == EX_DATAERR, result.stderr
    assert "is a named pipe (FIFO), not a regular file" in result.stderr
    assert "source.path" in result.stderr
    assert "Traceback" not in result.stderr


def test_30_a_codec_that_is_no_file_encoding_exits_78(site: Site) -> None:
    provisioned(site, 3)
    site.configure(source={"encoding": "rot13"})
    result = site.syncd("apply")
    assert result.returncode == EX_CONFIG, result.stderr
    assert "at 'source.encoding': 'rot13' is not a text encoding" in result.stderr
    assert "Traceback" not in result.stderr


def test_31_utf8_declared_as_cp1252_exits_65_and_creates_no_mojibake_mailbox(
    site: Site,
) -> None:
    provisioned(site, 3)
    site.configure(source={"encoding": "cp1252"})
    text = HEADER + "".join(staff(1, 3)) + line("E00004", "René", "Müller")
    site.csv_path.write_bytes(text.encode("utf-8"))
    result = site.syncd("apply")
    assert result.returncode == EX_DATAERR, result.stderr
    assert "looks like UTF-8 read as cp1252" in result.stderr
    assert "set source.encoding: utf-8" in result.stderr
    assert "E00004" not in site.mailbox_states()
    assert len(site.emulator.mailboxes()) == 3
