"""Reading Hybridbox answers: error bodies, Retry-After, batch limits and bulk results.

Package-private: import the public names from :mod:`syncd.hybridbox._client`, which re-exports them.
Nothing here sends a request; everything reads an answer that already came back: error bodies of
any shape (:func:`error_info`, and :func:`summary`, the short token-free line for messages),
Retry-After, batch limits, and a bulk answer: what it means as a whole (:func:`bulk_answer`:
success, too large, refused, unknown) and its per-item lists (:func:`bulk_result`). The records
and exceptions these build live in :mod:`syncd.hybridbox._records`.

:func:`bulk_result` runs once per bulk answer, up to 100 items each, so a first provisioning of
100,000 people parses 100,000 entries: it takes the common, well-formed entry on a fast path and
hands anything odd to the careful path, which gives exactly the same result for a well-formed entry.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from syncd.errors import ConfigError
from syncd.hybridbox._records import (
    BatchRejected,
    BatchTooLarge,
    BulkResult,
    ItemCreated,
    ItemFailed,
    Mailbox,
    NewMailbox,
    OutcomeUnknown,
    UnexpectedResponse,
    classify_code,
    text_field,
)
from syncd.logs import event, get_logger

# The client's logger: these events are about its answers, and operators filter on it.
log = get_logger("syncd.hybridbox")

# How much of a server's answer a message quotes: enough to read its error, and one line even
# when a proxy answers with a whole HTML page.
EXCERPT_CHARS = 200
# How much of an ignored bulk entry its warning quotes: one entry is a short JSON object.
IGNORED_ENTRY_CHARS = 120


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
            code = text_field(error, "code") or None
            message = text_field(error, "message") or compact(error.get("detail") or "")
        elif isinstance(error, str):
            if re.fullmatch(r"[A-Za-z0-9_.\-]+", error):
                code = error
            else:
                message = error
        if code is None:
            code = text_field(data, "code") or None
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


def summary(response: httpx.Response, scrub: Callable[[str], str]) -> str:
    """``"503 backend_busy: try later"``: a short, token-free line about an answer."""
    code, message = error_info(response)
    head = f"{response.status_code} {code}" if code else str(response.status_code)
    return scrub(f"{head}: {message}" if message else head)


def unexpected(
    response: httpx.Response, what: str, scrub: Callable[[str], str]
) -> UnexpectedResponse:
    return UnexpectedResponse(
        f"Hybridbox gave an unexpected answer to {what}: {summary(response, scrub)}",
        status=response.status_code,
        code=error_info(response)[0],
    )


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
                    index, (text_field(problem, "type") or "invalid", text_field(problem, "msg"))
                )
    return found


# ------------------------------------------------------------------------------- bulk answers


# A server uses a handful of item codes, and a batch of 100 refused items repeats one of them
# 100 times: classify each distinct code once.
_item_kind = functools.lru_cache(maxsize=256)(classify_code)


def bulk_answer(
    response: httpx.Response,
    domain: str,
    items: Sequence[NewMailbox],
    what: str,
    *,
    scrub: Callable[[str], str],
    account_id: str,
) -> BulkResult:
    """What the answer to a bulk create says, item by item.

    Raises :class:`OutcomeUnknown` (a success without a usable result: look each item up),
    :class:`BatchTooLarge` / :class:`BatchRejected` (refused as a whole, nothing created),
    ``ConfigError`` (404: account or domain) or :class:`UnexpectedResponse`. ``scrub`` takes
    the token out of any excerpt that ends up in a message.
    """
    status = response.status_code
    data = json_or_none(response)
    has_lists = isinstance(data, dict) and ("created" in data or "failed" in data)
    if response.is_success or (has_lists and status in (400, 409, 422)):
        # Whether an all-failed batch is still 2xx is not documented: take per-item answers
        # from a 4xx too.
        if has_lists:
            result = bulk_result(data, domain, items, scrub)
            if result is not None:
                return result
        raise OutcomeUnknown(
            f"{what}: Hybridbox answered {status} without a usable bulk result "
            f"({summary(response, scrub)}); some items may have been created"
        )
    code, message = error_info(response)
    said = summary(response, scrub)
    if status == 413 or (status in (400, 422) and says_too_large(code, message)):
        limit = limit_in(response, message)
        raise BatchTooLarge(
            f"{what}: Hybridbox refused the batch as too large ({said})", limit=limit
        )
    if status == 404:
        raise ConfigError(
            f"Hybridbox answered 404 to {what} ({said})",
            hint=f"check hybridbox.account_id ({account_id}) and hybridbox.domain ({domain})",
        )
    if status in (400, 409, 422):
        return _refused_items(status, code, message, data, len(items), what, said)
    raise unexpected(response, what, scrub)


def _refused_items(
    status: int, code: str | None, message: str, data: Any, count: int, what: str, said: str
) -> BulkResult:
    """A 400/409/422 that refused the request as a whole: the items it blames, if it says.

    Raises :class:`OutcomeUnknown` (a 409 that names no item) or :class:`BatchRejected`.
    """
    if count == 1:
        failure = ItemFailed(0, code or str(status), message, classify_code(code or "", status))
        return BulkResult(failed=[failure])
    pinned = item_indexes_in_detail(data, count)
    if pinned:
        failed = [
            ItemFailed(index, item_code, item_message, classify_code(item_code, status))
            for index, (item_code, item_message) in sorted(pinned.items())
        ]
        # The request was refused as a whole: nothing else was created either, but
        # "unknown" (look up, then re-create) is the safe path the engine already has.
        rest = [index for index in range(count) if index not in pinned]
        return BulkResult(failed=failed, unknown=rest)
    if status == 409:
        raise OutcomeUnknown(
            f"{what}: Hybridbox answered 409 for the whole batch without saying which "
            f"item ({said}); look each address up"
        )
    raise BatchRejected(
        f"{what}: Hybridbox refused the whole batch ({said})", status=status, code=code
    )


def bulk_result(
    data: Mapping[str, Any],
    domain: str,
    items: Sequence[NewMailbox],
    scrub: Callable[[str], str],
) -> BulkResult | None:
    """The per-item lists of a bulk answer, or None when ``created``/``failed`` are not lists.

    An entry whose index is missing or out of range is logged and ignored. An item that no entry
    answers is ``unknown``, and so is one the answer does not confirm: an index answered twice
    (the answer contradicts or repeats itself), or a created mailbox that is not the one asked for
    at that index (another local part, domain or names: a server answering item i with item
    i+1's mailbox). The engine looks each unknown item up by the address it asked for, so what is
    recorded is what really exists there. ``scrub`` removes secrets from a logged excerpt.
    """
    created_raw = data.get("created") or []
    failed_raw = data.get("failed") or []
    if not isinstance(created_raw, list) or not isinstance(failed_raw, list):
        return None
    count = len(items)
    answered = bytearray(count)  # answered[i] == 1 once item i has an entry
    doubtful: set[int] = set()  # answered, but not in a way that confirms anything
    # One call per list, not per entry: each reads its whole list in one loop.
    created = _created_entries(created_raw, domain, items, answered, doubtful, scrub)
    failed = _failed_entries(failed_raw, count, answered, doubtful, scrub)
    if doubtful:
        created = [entry for entry in created if entry.index not in doubtful]
        failed = [entry for entry in failed if entry.index not in doubtful]
    if len(created) + len(failed) == count:
        unknown: list[int] = []
    else:
        unknown = [index for index in range(count) if not answered[index] or index in doubtful]
        event(
            log,
            "hybridbox.bulk_items_unknown",
            logging.WARNING,
            domain=domain,
            unknown=len(unknown),
            items=count,
        )
    return BulkResult(created=created, failed=failed, unknown=unknown)


def _created_entries(
    entries: list[Any],
    domain: str,
    items: Sequence[NewMailbox],
    answered: bytearray,
    doubtful: set[int],
    scrub: Callable[[str], str],
) -> list[ItemCreated]:
    """The ``created`` list of a bulk answer; marks the items it answers in ``answered``."""
    count = len(items)
    created: list[ItemCreated] = []
    for entry in entries:
        # The fast path: an emulator- or API-shaped entry, {"index": 3, "mailbox": {...}} with
        # every field a string, the address parts present, and the local part, domain and names
        # exactly those asked for at that index. What from_json would derive or fill in from the
        # request cannot change such an entry, so it is taken as is.
        if type(entry) is dict:
            index = entry.get("index")
            raw = entry.get("mailbox")
            if (
                type(index) is int
                and 0 <= index < count
                and not answered[index]
                and type(raw) is dict
            ):
                asked = items[index]
                mailbox_id = raw.get("id")
                local_part = raw.get("local_part")
                domain_name = raw.get("domain_name")
                primary_email = raw.get("primary_email")
                first_name = raw.get("first_name")
                last_name = raw.get("last_name")
                status = raw.get("status")
                if (
                    type(mailbox_id) is str
                    and type(primary_email) is str
                    and (status is None or type(status) is str)
                    and primary_email
                    # Plain equality with str operands: also a cheap check of their type.
                    and local_part == asked.local_part
                    and domain_name == domain
                    and first_name == asked.first_name
                    and last_name == asked.last_name
                    and type(local_part) is str
                    and type(domain_name) is str
                    and type(first_name) is str
                    and type(last_name) is str
                    and local_part
                    and domain_name
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
        index = _answered_index(entry, "created", count, answered, doubtful, scrub)
        if index is None:
            continue
        mailbox = _created_mailbox(entry, domain, items[index])
        if _is_the_one_asked_for(mailbox, domain, items[index]):
            created.append(ItemCreated(index, mailbox))
        else:
            doubtful.add(index)
            event(
                log,
                "hybridbox.bulk_entry_mismatch",
                logging.WARNING,
                index=index,
                asked=f"{items[index].local_part}@{domain}",
                answered=scrub(excerpt(f"{mailbox.local_part}@{mailbox.domain_name}")),
                names_match=_same_text(mailbox.first_name, items[index].first_name)
                and _same_text(mailbox.last_name, items[index].last_name),
                outcome="unknown: looked up by the address asked for",
            )
    return created


def _failed_entries(
    entries: list[Any],
    count: int,
    answered: bytearray,
    doubtful: set[int],
    scrub: Callable[[str], str],
) -> list[ItemFailed]:
    """The ``failed`` list of a bulk answer; marks the items it answers in ``answered``."""
    failed: list[ItemFailed] = []
    for entry in entries:
        # The fast path: {"index": 3, "code": "...", "message": "..."} with both texts strings.
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
        index = _answered_index(entry, "failed", count, answered, doubtful, scrub)
        if index is not None:
            code = text_field(entry, "code")
            failed.append(ItemFailed(index, code, text_field(entry, "message"), _item_kind(code)))
    return failed


def _answered_index(
    entry: Any,
    outcome: str,
    count: int,
    answered: bytearray,
    doubtful: set[int],
    scrub: Callable[[str], str],
) -> int | None:
    """The careful path: the entry's item index, marked answered; None (and a warning) if none.

    An index answered before is put in ``doubtful``: the answer says two things about one item.
    """
    index = _index(entry, count) if isinstance(entry, dict) else None
    if index is None or answered[index]:
        if index is not None:
            doubtful.add(index)
        event(
            log,
            "hybridbox.bulk_entry_ignored",
            logging.WARNING,
            reason="duplicate index" if index is not None else "no index in range",
            outcome=outcome,
            entry=scrub(excerpt(compact(entry), IGNORED_ENTRY_CHARS)),
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


def _is_the_one_asked_for(mailbox: Mailbox, domain: str, item: NewMailbox) -> bool:
    """Whether a created mailbox is at the address, and has the names, asked for."""
    return (
        _same_text(mailbox.local_part, item.local_part)
        and _same_text(mailbox.domain_name, domain)
        and _same_text(mailbox.first_name, item.first_name)
        and _same_text(mailbox.last_name, item.last_name)
    )


def _same_text(answered: str, asked: str) -> bool:
    # A server may trim or recase what it stores (the engine compares names the same way when it
    # looks a mailbox up); anything else is another mailbox.
    return answered == asked or answered.strip().casefold() == asked.strip().casefold()
