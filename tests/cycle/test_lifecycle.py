"""New-hire lifecycle end to end: start dates, renames, leavers, address history, preferences."""

from __future__ import annotations

import csv
import io
import json

from tests.support.site import Row, Site


def today(day: str) -> dict[str, str]:
    return {"SYNCD_TODAY": day}


def test_start_date_creates_the_mailbox_days_before_not_earlier(site: Site) -> None:
    site.configure(sync={"provision_days_before": 7})
    site.write_people(
        [Row("E1", "Ada", "Lovelace", start="2026-12-10"), Row("E2", "Alan", "Turing")]
    )
    early = site.syncd("apply", env=today("2026-12-02"))
    assert early.returncode == 0, early.stderr
    assert site.addresses_of() == {"E2": "alan.turing"}
    assert "scheduled=1" in site.log_events("cycle.summary")[-1]
    plan = site.syncd("plan", env=today("2026-12-02"))
    assert "scheduled  E1" in plan.stdout and "due 2026-12-03" in plan.stdout

    due = site.syncd("apply", env=today("2026-12-03"))
    assert due.returncode == 0, due.stderr
    assert site.addresses_of() == {"E1": "ada.lovelace", "E2": "alan.turing"}


def test_start_date_in_another_format(site: Site) -> None:
    site.configure(sync={"date_format": ["%d.%m.%Y"], "provision_days_before": 0})
    site.write_people([Row("E1", "Ada", "Lovelace", start="10.12.2026")])
    assert site.syncd("apply", env=today("2026-12-09")).returncode == 0
    assert site.addresses_of() == {}
    assert site.syncd("apply", env=today("2026-12-10")).returncode == 0
    assert site.addresses_of() == {"E1": "ada.lovelace"}


def test_rename_reaches_hybridbox_but_not_the_address(site: Site) -> None:
    site.configure(sync={"update_names": True})
    site.write_people([Row("E1", "Ada", "Byron")])
    assert site.syncd("apply").returncode == 0
    site.write_people([Row("E1", "Ada", "Lovelace")])
    result = site.syncd("apply")
    assert result.returncode == 0, result.stderr
    (mailbox,) = site.emulator.mailboxes()
    assert (mailbox["first_name"], mailbox["last_name"]) == ("Ada", "Lovelace")
    assert mailbox["local_part"] == "ada.byron"
    assert site.log_events("mailbox.renamed")
    assert "renamed=1" in site.log_events("cycle.summary")[-1]


def test_rename_is_off_by_default(site: Site) -> None:
    site.write_people([Row("E1", "Ada", "Byron")])
    assert site.syncd("apply").returncode == 0
    site.write_people([Row("E1", "Ada", "Lovelace")])
    assert site.syncd("apply").returncode == 0
    assert site.emulator.mailboxes()[0]["last_name"] == "Byron"


def leavers(site: Site) -> list[dict[str, str]]:
    result = site.syncd("leavers", "--format", "json")
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, str]] = json.loads(result.stdout)
    return rows


def test_leavers_after_n_complete_reads_and_never_after_incomplete_ones(site: Site) -> None:
    site.configure(sync={"leaver_after_missing": 2}, safety={"max_source_drop_percent": 60})
    staff = [
        Row("E1", "Ada", "Lovelace"),
        Row("E2", "Alan", "Turing"),
        Row("E3", "Grace", "Hopper"),
    ]
    site.write_people(staff)
    assert site.syncd("apply").returncode == 0

    # Grace is gone, and the export is cut off inside a quoted field: incomplete.
    site.write_people(staff[:2])
    with site.csv_path.open("a") as file:
        file.write('E4,"Kathe')
    for _ in range(3):
        assert site.syncd("apply").returncode == 0
    assert leavers(site) == []

    site.write_people(staff[:2])  # complete again
    assert site.syncd("apply").returncode == 0
    assert leavers(site) == []  # missing from 1 complete read, 2 needed
    assert site.syncd("apply").returncode == 0
    (gone,) = leavers(site)
    assert gone["anchor"] == "E3" and gone["address"] == "grace.hopper@example.com"
    assert gone["last_seen"]
    assert "leavers=1" in site.log_events("cycle.summary")[-1]
    table = site.syncd("leavers", "--format", "csv")
    assert [row["anchor"] for row in csv.DictReader(io.StringIO(table.stdout))] == ["E3"]

    site.write_people(staff)  # she is back
    assert site.syncd("apply").returncode == 0
    assert leavers(site) == []


