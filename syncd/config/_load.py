"""Loading the config file: YAML in, a validated :class:`~syncd.config.Config` out.

Apart from the schema because it is another job: reading a file an admin wrote, and putting
pydantic's and YAML's complaints into lines that name the file, the line, the key and what to do
(``config error in FILE, line N: at 'KEY': what is wrong``). Reading the YAML itself, with its
limits and its line numbers, is :mod:`syncd.config._yaml`.
"""

from __future__ import annotations

import difflib
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final, get_args

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from syncd.config._schema import Config
from syncd.config._yaml import KeyPath, YamlDocument, dotted, parse_yaml, read_config_text
from syncd.errors import ConfigError

# The fields of Config that syncd fills in itself; a YAML key of that name is unknown, not a way
# to set them.
_NOT_KEYS: Final = frozenset(name for name, info in Config.model_fields.items() if info.exclude)
# pydantic's location of a key in a `source:` section has the branch (`csv`, `ldap`) after
# `source`; the admin never wrote it.
_BRANCHED: Final = "source"


def _key_path(loc: tuple[int | str, ...]) -> KeyPath:
    """pydantic's location as the path of keys in the file (without the branch name)."""
    if len(loc) > 1 and loc[0] == _BRANCHED and loc[1] in ("csv", "ldap"):
        return (loc[0], *loc[2:])
    return loc


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in get_args(annotation) for model in _models_in(arg)]


def _sections(
    model: type[BaseModel] = Config, path: KeyPath = ()
) -> Iterator[tuple[KeyPath, type[BaseModel]]]:
    """Every section (model) and its key path, the two kinds of `source` both at ``source``."""
    yield path, model
    for name, info in model.model_fields.items():
        if not info.exclude:
            for section in _models_in(info.annotation):
                yield from _sections(section, (*path, name))


def _keys(model: type[BaseModel]) -> list[str]:
    return [name for name, info in model.model_fields.items() if not info.exclude]


def _section_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The section (model) that pydantic's ``loc`` points into, or None."""
    choices: list[type[BaseModel]] = [Config]
    for part in loc:
        if len(choices) > 1:  # a union of sections: pydantic's next item is the branch's tag
            tags = {m: m.model_fields.get("type") for m in choices}
            choices = [m for m, tag in tags.items() if tag and part in get_args(tag.annotation)]
            continue
        info = choices[0].model_fields.get(part) if choices and isinstance(part, str) else None
        if info is None or info.exclude:
            return None
        choices = _models_in(info.annotation)
    return choices[0] if len(choices) == 1 else None


def _suggestion(loc: tuple[int | str, ...]) -> str:
    """For an unknown key: the nearest known key at its level, or the section it belongs to."""
    key, section = loc[-1], _section_at(loc[:-1])
    if not isinstance(key, str) or section is None:
        return ""
    close = difflib.get_close_matches(key, _keys(section), n=1)
    if close:
        return f"; did you mean '{close[0]}'?"
    here = _key_path(loc[:-1])  # (an LDAP key in a CSV source has no better home to point at)
    homes = sorted(
        {dotted(at) for at, model in _sections() if key in _keys(model) and at not in ((), here)}
    )
    if homes:
        return f"; it is a key of '{homes[0]}'" + "".join(f" or '{h}'" for h in homes[1:])
    return ""


def _message(item: ErrorDetails) -> str:
    kind = item["type"]
    if kind == "extra_forbidden":
        return f"unknown key{_suggestion(item['loc'])} (see config/syncd.example.yaml)"
    if kind == "missing":
        return "required key is missing"
    if kind == "union_tag_not_found":
        return "say which kind of source it is: `type: csv` or `type: ldap`"
    if kind == "invalid_key":
        return (
            f"YAML reads the key {item['input']!r} as {type(item['input']).__name__}, not as a "
            "name; keys are names such as batch_size"
        )
    return item["msg"].removeprefix("Value error, ")


def format_validation_error(
    path: Path, error: ValidationError, document: YamlDocument | None = None
) -> str:
    """One line per problem: ``config error in FILE, line N: at 'KEY': what is wrong``."""
    lines = []
    for item in error.errors():
        key_path = _key_path(item["loc"])
        if item["type"] == "invalid_key":  # pydantic puts the bad key itself last
            key_path = key_path[:-1]
        line = document.line_of(key_path) if document is not None else None
        where = f", line {line}" if line is not None else ""
        lines.append(f"config error in {path}{where}: at '{dotted(key_path)}': {_message(item)}")
    return "\n".join(lines)


def _kind_of(data: Any) -> str:
    if data is None:
        return "empty"
    if isinstance(data, list):
        return "a YAML list"
    return f"a single value ({type(data).__name__})"


def parse_config(data: Any, path: Path, document: YamlDocument | None = None) -> Config:
    """Validate already-parsed YAML; raise ConfigError with one line per problem.

    ``document`` (the parsed file) gives each problem its line.
    """
    if not isinstance(data, dict):
        raise ConfigError(
            f"config error in {path}: the file is {_kind_of(data)}; it must be a YAML mapping "
            "of sections (source:, hybridbox:, ...)",
            hint="start from `syncd config example`",
        )
    reserved = [key for key in data if key in _NOT_KEYS]
    if reserved:
        line = document.line_of((reserved[0],)) if document is not None else None
        where = f", line {line}" if line is not None else ""
        raise ConfigError(f"config error in {path}{where}: at '{reserved[0]}': unknown key")
    try:
        config = Config.model_validate(data, context={"base_dir": path.parent.resolve()})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(path, exc, document)) from None
    problems = config.undefined_fields()
    if problems:
        lines = []
        for key_path, message in problems:
            line = document.line_of(key_path) if document is not None else None
            where = f", line {line}" if line is not None else ""
            lines.append(f"config error in {path}{where}: at '{dotted(key_path)}': {message}")
        raise ConfigError("\n".join(lines))
    key_lines = {dotted(key): line for key, line in document.lines.items()} if document else {}
    return config.model_copy(update={"origin": path, "key_lines": key_lines})


def load_config(path: Path) -> Config:
    """Read, parse and validate the config file (a regular file of at most MAX_CONFIG_BYTES)."""
    document = parse_yaml(read_config_text(path), path)
    return parse_config(document.data, path, document)


def config_file_warnings(config: Config) -> list[str]:
    """What is unsafe about the config file but not wrong enough to refuse it."""
    if config.origin is None:
        return []
    try:
        mode = stat.S_IMODE(config.origin.stat().st_mode)
    except OSError:
        return []  # it was read a moment ago; a file gone since is the next load's business
    if mode & stat.S_IWOTH:
        return [
            f"config file {config.origin} is writable by every user on this machine (mode "
            f"{mode:04o}): any of them can change which domain syncd provisions and which token "
            f"it sends; run: chmod o-w {config.origin}"
        ]
    return []
