"""The reports never write raw control characters to the terminal.

Issue "hostile input must never cost data", item 31 (output): ``plan`` and ``failures`` printed raw
terminal escape sequences from HR data. An ESC starts a sequence that can clear the screen, move
the cursor over earlier lines or set the window title; U+202E shows what follows reversed; a
zero-width space hides a difference. Today's readers refuse control characters and drop format
characters, but a state written by an older syncd, or a code Hybridbox answered with, may still
hold them. Tables and CSV show each as a visible escape (``\\x1b``, ``\\u202e``); JSON keeps the
value and writes it escaped.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.support.site import Row, Site

ESC_CLEAR = "\x1b[2J\x1b[H"  # clear the screen, cursor home
TITLE = "\x1b]0;owned\x07"  # set the terminal's title (OSC ... BEL)
CSI_C1 = "\x9b31m"  # the one-character C1 form of ESC [
REVERSED = "\u202e"
HIDDEN = "\u200b"
# What no report may write raw: C0 controls but the line end, DEL, C1 controls, format
# characters such as U+202E and U+200B, the line and paragraph separators.
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]")


def _older_state_with_hostile_names(site: Site) -> None:
    """A created mailbox whose names an older syncd stored with control characters."""
    site.write_people([Row("E1", "Anna", "Meier")])
    assert site.syncd("apply").returncode == 0
    with site.db() as conn:
        conn.execute(
            "UPDATE people SET first_name = ?, last_name = ?",
            (f"An{ESC_CLEAR}na", f"Mei{REVERSED}er{TITLE}"),
        )


def _assert_shown_escaped(output: str) -> None:
    assert RAW.search(output) is None, repr(output)


def test_failures_show_a_hostile_hybridbox_code_escaped(site: Site) -> None:
    site.write_people([Row("E1", "Anna", "Meier")])
    site.emulator.set_faults(fail_rate=1.0, fail_code=f"busy{ESC_CLEAR}{CSI_C1}{REVERSED}")
    site.syncd("apply")
    with site.db() as conn:  # and a message as an older syncd may have stored it
        conn.execute("UPDATE mailboxes SET last_message = ?", (f"try{TITLE}later{HIDDEN}",))

    table = site.syncd("failures")
    assert table.returncode == 0, table.stderr
    _assert_shown_escaped(table.stdout)
    assert r"busy\x1b[2J\x1b[H\x9b31m\u202e" in table.stdout
    assert r"try\x1b]0;owned\x07later\u200b" in table.stdout

    as_csv = site.syncd("failures", "--format", "csv")
    _assert_shown_escaped(as_csv.stdout)
    assert r"busy\x1b[2J" in as_csv.stdout

    as_json = site.syncd("failures", "--format", "json")
    _assert_shown_escaped(as_json.stdout)
    [row] = json.loads(as_json.stdout)  # the value itself, unchanged
    assert row["last_code"] == f"busy{ESC_CLEAR}{CSI_C1}{REVERSED}"


@pytest.mark.parametrize("fmt", ["table", "csv", "json"])
def test_leavers_and_addresses_show_hostile_names_escaped(site: Site, fmt: str) -> None:
    _older_state_with_hostile_names(site)
    site.write_people([Row("E0", "Keep", "Me"), Row("E1", "Anna", "Meier", status="inactive")])
    assert site.syncd("apply").returncode == 0
    with site.db() as conn:  # the read stored today's clean names: bring the old ones back
        conn.execute(
            "UPDATE people SET first_name = ?, last_name = ? WHERE anchor = 'E1'",
            (f"An{ESC_CLEAR}na", f"Mei{REVERSED}er{TITLE}"),
        )
    for command in (["leavers"], ["addresses", "anna.meier"]):
        result = site.syncd(*command, "--format", fmt)
        assert result.returncode == 0, result.stderr
        _assert_shown_escaped(result.stdout)
        if fmt == "json":
            [row] = json.loads(result.stdout)
            assert row["first_name"] == f"An{ESC_CLEAR}na"
        else:
            assert r"An\x1b[2J\x1b[Hna" in result.stdout
            assert r"Mei\u202eer\x1b]0;owned\x07" in result.stdout


def test_plan_shows_old_names_from_the_state_escaped(site: Site) -> None:
    _older_state_with_hostile_names(site)
    # A new spelling in the export: plan says the mailbox keeps the old name, and shows it.
    site.write_people([Row("E1", "Anne", "Meier"), Row("E2", f"Bo{REVERSED}", "Day")])
    for fmt in ("table", "csv", "json"):
        result = site.syncd("plan", "--format", fmt)
        assert result.returncode == 0, result.stderr
        _assert_shown_escaped(result.stdout)
    table = site.syncd("plan").stdout
    assert r"was An\x1b[2J\x1b[Hna Mei\u202eer\x1b]0;owned\x07" in table
    assert "Bo Day" in table  # the format character is gone from the source's name itself


def test_status_shows_a_hostile_error_message_escaped(site: Site) -> None:
    site.write_people([Row("E1", "Anna", "Meier")])
    assert site.syncd("apply").returncode == 0
    status_file = site.state_path.parent / "status.json"
    status = json.loads(status_file.read_text())
    status["last_error"] = {"at": "2026-12-01T12:00:00Z", "kind": "X", "message": f"bad{TITLE}"}
    status["source_complete"] = False
    status["source_incomplete_reason"] = f"cut{ESC_CLEAR}"
    status_file.write_text(json.dumps(status))

    shown = site.syncd("status").stdout
    _assert_shown_escaped(shown)
    assert r"bad\x1b]0;owned\x07" in shown and r"cut\x1b[2J\x1b[H" in shown
    as_json = site.syncd("status", "--format", "json").stdout
    _assert_shown_escaped(as_json)
    assert json.loads(as_json)["last_error"]["message"] == f"bad{TITLE}"
