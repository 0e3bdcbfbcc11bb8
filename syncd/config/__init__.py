"""The configuration: one YAML file, its schema, and the secrets it refers to.

- :mod:`syncd.config._schema`: the pydantic models, the single source of truth for every key.
- :mod:`syncd.config._load`: loading the config file and wording what is wrong with it.
- :mod:`syncd.config._yaml`: reading its YAML within limits, refusing duplicate keys, and the line
  of every key.
- :mod:`syncd.config._secrets`: reading a secret (file, environment, systemd credential) when
  syncd uses it, not when the config is loaded.
- :mod:`syncd.config._checks`: reading, at the start of a command, every secret it will use.
- :mod:`syncd.config._docs`: the annotated example config and README's key tables, rendered from
  the schema (``syncd config example``, ``syncd config keys``).

Everything else in syncd imports from here, never from the private modules.
"""

from typing import TYPE_CHECKING

from syncd.config._checks import check_secrets
from syncd.config._load import (
    config_file_warnings,
    format_validation_error,
    load_config,
    parse_config,
)
from syncd.config._schema import (
    DEFAULT_CONFIG_PATH,
    AddressesConfig,
    Config,
    CsvColumns,
    CsvSource,
    HealthConfig,
    HybridboxConfig,
    LdapAttributes,
    LdapSource,
    LoggingConfig,
    QuarantineAfter,
    SafetyConfig,
    ScheduleConfig,
    StateConfig,
    SyncConfig,
)
from syncd.config._secrets import resolve_secret
from syncd.config._yaml import MAX_CONFIG_BYTES

if TYPE_CHECKING:
    from syncd.config._docs import render_example_config, render_key_tables


def __getattr__(name: str) -> object:
    # The docs renderer is for `syncd config` alone; no other command pays for loading it.
    if name in ("render_example_config", "render_key_tables"):
        from syncd.config import _docs

        return getattr(_docs, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_CONFIG_PATH",
    "MAX_CONFIG_BYTES",
    "AddressesConfig",
    "Config",
    "CsvColumns",
    "CsvSource",
    "HealthConfig",
    "HybridboxConfig",
    "LdapAttributes",
    "LdapSource",
    "LoggingConfig",
    "QuarantineAfter",
    "SafetyConfig",
    "ScheduleConfig",
    "StateConfig",
    "SyncConfig",
    "check_secrets",
    "config_file_warnings",
    "format_validation_error",
    "load_config",
    "parse_config",
    "render_example_config",
    "render_key_tables",
    "resolve_secret",
]
