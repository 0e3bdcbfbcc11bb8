"""Name tokens: transliteration, Unicode scripts and the characters that count in a name."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.addresses._names import (
    _LOCALE_TABLES,
    _LOCALE_TRANSLATIONS,
    _PLAIN_NAME,
    _is_name_character,
    anchor_token,
    name_token,
    script_of,
    transliterate,
)

# -------------------------------------------------------------------------- transliteration


def test_decomposed_input_is_normalized_before_the_table() -> None:
    decomposed = "Mu\u0308ller"  # u + combining diaeresis, as some HR exports write it
    assert transliterate(decomposed, "de") == "Mueller"


def test_nordic_letters_without_locale_use_the_plain_forms() -> None:
    assert transliterate("Søren Ærø Åse", None) == "Soren Aero Ase"


def test_transliterate_is_ascii_and_idempotent() -> None:
    once = transliterate("Ærø Þór Παπαδόπουλος Щука 王", "da")
    assert once.isascii()
    assert transliterate(once, "da") == once


# -------------------------------------------------------------------------------- name tokens


@pytest.mark.parametrize(
    ("name", "token"),
    [
        ("O'Brien", "obrien"),
        ("D’Angelo", "dangelo"),  # typographic apostrophe
        ("van der Berg", "vanderberg"),
        ("Mary Ann", "maryann"),
        ("St. John", "stjohn"),
        ("Jean-Luc", "jean-luc"),
        ("Jean -- Luc", "jean-luc"),
        ("Smith–Jones", "smith-jones"),  # en dash
        ("-Anne-", "anne"),
        ("  José  María ", "josemaria"),
        ("John 😀", "john"),  # anyascii would spell the emoji ":grinning:"
        ("Ann ©", "ann"),
        ("Louis 14", "louis14"),
        ("😀", ""),
        ("'", ""),
        ("---", ""),
        ("", ""),
    ],
)
def test_name_token(name: str, token: str) -> None:
    assert name_token(name, None) == token


def test_name_token_uses_the_locale() -> None:
    assert name_token("Groß-Schäfer", "de") == "gross-schaefer"


def test_anchor_token() -> None:
    assert anchor_token("E-1234") == "e-1234"
    assert anchor_token("5F3A9C1E-0B7D-4C2A-9E61-2D4F8A0B6C13") == (
        "5f3a9c1e-0b7d-4c2a-9e61-2d4f8a0b6c13"
    )
    assert anchor_token("..a..b..") == "a.b"
    # Nothing usable: a stable short hash instead, never empty.
    assert anchor_token("+/=") == anchor_token("+/=")
    assert anchor_token("+/=").startswith("id")
    assert anchor_token("+/=") != anchor_token("==")


# ---------------------------------------------------------------------------------- scripts


def test_script_of() -> None:
    assert script_of("王") == "Han"
    assert script_of("々") == "Han"
    assert script_of("\U0002000b") == "Han"
    assert script_of("さ") == "Hiragana"
    assert script_of("ｻ") == "Katakana"  # halfwidth
    assert script_of("Ж") == "Cyrillic"
    assert script_of("a") == "Latin"
    assert script_of("1") is None
    assert script_of("😀") is None


# ------------------------------------------------------------------------------- properties

LOCALES = [None, "de", "fr", "da", "sv", "is", "xx"]


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=60), locale=st.sampled_from(LOCALES))
def test_tokens_are_deterministic_and_idempotent(text: str, locale: str | None) -> None:
    latin = transliterate(text, locale)
    assert latin.isascii()
    assert transliterate(latin, locale) == latin
    token = name_token(text, locale)
    assert token == "" or (set(token) <= set("abcdefghijklmnopqrstuvwxyz0123456789-"))
    assert not token.startswith("-") and not token.endswith("-") and "--" not in token
    assert name_token(token, locale) == token


# ------------------------------------------------------------------------------- fast paths

# The fast paths against the plain code they stand in for (the one-regex filter, str.translate).


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=0x2100), max_size=20))
def test_plain_name_pattern_only_matches_names_the_filter_keeps_whole(text: str) -> None:
    if _PLAIN_NAME.fullmatch(text) is not None:
        assert all(_is_name_character(char) for char in text)


def test_plain_name_pattern_covers_the_usual_letters() -> None:
    assert _PLAIN_NAME.fullmatch("Müller-Lüdenscheidt O'Brien Jr. Nguyễn Παπαδόπουλος Ольга")
    assert not _PLAIN_NAME.fullmatch("Ann 😀")
    assert not _PLAIN_NAME.fullmatch("Ann\u00a9")  # ©: a symbol, dropped by the filter


@pytest.mark.parametrize("language", sorted(_LOCALE_TABLES))
def test_locale_translations_are_the_tables(language: str) -> None:
    table = _LOCALE_TABLES[language]
    text = "".join(table) + " Ann Œ Ÿ ÿ"
    assert text.translate(_LOCALE_TRANSLATIONS[language]) == "".join(
        table.get(char, char) for char in text
    )
