"""The planner: pure functions from (people, what the state knows, policy, today) to decisions.

Nothing here does I/O, so ``syncd plan`` shows exactly what ``syncd apply`` would do, and every
rule is unit-tested with a fixed "today". The engine feeds people in chunks together with what the
state knows about each (:class:`Known`), so the planner never needs the whole population in memory.

Rules, per person:

- no mailbox, active, start date within the window → ``create``
- no mailbox, active, start date further ahead → ``scheduled`` (counted, shown with its due date)
- disabled and no mailbox → nothing (a leaver with a mailbox is a report, not an action)
- failed before, backoff passed → ``retry``; not passed → ``waiting``
- quarantined, source record unchanged → ``quarantined``; changed → ``retry`` (released)
- pending (decided earlier, e.g. a create that was lost and proven missing) → ``retry`` now
- intent (outcome unknown, not yet resolved) → ``unresolved``: never re-sent blindly
- has a mailbox, ``update_names`` on and the names differ from the mailbox's → ``rename``
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum

from syncd.config import Config
from syncd.model import Person, ReadReport

# Backoff after the 1st, 2nd, 3rd, 4th failure; then daily.
BACKOFF = (
    timedelta(minutes=15),
    timedelta(hours=1),
    timedelta(hours=6),
    timedelta(hours=24),
)
BACKOFF_AFTER = timedelta(days=1)
# The day numbers of date.min and date.max: date arithmetic is clamped to them, never overflows.
_FIRST_DAY = date.min.toordinal()
_LAST_DAY = date.max.toordinal()
_SECONDS_A_DAY = 86_400


class Kind(StrEnum):
    CREATE = "create"
    RETRY = "retry"
    RENAME = "rename"
    SCHEDULED = "scheduled"
    WAITING = "waiting"
    QUARANTINED = "quarantined"
    UNRESOLVED = "unresolved"


@dataclass(frozen=True, slots=True)
class Known:
    """What the state knows about one person (``None`` in the planner: first seen)."""

    digest: str | None = None
    mailbox_state: str | None = None
    local_part: str | None = None
    mailbox_id: str | None = None
    mailbox_first: str | None = None
    mailbox_last: str | None = None
    attempts: int = 0
    next_attempt_at: datetime | None = None
    failed_digest: str | None = None
    # The mail domain of the mailbox row (where it is, was sent or was issued an address).
    domain: str | None = None
    # A request for this person at ``local_part`` in ``domain`` went unanswered: it may land.
    unanswered: bool = False


def create_target(routed: str, known: Known | None) -> tuple[str, str | None]:
    """Where a create or retry goes: the domain, and the local part already issued there (None:
    the allocator chooses one).

    The person's routed domain (``hybridbox.domains``), unless an earlier request of syncd's for
    them in another domain went unanswered: that one may still land, and a second mailbox must
    never be made, so they stay there. Someone re-routed before any mailbox existed (pending,
    failed, quarantined) gets a new address in the new domain; the old one stays issued.
    """
    if known is None or known.domain is None or known.domain == routed:
        return routed, known.local_part if known else None
    if known.unanswered and known.local_part:
        return known.domain, known.local_part
    return routed, None


@dataclass(frozen=True, slots=True)
class Policy:
    provision_days_before: int = 7
    update_names: bool = False
    # Complete reads a person must miss to count as a leaver (``sync.leaver_after_missing``):
    # the planner does not read it, but the read's lifecycle lines do (see Transition).
    leaver_after_missing: int = 3

    @classmethod
    def from_config(cls, config: Config) -> Policy:
        return cls(
            provision_days_before=config.sync.provision_days_before,
            update_names=config.sync.update_names,
            leaver_after_missing=config.sync.leaver_after_missing,
        )


@dataclass(frozen=True, slots=True)
class Action:
    kind: Kind
    person: Person
    known: Known | None = None
    due: date | None = None
    # True when the person was not in the state before this read (what the create guards count).
    first_seen: bool = False
    # The mail domain a create or retry goes to, or a scheduled person will get (``syncd plan``
    # sets it; apply queues it with the person).
    domain: str | None = None


def due_date(person: Person, policy: Policy) -> date | None:
    """The day from which a mailbox may be created, or None when there is no start date.

    Done on day numbers and clamped to date.min..date.max: ``date - timedelta`` raises
    OverflowError below 0001-01-01 (a placeholder start date that reached the state before the
    readers refused it, or a huge provision_days_before), and one such person made every cycle
    fail, so that nobody else was provisioned again. A window that opens before the first
    possible day is simply open.
    """
    if person.start_date is None:
        return None
    day = person.start_date.toordinal() - policy.provision_days_before
    return date.fromordinal(min(max(day, _FIRST_DAY), _LAST_DAY))


def plan_person(
    person: Person, known: Known | None, policy: Policy, today: date, now: datetime
) -> Action | None:
    """Decide what to do about one person. ``None`` means nothing to do."""
    first_seen = known is None or known.digest is None
    state = known.mailbox_state if known else None

    if state in ("created", "adopted"):
        assert known is not None
        if policy.update_names and (
            person.first_name != known.mailbox_first or person.last_name != known.mailbox_last
        ):
            return Action(Kind.RENAME, person, known)
        return None

    if person.disabled:
        return None
    due = due_date(person, policy)
    if due is not None and today < due:
        return Action(Kind.SCHEDULED, person, known, due=due, first_seen=first_seen)

    if state is None:
        return Action(Kind.CREATE, person, known, first_seen=first_seen)
    assert known is not None
    if state == "intent":
        return Action(Kind.UNRESOLVED, person, known)
    if state == "pending":
        return Action(Kind.RETRY, person, known)
    if state == "quarantined":
        if known.failed_digest is not None and known.failed_digest != person.digest:
            return Action(Kind.RETRY, person, known)
        return Action(Kind.QUARANTINED, person, known)
    if state == "failed":
        if known.next_attempt_at is None or known.next_attempt_at <= now:
            return Action(Kind.RETRY, person, known)
        return Action(Kind.WAITING, person, known)
    raise ValueError(f"unknown mailbox state {state!r} for {person.anchor}")


class Change(StrEnum):
    """What a read changes about a person, beyond their mailbox (logged as ``person.<value>``)."""

    MISSING = "missing"  # first absence from a complete read
    LEAVER = "leaver"  # missing from leaver_after_missing complete reads, or disabled
    RETURNED = "returned"  # seen again after missing, or enabled again after being a leaver
    NAME_CHANGED = "name_changed"  # first or last name differ from the last read's
    # hybridbox.domains route someone with a mailbox to another domain than the last read did
    # (and than their mailbox's): the mailbox stays where it is.
    DOMAIN_CHANGED = "domain_changed"


@dataclass(frozen=True, slots=True)
class Transition:
    """One person's :class:`Change` in a read, found in SQL from the staged and missing people
    (:func:`syncd.cycle._stage.record_read`): ``apply`` logs it once, ``plan`` lists it."""

    change: Change
    anchor: str
    first_name: str
    last_name: str
    # The mailbox's address, or the one issued to a create still pending; None without either.
    address: str | None = None
    # Where the record is in this read (None for the missing, who are not in it).
    locator: str | None = None
    # LEAVER: "missing" or "disabled"; RETURNED: what they were ("missing" or "disabled").
    reason: str | None = None
    # Complete reads missed: after this read (MISSING, LEAVER), before it (RETURNED).
    missing: int = 0
    # NAME_CHANGED: the names of the last read, and whether the mailbox will carry the new ones
    # (sync.update_names, or no mailbox yet). RETURNED: whether the record is disabled now.
    old_first: str | None = None
    old_last: str | None = None
    applied: bool = False
    disabled: bool = False
    # DOMAIN_CHANGED: the domain the person is routed to now, and their mailbox's.
    domain: str | None = None
    mailbox_domain: str | None = None


@dataclass(slots=True)
class Plan:
    """The decisions of one cycle, in source order within each list.

    With ``keep=False`` (``apply``), creates, retries and scheduled people are only counted, so
    that a first provisioning of 100k people never holds 100k actions in memory; the engine
    streams them to the provisioner instead. ``syncd plan`` keeps them to show them.
    """

    keep: bool = True
    creates: list[Action] = field(default_factory=list)
    retries: list[Action] = field(default_factory=list)
    renames: list[Action] = field(default_factory=list)
    scheduled: list[Action] = field(default_factory=list)
    create_count: int = 0
    retry_count: int = 0
    scheduled_count: int = 0
    waiting: int = 0
    quarantined: int = 0
    unresolved: int = 0
    # Creates for people first seen in this read: what the create guards count.
    new_creates: int = 0
    # Renames of people a delta read did not return: they wait for a read that does (the next
    # full read at the latest; see syncd.cycle._candidates).
    renames_waiting: int = 0
    # ``syncd plan`` only: the local part each create and retry would be sent with, by anchor,
    # chosen as apply chooses it (None: every candidate is taken); and what the read changes
    # about people (apply logs these instead).
    addresses: dict[str, str | None] = field(default_factory=dict)
    lifecycle: list[Transition] = field(default_factory=list)

    @property
    def changes(self) -> int:
        """What apply would change on Hybridbox (``plan --check``): creates, retries, renames,
        and the intents an interrupted cycle left, which it looks up and finishes."""
        return self.create_count + self.retry_count + len(self.renames) + self.unresolved

    def add(self, action: Action) -> None:
        if action.kind is Kind.CREATE:
            self.create_count += 1
            self.new_creates += action.first_seen
            if self.keep:
                self.creates.append(action)
        elif action.kind is Kind.RETRY:
            self.retry_count += 1
            if self.keep:
                self.retries.append(action)
        elif action.kind is Kind.RENAME:
            self.renames.append(action)
        elif action.kind is Kind.SCHEDULED:
            self.scheduled_count += 1
            if self.keep:
                self.scheduled.append(action)
        elif action.kind is Kind.WAITING:
            self.waiting += 1
        elif action.kind is Kind.QUARANTINED:
            self.quarantined += 1
        else:
            self.unresolved += 1


def plan(
    people: Iterable[tuple[Person, Known | None]],
    policy: Policy,
    today: date,
    now: datetime,
    *,
    keep: bool = True,
) -> Plan:
    result = Plan(keep=keep)
    for person, known in people:
        action = plan_person(person, known, policy, today, now)
        if action is not None:
            result.add(action)
    return result


# ------------------------------------------------------------------------------------- failures


@dataclass(frozen=True, slots=True)
class FailureDecision:
    state: str  # 'failed' or 'quarantined'
    attempts: int
    next_attempt_at: datetime | None


def after_failure(
    attempts_before: int,
    first_failed_at: datetime | None,
    now: datetime,
    *,
    permanent: bool,
    quarantine_attempts: int,
    quarantine_days: float,
) -> FailureDecision:
    """Backoff and quarantine after one more failed attempt.

    Permanent failures (the input itself is invalid) are quarantined at once: retrying the same
    input cannot help; a changed source record or ``syncd retry`` releases them.
    """
    attempts = attempts_before + 1
    since = first_failed_at or now
    # In seconds, not timedelta(days=quarantine_days), which overflows past 999,999,999 days
    # (the setting has no upper bound).
    if (
        permanent
        or attempts >= quarantine_attempts
        or (now - since).total_seconds() >= quarantine_days * _SECONDS_A_DAY
    ):
        return FailureDecision("quarantined", attempts, None)
    delay = BACKOFF[attempts - 1] if attempts <= len(BACKOFF) else BACKOFF_AFTER
    try:
        next_attempt = now + delay
    except OverflowError:  # only a clock at the end of time gets here; never crash on it
        next_attempt = datetime.max.replace(tzinfo=now.tzinfo)
    return FailureDecision("failed", attempts, next_attempt)


# --------------------------------------------------------------------------------------- guards


@dataclass(frozen=True, slots=True)
class GuardInput:
    accepted: int  # people accepted from this read
    complete: bool
    last_complete_accepted: int | None  # None: this is the first complete read
    new_creates: int  # creates for people first seen in this read
    provisioned: int  # mailboxes already created or adopted
    min_source_people: int
    max_source_drop_percent: float
    max_creates_per_cycle: int
    max_creates_percent: float
    allow_creates: int | None = None  # `apply --allow-creates N`
    # A delta read returns the changed people only: it says nothing about the source's size.
    delta: bool = False


def check_guards(guard: GuardInput) -> list[str]:
    """Reasons to refuse this cycle; empty when it may be applied."""
    reasons: list[str] = []
    if not guard.delta:
        reasons += _source_size_reasons(guard)
    last = guard.last_complete_accepted
    allowed = guard.allow_creates
    if allowed is not None and guard.new_creates <= allowed:
        return reasons
    if guard.new_creates > guard.max_creates_per_cycle:
        reasons.append(
            f"{guard.new_creates} new people would get a mailbox, more than "
            f"safety.max_creates_per_cycle={guard.max_creates_per_cycle}; if that is right, run "
            f"`syncd apply --allow-creates {guard.new_creates}` once"
        )
    elif last is not None and guard.provisioned > 0:
        percent = 100.0 * guard.new_creates / guard.provisioned
        if percent > guard.max_creates_percent:
            reasons.append(
                f"{guard.new_creates} new people would get a mailbox, {percent:.1f}% of the "
                f"{guard.provisioned} already provisioned (more than "
                f"safety.max_creates_percent={guard.max_creates_percent:g}); if that is right, "
                f"run `syncd apply --allow-creates {guard.new_creates}` once"
            )
    return reasons


def _source_size_reasons(guard: GuardInput) -> list[str]:
    """The guards on the size of a full read: too few people, or a big drop since the last."""
    reasons: list[str] = []
    if guard.accepted < guard.min_source_people:
        reasons.append(
            f"the source returned {guard.accepted} usable people, fewer than "
            f"safety.min_source_people={guard.min_source_people}; check the source (an empty "
            f"or cut-off export?)"
        )
    last = guard.last_complete_accepted
    if last:
        drop = 100.0 * (last - guard.accepted) / last
        if drop > guard.max_source_drop_percent:
            reasons.append(
                f"the source shrank from {last} to {guard.accepted} people ({drop:.1f}% drop, "
                f"more than safety.max_source_drop_percent={guard.max_source_drop_percent:g}); "
                f"check the source; if the drop is real, raise the limit for one run"
            )
    return reasons


def summarize_report(report: ReadReport) -> str:
    state = "complete" if report.complete else f"INCOMPLETE ({report.incomplete_reason})"
    return f"read={report.read} rejected={report.rejected} {state}"
