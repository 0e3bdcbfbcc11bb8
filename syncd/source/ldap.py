"""Read people from OpenLDAP or Active Directory with a streaming paged search.

The read is a loop over simple-paged-results pages (RFC 2696) rather than ldap3's
``paged_search(generator=True)``: that generator swallows the result code of the last page, so a
read cut short by the server's size or time limit (rc 4/3) would look complete. Here every page's
result code is checked, and a read is complete only when the last page came back with rc 0 and an
empty cookie. Only one page is held in memory; people are yielded as their page arrives.

Anything that goes wrong *during* the read (dropped connection, limit, referral) ends it early
and marks the ``ReadReport`` incomplete; the people already yielded stay usable. Anything that
goes wrong *before* the first entry is an error an administrator has to fix (``ConfigError``) or
an outage (``SourceUnavailable``).

With ``source.delta`` the read may be a *delta* read, of the entries changed since the watermark
the engine passes in ``ReadReport.since`` (AD: ``uSNChanged``; OpenLDAP: ``entryCSN``), through
the same paging loop and completeness checks; :mod:`syncd.source._ldap_delta` decides, from what
the server says before the search, whether the watermark is good on it, and leaves the next one
in ``ReadReport.watermark`` when the read completes.
"""

from __future__ import annotations

import contextlib
import difflib
import ipaddress
import logging
import math
import ssl
import time
from collections.abc import Generator, Iterator
from typing import Any
from urllib.parse import urlsplit

from ldap3 import (
    ANONYMOUS,
    BASE,
    DEREF_NEVER,
    LEVEL,
    NONE,
    SIMPLE,
    SUBTREE,
    SYNC,
    Connection,
    Server,
    Tls,
)
from ldap3.core.exceptions import LDAPException
from ldap3.core.results import (
    RESULT_ADMIN_LIMIT_EXCEEDED,
    RESULT_BUSY,
    RESULT_INAPPROPRIATE_AUTHENTICATION,
    RESULT_INSUFFICIENT_ACCESS_RIGHTS,
    RESULT_INVALID_CREDENTIALS,
    RESULT_NO_SUCH_OBJECT,
    RESULT_OPERATIONS_ERROR,
    RESULT_REFERRAL,
    RESULT_SIZE_LIMIT_EXCEEDED,
    RESULT_STRONGER_AUTH_REQUIRED,
    RESULT_SUCCESS,
    RESULT_TIME_LIMIT_EXCEEDED,
    RESULT_UNAVAILABLE,
)

from syncd.config import LdapSource, SyncConfig
from syncd.errors import ConfigError, SourceUnavailable
from syncd.logs import event, get_logger, register_secret
from syncd.model import Person, ReadReport
from syncd.source import _ad
from syncd.source._ldap_decode import use_lean_entries
from syncd.source._ldap_delta import DeltaScan
from syncd.source._ldap_entry import EntryMapper, check_base_dn, check_filter
from syncd.source._ldap_errors import (
    TlsFailure,
    Unreachable,
    classify_connect_error,
    limit_reason,
    result_text,
)
from syncd.source._records import KEY_SEPARATOR, Record, people_of

log = get_logger("syncd.source.ldap")

