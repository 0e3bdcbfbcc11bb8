"""The configuration: one YAML file, its schema, and the secrets it refers to.

- :mod:`syncd.config._schema`: the pydantic models, the single source of truth for every key.
- :mod:`syncd.config._load`: reading the YAML file and wording what is wrong with it.
- :mod:`syncd.config._secrets`: reading a secret (file, environment, systemd credential) when
  syncd connects, not when the config is loaded.

Everything else in syncd imports from here, never from the private modules.
"""

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
    "resolve_secret",
]
