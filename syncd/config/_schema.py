"""The configuration schema: one YAML file, validated by these pydantic models.

The models are the single source of truth: ``config/syncd.example.yaml`` documents every key and a
test keeps it valid against them. Unknown keys are rejected, so a typo is an error, not a silently
ignored setting. Relative paths are taken relative to the directory of the config file.

Secrets are never written in the file, only referenced: ``*_file`` (a file that others cannot read),
``*_env`` (an environment variable) or ``*_credential`` (a name under ``$CREDENTIALS_DIRECTORY``, as
systemd's ``LoadCredential=`` provides); :mod:`syncd.config._secrets` reads them when syncd
connects.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

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


def _relative_to_config(value: Path, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("base_dir")
    if base is not None and not value.is_absolute():
        return Path(base) / value
    return value


ConfigPath = Annotated[Path, AfterValidator(_relative_to_config)]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def _parse_duration(value: Any) -> Any:
    """Accept ``90``, ``"90s"``, ``"15m"``, ``"2h"``, ``"1d"``; hand anything else to pydantic."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"{value!r} is not a duration; write e.g. 90s, 15m, 2h or 1d")
        return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])
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


# --------------------------------------------------------------------------------------- sources


class CsvColumns(Section):
    """Header names in the HR export. ``anchor`` is the stable HR id, never the email."""

    anchor: str
    first_name: str
    last_name: str
    start_date: str | None = None
    status: str | None = None
    email: str | None = None


class CsvSource(Section):
    type: Literal["csv"]
    path: ConfigPath
    delimiter: str = Field(",", min_length=1, max_length=1)
    encoding: str = "utf-8"
    columns: CsvColumns
    # Rows whose status column holds one of these (case-insensitive) are active; others are
    # treated as disabled. Only used when columns.status is set.
    active_values: list[str] = Field(default_factory=lambda: ["active"])


class LdapAttributes(Section):
    """Attribute names; ``None`` means the flavor's default (see ``LdapSource.effective_*``)."""

    anchor: str | None = None
    first_name: str = "givenName"
    last_name: str = "sn"
    email: str | None = "mail"
    start_date: str | None = None
    disabled: str | None = None


class LdapSource(Section):
    type: Literal["ldap"]
    flavor: Literal["openldap", "active_directory"] = "openldap"
    url: list[str] = Field(min_length=1)
    start_tls: bool = False
    ca_file: ConfigPath | None = None
    tls_verify: bool = True
    bind_dn: str | None = None
    bind_password_file: ConfigPath | None = None
    bind_password_env: str | None = None
    bind_password_credential: str | None = None
    base_dn: str
    scope: Literal["base", "one", "sub"] = "sub"
    filter: str | None = None
    page_size: int = Field(500, ge=1, le=10000)
    timeout_s: float = Field(30, gt=0)
    retries: int = Field(2, ge=0, le=10)
    attributes: LdapAttributes = LdapAttributes()
    # OpenLDAP: values of attributes.disabled that mean "disabled" (case-insensitive).
    # Active Directory ignores this and tests userAccountControl bit 0x2.
    disabled_values: list[str] = Field(default_factory=lambda: ["true", "1", "yes", "disabled"])

    @model_validator(mode="before")
    @classmethod
    def _url_may_be_one_string(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("url"), str):
            data = {**data, "url": [data["url"]]}
        return data

    @model_validator(mode="after")
    def _check(self) -> LdapSource:
        for url in self.url:
            if not re.match(r"^ldaps?://[^/\s]+/?$", url):
                raise ValueError(f"url {url!r} must look like ldap://host[:port] or ldaps://...")
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


