"""An incomplete read must not rename anyone (issue item 23, the part outside the readers).

A read reported incomplete (cut off, a stray quote, a record whose end is in doubt) may still
provision the people it read, but its names are no better than its presence: a spliced or
half-read row would rename a mailbox to a name in neither version. The engine defers the plan's
renames to the next complete read (syncd/cycle/_engine.py, ``_record_and_apply``).
"""

from __future__ import annotations

from tests.support.site import Row, Site, people


def test_an_incomplete_read_renames_nobody(site: Site) -> None:
    site.configure(sync={"update_names": True})
    site.write_people(people(3))
    assert site.syncd("apply").returncode == 0
    renamed = [*people(3)]
    renamed[1] = Row("E00002", "Spliced", "Name")
    site.write_people(renamed)
    with site.csv_path.open("a") as file:
        file.write("E00004,Cut")  # a short last line without newline: the export is cut off

    result = site.syncd("apply")

    assert result.returncode == 0, result.stderr
    assert "complete=False" in site.log_events("cycle.summary")[-1]
    assert ("Spliced", "Name") not in site.remote_names()
    assert 'count=1 reason="incomplete read"' in site.log_events("rename.deferred")[-1]

    site.write_people(people(3))  # the next complete read: nothing left to rename
    assert site.syncd("apply").returncode == 0
    assert ("Spliced", "Name") not in site.remote_names()
    assert site.log_events("mailbox.renamed") == []
