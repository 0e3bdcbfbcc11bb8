"""Choosing mailbox local parts (the part before the ``@``) from people's names.

Everything here is a pure function of its arguments: no I/O, no clock, no randomness, so the same
person and config always give the same candidates in the same order (``syncd plan`` relies on it).

A person's names are first turned into *name tokens* (``name_token``) by ``syncd.addresses._names``,
whose docstring says how and why (transliteration, locale tables, which characters count);
``syncd.addresses._templates`` checks the address templates and fills them in with those tokens;
this module orders the candidates.

Names containing a letter of a script listed in ``addresses.fallback_scripts`` (default: Han,
whose reading — Mandarin pinyin, Japanese, Cantonese, Korean — cannot be known from the
characters) skip the name templates and go straight to ``addresses.fallback_template``; so do
names whose token comes out empty. How the script of a character is found: see
``syncd.addresses._names.script_of``.

No candidate is ever a reserved local part (``syncd.addresses._reserved``: the role addresses
such as ``postmaster`` or ``admin``, and ``addresses.reserved``): the desired address, every
template and the fallback are checked alike, and a reserved one is left out as if taken.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Iterator
from typing import TYPE_CHECKING

from syncd.addresses._names import anchor_token, has_script, name_token
from syncd.addresses._reserved import reserved_local_parts
from syncd.addresses._templates import (
    Template,
    Tokens,
    around_number,
    compile_template,
    fill,
    is_valid_local_part,
)

if TYPE_CHECKING:
    from syncd.config import AddressesConfig
    from syncd.model import Person

# The highest number a template's {n} (and the fallback's) is tried with: anna.meier2 ..
# anna.meier99. Two digits keep an address readable; past them the fallback template, built from
# the anchor, takes over.
MAX_N = 99


def needs_fallback(person: Person, fallback_scripts: Iterable[str]) -> bool:
    """True when the person's names are (partly) written in a script sent to the fallback."""
    scripts = list(fallback_scripts)
    return has_script(person.first_name, scripts) or has_script(person.last_name, scripts)


def candidates(
    person: Person,
    config: AddressesConfig,
    *,
    preferred: str | None = None,
    max_n: int = MAX_N,
) -> Iterator[str]:
    """Valid local parts to try for ``person``, best first, none repeated.

    1. ``preferred`` (e.g. the local part of the source's ``mail``), lower-cased, if valid;
    2. each of ``config.templates`` in order, a template with ``{n}`` for n = 2..max_n — unless the
       names are in a fallback script (``config.fallback_scripts``), or give no token;
    3. ``config.fallback_template``, then the same with n = 2..max_n (appended as ``-{n}`` when the
       fallback has no ``{n}`` of its own, so ``user.1234`` is followed by ``user.1234-2``).

    None of them is a reserved local part (a role address, or one of ``config.reserved``).
    """
    seen: set[str] = set(reserved_local_parts(config.reserved))
    for value in _raw_candidates(person, config, preferred, max_n):
        if value is not None and value not in seen:
            seen.add(value)
            yield value


def _raw_candidates(
    person: Person, config: AddressesConfig, preferred: str | None, max_n: int
) -> Iterator[str | None]:
    """candidates() before de-duplication; ``None`` where a template gave nothing usable."""
    if preferred is not None:
        yield _preferred(preferred)
    tokens = Tokens.of(person, config.locale)
    if not needs_fallback(person, config.fallback_scripts):
        templates = tuple(compile_template(template) for template in config.templates)
        yield from _name_candidates(tokens, templates, max_n)
    yield from _fallback_candidates(tokens, config.fallback_template, max_n)


def _preferred(preferred: str) -> str | None:
    wanted = preferred.strip().lower()
    return wanted if is_valid_local_part(wanted) else None


def _name_candidates(
    tokens: Tokens, templates: tuple[Template, ...], max_n: int, start: int = 0
) -> Iterator[str | None]:
    """Every name template in order, a template with ``{n}`` for n = 2..max_n.

    ``start``: how many of them to leave out (see ``_first_name_candidate``). One generator,
    no nested ones: a 100k-1M cycle keeps up to ``_SHARED_CACHE_MAX`` of these suspended, and a
    nested generator doubled their memory (+18 MB at 1M).
    """
    numbers = range(2, max_n + 1)
    for template in templates:
        each_n = numbers if template.has_n else (None,)
        if start >= len(each_n):
            start -= len(each_n)
            continue
        if not template.has_n:
            yield fill(template, tokens, None)
        else:
            before, after, fits_below = around_number(template, tokens)
            for n in numbers[start:]:
                yield f"{before}{n}{after}" if n < fits_below else fill(template, tokens, n)
        start = 0


