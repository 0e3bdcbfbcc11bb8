"""The configuration schema: one YAML file, validated by these pydantic models.

The models are the single source of truth: every key carries its description, default and
examples here, and :mod:`syncd.config._docs` renders ``config/syncd.example.yaml`` and README's key
tables from them (``syncd config example``, ``syncd config keys``); a test fails when either
differs from what the models give. Unknown keys are rejected, so a typo is an error, not a silently
ignored setting. Relative paths are taken relative to the directory of the config file.

Secrets are never written in the file, only referenced: ``*_file`` (a file that others can neither
read nor change), ``*_env`` (an environment variable) or ``*_credential`` (a name under
``$CREDENTIALS_DIRECTORY``, as systemd's ``LoadCredential=`` provides); :mod:`syncd.config._secrets`
reads them at the start of each command that uses them, and again when syncd connects.

What the generated docs cannot read from a field's type and default is said in its
``json_schema_extra``: ``shown_default`` (Markdown for the default column, when the default depends
on another key or ``None`` means more than "none"), ``alternative_to`` (the key this one replaces,
e.g. ``token_env`` for ``token_file``: one table row, commented out in the example) and
``in_example: "commented"`` (shown commented out in the example, because a copied example should
not turn it on).
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Final, Literal, NamedTuple
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

# pydantic looks for plugins in every installed package's entry points when the first model is
# built (~20 ms of each `syncd` start); syncd uses none. An admin's own setting is kept.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    model_validator,
)

from syncd.config._secrets import resolve_secret

DEFAULT_CONFIG_PATH = Path("/etc/syncd/syncd.yaml")

# Upper bounds of numbers whose huge values crash rather than merely surprise: a socket timeout
# beyond time_t, a date before year 1, an integer SQLite cannot store.
MAX_TIMEOUT_S = 3600
MAX_WAIT_S = 86400
# Bulk requests in flight: each is a thread and a connection of syncd's, and a server that takes
# more at once than this from one client is not one whose limits syncd should be probing.
MAX_IN_FLIGHT = 16
MAX_PROVISION_DAYS = 3650
MAX_RESERVE_DAYS = 36500
MAX_LEAVER_READS = 100_000


def _relative_to_config(value: Path, info: ValidationInfo) -> Path:
    # The value is not repeated in these messages: a `*_file` key may hold a pasted secret.
    if "\x00" in str(value):
        raise ValueError("the path contains a NUL character")
    # Admins write `~/hybridbox-token` as they would in a shell, and expect it to work.
    try:
        value = value.expanduser()
    except RuntimeError:
        raise ValueError(
            "cannot expand the leading ~: that home directory is not known here; "
            "write the full path"
        ) from None
    base = (info.context or {}).get("base_dir")
    if base is not None and not value.is_absolute():
        return Path(base) / value
    return value


ConfigPath = Annotated[Path, AfterValidator(_relative_to_config)]


def _not_a_pipe(value: Path) -> Path:
    # Opening a FIFO to append waits for a reader: syncd would hang at its start, logging nothing.
    try:
        mode = value.stat().st_mode
    except (OSError, ValueError):
        return value  # not there yet (it is created), or not reachable: said when it is opened
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        raise ValueError(
            f"{value} is a named pipe or a socket; syncd appends to a regular file (for a pipe, "
            "log to stderr with logging.stderr)"
        )
    return value


LogPath = Annotated[Path, AfterValidator(_relative_to_config), AfterValidator(_not_a_pipe)]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
# Longer durations only come from a slip of the keyboard, and overflow a datetime when added to
# one (a huge `every` crashed the scheduler).
MAX_DURATION_DAYS = 3650


def _seconds(value: float) -> timedelta:
    # `not <=` rather than `>`: it also catches .nan, for which every comparison is false.
    if not 0 <= value <= MAX_DURATION_DAYS * 86400:
        raise ValueError(f"a duration is from 0 to {MAX_DURATION_DAYS} days")
    return timedelta(seconds=value)


def _parse_duration(value: Any) -> Any:
    """Accept ``90``, ``"90s"``, ``"15m"``, ``"2h"``, ``"1d"``; hand anything else to pydantic."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _seconds(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"{value!r} is not a duration; write e.g. 90s, 15m, 2h or 1d")
        return _seconds(float(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    return value


Duration = Annotated[timedelta, BeforeValidator(_parse_duration)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------------------- secrets


def _exactly_one(obj: BaseModel, name: str, *, required: bool) -> None:
    given = [
        f"{name}_{kind}"
        for kind in ("file", "env", "credential")
        if getattr(obj, f"{name}_{kind}") is not None
    ]
    if len(given) > 1:
        raise ValueError(f"give only one of {', '.join(given)}")
    if required and not given:
        raise ValueError(f"give one of {name}_file, {name}_env or {name}_credential")


# The names of `*_env` and `*_credential` are checked here, before anything reads them, because
# a token pasted in their place is the usual mistake; the messages never repeat the value.
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _variable_name(value: str) -> str:
    if not _VARIABLE_NAME.fullmatch(value):
        raise ValueError(
            "must be the name of an environment variable (letters, digits and _, e.g. "
            "HYBRIDBOX_TOKEN), not the secret itself (the value is not repeated here)"
        )
    return value


def _credential_name(value: str) -> str:
    if not value or value in (".", "..") or any(c in value for c in "/\x00"):
        raise ValueError(
            "must be the name of a credential, as in the unit's LoadCredential=NAME:PATH "
            "(no /), not the secret itself (the value is not repeated here)"
        )
    return value


VariableName = Annotated[str, AfterValidator(_variable_name)]
CredentialName = Annotated[str, AfterValidator(_credential_name)]


# ------------------------------------------------------------------------------------------ URLs


def _is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback  # 127.0.0.0/8 and ::1
    except ValueError:
        return False


def _userinfo(url: str) -> bool:
    """Whether ``url`` carries a ``user:password@`` part (never repeated in a message)."""
    return "@" in urlsplit(url).netloc


def _hybridbox_url_problem(url: str) -> str | None:
    """What is wrong with ``hybridbox.url``, in words that never repeat it."""
    if any(c.isspace() or not c.isprintable() for c in url):
        return "the URL contains a space or a control character"
    try:
        parts = urlsplit(url)
        host, _ = parts.hostname, parts.port  # .port raises on a bad port number
    except ValueError:
        return "the URL's host or port is not valid"
    if parts.scheme not in ("https", "http") or not host:
        return "must look like https://host[:port][/path]"
    if _userinfo(url):
        return (
            "the URL contains a user name or password (it would be printed and stored); give "
            "the token through token_file, token_env or token_credential instead"
        )
    if parts.query or parts.fragment:
        return "the URL must not have a query (?...) or a fragment (#...)"
    if parts.scheme == "http" and not _is_loopback(host):
        return (
            "http:// sends the token in clear text; use https://, or http:// only to this "
            "machine (127.0.0.1, ::1 or localhost), e.g. the emulator"
        )
    return None


def _ldap_url_problem(url: str) -> str | None:
    """What is wrong with one of ``source.url``, in words that never repeat it."""
    if not url.isprintable() or any(c.isspace() for c in url):
        return "the URL contains a space or a control character"
    try:
        has_userinfo = _userinfo(url)
    except ValueError:
        return "the URL's host is not valid"
    if has_userinfo:
        return (
            "the URL contains a user name or password (it would be printed and stored); give "
            "the account as bind_dn and its password through bind_password_file/env/credential"
        )
    if not re.fullmatch(r"ldaps?://[^/\s]+/?", url):
        return "must look like ldap://host[:port] or ldaps://host[:port]"
    return None


def _url_checker(problem: Callable[[str], str | None]) -> Callable[[str], str]:
    def check(url: str) -> str:
        found = problem(url)
        if found is not None:
            raise ValueError(found)
        return url

    return check


HybridboxUrl = Annotated[str, AfterValidator(_url_checker(_hybridbox_url_problem))]
LdapUrl = Annotated[str, AfterValidator(_url_checker(_ldap_url_problem))]


# --------------------------------------------------------------------------------------- sources


# The name of a field (``source.columns.fields``, ``source.attributes.fields``): a word, as
# ``hybridbox.domains[].when`` names it.
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _field_name(value: str) -> str:
    if not _FIELD_NAME.fullmatch(value):
        raise ValueError(f"{value!r} is no field name: use letters, digits and _ (e.g. department)")
    return value


FieldName = Annotated[str, AfterValidator(_field_name)]


class CsvColumns(Section):
    """Header names in the HR export. ``anchor`` is the stable HR id, never the email."""

    anchor: str = Field(
        description="Header of the stable HR id that identifies a person; never the email "
        "address, which changes with names.",
        examples=["employee_id"],
    )
    first_name: str = Field(description="Header of the first name.", examples=["first_name"])
    last_name: str = Field(description="Header of the last name.", examples=["last_name"])
    start_date: str | None = Field(
        None,
        description="Header of the start date, in a `sync.date_format`. Without it, mailboxes "
        "are created as soon as people appear.",
        examples=["start_date"],
    )
    status: str | None = Field(
        None,
        description="Header of the status; see `active_values`. Without it, everyone is active.",
        examples=["status"],
    )
    email: str | None = Field(
        None,
        description="Header of a desired address: its local part is used first when it is in "
        "`hybridbox.domain` and free.",
        examples=["email"],
    )
    fields: dict[FieldName, str] = Field(
        default_factory=dict,
        description="Extra columns read per person, under names of your choosing (name: "
        "header), for `hybridbox.domains` to route people by. A change in one counts as a "
        "change of the person.",
        examples=[{"department": "Department", "country": "Country"}],
        json_schema_extra={"in_example": "commented"},
    )


class CsvSource(Section):
    """An HR system's CSV export, one person per row."""

    type: Literal["csv"] = Field(
        description="`csv`: people come from an HR export file.", examples=["csv"]
    )
    path: ConfigPath = Field(
        description="The export file. It is read as a stream, row by row, so any size works.",
        examples=["/var/lib/syncd-import/hr-export.csv"],
    )
    delimiter: str = Field(
        ",",
        min_length=1,
        max_length=1,
        description="The field separator, one character.",
        examples=[",", ";"],
    )
    encoding: str = Field(
        "utf-8",
        description="The export's text encoding (a BOM is tolerated); older exports may need "
        "`cp1252` or `latin-1`.",
        examples=["utf-8", "cp1252"],
    )
    columns: CsvColumns = Field(description="Header names in the export.")
    active_values: list[str] = Field(
        default_factory=lambda: ["active"],
        description="Status values (any case) that mean active; a person with any other status "
        "is disabled. Only used when `columns.status` is set.",
        examples=[["active"], ["active", "on leave"]],
    )


class LdapAttributes(Section):
    """Attribute names; ``None`` means the flavor's default (see ``LdapSource.effective_*``)."""

    anchor: str | None = Field(
        None,
        description="The stable identity, never `mail`; syncd asks for it by name, so an "
        "operational attribute works. Its default depends on `flavor`.",
        examples=["entryUUID"],
        json_schema_extra={
            "shown_default": "`entryUUID`; AD: `objectGUID` (shown as a GUID string)"
        },
    )
    first_name: str = Field(
        "givenName",
        description="The first name; of a multi-valued attribute the first value is used, with "
        "a warning.",
        examples=["givenName"],
    )
    last_name: str = Field(
        "sn",
        description="The last name; of a multi-valued attribute the first value is used, with "
        "a warning.",
        examples=["sn"],
    )
    email: str | None = Field(
        "mail",
        description="A desired address, as for CSV: its local part is used first when it is in "
        "`hybridbox.domain` and free.",
        examples=["mail"],
    )
    start_date: str | None = Field(
        None,
        description="The first working day, in a `sync.date_format` or as GeneralizedTime "
        "(`20260301000000Z`).",
        examples=["hrStartDate"],
    )
    disabled: str | None = Field(
        None,
        description="An attribute that says the account is disabled (see `disabled_values`). "
        "Its default depends on `flavor`.",
        examples=["employeeType"],
        json_schema_extra={"shown_default": "none; AD: `userAccountControl` (bit 0x2)"},
    )
    fields: dict[FieldName, str] = Field(
        default_factory=dict,
        description="Extra attributes read per person, under names of your choosing (name: "
        "attribute), for `hybridbox.domains` to route people by; of a multi-valued attribute "
        "the first value is used. A change in one counts as a change of the person.",
        examples=[{"department": "department", "country": "c"}],
        json_schema_extra={"in_example": "commented"},
    )


class LdapSource(Section):
    """OpenLDAP (or any RFC 4511 directory) or Active Directory, read with a paged search."""

    type: Literal["ldap"] = Field(
        description="`ldap`: people come from a directory.", examples=["ldap"]
    )
    flavor: Literal["openldap", "active_directory"] = Field(
        "openldap",
        description="`openldap` (any RFC 4511 directory) or `active_directory`; sets the "
        "defaults of `filter`, `attributes.anchor` and `attributes.disabled`.",
        examples=["openldap", "active_directory"],
    )
    url: list[LdapUrl] = Field(
        min_length=1,
        description="One URL or a list, tried in order (the others are failovers): "
        "`ldap://host[:port]` or `ldaps://host[:port]`, with a name the server certificate "
        "lists.",
        examples=[["ldaps://ldap1.example.org", "ldaps://ldap2.example.org"]],
    )
    start_tls: bool = Field(
        False,
        description="Upgrade `ldap://` connections with StartTLS (not for `ldaps://` URLs, "
        "which are encrypted already).",
        examples=[True],
    )
    ca_file: ConfigPath | None = Field(
        None,
        description="PEM file of the CA that signed the server certificate.",
        examples=["/etc/syncd/ldap-ca.pem"],
        json_schema_extra={"shown_default": "the system CAs"},
    )
    tls_verify: bool = Field(
        True,
        description="`false` skips certificate checks, so the bind password can be intercepted; "
        "syncd logs a warning every cycle. Do not turn it off outside a lab.",
        examples=[True],
    )
    bind_dn: str | None = Field(
        None,
        description="The read-only service account to bind as (Active Directory also takes "
        "`user@domain`). Without it, the bind is anonymous.",
        examples=["cn=syncd,ou=service,dc=example,dc=org", "syncd@example.org"],
        json_schema_extra={"shown_default": "anonymous"},
    )
    bind_password_file: ConfigPath | None = Field(
        None,
        description="The service account's password, exactly one of the three when `bind_dn` "
        "is set: `bind_password_file` (a file other users can neither read nor change), "
        "`bind_password_env` (an environment variable) or `bind_password_credential` (a name "
        "under `$CREDENTIALS_DIRECTORY`, systemd's `LoadCredential=`).",
        examples=["/etc/syncd/ldap-password"],
        json_schema_extra={"shown_default": ""},
    )
    bind_password_env: VariableName | None = Field(
        None,
        description="An environment variable holding the bind password, instead of "
        "`bind_password_file`.",
        examples=["SYNCD_LDAP_PASSWORD"],
        json_schema_extra={"alternative_to": "bind_password_file"},
    )
    bind_password_credential: CredentialName | None = Field(
        None,
        description="A systemd credential holding the bind password, instead of "
        "`bind_password_file`.",
        examples=["ldap-password"],
        json_schema_extra={"alternative_to": "bind_password_file"},
    )
    base_dn: str = Field(
        description="Where people live: the base of the search.",
        examples=["ou=people,dc=example,dc=org"],
    )
    scope: Literal["base", "one", "sub"] = Field(
        "sub",
        description="How deep to search below `base_dn`: `base`, `one` or `sub`.",
        examples=["sub"],
    )
    filter: str | None = Field(
        None,
        description="RFC 4515 filter that selects people, checked before connecting. Its "
        "default depends on `flavor`.",
        examples=["(&(objectClass=inetOrgPerson)(!(employeeType=contractor)))"],
        json_schema_extra={
            "shown_default": "`(objectClass=inetOrgPerson)`; "
            "AD: `(&(objectCategory=person)(objectClass=user))`"
        },
    )
    page_size: int = Field(
        500,
        ge=1,
        le=10000,
        description="Entries per page of the paged search (1-10000); AD caps pages at 1000. "
        "OpenLDAP's `size.pr` limit for the bind DN must allow it, and `size.prtotal` the whole "
        "read (or the read is incomplete and nobody is counted as a leaver).",
        examples=[500],
    )
    timeout_s: float = Field(
        30,
        gt=0,
        le=MAX_TIMEOUT_S,
        description=f"Seconds for connecting and for each server answer (at most {MAX_TIMEOUT_S}).",
        examples=[30],
    )
    retries: int = Field(
        2,
        ge=0,
        le=10,
        description="Extra rounds over all URLs, with a short backoff, when none answers (0-10).",
        examples=[2],
    )
    attributes: LdapAttributes = Field(
        LdapAttributes(),
        description="Attribute names in the directory; the defaults of `anchor` and `disabled` "
        "depend on `flavor`.",
    )
    disabled_values: list[str] = Field(
        default_factory=lambda: ["true", "1", "yes", "disabled"],
        description="OpenLDAP: values (any case) of `attributes.disabled` that mean disabled. "
        "Active Directory ignores them and tests bit 0x2 of `userAccountControl`.",
        examples=[["disabled", "inactive"]],
    )
    delta: bool = Field(
        True,
        description="Read only the entries changed since the last read (AD: `uSNChanged` above "
        "the domain controller's `highestCommittedUSN`; OpenLDAP: `entryCSN`), and the whole "
        "directory only every `full_read_every`, after a failover to another server, or with "
        "`--full`. A delta read finds new hires, changed names and newly disabled accounts; "
        "only a full read counts anyone missing, so leavers wait for it.",
        examples=[True],
    )
    full_read_every: Duration = Field(
        timedelta(hours=24),
        description="With `delta`: read the whole directory when the last complete full read "
        "is older than this (`0`: in every cycle). Someone deleted or moved out of `base_dn` "
        "is missed by delta reads, and counted missing by the next full read.",
        examples=["24h"],
    )

    @model_validator(mode="before")
    @classmethod
    def _url_may_be_one_string(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("url"), str):
            data = {**data, "url": [data["url"]]}
        return data

    @model_validator(mode="after")
    def _check(self) -> LdapSource:
        if self.start_tls and any(u.startswith("ldaps://") for u in self.url):
            raise ValueError("start_tls is for ldap:// URLs; ldaps:// is already encrypted")
        _exactly_one(self, "bind_password", required=False)
        if self.bind_dn is not None and not self.has_password:
            raise ValueError("bind_dn is set but no bind_password_file/env/credential is")
        return self

    @property
    def has_password(self) -> bool:
        return any(
            v is not None
            for v in (
                self.bind_password_file,
                self.bind_password_env,
                self.bind_password_credential,
            )
        )

    def bind_password(self) -> str:
        return resolve_secret(
            "source",
            "bind_password",
            file=self.bind_password_file,
            env=self.bind_password_env,
            credential=self.bind_password_credential,
        )

    @property
    def effective_anchor(self) -> str:
        if self.attributes.anchor:
            return self.attributes.anchor
        return "objectGUID" if self.flavor == "active_directory" else "entryUUID"

    @property
    def effective_filter(self) -> str:
        if self.filter:
            return self.filter
        if self.flavor == "active_directory":
            return "(&(objectCategory=person)(objectClass=user))"
        return "(objectClass=inetOrgPerson)"

    @property
    def effective_disabled(self) -> str | None:
        if self.attributes.disabled:
            return self.attributes.disabled
        return "userAccountControl" if self.flavor == "active_directory" else None


SourceConfig = Annotated[CsvSource | LdapSource, Field(discriminator="type")]


# ------------------------------------------------------------------------------------- hybridbox


def _domain_name(value: str) -> str:
    """A mail domain as Hybridbox names it: compared and sent in lower case."""
    domain = value.strip().lower()
    if not domain or "@" in domain or any(c.isspace() for c in domain):
        raise ValueError(f"{value!r} is no mail domain (write it like labs.example.com)")
    return domain


DomainName = Annotated[str, AfterValidator(_domain_name)]


class DomainRule(Section):
    """One rule of ``hybridbox.domains``: the people whose fields match ``when`` get their
    mailbox in ``domain``."""

    domain: DomainName = Field(
        description="The mail domain of the people this rule takes.",
        examples=["labs.example.com"],
    )
    when: dict[FieldName, list[str]] = Field(
        min_length=1,
        examples=[{"department": ["Research", "Labs"]}],
        description="Field name (from `source.columns.fields` or `source.attributes.fields`) "
        "to the values that match, compared after trimming and case-folding; with several "
        "fields, all must match.",
    )

    @model_validator(mode="after")
    def _check(self) -> DomainRule:
        for name, values in self.when.items():
            if not values:
                raise ValueError(f"when.{name} lists no value: it could never match")
            if not all(value.strip() for value in values):
                # An empty value matches nothing (README): a blank one here is a mistake.
                raise ValueError(f"when.{name} holds an empty value; list the values to match")
        return self


class HybridboxConfig(Section):
    """The Hybridbox account and domain to provision into."""

    url: HybridboxUrl = Field(
        "https://api.hybridbox.io",
        description="The Hybridbox API; another URL only for the emulator or a proxy. "
        "`http://` (which sends the token in clear text) only to this machine (`127.0.0.1`, "
        "`::1`, `localhost`), e.g. the emulator; no `user:password@` in it.",
        examples=["https://api.hybridbox.io"],
    )
    account_id: str = Field(
        pattern=r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
        description="The account's UUID (Hybridbox web app: Settings → Account).",
        examples=["7c0e6e1a-2f4b-4c8e-9d3a-5b1f0e2d4c6a"],
    )
    domain: DomainName = Field(
        description="The mail domain new mailboxes are created in: everyone's, or with "
        "`domains`, the domain of everyone whom no rule takes.",
        examples=["example.com"],
    )
    domains: list[DomainRule] = Field(
        default_factory=list,
        description="Rules that give people another mail domain by their fields "
        "(`source.columns.fields` / `source.attributes.fields`), each `{domain, when: {field: "
        "[values]}}`; the first rule that matches wins. Someone whose fields later point "
        "elsewhere keeps the mailbox they have (`syncd moves` lists them).",
        examples=[[{"domain": "labs.example.com", "when": {"department": ["Research", "Labs"]}}]],
        json_schema_extra={"in_example": "commented"},
    )
    token_file: ConfigPath | None = Field(
        None,
        description="The service-account token, exactly one of `token_file` (a file other "
        "users can neither read nor change), `token_env` (an environment variable) or "
        "`token_credential` (a name under `$CREDENTIALS_DIRECTORY`, systemd's "
        "`LoadCredential=`): one line of printable ASCII.",
        examples=["/etc/syncd/hybridbox-token"],
        json_schema_extra={"shown_default": "required"},
    )
    token_env: VariableName | None = Field(
        None,
        description="An environment variable holding the token, instead of `token_file`.",
        examples=["HYBRIDBOX_TOKEN"],
        json_schema_extra={"alternative_to": "token_file"},
    )
    token_credential: CredentialName | None = Field(
        None,
        description="A systemd credential holding the token, instead of `token_file`.",
        examples=["hybridbox-token"],
        json_schema_extra={"alternative_to": "token_file"},
    )
    batch_size: int = Field(
        100,
        ge=1,
        le=1000,
        description="Mailboxes per bulk request (1-1000). A server that says a batch is too "
        "large makes syncd halve it for the rest of the cycle.",
        examples=[100],
    )
    max_in_flight: int = Field(
        4,
        ge=1,
        le=MAX_IN_FLIGHT,
        description="Bulk requests outstanding at once (1-"
        f"{MAX_IN_FLIGHT}; `1`: one after another). syncd starts at this many and follows what "
        "Hybridbox says: a 429, a 503 or a timeout halves the number, a run of clean answers "
        "raises it again; a 429 also makes it pace its requests at the rate Hybridbox accepts.",
        examples=[4],
    )
    page_size: int = Field(
        100, ge=1, le=1000, description="Mailboxes per page when listing (1-1000).", examples=[100]
    )
    timeout_s: float = Field(
        30,
        gt=0,
        le=MAX_TIMEOUT_S,
        description=f"Seconds per HTTP request (at most {MAX_TIMEOUT_S}).",
        examples=[30],
    )
    max_retry_after_s: float = Field(
        60,
        ge=0,
        le=MAX_WAIT_S,
        description="The longest `Retry-After` (seconds) syncd waits for on a 429 or 503; a "
        f"longer one ends the cycle's calls (at most {MAX_WAIT_S}, a day).",
        examples=[60],
    )
    retry_budget_s: float = Field(
        300,
        ge=0,
        le=MAX_WAIT_S,
        description="Seconds one cycle may spend waiting on retries; the rest is left for the "
        f"next cycle (at most {MAX_WAIT_S}, a day).",
        examples=[300],
    )
    check_every: Duration = Field(
        timedelta(hours=1),
        description="A cycle with nothing to send (the usual case) contacts Hybridbox only to "
        "check the token and domain, and only when the last check is older than this (`0`: in "
        "every cycle). A cycle that sends anything always checks first.",
        examples=["1h"],
    )

    @model_validator(mode="after")
    def _check(self) -> HybridboxConfig:
        _exactly_one(self, "token", required=True)
        if self.check_every < timedelta(0):
            raise ValueError("check_every must not be negative")
        return self

    @property
    def all_domains(self) -> list[str]:
        """Every domain syncd creates mailboxes in: the default first, then the rules' (each
        once)."""
        return list(self.domain_keys())

    def domain_keys(self) -> dict[str, str]:
        """Every domain, each with the key that names it first, for messages about it."""
        keys = {self.domain: "hybridbox.domain"}
        for index, rule in enumerate(self.domains):
            keys.setdefault(rule.domain, f"hybridbox.domains[{index}].domain")
        return keys

    def token(self) -> str:
        return resolve_secret(
            "hybridbox",
            "token",
            file=self.token_file,
            env=self.token_env,
            credential=self.token_credential,
            ascii_only=True,  # it is sent in the Authorization header
        )


# --------------------------------------------------------------------------------- other sections


# Scripts that addresses.fallback_scripts may name: the first word of their letters' Unicode names
# (see syncd.names.script_of). Only used by AddressesConfig.
FallbackScript = Literal[
    "Han", "Hiragana", "Katakana", "Hangul", "Yi", "Mongolian", "Tibetan",
    "Arabic", "Hebrew", "Syriac", "Thaana", "Ethiopic", "Armenian", "Georgian",
    "Cyrillic", "Greek", "Thai", "Lao", "Khmer", "Myanmar", "Sinhala", "Devanagari",
    "Bengali", "Gurmukhi", "Gujarati", "Oriya", "Tamil", "Telugu", "Kannada", "Malayalam",
]  # fmt: skip


def _reserved_local_part(value: str) -> str:
    """An ``addresses.reserved`` entry as candidates are compared with it: lower case, and a
    valid local part (one that is not could never be a candidate, so it is a typo)."""
    # Imported here, as in AddressesConfig._check_templates: the schema loads without anyascii.
    from syncd.addresses import is_valid_local_part

    local_part = value.strip().lower()
    if not is_valid_local_part(local_part):
        raise ValueError(
            f"{value!r} is not a local part: write the part before the @, in a-z 0-9 . _ -"
        )
    return local_part


class AddressesConfig(Section):
    """How local parts (the part before @) are made from names."""

    templates: list[str] = Field(
        default_factory=lambda: ["{first}.{last}", "{first}.{last}{n}"],
        min_length=1,
        description="Tried in order: `{first}` `{last}` `{f}` `{l}` (initials) `{anchor}`, and "
        "`{n}` = 2, 3, ... on clashes.",
        examples=[["{first}.{last}", "{first}.{last}{n}"], ["{f}{last}", "{f}{last}{n}"]],
    )
    locale: str | None = Field(
        None,
        description="Language-specific transliteration before the general one: `de` (ä→ae, "
        "ö→oe, ü→ue, ß→ss), `fr`, `da`/`nb`/`nn`/`no` (æ→ae, ø→oe, å→aa), `sv`/`fi` (å→a, ä→a, "
        "ö→o), `is`; only the language part counts (`de_AT` is `de`). Other letters go through "
        "a general transliteration table (ä→a).",
        examples=["de"],
    )
    fallback_template: str = Field(
        "user.{anchor}",
        description="For names with no sensible Latin form (see `fallback_scripts`) or with "
        "nothing usable left.",
        examples=["user.{anchor}"],
    )
    fallback_scripts: list[FallbackScript] = Field(
        default=["Han"],
        description="Unicode scripts whose names skip `templates` and go straight to "
        "`fallback_template`. Han by default: whether 王 is wang (Mandarin), ou (Japanese) or "
        "wong (Cantonese) cannot be read from the characters. Other scripts are transliterated "
        "(Cyrillic, Greek, kana, Hangul, ...); add e.g. Arabic or Hebrew if their vowel-less "
        "spelling is unwanted. `[]` sends nobody to the fallback (Han then comes out as "
        "Mandarin pinyin).",
        examples=[["Han"], ["Han", "Arabic", "Hebrew"]],
    )
    reserve_days: int = Field(
        default=365,
        ge=0,
        le=MAX_RESERVE_DAYS,
        description="Days a leaver's address stays reserved before it may be issued to someone "
        f"else (at most {MAX_RESERVE_DAYS}: a hundred years, for never again).",
        examples=[365],
    )
    reserved: list[Annotated[str, AfterValidator(_reserved_local_part)]] = Field(
        default_factory=list,
        description="Local parts never issued to anyone (any case, without `@domain`), on top "
        "of the role addresses syncd always keeps back: `postmaster`, `abuse`, `hostmaster`, "
        "`webmaster`, `admin`, `administrator`, `root` and the others of RFC 2142 and the "
        "certificate authorities' domain checks (README, Addresses never issued). A candidate "
        "in either list is skipped like a taken one, also when the source asks for it.",
        examples=[["ceo", "hr", "payroll"]],
        json_schema_extra={"in_example": "commented"},
    )

    @model_validator(mode="after")
    def _check_templates(self) -> AddressesConfig:
        # syncd.templates owns the template rules; imported here so that loading the schema
        # does not depend on the address code (and anyascii) at import time.
        from syncd.addresses import template_problem

        problems = [template_problem(t) for t in self.templates]
        problems.append(template_problem(self.fallback_template, fallback=True))
        for problem in problems:
            if problem is not None:
                raise ValueError(problem)
        return self


class StateConfig(Section):
    """The local state (SQLite)."""

    path: ConfigPath = Field(
        Path("/var/lib/syncd/state.db"),
        description="The SQLite state; `status.json` and the lock live beside it. Back it up: "
        "it is what prevents duplicates.",
        examples=["/var/lib/syncd/state.db"],
    )

    @property
    def directory(self) -> Path:
        return self.path.parent


class LoggingConfig(Section):
    """Where and how syncd logs: one event per line."""

    file: LogPath | None = Field(
        None,
        description="A log file; rotate it with `systemd/syncd.logrotate` (syncd reopens it "
        "after a move).",
        examples=["/var/log/syncd/syncd.log"],
    )
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="`DEBUG`, `INFO`, `WARNING` or `ERROR` (any case).", examples=["INFO"]
    )
    format: Literal["text", "json"] = Field(
        "text",
        description="`text` (key=value, one event per line) or `json` (one object per line).",
        examples=["text"],
    )
    stderr: bool = Field(
        True, description="Also log to stderr (journald under systemd).", examples=[True]
    )

    @model_validator(mode="before")
    @classmethod
    def _upper_level(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("level"), str):
            data = {**data, "level": data["level"].upper()}
        return data


class QuarantineAfter(Section):
    """When a person whose create keeps failing is quarantined: whichever comes first."""

    attempts: int = Field(
        8,
        ge=1,
        description="Failed attempts before a person is quarantined (`quarantine_after: 8` alone "
        "sets this).",
        examples=[8],
    )
    days: float = Field(7, gt=0, description="... or days since the first failure.", examples=[7])

    @model_validator(mode="before")
    @classmethod
    def _int_means_attempts(cls, data: Any) -> Any:
        if isinstance(data, int) and not isinstance(data, bool):
            return {"attempts": data}
        return data


class SafetyConfig(Section):
    """Limits that stop a cycle before it does damage."""

    max_creates_per_cycle: int = Field(
        500,
        ge=0,
        description="Creates for people first seen in this read, at most this many per cycle "
        "(`syncd apply --allow-creates N` allows more for one run).",
        examples=[500],
    )
    max_creates_percent: float = Field(
        10,
        ge=0,
        description="... and at most this percent of the mailboxes already provisioned (not on "
        "the first read).",
        examples=[10],
    )
    min_source_people: int = Field(
        1,
        ge=0,
        description="A read with fewer usable people than this is refused.",
        examples=[1],
    )
    max_source_drop_percent: float = Field(
        20,
        ge=0,
        le=100,
        description="A read smaller than the last complete one by more than this percent is "
        "refused.",
        examples=[20],
    )
    quarantine_after: QuarantineAfter = Field(
        QuarantineAfter(),
        description="A person whose create keeps failing is quarantined after this many "
        "`attempts` or `days`, whichever comes first.",
    )


class SyncConfig(Section):
    """When mailboxes are created and renamed, and who counts as a leaver."""

    provision_days_before: int = Field(
        7,
        ge=0,
        le=MAX_PROVISION_DAYS,
        description="Create the mailbox this many days before the start date (0 = on the day; "
        f"at most {MAX_PROVISION_DAYS}, ten years).",
        examples=[7],
    )
    update_names: bool = Field(
        False,
        description="Rename mailboxes (first and last name, never the address) when names change.",
        examples=[False],
    )
    leaver_after_missing: int = Field(
        3,
        ge=1,
        le=MAX_LEAVER_READS,
        description="A person missing from this many consecutive complete reads is listed as a "
        f"leaver (`syncd leavers`; 1-{MAX_LEAVER_READS}).",
        examples=[3],
    )
    date_format: list[str] = Field(
        default_factory=lambda: ["%Y-%m-%d"],
        min_length=1,
        description="strptime formats for start dates, tried in order (one string works too). "
        "LDAP's GeneralizedTime is always understood.",
        examples=[["%Y-%m-%d", "%d.%m.%Y"]],
    )

    @model_validator(mode="before")
    @classmethod
    def _one_format(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("date_format"), str):
            data = {**data, "date_format": [data["date_format"]]}
        return data


# ------------------------------------------------------------------------------------ schedule

# A cron line is read here as cron itself reads it (Vixie cron/cronie, POSIX), because
# APScheduler 3's own crontab parser counts weekday 0 as Monday and ANDs the two day fields; the
# daemon builds its trigger from the values parsed here, so what loads is what runs.
CRON_FIELDS: Final = 5
CRON_HINT: Final = (
    "a cron line is 5 fields: minute hour day-of-month month day-of-week, e.g. '*/15 7-19 * * 1-5'"
)
# cron's names: three-letter English abbreviations, in any case.
_MONTH_NAMES: Final = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov",
                       "dec")  # fmt: skip
_WEEKDAY_NAMES: Final = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# cron counts Sunday both as 0 and as 7.
SUNDAY: Final = 0
SUNDAY_AGAIN: Final = 7
# The most days each month can have (February in a leap year): a day of month that no month of
# the line has would never fire, and cron would say nothing.
_MONTH_DAYS: Final = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
# ASCII digits only (str.isdigit takes "²"); four are more than any field needs.
_CRON_NUMBER = re.compile(r"[0-9]{1,4}")


class _CronField(NamedTuple):
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    first_named: int = 0  # the value of names[0]


_CRON_FIELD_RULES: Final = (
    _CronField("minute", 0, 59),
    _CronField("hour", 0, 23),
    _CronField("day of month", 1, 31),
    _CronField("month", 1, 12, _MONTH_NAMES, 1),
    _CronField("day of week", 0, 7, _WEEKDAY_NAMES, SUNDAY),
)


class CronSpec(NamedTuple):
    """A cron line in cron's meaning: the values each field allows (day of week 0 is Sunday, 7
    folded into it) and the two rules of cron that are more than a set of values."""

    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: tuple[int, ...]
    months: tuple[int, ...]
    weekdays: tuple[int, ...]
    # Both day fields are restricted (neither starts with `*`): cron fires on a day that matches
    # either of them, not only on days that match both.
    either_day: bool
    # The minute or the hour field starts with `*` (cron's "wildcard" job): it keeps running
    # through the hour repeated when clocks go back; a fixed time runs only the first time.
    frequent: bool


def _cron_value(text: str, field: _CronField) -> int:
    if text.lower() in field.names:
        return field.names.index(text.lower()) + field.first_named
    if _CRON_NUMBER.fullmatch(text) and field.low <= int(text) <= field.high:
        return int(text)
    names = f" or {field.names[0]}..{field.names[-1]}" if field.names else ""
    sunday = "; 0 and 7 are Sunday" if field.names == _WEEKDAY_NAMES else ""
    raise ValueError(f"{text!r} is not a {field.name} ({field.low}-{field.high}{names}{sunday})")


def _cron_range(part: str, field: _CronField) -> range:
    """One item of a field's comma list: ``*``, ``N``, ``N-M``, ``*/S`` or ``N-M/S``."""
    body, slash, step = part.partition("/")
    if body == "*":
        low, high = field.low, field.high
    else:
        first, dash, last = body.partition("-")
        low = _cron_value(first, field)
        high = _cron_value(last, field) if dash else low
        if slash and not dash:
            raise ValueError(
                f"{part!r}: a step needs a range or *, e.g. {first}-{field.high}/{step}"
            )
        if low > high:
            # cron rejects a descending range too; a week that ends on Sunday is written to 7.
            to_sunday = field.names == _WEEKDAY_NAMES and high == SUNDAY
            hint = (
                f"; Sunday is also {SUNDAY_AGAIN}: write {first}-{SUNDAY_AGAIN}"
                if to_sunday
                else ""
            )
            raise ValueError(f"{part!r}: a range must go upwards (no wrapping around){hint}")
    if not slash:
        return range(low, high + 1)
    if not _CRON_NUMBER.fullmatch(step) or not 1 <= int(step) <= high - low:
        raise ValueError(
            f"{part!r}: the step must be a whole number from 1 to {high - low}; cron counts "
            "steps within the field (for a longer interval use `every`)"
        )
    return range(low, high + 1, int(step))


def parse_cron(line: str) -> CronSpec:
    """``line`` read as cron reads it; ValueError saying what cron would not accept."""
    fields = line.split()
    if line.strip().startswith("@"):
        raise ValueError(
            f"{line!r}: cron's @-names (@daily, @hourly, ...) are not understood here; write the "
            "5 fields, e.g. '0 0 * * *' for @daily"
        )
    if len(fields) != CRON_FIELDS:
        raise ValueError(f"{line!r} has {len(fields)} fields; {CRON_HINT}")
    values: list[tuple[int, ...]] = []
    for text, field in zip(fields, _CRON_FIELD_RULES, strict=True):
        try:
            found = {value for part in text.split(",") for value in _cron_range(part, field)}
        except ValueError as exc:
            raise ValueError(f"{line!r}, {field.name} field: {exc}") from None
        values.append(tuple(sorted(found)))
    minutes, hours, days, months, weekdays = values
    spec = CronSpec(
        minutes,
        hours,
        days,
        months,
        tuple(sorted({SUNDAY if day == SUNDAY_AGAIN else day for day in weekdays})),
        either_day=not fields[2].startswith("*") and not fields[4].startswith("*"),
        frequent=fields[0].startswith("*") or fields[1].startswith("*"),
    )
    if not spec.either_day and not any(d <= _MONTH_DAYS[m - 1] for d in days for m in months):
        raise ValueError(f"{line!r} never fires: none of its months has day {days[0]}")
    return spec


def _cron_line(line: str) -> str:
    parse_cron(line)
    return " ".join(line.split())


def _zone_name(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # Only on an error: listing the zones reads the whole time zone database.
        same = [zone for zone in available_timezones() if zone.lower() == name.lower()]
        hint = (
            f"did you mean {same[0]!r}?"
            if same
            else "give an IANA name such as Europe/Berlin, America/New_York or UTC"
        )
        raise ValueError(f"{name!r} is not a time zone this machine knows: {hint}") from None
    return name


CronLine = Annotated[str, AfterValidator(_cron_line)]
ZoneName = Annotated[str, AfterValidator(_zone_name)]


class ScheduleConfig(Section):
    """When `syncd run` (the daemon) runs a cycle."""

    every: Duration | None = Field(
        None,
        description="The interval between cycles (at least 10s), counted from the daemon's "
        "start, not from the clock. Or instead `cron`: a 5-field cron line (minute hour "
        "day-of-month month day-of-week) meant as cron means it: day of week 0 and 7 are "
        "Sunday, names such as `mon` or `jan` work; see README, Schedule. Exactly one of the two.",
        examples=["15m"],
    )
    cron: CronLine | None = Field(
        None,
        description="A 5-field cron line (minute hour day-of-month month day-of-week, as cron "
        "reads it), instead of `every`.",
        examples=["*/15 7-19 * * 1-5"],
        json_schema_extra={"alternative_to": "every"},
    )
    timezone: ZoneName | None = Field(
        None,
        description="The IANA time zone `cron` is read in, e.g. `Europe/Berlin` or `UTC`; the "
        "machine's own zone (`TZ`, `/etc/localtime`) when not given, read when the daemon starts "
        "or reloads.",
        examples=["Europe/Berlin"],
        json_schema_extra={"shown_default": "the machine's", "in_example": "commented"},
    )
    run_at_start: bool = Field(
        True,
        description="Run a cycle right after the daemon starts, also with `cron` (whatever its "
        "hours say).",
        examples=[True],
    )

    @model_validator(mode="after")
    def _one_of(self) -> ScheduleConfig:
        if (self.every is None) == (self.cron is None):
            raise ValueError("give exactly one of 'every' (e.g. 15m) or 'cron' (5 fields)")
        if self.every is not None and self.every.total_seconds() < 10:
            raise ValueError("'every' must be at least 10s")
        return self

    def cron_spec(self) -> CronSpec:
        """The ``cron`` line as cron reads it (the daemon's trigger is built from it)."""
        if self.cron is None:
            raise ValueError("this schedule is `every`, not `cron`")
        return parse_cron(self.cron)


class HealthConfig(Section):
    """What `syncd status` and monitoring take as healthy."""

    max_age: Duration = Field(
        timedelta(hours=1),
        description="`syncd status` exits 2 when the last successful cycle is older than this.",
        examples=["1h"],
    )
    metrics_file: ConfigPath | None = Field(
        None,
        description="A Prometheus textfile for node_exporter's textfile collector.",
        examples=["/var/lib/prometheus/node-exporter/syncd.prom"],
        json_schema_extra={"in_example": "commented"},
    )


class Config(Section):
    """The whole config file: one section per part of the cycle."""

    source: SourceConfig = Field(
        description="Where people come from: `type: csv`, an HR system's export, or `type: "
        "ldap`, OpenLDAP or Active Directory (examples: `config/syncd.openldap.yaml`, "
        "`config/syncd.ad.yaml`)."
    )
    hybridbox: HybridboxConfig = Field(
        description="The Hybridbox account and domain to provision into."
    )
    addresses: AddressesConfig = Field(
        AddressesConfig(),
        description="How local parts (the part before @) are made from names. They are lower "
        "case `[a-z0-9._-]`, at most 64 characters, with no leading, trailing or doubled dots, "
        "and unique against every address syncd ever issued and what Hybridbox reports taken.",
    )
    state: StateConfig = Field(
        StateConfig(),
        description="The local state, an SQLite database.",
    )
    logging: LoggingConfig = Field(
        LoggingConfig(), description="Where and how syncd logs: one event per line."
    )
    safety: SafetyConfig = Field(
        SafetyConfig(),
        description="Limits that stop a cycle before it does damage: a refused cycle applies "
        "nothing and exits 75.",
    )
    sync: SyncConfig = Field(
        SyncConfig(),
        description="When mailboxes are created and renamed, and who counts as a leaver.",
    )
    schedule: ScheduleConfig = Field(
        ScheduleConfig(every=timedelta(minutes=15)),
        description="When `syncd run` (the daemon) runs a cycle: exactly one of `every` or `cron`.",
    )
    health: HealthConfig = Field(
        HealthConfig(), description="What `syncd status` and monitoring take as healthy."
    )

    origin: Path | None = Field(
        default=None, exclude=True, description="Where the config was read from; not a YAML key."
    )
    key_lines: dict[str, int] = Field(
        default_factory=dict,
        exclude=True,
        description="The line of each key in the file, by its dotted path, for messages about "
        "it; not a YAML key.",
    )

    @property
    def fields(self) -> dict[str, str]:
        """The source's extra fields (name: column or attribute)."""
        source = self.source
        return source.columns.fields if isinstance(source, CsvSource) else source.attributes.fields

    def undefined_fields(self) -> list[tuple[tuple[str | int, ...], str]]:
        """The rules' fields that the source does not define: (key path, message) each; the
        loader reports them as it reports the schema's errors."""
        where = (
            "source.columns.fields"
            if isinstance(self.source, CsvSource)
            else ("source.attributes.fields")
        )
        defined = self.fields
        problems: list[tuple[tuple[str | int, ...], str]] = []
        for index, rule in enumerate(self.hybridbox.domains):
            for name in rule.when:
                if name not in defined:
                    known = ", ".join(sorted(defined)) or "none"
                    problems.append(
                        (
                            ("hybridbox", "domains", index, "when", name),
                            f"the field {name!r} is not defined in {where} (defined: {known}); "
                            f"add it there, with the column or attribute to read it from",
                        )
                    )
        return problems

    def where(self, key: str) -> str:
        """``config error in FILE, line N: `` for a message about ``key`` (a dotted path)."""
        if self.origin is None:
            return ""
        line = self.key_lines.get(key)
        return f"config error in {self.origin}" + (f", line {line}: " if line else ": ")
