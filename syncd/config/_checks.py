"""Checking, at the start of a command, the secrets it will use.

A secret is otherwise read only when syncd connects, and a cycle with nothing to send may not
connect for as long as nobody is hired: a token file every user can read would go unnoticed under a
timer for months. So each command that would use a secret reads it first, through the same code
that reads it later (:func:`syncd.config._secrets.resolve_secret`), whether or not it then
contacts anything, and a bad one ends the command with a config error (exit 78).
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel

from syncd.config._schema import Config, LdapSource
from syncd.errors import ConfigError

_KINDS = ("file", "env", "credential")


def _given(section: BaseModel, name: str) -> str:
    """Which of ``{name}_file``/``_env``/``_credential`` the section sets (the schema ensures
    exactly one)."""
    return next(f"{name}_{kind}" for kind in _KINDS if getattr(section, f"{name}_{kind}"))


def _read(config: Config, key: str, read: Callable[[], str]) -> None:
    try:
        read()  # the value is dropped; each use reads it again (a rotated token is picked up)
    except ConfigError as exc:
        raise ConfigError(config.where(key) + exc.message, hint=exc.hint) from None


def check_secrets(config: Config, *, hybridbox: bool, source: bool) -> None:
    """Read every configured secret of the parts a command uses: ``hybridbox`` (the token) and
    ``source`` (an LDAP bind password, when one is configured). Raises ConfigError, naming the
    file, line and key, never the secret."""
    if hybridbox:
        settings = config.hybridbox
        _read(config, f"hybridbox.{_given(settings, 'token')}", settings.token)
    people = config.source
    if source and isinstance(people, LdapSource) and people.has_password:
        _read(config, f"source.{_given(people, 'bind_password')}", people.bind_password)
