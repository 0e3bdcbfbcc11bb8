"""What Hybridbox answers, as data: records, the exceptions that describe an answer, and parsing.

Package-private: import these names from :mod:`syncd.hybridbox`, which re-exports every public
one. Nothing here sends a request; everything reads an answer that already came back:

- the records a call returns (:class:`Mailbox`, :class:`BulkResult` and its items) and the
  classification of a failed item (:class:`ItemKind`, :func:`classify_code`);
- the exceptions that say what an answer meant (:class:`OutcomeUnknown`, :class:`BatchTooLarge`,
  :class:`BatchRejected`, :class:`UnexpectedResponse`, :class:`RequestRefused`);
- reading error bodies of any shape (:func:`error_info`), Retry-After, batch limits, and a bulk
  answer's per-item lists (:func:`bulk_result`).

:func:`bulk_result` runs once per bulk answer, up to 100 items each, so a first provisioning of
100,000 people parses 100,000 entries: it takes the common, well-formed entry on a fast path and
hands anything odd to the careful path, which gives exactly the same result for a well-formed entry.
"""

from __future__ import annotations

import enum
import functools
import json
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from syncd.errors import HybridboxUnavailable, SyncdError
from syncd.logs import event, get_logger

# The client's logger: these events are about its answers, and operators filter on it.
log = get_logger("syncd.hybridbox")

EXCERPT_CHARS = 200


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


# A server uses a handful of item codes, and a batch of 100 refused items repeats one of them
# 100 times: classify each distinct code once.
_item_kind = functools.lru_cache(maxsize=256)(classify_code)


# ------------------------------------------------------------------------------------ records


