"""The records Hybridbox answers are read into, and the exceptions that say what an answer meant.

Package-private: import these names from :mod:`syncd.hybridbox._client`, which re-exports every
public one. Plain data, no HTTP: the records a call returns (:class:`Mailbox`, :class:`BulkResult`
and its items), the classification of a failed item (:class:`ItemKind`, :func:`classify_code`) and
the exceptions (:class:`OutcomeUnknown`, :class:`BatchTooLarge`, :class:`BatchRejected`,
:class:`UnexpectedResponse`, :class:`RequestRefused`). They are apart from the reading of answers
(:mod:`syncd.hybridbox._answers`) because the client, the engine and the tests use them without any
of the parsing.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from syncd.errors import HybridboxUnavailable, SyncdError

# ------------------------------------------------------------------------------- item outcomes


class ItemKind(enum.Enum):
    """What the engine does with a failed bulk item (Assumption 3)."""

    TAKEN = "taken"  # the address exists: look it up, adopt it or try the next candidate
    INVALID = "invalid"  # permanent for this input: record it, do not resend as is
    RETRY = "retry"  # anything else (quota, domain not ready, unknown codes): a later cycle


_TAKEN_WORDS = frozenset({"exists", "exist", "conflict", "conflicts", "duplicate", "taken"})
_INVALID_WORDS = frozenset({"invalid", "validation", "malformed", "unprocessable"})
# Words that mark a code as transient even when the whole request got a 400/422.
_TRANSIENT_WORDS = frozenset(
    {"quota", "ready", "busy", "limit", "limited", "unavailable", "temporary", "later", "retry"}
)


def _code_words(code: str) -> set[str]:
    return {word for word in re.split(r"[^a-z0-9]+", code.lower()) if word}


def classify_code(code: str, http_status: int | None = None) -> ItemKind:
    """Classify a ``failed[].code`` (or a whole-request error code for a one-item batch).

    ``http_status`` is only meaningful for a whole-request answer about a single item: 409 means
    taken, 400/422 mean the input was refused unless the code says the refusal is temporary. For
    items inside a 2xx answer pass ``None``: the status then says nothing about the item.
    """
    words = _code_words(code)
    negated = bool(words & {"not", "no"})
    if (words & _TAKEN_WORDS and not negated) or "already" in words or {"in", "use"} <= words:
        return ItemKind.TAKEN
    if words & _INVALID_WORDS:
        return ItemKind.INVALID
    if http_status == 409:
        return ItemKind.TAKEN
    if http_status in (400, 422) and not words & _TRANSIENT_WORDS:
        return ItemKind.INVALID
    return ItemKind.RETRY


# ------------------------------------------------------------------------------------ records


def text_field(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if value is None or isinstance(value, dict | list):
        return ""
    return str(value)


@dataclass(frozen=True, slots=True)
class Mailbox:
    id: str
    local_part: str
    domain_name: str
    primary_email: str
    first_name: str
    last_name: str
    status: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Mailbox:
        """Build from an API mailbox object; missing or odd fields become empty strings."""
        local_part = text_field(data, "local_part")
        domain_name = text_field(data, "domain_name")
        primary_email = text_field(data, "primary_email")
        if not primary_email and local_part and domain_name:
            primary_email = f"{local_part}@{domain_name}"
        if primary_email and "@" in primary_email and not (local_part and domain_name):
            email_local, _, email_domain = primary_email.partition("@")
            local_part = local_part or email_local
            domain_name = domain_name or email_domain
        status = data.get("status")
        return cls(
            id=text_field(data, "id"),
            local_part=local_part,
            domain_name=domain_name,
            primary_email=primary_email,
            first_name=text_field(data, "first_name"),
            last_name=text_field(data, "last_name"),
            status=None if status is None else str(status),
        )


@dataclass(frozen=True, slots=True)
class NewMailbox:
    first_name: str
    last_name: str
    local_part: str


@dataclass(frozen=True, slots=True)
class ItemCreated:
    index: int
    mailbox: Mailbox


@dataclass(frozen=True, slots=True)
class ItemFailed:
    index: int
    code: str
    message: str
    kind: ItemKind


@dataclass(slots=True)
class BulkResult:
    """One bulk call, item by item. ``index`` is the item's position in the request."""

    created: list[ItemCreated] = field(default_factory=list)
    failed: list[ItemFailed] = field(default_factory=list)
    # In neither list: may or may not exist now; look each up before re-sending (Assumption 6).
    unknown: list[int] = field(default_factory=list)


# --------------------------------------------------------------------------------- exceptions


class OutcomeUnknown(Exception):
    """The bulk request may have reached the server, but no usable answer came back.

    Timeout after sending, connection reset or closed, a 5xx, or a 2xx that is not a bulk result:
    some items may have been created. Look each one up by address before re-sending any.
    """


class BatchTooLarge(Exception):
    """The server refused the whole batch as too large (413, or 422 saying so); nothing created.

    ``limit`` is the largest batch the answer names, when it names one.
    """

    def __init__(self, message: str, *, limit: int | None = None) -> None:
        super().__init__(message)
        self.limit = limit


class BatchRejected(BatchTooLarge):
    """The server refused a whole multi-item batch (400/422) without naming the item.

    Nothing was created (a 4xx refuses the request). The way out is to resend the items in smaller
    batches, down to one item, whose answer then says which item is refused and why: that is what
    an engine already does for :class:`BatchTooLarge` (halve and resend), hence the subclass. The
    ``limit`` is None; ``status`` and ``code`` say what the server answered.
    """

    def __init__(self, message: str, *, status: int, code: str | None) -> None:
        super().__init__(message, limit=None)
        self.status = status
        self.code = code


class UnexpectedResponse(HybridboxUnavailable):
    """Hybridbox answered with something syncd cannot use (an unexpected status or body).

    A kind of ``HybridboxUnavailable``: the cycle stops talking to Hybridbox, and the message shows
    a short excerpt of what came back.
    """

    def __init__(
        self, message: str, *, status: int | None, code: str | None = None, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.code = code


class RequestRefused(SyncdError):
    """Hybridbox refused one request for a reason that concerns only its subject.

    Raised by ``HybridboxClient.rename`` when the mailbox is gone (``status`` 404) or its new
    names are refused (400/409/422). Not a reason to stop the cycle: record it for the person.
    """

    def __init__(
        self, message: str, *, status: int, code: str | None = None, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.code = code
