"""``syncd adopt``: match mailboxes that already exist on Hybridbox to people, once.

Run before the first ``apply`` against a domain that already has staff mailboxes, so that a first
run never mass-creates existing staff. Matching is conservative:

1. by address: the person's email in the source equals the mailbox's primary address;
2. then by name: first and last name equal (case-insensitive), and only when exactly one person
   and exactly one mailbox have that name. Ambiguous names are reported and left alone.

A mailbox at a reserved local part (a role address such as ``postmaster@`` or ``admin@``, or one
of ``addresses.reserved``) is never matched to anyone: it is the domain's, not a person's, and a
person's mailbox is listed as a leaver's one day.

This is the only way syncd takes over a mailbox it did not create (``apply`` adopts on its own
only what its intent journal says it sent: see :mod:`syncd.cycle._outcomes`).

Matched people are recorded as ``adopted``; every other existing address is recorded as taken so
that syncd never issues it. People are *not* recorded here, so the next ``apply`` still counts the
unmatched ones as first seen and the create guards still apply to them.
"""

from __future__ import annotations

import logging
import sqlite3
from collections import defaultdict
from dataclasses import asdict, dataclass

from syncd import addresses
from syncd.config import Config
from syncd.cycle._connect import connect
from syncd.cycle._route import router
from syncd.cycle._run import new_cycle_id
from syncd.cycle._stage import stage_source
from syncd.hybridbox import Mailbox
from syncd.logs import cycle_context, event, get_logger
from syncd.model import ReadReport
from syncd.source import open_source
from syncd.state import State, StateLock, iso, utcnow

log = get_logger("syncd.adopt")


@dataclass(slots=True)
class AdoptReport:
    mailboxes: int = 0
    by_address: int = 0
    by_name: int = 0
    ambiguous: int = 0
    unmatched_mailboxes: int = 0
    without_mailbox: int = 0
    dry_run: bool = False

    def __str__(self) -> str:
        verb = "would adopt" if self.dry_run else "adopted"
        return (
            f"adopt: {self.mailboxes} mailboxes on Hybridbox; {verb} "
            f"{self.by_address + self.by_name} (by address {self.by_address}, by name "
            f"{self.by_name}); {self.ambiguous} ambiguous names left alone; "
            f"{self.unmatched_mailboxes} mailboxes match nobody (their addresses stay reserved); "
            f"{self.without_mailbox} people have no mailbox yet (`syncd apply` creates them, "
            f"within the safety limits)"
            + ("; nothing was recorded (--dry-run)" if self.dry_run else "")
        )


def _name_key(first: str, last: str) -> tuple[str, str]:
    return (first.strip().casefold(), last.strip().casefold())


def adopt(config: Config, *, dry_run: bool = False) -> AdoptReport:
    with cycle_context(new_cycle_id()):
        lock = StateLock(config.state.path)
        lock.acquire()
        try:
            return _adopt(config, dry_run)
        finally:
            lock.release()


def _adopt(config: Config, dry_run: bool) -> AdoptReport:
    client = connect(config)
    state = State(config.state.path)
    report = AdoptReport(dry_run=dry_run)
    try:
        read = ReadReport()
        stage_source(state, open_source(config), read, use_blocks=False, routing=router(config))
        # Every configured domain: someone may have their mailbox in any of them (a mailbox
        # is matched to a person wherever it is; it is not moved).
        existing: dict[str, Mailbox] = {}
        for domain in config.hybridbox.all_domains:
            for mailbox in client.list_mailboxes(domain):
                existing[mailbox.primary_email.lower()] = mailbox
        report.mailboxes = len(existing)

        # People who have no mailbox in the state yet.
        people = state.query(
            "SELECT s.anchor, s.first_name, s.last_name, s.email FROM temp.seen s "
            "LEFT JOIN mailboxes m ON m.anchor = s.anchor WHERE m.anchor IS NULL "
            "AND s.disabled = 0"
        )
        already = {row["address"] for row in state.query("SELECT address FROM addresses")}
        # Role mailboxes are never a person's, whatever the source's email or name says.
        not_theirs = already | _reserved_mailboxes(config, existing)
        matches = _match_by_address(people, existing, not_theirs)
        report.by_address = len(matches)
        _match_by_name(people, existing, not_theirs, matches, report)
        matched_addresses = {m.primary_email.lower() for m in matches.values()}
        unmatched = [a for a in existing if a not in matched_addresses and a not in already]
        report.unmatched_mailboxes = len(unmatched)
        report.without_mailbox = len(people) - len(matches)
        if not dry_run:
            _record(state, config.hybridbox.domain, matches, unmatched)
        for anchor, mailbox in matches.items():
            event(
                log,
                "mailbox.adopted" if not dry_run else "adopt.would_adopt",
                anchor=anchor,
                address=mailbox.primary_email,
                mailbox_id=mailbox.id,
            )
        event(log, "adopt.summary", **asdict(report))
        return report
    finally:
        client.close()
        state.close()


