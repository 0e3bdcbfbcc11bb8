"""Choosing mailbox local parts from people's names: pure functions, no I/O, no state.

- :mod:`syncd.addresses._names`: names as plain ASCII tokens (transliteration, locales, scripts).
- :mod:`syncd.addresses._templates`: address templates, checked once and filled with tokens.
- :mod:`syncd.addresses._candidates`: a person's candidate local parts, in order, and choosing
  the first free one.
- :mod:`syncd.addresses._reserved`: the role addresses (RFC 2142 and the like) that no candidate
  may be.

Which of them are free is the caller's knowledge (:mod:`syncd.cycle` asks the state): this
package only says which addresses a person could have, and in which order.
"""

from syncd.addresses._candidates import CandidateSource, candidates, choose, needs_fallback
from syncd.addresses._names import anchor_token, has_script, name_token, script_of, transliterate
from syncd.addresses._reserved import (
    ROLE_LOCAL_PARTS,
    is_role_local_part,
    reserved_local_parts,
)
from syncd.addresses._templates import (
    LOCAL_PART_MAX,
    is_valid_local_part,
    render,
    template_problem,
)

__all__ = [
    "LOCAL_PART_MAX",
    "ROLE_LOCAL_PARTS",
    "CandidateSource",
    "anchor_token",
    "candidates",
    "choose",
    "has_script",
    "is_role_local_part",
    "is_valid_local_part",
    "name_token",
    "needs_fallback",
    "render",
    "reserved_local_parts",
    "script_of",
    "template_problem",
    "transliterate",
]
