"""Name tokens: a person's names as the plain ASCII words that address templates are made of.

A module of its own because turning a name into ASCII is a different job from choosing an address:
transliteration tables, locale conventions, Unicode scripts and which characters count as part of a
name change for reasons of their own (a new locale, a new script, a name that came out wrong), not
because of how templates are written or candidates ordered. ``syncd.addresses._templates`` fills the
templates with what this module gives (and ``syncd.addresses._candidates`` orders the candidates);
this module imports from neither.

Everything here is a pure function of its arguments: no I/O, no clock, no randomness, so the same
name and locale always give the same token (``syncd plan`` relies on it).

How a name becomes a *name token* (``name_token``), decided once for every template:

1. NFC-normalize, then drop what is not part of a name: symbols and emoji, controls, punctuation
   other than dashes and apostrophes. Letters, combining marks, digits, spaces, dashes and
   apostrophes stay.
2. Transliterate (``transliterate``): the locale's small table first (``de``: ä→ae ...), then a
   fixed Greek digraph step, then ``anyascii`` for every other script.
3. Lower-case. Spaces, apostrophes and dots are *removed* — "O'Brien" → ``obrien``,
   "van der Berg" → ``vanderberg``, "Mary Ann" → ``maryann``, "St. John" → ``stjohn`` — because the
   dot is the separator templates put *between* first and last name, and ``jan.van.der.berg``
   would hide where the last name starts. Dashes stay as one ``-``: "Müller-Lüdenscheidt" →
   ``mueller-luedenscheidt`` (de). Anything else that is not ``[a-z0-9]`` is dropped; runs of
   ``-`` collapse and leading/trailing ``-`` go. ``''`` when nothing usable remains.

Locale tables (``addresses.locale``; only the language part counts: ``de_AT`` and ``de-CH`` are
``de``). They follow the usual national convention for e-mail addresses:

- ``de``: ä→ae, ö→oe, ü→ue, ß→ss (the German passport and e-mail convention).
- ``fr``: accents dropped, ç→c, œ→oe, æ→ae. The same as the general step; written out so that the
  convention is visible and tested.
- ``da``, ``nb``, ``nn``, ``no``: æ→ae, ø→oe, å→aa (the official fallback spelling without the
  letters). Organisations that prefer ø→o, å→a get exactly that with no locale set.
- ``sv``, ``fi``: å→a, ä→a, ö→o — Swedish and Finnish addresses drop the dots and ring rather
  than spell them out ("Åsa Jääskeläinen" → ``asa.jaaskelainen``).
- ``is``: þ→th, ð→d, æ→ae, ö→o.
- Greek, whatever the locale: ου→ou, γγ→ng, αυ/ευ/ηυ→av/ev/iv (af/ef/if before a voiceless
  consonant or at the end of a word), as in ELOT 743; ``anyascii`` alone would write
  Παπαδόπουλος as "papadopoylos".

Scripts (``script_of``, ``has_script``; ``syncd.addresses._candidates`` sends names in a script of
``addresses.fallback_scripts`` to the fallback template): the script of a character is taken
from its Unicode name ("HIRAGANA LETTER A" is Hiragana; "CJK UNIFIED IDEOGRAPH-4E00" is Han),
since Python's ``unicodedata`` has no script property.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Mapping
from functools import lru_cache

from anyascii import anyascii

# ---------------------------------------------------------------------------- transliteration


def _with_capitals(table: Mapping[str, str]) -> dict[str, str]:
    """Add the capital form of every lower-case letter: ä→ae gives Ä→Ae."""
    full = dict(table)
    for small, latin in table.items():
        capital = small.upper()
        if len(capital) == 1 and capital != small:
            full.setdefault(capital, latin.capitalize())
    return full


_GERMAN = _with_capitals({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss"}) | {"ẞ": "SS"}
_FRENCH = _with_capitals(
    {
        **dict.fromkeys("àâä", "a"),
        **dict.fromkeys("éèêë", "e"),
        **dict.fromkeys("îï", "i"),
        **dict.fromkeys("ôö", "o"),
        **dict.fromkeys("ùûü", "u"),
        "ÿ": "y",
        "ç": "c",
        "œ": "oe",
        "æ": "ae",
    }
)
_DANISH_NORWEGIAN = _with_capitals({"æ": "ae", "ø": "oe", "å": "aa"})
_SWEDISH_FINNISH = _with_capitals({"å": "a", "ä": "a", "ö": "o"})
_ICELANDIC = _with_capitals({"þ": "th", "ð": "d", "æ": "ae", "ö": "o"})

_LOCALE_TABLES: dict[str, dict[str, str]] = {
    "de": _GERMAN,
    "fr": _FRENCH,
    "da": _DANISH_NORWEGIAN,
    "nb": _DANISH_NORWEGIAN,
    "nn": _DANISH_NORWEGIAN,
    "no": _DANISH_NORWEGIAN,
    "sv": _SWEDISH_FINNISH,
    "fi": _SWEDISH_FINNISH,
    "is": _ICELANDIC,
}
# The same tables for str.translate (one C loop instead of a Python one per character); every
# key is a single character, so the result is the same as looking each character up.
_LOCALE_TRANSLATIONS = {
    language: str.maketrans(table) for language, table in _LOCALE_TABLES.items()
}


@lru_cache(maxsize=64)
def _language(locale: str | None) -> str | None:
    """``"de_AT.UTF-8"`` → ``"de"``; ``None`` or blank → ``None``."""
    if not locale:
        return None
    return re.split(r"[-_.@]", locale.strip().lower(), maxsplit=1)[0] or None


# ELOT 743: αυ, ευ, ηυ are v before a vowel or voiced consonant, f before a voiceless consonant
# or at the end of the word; ου is ou. The accent of a diphthong sits on its second letter.
_GREEK_U_DIPHTHONG = re.compile("([αΑεΕηΗοΟ])([υΥύΎ])(?=(.?))", re.DOTALL)
_GREEK_VOICELESS = set("θκξπστφχψςΘΚΞΠΣΤΦΧΨ")
_GREEK_VOWELS = {"α": "a", "ε": "e", "η": "i", "ο": "o"}


def _greek_diphthong(match: re.Match[str]) -> str:
    first, second, following = match.group(1), match.group(2), match.group(3)
    vowel = _GREEK_VOWELS[first.lower()]
    if vowel == "o":
        latin = "ou"
    else:
        is_greek_letter = following != "" and "GREEK" in unicodedata.name(following, "")
        voiceless = not is_greek_letter or following in _GREEK_VOICELESS
        latin = vowel + ("f" if voiceless else "v")
    if first.isupper() and second.isupper():
        return latin.upper()
    return latin.capitalize() if first.isupper() else latin


_GREEK_AND_COPTIC = re.compile("[\u0370-\u03ff]")


def _greek_digraphs(text: str) -> str:
    if _GREEK_AND_COPTIC.search(text) is None:
        return text
    # Diphthongs first: whether αυ is "av" or "af" depends on the Greek letter after it.
    text = _GREEK_U_DIPHTHONG.sub(_greek_diphthong, text)
    return text.replace("γγ", "ng").replace("Γγ", "Ng").replace("ΓΓ", "NG")


def transliterate(text: str, locale: str | None) -> str:
    """ASCII form of ``text``: the locale's table first, then Greek digraphs, then anyascii.

    Case and punctuation are kept (``name_token`` deals with them). Deterministic and idempotent:
    the result is ASCII, which every step leaves unchanged.
    """
    text = unicodedata.normalize("NFC", text)
    if text.isascii():
        return text
    table = _LOCALE_TRANSLATIONS.get(_language(locale) or "")
    if table:
        text = text.translate(table)
    return anyascii(_greek_digraphs(text))


# ------------------------------------------------------------------------------------- scripts

# Han characters whose Unicode name does not start with "CJK ... IDEOGRAPH" (々 is common in
# Japanese names: 佐々木).
_HAN_NAME_PREFIXES = (
    "CJK UNIFIED IDEOGRAPH",
    "CJK COMPATIBILITY IDEOGRAPH",
    "IDEOGRAPHIC ",
    "VERTICAL IDEOGRAPHIC ",
)


@lru_cache(maxsize=16384)
def script_of(char: str) -> str | None:
    """The script of a letter, from its Unicode name ("Han", "Hiragana", "Cyrillic", ...).

    ``None`` for characters that are not letters, combining marks or letter-like numbers.
    """
    code = ord(char)
    # Planes 2 and 3 hold only Han; checked by number so that ideographs newer than this
    # Python's Unicode database (which has no names for them) still count as Han.
    if 0x20000 <= code <= 0x3FFFF:
        return "Han"
    if not unicodedata.category(char).startswith(("L", "M", "Nl")):
        return None
    name = unicodedata.name(char, "").removeprefix("HALFWIDTH ").removeprefix("FULLWIDTH ")
    if name.startswith(_HAN_NAME_PREFIXES):
        return "Han"
    word = name.split(" ", 1)[0]
    return word.capitalize() or None


def has_script(text: str, scripts: Iterable[str]) -> bool:
    """True when ``text`` has at least one letter of one of ``scripts`` (e.g. ``["Han"]``)."""
    if text.isascii():
        return False
    wanted = {script.capitalize() for script in scripts}
    return bool(wanted) and any(script_of(char) in wanted for char in text if not char.isascii())


# -------------------------------------------------------------------------------------- tokens

_APOSTROPHES = frozenset("'`´ʹʻʼʽˈ‘’‛′")


def _is_name_character(char: str) -> bool:
    """Letters, marks, digits, spaces, dashes and apostrophes; not emoji or other symbols.

    Filtering before anyascii matters: it spells emoji as ":grinning:" and © as "(C)".
    """
    if char.isascii():
        return char.isalnum() or char in " -'."
    category = unicodedata.category(char)
    return (
        category[0] in "LM"
        or category in ("Nd", "Nl", "Zs", "Pd")
        or char in _APOSTROPHES
        or char == "\u200d"  # a zero-width joiner can sit inside a name (Indic scripts)
    )


_NOT_TOKEN = re.compile(r"[^a-z0-9-]+")
_DASHES = re.compile(r"-{2,}")


def _plain_name_pattern() -> re.Pattern[str]:
    """Names made only of characters ``_is_name_character`` keeps, from the common blocks.

    Built from ``_is_name_character`` itself (Latin, Greek, Cyrillic and the Latin used for
    Vietnamese), so a name it matches keeps every character: one regex match instead of a
    Python call per character. Other names take the per-character filter.
    """
    blocks = (range(0x0000, 0x0530), range(0x1E00, 0x2000))
    kept = [code for block in blocks for code in block if _is_name_character(chr(code))]
    ranges: list[tuple[int, int]] = []
    for code in kept:
        if ranges and ranges[-1][1] == code - 1:
            ranges[-1] = (ranges[-1][0], code)
        else:
            ranges.append((code, code))
    members = "".join(
        re.escape(chr(low)) + ("-" + re.escape(chr(high)) if high > low else "")
        for low, high in ranges
    )
    return re.compile(f"[{members}]*")


_PLAIN_NAME = _plain_name_pattern()


# Cached: a pure function, and first and last names repeat a lot across a population, so a
# first provisioning of 100k people transliterates each distinct name once.
@lru_cache(maxsize=65536)
def name_token(text: str, locale: str | None) -> str:
    """A name as ``[a-z0-9-]``: transliterated, lower case, spaces/apostrophes/dots removed.

    ``"O'Brien"`` → ``"obrien"``, ``"van der Berg"`` → ``"vanderberg"``, ``"Jean-Luc"`` →
    ``"jean-luc"``; ``""`` when nothing usable remains. See the module docstring for why.
    """
    if text.isascii():
        # The same result as below: for ASCII, NFC and transliteration change nothing, and the
        # characters the filter drops are exactly those _NOT_TOKEN drops too.
        return _DASHES.sub("-", _NOT_TOKEN.sub("", text.lower())).strip("-")
    text = unicodedata.normalize("NFC", text)
    if _PLAIN_NAME.fullmatch(text) is None:
        text = "".join(char for char in text if _is_name_character(char))
    latin = transliterate(text, locale).lower()
    token = _DASHES.sub("-", _NOT_TOKEN.sub("", latin))
    return token.strip("-")


NOT_ANCHOR = re.compile(r"[^a-z0-9._-]+")
DOTS = re.compile(r"\.{2,}")


def anchor_token(anchor: str) -> str:
    """The anchor as it appears in ``{anchor}``: lower case ``[a-z0-9._-]``, never empty.

    An anchor with nothing usable in it (say ``"+/="``) is replaced by a short hash of itself, so
    the fallback template still gives every person an address of their own.
    """
    latin = transliterate(anchor, None).lower()
    token = DOTS.sub(".", NOT_ANCHOR.sub("", latin)).strip(".-")
    if token:
        return token
    return "id" + hashlib.blake2b(anchor.encode("utf-8"), digest_size=5).hexdigest()