PAGED_RESULTS_OID = "1.2.840.113556.1.4.319"
_SCOPES = {"base": BASE, "one": LEVEL, "sub": SUBTREE}
# Bump when the record key is built differently: records stored as unchanged are read again.
_RECORD_FORMAT = 1
# Result codes that mean "this server cannot serve us right now": try the next URL.
_BUSY = {RESULT_BUSY, RESULT_UNAVAILABLE}
# Result codes of a first page that still has entries to read: the server's own time or size
# limit cuts a read short (it is then incomplete), but does not make it wrong.
_FIRST_PAGE_READABLE = (RESULT_SUCCESS, RESULT_TIME_LIMIT_EXCEEDED, RESULT_SIZE_LIMIT_EXCEEDED)
# Result codes that mean the bind DN may not search the base DN (AD answers operationsError
# to an anonymous search).
_NOT_ALLOWED = (
    RESULT_OPERATIONS_ERROR,
    RESULT_STRONGER_AUTH_REQUIRED,
    RESULT_INAPPROPRIATE_AUTHENTICATION,
    RESULT_INSUFFICIENT_ACCESS_RIGHTS,
)
# The standard ports, for a URL that names none.
LDAP_PORT = 389
LDAPS_PORT = 636
# The person's fields whose attributes `syncd validate` looks for in its sample entries.
_SAMPLED_FIELDS = ("anchor", "first_name", "last_name", "email", "start_date", "disabled")
# Fields whose attribute most entries may rightly lack (new hires have no mail yet; only disabled
# people carry a disabled flag): validate warns only when the entries have a look-alike.
_OFTEN_ABSENT = frozenset({"email", "disabled"})


