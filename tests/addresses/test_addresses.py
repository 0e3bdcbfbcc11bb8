"""Local parts from names: candidates and choice, and the locales end to end.

The name tokens themselves (transliteration, scripts, the name filter):
tests/addresses/test_names.py; the templates (syntax, rendering, valid local parts):
tests/addresses/test_templates.py.
"""

from __future__ import annotations

import json
from itertools import islice
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.addresses import anchor_token, name_token, transliterate
from syncd.addresses._candidates import (
    CandidateSource,
    _first_name_candidate,
    _name_candidates,
    candidates,
    choose,
)
from syncd.addresses._templates import (
    Tokens,
    _parse,
    _render,
    compile_template,
    fill,
    is_valid_local_part,
    template_problem,
)
from syncd.config import AddressesConfig
from syncd.model import Person
from tests.support import address_reference


def person(first: str, last: str, anchor: str = "E1001") -> Person:
    return Person(anchor=anchor, first_name=first, last_name=last)


def first_candidate(first: str, last: str, locale: str | None = None) -> str:
    return next(candidates(person(first, last), AddressesConfig(locale=locale)))


# ------------------------------------------------------------------------- transliteration


@pytest.mark.parametrize("locale", ["de", "DE", "de_AT", "de-CH", "de_DE.UTF-8"])
def test_german_table_spells_umlauts_out(locale: str) -> None:
    assert transliterate("Jürgen Größe Äöü ÄÖÜ ẞ", locale) == "Juergen Groesse Aeoeue AeOeUe SS"
    assert first_candidate("Jürgen", "Müller-Lüdenscheidt", locale) == (
        "juergen.mueller-luedenscheidt"
    )


def test_without_german_locale_umlauts_lose_their_dots() -> None:
    assert transliterate("Jürgen Müller", None) == "Jurgen Muller"
    assert first_candidate("Jürgen", "Groß") == "jurgen.gross"
    assert first_candidate("Jürgen", "Müller", "en") == "jurgen.muller"


def test_french() -> None:
    assert transliterate("Éloïse Françoise Lœwe Æsa Hélène Noël", "fr") == (
        "Eloise Francoise Loewe Aesa Helene Noel"
    )
    assert first_candidate("Jean-François", "Lœuvre", "fr") == "jean-francois.loeuvre"


@pytest.mark.parametrize("locale", ["da", "nb", "nn", "no", "nb_NO"])
def test_danish_and_norwegian_spell_out_ae_oe_aa(locale: str) -> None:
    assert transliterate("Søren Ærø Åse", locale) == "Soeren Aeroe Aase"
    assert first_candidate("Bjørn", "Håland", locale) == "bjoern.haaland"


@pytest.mark.parametrize("locale", ["sv", "fi", "sv_FI"])
def test_swedish_and_finnish_drop_dots_and_rings(locale: str) -> None:
    assert transliterate("Åsa Jääskeläinen Öberg", locale) == "Asa Jaaskelainen Oberg"
    assert first_candidate("Åsa", "Källström", locale) == "asa.kallstrom"


def test_icelandic() -> None:
    assert transliterate("Þórður Guðmundsson Björk Ægir", "is") == (
        "Thordur Gudmundsson Bjork Aegir"
    )
    assert first_candidate("Þórður", "Guðmundsdóttir", "is") == "thordur.gudmundsdottir"


def test_cyrillic() -> None:
    assert first_candidate("Ольга", "Щукина") == "olga.shchukina"  # soft sign ' dropped
    assert first_candidate("Юрий", "Хрущёв") == "yuriy.khrushchev"


def test_greek_digraphs() -> None:
    assert first_candidate("Γεώργιος", "Παπαδόπουλος") == "georgios.papadopoulos"
    assert first_candidate("Ευάγγελος", "Ευθυμίου") == "evangelos.efthymiou"
    assert transliterate("ΠΑΠΑΔΟΠΟΥΛΟΣ Αύγουστος", None) == "PAPADOPOULOS Avgoustos"


