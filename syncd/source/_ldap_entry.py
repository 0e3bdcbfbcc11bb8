"""From one LDAP search entry to a ``Person``: attribute mapping, values, dates, disabled flag.

This runs once per entry (100k and more per read), so the mapping from returned attribute names
to the names we asked for is cached, and nothing is logged unless an entry is odd.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Mapping, Sequence
from datetime import date

from ldap3.core.exceptions import LDAPInvalidDnError, LDAPInvalidFilterError
from ldap3.operation.search import FilterNode, parse_filter
from ldap3.utils.dn import parse_dn

from syncd.config import LdapSource, SyncConfig
from syncd.errors import ConfigError
from syncd.logs import event, get_logger
from syncd.model import Person, ReadReport
from syncd.source import _ad
from syncd.source._records import clean_name, control_character, reject_record
from syncd.source.csv import DateParser, out_of_range

log = get_logger("syncd.source.ldap")

# LDAP GeneralizedTime: YYYYMMDDHH[MM[SS]][.fraction](Z|+hhmm|-hhmm); only the date is used.
_GENERALIZED_TIME = re.compile(
    r"^(\d{4})(\d{2})(\d{2})\d{2}(?:\d{2}){0,2}(?:[.,]\d+)?(?:Z|[+-]\d{4})?$"
)
# RFC 4512 attribute description: a name or numeric OID, then ;options.
_ATTRIBUTE = re.compile(r"^(?:[A-Za-z][A-Za-z0-9-]*|\d+(?:\.\d+)+)(?:;[A-Za-z0-9-=]+)*$")
_MATCHING_RULE = re.compile(r"^(?:[A-Za-z][A-Za-z0-9-]*|\d+(?:\.\d+)+)$")


# ---------------------------------------------------------------------------- config validation


def check_filter(search_filter: str) -> None:
    """Raise ConfigError if ``search_filter`` is not a valid RFC 4515 filter (before connecting).

    ldap3's parser catches unbalanced parentheses and missing operators; attribute names are
    checked here as well, because a filter on ``(given name=x)`` would otherwise reach the
    server, match nothing, and look like a directory with no people in it.
    """
    try:
        root = parse_filter(search_filter, None, True, True, None, False)
    except LDAPInvalidFilterError as exc:
        raise _filter_error(search_filter, str(exc)) from None
    nodes: list[FilterNode] = list(root.elements)
    while nodes:
        node = nodes.pop()
        nodes.extend(node.elements)
        assertion = node.assertion or {}
        attribute = assertion.get("attr")
        rule = assertion.get("matchingRule")
        if attribute is not None and attribute is not False and not _ATTRIBUTE.match(attribute):
            raise _filter_error(search_filter, f"{attribute!r} is not an attribute name")
        if rule and not _MATCHING_RULE.match(rule):
            raise _filter_error(search_filter, f"{rule!r} is not a matching rule")


def _filter_error(search_filter: str, problem: str) -> ConfigError:
    return ConfigError(
        f"at 'source.filter': {search_filter!r} is not a valid LDAP filter: {problem}",
        hint="write it like (&(objectClass=inetOrgPerson)(!(employeeType=contractor)))",
    )


def check_base_dn(base_dn: str) -> None:
    try:
        parse_dn(base_dn)
    except LDAPInvalidDnError as exc:
        raise ConfigError(
            f"at 'source.base_dn': {base_dn!r} is not a valid DN: {exc}",
            hint="write it like ou=people,dc=example,dc=org",
        ) from None


# ---------------------------------------------------------------------------------- the mapping


class EntryMapper:
    """Turns search entries into people; rejects bad ones with one ``record.rejected`` event."""

    def __init__(self, config: LdapSource, sync: SyncConfig) -> None:
        names = config.attributes
        self._anchor_attribute = config.effective_anchor
        self._fields: dict[str, str | None] = {
            "anchor": config.effective_anchor,
            "first_name": names.first_name,
            "last_name": names.last_name,
            "email": names.email,
            "start_date": names.start_date,
            "disabled": config.effective_disabled,
        }
        self._anchor = self._anchor_attribute.lower()
        self._binary_anchor = self._anchor in _ad.BINARY_GUID_ATTRIBUTES
        self._first = names.first_name.lower()
        self._last = names.last_name.lower()
        self._email = names.email.lower() if names.email else None
        self._start = names.start_date.lower() if names.start_date else None
        disabled = config.effective_disabled
        self._disabled = disabled.lower() if disabled else None
        self._uac = self._disabled == "useraccountcontrol"
        self._disabled_values = frozenset(v.strip().casefold() for v in config.disabled_values)
        # The CSV source's parser: same formats, same fast path for ISO dates, cached.
        self._parse_date = DateParser(sync.date_format)
        # The extra fields (source.attributes.fields): name -> lower-case attribute.
        self._extra = {name: attribute.lower() for name, attribute in names.fields.items()}
        self._extra_attributes = list(names.fields.values())
        self._wanted = frozenset(a.lower() for a in self.attributes)
        # Returned attribute description (as the server spells it) -> lower-case wanted name.
        self._returned: dict[str, str | None] = {}

    @property
    def attributes(self) -> list[str]:
        """The attributes to request, each once; operational ones (entryUUID) by name."""
        seen: dict[str, str] = {}
        for name in [*self._fields.values(), *self._extra_attributes]:
            if name:
                seen.setdefault(name.lower(), name)
        return list(seen.values())

    def attribute_for(self, field: str) -> str | None:
        return self._fields[field]

    def person(
        self, dn: str, raw_attributes: Mapping[str, Sequence[bytes]], report: ReadReport
    ) -> Person | None:
        """The person in this entry, or None (after logging why) if the entry is unusable."""
        values: dict[str, Sequence[bytes]] = {}
        returned = self._returned
        for description, raw in raw_attributes.items():
            if description in returned:
                name = returned[description]
            else:
                name = returned[description] = self._wanted_name(description)
            if name is not None and raw:
                values[name] = raw

        anchor: str | None = None
        try:
            anchor = self._anchor_of(values.get(self._anchor))
            first_name = self._name(values.get(self._first), dn, anchor, "first_name", report)
            last_name = self._name(values.get(self._last), dn, anchor, "last_name", report)
            email = self._email_of(values)
            start_date = self._start_date(values)
            disabled = self._is_disabled(values)
            fields = self._extra_fields(values) if self._extra else ()
        except _Rejected as rejected:
            self._reject(report, dn, anchor, rejected.field, rejected.reason)
            return None
        return Person(
            anchor=anchor,
            first_name=first_name,
            last_name=last_name,
            email=email,
            start_date=start_date,
            disabled=disabled,
            origin=dn,
            fields=fields,
        )

    # Per-field parsing ----------------------------------------------------------------------

    def _wanted_name(self, description: str) -> str | None:
        name = _ad.attribute_name(description)
        return name if name in self._wanted else None

    def _anchor_of(self, raw: Sequence[bytes] | None) -> str:
        attribute = self._anchor_attribute
        if not raw:
            raise _Rejected("anchor", f"{attribute} is missing")
        if len(raw) > 1:
            raise _Rejected("anchor", f"{attribute} has {len(raw)} values; an anchor has one")
        if self._binary_anchor:
            try:
                return _ad.guid_string(raw[0])
            except ValueError as exc:
                raise _Rejected("anchor", f"{attribute}: {exc}") from None
        anchor = _text(raw[0], "anchor").strip()
        if not anchor:
            raise _Rejected("anchor", f"{attribute} is empty")
        if not anchor.isprintable():  # the fast check; control_character says which
            _refuse_control(attribute, "anchor", anchor)
        return anchor

    def _name(
        self,
        raw: Sequence[bytes] | None,
        dn: str,
        anchor: str,
        field: str,
        report: ReadReport,
    ) -> str:
        attribute = self._fields[field]
        if not raw:
            raise _Rejected(field, f"{attribute} is missing")
        if len(raw) > 1:
            report.warnings += 1
            event(
                log,
                "record.multivalued",
                logging.WARNING,
                source="ldap",
                dn=dn,
                anchor=anchor,
                field=field,
                values=len(raw),
                used="the first value",
            )
        value = _text(raw[0], field).strip()
        if not value:
            raise _Rejected(field, f"{attribute} is empty")
        if not value.isprintable():  # the fast check; control_character says which
            _refuse_control(attribute, field, value)
        # The same rules as an export's names (format characters, a letter, not a title).
        name, problem = clean_name(unicodedata.normalize("NFC", value))
        if problem is not None:
            raise _Rejected(field, f"{attribute} {problem}")
        return name

    def _extra_fields(self, values: Mapping[str, Sequence[bytes]]) -> tuple[tuple[str, str], ...]:
        """The extra fields, each the first value of its attribute ("" when it has none)."""
        fields: list[tuple[str, str]] = []
        for name, attribute in self._extra.items():
            raw = values.get(attribute)
            value = _text(raw[0], name).strip() if raw else ""
            if value and not value.isprintable():
                _refuse_control(attribute, name, value)
            fields.append((name, value))
        return tuple(fields)

    def _email_of(self, values: Mapping[str, Sequence[bytes]]) -> str | None:
        raw = values.get(self._email) if self._email else None
        if not raw:
            return None
        return _text(raw[0], "email").strip() or None

    def _start_date(self, values: Mapping[str, Sequence[bytes]]) -> date | None:
        raw = values.get(self._start) if self._start else None
        if not raw:
            return None
        text = _text(raw[0], "start_date").strip()
        if not text:
            return None
        match = _GENERALIZED_TIME.match(text)
        if match:
            parsed = _date_or_none(int(match[1]), int(match[2]), int(match[3]))
        else:
            # None also for a date out of range: parse_any (uncached, the rare slow path)
            # tells that apart for the message.
            parsed = self._parse_date(text) or self._parse_date.parse_any(text)
        if parsed is not None:
            # 00010101000000Z is how some directories say "unknown": no start date, and one
            # the planner could not subtract the provisioning window from.
            reason = out_of_range(parsed)
            if reason is None:
                return parsed
            raise _Rejected("start_date", f"{self._fields['start_date']} {text!r}: {reason}")
        formats = " or ".join(self._parse_date.formats)
        raise _Rejected(
            "start_date",
            f"{self._fields['start_date']} {text!r} matches neither {formats} "
            "nor LDAP GeneralizedTime (20260301000000Z)",
        )

    def _is_disabled(self, values: Mapping[str, Sequence[bytes]]) -> bool:
        raw = values.get(self._disabled) if self._disabled else None
        if not raw:
            return False
        if self._uac:
            try:
                return _ad.account_disabled(raw[0])
            except (ValueError, UnicodeDecodeError):
                raise _Rejected(
                    "disabled", f"userAccountControl {raw[0]!r} is not a number"
                ) from None
        values_seen = (_text(value, "disabled").strip().casefold() for value in raw)
        return any(value in self._disabled_values for value in values_seen)

    def _reject(
        self, report: ReadReport, dn: str, anchor: str | None, field: str, reason: str
    ) -> None:
        reject_record(log, report, "ldap", anchor, field, reason, dn=dn)


class _Rejected(Exception):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


# A value longer than this is shown cut in a rejection's reason.
_SHOWN_CHARS = 40


def _refuse_control(attribute: str | None, field: str, value: str) -> None:
    """Reject a value with a control character (a NUL, a line break, a BOM), as the CSV reader
    does: an anchor "E1\\x00" would be another person than "E1" for ever after, and a name with
    one is no mailbox name. Values with none (other characters that are not printable, such as
    format characters in a name, which clean_name removes) pass."""
    char = control_character(value)
    if char is not None:
        shown = value if len(value) <= _SHOWN_CHARS else value[:_SHOWN_CHARS] + "..."
        raise _Rejected(field, f"{attribute} {shown!a} holds the control character {char}")


def _date_or_none(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _text(raw: bytes, field: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _Rejected(field, "the value is not valid UTF-8") from None
