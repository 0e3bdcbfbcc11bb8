"""Reading the secrets a config refers to: a file, an environment variable or a systemd credential.

Separate from :mod:`syncd.config._schema` because it happens at another moment: loading the config
only checks that exactly one reference is given, and the secret itself is read when syncd connects
(a cycle, or ``syncd validate``). So a config loads, and shows its mistakes, without the secrets.
Every error names the config key; none contains the secret.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from syncd.errors import ConfigError


def _read_secret_file(path: Path, key: str) -> str:
    try:
        info = path.stat()
    except OSError as exc:
        raise ConfigError(
            f"at '{key}': cannot read secret file {path}: {exc.strerror}",
            hint="check the path and that syncd's user may read it",
        ) from None
    if info.st_mode & stat.S_IROTH:
        raise ConfigError(
            f"at '{key}': secret file {path} is readable by every user on this machine",
            hint=f"run: chmod o-rwx {path}",
        )
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"at '{key}': cannot read secret file {path}: {exc.strerror}") from None
    if not value:
        raise ConfigError(f"at '{key}': secret file {path} is empty")
    return value


def resolve_secret(
    section: str,
    name: str,
    *,
    file: Path | None,
    env: str | None,
    credential: str | None,
) -> str:
    """Read a secret referenced as ``{name}_file``, ``{name}_env`` or ``{name}_credential``."""
    if file is not None:
        return _read_secret_file(file, f"{section}.{name}_file")
    if env is not None:
        value = os.environ.get(env, "").strip()
        if not value:
            raise ConfigError(
                f"at '{section}.{name}_env': environment variable {env} is not set or empty"
            )
        return value
    if credential is not None:
        directory = os.environ.get("CREDENTIALS_DIRECTORY")
        if not directory:
            raise ConfigError(
                f"at '{section}.{name}_credential': $CREDENTIALS_DIRECTORY is not set",
                hint="use LoadCredential= in the systemd unit, or token_file/token_env instead",
            )
        return _read_secret_file(Path(directory) / credential, f"{section}.{name}_credential")
    raise ConfigError(f"at '{section}': no {name} configured")