def _text(data: Mapping[str, Any], key: str) -> str:
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
        local_part = _text(data, "local_part")
        domain_name = _text(data, "domain_name")
        primary_email = _text(data, "primary_email")
        if not primary_email and local_part and domain_name:
            primary_email = f"{local_part}@{domain_name}"
        if primary_email and "@" in primary_email and not (local_part and domain_name):
            email_local, _, email_domain = primary_email.partition("@")
            local_part = local_part or email_local
            domain_name = domain_name or email_domain
        status = data.get("status")
        return cls(
            id=_text(data, "id"),
            local_part=local_part,
            domain_name=domain_name,
            primary_email=primary_email,
            first_name=_text(data, "first_name"),
            last_name=_text(data, "last_name"),
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


# ---------------------------------------------------------------------------- reading answers


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def json_or_none(response: httpx.Response) -> Any:
    try:
        return json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return None


def compact(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def error_info(response: httpx.Response) -> tuple[str | None, str]:
    """``(code, message)`` from an error body of any shape; never raises.

    Understands ``{"error": {"code", "message"}}``, ``{"error": "..."}``, ``{"detail": ...}`` and
    ``{"code", "message"}``; anything else (HTML from a proxy, plain text) becomes an excerpt.
    """
    data = json_or_none(response)
    code: str | None = None
    message = ""
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):
            code = _text(error, "code") or None
            message = _text(error, "message") or compact(error.get("detail") or "")
        elif isinstance(error, str):
            if re.fullmatch(r"[A-Za-z0-9_.\-]+", error):
                code = error
            else:
                message = error
        if code is None:
            code = _text(data, "code") or None
        if not message:
            for key in ("message", "detail", "error_description", "title"):
                if data.get(key):
                    message = compact(data[key])
                    break
        if not message and code is None:
            message = compact(data)
    elif data is not None:
        message = compact(data)
    else:
        try:
            message = response.text
        except (UnicodeDecodeError, LookupError):
            message = repr(response.content[:EXCERPT_CHARS])
        if not message.strip():
            message = "(empty body)"
    return code, excerpt(message)


def limit_in(response: httpx.Response, message: str) -> int | None:
    """The batch limit a 413/422 answer names, in a field or in its text."""
    data = json_or_none(response)
    places: list[Mapping[str, Any]] = []
    if isinstance(data, dict):
        places.append(data)
        places += [data[key] for key in ("error", "detail") if isinstance(data.get(key), dict)]
    for place in places:
        for key in ("limit", "max_items", "max_batch_size", "max_batch", "maximum", "max"):
            value = place.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    match = re.search(
        r"(?:at most|max(?:imum)?|limit|up to|no more than)\D{0,20}?(\d+)", message.lower()
    )
    return int(match.group(1)) if match and int(match.group(1)) > 0 else None


# A 400/422 that refuses the batch's size (not an item): "batch_too_large", "too many items",
# "at most 50 items per call". Underscores are read as spaces.
_TOO_LARGE = re.compile(
    r"(?:batch|items|request|payload|body)\b.{0,30}\btoo (?:large|many|big)"
    r"|too many (?:items|mailboxes)|batch.{0,20}(?:size|limit|max)|max\w*.{0,20}(?:items|batch)",
    re.IGNORECASE,
)


def says_too_large(*texts: str | None) -> bool:
    return any(text and _TOO_LARGE.search(text.replace("_", " ")) for text in texts)


def retry_after_seconds(response: httpx.Response) -> float | None:
    """Seconds from ``Retry-After`` (seconds or an HTTP date), or None if absent or unreadable.

    An HTTP date is measured against the answer's own ``Date`` header when it has one, so that a
    clock difference between the two machines does not matter.
    """
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    if re.fullmatch(r"\d+(?:\.\d+)?", value):
        return float(value)
    when = _http_date(value)
    if when is None:
        return None
    now = _http_date(response.headers.get("date", "")) or time.time()
    return max(0.0, when - now)


def _http_date(value: str) -> float | None:
    if not value:
        return None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _index(entry: Mapping[str, Any], count: int) -> int | None:
    value = entry.get("index")
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < count:
        return value
    return None


def item_indexes_in_detail(data: Any, count: int) -> dict[int, tuple[str, str]]:
    """Items named by a FastAPI-style ``{"detail": [{"loc": [..., "items", 3, ...]}]}`` answer."""
    found: dict[int, tuple[str, str]] = {}
    detail = data.get("detail") if isinstance(data, dict) else None
    if not isinstance(detail, list):
        return found
    for problem in detail:
        if not isinstance(problem, dict) or not isinstance(problem.get("loc"), list):
            continue
        loc = problem["loc"]
        for position, part in enumerate(loc[:-1]):
            index = loc[position + 1]
            if part == "items" and isinstance(index, int) and 0 <= index < count:
                found.setdefault(
                    index, (_text(problem, "type") or "invalid", _text(problem, "msg"))
                )
    return found


# ------------------------------------------------------------------------------- bulk answers


def bulk_result(
    data: Mapping[str, Any],
    domain: str,
    items: Sequence[NewMailbox],
    scrub: Callable[[str], str],
) -> BulkResult | None:
    """The per-item lists of a bulk answer, or None when ``created``/``failed`` are not lists.

    An entry whose index is missing, out of range or already answered is logged and ignored; an
    item that no entry answers is ``unknown``. ``scrub`` removes secrets from a logged excerpt.
    """
    created_raw = data.get("created") or []
    failed_raw = data.get("failed") or []
    if not isinstance(created_raw, list) or not isinstance(failed_raw, list):
        return None
    count = len(items)
    answered = bytearray(count)  # answered[i] == 1 once item i has an entry
    created: list[ItemCreated] = []
    failed: list[ItemFailed] = []
    for entry in created_raw:
        # The fast path: an emulator- or API-shaped entry, {"index": 3, "mailbox": {...}} with
        # every field a string and the address parts present. What from_json would derive or fill
        # in from the request cannot change such an entry, so it is taken as is.
        if type(entry) is dict:
            index = entry.get("index")
            raw = entry.get("mailbox")
            if (
                type(index) is int
                and 0 <= index < count
                and not answered[index]
                and type(raw) is dict
            ):
                mailbox_id = raw.get("id")
                local_part = raw.get("local_part")
                domain_name = raw.get("domain_name")
                primary_email = raw.get("primary_email")
                first_name = raw.get("first_name")
                last_name = raw.get("last_name")
                status = raw.get("status")
                if (
                    type(mailbox_id) is str
                    and type(local_part) is str
                    and type(domain_name) is str
                    and type(primary_email) is str
                    and type(first_name) is str
                    and type(last_name) is str
                    and (status is None or type(status) is str)
                    and local_part
                    and domain_name
                    and primary_email
                ):
                    answered[index] = 1
                    mailbox = Mailbox(
                        mailbox_id,
                        local_part,
                        domain_name,
                        primary_email,
                        first_name,
                        last_name,
                        status,
                    )
                    created.append(ItemCreated(index, mailbox))
                    continue
        index = _answered_index(entry, "created", count, answered, scrub)
        if index is not None:
            created.append(ItemCreated(index, _created_mailbox(entry, domain, items[index])))
    for entry in failed_raw:
        if type(entry) is dict:
            index = entry.get("index")
            code = entry.get("code")
            message = entry.get("message")
            if (
                type(index) is int
                and 0 <= index < count
                and not answered[index]
                and type(code) is str
                and type(message) is str
            ):
                answered[index] = 1
                failed.append(ItemFailed(index, code, message, _item_kind(code)))
                continue
        index = _answered_index(entry, "failed", count, answered, scrub)
        if index is not None:
            code = _text(entry, "code")
            failed.append(ItemFailed(index, code, _text(entry, "message"), _item_kind(code)))
    if len(created) + len(failed) == count:
        unknown: list[int] = []
    else:
        unknown = [index for index in range(count) if not answered[index]]
        event(
            log,
            "hybridbox.bulk_items_unknown",
            logging.WARNING,
            domain=domain,
            unknown=len(unknown),
            items=count,
        )
    return BulkResult(created=created, failed=failed, unknown=unknown)


def _answered_index(
    entry: Any, outcome: str, count: int, answered: bytearray, scrub: Callable[[str], str]
) -> int | None:
    """The careful path: the entry's item index, marked answered; None (and a warning) if none."""
    index = _index(entry, count) if isinstance(entry, dict) else None
    if index is None or answered[index]:
        event(
            log,
            "hybridbox.bulk_entry_ignored",
            logging.WARNING,
            reason="duplicate index" if index is not None else "no index in range",
            outcome=outcome,
            entry=scrub(excerpt(compact(entry), 120)),
            items=count,
        )
        return None
    answered[index] = 1
    return index


def _created_mailbox(entry: Mapping[str, Any], domain: str, item: NewMailbox) -> Mailbox:
    raw = entry.get("mailbox")
    if not isinstance(raw, dict):
        raw = {key: value for key, value in entry.items() if key != "index"}
    # Fill what a terse answer leaves out from what was asked for.
    asked = {
        "local_part": item.local_part,
        "domain_name": domain,
        "first_name": item.first_name,
        "last_name": item.last_name,
    }
    return Mailbox.from_json(
        asked | {key: value for key, value in raw.items() if value is not None}
    )
