"""`syncd apply` against a Hybridbox that answers wrongly or too slowly, end to end.

A real syncd process, the emulator over HTTP with a fault switched on, the state in SQLite. The
promises checked: every person ends with their own mailbox and nobody with another's, nothing is
recorded that Hybridbox did not confirm, and a cycle's waiting stays within
``hybridbox.retry_budget_s`` plus one request's ``hybridbox.timeout_s``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.support.emulator import MakeEmulator
from tests.support.site import Site, people

N = 30
EX_UNAVAILABLE = 69
TIMEOUT_S = 1
BUDGET_S = 2
# Starting Python, reading the export, the lookups: what a cycle takes besides waiting.
OVERHEAD_S = 5.0
# The emulator drips an answer body at this rate: a 10-item bulk answer (some 5 kB) would take
# over half an hour, each byte well within the per-read timeout.
DRIP_BYTES_PER_S = 2


def recorded(site: Site) -> dict[str, dict[str, Any]]:
    with site.db() as conn:
        rows = conn.execute("SELECT anchor, state, local_part, mailbox_id FROM mailboxes")
        return {row["anchor"]: dict(row) for row in rows}


def assert_only_confirmed_mailboxes_recorded(site: Site) -> int:
    """Every created row is a mailbox that exists, at its address, with that person's names.
    Returns how many there are."""
    remote = {m["local_part"]: m for m in site.emulator.mailboxes()}
    names = {row.anchor: (row.first, row.last) for row in people(N)}
    created = 0
    for anchor, row in recorded(site).items():
        if row["state"] not in ("created", "adopted"):
            continue
        created += 1
        mailbox = remote[row["local_part"]]
        assert (mailbox["first_name"], mailbox["last_name"]) == names[anchor], anchor
        assert mailbox["id"] == row["mailbox_id"], anchor
    return created


def test_created_entries_shifted_by_one_leave_everyone_with_their_own_mailbox(
    site: Site,
) -> None:
    site.write_people(people(N))
    site.emulator.set_faults(shift_created=True)  # item i is answered with item i+1's mailbox

    result = site.syncd("apply")

    assert result.returncode == 0, result.stderr
    remote = site.emulator.mailboxes()
    assert len(remote) == N  # each created once: the answer was wrong, not the creates
    own = {(m["first_name"], m["last_name"]): m for m in remote}
    rows = recorded(site)
    for person in people(N):
        mailbox = own[(person.first, person.last)]
        assert rows[person.anchor]["state"] == "created"
        assert rows[person.anchor]["local_part"] == mailbox["local_part"], person.anchor
        assert rows[person.anchor]["mailbox_id"] == mailbox["id"], person.anchor
    assert len({row["mailbox_id"] for row in rows.values()}) == N  # nobody has another's
    # Each entry was doubted and settled by looking its address up, as a lost answer is.
    assert len(site.log_events("hybridbox.bulk_entry_mismatch")) == N
    assert len(site.log_events("mailbox.created")) == N


def test_a_bulk_answer_dripped_forever_ends_the_cycle_within_its_budget(
    make_emulator: MakeEmulator, tmp_path: Path
) -> None:
    emulator = make_emulator(drip_bytes_per_s=DRIP_BYTES_PER_S, fault_routes=["bulk_create"])
    site = Site(tmp_path, emulator)
    # Requests in flight together time out together, and the budget counts that second once:
    # more batches than the window, so that the budget runs out before the people do.
    site.configure(hybridbox={"timeout_s": TIMEOUT_S, "retry_budget_s": BUDGET_S, "batch_size": 3})
    site.write_people(people(N))

    started = time.monotonic()
    result = site.syncd("apply", timeout=60)
    took = time.monotonic() - started

    # Each bulk request ends at its deadline as an unknown outcome, and the time lost counts
    # against the budget: once it is spent, the cycle stops with 69, its batch left as intents.
    assert result.returncode == EX_UNAVAILABLE, result.stderr
    assert "hybridbox.retry_budget_s" in result.stderr
    assert took < BUDGET_S + TIMEOUT_S + OVERHEAD_S
    assert site.log_events("hybridbox.outcome_unknown")
    # What was recorded was confirmed by a lookup; the rest waits as intents, never as created.
    created = assert_only_confirmed_mailboxes_recorded(site)
    assert 0 < created < N
    assert {row["state"] for row in recorded(site).values()} <= {"created", "intent"}

    # A healthy Hybridbox again: the next cycle settles the intents by lookup and creates the
    # rest, each person once.
    emulator.set_faults(drip_bytes_per_s=0)
    again = site.syncd("apply", timeout=60)
    assert again.returncode == 0, again.stderr
    assert assert_only_confirmed_mailboxes_recorded(site) == N
    assert len(emulator.mailboxes()) == N


def test_a_server_dripping_every_answer_is_given_up_on_within_the_budget(site: Site) -> None:
    site.configure(hybridbox={"timeout_s": TIMEOUT_S, "retry_budget_s": BUDGET_S})
    site.write_people(people(N))
    site.emulator.set_faults(drip_bytes_per_s=DRIP_BYTES_PER_S)  # the domain check too

    started = time.monotonic()
    result = site.syncd("apply", timeout=60)
    took = time.monotonic() - started

    # Retried with backoff (Hybridbox did answer, if slowly), each try charged its timeout.
    assert result.returncode == EX_UNAVAILABLE, result.stderr
    assert "no complete answer within 1 s (hybridbox.timeout_s)" in result.stderr
    assert took < BUDGET_S + TIMEOUT_S + OVERHEAD_S
    assert site.emulator.mailboxes() == []