def test_other_scripts_go_through_anyascii() -> None:
    assert first_candidate("Nguyễn", "Đức") == "nguyen.duc"
    assert first_candidate("さとう", "ゆき") == "satou.yuki"  # kana is not ambiguous
    assert first_candidate("Łukasz", "Dvořák") == "lukasz.dvorak"


# ------------------------------------------------------------------------------- candidates


def test_templates_in_order_with_n_expansion() -> None:
    config = AddressesConfig(templates=["{first}.{last}", "{f}{last}", "{first}.{last}{n}"])
    got = list(candidates(person("Ann", "Lee", anchor="E7"), config, max_n=4))
    assert got == [
        "ann.lee",
        "alee",
        "ann.lee2",
        "ann.lee3",
        "ann.lee4",
        "user.e7",
        "user.e7-2",
        "user.e7-3",
        "user.e7-4",
    ]


def test_default_config_candidates() -> None:
    got = list(islice(candidates(person("Ann", "Lee"), AddressesConfig()), 4))
    assert got == ["ann.lee", "ann.lee2", "ann.lee3", "ann.lee4"]
    assert len(list(candidates(person("Ann", "Lee"), AddressesConfig()))) == 1 + 98 + 1 + 98


def test_duplicates_are_dropped() -> None:
    # {f}{l} and {l}{f} agree for "Ann Abbott"; the second is not offered again.
    config = AddressesConfig(templates=["{f}{l}.{anchor}", "{l}{f}.{anchor}"])
    got = list(candidates(person("Ann", "Abbott", anchor="7"), config, max_n=2))
    assert got == ["aa.7", "user.7", "user.7-2"]


def test_preferred_comes_first() -> None:
    config = AddressesConfig()
    got = list(islice(candidates(person("Ann", "Lee"), config, preferred=" A.Lee "), 3))
    assert got == ["a.lee", "ann.lee", "ann.lee2"]


def test_preferred_equal_to_a_template_is_not_repeated() -> None:
    got = list(islice(candidates(person("Ann", "Lee"), AddressesConfig(), preferred="ann.lee"), 2))
    assert got == ["ann.lee", "ann.lee2"]


@pytest.mark.parametrize("preferred", ["ann..lee", "änn", "ann lee", "", "x" * 65])
def test_invalid_preferred_is_skipped(preferred: str) -> None:
    got = next(candidates(person("Ann", "Lee"), AddressesConfig(), preferred=preferred))
    assert got == "ann.lee"


@pytest.mark.parametrize(
    ("first", "last"),
    [("王", "小明"), ("Wei", "王"), ("佐々木", "花子"), ("Ｗａｎｇ", "𠮷野")],
)
def test_han_names_go_to_the_fallback(first: str, last: str) -> None:
    got = list(candidates(person(first, last, anchor="CN-0042"), AddressesConfig(), max_n=3))
    assert got == ["user.cn-0042", "user.cn-0042-2", "user.cn-0042-3"]


def test_han_is_romanized_when_not_a_fallback_script() -> None:
    config = AddressesConfig(fallback_scripts=[])
    assert next(candidates(person("小明", "王"), config)) == "xiaoming.wang"


def test_fallback_scripts_are_configurable() -> None:
    config = AddressesConfig(fallback_scripts=["Hangul", "Arabic"])
    assert next(candidates(person("민준", "김", anchor="K1"), config)) == "user.k1"
    assert next(candidates(person("محمد", "علي", anchor="A1"), config)) == "user.a1"
    assert next(candidates(person("Ольга", "Ли", anchor="R1"), config)) == "olga.li"


@pytest.mark.parametrize(("first", "last"), [("😀", "🎉"), ("'", "-"), ("©", "Lee")])
def test_names_with_no_token_go_to_the_fallback(first: str, last: str) -> None:
    got = list(candidates(person(first, last, anchor="E9"), AddressesConfig(), max_n=2))
    assert got == ["user.e9", "user.e9-2"]