def _domain_of(mailbox: Mailbox, default: str) -> str:
    domain = mailbox.domain_name or mailbox.primary_email.rpartition("@")[2]
    return (domain or default).lower()


def _reserved_mailboxes(config: Config, existing: dict[str, Mailbox]) -> set[str]:
    """The addresses of existing mailboxes at a reserved local part (``postmaster@``,
    ``admin@``, ``addresses.reserved``): they stay the domain's, recorded as taken."""
    reserved = addresses.reserved_local_parts(config.addresses.reserved)
    found = {address for address in existing if address.partition("@")[0] in reserved}
    for address in sorted(found):
        event(
            log,
            "adopt.reserved",
            address=address,
            outcome="a role address: never matched to a person, recorded as taken",
        )
    return found


def _match_by_address(
    people: list[sqlite3.Row], existing: dict[str, Mailbox], already: set[str]
) -> dict[str, Mailbox]:
    """Anchor -> mailbox for the people whose email in the source is a mailbox's address (one
    that syncd has not recorded for anyone yet)."""
    matches: dict[str, Mailbox] = {}
    for row in people:
        email = (row["email"] or "").lower()
        if email in existing and email not in already:
            matches[row["anchor"]] = existing[email]
    return matches


def _match_by_name(
    people: list[sqlite3.Row],
    existing: dict[str, Mailbox],
    already: set[str],
    matches: dict[str, Mailbox],
    report: AdoptReport,
) -> None:
    """Add to ``matches`` by name what the addresses did not match: a name that exactly one
    person and exactly one mailbox left over have. A name with more of either is ambiguous:
    counted, logged and left alone."""
    used = {m.primary_email.lower() for m in matches.values()} | already
    people_by_name: dict[tuple[str, str], list[str]] = defaultdict(list)
    for row in people:
        if row["anchor"] not in matches:
            people_by_name[_name_key(row["first_name"], row["last_name"])].append(row["anchor"])
    boxes_by_name: dict[tuple[str, str], list[Mailbox]] = defaultdict(list)
    for address, mailbox in existing.items():
        if address not in used:
            boxes_by_name[_name_key(mailbox.first_name, mailbox.last_name)].append(mailbox)
    for key, anchors in people_by_name.items():
        boxes = boxes_by_name.get(key, [])
        if len(anchors) == 1 and len(boxes) == 1:
            matches[anchors[0]] = boxes[0]
            report.by_name += 1
        elif boxes:
            report.ambiguous += 1
            event(
                log,
                "adopt.ambiguous",
                logging.WARNING,
                person=" ".join(key),
                people=len(anchors),
                mailboxes=len(boxes),
            )


def _record(state: State, default: str, matches: dict[str, Mailbox], unmatched: list[str]) -> None:
    """Record the matches, each in its mailbox's domain (``default`` if Hybridbox names
    none), and the unmatched mailboxes' addresses as taken."""
    stamp = iso(utcnow())
    with state.transaction() as conn:
        conn.executemany(
            "INSERT INTO mailboxes (anchor, state, local_part, domain, mailbox_id, first_name, "
            "last_name, created_at, updated_at) VALUES (?, 'adopted', ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    anchor,
                    m.local_part,
                    _domain_of(m, default),
                    m.id,
                    m.first_name,
                    m.last_name,
                    stamp,
                    stamp,
                )
                for anchor, m in matches.items()
            ],
        )
        conn.executemany(
            "INSERT INTO addresses (address, anchor, status, issued_at) VALUES (?, ?, 'issued', ?)"
            " ON CONFLICT(address) DO UPDATE SET anchor = excluded.anchor, status = 'issued'",
            [(m.primary_email.lower(), anchor, stamp) for anchor, m in matches.items()],
        )
        conn.executemany(
            "INSERT INTO addresses (address, anchor, status, issued_at) VALUES (?, NULL, "
            "'taken', ?) ON CONFLICT(address) DO NOTHING",
            [(address, stamp) for address in unmatched],
        )
        state.set_meta("baseline", stamp)
