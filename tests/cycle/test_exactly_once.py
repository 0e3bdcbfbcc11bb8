"""Exactly once, under attack: SIGKILL at every crash point, and every fault the emulator has.

After each attack syncd is simply run again (as the next timer tick would) until it settles.
The promise checked every time: each person has exactly one mailbox on Hybridbox, the state
agrees with Hybridbox, and nothing was created twice. The ``three domains`` variants route the
people to three domains by department (``hybridbox.domains``): the promise holds across them,
and each mailbox is in its person's domain.
"""

from __future__ import annotations

import signal
import time
from collections import Counter

import pytest

from tests.support.site import Row, Site, people

N = 30
# People E00001..: Research (labs.example.com), Vertrieb (example.de), none (example.com), ...
DEPARTMENTS = ("Research", "Vertrieb", "")
DOMAIN_OF = {"Research": "labs.example.com", "Vertrieb": "example.de", "": "example.com"}


def staff(site: Site) -> list[Row]:
    """The N people of a test; with departments on a site that routes by them."""
    rows = people(N)
    if "domains" in site.settings["hybridbox"]:
        for index, row in enumerate(rows):
            row.department = DEPARTMENTS[index % len(DEPARTMENTS)]
    return rows


@pytest.fixture(params=["one domain", "three domains"])
def any_site(request: pytest.FixtureRequest) -> Site:
    """The site of a test that runs against one domain and against three."""
    name = "site" if request.param == "one domain" else "domains_site"
    site: Site = request.getfixturevalue(name)
    return site


def settle(site: Site, cycles: int = 6) -> None:
    """Run cycles (making backed-off people due each time) until everyone has a mailbox."""
    for _ in range(cycles):
        site.syncd("apply")
        states = site.mailbox_states()
        if len(states) == N and set(states.values()) == {"created"}:
            return
        site.syncd("retry", "--all")
    raise AssertionError(f"did not settle: {Counter(site.mailbox_states().values())}")


def assert_exactly_once(site: Site) -> None:
    remote = site.emulator.mailboxes()  # in every domain
    by_name = Counter((m["first_name"], m["last_name"]) for m in remote)
    duplicates = {name: n for name, n in by_name.items() if n > 1}
    assert duplicates == {}, f"created twice: {duplicates}"
    assert len(remote) == N
    assert set(site.mailbox_states().values()) == {"created"}
    remote_addresses = {(m["first_name"], m["last_name"]): m["primary_email"] for m in remote}
    rows = staff(site)
    expected = {row.anchor: remote_addresses[(row.first, row.last)] for row in rows}
    assert site.full_addresses_of() == expected
    for row in rows:  # each in the domain the rules give it (one domain: all in example.com)
        assert expected[row.anchor].endswith("@" + DOMAIN_OF[row.department]), row
    with site.db() as conn:
        issued = conn.execute("SELECT count(*) FROM addresses WHERE status = 'issued'").fetchone()
    assert issued[0] == N


