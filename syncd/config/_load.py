"""Loading the config file: YAML in, a validated :class:`~syncd.config.Config` out.

Apart from the schema because it is another job: reading a file an admin wrote, and putting
pydantic's and YAML's complaints into lines that name the file, the key and what to do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from syncd.config._schema import Config
from syncd.errors import ConfigError


def _format_location(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item in ("csv", "ldap") and parts == ["source"]:
            continue  # the discriminator's branch name is noise for the admin
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "(top level)"


def format_validation_error(path: Path, error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key (check the spelling; see config/syncd.example.yaml)"
        elif item["type"] == "missing":
            message = "required key is missing"
        lines.append(f"config error in {path}: at '{_format_location(item['loc'])}': {message}")
    return "\n".join(lines)


def parse_config(data: Any, path: Path) -> Config:
    """Validate already-parsed YAML; raise ConfigError with one line per problem."""
    if not isinstance(data, dict):
        raise ConfigError(f"config error in {path}: the file must be a YAML mapping of sections")
    try:
        config = Config.model_validate(data, context={"base_dir": path.parent.resolve()})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(path, exc)) from None
    return config.model_copy(update={"origin": path})


def load_config(path: Path) -> Config:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"config error in {path}: file not found",
            hint="pass --config FILE or set SYNCD_CONFIG",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config error in {path}: cannot read it: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f"line {mark.line + 1}, column {mark.column + 1}: "
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"config error in {path}: {where}YAML syntax: {problem}") from None
    return parse_config(data, path)
