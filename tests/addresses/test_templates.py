"""Address templates: valid local parts, rendering, and the template rules the config enforces.

The candidates made from them (order, numbers, fallback, choice): tests/addresses/test_addresses.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd.addresses import LOCAL_PART_MAX, is_valid_local_part, render, template_problem
from syncd.config import AddressesConfig, parse_config
from syncd.errors import ConfigError
from syncd.model import Person


def person(first: str, last: str, anchor: str = "E1001") -> Person:
    return Person(anchor=anchor, first_name=first, last_name=last)


# ------------------------------------------------------------------------------ validity


@pytest.mark.parametrize("value", ["a", "john.smith", "j_smith-2", "0", "a.b.c", "x" * 64])
def test_valid_local_parts(value: str) -> None:
    assert is_valid_local_part(value)


@pytest.mark.parametrize(
    "value",
    ["", ".a", "a.", "a..b", "John", "jürgen", "a b", "a+b", "x" * 65, "a\n", "a@b"],
)
def test_invalid_local_parts(value: str) -> None:
    assert not is_valid_local_part(value)


# ----------------------------------------------------------------------------------- render


def test_render_placeholders() -> None:
    who = person("Anna-Lena", "Schäfer", anchor="HR-77")
    assert render("{first}.{last}", who, "de") == "anna-lena.schaefer"
    assert render("{f}{last}", who, "de") == "aschaefer"
    assert render("{first}_{l}", who, "de") == "anna-lena_s"
    assert render("{first}.{last}{n}", who, "de", 3) == "anna-lena.schaefer3"
    assert render("{first}.{last}{n}", who, "de") == "anna-lena.schaefer"  # n=None: nothing
    assert render("user.{anchor}", who, "de") == "user.hr-77"


def test_render_returns_none_when_a_needed_name_is_empty() -> None:
    who = person("😀", "Smith")
    assert render("{first}.{last}", who, None) is None
    assert render("{f}{last}", who, None) is None
    assert render("{last}", who, None) == "smith"


def test_render_collapses_and_strips_dots() -> None:
    who = person("Ann", "Lee")
    assert render("..{first}..{last}..", who, None) == "ann.lee"


def test_render_rejects_a_broken_template() -> None:
    with pytest.raises(ConfigError, match=r"unknown placeholder \{middle\}"):
        render("{first}.{middle}", person("Ann", "Lee"), None)
    with pytest.raises(ValueError, match="negative"):
        render("{first}{n}", person("Ann", "Lee"), None, -1)


def test_very_long_names_are_cut_to_64_without_a_trailing_dot() -> None:
    who = person("Maximiliane " * 8, "Wolfeschlegelsteinhausenbergerdorff-Schmidt")
    value = render("{first}.{last}", who, None)
    assert value is not None
    assert len(value) == LOCAL_PART_MAX
    assert is_valid_local_part(value)
    # Both names survive, shortened about equally, and the separator stays between them.
    first, last = value.split(".")
    assert first.startswith("maximiliane") and last.startswith("wolfeschlegel")
    assert abs(len(first) - len(last)) <= 1


def test_long_names_keep_their_number() -> None:
    who = person("A" * 80, "B" * 80)
    numbered = [render("{first}.{last}{n}", who, None, n) for n in (2, 10, 99)]
    assert [v[-2:] for v in numbered if v] == ["b2", "10", "99"]
    assert all(v is not None and len(v) == LOCAL_PART_MAX for v in numbered)


def test_a_cut_never_leaves_a_trailing_dot() -> None:
    # The 64th character is a dot of the template itself: it must go, not end the address.
    template = "{f}" + "x" * 62 + ".yz"
    value = render(template, person("Ann", "Lee"), None)
    assert value == "a" + "x" * 62
    assert is_valid_local_part(value)


# ------------------------------------------------------------------------------ config rules


@pytest.mark.parametrize(
    ("templates", "message"),
    [
        (["{first}.{middle}"], "unknown placeholder {middle}"),
        (["{first} {last}"], "characters outside"),
        (["{First}.{last}"], "unknown placeholder {First}"),
        (["{first"], "unmatched brace"),
        (["info"], "everyone would get the same one"),
        (["team{n}"], "everyone would get the same one"),
    ],
)
def test_config_rejects_bad_templates(templates: list[str], message: str) -> None:
    data = {
        "source": {
            "type": "csv",
            "path": "hr.csv",
            "columns": {"anchor": "id", "first_name": "fn", "last_name": "ln"},
        },
        "hybridbox": {
            "account_id": "00000000-0000-0000-0000-000000000000",
            "domain": "example.com",
            "token_env": "HB_TOKEN",
        },
        "addresses": {"templates": templates},
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(data, Path("/etc/syncd/syncd.yaml"))
    assert "at 'addresses'" in str(caught.value)
    assert message in str(caught.value)


@pytest.mark.parametrize("template", ["user.{first}", "user", "{f}.{anchor}"])
def test_fallback_must_use_the_anchor_and_no_name(template: str) -> None:
    assert template_problem(template, fallback=True) is not None
    with pytest.raises(ValueError, match="fallback template"):
        AddressesConfig(fallback_template=template)