class HybridboxConfig(Section):
    url: str = "https://api.hybridbox.io"
    account_id: str = Field(
        pattern=r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )
    domain: str = Field(min_length=1)
    token_file: ConfigPath | None = None
    token_env: str | None = None
    token_credential: str | None = None
    batch_size: int = Field(100, ge=1, le=1000)
    page_size: int = Field(100, ge=1, le=1000)
    timeout_s: float = Field(30, gt=0)
    # The longest Retry-After syncd waits for; a longer one ends the cycle's calls early.
    max_retry_after_s: float = Field(60, ge=0)
    # Total time one cycle may spend waiting and retrying before it leaves the rest for later.
    retry_budget_s: float = Field(300, ge=0)
    # A cycle with nothing to send checks the token and domain only this often (0: always).
    check_every: Duration = timedelta(hours=1)

    @model_validator(mode="after")
    def _check(self) -> HybridboxConfig:
        if not re.match(r"^https?://[^\s]+$", self.url):
            raise ValueError(f"url {self.url!r} must start with https:// (or http:// for tests)")
        _exactly_one(self, "token", required=True)
        if self.check_every < timedelta(0):
            raise ValueError("check_every must not be negative")
        return self

    def token(self) -> str:
        return resolve_secret(
            "hybridbox",
            "token",
            file=self.token_file,
            env=self.token_env,
            credential=self.token_credential,
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


class AddressesConfig(Section):
    # Tried in order; {first} {last} {f} {l} {anchor} and {n} (2, 3, ... for clashes).
    templates: list[str] = Field(
        default_factory=lambda: ["{first}.{last}", "{first}.{last}{n}"], min_length=1
    )
    # Language-specific transliteration before the general one: de, fr, nb/da/sv/fi/is, ...
    locale: str | None = None
    # Used when a name has no sensible Latin form (e.g. CJK with no romanization).
    fallback_template: str = "user.{anchor}"
    # Names with a letter of one of these scripts skip `templates` and use `fallback_template`.
    # Han by default: whether 王 is "wang" (Mandarin), "ou" (Japanese) or "wong" (Cantonese)
    # cannot be read from the characters. Other scripts are transliterated (Cyrillic, Greek,
    # kana, Hangul, ...); add e.g. Arabic or Hebrew here if their vowel-less spelling is unwanted.
    # [] sends nobody to the fallback for their script (Han then comes out as Mandarin pinyin).
    fallback_scripts: list[FallbackScript] = Field(default=["Han"])
    # Addresses of leavers stay reserved this long before they may be issued again.
    reserve_days: int = Field(default=365, ge=0)

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
    path: ConfigPath = Path("/var/lib/syncd/state.db")

    @property
    def directory(self) -> Path:
        return self.path.parent


class LoggingConfig(Section):
    file: ConfigPath | None = None
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"
    stderr: bool = True

    @model_validator(mode="before")
    @classmethod
    def _upper_level(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("level"), str):
            data = {**data, "level": data["level"].upper()}
        return data


class QuarantineAfter(Section):
    attempts: int = Field(8, ge=1)
    days: float = Field(7, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _int_means_attempts(cls, data: Any) -> Any:
        if isinstance(data, int) and not isinstance(data, bool):
            return {"attempts": data}
        return data


class SafetyConfig(Section):
    max_creates_per_cycle: int = Field(500, ge=0)
    max_creates_percent: float = Field(10, ge=0)
    min_source_people: int = Field(1, ge=0)
    max_source_drop_percent: float = Field(20, ge=0, le=100)
    quarantine_after: QuarantineAfter = QuarantineAfter()


class SyncConfig(Section):
    provision_days_before: int = Field(7, ge=0)
    update_names: bool = False
    leaver_after_missing: int = Field(3, ge=1)
    # strptime formats tried in order for start dates.
    date_format: list[str] = Field(default_factory=lambda: ["%Y-%m-%d"], min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _one_format(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("date_format"), str):
            data = {**data, "date_format": [data["date_format"]]}
        return data


class ScheduleConfig(Section):
    every: Duration | None = None
    cron: str | None = None
    run_at_start: bool = True

    @model_validator(mode="after")
    def _one_of(self) -> ScheduleConfig:
        if (self.every is None) == (self.cron is None):
            raise ValueError("give exactly one of 'every' (e.g. 15m) or 'cron' (5 fields)")
        if self.every is not None and self.every.total_seconds() < 10:
            raise ValueError("'every' must be at least 10s")
        if self.cron is not None and len(self.cron.split()) != 5:
            raise ValueError(f"cron {self.cron!r} must have 5 fields: min hour day month weekday")
        return self


class HealthConfig(Section):
    # `syncd status` exits 1 when the last successful cycle is older than this.
    max_age: Duration = timedelta(hours=1)
    # Optional Prometheus textfile for node_exporter's textfile collector.
    metrics_file: ConfigPath | None = None


class Config(Section):
    source: SourceConfig
    hybridbox: HybridboxConfig
    addresses: AddressesConfig = AddressesConfig()
    state: StateConfig = StateConfig()
    logging: LoggingConfig = LoggingConfig()
    safety: SafetyConfig = SafetyConfig()
    sync: SyncConfig = SyncConfig()
    schedule: ScheduleConfig = ScheduleConfig(every=timedelta(minutes=15))
    health: HealthConfig = HealthConfig()

    # Where the config was read from; not a YAML key.
    origin: Path | None = Field(default=None, exclude=True)