def test_fallback_with_its_own_n() -> None:
    config = AddressesConfig(fallback_template="{anchor}.{n}")
    got = list(candidates(person("王", "伟", anchor="E9"), config, max_n=3))
    assert got == ["e9", "e9.2", "e9.3"]


def test_max_n_below_two_expands_nothing() -> None:
    got = list(candidates(person("Ann", "Lee", anchor="E7"), AddressesConfig(), max_n=1))
    assert got == ["ann.lee", "user.e7"]


# ----------------------------------------------------------------------------------- choose


def test_choose_skips_taken_addresses() -> None:
    taken = {"ann.lee", "ann.lee2"}
    assert choose(candidates(person("Ann", "Lee"), AddressesConfig()), taken.__contains__) == (
        "ann.lee3"
    )


def test_choose_returns_none_when_all_are_taken() -> None:
    assert choose(["a", "b"], lambda _: True) is None
    assert choose([], lambda _: False) is None


def test_choose_stops_at_the_first_free_one() -> None:
    asked: list[str] = []

    def is_taken(value: str) -> bool:
        asked.append(value)
        return value == "ann.lee"

    assert choose(candidates(person("Ann", "Lee"), AddressesConfig()), is_taken) == "ann.lee2"
    assert asked == ["ann.lee", "ann.lee2"]


# ------------------------------------------------------------------------------ config rules


def test_config_rejects_unknown_fallback_script() -> None:
    with pytest.raises(ValueError, match="fallback_scripts"):
        AddressesConfig(fallback_scripts=["Hna"])


def test_default_config_is_valid() -> None:
    config = AddressesConfig()
    assert config.fallback_scripts == ["Han"]
    assert all(template_problem(t) is None for t in config.templates)


# ------------------------------------------------------------------------------- properties

TEMPLATE_SETS = [
    ["{first}.{last}", "{first}.{last}{n}"],
    ["{f}{last}", "{first}{l}", "{f}{last}{n}"],
    ["{last}", "{first}-{last}.{n}"],
    ["..{first}__{last}..{n}", "{anchor}.{first}"],
]
FALLBACKS = ["user.{anchor}", "{anchor}", "x.{anchor}{n}", "{anchor}.{n}"]
LOCALES = [None, "de", "fr", "da", "sv", "is", "xx"]


@settings(max_examples=300, deadline=None)
@given(
    first=st.text(max_size=80),
    last=st.text(max_size=80),
    anchor=st.text(min_size=1, max_size=90),
    templates=st.sampled_from(TEMPLATE_SETS),
    fallback=st.sampled_from(FALLBACKS),
    locale=st.sampled_from(LOCALES),
    scripts=st.sampled_from([[], ["Han"], ["Han", "Cyrillic", "Arabic"]]),
    preferred=st.none() | st.text(max_size=70),
    max_n=st.integers(min_value=0, max_value=12),
)
def test_every_candidate_is_valid_and_none_repeats(
    first: str,
    last: str,
    anchor: str,
    templates: list[str],
    fallback: str,
    locale: str | None,
    scripts: list[str],
    preferred: str | None,
    max_n: int,
) -> None:
    config = AddressesConfig.model_validate(
        {
            "templates": templates,
            "fallback_template": fallback,
            "locale": locale,
            "fallback_scripts": scripts,
        }
    )
    who = person(first, last, anchor)
    got = list(candidates(who, config, preferred=preferred, max_n=max_n))
    assert got, "the fallback on the anchor always gives at least one candidate"
    for value in got:
        assert is_valid_local_part(value), value
    assert len(got) == len(set(got))
    assert got == list(candidates(who, config, preferred=preferred, max_n=max_n))


# ----------------------------------------------------------------------- reference candidates