class LdapReader:
    """One LDAP/AD source: ``read()`` streams people, ``sample()`` checks the connection."""

    # Seconds to wait before the second round of connection attempts; grows linearly, capped.
    retry_backoff_s: float = 0.5
    _MAX_BACKOFF_S = 5.0

    def __init__(self, config: LdapSource, sync: SyncConfig) -> None:
        self._config = config
        self._filter = config.effective_filter
        check_filter(self._filter)
        check_base_dn(config.base_dn)
        if config.ca_file is not None and not config.ca_file.is_file():
            raise ConfigError(
                f"at 'source.ca_file': {config.ca_file} does not exist or is not a file",
                hint="give the PEM certificate of the CA that issued the LDAP server certificate",
            )
        self._mapper = EntryMapper(config, sync)
        self._sync = sync
        self._page_size = config.page_size
        self._page_size_capped = False
        if config.flavor == "active_directory" and config.page_size > _ad.AD_MAX_PAGE_SIZE:
            # AD never sends more than MaxPageSize (1000) entries per page; asking for more
            # only hides how many round trips a read really takes.
            self._page_size = _ad.AD_MAX_PAGE_SIZE
            self._page_size_capped = True

    @property
    def page_size(self) -> int:
        return self._page_size

    @property
    def attributes(self) -> list[str]:
        return self._mapper.attributes

    def describe(self) -> str:
        urls = ",".join(self._config.url)
        return f"ldap {urls} base={self._config.base_dn} filter={self._filter}"

    # Reading --------------------------------------------------------------------------------

    def signature(self) -> str:
        # An LDAP record's key is built from the person already parsed (anchor and digest), so
        # it means the same whatever the attribute mapping; only the format could change.
        return repr(("ldap", _RECORD_FORMAT))

    def read(self, report: ReadReport) -> Generator[Person, None, None]:
        """Yield the people of one complete paged read; see the module docstring for failures."""
        return people_of(self, report)

    def records(self, report: ReadReport) -> Generator[Record, None, None]:
        """One record ``(anchor, key, person)`` per usable entry: entries are parsed as their
        page arrives (bad ones rejected there), so ``person`` only hands the result over.

        With ``source.delta``, only the entries changed since ``report.since`` when this server
        allows it (see :mod:`syncd.source._ldap_delta`); a complete read leaves the next
        watermark in ``report.watermark``."""
        self._warn_about_settings(report)
        connection, url = self._connect()
        try:
            scan = DeltaScan(self._config, self._sync) if self._config.delta else None
            search_filter = self._filter
            if scan is not None:
                search_filter = scan.begin(connection, url, report, search_filter)
            for person in self._read_pages(connection, url, report, search_filter, scan):
                anchor = person.anchor
                yield anchor, anchor + KEY_SEPARATOR + person.digest, person
        finally:
            _close(connection)

    def person(self, record: Record, report: ReadReport) -> Person | None:
        person: Person = record[2]
        return person

    def origin(self, record: Record) -> str:
        person: Person = record[2]
        return person.origin

    def sample(self, limit: int = 5) -> list[Person]:
        """Bind and fetch up to ``limit`` people (``syncd validate``); raises what read() would."""
        report = ReadReport()
        return self._people(self._sample_entries(limit, ()), report)[:limit]

    def probe(self, limit: int = 5) -> tuple[list[Person], list[str]]:
        """:meth:`sample`, and what ``syncd validate`` should warn about: a password sent
        unencrypted, a search that finds nobody, configured attributes no sample entry has."""
        warnings = self.transport_warnings()
        # Every user attribute too ("*"), so that a misspelled name can be matched with one the
        # entries really have; five entries, so the extra bytes do not matter.
        entries = self._sample_entries(limit, ("*",))
        people = self._people(entries, ReadReport())[:limit]
        return people, warnings + self._sample_warnings(entries, people)

    def transport_warnings(self) -> list[str]:
        """A warning per ``ldap://`` URL that would carry the bind password in clear text: a
        bind DN, no StartTLS, and a host that is not this one (loopback traffic never leaves
        the machine, so a local slapd or a TLS tunnel's local end is no leak)."""
        config = self._config
        if config.bind_dn is None or config.start_tls:
            return []
        return [
            f"source.url: {url} sends the password of source.bind_dn {config.bind_dn!r} "
            "unencrypted (source.start_tls is false); use an ldaps:// URL or set "
            "source.start_tls: true"
            for url in config.url
            if url.startswith("ldap://") and not _is_loopback(urlsplit(url).hostname or "")
        ]

    def _sample_entries(self, limit: int, extra: tuple[str, ...]) -> list[dict[str, Any]]:
        """The entries of a search for at most ``limit`` people, with ``extra`` attributes."""
        connection, url = self._connect()
        try:
            try:
                connection.search(
                    self._config.base_dn,
                    self._filter,
                    _SCOPES[self._config.scope],
                    dereference_aliases=DEREF_NEVER,
                    attributes=[*self._mapper.attributes, *extra],
                    size_limit=limit,
                )
            except (LDAPException, OSError) as exc:
                raise SourceUnavailable(
                    f"LDAP server {url} dropped the connection during a test search: {exc}"
                ) from None
            code = connection.result["result"]
            # sizeLimitExceeded is expected: the limit is our own.
            if code not in (RESULT_SUCCESS, RESULT_SIZE_LIMIT_EXCEEDED):
                self._raise_for_first_page(connection.result, url)
            return [e for e in connection.response or () if e["type"] == "searchResEntry"]
        finally:
            _close(connection)

    def _people(self, entries: list[dict[str, Any]], report: ReadReport) -> list[Person]:
        people = (self._mapper.person(e["dn"], e["raw_attributes"], report) for e in entries)
        return [person for person in people if person is not None]

    def _sample_warnings(self, entries: list[dict[str, Any]], people: list[Person]) -> list[str]:
        config = self._config
        if not entries:
            return [
                f"source.base_dn: the search below {config.base_dn!r} with source.filter "
                f"{self._filter!r} found no entries, so syncd would see nobody; check both, "
                f"and that {config.bind_dn or 'an anonymous bind'} may read the entries"
            ]
        # Attribute names as the server spells them, by their lower-case form.
        present = {
            description.partition(";")[0].lower(): description.partition(";")[0]
            for entry in entries
            for description, values in entry["raw_attributes"].items()
            if values
        }
        warnings = [
            warning
            for field in _SAMPLED_FIELDS
            if (warning := self._absent_attribute(field, present, len(entries))) is not None
        ]
        if not people:
            warnings.append(
                f"source: none of the {len(entries)} sample entries is usable: each was "
                "rejected (the record.rejected lines above say why), so syncd would see nobody"
            )
        return warnings

    def _absent_attribute(self, field: str, present: dict[str, str], entries: int) -> str | None:
        """A warning when no sample entry has the attribute configured for ``field``."""
        name = self._mapper.attribute_for(field)
        if name is None or name.lower() in present:
            return None
        close = difflib.get_close_matches(name.lower(), list(present), n=1, cutoff=0.75)
        if not close and field in _OFTEN_ABSENT:
            return None  # most entries may lack it, and nothing looks like a misspelling of it
        guess = f"; did you mean {present[close[0]]!r}?" if close else ""
        note = "; fine if only future hires carry it" if field == "start_date" and not close else ""
        return (
            f"source.attributes.{field}: none of the {entries} sample entries has the "
            f"attribute {name!r}{guess}{note}"
        )

    def _read_pages(
        self,
        connection: Connection,
        url: str,
        report: ReadReport,
        search_filter: str,
        scan: DeltaScan | None,
    ) -> Iterator[Person]:
        mapper = self._mapper
        cookie: bytes | None = None
        pages = 0
        skipped_references = 0
        # entryCSN, when the read must find its own watermark in the entries.
        extra = scan.attributes if scan is not None else []
        attributes = [*mapper.attributes, *extra]
        see = scan.see if scan is not None and extra else None
        started = time.monotonic()
        while True:
            try:
                self._search_page(connection, cookie, search_filter, attributes)
            except (LDAPException, OSError) as exc:
                self._incomplete(
                    report, url, f"connection to {url} lost after {report.read} entries: {exc}"
                )
                return
            result = connection.result
            code = result["result"]
            if pages == 0 and code not in _FIRST_PAGE_READABLE:
                self._raise_for_first_page(result, url)
            pages += 1
            for entry in connection.response or ():
                if entry["type"] != "searchResEntry":
                    if self._config.flavor == "active_directory":
                        # AD points every subtree search at its DNS and configuration
                        # partitions (DomainDnsZones, ...); they hold no people.
                        skipped_references += 1
                        continue
                    self._referred(report, url, entry)
                    return
                report.read += 1
                if see is not None:
                    see(entry["raw_attributes"])
                person = mapper.person(entry["dn"], entry["raw_attributes"], report)
                if person is not None:
                    yield person
            if code != RESULT_SUCCESS:
                self._incomplete(report, url, limit_reason(result, report.read, pages))
                return
            cookie = _cookie(result)
            if not cookie:
                break
        report.complete = True
        seconds = time.monotonic() - started
        if scan is not None:
            scan.finish(report, seconds)
        event(
            log,
            "ldap.read_done",
            url=url,
            scan=report.scan,
            read=report.read,
            rejected=report.rejected,
            pages=pages,
            references_skipped=skipped_references or None,
            seconds=round(seconds, 2),
        )

    def _search_page(
        self,
        connection: Connection,
        cookie: bytes | None,
        search_filter: str,
        attributes: list[str],
    ) -> None:
        """Ask for the page after ``cookie`` (the first page: None); the answer is left on
        ``connection``. Raises what ldap3 raises when the connection is lost."""
        connection.search(
            self._config.base_dn,
            search_filter,
            _SCOPES[self._config.scope],
            # Aliases would bring the same person in twice; read the real entries.
            dereference_aliases=DEREF_NEVER,
            attributes=attributes,
            paged_size=self._page_size,
            paged_cookie=cookie,
        )

    def _referred(self, report: ReadReport, url: str, reference: dict[str, Any]) -> None:
        """End the read at a referral: syncd does not follow them."""
        self._incomplete(
            report,
            url,
            f"the server referred part of the tree to {_uris(reference)} after "
            f"{report.read} entries; syncd does not follow referrals",
        )

    def _warn_about_settings(self, report: ReadReport) -> None:
        if not self._config.tls_verify:
            report.warnings += 1
            event(
                log,
                "ldap.tls_unverified",
                logging.WARNING,
                url=",".join(self._config.url),
                reason="source.tls_verify is false: the server certificate is not checked, "
                "so the bind password can be intercepted",
            )
        if self._page_size_capped:
            report.warnings += 1
            event(
                log,
                "ldap.page_size_capped",
                logging.WARNING,
                requested=self._config.page_size,
                used=self._page_size,
                reason="Active Directory sends at most 1000 entries per page",
            )

    def _incomplete(self, report: ReadReport, url: str, reason: str) -> None:
        report.complete = False
        report.incomplete_reason = reason
        event(
            log,
            "source.incomplete",
            logging.WARNING,
            source="ldap",
            url=url,
            read=report.read,
            reason=reason,
        )

    def _raise_for_first_page(self, result: dict[str, Any], url: str) -> None:
        """Turn an error on the first search into something an administrator can act on."""
        code = result["result"]
        what = result_text(result)
        base_dn = self._config.base_dn
        if code == RESULT_NO_SUCH_OBJECT:
            raise ConfigError(
                f"at 'source.base_dn': {base_dn!r} does not exist on {url} ({what})",
                hint="check the spelling, or whether the bind DN may see it",
            )
        if code in _BUSY:
            raise SourceUnavailable(f"LDAP server {url} is not serving searches now ({what})")
        if code == RESULT_REFERRAL:
            raise ConfigError(
                f"at 'source.base_dn': {url} refers {base_dn!r} to {result.get('referrals')}",
                hint="put the server that holds this base DN in source.url",
            )
        if code == RESULT_ADMIN_LIMIT_EXCEEDED:
            raise ConfigError(
                f"LDAP server {url} refused the search with an administrative limit ({what})",
                hint=f"lower source.page_size (now {self._page_size}) or raise the server's limit "
                "for the bind DN",
            )
        if code in _NOT_ALLOWED:
            raise ConfigError(
                f"LDAP server {url} does not let {self._config.bind_dn or 'anonymous'} search "
                f"{base_dn!r} ({what})",
                hint="check source.bind_dn and its read rights; AD needs a bound user",
            )
        raise ConfigError(
            f"LDAP server {url} rejected the search in {base_dn!r} with filter "
            f"{self._filter!r} ({what})",
            hint="check source.base_dn, source.filter and the attribute names in source.attributes",
        )

    # Connecting -----------------------------------------------------------------------------

    def _connect(self) -> tuple[Connection, str]:
        """Open and bind, trying every URL ``retries + 1`` times; the first that works wins."""
        config = self._config
        password = config.bind_password() if config.bind_dn is not None else None
        if password:
            register_secret(password)
        tls = self._tls()
        failures: dict[str, str] = {}
        tls_errors: dict[str, ConfigError] = {}
        for attempt in range(config.retries + 1):
            if attempt:
                time.sleep(min(self.retry_backoff_s * attempt, self._MAX_BACKOFF_S))
            for url in config.url:
                if url in tls_errors:
                    continue  # a certificate does not get better by asking again
                try:
                    connection = self._open(url, tls, password)
                except TlsFailure as failure:
                    tls_errors[url] = failure.error
                    event(log, "ldap.tls_failed", logging.WARNING, url=url, reason=failure.error)
                    continue
                except Unreachable as unreachable:
                    failures[url] = unreachable.reason
                    event(
                        log,
                        "ldap.connect_failed",
                        logging.WARNING,
                        url=url,
                        attempt=attempt + 1,
                        reason=unreachable.reason,
                    )
                    continue
                event(log, "ldap.connected", url=url, bind_dn=config.bind_dn or "anonymous")
                return connection, url
            if len(tls_errors) == len(config.url):
                break
        if tls_errors:
            raise next(iter(tls_errors.values()))
        tried = "; ".join(f"{url} ({reason})" for url, reason in failures.items())
        raise SourceUnavailable(
            f"cannot reach any LDAP server, tried {config.retries + 1} time(s) each: {tried}",
            hint="check that the directory server runs and that this host can reach it "
            "(DNS, firewall, port); the servers tried are listed in source.url",
        )

    def _tls(self) -> Tls | None:
        config = self._config
        if not (config.start_tls or any(url.startswith("ldaps://") for url in config.url)):
            return None
        if not config.tls_verify:
            return Tls(validate=ssl.CERT_NONE)
        ca_file = str(config.ca_file) if config.ca_file is not None else None
        if ca_file is not None:
            try:
                ssl.create_default_context(cafile=ca_file)
            except (ssl.SSLError, OSError) as exc:
                raise ConfigError(
                    f"at 'source.ca_file': {ca_file} is not a usable CA certificate: {exc}",
                    hint="give the CA certificate in PEM form (-----BEGIN CERTIFICATE-----)",
                ) from None
        return Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=ca_file)

    def _open(self, url: str, tls: Tls | None, password: str | None) -> Connection:
        config = self._config
        parts = urlsplit(url)
        use_ssl = parts.scheme == "ldaps"
        host = parts.hostname or ""
        server = Server(
            host,
            port=parts.port or (LDAPS_PORT if use_ssl else LDAP_PORT),
            use_ssl=use_ssl,
            tls=tls,
            get_info=NONE,
            connect_timeout=config.timeout_s,
        )
        connection = Connection(
            server,
            user=config.bind_dn,
            password=password,
            authentication=SIMPLE if config.bind_dn is not None else ANONYMOUS,
            client_strategy=SYNC,
            read_only=True,
            raise_exceptions=False,
            # ldap3 packs this into SO_RCVTIMEO as whole seconds: a float (5.0) crashes it.
            receive_timeout=max(1, math.ceil(config.timeout_s)),
            # No schema (get_info=NONE), so name checks would only cost time per entry.
            check_names=False,
            auto_referrals=False,
            return_empty_attributes=False,
            # Ranged values only concern huge multi-valued attributes (group members), never
            # the single-valued ones syncd maps; and it lets the lean decoder below be used.
            auto_range=False,
        )
        use_lean_entries(connection)
        try:
            connection.open()
            if config.start_tls:
                connection.start_tls()
            bound = connection.bind()
        except (LDAPException, OSError) as exc:
            _close(connection)
            raise classify_connect_error(exc, url, host, config) from None
        if not bound:
            result = connection.result
            _close(connection)
            if result["result"] in _BUSY:
                raise Unreachable(result_text(result))
            raise self._bind_error(result, url)
        return connection

    def _bind_error(self, result: dict[str, Any], url: str) -> ConfigError:
        code = result["result"]
        bind_dn = self._config.bind_dn or "anonymous"
        what = result_text(result)
        if code == RESULT_INVALID_CREDENTIALS:
            detail = _ad.bind_failure_detail(result.get("message") or "")
            return ConfigError(
                f"LDAP server {url} rejected the bind as {bind_dn!r}: "
                f"{detail or 'wrong password or unknown DN'} ({what})",
                hint="check source.bind_dn and the password in source.bind_password_*",
            )
        if code == RESULT_STRONGER_AUTH_REQUIRED:
            return ConfigError(
                f"LDAP server {url} requires an encrypted connection to bind as {bind_dn!r} "
                f"({what})",
                hint="use an ldaps:// URL or set source.start_tls: true",
            )
        return ConfigError(
            f"LDAP server {url} refused the bind as {bind_dn!r} ({what})",
            hint="check source.bind_dn and the password in source.bind_password_*",
        )


# --------------------------------------------------------------------------------------- helpers


def _cookie(result: dict[str, Any]) -> bytes | None:
    controls = result.get("controls") or {}
    paged = controls.get(PAGED_RESULTS_OID) or {}
    cookie: bytes | None = (paged.get("value") or {}).get("cookie")
    return cookie or None


def _uris(entry: dict[str, Any]) -> str:
    return ", ".join(entry.get("uri") or ()) or "another server"


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _close(connection: Connection) -> None:
    with contextlib.suppress(LDAPException, OSError):  # the connection is gone either way
        connection.unbind()
