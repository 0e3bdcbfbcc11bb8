"""Delta reads: reading only the entries a directory changed since the last read.

A cycle reads the whole directory only now and then (``source.full_read_every``); in between it
asks for the entries changed since a *watermark*, a value of the server's own change counter
taken at the last complete read, with the same base, scope and filter. What the counter is:

* **Active Directory**: the DC's ``highestCommittedUSN`` (rootDSE), read *before* the search, so
  that a write during the search is read again by the next delta. A delta asks for
  ``(&(filter)(uSNChanged>=N+1))``. USNs are the DC's own: the watermark is tied to the DC
  (``dsServiceName``), to its ``invocationId`` (a DC restored from a backup gets a new one, and
  reuses USNs it had already given out) and to the URL that answered.
* **OpenLDAP**: ``entryCSN``, which slapd keeps on every entry (``lastmod``, the default), also
  on entries loaded with slapadd. A delta asks for ``(&(filter)(entryCSN>=CSN))``; ``>=`` reads
  the entries at the boundary again, which changes nothing. The CSN is the base's
  ``contextCSN`` read before the search where the database keeps one (a ``syncprov`` provider
  or a replica; the smallest of its values, one per provider, so that a provider whose changes
  arrive late is not skipped). Where there is none (a standalone slapd), it comes from the
  ``entryCSN`` values the reads return, one read behind: an entry written while the pages were
  read may have been read before the write, so its CSN may be older than the highest one that
  read saw; but every CSN a finished read saw was given out before the next read started. So a
  delta read starts at the highest CSN the reads *before the last one* saw, and the first delta
  after a full read at the highest CSN that full read saw, taken back by its duration and
  :data:`CSN_OVERLAP` (a bulk load just before a full read is read once more by the next delta;
  the deltas after it read only what changed).
  Not RFC 4533 (refreshOnly with a cookie): that needs the ``syncprov`` overlay on the very
  database syncd reads, which a standalone directory or a read-only replica often lacks, and
  ldap3 has no client for it; ``entryCSN`` works on every slapd, through the same paged search
  (so the size-limit and completeness checks are those of a full read).

A server that keeps no usable order (entries without ``entryCSN``, a rootDSE without
``highestCommittedUSN``) is read in full every cycle, with one warning per cycle.

The decisions that need no server (is a full read due, was one asked for) are the engine's; the
ones here need the server: which one answered, and what its counter says now.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ldap3 import BASE, Connection
from ldap3.core.exceptions import LDAPException
from ldap3.core.results import RESULT_SUCCESS

from syncd.config import LdapSource, SyncConfig
from syncd.logs import event, get_logger
from syncd.model import ReadReport, Watermark

log = get_logger("syncd.source.ldap")

USN = "usn"
CSN = "csn"
CSN_ATTRIBUTE = "entryCSN"
# How far back the highest entryCSN a full read saw is taken, beyond the read's own duration:
# covers a write whose CSN was given out before the read started but that became visible only
# after its entry was read (slapd gives the CSN when the operation starts, and commits it
# milliseconds later).
CSN_OVERLAP = timedelta(seconds=60)
# A CSN: YYYYmmddHHMMSS[.ffffff]Z#count#sid#mod (OpenLDAP 2.4 and later).
_CSN = re.compile(r"^(\d{14})(?:\.(\d{1,6}))?Z#[0-9a-fA-F]+#[0-9a-fA-F]+#[0-9a-fA-F]+$")
# The lowest CSN of an instant: count, server id and modification number all zero.
_CSN_FORMAT = "%Y%m%d%H%M%S.%fZ#000000#000#000000"
_ROOT_DSE = ""
_ANY = "(objectClass=*)"


@dataclass(frozen=True, slots=True)
class Mark:
    """What the server said before the search: its change counter and who it is."""

    kind: str
    # AD: the highestCommittedUSN; OpenLDAP: the smallest contextCSN, or None (then the
    # highest entryCSN the read returns is used).
    value: str | None = None
    server: str = ""
    invocation_id: str = ""
    # Why no watermark can come from this server (one warning), or None.
    problem: str | None = None


def settings_digest(config: LdapSource, sync: SyncConfig) -> str:
    """A digest of what decides which entries a read returns and what people they make: a
    watermark taken under other settings would skip the entries that now match (another filter)
    or now read differently (another attribute), because they did not change."""
    parts = (
        config.flavor,
        config.base_dn.lower(),
        config.scope,
        config.effective_filter,
        (config.bind_dn or "").lower(),
        config.effective_anchor.lower(),
        repr(sorted(config.attributes.model_dump().items())),
        repr(config.effective_disabled),
        repr(config.disabled_values),
        repr(sync.date_format),
    )
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=12).hexdigest()


def _values(connection: Connection, base: str, attributes: list[str]) -> dict[str, list[bytes]]:
    """The attributes of one entry, by lower-case name (empty when it cannot be read)."""
    connection.search(base, _ANY, BASE, attributes=attributes)
    if connection.result["result"] != RESULT_SUCCESS:
        return {}
    for entry in connection.response or ():
        if entry["type"] == "searchResEntry":
            raw: Mapping[str, Sequence[bytes]] = entry["raw_attributes"]
            return {name.lower(): list(values) for name, values in raw.items() if values}
    return {}


def read_mark(connection: Connection, config: LdapSource) -> Mark:
    """Ask the server for its change counter and identity, before the search."""
    try:
        if config.flavor == "active_directory":
            return _ad_mark(connection)
        return _openldap_mark(connection, config.base_dn)
    except (LDAPException, OSError) as exc:
        # The search itself finds out whether the connection is still there.
        kind = USN if config.flavor == "active_directory" else CSN
        return Mark(kind, problem=f"the server's change counter could not be read: {exc}")


def _ad_mark(connection: Connection) -> Mark:
    root = _values(connection, _ROOT_DSE, ["highestCommittedUSN", "dsServiceName"])
    usn = (root.get("highestcommittedusn") or [b""])[0].decode("ascii", "replace").strip()
    service = (root.get("dsservicename") or [b""])[0].decode("utf-8", "replace")
    if not usn.isdigit() or not service:
        return Mark(USN, problem="the rootDSE has no highestCommittedUSN or dsServiceName")
    settings = _values(connection, service, ["invocationId"])
    invocation = (settings.get("invocationid") or [b""])[0]
    if not invocation:
        return Mark(
            USN,
            problem=f"the invocationId of {service} cannot be read, so a domain controller "
            "restored from a backup could not be told apart",
        )
    return Mark(USN, usn, service, invocation.hex())


def _dn_key(dn: str) -> str:
    return re.sub(r"\s*,\s*", ",", dn.strip().lower())


def _openldap_mark(connection: Connection, base_dn: str) -> Mark:
    contexts = _values(connection, _ROOT_DSE, ["namingContexts"]).get("namingcontexts") or []
    base = _dn_key(base_dn)
    suffixes = [
        text
        for text in (value.decode("utf-8", "replace") for value in contexts)
        if text and (base == _dn_key(text) or base.endswith("," + _dn_key(text)))
    ]
    if not suffixes:
        return Mark(CSN)
    suffix = max(suffixes, key=len)
    values = _values(connection, suffix, ["contextCSN"]).get("contextcsn") or []
    csns = [text for text in (v.decode("ascii", "replace") for v in values) if _CSN.match(text)]
    return Mark(CSN, min(csns) if csns else None)


def why_full(since: Watermark, mark: Mark, url: str, settings: str) -> tuple[str, bool] | None:
    """Why a delta read from ``since`` is not possible on this server now (and whether that is
    worth a warning), or None when it is."""
    if since.kind != mark.kind or since.settings != settings:
        return (
            "the search settings changed since the last read (base_dn, scope, filter, "
            "bind_dn, attributes or date formats)",
            False,
        )
    if since.url != url:
        return f"another server answered ({url}; the watermark is from {since.url})", True
    if mark.kind == USN:
        if mark.server != since.server:
            return f"another domain controller answered ({mark.server})", True
        if mark.invocation_id != since.invocation_id:
            return (
                f"the domain controller {mark.server} was restored from a backup (its "
                "invocationId changed), so its USNs may have been given out twice",
                True,
            )
        if int(mark.value or 0) < int(since.value):
            return (
                f"the domain controller's highestCommittedUSN went backwards ({since.value} "
                f"-> {mark.value})",
                True,
            )
    elif mark.value is not None and mark.value < since.value:
        return f"the server's contextCSN went backwards ({since.value} -> {mark.value})", True
    return None


def delta_filter(search_filter: str, since: Watermark) -> str:
    """The configured filter, narrowed to the entries changed since the watermark."""
    inner = search_filter if search_filter.startswith("(") else f"({search_filter})"
    if since.kind == USN:
        return f"(&{inner}(uSNChanged>={int(since.value) + 1}))"
    return f"(&{inner}({CSN_ATTRIBUTE}>={since.value}))"


def taken_back(csn: str, by: timedelta) -> str | None:
    """The lowest CSN of the instant ``by`` before ``csn``'s, or None if ``csn`` is no CSN."""
    match = _CSN.match(csn)
    if match is None:
        return None
    moment = datetime.strptime(match[1], "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    moment += timedelta(microseconds=int((match[2] or "0").ljust(6, "0")))
    return (moment - by).strftime(_CSN_FORMAT)


class DeltaScan:
    """One read's part in delta reads: the filter it searches with, the extra attribute it
    asks for, the entryCSNs it sees, and the watermark it leaves in the report."""

    def __init__(self, config: LdapSource, sync: SyncConfig) -> None:
        self._config = config
        self._settings = settings_digest(config, sync)
        self._mark = Mark(USN if config.flavor == "active_directory" else CSN)
        self._url = ""
        # The highest entryCSN seen (bytes compare as the CSN text does), and how many entries
        # had none.
        self._highest = b""
        self._without = 0
        self._name = CSN_ATTRIBUTE

    @property
    def attributes(self) -> list[str]:
        """What to ask for besides the person's attributes: entryCSN when the read must find
        its own watermark."""
        tracking = self._mark.kind == CSN and self._mark.value is None and not self._mark.problem
        return [CSN_ATTRIBUTE] if tracking else []

    def begin(
        self, connection: Connection, url: str, report: ReadReport, search_filter: str
    ) -> str:
        """Read the server's counter and decide: the filter of a delta read from
        ``report.since``, or ``search_filter`` for a full one."""
        self._url = url
        self._mark = mark = read_mark(connection, self._config)
        since = report.since
        if since is None:
            return search_filter
        if mark.problem is not None:
            # Said once, as a warning, when the read is done (finish).
            report.full_reason = mark.problem
            return search_filter
        refused = why_full(since, mark, url, self._settings)
        if refused is None:
            report.delta = True
            return delta_filter(search_filter, since)
        reason, warn = refused
        report.full_reason = reason
        if warn:
            report.warnings += 1
        event(
            log,
            "ldap.full_read",
            logging.WARNING if warn else logging.INFO,
            url=url,
            reason=reason,
        )
        return search_filter

    def see(self, raw_attributes: Mapping[str, Sequence[bytes]]) -> None:
        """Note one returned entry's entryCSN (only called while :attr:`attributes` asks)."""
        values = raw_attributes.get(self._name)
        if values is None:
            # The server may spell the name otherwise; look once, then use its spelling.
            for name in raw_attributes:
                if name.lower() == CSN_ATTRIBUTE.lower():
                    self._name, values = name, raw_attributes[name]
                    break
        if not values:
            self._without += 1
        elif values[0] > self._highest:
            self._highest = values[0]

    def finish(self, report: ReadReport, seconds: float) -> None:
        """After a complete read: where the next delta read may start (``report.watermark``),
        or one warning saying why this server allows none."""
        mark, problem = self._mark, self._mark.problem
        value: str | None = mark.value
        seen = ""
        if problem is None and mark.kind == CSN and value is None:
            value, seen, problem = self._from_entries(report, seconds)
        if problem is not None or value is None:
            if problem is not None:
                report.warnings += 1
                event(
                    log,
                    "ldap.no_change_order",
                    logging.WARNING,
                    url=self._url,
                    reason=problem,
                    action="every cycle reads the whole directory; set source.delta: false to "
                    "make that the plan",
                )
            return
        report.watermark = Watermark(
            mark.kind, value, self._url, mark.server, mark.invocation_id, self._settings, seen
        )

    def _from_entries(
        self, report: ReadReport, seconds: float
    ) -> tuple[str | None, str, str | None]:
        """The next watermark from the entryCSNs the reads returned (see the module docstring):
        where the next delta starts, the highest CSN seen so far, and why there is none."""
        if self._without:
            return (
                None,
                "",
                (
                    f"{self._without} of the {report.read} entries read carry no {CSN_ATTRIBUTE} "
                    "(slapd's lastmod is off, or the bind DN may not read it)"
                ),
            )
        highest = self._highest.decode("ascii", "replace")
        if highest and _CSN.match(highest) is None:
            return None, "", f"the {CSN_ATTRIBUTE} {highest!r} is not in a form syncd knows"
        since = report.since if report.delta else None
        if since is not None and since.seen:
            # Every CSN the reads before this one saw was given out before this one started.
            return since.seen, max(since.seen, highest), None
        if not highest:
            # Nothing read: a full read of nobody (no watermark), or a delta with no changes.
            return (since.value if since else None), "", None
        value = taken_back(highest, timedelta(seconds=seconds) + CSN_OVERLAP)
        assert value is not None  # highest matched _CSN above
        # A delta read saw only the changed entries: never go back behind the last watermark.
        return (max(value, since.value) if since else value), highest, None