def test_disabled_person_is_a_leaver_at_once(site: Site) -> None:
    site.write_people([Row("E1", "Ada", "Lovelace"), Row("E2", "Alan", "Turing")])
    assert site.syncd("apply").returncode == 0
    site.write_people([Row("E1", "Ada", "Lovelace"), Row("E2", "Alan", "Turing", status="left")])
    assert site.syncd("apply").returncode == 0
    (row,) = leavers(site)
    assert row["anchor"] == "E2" and row["reason"] == "disabled"
    assert len(site.emulator.mailboxes()) == 2  # syncd never deletes


def test_a_leavers_address_is_not_reissued_while_reserved(site: Site) -> None:
    site.configure(sync={"leaver_after_missing": 1}, safety={"max_source_drop_percent": 100})
    site.write_people([Row("E1", "Ada", "Lovelace"), Row("E0", "Keep", "Me")])
    assert site.syncd("apply").returncode == 0
    site.write_people([Row("E0", "Keep", "Me")])
    assert site.syncd("apply").returncode == 0
    # An admin deleted the mailbox in the web app; Hybridbox would accept the address again.
    site.emulator.reset()
    site.write_people([Row("E0", "Keep", "Me"), Row("E2", "Ada", "Lovelace")])
    assert site.syncd("apply").returncode == 0
    assert site.addresses_of()["E2"] == "ada.lovelace2"
    history = site.syncd("addresses", "ada.lovelace@example.com")
    assert history.returncode == 0 and "E1" in history.stdout and "Lovelace" in history.stdout


def test_an_expired_reservation_lets_the_address_be_issued_again(site: Site) -> None:
    site.configure(
        sync={"leaver_after_missing": 1},
        addresses={"reserve_days": 30},
        safety={"max_source_drop_percent": 100},
    )
    site.write_people([Row("E1", "Ada", "Lovelace"), Row("E0", "Keep", "Me")])
    assert site.syncd("apply").returncode == 0
    site.write_people([Row("E0", "Keep", "Me")])
    assert site.syncd("apply").returncode == 0
    site.emulator.reset()
    with site.db() as conn:  # Ada left 40 days ago
        conn.execute("UPDATE people SET last_seen = '2020-01-01T00:00:00Z' WHERE anchor = 'E1'")
    site.write_people([Row("E0", "Keep", "Me"), Row("E2", "Ada", "Lovelace")])
    assert site.syncd("apply").returncode == 0
    assert site.addresses_of()["E2"] == "ada.lovelace"
    history = site.syncd("addresses", "ada.lovelace", "--format", "json")
    holders = [row["anchor"] for row in json.loads(history.stdout)]
    assert holders == ["E1", "E2"]


def test_preferred_address_is_used_when_free_else_the_template(site: Site) -> None:
    site.write_people([Row("E0", "Keep", "Me")])
    assert site.syncd("apply").returncode == 0
    site.emulator.add_mailbox("a.turing", "Someone", "Else")
    site.write_people(
        [
            Row("E0", "Keep", "Me"),
            Row("E1", "Ada", "Lovelace", email="countess@example.com"),
            Row("E2", "Alan", "Turing", email="a.turing@example.com"),
            Row("E3", "Grace", "Hopper", email="grace@elsewhere.org"),
        ]
    )
    assert site.syncd("apply").returncode == 0
    parts = site.addresses_of()
    assert parts["E1"] == "countess"
    assert parts["E2"] == "alan.turing"
    assert parts["E3"] == "grace.hopper"  # another domain's address is not a preference


def test_name_with_no_latin_form_uses_the_fallback_template(site: Site) -> None:
    site.write_people([Row("E7", "太郎", "山田"), Row("E8", "Ольга", "Петрова")])
    assert site.syncd("apply").returncode == 0
    parts = site.addresses_of()
    assert parts["E7"] == "user.e7"
    assert parts["E8"] == "olga.petrova"


def test_a_new_hire_whose_name_many_have_gets_the_next_free_address(site: Site) -> None:
    staff = [Row(f"E{i}", "Ann", "Lee") for i in range(1, 13)]
    staff.append(Row("E50", "Ann", "Lee-Wong"))
    site.write_people(staff)
    assert site.syncd("apply").returncode == 0
    held = set(site.addresses_of().values())
    assert "ann.lee" in held and "ann.lee12" in held and len(held) == 13

    site.write_people([*staff, Row("N1", "Ann", "Lee"), Row("N2", "Ann", "Lee")])
    second = site.syncd("apply")
    assert second.returncode == 0, second.stderr
    addresses = site.addresses_of()
    assert (addresses["N1"], addresses["N2"]) == ("ann.lee13", "ann.lee14")
    assert len(site.emulator.mailboxes()) == 15
