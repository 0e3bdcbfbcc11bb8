"""Address templates: what they may contain, and filling one in with a person's name tokens.

A template such as ``{first}.{last}{n}`` is checked when the config is loaded (``template_problem``,
used by the config schema), compiled once, and then filled in with the name tokens of
``syncd.addresses._names`` for every candidate of a cycle (``render``; ``fill`` is the fast path,
and ``around_number`` fills a numbered template once for all its numbers). What makes a valid local
part (``is_valid_local_part``) lives here too, since every filled-in template must be one. Kept
apart from ``syncd.addresses._candidates``, which decides which candidates to try and in what order:
the template syntax and the rules for fitting a result into 64 characters change for reasons of
their own.

Everything here is a pure function of its arguments: no I/O, no clock, no randomness.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, NamedTuple

from syncd.addresses._names import DOTS, NOT_ANCHOR, anchor_token, name_token
from syncd.errors import ConfigError

if TYPE_CHECKING:
    from syncd.model import Person

LOCAL_PART_MAX = 64

# The emulator's rule (and a safe subset of RFC 5321's dot-atom): [a-z0-9._-], 1..64 characters,
# no leading, trailing or doubled dot.
_VALID_LOCAL_PART = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")


def is_valid_local_part(value: str) -> bool:
    """True when ``value`` is a local part Hybridbox (as we understand it) accepts."""
    return 1 <= len(value) <= LOCAL_PART_MAX and _VALID_LOCAL_PART.fullmatch(value) is not None


# ------------------------------------------------------------------------------------ templates

NAME_PLACEHOLDERS = frozenset({"first", "last", "f", "l"})
PLACEHOLDERS = NAME_PLACEHOLDERS | {"anchor", "n"}
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_TEMPLATE_LITERAL = re.compile(r"[a-z0-9._-]*")


def _syntax_problem(template: str) -> str | None:
    """Unmatched braces, stray characters, unknown placeholders: a template render() cannot use."""
    for literal in _PLACEHOLDER.split(template)[::2]:
        if "{" in literal or "}" in literal:
            return f"template {template!r} has an unmatched brace"
        if not _TEMPLATE_LITERAL.fullmatch(literal):
            return (
                f"template {template!r} has characters outside a-z 0-9 . _ - in {literal!r}; "
                "write placeholders as {first} {last} {f} {l} {anchor} {n}"
            )
    unknown = [name for name in _PLACEHOLDER.findall(template) if name not in PLACEHOLDERS]
    if unknown:
        return (
            f"template {template!r} has unknown placeholder {{{unknown[0]}}}; "
            "use {first} {last} {f} {l} {anchor} {n}"
        )
    return None


def template_problem(template: str, *, fallback: bool = False) -> str | None:
    """What is wrong with an address template, in words for the admin; ``None`` when fine.

    Used by the config schema, so that a typo is reported when the config is loaded, not in the
    middle of a cycle. A fallback template must use ``{anchor}`` and no name, since it is for the
    people whose names gave nothing; any other template must use at least one name or the anchor.
    """
    problem = _syntax_problem(template)
    if problem is not None:
        return problem
    names = set(_PLACEHOLDER.findall(template))
    if fallback:
        if "anchor" not in names or names & NAME_PLACEHOLDERS:
            return (
                f"fallback template {template!r} must use {{anchor}} and no name placeholder: "
                "it is for people whose names give no address"
            )
    elif not names - {"n"}:
        return f"template {template!r} uses no name or {{anchor}}: everyone would get the same one"
    return None


@dataclass(frozen=True, slots=True)
class _Segment:
    text: str  # the literal text, or the placeholder's name
    is_placeholder: bool


@lru_cache(maxsize=256)
def _parse(template: str) -> tuple[_Segment, ...]:
    # Only the syntax is enforced here; the config schema checks the rest when it is loaded.
    problem = _syntax_problem(template)
    if problem is not None:
        raise ConfigError(f"at 'addresses': {problem}")
    segments = []
    for index, part in enumerate(_PLACEHOLDER.split(template)):
        if part or index % 2:
            segments.append(_Segment(part, is_placeholder=bool(index % 2)))
    return tuple(segments)


class Tokens(NamedTuple):
    """A person's tokens, computed once per person rather than once per candidate.

    A named tuple rather than a frozen dataclass: a cycle makes one per distinct name, and a
    tuple is made in a third of the time.
    """

    first: str
    last: str
    anchor: str

    @classmethod
    def of(cls, person: Person, locale: str | None) -> Tokens:
        return cls(
            first=name_token(person.first_name, locale),
            last=name_token(person.last_name, locale),
            anchor=anchor_token(person.anchor),
        )


def _clean(raw: str) -> str:
    """Lower case, only ``[a-z0-9._-]``, dots collapsed and stripped from both ends."""
    return DOTS.sub(".", NOT_ANCHOR.sub("", raw.lower())).strip(".")


# Tokens that may be shortened to fit 64 characters, in the order ties are broken.
_SHORTENABLE = ("first", "last", "anchor")


def _render(segments: tuple[_Segment, ...], tokens: Tokens, n: int | None) -> str | None:
    values = {
        "first": tokens.first[:LOCAL_PART_MAX],
        "last": tokens.last[:LOCAL_PART_MAX],
        "anchor": tokens.anchor[:LOCAL_PART_MAX],
        "f": tokens.first[:1],
        "l": tokens.last[:1],
        "n": "" if n is None else str(n),
    }
    used = {segment.text for segment in segments if segment.is_placeholder}
    if any(not values[name] for name in used - {"n"}):
        return None  # a name this template needs has no usable Latin form

    def assemble() -> str:
        return _clean("".join(values[s.text] if s.is_placeholder else s.text for s in segments))

    result = assemble()
    # Too long: shorten the longest name (one character at a time, so the names end up about
    # equally long) rather than cutting the end, which would cut {n} off and make every
    # numbered candidate the same.
    shortenable = [name for name in _SHORTENABLE if name in used]
    while len(result) > LOCAL_PART_MAX and shortenable:
        longest = max(shortenable, key=lambda name: len(values[name]))
        if len(values[longest]) <= 1:
            break
        values[longest] = values[longest][:-1].rstrip(".-")
        result = assemble()
    result = result[:LOCAL_PART_MAX].rstrip(".")
    return result if is_valid_local_part(result) else None


@dataclass(frozen=True, slots=True)
class Template:
    """A checked template, prepared for filling in many times (every candidate of a cycle)."""

    segments: tuple[_Segment, ...]
    # The template for str.format with positional fields (see _FIELD_INDEX): its literal text
    # ([a-z0-9._-], checked by _parse) has no braces, and positional fields are filled faster
    # than named ones.
    pattern: str
    uses_first: bool  # {first} or {f}
    uses_last: bool  # {last} or {l}
    uses_anchor: bool
    has_n: bool


# The position of each placeholder's value in fill's call to str.format.
_FIELD_INDEX = {"first": 0, "last": 1, "f": 2, "l": 3, "anchor": 4, "n": 5}
# How ``{n}`` appears in a compiled pattern.
_N_FIELD = f"{{{_FIELD_INDEX['n']}}}"


@lru_cache(maxsize=256)
def compile_template(template: str) -> Template:
    segments = _parse(template)
    used = {segment.text for segment in segments if segment.is_placeholder}
    return Template(
        segments=segments,
        pattern="".join(
            f"{{{_FIELD_INDEX[s.text]}}}" if s.is_placeholder else s.text for s in segments
        ),
        uses_first=bool(used & {"first", "f"}),
        uses_last=bool(used & {"last", "l"}),
        uses_anchor="anchor" in used,
        has_n="n" in used,
    )


def _lacks_token(template: Template, tokens: Tokens) -> bool:
    """Whether a name this template needs has no usable Latin form (nothing to fill in)."""
    return (
        (template.uses_first and not tokens.first)
        or (template.uses_last and not tokens.last)
        or (template.uses_anchor and not tokens.anchor)
    )


def fill(template: Template, tokens: Tokens, n: int | None) -> str | None:
    """``_render`` of the template, in a few C calls when the result fits (nearly always).

    The same result as ``_render``: tokens are ``[a-z0-9-]`` (the anchor ``[a-z0-9._-]`` with no
    leading, trailing or doubled dot) and literals ``[a-z0-9._-]``, so of ``_clean`` only the dot
    rules can change anything; a result within 64 characters then is a valid local part, and
    needed no token cut to 64 (a longer token has no dots to lose and would not fit). Longer
    results take ``_render``'s shortening rules.
    """
    if _lacks_token(template, tokens):
        return None  # a name this template needs has no usable Latin form
    first, last = tokens.first, tokens.last
    text = template.pattern.format(
        first, last, first[:1], last[:1], tokens.anchor, "" if n is None else n
    )
    if ".." in text:
        text = DOTS.sub(".", text)
    text = text.strip(".")
    if len(text) <= LOCAL_PART_MAX:
        return text or None
    return _render(template.segments, tokens, n)


# Stands in for the number while the rest of a numbered template is filled in: not a dot, like
# the digits it stands for, and no token or literal has it.
_NUMBER_MARK = "\x00"


def around_number(template: Template, tokens: Tokens) -> tuple[str, str, int]:
    """The text before and after the ``{n}`` of a numbered template, filled in once, and the
    numbers below which ``fill(template, tokens, n)`` is just ``before + str(n) + after`` (those
    that fit in 64 characters; 0 when the template cannot be filled in or has ``{n}`` twice).

    Everything around ``{n}`` is the same for every number, and a number (digits) changes none
    of ``fill``'s dot rules around it: a clashing name's tens of candidates cost a string each
    instead of a template fill each (the new hires of a large company, issue 5).
    """
    if _lacks_token(template, tokens) or template.pattern.count(_N_FIELD) != 1:
        return "", "", 0
    first, last = tokens.first, tokens.last
    text = template.pattern.format(first, last, first[:1], last[:1], tokens.anchor, _NUMBER_MARK)
    before, after = DOTS.sub(".", text).strip(".").split(_NUMBER_MARK)
    room = LOCAL_PART_MAX - len(before) - len(after)
    # Numbers have at most 19 digits here (an int below 10**19 stays small in memory).
    return before, after, 10 ** min(max(room, 0), 19)


def render(template: str, person: Person, locale: str | None, n: int | None = None) -> str | None:
    """One template filled in for one person: a valid local part, or ``None``.

    Placeholders: ``{first}`` ``{last}`` (name tokens), ``{f}`` ``{l}`` (their first letters),
    ``{anchor}`` (see ``anchor_token``) and ``{n}`` (the number; nothing when ``n`` is None).
    ``None`` when a name the template uses has no usable form. Over-long results are fitted into 64
    characters by shortening the longest names, never by cutting off ``{n}``.
    Raises ConfigError for a template with an unknown placeholder or stray characters.
    """
    if n is not None and n < 0:
        raise ValueError(f"n must not be negative, got {n}")
    return fill(compile_template(template), Tokens.of(person, locale), n)
