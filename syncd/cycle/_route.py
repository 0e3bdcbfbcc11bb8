"""Which mail domain a person's mailbox belongs in: ``hybridbox.domains``, first match wins.

A pure function of the person's fields and the rules, made once per cycle into a :class:`Router`
(the rules' values trimmed and case-folded up front, so routing 100k people costs a dict lookup
per rule and field). The sources only read the fields; the cycle routes, at staging, and keeps
the routed domain with the person in the state (``people.domain``), so that a later read that
routes them elsewhere is seen once (``person.domain_changed``).

The routing's :attr:`Router.fingerprint` keys the stager's block digests and is kept in the state
after a full read: rules changed since the last read make the next read a full one that looks at
everyone again, so nobody keeps a domain the old rules gave them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from syncd.config import Config
from syncd.model import Person

# The meta key holding the fingerprint of the routing the stored people were routed under.
ROUTING_KEY = "routing"


def fold(value: str) -> str:
    """A field's value as the rules compare it: trimmed and case-folded."""
    return value.strip().casefold()


@dataclass(frozen=True, slots=True)
class _Rule:
    domain: str
    # Field name -> the folded values that match.
    when: tuple[tuple[str, frozenset[str]], ...]


@dataclass(frozen=True, slots=True)
class Router:
    """``hybridbox.domains`` ready to route people (see :func:`router`)."""

    default: str
    rules: tuple[_Rule, ...] = ()

    def route(self, person: Person) -> str:
        """The domain of the first rule all of whose fields match, else the default."""
        if not self.rules:  # one domain: nothing to look at
            return self.default
        index = self.rule_of(person)
        return self.default if index is None else self.rules[index].domain

    def rule_of(self, person: Person) -> int | None:
        """The index of the first rule that takes this person (None: the default domain)."""
        fields = {name: fold(value) for name, value in person.fields}
        for index, rule in enumerate(self.rules):
            if all(fields.get(name) in values for name, values in rule.when):
                return index
        return None

    @property
    def fingerprint(self) -> str:
        """A short digest of the routing: the default domain and every rule, in order."""
        text = json.dumps(
            [self.default, [[r.domain, [[n, sorted(v)] for n, v in r.when]] for r in self.rules]]
        )
        return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def router(config: Config) -> Router:
    """The routing of ``config``: ``hybridbox.domain`` and ``hybridbox.domains``."""
    hybridbox = config.hybridbox
    return Router(
        hybridbox.domain.lower(),
        tuple(
            _Rule(
                rule.domain.lower(),
                tuple(
                    (name, frozenset(fold(v) for v in values)) for name, values in rule.when.items()
                ),
            )
            for rule in hybridbox.domains
        ),
    )