REFERENCE = json.loads(Path(address_reference.PATH).read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    "scenario", REFERENCE["scenarios"], ids=[s["name"] for s in REFERENCE["scenarios"]]
)
def test_candidates_are_those_of_the_reference(scenario: dict[str, Any]) -> None:
    """The fast paths (issue 5) give what the plain code gave, person by person.

    The expected values were computed by the address code before it was optimised; see
    ``tests/support/address_reference.py``. Bench names in several scripts, many clashes.
    """
    config = AddressesConfig.model_validate(scenario["config"])
    first_n = REFERENCE["first_n"]
    fresh = CandidateSource(config, max_n=scenario["max_n"])
    for anchor, first, last, email, _, expected in scenario["rows"]:
        who = person(first, last, anchor)
        assert list(islice(candidates(who, config, preferred=email), first_n)) == expected, who
        assert list(islice(fresh.for_person(who, email), first_n)) == expected, who
    who_got = [tuple(row[:4]) for row in scenario["rows"]]
    assert address_reference.compute(config, who_got) == [tuple(row) for row in scenario["rows"]]


# The fast paths against the plain code they stand in for, on inputs the reference does not reach.

# Pieces rather than characters, so that long names (the shortening rules) and dot runs come up.
TOKEN_TEXT = st.lists(
    st.sampled_from([*"anaLEE-'. .x9Øä王", "..", "-.-", "x" * 30]), max_size=8
).map("".join)


# Name tokens as name_token and anchor_token make them from such text.
TOKENS = st.builds(
    lambda first, last, anchor: Tokens(
        name_token(first, None), name_token(last, None), anchor_token(anchor)
    ),
    TOKEN_TEXT,
    TOKEN_TEXT,
    TOKEN_TEXT,
)


@settings(max_examples=400, deadline=None)
@given(
    tokens=TOKENS,
    template=st.sampled_from(
        [t for templates in TEMPLATE_SETS for t in templates]
        + FALLBACKS
        + ["{f}{l}", ".{last}.", "{first}..{last}_{n}", "{anchor}-{n}", "{l}{f}.{anchor}"]
    ),
    n=st.none() | st.integers(min_value=0, max_value=120),
)
def test_fill_gives_what_render_gives(tokens: Tokens, template: str, n: int | None) -> None:
    assert fill(compile_template(template), tokens, n) == _render(_parse(template), tokens, n)


@settings(max_examples=300, deadline=None)
@given(
    tokens=TOKENS,
    template=st.sampled_from(
        [t for templates in TEMPLATE_SETS for t in templates if "{n}" in t]
        + [
            ".{n}.{last}.",
            "{first}..{n}..{last}",
            "{n}{first}",
            "{anchor}-{n}",
            "{n}{n}.{l}",
            "{first}.{last}.{anchor}{n}",
        ]
    ),
    max_n=st.sampled_from([2, 3, 99, 1200]),
)
def test_numbered_candidates_are_the_template_filled_in_for_each_number(
    tokens: Tokens, template: str, max_n: int
) -> None:
    """The shortcut (the text around {n} filled in once) against filling in every number."""
    compiled = compile_template(template)
    expected = [fill(compiled, tokens, n) for n in range(2, max_n + 1)]
    assert list(_name_candidates(tokens, (compiled,), max_n)) == expected


@pytest.mark.parametrize("templates", [*TEMPLATE_SETS, ["{f}{l}", "{l}{f}", "{first}{n}"]])
@pytest.mark.parametrize("max_n", [0, 1, 2, 5])
def test_name_candidates_resume_where_asked(templates: list[str], max_n: int) -> None:
    compiled = tuple(compile_template(template) for template in templates)
    tokens = Tokens("ann", "lee", "e7")
    every = list(_name_candidates(tokens, compiled, max_n))
    for start in range(len(every) + 2):
        assert list(_name_candidates(tokens, compiled, max_n, start)) == every[start:]
    value, given = _first_name_candidate(tokens, compiled, max_n)
    usable = [v for v in every if v is not None]
    assert value == (usable[0] if usable else None)
    if value is not None:
        assert every[given - 1] == value and value not in every[: given - 1]
