"""Choosing a free address for each person of a batch, against everything the state has issued.

The first free candidate of :func:`syncd.addresses._candidates.candidates`, in order, as checking
them one by one against the state would find it, but without a query per candidate:

- addresses issued or found taken earlier in the cycle are remembered (``known_taken``): they
  stay taken for the rest of the cycle, since nobody in it can become a leaver;
- a cycle that creates many people in a state that knows few addresses (a first provisioning)
  loads them all once (:meth:`Allocator.preload`) and then allocates with no query at all;
- otherwise each round asks the state about a few candidates per person in one query, and a
  taken first choice (the 40th Anna Müller) loads every known address that starts like it.

What the state says about an address is :meth:`syncd.state._store.State.known_local_parts`: taken,
or known but free again (its holder left more than ``addresses.reserve_days`` ago). Issuing one of
the latter records its earlier holder in ``address_history`` (see :meth:`Allocator.reissued`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypeVar

from syncd import addresses
from syncd.config import Config
from syncd.logs import event, get_logger
from syncd.model import Person
from syncd.state import State

# The provisioner's logger: operators filter on the name, and allocating is part of provisioning.
log = get_logger("syncd.provision")

# At most this many address candidates per person are checked in one query while allocating.
ALLOCATE_LOOKAHEAD_MAX = 16
# A person whose candidates keep being taken has this many times more checked each round:
# 1, 4, 16, so the few with many clashes reach ALLOCATE_LOOKAHEAD_MAX in two rounds.
LOOKAHEAD_GROWTH = 4
# Local parts remembered as taken within a cycle before the memory starts over (~100 bytes each):
# a 100k first provisioning never forgets; a 1M one starts over every 120k and then asks the state.
KNOWN_TAKEN_MAX = 120_000
# A cycle with this many creates per address the state knows (a first provisioning) loads them
# all up front: then it allocates without a query, as long as nothing is forgotten.
PRELOAD_PER_CREATE = 4
# Known addresses read per clashing first choice (one index range of the state).
PREFIX_LIMIT = 5000


class Wanting(Protocol):
    """A person waiting for an address (the provisioner's batch items)."""

    person: Person
    local_part: str | None
    # Candidates found taken on Hybridbox during this cycle.
    excluded: frozenset[str]


W = TypeVar("W", bound=Wanting)


class Allocator:
    """Address allocation in one domain for one cycle (its memory is only valid within the
    cycle). Local parts are unique per domain: each domain has an allocator of its own."""

    def __init__(
        self,
        config: Config,
        state: State,
        now: datetime,
        *,
        remember_all: bool = False,
        domain: str | None = None,
    ) -> None:
        self.config = config
        # ``syncd plan`` writes nothing to the state, so what it issued is known only here:
        # it must never forget (apply's intents are in the state, which the queries ask).
        self.remember_all = remember_all
        self.state = state
        self.now = now
        self.domain = (domain or config.hybridbox.domain).lower()
        self.candidates = addresses.CandidateSource(
            config.addresses, on_reserved=self._left_out_reserved
        )
        # (anchor, local part) of the reserved candidates already logged in this cycle.
        self._told_reserved: set[tuple[str, str]] = set()
        # Local parts known taken in this cycle (issued by it, or found taken in the state).
        self._known_taken: set[str] = set()
        # Local parts the state knows whose reservation ended (issuing one records its history).
        self._reissued: set[str] = set()
        # First choices whose every known holder is in _known_taken (see allocate).
        self._learned_starts: set[str] = set()
        # True while _known_taken holds every address of the domain that may not be issued.
        self.knows_all = False

    def note_taken(self, local_part: str) -> None:
        """Hybridbox says someone else holds this address: never offer it in this cycle."""
        self._known_taken.add(local_part)

    def _left_out_reserved(self, person: Person, local_part: str, *, kept: bool = False) -> None:
        """Say once per person and cycle why a candidate was skipped: it is reserved."""
        told = (person.anchor, local_part)
        if told in self._told_reserved:
            return
        self._told_reserved.add(told)
        event(
            log,
            "address.reserved",
            anchor=person.anchor,
            local_part=local_part,
            reason=(
                "a role address (RFC 2142 and the like)"
                if addresses.is_role_local_part(local_part)
                else "in addresses.reserved"
            ),
            action=(
                "issued before it was reserved and never created: taking the next candidate"
                if kept
                else "skipped: never issued to a person"
            ),
        )

    def reissued(self, issued: Iterable[str]) -> list[str]:
        """Which of these just issued local parts had an earlier holder whose reservation
        ended; each is reported once."""
        again = [local_part for local_part in issued if local_part in self._reissued]
        self._reissued.difference_update(again)
        return again

    def preload(self, total: int) -> None:
        """Learn every address the state knows when they are few next to the creates to come.

        A first provisioning (the state knows none, or a few from an earlier try) then finds
        every free address in memory; a cycle with a few new hires in a large state keeps asking
        the database for its few candidates instead of loading everything for them.
        """
        limit = min(PRELOAD_PER_CREATE * total, KNOWN_TAKEN_MAX // 2)
        if self.knows_all or self.state.address_count(limit + 1) > limit:
            return
        self._known_taken |= self._taken_local_parts([""], prefix=True, limit=limit)
        self.knows_all = True

    def allocate(self, batch: Iterable[W]) -> list[W]:
        """Give every item without an address the first free candidate; the hopeless (every
        candidate taken) are returned, still without one."""
        in_batch: set[str] = set()
        waiting: list[tuple[W, Iterator[str]]] = []
        reserved = self.candidates.reserved
        for item in batch:
            if item.local_part and item.local_part in reserved:
                # Issued before it was reserved (an older syncd, or addresses.reserved grew)
                # and never created: it is not sent; the person gets their next candidate.
                self._left_out_reserved(item.person, item.local_part, kept=True)
                item.local_part = None
            if item.local_part:
                in_batch.add(item.local_part)  # a retry keeps the address issued to it
            else:
                waiting.append((item, self._candidates_of(item)))
        if self.knows_all:
            hopeless = self._allocate_known(waiting, in_batch)
        else:
            hopeless = self._allocate_asking(waiting, in_batch)
        known_taken = self._known_taken
        known_taken |= in_batch
        if len(known_taken) > KNOWN_TAKEN_MAX and not self.remember_all:
            # Only a shortcut: everything in it is in the state too (committed with the
            # intents), where the queries find it. Bounded, a 1M first run stays small.
            known_taken.clear()
            self._learned_starts.clear()
            self.knows_all = False
        return hopeless

    def _allocate_known(
        self, waiting: list[tuple[W, Iterator[str]]], in_batch: set[str]
    ) -> list[W]:
        """Every address that may not be issued is in known_taken: no rounds, no queries."""
        known_taken = self._known_taken
        hopeless: list[W] = []
        for item, candidates in waiting:
            for candidate in candidates:
                if not (
                    candidate in known_taken or candidate in in_batch or candidate in item.excluded
                ):
                    item.local_part = candidate
                    in_batch.add(candidate)
                    break
            else:
                hopeless.append(item)
        return hopeless

    def _allocate_asking(
        self, waiting: list[tuple[W, Iterator[str]]], in_batch: set[str]
    ) -> list[W]:
        """One query per round for the whole batch (a few candidates per person per round)."""
        known_taken = self._known_taken
        hopeless: list[W] = []
        # One candidate each at first (usually free: clashes already seen this cycle are skipped
        # locally), more per round for the few whose candidates keep being taken.
        lookahead = 1
        while waiting:
            rounds: list[tuple[W, Iterator[str], list[str]]] = []
            for item, candidates in waiting:
                picks: list[str] = []
                for candidate in candidates:
                    if candidate in known_taken or candidate in item.excluded:
                        continue
                    picks.append(candidate)
                    if len(picks) >= lookahead:
                        break
                rounds.append((item, candidates, picks))
            taken = self._taken_local_parts({c for _, _, picks in rounds for c in picks})
            known_taken |= taken
            if lookahead == 1:
                # A taken first choice: learn every address the state has that starts like it,
                # so the next rounds skip them without asking. Once per start while what was
                # learned is remembered (known_taken).
                clashing = {picks[0] for _, _, picks in rounds if picks and picks[0] in taken}
                clashing -= self._learned_starts
                if clashing:
                    self._learned_starts |= clashing
                    known_taken |= self._taken_local_parts(clashing, prefix=True)
            lookahead = min(lookahead * LOOKAHEAD_GROWTH, ALLOCATE_LOOKAHEAD_MAX)
            waiting = []
            for item, candidates, picks in rounds:
                if not picks:
                    hopeless.append(item)
                    continue
                for candidate in picks:
                    if candidate not in taken and candidate not in in_batch:
                        item.local_part = candidate
                        in_batch.add(candidate)
                        break
                else:
                    waiting.append((item, candidates))
        return hopeless

    def _candidates_of(self, item: Wanting) -> Iterator[str]:
        preferred = None
        email = item.person.email
        if email and email.lower().endswith("@" + self.domain):
            preferred = email.rsplit("@", 1)[0].lower()
        return self.candidates.for_person(item.person, preferred, self._known_taken)

    def _taken_local_parts(
        self, local_parts: Iterable[str], *, prefix: bool = False, limit: int = PREFIX_LIMIT
    ) -> set[str]:
        """Which of these local parts (with ``prefix``: which local parts starting with one of
        these, ``limit`` per start on average) the state says may not be issued in this domain."""
        reserve, leaver = self.config.addresses.reserve_days, self.config.sync.leaver_after_missing
        if prefix:
            starts = list(local_parts)
            known = self.state.known_local_parts_from(
                starts, self.domain, self.now, reserve_days=reserve,
                leaver_after_missing=leaver, limit=limit * len(starts),
            )  # fmt: skip
        else:
            known = self.state.known_local_parts(
                local_parts, self.domain, self.now, reserve_days=reserve,
                leaver_after_missing=leaver,
            )  # fmt: skip
        self._reissued.update(known.free_again)  # their history is kept when issued again
        return set(known.taken)


@dataclass(slots=True)
class _Wish:
    """A person in ``syncd plan``'s dry allocation (a :class:`Wanting`, like apply's items)."""

    person: Person
    local_part: str | None = None
    excluded: frozenset[str] = frozenset()


def preview_addresses(
    config: Config,
    state: State,
    now: datetime,
    people: Sequence[tuple[Person, str | None, str]],
) -> dict[str, str | None]:
    """The local part ``apply`` would send each person with, by anchor (None: every candidate
    is taken), chosen as it chooses them: the same allocator against what the state has issued,
    in the same order and batches, but with nothing written. Provisional: Hybridbox may still
    report one taken, and apply then takes the person's next free candidate.

    ``people`` are the creates and retries in the order apply sends them, each with the address
    already issued to them (a retry keeps it) and the domain it goes to. Apply makes each batch
    of one domain, in the order of that domain's people: so does this.
    """
    by_domain: dict[str, list[tuple[Person, str | None]]] = {}
    for person, local_part, domain in people:
        by_domain.setdefault(domain, []).append((person, local_part))
    size = config.hybridbox.batch_size
    chosen: dict[str, str | None] = {}
    for domain, wanting in by_domain.items():
        allocator = Allocator(config, state, now, remember_all=True, domain=domain)
        allocator.preload(len(wanting))
        for start in range(0, len(wanting), size):
            batch = [
                _Wish(person, local_part) for person, local_part in wanting[start : start + size]
            ]
            allocator.allocate(batch)
            chosen.update((wish.person.anchor, wish.local_part) for wish in batch)
    return chosen