def _first_name_candidate(
    tokens: Tokens, templates: tuple[Template, ...], max_n: int
) -> tuple[str | None, int]:
    """The first of ``_name_candidates`` that is not None, and how many (None included) it
    gives up to and including that one: where to resume for the second.

    No generator for the one candidate most names ever need.
    """
    given = 0
    for template in templates:
        for n in range(2, max_n + 1) if template.has_n else (None,):
            given += 1
            value = fill(template, tokens, n)
            if value is not None:
                return value, given
    return None, given


def _fallback_candidates(tokens: Tokens, fallback: str, max_n: int) -> Iterator[str | None]:
    yield fill(compile_template(fallback), tokens, None)
    numbered = compile_template(fallback if "{n}" in fallback else fallback + "-{n}")
    for n in range(2, max_n + 1):
        yield fill(numbered, tokens, n)


class _SharedCandidates:
    """The name-template candidates of everyone whose tokens are the same, built lazily once.

    Most names need only their first candidate, so the renderer (a suspended generator, a few
    hundred bytes) is only made for names that need more: a 100k cycle has tens of thousands
    of distinct names. ``skip`` counts the leading candidates known to be taken for the rest of
    the cycle, so the hundredth Anna Müller does not walk past the 99 addresses before hers.
    """

    __slots__ = ("_resume", "_source", "_tokens", "complete", "skip", "values")

    def __init__(self, tokens: Tokens) -> None:
        self._tokens = tokens
        self._source: Iterator[str | None] | None = None
        self._resume = 0  # where in _name_candidates the renderer starts, when it is made
        self.values: list[str] = []
        self.complete = False
        self.skip = 0

    def extend(self, templates: tuple[Template, ...], max_n: int) -> bool:
        """Add the next distinct candidate; False when there is none."""
        if self.complete:
            return False
        values = self.values
        if not values:
            first, self._resume = _first_name_candidate(self._tokens, templates, max_n)
            if first is None:
                self.complete = True
                return False
            values.append(first)
            return True
        if self._source is None:
            # Rendering is deterministic: a renderer just past the first candidate.
            self._source = _name_candidates(self._tokens, templates, max_n, self._resume)
        for value in self._source:
            if value is not None and value not in values:
                values.append(value)
                return True
        self.complete = True
        self._source = None
        return False


# Distinct names a CandidateSource remembers the token of: a bound on its memory that the first
# and last names of a large company stay well within (it starts over when full).
_NAME_CACHE_MAX = 65536
# Name pairs whose rendered candidates are shared (~300 bytes for a name used once, more with
# each clash): 100k people have ~30k pairs, all kept (a pair forgotten and met again costs its
# rendering once more: at 8192, half of a 100k first provisioning's allocation time); a 1M
# cycle has ~250k pairs, and the common ones, where clashes happen, come back soon after a
# start-over. With 65536 (and 200k local parts in allocate.KNOWN_TAKEN_MAX) a 1M first
# provisioning took 205 s at 197 MB peak, against 221 s at 144 MB as it is.
_SHARED_CACHE_MAX = 32768


