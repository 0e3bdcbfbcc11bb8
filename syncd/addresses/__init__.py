"""Choosing mailbox local parts from people's names: pure functions, no I/O, no state.

- :mod:`syncd.addresses._names`: names as plain ASCII tokens (transliteration, locales, scripts).
- :mod:`syncd.addresses._templates`: address templates, checked once and filled with tokens.
- :mod:`syncd.addresses._candidates`: a person's candidate local parts, in order, and choosing
  the first free one.

Which of them are free is the caller's knowledge (:mod:`syncd.cycle` asks the state): this
package only says which addresses a person could have, and in which order.
"""

from syncd.addresses._candidates import CandidateSource, candidates, choose, needs_fallback
from syncd.addresses._names import anchor_token, has_script, name_token, script_of, transliterate
from syncd.addresses._templates import (
    LOCAL_PART_MAX,
    is_valid_local_part,
    render,
    template_problem,
)

__all__ = [
    "LOCAL_PART_MAX",
    "CandidateSource",
    "anchor_token",
    "candidates",
    "choose",
    "has_script",
    "is_valid_local_part",
    "name_token",
    "needs_fallback",
    "render",
    "script_of",
    "template_problem",
    "transliterate",
]
