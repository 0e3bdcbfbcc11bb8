"""Reading the secrets a config refers to: a file, an environment variable or a systemd credential.

Separate from :mod:`syncd.config._schema` because it happens at another moment: loading the config
only checks that exactly one reference is given, and the secret itself is read by each command that
uses it, at its start (:func:`syncd.config.check_secrets`) and again when it connects. So a config
loads, and shows its mistakes, without the secrets.

Every error names the config key and never the secret. Nor, when the file, variable or credential
is not there, the value of the key: an admin who pasted the token where its file name belongs
(``token_file: <token>``) would otherwise find it on stderr and in the log. A file that exists is a
path and is named; a variable name is shown only when it looks like one (``HYBRIDBOX_TOKEN``).

What is read is cleaned and checked the same way from all three places: a leading UTF-8 BOM, one
line end and blanks around the value are dropped; what is left must be one line, and a token (sent
in an HTTP header) printable ASCII.
"""

from __future__ import annotations

import os
import re
import stat
import unicodedata
from pathlib import Path
from typing import Final

from syncd.errors import ConfigError
from syncd.logs import register_secret

# A token or password is a line; a file much larger than that is the wrong file (or /proc/...).
MAX_SECRET_BYTES: Final = 64 * 1024
_BOM: Final = "\ufeff"
# What an HTTP header value may carry, and what a token is made of: printable ASCII, no blank.
_TOKEN_CHARS: Final = range(0x21, 0x7F)
_WRITERS: Final = (("its group", stat.S_IWGRP), ("every user", stat.S_IWOTH))
# A conventional variable name, in capitals with an underscore, is safe to show; a token rarely
# looks like that. Anything else stays unnamed (AKIA... access keys are capitals without one).
_SHOWN_VARIABLE: Final = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+")
_SHOWN_VARIABLE_MAX: Final = 40


def _clean(value: str, key: str, *, ascii_only: bool) -> str:
    """The secret without BOM, line end and surrounding blanks; refused unless it is one line
    (and, ``ascii_only``, printable ASCII). The messages say which rule failed, never the value."""
    value = value.removeprefix(_BOM)
    value = value.removesuffix("\n").removesuffix("\r").strip(" \t")
    if not value:
        raise ConfigError(f"at '{key}': the secret is empty")
    if "\n" in value or "\r" in value:
        raise ConfigError(
            f"at '{key}': the secret has more than one line (a second line, or an empty line "
            "after it); it must be the secret alone, on one line",
            hint="a second line would be sent as part of the request",
        )
    for position, char in enumerate(value, start=1):
        if ascii_only and ord(char) not in _TOKEN_CHARS:
            raise ConfigError(
                f"at '{key}': character {position} of the token is not printable ASCII (a "
                "space, a control character, or a non-ASCII letter or quote from a copy and "
                "paste); a token is one word of printable ASCII",
                hint="copy the token again as plain text",
            )
        if unicodedata.category(char) == "Cc":
            raise ConfigError(f"at '{key}': character {position} of the secret is a control code")
    return value


def _refuse_loose_mode(path: Path, key: str, mode: int) -> None:
    """A secret others can read is known to them; one others can write, they can swap (for a
    token of their own, which then sees every request). Group read is allowed: the service's
    group may need it (``root:syncd 0640``)."""
    problems = []
    if mode & stat.S_IROTH:
        problems.append("readable by every user on this machine")
    writers = [who for who, bit in _WRITERS if mode & bit]
    if writers:
        problems.append(f"writable by {' and by '.join(writers)}")
    if not problems:
        return
    fix = ",".join(
        (["g-w"] if mode & stat.S_IWGRP else []) + (["o-rwx"] if mode & stat.S_IRWXO else [])
    )
    raise ConfigError(
        f"at '{key}': secret file {path} is {' and '.join(problems)} (mode {mode:04o})",
        hint=f"run: chmod {fix} {path}",
    )


# What to say when the file a key names is not there, by the kind of reference.
_MISSING_FILE: Final = (
    "the file it names does not exist",
    "check the path written there; it is not repeated here, in case a secret was pasted in its "
    "place",
)
_MISSING_CREDENTIAL: Final = (
    "no credential of the name it gives is in $CREDENTIALS_DIRECTORY",
    "the name must match a LoadCredential= line of the systemd unit",
)


def _read_secret_file(
    path: Path, key: str, *, ascii_only: bool, missing: tuple[str, str] = _MISSING_FILE
) -> str:
    try:
        # O_NONBLOCK: a FIFO must not hang the command until someone writes; it is refused below.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ConfigError(f"at '{key}': {missing[0]}", hint=missing[1]) from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the name
        reason = exc.strerror if isinstance(exc, OSError) else "not a usable file name"
        raise ConfigError(
            f"at '{key}': cannot open the file it names: {reason}",
            hint="check the path and that syncd's user may read it",
        ) from None
    try:
        data = _read_secret_fd(fd, path, key)
    finally:
        os.close(fd)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"at '{key}': secret file {path} is not UTF-8 text") from None
    return _clean(text, key, ascii_only=ascii_only)


def _read_secret_fd(fd: int, path: Path, key: str) -> bytes:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise ConfigError(f"at '{key}': {path} is {kind}; it must be a file holding the secret")
    _refuse_loose_mode(path, key, stat.S_IMODE(info.st_mode))
    data = os.read(fd, MAX_SECRET_BYTES + 1)
    if len(data) > MAX_SECRET_BYTES:
        raise ConfigError(
            f"at '{key}': secret file {path} is larger than {MAX_SECRET_BYTES // 1024} KiB; "
            "it must hold the secret alone"
        )
    return data


def _read_variable(name: str, key: str, *, ascii_only: bool) -> str:
    try:
        value = os.environ.get(name, "")
    except ValueError:  # a NUL in the name
        value = ""
    if not value.strip():
        shown = (
            f"environment variable {name}"
            if _SHOWN_VARIABLE.fullmatch(name) and len(name) <= _SHOWN_VARIABLE_MAX
            else "the environment variable it names"
        )
        raise ConfigError(f"at '{key}': {shown} is not set or empty")
    return _clean(value, key, ascii_only=ascii_only)


def resolve_secret(
    section: str,
    name: str,
    *,
    file: Path | None,
    env: str | None,
    credential: str | None,
    ascii_only: bool = False,
) -> str:
    """Read a secret referenced as ``{name}_file``, ``{name}_env`` or ``{name}_credential``.

    ``ascii_only``: the secret goes into an HTTP header (a token), so it must be printable ASCII.
    What is read is registered with :func:`syncd.logs.register_secret`, to be masked in any log
    line it might slip into.
    """
    if file is not None:
        value = _read_secret_file(file, f"{section}.{name}_file", ascii_only=ascii_only)
    elif env is not None:
        value = _read_variable(env, f"{section}.{name}_env", ascii_only=ascii_only)
    elif credential is not None:
        key = f"{section}.{name}_credential"
        directory = os.environ.get("CREDENTIALS_DIRECTORY")
        if not directory:
            raise ConfigError(
                f"at '{key}': $CREDENTIALS_DIRECTORY is not set",
                hint="use LoadCredential= in the systemd unit, or token_file/token_env instead",
            )
        value = _read_secret_file(
            Path(directory) / credential, key, ascii_only=ascii_only, missing=_MISSING_CREDENTIAL
        )
    else:
        raise ConfigError(f"at '{section}': no {name} configured")
    register_secret(value)
    return value
