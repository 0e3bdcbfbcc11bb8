"""The docs rendered from the schema: values that read back as written, tables that stay tables.

That the committed example and README tables are this output is checked in tests/test_docs.py.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, get_args

import pytest
import yaml
from pydantic import BaseModel, Field, TypeAdapter
from pydantic.fields import FieldInfo

from syncd.config import Config, HealthConfig, render_example_config, render_key_tables
from syncd.config._docs import key_table, yaml_value


@pytest.mark.parametrize(
    "value",
    [
        True,
        0,
        30,
        1.5,
        "",
        "utf-8",
        "true",
        "1",
        "yes",
        "null",
        ",",
        " padded ",
        "*/15 7-19 * * 1-5",
        "%Y-%m-%d",
        "user.{anchor}",
        "https://api.hybridbox.io",
        "ldap://host:389",
        "a: b",
        "x #y",
        "王",
        "(&(objectClass=user)(|(ou=a)(ou=b)))",
        ["Han"],
        ["true", "1", "yes", "disabled"],
        ["{first}.{last}", "{first}.{last}{n}"],
        ["a,b", "c"],
        [],
    ],
)
def test_yaml_values_read_back_as_written(value: Any) -> None:
    assert yaml.safe_load(f"key: {yaml_value(value)}") == {"key": value}


def test_list_items_are_all_quoted_or_none() -> None:
    assert yaml_value(["active"]) == "[active]"
    assert yaml_value(["true", "disabled"]) == '["true", "disabled"]'


@pytest.mark.parametrize(
    ("duration", "written"),
    [
        (timedelta(hours=1), "1h"),
        (timedelta(minutes=15), "15m"),
        (timedelta(seconds=90), "90s"),
        (timedelta(days=2), "2d"),
        (timedelta(seconds=1.5), "1.5s"),
        (timedelta(0), "0"),
    ],
)
def test_durations_are_written_as_the_config_takes_them(duration: timedelta, written: str) -> None:
    assert yaml_value(duration) == written
    assert HealthConfig.model_validate({"max_age": yaml.safe_load(written)}).max_age == duration


class Piped(BaseModel):
    mode: str = Field(
        "a|b",
        description="Either `a|b` or `c`.",
        examples=["c"],
        json_schema_extra={"in_example": "commented"},
    )


def test_pipes_in_cells_are_escaped() -> None:
    table = key_table(Piped, "piped")
    row = table.splitlines()[2]
    assert row == '| `piped.mode` | `"a\\|b"` | Either `a\\|b` or `c`. |'
    for line in table.splitlines():
        assert len(re.split(r"(?<!\\)\|", line)) == 5, line  # three cells, however they read


def test_alternatives_share_a_row_and_are_commented_out() -> None:
    tables, example = render_key_tables(), render_example_config()
    token = "| `hybridbox.token_file` / `hybridbox.token_env` / `hybridbox.token_credential` |"
    assert token in tables
    assert "\n  token_file: /etc/syncd/hybridbox-token\n  # token_env: HYBRIDBOX_TOKEN\n" in example
    assert "| `schedule.every` / `schedule.cron` | `15m` |" in tables
    assert '\n  every: 15m\n  # cron: "*/15 7-19 * * 1-5"\n' in example


def test_defaults_that_depend_on_the_flavor_say_so() -> None:
    tables = render_key_tables()
    assert "| `source.attributes.anchor` | `entryUUID`; AD: `objectGUID`" in tables
    assert "| `source.filter` | `(objectClass=inetOrgPerson)`; AD: `(&(" in tables
    assert "| `source.attributes.disabled` | none; AD: `userAccountControl` (bit 0x2) |" in tables


def test_example_comments_fit_the_line_width() -> None:
    long = [line for line in render_example_config().splitlines() if len(line) > 100]
    assert long == []


def _leaf_fields(model: type[BaseModel], path: str) -> list[Any]:
    leaves = []
    for name, info in model.model_fields.items():
        annotations = (info.annotation, *get_args(info.annotation))
        subs = [a for a in annotations if isinstance(a, type) and issubclass(a, BaseModel)]
        key = f"{path}.{name}" if path else name
        for sub in subs:
            leaves += _leaf_fields(sub, f"{key}({sub.__name__})" if len(subs) > 1 else key)
        if not (subs or info.exclude):
            leaves.append(pytest.param(info, id=key))
    return leaves


@pytest.mark.parametrize("info", _leaf_fields(Config, ""))
def test_every_example_is_a_valid_value(info: FieldInfo) -> None:
    """An example the docs show is one the key's type and constraints accept."""
    annotation: Any = info.annotation
    if info.metadata:  # the constraints (ge, pattern, ...) live apart from the type
        annotation = Annotated[annotation, *info.metadata]
    adapter: TypeAdapter[Any] = TypeAdapter(annotation)
    assert info.examples
    for example in info.examples:
        adapter.validate_python(example)