class CandidateSource:
    """``candidates()`` for the many people of one cycle, with the name work shared.

    Gives exactly the sequence ``candidates(person, config, preferred=...)`` gives, but people
    whose names give the same tokens (the many Anna Müllers of a large company) share one lazily
    built list of rendered name-template candidates, and each distinct name is transliterated and
    checked for fallback scripts once. Both caches are bounded (``_NAME_CACHE_MAX``,
    ``_SHARED_CACHE_MAX`` entries): the name cache starts over when full, the shared one keeps
    only the names with clashes (a name forgotten then costs its work once more, nothing else),
    so the memory stays bounded however large the population. Make one per cycle.

    ``on_reserved(person, local_part)`` is told each reserved local part left out (for the
    caller's log line): a desired one for every person who asks for it, a name candidate for
    the first person whose name gives it while the name's candidates are remembered.
    """

    def __init__(
        self,
        config: AddressesConfig,
        max_n: int = MAX_N,
        on_reserved: Callable[[Person, str], None] | None = None,
    ) -> None:
        self.config = config
        self.max_n = max_n
        self.reserved = reserved_local_parts(config.reserved)
        self._on_reserved = on_reserved
        self._templates = tuple(compile_template(template) for template in config.templates)
        self._uses_anchor = any(template.uses_anchor for template in self._templates)
        self._fallback_scripts = list(config.fallback_scripts)
        self._shared: dict[tuple[str, ...], _SharedCandidates] = {}
        # name -> (its token, whether it has a letter of a fallback script)
        self._names: dict[str, tuple[str, bool]] = {}

    def _forget_names(self) -> None:
        """Make room (1M people have ~1M name pairs): keep the names with clashes, whose
        ``skip`` saves a walk past every earlier holder, and drop the rest; all of them if
        even those fill half the room."""
        clashing = {key: shared for key, shared in self._shared.items() if shared.skip}
        self._shared = clashing if len(clashing) <= _SHARED_CACHE_MAX // 2 else {}

    def _learn(self, name: str) -> tuple[str, bool]:
        """The token and fallback flag of a name not seen yet (see ``for_person``)."""
        if len(self._names) >= _NAME_CACHE_MAX:
            self._names.clear()
        known = (name_token(name, self.config.locale), has_script(name, self._fallback_scripts))
        self._names[name] = known
        return known

    def for_person(
        self, person: Person, preferred: str | None = None, taken: Container[str] = ()
    ) -> Iterator[str]:
        """The person's candidates, as ``candidates()`` gives them.

        ``taken``: local parts known to stay taken for as long as this source is used (a cache:
        it may grow, or be emptied, but what was in it stays taken). Name candidates in it are
        not given, and leading ones are skipped for everyone with the same name from then on;
        the preferred and fallback candidates are given regardless (callers check every
        candidate anyway). Reserved local parts are never given (see ``on_reserved``).
        """
        reserved = self.reserved
        first = _preferred(preferred) if preferred is not None else None
        if first is not None and first in reserved:
            self._left_out(person, first)
            first = None
        if first is not None:
            yield first
        # The common case (names seen before, first candidate free) is a few dict look-ups and
        # one membership test: no transliteration, no script check, no rendering.
        names = self._names
        first_token, first_fallback = names.get(person.first_name) or self._learn(person.first_name)
        last_token, last_fallback = names.get(person.last_name) or self._learn(person.last_name)
        # The anchor is only needed by a template that uses it, or by the (rare) fallback.
        anchor: str | None = None
        shared: _SharedCandidates | None = None
        if not (first_fallback or last_fallback):
            key: tuple[str, ...]
            if self._uses_anchor:
                anchor = anchor_token(person.anchor)
                key = (first_token, last_token, anchor)
            else:
                key = (first_token, last_token)
            shared = self._shared.get(key)
            if shared is None:
                if len(self._shared) >= _SHARED_CACHE_MAX:
                    self._forget_names()
                # Without {anchor} in the templates, its token is never read for these.
                shared = _SharedCandidates(Tokens(first_token, last_token, anchor or ""))
                self._shared[key] = shared
            values = shared.values
            index = shared.skip
            while index < len(values) or shared.extend(self._templates, self.max_n):
                value = values[index]
                index += 1
                # A reserved one stays out for everyone, like one that stays taken.
                if value in taken or value in reserved:
                    if index == shared.skip + 1:
                        shared.skip = index
                    if value in reserved:
                        self._left_out(person, value)
                    continue
                if value != first:
                    yield value
        # Rarely reached (fallback scripts, or every name candidate taken): de-duplicate
        # against everything given so far, as candidates() does.
        seen = set(shared.values) if shared is not None else set()
        if first is not None:
            seen.add(first)
        if anchor is None:
            anchor = anchor_token(person.anchor)
        yield from self._fallbacks(person, Tokens(first_token, last_token, anchor), seen)

    def _fallbacks(self, person: Person, tokens: Tokens, seen: set[str]) -> Iterator[str]:
        """The fallback candidates not in ``seen`` (which they are added to), nor reserved."""
        for fallback in _fallback_candidates(tokens, self.config.fallback_template, self.max_n):
            if fallback is not None and fallback not in seen:
                seen.add(fallback)
                if fallback in self.reserved:
                    self._left_out(person, fallback)
                    continue
                yield fallback

    def _left_out(self, person: Person, local_part: str) -> None:
        if self._on_reserved is not None:
            self._on_reserved(person, local_part)


def choose(candidates: Iterable[str], is_taken: Callable[[str], bool]) -> str | None:
    """The first candidate that is not taken, or ``None`` when every one is."""
    for candidate in candidates:
        if not is_taken(candidate):
            return candidate
    return None
