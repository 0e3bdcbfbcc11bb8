"""End to end through the CLI: a real `syncd` process, the emulator over HTTP, state in SQLite."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.site import REPO_ROOT, Row, Site, people

EX_PARTIAL, EX_DATAERR, EX_UNAVAILABLE, EX_TEMPFAIL, EX_NOPERM, EX_CONFIG = 1, 65, 69, 75, 77, 78


def test_first_cycle_creates_everyone_and_second_creates_nothing(site: Site) -> None:
    site.write_people(people(25))
    first = site.syncd("apply")
    assert first.returncode == 0, first.stderr
    assert len(site.emulator.mailboxes()) == 25
    assert set(site.mailbox_states().values()) == {"created"}
    assert site.addresses_of()["E00001"] == "first1.last1"
    summary = site.log_events("cycle.summary")
    assert len(summary) == 1 and "created=25" in summary[0] and "outcome=ok" in summary[0]
    bulk_before = site.emulator.stats()

    second = site.syncd("apply")
    assert second.returncode == 0, second.stderr
    assert len(site.emulator.mailboxes()) == 25
    assert "created=0" in site.log_events("cycle.summary")[-1]
    # Nothing new to create: the second cycle sends no bulk request at all.
    assert site.emulator.stats()["bulk"] == bulk_before["bulk"]
    assert site.status()["last_counts"]["created"] == 0


def test_every_log_line_of_a_cycle_carries_its_cycle_id(site: Site) -> None:
    site.write_people(people(3))
    assert site.syncd("apply").returncode == 0
    lines = site.log_path.read_text().splitlines()
    ids = {line.split(" cycle=")[1].split()[0] for line in lines if " cycle=" in line}
    assert len(ids) == 1 and all(" cycle=" in line for line in lines)


def test_plan_changes_nothing_anywhere(site: Site) -> None:
    site.write_people(people(5))
    result = site.syncd("plan")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("create ") == 5
    assert "nothing was changed" in result.stdout
    assert not site.state_path.exists()
    assert site.emulator.mailboxes() == []


def test_plan_reads_a_state_from_an_older_syncd_without_migrating_it(site: Site) -> None:
    site.write_people(people(3))
    assert site.syncd("apply").returncode == 0
    # Back to schema 2, as syncd before blocks left it: no blocks table, no block/open columns.
    with site.db() as conn:
        conn.execute("DROP TABLE blocks")
        conn.execute("DROP INDEX people_block")
        conn.execute("DROP INDEX people_open")
        conn.execute("DROP INDEX people_leaving")
        conn.execute("ALTER TABLE people DROP COLUMN block")
        conn.execute("ALTER TABLE people DROP COLUMN open")
        conn.execute("ALTER TABLE runs DROP COLUMN scan")  # and migration 4's
        conn.execute("ALTER TABLE people DROP COLUMN domain")  # and migration 5's
        conn.execute("PRAGMA user_version=2")
    site.write_people(people(4))
    result = site.syncd("plan")
    assert result.returncode == 0, result.stderr
    assert "create  E00004" in result.stdout and result.stdout.count("create ") == 1
    with site.db() as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    applied = site.syncd("apply")  # apply migrates, then compares as usual
    assert applied.returncode == 0, applied.stderr
    assert len(site.emulator.mailboxes()) == 4


def test_address_taken_behind_syncds_back_gets_the_next_template(site: Site) -> None:
    site.write_people([Row("E0", "Grace", "Hopper")])
    assert site.syncd("apply").returncode == 0
    site.emulator.add_mailbox("ada.lovelace", "Someone", "Else")
    site.write_people([Row("E0", "Grace", "Hopper"), Row("E1", "Ada", "Lovelace")])
    result = site.syncd("apply")
    assert result.returncode == 0, result.stderr
    assert site.addresses_of()["E1"] == "ada.lovelace2"
    created = [m for m in site.emulator.mailboxes() if m["first_name"] == "Ada"]
    assert [m["local_part"] for m in created] == ["ada.lovelace2"]


def test_first_run_on_a_domain_with_mailboxes_needs_adopt(site: Site) -> None:
    site.emulator.add_mailbox("ada.lovelace", "Ada", "Lovelace")
    site.emulator.add_mailbox("g.hopper", "Grace", "Hopper")
    site.emulator.add_mailbox("someone.else", "Someone", "Else")
    site.write_people(
        [Row("E1", "Ada", "Lovelace"), Row("E2", "Grace", "Hopper"), Row("E3", "Alan", "Turing")]
    )
    refused = site.syncd("apply")
    assert refused.returncode == EX_TEMPFAIL
    assert "syncd adopt" in refused.stderr
    assert len(site.emulator.mailboxes()) == 3

    dry = site.syncd("adopt", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert site.mailbox_states() == {}
    adopted = site.syncd("adopt")
    assert adopted.returncode == 0, adopted.stderr
    # Ada by address, Grace by her unique name; the stranger's mailbox is only remembered as taken.
    assert site.mailbox_states() == {"E1": "adopted", "E2": "adopted"}

    applied = site.syncd("apply")
    assert applied.returncode == 0, applied.stderr
    assert site.addresses_of()["E3"] == "alan.turing"
    assert len(site.emulator.mailboxes()) == 4


def test_a_first_run_that_cannot_ask_whether_the_domain_is_empty_creates_nothing(
    site: Site,
) -> None:
    # The first-run guard cannot tell whether the domain is empty: nothing may be created, and
    # the exit code is that of an unavailable Hybridbox.
    site.configure(hybridbox={"retry_budget_s": 1})
    site.emulator.set_faults(error_rate=1.0, fault_routes=["list"])
    site.write_people(people(3))
    failed = site.syncd("apply")
    assert failed.returncode == EX_UNAVAILABLE, failed.stderr
    assert "Hybridbox" in failed.stderr and "Traceback" not in failed.stderr
    assert site.emulator.mailboxes() == []
    assert site.mailbox_states() == {}

    site.emulator.set_faults(error_rate=0.0)
    applied = site.syncd("apply")
    assert applied.returncode == 0, applied.stderr
    assert len(site.emulator.mailboxes()) == 3


def test_same_names_in_one_export_get_distinct_addresses(site: Site) -> None:
    site.write_people([Row("E1", "Jürgen", "Groß"), Row("E2", "Jürgen", "Groß")])
    site.configure(addresses={"locale": "de"})
    assert site.syncd("apply").returncode == 0
    assert sorted(site.addresses_of().values()) == ["juergen.gross", "juergen.gross2"]


def test_item_failures_are_retried_in_a_later_cycle(site: Site) -> None:
    site.write_people(people(6))
    site.emulator.set_faults(fail_rate=1.0)
    failed = site.syncd("apply")
    assert failed.returncode == EX_PARTIAL
    assert set(site.mailbox_states().values()) == {"failed"}
    assert "pending=6" in site.log_events("cycle.summary")[-1]
    listing = site.syncd("failures")
    assert listing.returncode == 0 and "backend_busy" in listing.stdout

    site.emulator.set_faults(fail_rate=0.0)
    waiting = site.syncd("apply")  # backoff not over: nobody is retried yet
    assert waiting.returncode == 0 and site.emulator.mailboxes() == []
    assert site.syncd("retry", "--all").returncode == 0
    retried = site.syncd("apply")
    assert retried.returncode == 0, retried.stderr
    assert set(site.mailbox_states().values()) == {"created"}
    assert len(site.emulator.mailboxes()) == 6


def test_rate_limit_storm_still_creates_everyone_once(site: Site) -> None:
    site.write_people(people(40))
    site.emulator.set_faults(rate_limit_every=2, retry_after=0)
    result = site.syncd("apply")
    assert result.returncode == 0, result.stderr
    assert len(site.emulator.mailboxes()) == 40
    assert site.emulator.stats()["requests"]["by_status"].get("429", 0) >= 2


def test_wrong_token_exits_77_and_writes_no_state(site: Site, tmp_path: Path) -> None:
    site.write_people(people(2))
    bad = tmp_path / "bad-token"
    bad.write_text("not-the-token")
    bad.chmod(0o600)
    site.configure(hybridbox={"token_file": str(bad)})
    result = site.syncd("apply")
    assert result.returncode == EX_NOPERM
    assert "token" in result.stderr and "not-the-token" not in result.stderr
    assert not site.state_path.exists()


def test_a_cycle_with_nothing_to_send_checks_the_token_every_check_every(
    site: Site, tmp_path: Path
) -> None:
    site.write_people(people(3))
    assert site.syncd("apply").returncode == 0  # creates, so it checked the token
    bad = tmp_path / "bad-token"
    bad.write_text("not-the-token")
    bad.chmod(0o600)
    site.configure(hybridbox={"token_file": str(bad)})
    site.emulator.reset(mailboxes=False)
    quiet = site.syncd("apply")  # nothing to send, checked a moment ago: no contact
    assert quiet.returncode == 0, quiet.stderr
    assert site.emulator.stats()["requests"]["total"] == 0

    site.configure(hybridbox={"check_every": 0})
    checked = site.syncd("apply")  # the same cycle, but the check is due: the bad token shows
    assert checked.returncode == EX_NOPERM
    assert "token" in checked.stderr
    site.configure(hybridbox={"check_every": "1h"})
    site.write_people(people(4))
    sending = site.syncd("apply")  # not due, but a cycle with someone to create checks first
    assert sending.returncode == EX_NOPERM
    assert len(site.emulator.mailboxes()) == 3
    assert site.mailbox_states().get("E00004") is None


def test_missing_columns_exit_65_before_anything_is_written(site: Site) -> None:
    site.csv_path.write_text("id,given,family\nE1,Ada,Lovelace\n")
    result = site.syncd("apply")
    assert result.returncode == EX_DATAERR
    assert "employee_id" in result.stderr and str(site.csv_path) in result.stderr
    assert site.emulator.mailboxes() == []
    with site.db() as conn:
        assert conn.execute("SELECT count(*) FROM people").fetchone()[0] == 0


def test_broken_rows_are_skipped_with_their_line_and_the_rest_is_provisioned(site: Site) -> None:
    site.write_people(
        [Row("E1", "Ada", "Lovelace"), Row("E2", "", "Hopper"), Row("E3", "Alan", "Turing")]
    )
    result = site.syncd("apply")
    assert result.returncode == 0, result.stderr
    rejected = site.log_events("record.rejected")
    assert len(rejected) == 1 and "line=3" in rejected[0] and "anchor=E2" in rejected[0]
    assert sorted(site.addresses_of()) == ["E1", "E3"]


def test_yaml_typo_exits_78_naming_the_key(site: Site) -> None:
    site.config_path.write_text(site.config_path.read_text().replace("batch_size", "batch_sise"))
    result = site.syncd("apply")
    assert result.returncode == EX_CONFIG
    assert "at 'hybridbox.batch_sise': unknown key" in result.stderr
    assert "Traceback" not in result.stderr


def test_second_process_on_the_same_state_exits_75(site: Site) -> None:
    site.write_people(people(1))
    lock_path = site.state_path.with_name("state.db.lock")
    lock_path.parent.mkdir(parents=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        result = site.syncd("apply")
    finally:
        os.close(fd)
    assert result.returncode == EX_TEMPFAIL
    assert "another syncd" in result.stderr
    assert site.emulator.mailboxes() == []


def test_status_reports_and_exits_2_when_too_old(site: Site) -> None:
    site.write_people(people(2))
    assert site.syncd("apply").returncode == 0
    fresh = site.syncd("status")
    assert fresh.returncode == 0 and "last success" in fresh.stdout
    site.configure(health={"max_age": 0})
    stale = site.syncd("status")
    assert stale.returncode == 2


def test_validate_offline_and_online(site: Site) -> None:
    site.write_people(people(3))
    offline = site.syncd("validate", "--offline")
    assert offline.returncode == 0 and "E00001" in offline.stdout
    online = site.syncd("validate")
    assert online.returncode == 0 and "token accepted" in online.stdout


def test_help_lists_every_command() -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "syncd", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    for command in ("validate", "plan", "apply", "run", "status", "failures", "retry", "adopt"):
        assert command in result.stdout


def test_usage_error_exits_64_not_2() -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "syncd", "no-such-command"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 64
    assert "invalid choice" in result.stderr


def test_a_person_called_emulator_is_retried_not_served(site: Site) -> None:
    """Only the command word starts the emulator: `retry emulator` retries the anchor."""
    site.write_people(people(1))
    assert site.syncd("apply").returncode == 0
    result = site.syncd("retry", "emulator", timeout=30)
    assert result.returncode == EX_PARTIAL, result.stderr
    assert result.stdout == "emulator: not failed or quarantined (see `syncd failures`)\n"


def test_the_emulator_without_its_extra_says_how_to_install_it(tmp_path: Path) -> None:
    """A production install has no web server; `syncd emulator` says which extra brings one."""
    hide_uvicorn = "import sys; sys.modules['uvicorn'] = None; from syncd.cli import main; "
    result = subprocess.run(
        [sys.executable, "-c", hide_uvicorn + "sys.exit(main(['emulator', '--port', '0']))"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        cwd=tmp_path,
    )
    assert result.returncode == 69
    assert "pip install 'syncd[emulator]'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["status", "failures", "leavers", "plan"])
def test_a_report_into_a_closed_pipe_ends_quietly(site: Site, command: str) -> None:
    """`syncd status | head -3`: the reader is gone before syncd writes; no traceback, and the
    exit status a Unix tool killed by SIGPIPE has."""
    site.write_people(people(30))
    site.emulator.set_faults(fail_rate=1.0)  # failures to list
    site.syncd("apply")
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader has gone away before syncd writes a byte
    try:
        result = subprocess.run(
            [sys.executable, "-m", "syncd", "--config", str(site.config_path), command],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        )
    finally:
        os.close(write_end)
    # `plan` logs its read to stderr; what matters is that nothing else is said there.
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert "BrokenPipe" not in result.stderr
    assert result.returncode == 141