@pytest.mark.parametrize("point", ["after_intents", "after_send", "after_answer", "mid_batch"])
def test_sigkill_at_each_crash_point_never_duplicates(any_site: Site, point: str) -> None:
    site = any_site
    # One request at a time, so that the crash points fall at known batches; several in flight
    # are the next test's.
    site.configure(hybridbox={"max_in_flight": 1})
    site.write_people(staff(site))
    # Batches are pipelined: the second batch is journaled while the first is on the wire, so
    # only at the third journaling is the first batch sure to have reached Hybridbox.
    count = "3" if point == "after_intents" else "2"
    crashed = site.syncd(
        "apply", env={"SYNCD_TEST_CRASH_AT": point, "SYNCD_TEST_CRASH_COUNT": count}
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    after_crash = len(site.emulator.mailboxes())
    # The first batch went through, maybe the second; with the pipeline (a batch is recorded
    # while the next is on the wire) maybe the third too.
    assert after_crash in range(10, 31)

    resumed = site.syncd("apply")
    assert resumed.returncode == 0, resumed.stderr
    assert_exactly_once(site)
    if point in ("after_send", "after_answer", "mid_batch"):
        # The batch in flight did reach Hybridbox: it is adopted after a lookup, not re-sent.
        assert site.log_events("intent.resolved") or site.log_events("mailbox.adopted")


def test_sigkill_with_several_batches_applied_in_flight_creates_nothing_twice(
    any_site: Site,
) -> None:
    site = any_site
    # Batches of 5, 4 in flight; Hybridbox applies each bulk request as it arrives, then holds
    # its answer. syncd is killed when it has journaled the fifth batch: every batch it sent has
    # reached Hybridbox (how many of the four depends on its threads: each is counted), and
    # none of them is recorded.
    site.configure(hybridbox={"max_in_flight": 4, "batch_size": 5})
    site.emulator.set_faults(timeout_after_write_rate=1.0, hang_s=5, fault_routes=["bulk_create"])
    site.write_people(staff(site))
    crashed = site.syncd(
        "apply", env={"SYNCD_TEST_CRASH_AT": "after_intents", "SYNCD_TEST_CRASH_COUNT": "5"}
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert Counter(site.mailbox_states().values()) == {"intent": 25}
    time.sleep(0.5)  # a request on its way when syncd died is applied meanwhile
    applied = len(site.emulator.mailboxes())
    assert applied in (0, 5, 10, 15, 20)

    site.emulator.set_faults(timeout_after_write_rate=0)
    resumed = site.syncd("apply")
    assert resumed.returncode == 0, resumed.stderr
    assert_exactly_once(site)
    # What reached Hybridbox was found by lookup, never sent again: each person was sent once.
    assert site.emulator.stats()["bulk"]["items"] == N
    assert len(site.log_events("intent.resolved")) == 25


def test_sigkill_while_answers_are_awaited_for_several_batches(site: Site) -> None:
    # Each bulk request takes 0.3 s; syncd dies as the first answer comes back, the next three
    # batches still on the wire (a server may or may not finish a request whose client is gone).
    site.configure(hybridbox={"max_in_flight": 4, "batch_size": 5})
    site.emulator.set_faults(latency_ms=300, fault_routes=["bulk_create"])
    site.write_people(people(N))
    crashed = site.syncd(
        "apply", env={"SYNCD_TEST_CRASH_AT": "after_send", "SYNCD_TEST_CRASH_COUNT": "1"}
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert Counter(site.mailbox_states().values())["intent"] >= 20  # four batches at least

    site.emulator.set_faults(latency_ms=0)
    resumed = site.syncd("apply")
    assert resumed.returncode == 0, resumed.stderr
    assert_exactly_once(site)


def test_crash_in_a_batch_that_was_allowed_does_not_trip_the_create_guard(site: Site) -> None:
    site.configure(safety={"max_creates_per_cycle": 5})
    site.write_people(people(N))
    refused = site.syncd("apply")
    assert refused.returncode == 75 and site.emulator.mailboxes() == []
    crashed = site.syncd(
        "apply",
        "--allow-creates",
        str(N),
        env={"SYNCD_TEST_CRASH_AT": "after_send", "SYNCD_TEST_CRASH_COUNT": "2"},
    )
    assert crashed.returncode == -signal.SIGKILL
    # The decision was taken in the allowed run: the rest is finished without a new allowance.
    resumed = site.syncd("apply")
    assert resumed.returncode == 0, resumed.stderr
    assert_exactly_once(site)


FAULTS: dict[str, dict[str, object]] = {
    "connection dropped before the write": {"drop_rate": 0.3},
    "connection dropped after the write": {"drop_after_write_rate": 0.3},
    "500 after the write": {"error_after_write_rate": 0.3},
    "timeout after the write": {"timeout_after_write_rate": 0.3, "hang_s": 3},
    "500 before any write": {"error_rate": 0.3},
    "503 with Retry-After": {"unavailable_rate": 0.3, "retry_after": 0},
    "429 with Retry-After": {"rate_limit_every": 3, "retry_after": 0},
    "per-item failures": {"fail_rate": 0.3},
    "batch too large (413)": {"max_batch": 4},
}


@pytest.mark.parametrize("faults", list(FAULTS.values()), ids=list(FAULTS))
def test_every_fault_ends_in_exactly_one_mailbox_each(
    site: Site, faults: dict[str, object]
) -> None:
    every_fault_ends_in_exactly_one_mailbox_each(site, faults)


# The faults that leave the outcome of a request in doubt, and per-item failures: with three
# domains, each lookup and retry must go to the domain the request was sent to.
DOUBTFUL = ("connection dropped after the write", "timeout after the write", "per-item failures")


@pytest.mark.parametrize("fault", DOUBTFUL)
def test_every_fault_ends_in_exactly_one_mailbox_each_in_three_domains(
    domains_site: Site, fault: str
) -> None:
    every_fault_ends_in_exactly_one_mailbox_each(domains_site, FAULTS[fault])


def every_fault_ends_in_exactly_one_mailbox_each(site: Site, faults: dict[str, object]) -> None:
    site.configure(hybridbox={"timeout_s": 1})
    site.write_people(staff(site))
    site.emulator.set_faults(seed=7, **faults)
    for _ in range(3):
        site.syncd("apply")
        site.syncd("retry", "--all")
    site.emulator.set_faults(**{k: 0 for k in faults if k != "retry_after" and k != "hang_s"})
    settle(site)
    assert_exactly_once(site)


def test_batch_too_large_halves_the_batch_and_says_so(site: Site) -> None:
    site.emulator.set_faults(max_batch=3)
    site.write_people(people(N))
    result = site.syncd("apply")
    assert result.returncode == 0, result.stderr
    assert_exactly_once(site)
    learned = site.log_events("batch.shrunk")
    assert learned and "batch_size=2" in learned[-1]


def test_forbidden_create_exits_77_and_records_nothing_as_created(site: Site) -> None:
    site.write_people(people(3))
    site.emulator.set_faults(forbid_create=True)
    result = site.syncd("apply")
    assert result.returncode == 77, result.stderr
    assert "mailbox.create" in result.stderr
    assert "created" not in set(site.mailbox_states().values())
    site.emulator.set_faults(forbid_create=False)
    assert site.syncd("apply").returncode == 0
