"""The Hybridbox client: the only code in syncd that speaks HTTP to Hybridbox.

The engine makes one :class:`HybridboxClient` per cycle (one keep-alive connection) and one
:class:`RetryBudget` per cycle. The client turns every answer into something the engine can act
on without reading HTTP itself (see ``/work/shared/hybridbox-api.md``, "Assumptions"):

- a :class:`BulkResult` with each item created, failed (with an :class:`ItemKind`) or unknown;
- :class:`OutcomeUnknown` when a bulk request may have been applied but no usable answer came back
  (the engine looks each item up before re-sending: nothing is created twice);
- :class:`BatchTooLarge` (and its kind :class:`BatchRejected`) when the server refused a whole
  batch before creating anything: halve it and resend;
- :class:`RequestRefused` when a rename is refused for that one mailbox (gone, names refused);
- the kinds in :mod:`syncd.errors` for what stops the cycle: ``NotAuthorized`` (401/403, never
  retried), ``ConfigError`` (404 on the account or domain), ``HybridboxUnavailable`` (the retry
  budget ran out, a Retry-After longer than the cap, or an answer syncd cannot use).

Retries: what is safe to resend (GET, PATCH, and a bulk POST that never left or that the server
refused with 429, or 503 with Retry-After) is resent after a wait charged to the cycle's budget.
The token is registered as a secret, sent only in the Authorization header, and scrubbed from any
excerpt of a server answer that ends up in a message.
"""

from __future__ import annotations

import enum
import json
import logging
import random
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx

from syncd import __version__
from syncd.config import HybridboxConfig
from syncd.errors import ConfigError, HybridboxUnavailable, NotAuthorized, SyncdError
from syncd.logs import event, get_logger, redact, register_secret

log = get_logger("syncd.hybridbox")

# Exponential backoff for retries without a Retry-After: 0.5 s, 1 s, 2 s, ... capped at 30 s, with
# "equal jitter" (half fixed, half random) so that several syncd hosts do not retry in lockstep.
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 30.0
EXCERPT_CHARS = 200

