"""Role addresses are never issued to a person, nor adopted as one's, in a whole cycle.

Issue "hostile input must never cost data", item 20: the allocator skips a reserved candidate like
a taken one and logs once why (``address.reserved``); a retry that kept an address issued before it
was reserved gets a new one; ``syncd adopt`` never matches a role mailbox to a person. Also here:
a look-alike name (a Cyrillic "А" for the Latin "A") that spells an address someone holds is a
clash like any other. (The candidate lists themselves: tests/addresses/test_reserved.py.)
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from syncd.cycle._allocate import Allocator
from syncd.cycle._batch import Item
from syncd.model import Person
from syncd.state import Intent, Journal, State
from tests.support.configs import offline_config
from tests.support.events import collecting
from tests.support.site import Row, Site

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _allocator(tmp_path: Path, **addresses: object) -> tuple[Allocator, State]:
    config = offline_config(tmp_path, tmp_path / "state.db", addresses=addresses)
    state = State(tmp_path / "state.db")
    return Allocator(config, state, NOW), state


def test_a_desired_role_address_is_skipped_and_logged_once(tmp_path: Path) -> None:
    allocator, _ = _allocator(tmp_path, templates=["{first}", "{first}.{last}"])
    admin = Item(Person("E1", "Admin", "Root", email="admin@example.com"))
    with collecting("syncd.provision") as log:
        assert allocator.allocate([admin]) == []
    assert admin.local_part == "admin.root"
    # The desired admin@ and the template {first} give the same reserved address: one line.
    [said] = [event.fields for event in log.named("address.reserved")]
    assert said == {
        "anchor": "E1",
        "local_part": "admin",
        "reason": "a role address (RFC 2142 and the like)",
        "action": "skipped: never issued to a person",
    }


def test_a_retry_keeping_an_address_that_is_reserved_now_gets_a_new_one(tmp_path: Path) -> None:
    # Issued by an older syncd (or before addresses.reserved grew), never created: not sent.
    allocator, _ = _allocator(tmp_path, reserved=["ceo"])
    retry = Item(Person("E1", "Carla", "Ceo"), local_part="ceo")
    with collecting("syncd.provision") as log:
        allocator.allocate([retry])
    assert retry.local_part == "carla.ceo"
    [said] = log.named("address.reserved")
    assert said.fields["reason"] == "in addresses.reserved"
    assert said.fields["action"].startswith("issued before it was reserved")


def test_a_look_alike_name_that_spells_a_held_address_gets_the_next_one(tmp_path: Path) -> None:
    allocator, state = _allocator(tmp_path)
    with state.transaction():
        intent = Intent("E1", "anna.meier", "Anna", "Meier")
        Journal(state, "example.com", NOW).intents([intent], "b", ())
    look_alike = Item(Person("E2", "\u0410nna", "Meier"))  # Cyrillic capital A
    allocator.allocate([look_alike])
    assert look_alike.local_part == "anna.meier2"


# ------------------------------------------------------------------------------------ end to end


def test_nobody_gets_a_role_address_whatever_the_export_asks(site: Site) -> None:
    site.configure(addresses={"templates": ["{first}", "{first}.{last}"], "reserved": ["CEO"]})
    site.write_people(
        [
            Row("E1", "Admin", "Root", email="admin@example.com"),
            Row("E2", "Paula", "Post", email="Postmaster@example.com"),
            Row("E3", "Chris", "Meier", email="ceo@example.com"),
            Row("E4", "Webmaster", "Jones"),
        ]
    )
    planned = site.syncd("plan", "--format", "json")
    assert planned.returncode == 0, planned.stderr
    shown = {row["anchor"]: row["address"] for row in json.loads(planned.stdout)}
    expected = {
        "E1": "admin.root@example.com",
        "E2": "paula@example.com",
        "E3": "chris@example.com",
        "E4": "webmaster.jones@example.com",
    }
    assert shown == expected

    applied = site.syncd("apply")

    assert applied.returncode == 0, applied.stderr
    created = {m["local_part"] for m in site.emulator.mailboxes()}
    assert created == {"admin.root", "paula", "chris", "webmaster.jones"}
    said = site.log_events("address.reserved")
    assert any("anchor=E1 local_part=admin " in line for line in said)
    assert any("anchor=E2 local_part=postmaster " in line for line in said)
    assert any('anchor=E3 local_part=ceo reason="in addresses.reserved"' in line for line in said)


def test_adopt_never_matches_a_role_mailbox_to_a_person(site: Site) -> None:
    site.emulator.add_mailbox("admin", "Admin", "Root")  # the IT team's, for the CA's mail
    site.emulator.add_mailbox("grace.hopper", "Grace", "Hopper")
    site.write_people(
        [Row("E1", "Admin", "Root", email="admin@example.com"), Row("E2", "Grace", "Hopper")]
    )
    adopted = site.syncd("adopt")
    assert adopted.returncode == 0, adopted.stderr
    assert site.mailbox_states() == {"E2": "adopted"}
    assert any("address=admin@example.com" in line for line in site.log_events("adopt.reserved"))
    applied = site.syncd("apply")
    assert applied.returncode == 0, applied.stderr
    assert site.addresses_of() == {"E1": "admin.root", "E2": "grace.hopper"}
