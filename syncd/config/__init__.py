"""The configuration: one YAML file, its schema, and the secrets it refers to.

- :mod:`syncd.config._schema`: the pydantic models, the single source of truth for every key.
- :mod:`syncd.config._load`: reading the YAML file and wording what is wrong with it.
- :mod:`syncd.config._secrets`: reading a secret (file, environment, systemd credential) when
  syncd connects, not when the config is loaded.
- :mod:`syncd.config._docs`: the annotated example config and README's key tables, rendered from
  the schema (``syncd config example``, ``syncd config keys``).

Everything else in syncd imports from here, never from the private modules.
"""

from syncd.config._docs import render_example_config, render_key_tables
from syncd.config._load import format_validation_error, load_config, parse_config
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

__all__ = [
    "DEFAULT_CONFIG_PATH",
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
    "format_validation_error",
    "load_config",
    "parse_config",
    "render_example_config",
    "render_key_tables",
    "resolve_secret",
]
