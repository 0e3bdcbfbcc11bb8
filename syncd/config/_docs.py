"""The config's documentation, generated from the schema: the annotated example and the key tables.

Every key's description, default and examples live on its field in :mod:`syncd.config._schema`;
the functions here only walk the models. So ``config/syncd.example.yaml`` (the output of
``syncd config example``) and README's "Every key" tables (``syncd config keys``) cannot say
anything the schema does not, and a test compares the committed files with a fresh rendering byte
for byte. The output depends on nothing but the models (field order, no clock, no paths).

The example shows each key with its first example, which for most keys is the default; where a key
takes one of several sections (``source``), it shows the first of them (the CSV source).
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Final, get_args, get_origin

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from syncd.config._schema import Config, CsvSource, LdapSource

WIDTH: Final = 100

_HEADER: Final = (
    "syncd configuration: every key, with its default and what it does. Copy it to "
    "/etc/syncd/syncd.yaml and edit it; check it with: syncd --config FILE validate",
    "Unknown keys are errors, and so is a key given twice (a typo never silently does nothing). "
    "Relative paths are relative to this file's directory. Durations take 90s, 15m, 2h, 1d or "
    "plain seconds. Secrets are never written here: give a *_file (that other users can neither "
    "read nor change), a *_env variable or a *_credential name under $CREDENTIALS_DIRECTORY "
    "(systemd's LoadCredential=).",
    "Generated from syncd's schema by `syncd config example`.",
)

# The sections README gives a table of their own; the others share one.
_OWN_TABLE: Final = ("hybridbox", "addresses")

_REQUIRED: Final = object()

# Strings that may stay unquoted: one or more words of these characters, and only when YAML reads
# them back as the same string (so `true`, `1`, `yes` and `*/15 ...` get quotes).
_PLAIN = re.compile(r"[\w./@~+=-][\w./@~+=:-]*(?: [\w./@~+=:-]+)*")


# ------------------------------------------------------------------------------------ values


def _duration(value: timedelta) -> str:
    seconds = value.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s" if seconds else "0"


def _needs_quotes(text: str, *, in_list: bool) -> bool:
    written, wanted = (f"[{text}]", [text]) if in_list else (text, text)
    return not (_PLAIN.fullmatch(text) and yaml.safe_load(written) == wanted)


def _quoted(text: str, quote: bool) -> str:
    return json.dumps(text, ensure_ascii=False) if quote else text  # JSON's is YAML's "..."


def yaml_value(value: object) -> str:
    """``value`` as YAML that reads back as it (flow style for lists: one line)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, timedelta):
        return _duration(value)
    if isinstance(value, str | Path):
        return _quoted(str(value), _needs_quotes(str(value), in_list=False))
    if isinstance(value, list | tuple):
        # All strings quoted or none: ["true", "1", "yes", disabled] would look like a mistake.
        quote = any(isinstance(v, str) and _needs_quotes(v, in_list=True) for v in value)
        items = (_quoted(v, quote) if isinstance(v, str) else yaml_value(v) for v in value)
        return "[" + ", ".join(items) + "]"
    if isinstance(value, dict):
        keys = (_quoted(str(k), _needs_quotes(str(k), in_list=True)) for k in value)
        pairs = (f"{k}: {yaml_value(v)}" for k, v in zip(keys, value.values(), strict=True))
        return "{" + ", ".join(pairs) + "}"
    raise TypeError(f"no YAML form for {value!r}")


# ------------------------------------------------------------------------------------ fields


def _extra(info: FieldInfo, key: str) -> str | None:
    extra = info.json_schema_extra
    value = extra.get(key) if isinstance(extra, dict) else None
    return value if isinstance(value, str) else None


def _section(info: FieldInfo) -> type[BaseModel] | None:
    """The model of a key that is a section; the first one for a choice of sections."""
    # A choice of sections (``CsvSource | LdapSource``), not a list of them (``domains``: a
    # list of rules is one key, shown with its example).
    choices = () if get_origin(info.annotation) is list else get_args(info.annotation)
    for candidate in (info.annotation, *choices):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _default(info: FieldInfo, name: str, section: BaseModel | None) -> object:
    """The key's default: the section's own default wins, because it can differ from the field's
    (``schedule`` defaults to ``every: 15m``, while ``ScheduleConfig.every`` has none)."""
    if section is not None:
        return getattr(section, name)
    if info.is_required():
        return _REQUIRED
    return info.get_default(call_default_factory=True)


def _section_default(value: object) -> BaseModel | None:
    return value if isinstance(value, BaseModel) else None


def _keys(model: type[BaseModel]) -> Iterator[tuple[str, FieldInfo]]:
    return ((name, info) for name, info in model.model_fields.items() if not info.exclude)


def _example(info: FieldInfo, default: object, path: str) -> object:
    if info.examples:
        return info.examples[0]
    if default is _REQUIRED:
        raise ValueError(f"{path} is required but has no example")
    return default