# The request never left this host: resending cannot create anything twice.
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError)


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

    Raised by :meth:`HybridboxClient.rename` when the mailbox is gone (``status`` 404) or its new
    names are refused (400/409/422). Not a reason to stop the cycle: record it for the person.
    """

    def __init__(
        self, message: str, *, status: int, code: str | None = None, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.code = code


# ------------------------------------------------------------------------------- retry budget


class RetryBudget:
    """The seconds one cycle may spend sleeping before retries, shared by all its requests.

    When a wait would overrun it, :meth:`wait` raises ``HybridboxUnavailable`` instead of sleeping:
    the cycle stops calling Hybridbox and the rest is retried next cycle.
    """

    def __init__(
        self,
        seconds: float,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.seconds = max(0.0, seconds)
        self.spent = 0.0
        self.retries = 0
        self._sleep = sleep
        self._clock = clock

    @property
    def remaining(self) -> float:
        return max(0.0, self.seconds - self.spent)

    def wait(self, seconds: float, *, reason: str) -> None:
        """Sleep ``seconds`` before a retry; ``reason`` says what went wrong, for the message."""
        seconds = max(0.0, seconds)
        if seconds > self.remaining + 1e-9:
            event(
                log,
                "hybridbox.gave_up",
                logging.ERROR,
                reason=reason,
                retries=self.retries,
                spent_s=round(self.spent, 1),
                budget_s=self.seconds,
            )
            raise HybridboxUnavailable(
                f"Hybridbox did not answer usefully (last: {reason}); gave up after "
                f"{self.retries} retries / {self.spent:.1f} s; the rest is retried next cycle",
                hint=f"the cycle's retry budget of {self.seconds:g} s (hybridbox.retry_budget_s) "
                "is used up",
            )
        started = self._clock()
        self._sleep(seconds)
        # Charge what was asked for, or more if the sleep overran (a suspended machine).
        self.spent += max(seconds, self._clock() - started)
        self.retries += 1


# ------------------------------------------------------------------------------ answer parsing


def _excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return None


def _compact(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def error_info(response: httpx.Response) -> tuple[str | None, str]:
    """``(code, message)`` from an error body of any shape; never raises.

    Understands ``{"error": {"code", "message"}}``, ``{"error": "..."}``, ``{"detail": ...}`` and
    ``{"code", "message"}``; anything else (HTML from a proxy, plain text) becomes an excerpt.
    """
    data = _json_or_none(response)
    code: str | None = None
    message = ""
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):
            code = _text(error, "code") or None
            message = _text(error, "message") or _compact(error.get("detail") or "")
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
                    message = _compact(data[key])
                    break
        if not message and code is None:
            message = _compact(data)
    elif data is not None:
        message = _compact(data)
    else:
        try:
            message = response.text
        except (UnicodeDecodeError, LookupError):
            message = repr(response.content[:EXCERPT_CHARS])
        if not message.strip():
            message = "(empty body)"
    return code, _excerpt(message)


def _limit_in(response: httpx.Response, message: str) -> int | None:
    """The batch limit a 413/422 answer names, in a field or in its text."""
    data = _json_or_none(response)
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


def _says_too_large(*texts: str | None) -> bool:
    return any(text and _TOO_LARGE.search(text.replace("_", " ")) for text in texts)


def _retry_after(response: httpx.Response) -> float | None:
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


def _item_indexes_in_detail(data: Any, count: int) -> dict[int, tuple[str, str]]:
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


# ------------------------------------------------------------------------------------- client


class HybridboxClient:
    """Synchronous client for one cycle: one keep-alive connection, one retry budget."""

    def __init__(
        self,
        config: HybridboxConfig,
        token: str,
        *,
        budget: RetryBudget | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        register_secret(token)
        self._config = config
        self._token = token
        self._rng = rng
        self.budget = (
            budget if budget is not None else RetryBudget(config.retry_budget_s, sleep=sleep)
        )
        self.requests_sent = 0
        self._account_path = f"/v1/public/accounts/{quote(config.account_id, safe='')}"
        self._http = httpx.Client(
            base_url=config.url.rstrip("/"),
            headers={
                "Authorization": f"Bearer {token}",
                "User-Agent": f"syncd/{__version__}",
                "Accept": "application/json",
            },
            timeout=httpx.Timeout(config.timeout_s),
            transport=transport,
            follow_redirects=False,
        )

    # -- lifecycle

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- public calls

    def check_account(self) -> dict[str, Any]:
        """GET the account: a cheap check of URL, account id and token."""
        what = "the account check"
        response = self._send("GET", self._account_path, what=what)
        if response.status_code == 404:
            raise ConfigError(
                f"Hybridbox at {self._config.url} has no account {self._config.account_id} "
                f"({self._summary(response)})",
                hint="check hybridbox.account_id and hybridbox.url",
            )
        return self._json_object(response, what)

    def check_domain(self, domain: str) -> dict[str, Any]:
        what = f"the check of domain {domain}"
        response = self._send("GET", self._path("domains", domain), what=what)
        if response.status_code == 404:
            raise ConfigError(
                f"Hybridbox account {self._config.account_id} has no domain {domain!r} "
                f"({self._summary(response)})",
                hint="check hybridbox.domain (and hybridbox.account_id)",
            )
        return self._json_object(response, what)

    def bulk_create(self, domain: str, items: Sequence[NewMailbox]) -> BulkResult:
        """Create ``items`` in ``domain`` with ONE logical bulk call (retried only when safe)."""
        if not items:
            return BulkResult()
        what = f"the bulk create of {len(items)} mailbox(es) in {domain}"
        body = {
            "domain": domain,
            "items": [
                {
                    "first_name": item.first_name,
                    "last_name": item.last_name,
                    "local_part": item.local_part,
                }
                for item in items
            ],
        }
        response = self._send(
            "POST",
            self._path("mailboxes", "bulk"),
            what=what,
            json_body=body,
            resend_safe=False,
            capability="mailbox.create",
        )
        return self._bulk_answer(response, domain, items, what)

    def get_mailbox(self, id_or_address: str) -> Mailbox | None:
        """The mailbox with this id or full address, or None if Hybridbox answers 404."""
        what = f"the lookup of mailbox {id_or_address}"
        response = self._send("GET", self._path("mailboxes", id_or_address), what=what)
        if response.status_code == 404:
            return None
        return Mailbox.from_json(self._json_object(response, what))

    def find_by_address(self, local_part: str, domain: str) -> Mailbox | None:
        """The mailbox at ``local_part@domain``: by address, else by searching the list."""
        if not local_part or not domain:
            return None  # "@example.com" would search, and list, the whole domain
        address = f"{local_part}@{domain}"
        what = f"the lookup of mailbox {address}"
        response = self._send("GET", self._path("mailboxes", address), what=what)
        if response.is_success:
            mailbox = Mailbox.from_json(self._json_object(response, what))
            if mailbox.primary_email.lower() == address.lower():
                return mailbox
        elif response.status_code not in (400, 404, 422):
            raise self._unexpected(response, what)
        # The route may only take ids; search the list (search= matches loosely, so compare).
        for mailbox in self._list(domain, search=local_part):
            if mailbox.primary_email.lower() == address.lower():
                return mailbox
        return None

    def list_mailboxes(self, domain: str) -> Iterator[Mailbox]:
        """Every mailbox in ``domain``, page by page, each id once."""
        return self._list(domain, search=None)

    def rename(self, mailbox_id: str, first_name: str, last_name: str) -> Mailbox:
        what = f"the rename of mailbox {mailbox_id}"
        response = self._send(
            "PATCH",
            self._path("mailboxes", mailbox_id),
            what=what,
            json_body={"first_name": first_name, "last_name": last_name},
        )
        status = response.status_code
        if status == 404:
            raise RequestRefused(
                f"mailbox {mailbox_id} no longer exists on Hybridbox ({self._summary(response)})",
                status=404,
                code=error_info(response)[0],
                hint="it was probably deleted in the web app",
            )
        if status in (400, 409, 422):
            raise RequestRefused(
                f"Hybridbox refused {what} to {first_name!r} {last_name!r}: "
                f"{self._summary(response)}",
                status=status,
                code=error_info(response)[0],
            )
        return Mailbox.from_json(self._json_object(response, what))

    # -- paths and answers

    def _path(self, *parts: str) -> str:
        return "/".join([self._account_path, *(quote(part, safe="@+") for part in parts)])

    def _scrub(self, text: str) -> str:
        return redact(text.replace(self._token, "***"))

    def _summary(self, response: httpx.Response) -> str:
        """``"503 backend_busy: try later"``: a short, token-free line about an answer."""
        code, message = error_info(response)
        head = f"{response.status_code} {code}" if code else str(response.status_code)
        return self._scrub(f"{head}: {message}" if message else head)

    def _unexpected(self, response: httpx.Response, what: str) -> UnexpectedResponse:
        return UnexpectedResponse(
            f"Hybridbox gave an unexpected answer to {what}: {self._summary(response)}",
            status=response.status_code,
            code=error_info(response)[0],
        )

    def _json_object(self, response: httpx.Response, what: str) -> dict[str, Any]:
        data = _json_or_none(response)
        if not response.is_success or not isinstance(data, dict):
            raise self._unexpected(response, what)
        return data

    def _token_source(self) -> str:
        config = self._config
        if config.token_file is not None:
            return f"hybridbox.token_file ({config.token_file})"
        if config.token_env is not None:
            return f"hybridbox.token_env (${config.token_env})"
        if config.token_credential is not None:
            return f"hybridbox.token_credential ({config.token_credential})"
        return "the configured token"

    def _not_authorized(
        self, response: httpx.Response, what: str, capability: str | None
    ) -> NotAuthorized:
        summary = self._summary(response)
        if response.status_code == 401:
            return NotAuthorized(
                f"Hybridbox rejected the token from {self._token_source()}: {summary}; "
                "rotate or fix it",
                hint="a service-account token is shown once at creation; paste a new one",
            )
        needs = f"the {capability} capability" if capability else "a capability this call needs"
        return NotAuthorized(
            f"Hybridbox refused {what} with the token from {self._token_source()}: {summary}; "
            f"the token lacks {needs}",
            hint="give the service account that capability in the Hybridbox web app",
        )

    def _list(self, domain: str, *, search: str | None) -> Iterator[Mailbox]:
        what = f"the mailbox list of {domain}"
        requested = self._config.page_size
        seen: set[str] = set()
        received = 0
        page = 1
        while True:
            params: dict[str, str | int] = {"domain": domain, "page": page, "page_size": requested}
            if search is not None:
                params["search"] = search
            response = self._send("GET", self._path("mailboxes"), what=what, params=params)
            if response.status_code == 404:
                raise ConfigError(
                    f"Hybridbox account {self._config.account_id} has no domain {domain!r} "
                    f"({self._summary(response)})",
                    hint="check hybridbox.domain (and hybridbox.account_id)",
                )
            data = self._json_object(response, what)
            items = data.get("items")
            if not isinstance(items, list):
                raise self._unexpected(response, what)
            for raw in items:
                if not isinstance(raw, dict):
                    continue
                mailbox = Mailbox.from_json(raw)
                key = mailbox.id or mailbox.primary_email.lower()
                if key in seen:
                    continue  # order is not guaranteed: an item may move across pages
                seen.add(key)
                yield mailbox
            received += len(items)
            total = data.get("total")
            if not items:
                return
            # Counting what came back, not page * requested size, also ends correctly when the
            # server clamps page_size (the emulator allows at most 100) without saying so.
            if isinstance(total, int) and not isinstance(total, bool):
                if received >= total:
                    return
            elif len(items) < requested:
                return
            page += 1

    def _bulk_answer(
        self, response: httpx.Response, domain: str, items: Sequence[NewMailbox], what: str
    ) -> BulkResult:
        status = response.status_code
        data = _json_or_none(response)
        has_lists = isinstance(data, dict) and ("created" in data or "failed" in data)
        if response.is_success or (has_lists and status in (400, 409, 422)):
            # Whether an all-failed batch is still 2xx is not documented: take per-item answers
            # from a 4xx too.
            if has_lists:
                result = self._bulk_result(data, domain, items)
                if result is not None:
                    return result
            raise OutcomeUnknown(
                f"{what}: Hybridbox answered {status} without a usable bulk result "
                f"({self._summary(response)}); some items may have been created"
            )
        code, message = error_info(response)
        summary = self._summary(response)
        if status == 413 or (status in (400, 422) and _says_too_large(code, message)):
            limit = _limit_in(response, message)
            raise BatchTooLarge(
                f"{what}: Hybridbox refused the batch as too large ({summary})", limit=limit
            )
        if status == 404:
            raise ConfigError(
                f"Hybridbox answered 404 to {what} ({summary})",
                hint=f"check hybridbox.account_id ({self._config.account_id}) and "
                f"hybridbox.domain ({domain})",
            )
        if status in (400, 409, 422):
            if len(items) == 1:
                failure = ItemFailed(
                    0, code or str(status), message, classify_code(code or "", status)
                )
                return BulkResult(failed=[failure])
            pinned = _item_indexes_in_detail(data, len(items))
            if pinned:
                failed = [
                    ItemFailed(index, item_code, item_message, classify_code(item_code, status))
                    for index, (item_code, item_message) in sorted(pinned.items())
                ]
                # The request was refused as a whole: nothing else was created either, but
                # "unknown" (look up, then re-create) is the safe path the engine already has.
                rest = [index for index in range(len(items)) if index not in pinned]
                return BulkResult(failed=failed, unknown=rest)
            if status == 409:
                raise OutcomeUnknown(
                    f"{what}: Hybridbox answered 409 for the whole batch without saying which "
                    f"item ({summary}); look each address up"
                )
            raise BatchRejected(
                f"{what}: Hybridbox refused the whole batch ({summary})", status=status, code=code
            )
        raise self._unexpected(response, what)

    def _bulk_result(
        self, data: dict[str, Any], domain: str, items: Sequence[NewMailbox]
    ) -> BulkResult | None:
        created_raw = data.get("created") or []
        failed_raw = data.get("failed") or []
        if not isinstance(created_raw, list) or not isinstance(failed_raw, list):
            return None
        count = len(items)
        result = BulkResult()
        answered: set[int] = set()
        for outcome, entries in (("created", created_raw), ("failed", failed_raw)):
            for entry in entries:
                index = _index(entry, count) if isinstance(entry, dict) else None
                if index is None or index in answered:
                    event(
                        log,
                        "hybridbox.bulk_entry_ignored",
                        logging.WARNING,
                        reason="duplicate index" if index is not None else "no index in range",
                        outcome=outcome,
                        entry=self._scrub(_excerpt(_compact(entry), 120)),
                        items=count,
                    )
                    continue
                answered.add(index)
                if outcome == "created":
                    result.created.append(
                        ItemCreated(index, self._created_mailbox(entry, domain, items[index]))
                    )
                else:
                    code = _text(entry, "code")
                    result.failed.append(
                        ItemFailed(index, code, _text(entry, "message"), classify_code(code))
                    )
        result.unknown = [index for index in range(count) if index not in answered]
        if result.unknown:
            event(
                log,
                "hybridbox.bulk_items_unknown",
                logging.WARNING,
                domain=domain,
                unknown=len(result.unknown),
                items=count,
            )
        return result

    @staticmethod
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

    # -- sending with retries

    def _backoff(self, attempt: int) -> float:
        ceiling = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2.0 ** min(attempt - 1, 16))
        return ceiling / 2 + self._rng() * ceiling / 2

    def _send(
        self,
        method: str,
        path: str,
        *,
        what: str,
        params: Mapping[str, str | int] | None = None,
        json_body: Any = None,
        resend_safe: bool = True,
        capability: str | None = None,
    ) -> httpx.Response:
        """Send once, retrying what is safe to retry; return the first answer to interpret.

        ``resend_safe=False`` (the bulk POST) resends only a request that surely did nothing: it
        never left (connect errors) or the server refused it up front (429, 503 + Retry-After).
        401/403 raise NotAuthorized; everything else is returned to the caller.
        """
        attempt = 0
        while True:
            attempt += 1
            request = self._http.build_request(method, path, params=params, json=json_body)
            status: int | None = None
            retry_after: float | None = None
            try:
                response = self._http.send(request)
            except _NEVER_SENT as exc:
                reason = "connect_error"
                detail = f"cannot connect to {self._config.url}: {self._describe(exc)}"
            except httpx.LocalProtocolError as exc:
                raise HybridboxUnavailable(
                    f"syncd could not send {what}: {self._describe(exc)}"
                ) from None
            except httpx.RequestError as exc:
                self.requests_sent += 1
                reason = "timeout" if isinstance(exc, httpx.TimeoutException) else "network_error"
                detail = f"{what}: no answer ({self._describe(exc)})"
                if not resend_safe:
                    raise OutcomeUnknown(
                        f"{detail}; the request may have been applied: look each item up"
                    ) from None
            else:
                self.requests_sent += 1
                status = response.status_code
                if status in (401, 403):
                    raise self._not_authorized(response, what, capability)
                if status != 429 and status < 500:
                    return response
                retry_after = _retry_after(response)
                detail = f"{what}: {self._summary(response)}"
                if not resend_safe and not (
                    status == 429 or (status == 503 and retry_after is not None)
                ):
                    raise OutcomeUnknown(
                        f"{detail}; the request may have been applied: look each item up"
                    )
                reason = {429: "rate_limited", 503: "unavailable"}.get(status, "server_error")
                cap = self._config.max_retry_after_s
                if retry_after is not None and retry_after > cap:
                    raise HybridboxUnavailable(
                        f"{detail}; Hybridbox asked to wait {retry_after:.0f} s before retrying, "
                        f"longer than hybridbox.max_retry_after_s ({cap:g} s); the rest is "
                        "retried next cycle"
                    )
            # Retry-After is a minimum; the growing backoff floor keeps a server that answers
            # "Retry-After: 0" forever from spinning the loop.
            backoff = self._backoff(attempt)
            wait = backoff if retry_after is None else max(retry_after, backoff / 2)
            event(
                log,
                "hybridbox.retry",
                logging.WARNING,
                method=method,
                reason=reason,
                status=status,
                wait_s=round(wait, 2),
                retry_after=retry_after,
                attempt=attempt,
            )
            self.budget.wait(wait, reason=detail)

    def _describe(self, exc: Exception) -> str:
        text = str(exc).strip()
        return self._scrub(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)
