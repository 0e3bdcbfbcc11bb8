"""Full or delta: which kind of read a cycle makes of a directory, and what it leaves for the next.

A directory read with ``source.delta`` is read in full only now and then; in between, a cycle
reads the entries changed since the *watermark* the last complete read left in the state (see
:mod:`syncd.source.ldap` for what a watermark is on each kind of server). This module makes the
part of the choice that needs only the state and the config; the source makes the part that
needs the server (another server answered, its counter went backwards, ...).

A cycle reads everything when:

- the source is not read in deltas (a CSV export, or ``source.delta: false``);
- it was asked to (``syncd apply --full``, ``syncd plan --full``);
- no watermark is stored (the first cycle, or the last complete read could not make one);
- the last complete full read started ``source.full_read_every`` ago or longer;
- the domain routing (``hybridbox.domain``, ``hybridbox.domains``) changed since the last
  complete full read: the people a delta read does not return would keep a domain the old rules
  gave them.

Only a complete *full* read tells who is gone, so leavers, ``missing_count`` and the source-size
guards move on those alone (see :attr:`syncd.model.ReadReport.absences_known`). The watermark is
stored after the read it came from was recorded, and only when that read was complete: a delta
read cut short leaves the last one where it was, and the next delta reads those changes again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from syncd.config import Config, LdapSource
from syncd.cycle._route import ROUTING_KEY, router
from syncd.logs import event, get_logger
from syncd.model import ReadReport, Watermark
from syncd.state import State, iso

log = get_logger("syncd.engine")


@dataclass(frozen=True, slots=True)
class ScanChoice:
    """Where this cycle's read may start (None: read everything), and why it reads
    everything (None for a delta, or for a source that is never read in deltas)."""

    since: Watermark | None = None
    reason: str | None = None


def delta_source(config: Config) -> LdapSource | None:
    """The source, when it is read in deltas."""
    source = config.source
    return source if isinstance(source, LdapSource) and source.delta else None


def choose_scan(config: Config, state: State, *, full: bool, now: datetime) -> ScanChoice:
    """What the state and the config say about this cycle's read (see the module docstring)."""
    source = delta_source(config)
    if source is None:
        return ScanChoice()
    if full:
        return ScanChoice(reason="asked for (--full)")
    since = state.watermark()
    routed = state.get_meta(ROUTING_KEY)
    if since is not None and routed != router(config).fingerprint:
        # None: the last full read was made by a syncd from before hybridbox.domains.
        return ScanChoice(reason="hybridbox.domain or hybridbox.domains changed since the last "
                          "full read: everyone is routed again")  # fmt: skip
    if since is None:
        return ScanChoice(reason="no watermark stored yet: the first read, or the last complete "
                          "read could not make one")  # fmt: skip
    last = state.last_full_read()
    every = source.full_read_every
    if last is None or now - last >= every:
        when = iso(last) if last else "never"
        return ScanChoice(
            reason=f"the last complete full read ({when}) is source.full_read_every "
            f"({_duration(every.total_seconds())}) old or older"
        )
    return ScanChoice(since=since)


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def log_scan(config: Config, report: ReadReport, choice: ScanChoice) -> None:
    """One line saying which kind of read the cycle made and why (only for a source read in
    deltas: a CSV export is always read in full)."""
    if delta_source(config) is None:
        return
    if report.delta:
        assert report.since is not None
        event(log, "source.scan", scan="delta", since=report.since.value, read=report.read)
    else:
        event(log, "source.scan", scan="full", reason=report.full_reason or choice.reason)


def keep_watermark(config: Config, state: State, report: ReadReport, now: datetime) -> None:
    """After the read was recorded: where the next delta read may start, if this read was
    complete (a full read that could make no watermark forgets the old one), and when the last
    complete full read was."""
    if delta_source(config) is None or not report.complete:
        return
    state.keep_watermark(report.watermark, None if report.delta else now)
    if not report.delta:
        with state.transaction():
            state.set_meta(ROUTING_KEY, router(config).fingerprint)


def next_full_read(config: Config, state: State, now: datetime) -> datetime | None:
    """When the next cycle reads the whole directory: ``now`` when no delta read is possible
    yet; None for a source never read in deltas."""
    source = delta_source(config)
    if source is None:
        return None
    last = state.last_full_read()
    if last is None or state.watermark() is None:
        return now
    return max(now, last + source.full_read_every)