# ------------------------------------------------------------------------------------ example


def _comment(text: str, indent: str, *, keep: str = "") -> list[str]:
    """``text`` as comment lines, then ``keep``, which is never broken across lines (a
    default such as ``["{first}.{last}", "{first}.{last}{n}"]`` is read as one)."""
    glued = keep.replace(" ", "\0")
    text = f"{text} {glued}".strip()
    width = WIDTH - len(indent) - 2
    lines = textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False)
    return [f"{indent}# {line}".replace("\0", " ") for line in lines]


def _shown_default(info: FieldInfo, value: object, *, markdown: bool) -> str:
    """The default as the docs show it: ``required``, ``none``, the value, or what the field's
    ``shown_default`` says (for a default that depends on another key)."""
    shown = _extra(info, "shown_default")
    if shown is not None:
        return shown
    if value is _REQUIRED:
        return "required"
    if value is None:
        return "none"
    return f"`{yaml_value(value)}`" if markdown else yaml_value(value)


def _default_note(info: FieldInfo, value: object) -> str:
    shown = _shown_default(info, value, markdown=False)
    if shown == "required":
        return "Required."
    return f"Default: {shown}." if shown else ""


def _example_lines(model: type[BaseModel], section: BaseModel | None, path: str) -> Iterator[str]:
    indent = "  " * (path.count(".") + 1) if path else ""
    for name, info in _keys(model):
        key = f"{path}.{name}" if path else name
        value = _default(info, name, section)
        sub = _section(info)
        if not path:
            yield ""
        if _extra(info, "alternative_to") is not None:
            # The description of the key it replaces already names it.
            yield f"{indent}# {name}: {yaml_value(_example(info, value, key))}"
        elif sub is not None:
            yield from _comment(info.description or "", indent)
            yield f"{indent}{name}:"
            yield from _example_lines(sub, _section_default(value), key)
        else:
            note = _default_note(info, value)
            yield from _comment(info.description or "", indent, keep=note)
            off = "# " if _extra(info, "in_example") == "commented" else ""
            yield f"{indent}{off}{name}: {yaml_value(_example(info, value, key))}"


def render_example_config() -> str:
    """The annotated example config (``syncd config example``; ``config/syncd.example.yaml``)."""
    header: list[str] = []
    for paragraph in _HEADER:
        header += ["#"] if header else []
        header += _comment(paragraph, "")
    return "\n".join([*header, *_example_lines(Config, None, "")]) + "\n"


# ------------------------------------------------------------------------------------ tables


@dataclass
class _Row:
    keys: list[str]
    default: str
    meaning: str


def _rows(model: type[BaseModel], section: BaseModel | None, path: str) -> list[_Row]:
    rows: list[_Row] = []
    by_name: dict[str, _Row] = {}
    for name, info in _keys(model):
        key = f"{path}.{name}"
        value = _default(info, name, section)
        sub = _section(info)
        alternative_to = _extra(info, "alternative_to")
        if alternative_to is not None:
            by_name[alternative_to].keys.append(key)
        elif sub is not None:
            rows += _rows(sub, _section_default(value), key)
        else:
            row = _Row([key], _shown_default(info, value, markdown=True), info.description or "")
            by_name[name] = row
            rows.append(row)
    return rows


def _cell(text: str) -> str:
    return text.replace("\n", " ").replace("|", "\\|")


def _table(rows: list[_Row]) -> str:
    lines = ["| key | default | meaning |", "|---|---|---|"]
    for row in rows:
        keys = " / ".join(f"`{key}`" for key in row.keys)
        lines.append(f"| {_cell(keys)} | {_cell(row.default)} | {_cell(row.meaning)} |")
    return "\n".join(lines) + "\n"


def key_table(model: type[BaseModel], path: str, section: BaseModel | None = None) -> str:
    """The Markdown table of ``model``'s keys under ``path``: key, default, meaning."""
    return _table(_rows(model, section, path))


def render_key_tables() -> str:
    """README's "Every key" tables (``syncd config keys``): the CSV source, the LDAP source, then
    the sections, grouped as README has always grouped them."""
    groups = [
        ("`source` with `type: csv`:", _rows(CsvSource, None, "source")),
        ("`source` with `type: ldap`:", _rows(LdapSource, None, "source")),
    ]
    shared_names: list[str] = []
    shared_rows: list[_Row] = []
    for name, info in _keys(Config):
        model = _section(info)
        if name == "source" or model is None:
            continue  # the sources have their tables above, one per type
        rows = _rows(model, _section_default(_default(info, name, None)), name)
        if name in _OWN_TABLE:
            groups.append((f"`{name}`: {info.description}", rows))
        else:
            shared_names.append(f"`{name}`")
            shared_rows += rows
    groups.append((", ".join(shared_names) + ":", shared_rows))
    return "\n".join(f"{heading}\n\n{_table(rows)}" for heading, rows in groups)
