"""One sync cycle: read → stage → plan → guard → record → apply → report.

The engine is the only module that knows the order of things. It has the source read by
:mod:`syncd.cycle._stage` (which stages the new and changed people in a temporary SQLite table and
recognises the unchanged rest in blocks, so the population is never held in a Python list),
has :mod:`syncd.cycle._candidates` join the staged people with the state to find the few the planner
has to look at, asks the pure planner what to do, checks the guards, and hands the creates to
:mod:`syncd.cycle._provision`.

A cycle either raises a :class:`syncd.errors.SyncdError` (the CLI turns it into an exit code) or
returns a :class:`CycleResult`. Every cycle that got as far as opening the state is recorded in
``runs``, with its outcome, whether it succeeded or not.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import TYPE_CHECKING

from syncd.config import Config
from syncd.cycle._allocate import preview_addresses
from syncd.cycle._candidates import (
    OPEN_POLICY_KEY,
    open_policy,
    plan_and_queue,
    plan_in_full,
    queued_creates,
    refresh_open,
)
from syncd.cycle._delta import choose_scan, keep_watermark, log_scan, next_full_read
from syncd.cycle._plan import Change, GuardInput, Plan, Policy, check_guards
from syncd.cycle._route import router
from syncd.cycle._run import CycleOptions, CycleResult, new_cycle_id, today_for
from syncd.cycle._stage import Locate, Staged, preview_transitions, record_read, stage_source
from syncd.errors import GuardTripped, SyncdError
from syncd.logs import cycle_context, event, get_logger
from syncd.model import ReadReport
from syncd.source import Source, open_source
from syncd.state import State, StateLock, iso, parse_iso, utcnow

if TYPE_CHECKING:
    from syncd.cycle._provision import Provisioner
    from syncd.hybridbox import HybridboxClient, Mailbox

log = get_logger("syncd.engine")


def run_cycle(config: Config, options: CycleOptions | None = None) -> CycleResult:
    """Run one cycle. ``plan`` mode reads and plans but changes nothing anywhere."""
    options = options or CycleOptions()
    cycle_id = options.cycle_id or new_cycle_id()
    with cycle_context(cycle_id):
        if options.mode == "plan":
            return _plan_only(config, options, cycle_id)
        lock = StateLock(config.state.path)
        lock.acquire()
        try:
            return _apply(config, options, cycle_id)
        finally:
            lock.release()


def _plan_only(config: Config, options: CycleOptions, cycle_id: str) -> CycleResult:
    """What ``apply`` would do now, from a read-only state: decisions, the addresses it would
    choose, what the read changes about people, and the guards' verdict. Only temp tables
    (the connection's own, never in the file) are written."""
    started = time.monotonic()
    now = utcnow()
    path = config.state.path
    state = State(path, read_only=True) if path.exists() else State(None)
    try:
        source = open_source(config)
        choice = choose_scan(config, state, full=options.full, now=now)
        report = ReadReport(since=choice.since)
        policy = Policy.from_config(config)
        # A state from an older syncd is not migrated by a dry run: read it without blocks.
        staged = stage_source(
            state,
            source,
            report,
            options.heartbeat,
            use_blocks=state.current,
            locate=_blocks_to_locate(state, policy),
            routing=router(config),
        )
        log_scan(config, report, choice)
        the_plan, sending = plan_in_full(
            state,
            policy,
            today_for(options, now),
            now,
            delta=report.delta,
            default_domain=config.hybridbox.domain,
        )
        the_plan.addresses = preview_addresses(config, state, now, sending)
        # An older state has no blocks to tell who is missing; apply migrates it, then tells.
        the_plan.lifecycle = preview_transitions(state, report, policy) if state.current else []
        result = CycleResult(cycle_id, "plan", now, report, the_plan)
        result.counts = _plan_counts(staged, report, the_plan)
        result.counts["unchecked_first_run"] = int(
            bool(the_plan.create_count) and _first_run(state)
        )
        result.message = "; ".join(
            _guard_reasons(config, state, staged, report, result.plan, options)
        )
        result.next_full_read = next_full_read(config, state, now)
        result.duration_s = time.monotonic() - started
        return result
    finally:
        state.close()


def _blocks_to_locate(state: State, policy: Policy) -> Locate:
    """The unchanged blocks whose people plan may list, so that it can say where they are: those
    holding someone ``open``, or all when the open flags were computed under another policy
    (then the planner looks at everyone; see candidates)."""
    if state.path is None or not state.current:
        return frozenset()
    if state.get_meta(OPEN_POLICY_KEY) != open_policy(policy):
        return "all"
    return state.open_blocks()


def _first_run(state: State) -> bool:
    """No mailbox in the state and no adopt baseline: apply would first check that the domain
    has no mailboxes yet (a Hybridbox call, which plan does not make)."""
    return state.path is None or (
        not state.has_any_mailbox() and state.get_meta("baseline") is None
    )


def _plan_counts(staged: Staged, report: ReadReport, the_plan: Plan) -> dict[str, int]:
    changes = [transition.change for transition in the_plan.lifecycle]
    return {
        "read": report.read,
        "rejected": report.rejected,
        "accepted": staged.accepted,
        "new": the_plan.new_creates,
        "creates": the_plan.create_count,
        "retries": the_plan.retry_count,
        "renames": len(the_plan.renames),
        "scheduled": the_plan.scheduled_count,
        "waiting": the_plan.waiting,
        "quarantined": the_plan.quarantined,
        "unresolved": the_plan.unresolved,
        # Creates and retries that would find every address candidate taken (quarantined).
        "no_address": sum(local_part is None for local_part in the_plan.addresses.values()),
        "missing": changes.count(Change.MISSING),
        "new_leavers": changes.count(Change.LEAVER),
        "returned": changes.count(Change.RETURNED),
        "name_changes": changes.count(Change.NAME_CHANGED),
    }


def _guard_reasons(
    config: Config,
    state: State,
    staged: Staged,
    report: ReadReport,
    the_plan: Plan,
    options: CycleOptions,
) -> list[str]:
    last = state.last_complete_read() if state.path is not None else None
    safety = config.safety
    return check_guards(
        GuardInput(
            accepted=staged.accepted,
            complete=report.complete,
            last_complete_accepted=last.accepted if last else None,
            new_creates=the_plan.new_creates,
            # Only the percent guard on new creates reads it: no count when there are none.
            provisioned=state.provisioned_count() if the_plan.new_creates else 0,
            min_source_people=safety.min_source_people,
            max_source_drop_percent=safety.max_source_drop_percent,
            max_creates_per_cycle=safety.max_creates_per_cycle,
            max_creates_percent=safety.max_creates_percent,
            allow_creates=options.allow_creates,
            delta=report.delta,
        )
    )


class _Hybridbox:
    """The cycle's connection to Hybridbox, opened (token and domain checked) on first need.

    A cycle with nothing to send neither loads httpx nor contacts Hybridbox, unless the last
    successful check is older than ``hybridbox.check_every``: then it checks at the start, so an
    expired token is reported within that time even when nobody new arrives.
    """

    def __init__(self, config: Config, options: CycleOptions, now: datetime) -> None:
        self.config, self.options, self.now = config, options, now
        self._client: HybridboxClient | None = None
        self._provisioner: Provisioner | None = None

    def check_due(self, state: State) -> bool:
        every = self.config.hybridbox.check_every
        checked = state.get_meta(_CHECKED_KEY)
        return not every or checked is None or parse_iso(checked) + every <= self.now

    def connect(self) -> None:
        if self._client is None:
            # Imported here so that a cycle with nothing to send never loads httpx.
            from syncd.cycle._connect import connect

            self._client = connect(self.config, self.options.stop)

    def any_mailbox(self) -> Mailbox | None:
        """A mailbox one of the configured domains already has, or None."""
        self.connect()
        assert self._client is not None
        return _first_mailbox(self._client, self.config.hybridbox.all_domains)

    def provisioner(self, state: State) -> Provisioner:
        if self._provisioner is None:
            from syncd.cycle._provision import Provisioner

            self.connect()
            assert self._client is not None
            self._provisioner = Provisioner(
                self.config, state, self._client, self.now, self.options
            )
        return self._provisioner

    def record_check(self, state: State) -> None:
        if self._client is not None:
            with state.transaction():
                state.set_meta(_CHECKED_KEY, iso(self.now))

    @property
    def counters(self) -> dict[str, int]:
        return dict(self._provisioner.counters) if self._provisioner is not None else {}

    @property
    def stopped(self) -> bool:
        return self._provisioner is not None and self._provisioner.stopped

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def _first_mailbox(client: HybridboxClient, domains: list[str]) -> Mailbox | None:
    """A mailbox one of the configured domains already has (each is looked at), or None."""
    for domain in domains:
        mailbox = next(iter(client.list_mailboxes(domain)), None)
        if mailbox is not None:
            return mailbox
    return None


_CHECKED_KEY = "hybridbox_checked_at"


def _apply(config: Config, options: CycleOptions, cycle_id: str) -> CycleResult:
    started = time.monotonic()
    now = utcnow()
    source = open_source(config)
    hybridbox = _Hybridbox(config, options, now)
    try:
        # A wrong token is found before the state is touched: on a first run (which has
        # everyone to create), and whenever the check is due.
        if not config.state.path.exists():
            hybridbox.connect()
        state = State(config.state.path)
    except BaseException:
        hybridbox.close()
        raise
    try:
        if hybridbox.check_due(state):
            hybridbox.connect()
        return _apply_cycle(config, options, cycle_id, state, source, hybridbox, started, now)
    finally:
        hybridbox.close()
        state.close()


def _apply_cycle(
    config: Config,
    options: CycleOptions,
    cycle_id: str,
    state: State,
    source: Source,
    hybridbox: _Hybridbox,
    started: float,
    now: datetime,
) -> CycleResult:
    run_id = state.start_run(cycle_id, "apply", source.describe(), now)
    choice = choose_scan(config, state, full=options.full, now=now)
    report = ReadReport(since=choice.since)
    result = CycleResult(cycle_id, "apply", now, report, Plan())
    reporter = options.reporter
    if reporter is not None:
        reporter.started(now)
    try:
        if state.has_intents():
            hybridbox.provisioner(state).resolve_intents()
        staged = stage_source(state, source, report, options.heartbeat, routing=router(config))
        log_scan(config, report, choice)
        if not report.complete:
            event(log, "source.incomplete", logging.WARNING, reason=report.incomplete_reason)
        policy = Policy.from_config(config)
        the_plan = result.plan = _guarded_plan(
            config, options, state, hybridbox, staged, report, policy, now
        )
        _record_and_apply(config, state, hybridbox, report, the_plan, policy, now)
        refresh_open(state, policy, delta=report.delta)
        hybridbox.record_check(state)
        result.next_full_read = next_full_read(config, state, now)
        result.totals = state.totals(config.sync.leaver_after_missing)
        result.counts = _final_counts(staged, report, the_plan, hybridbox.counters, result.totals)
        result.stopped_early = hybridbox.stopped
        result.duration_s = time.monotonic() - started
        _finish_run(state, run_id, result)
        summary(result)
        if reporter is not None:
            reporter.finished(result)
        return result
    except SyncdError as exc:
        state.finish_run(
            run_id,
            complete=int(report.complete),
            incomplete_reason=report.incomplete_reason,
            scan=report.scan,
            read=report.read,
            rejected=report.rejected,
            outcome="error",
            message=str(exc),
        )
        if reporter is not None:
            reporter.failed(state, now, exc)
        raise


def _guarded_plan(
    config: Config,
    options: CycleOptions,
    state: State,
    hybridbox: _Hybridbox,
    staged: Staged,
    report: ReadReport,
    policy: Policy,
    now: datetime,
) -> Plan:
    """The cycle's plan, its creates queued in the state; GuardTripped when a safety guard
    refuses it (nothing is applied then)."""
    today = today_for(options, now)
    if state.get_meta(OPEN_POLICY_KEY) != open_policy(policy):
        refresh_open(state, policy, everyone=True)  # first cycle, or update_names changed
    the_plan = plan_and_queue(
        state, policy, today, now, delta=report.delta, default_domain=config.hybridbox.domain
    )
    reasons = _guard_reasons(config, state, staged, report, the_plan, options)
    if not reasons and the_plan.create_count and not state.has_any_mailbox():
        reasons += _first_run_reasons(state, config.hybridbox.domain, hybridbox)
    if reasons:
        raise GuardTripped("safety guard: nothing was applied: " + " | ".join(reasons))
    return the_plan


def _first_run_reasons(state: State, default: str, hybridbox: _Hybridbox) -> list[str]:
    """A first run against a domain that already has mailboxes must adopt, not create (every
    configured domain is asked about)."""
    if state.get_meta("baseline") is not None:
        return []
    existing = hybridbox.any_mailbox()
    if existing is None:
        return []
    domain = existing.domain_name or existing.primary_email.rpartition("@")[2] or default
    return [
        f"syncd's state is empty but the Hybridbox domain {domain} already has "
        f"mailboxes (e.g. {existing.primary_email}); run `syncd adopt` once so that "
        f"existing staff are matched to their mailboxes instead of getting new ones"
    ]


def _record_and_apply(
    config: Config,
    state: State,
    hybridbox: _Hybridbox,
    report: ReadReport,
    the_plan: Plan,
    policy: Policy,
    now: datetime,
) -> None:
    """Record the read (which logs what it changed about people), then create and rename on
    Hybridbox what the plan says.

    Renames need a complete read of the people renamed: an incomplete one defers them all; a
    complete delta read makes those of the people it returned, and the others wait for a read
    that returns them (the planner counts them: ``renames_waiting``)."""
    to_create = the_plan.create_count + the_plan.retry_count
    if to_create or the_plan.renames:
        hybridbox.provisioner(state)  # the token is checked before the read is recorded
    record_read(state, report, now, policy)
    # Right after the read it came from is recorded: should the creates below fail, the next
    # delta read starts after the changes this one recorded, not before them.
    keep_watermark(config, state, report, now)
    if to_create:
        hybridbox.provisioner(state).create(queued_creates(state), to_create)
    if the_plan.renames and not report.complete:
        # A cut-off or doubtful read may hold a spliced row: its names are no better than its
        # presence. The people stay open, so the next complete read makes the renames it still
        # finds due.
        event(
            log,
            "rename.deferred",
            logging.WARNING,
            count=len(the_plan.renames),
            reason="incomplete read",
        )
    elif the_plan.renames:
        hybridbox.provisioner(state).rename(the_plan.renames)
    if the_plan.renames_waiting and report.complete:
        event(
            log,
            "rename.deferred",
            count=the_plan.renames_waiting,
            reason="not in this delta read: made by the next read that returns them, the next "
            "full read at the latest",
        )


def _finish_run(state: State, run_id: int, result: CycleResult) -> None:
    """Record the end of a cycle that ran to its end, with its counts, in ``runs``."""
    report, outcome = result.report, result.outcome
    state.finish_run(
        run_id,
        complete=int(report.complete),
        incomplete_reason=report.incomplete_reason,
        scan=report.scan,
        outcome=outcome,
        exit_code=1 if outcome == "partial" else 0,
        **{k: result.counts.get(k, 0) for k in _RUN_COUNT_COLUMNS},
    )


_RUN_COUNT_COLUMNS = (
    "read", "rejected", "accepted", "new", "created", "adopted", "renamed", "failed",
    "pending", "quarantined", "scheduled", "leavers",
)  # fmt: skip


def _final_counts(
    staged: Staged,
    report: ReadReport,
    the_plan: Plan,
    done: dict[str, int],
    totals: dict[str, int],
) -> dict[str, int]:
    return {
        "read": report.read,
        "rejected": report.rejected,
        "accepted": staged.accepted,
        "new": the_plan.new_creates,
        "created": done.get("created", 0),
        "adopted": done.get("adopted", 0),
        "renamed": done.get("renamed", 0),
        "failed": done.get("failed", 0),
        "pending": totals["pending"],
        "quarantined": totals["quarantined"],
        "scheduled": the_plan.scheduled_count,
        "leavers": totals["leavers"],
        "mailboxes": totals["mailboxes"],
        "in_flight_max": done.get("in_flight_max", 0),
    }


def summary(result: CycleResult) -> None:
    c = result.counts
    event(
        log,
        "cycle.summary",
        mode=result.mode,
        outcome=result.outcome,
        complete=result.report.complete,
        scan=result.report.scan,
        read=c.get("read"),
        rejected=c.get("rejected"),
        new=c.get("new"),
        created=c.get("created"),
        adopted=c.get("adopted"),
        renamed=c.get("renamed"),
        failed=c.get("failed"),
        pending=c.get("pending"),
        quarantined=c.get("quarantined"),
        scheduled=c.get("scheduled"),
        leavers=c.get("leavers"),
        # The most bulk requests that were outstanding at once (only when any were sent).
        in_flight_max=c.get("in_flight_max") or None,
        stopped_early=result.stopped_early or None,
        # A source read in deltas: when the next full read (the one that finds leavers) is due.
        next_full_read=iso(result.next_full_read) if result.next_full_read else None,
        duration_s=f"{result.duration_s:.2f}",
    )
