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
  retried), ``ConfigError`` (404 on the account or domain), ``HybridboxUnavailable`` (Hybridbox
  cannot be reached at first contact, the retry budget ran out, a Retry-After longer than the cap,
  a redirect, or an answer syncd cannot use).

A bulk create is one call (``bulk_create``) or, for a caller that pipelines batches, two:
``send_bulk`` (the network: send, read the answer's bytes) and ``read_bulk`` (what the answer
says), so that the thread doing the network does nothing else.

Every request is bounded as a whole: it has ``hybridbox.timeout_s`` for everything, and its answer
at most ``MAX_ANSWER_BYTES`` decoded (see :mod:`syncd.hybridbox._wire`).

Retries are for a server that was answering and stopped. At the first contact of a client (a
command, a cycle), a connection refused, a name that does not resolve, a TLS mismatch or a
connection closed without an answer is a wrong ``hybridbox.url`` far more often than an outage: it
fails at once, naming the key. After that, what is safe to resend (GET, PATCH, and a bulk POST that
never left or that the server refused with 429, or 503 with Retry-After) is resent after a wait;
the waits and the time spent in failed attempts are charged to the cycle's budget.

The token is registered as a secret, sent only in the Authorization header (redirects are never
followed, so it never goes to another host), and scrubbed from any excerpt of a server answer that
ends up in a message.

This module holds the client and the HTTP plumbing. Its retry budget lives in
:mod:`syncd.hybridbox._retry`, the records and the exceptions above in
:mod:`syncd.hybridbox._records`, and the reading of answers in :mod:`syncd.hybridbox._answers`;
every public name there is re-exported here, so import them from this module.
"""

from __future__ import annotations

import logging
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx

from syncd import __version__
from syncd.config import HybridboxConfig
from syncd.errors import ConfigError, HybridboxUnavailable, NotAuthorized
from syncd.hybridbox._answers import (
    bulk_answer,
    error_info,
    excerpt,
    json_or_none,
    retry_after_seconds,
    summary,
    unexpected,
)
from syncd.hybridbox._flow import FlowControl, Ticket
from syncd.hybridbox._records import (
    BulkResult,
    Mailbox,
    NewMailbox,
    OutcomeUnknown,
    RequestRefused,
    UnexpectedResponse,
)
from syncd.hybridbox._retry import RETRIED_NEXT_CYCLE, RetryBudget
from syncd.hybridbox._wire import ACCEPT_ENCODING, AnswerUnusable, Line, Lines, read_answer
from syncd.logs import event, get_logger, redact, register_secret

log = get_logger("syncd.hybridbox")

# Exponential backoff for retries without a Retry-After: 0.5 s, 1 s, 2 s, ... capped at 30 s, with
# "equal jitter" (half fixed, half random) so that several syncd hosts do not retry in lockstep.
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 30.0

# The backoff stops doubling after this many retries: far past BACKOFF_MAX_S already, and it
# keeps 2.0 ** n from overflowing however long a retry budget lets the attempts run.
_BACKOFF_DOUBLINGS_MAX = 16

# The request never left this host: resending cannot create anything twice.
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError)
# Failures that, before Hybridbox has answered anything, say nothing there speaks HTTP to us:
# connecting failed (refused, DNS, TLS, no route, timed out) or the connection was closed or reset
# without an answer (http:// to a TLS port).
_NO_SERVER_THERE = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.ProxyError,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
    httpx.UnsupportedProtocol,
)


# ------------------------------------------------------------------------------------- client


@dataclass(frozen=True, slots=True)
class SentBulk:
    """A bulk request that got an answer, not interpreted yet (see ``send_bulk``)."""

    response: httpx.Response
    domain: str
    items: Sequence[NewMailbox]
    what: str


@dataclass(frozen=True, slots=True)
class _Retry:
    """An attempt that got no answer to interpret: why, for the retry's log line and wait."""

    reason: str  # rate_limited, unavailable, server_error, timeout, network_error, connect_error
    detail: str  # what went wrong, for the message should the retry budget run out
    status: int | None = None  # the HTTP status, when there was an answer
    retry_after: float | None = None  # the answer's Retry-After, in seconds


class HybridboxClient:
    """Synchronous client for one cycle: one keep-alive connection, one retry budget.

    ``in_cycle=False`` is for a one-off command (``validate``): its messages then do not promise
    that a next cycle retries (only matters when ``budget`` is not given).
    """

    def __init__(
        self,
        config: HybridboxConfig,
        token: str,
        *,
        budget: RetryBudget | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
        in_cycle: bool = True,
        flow: FlowControl | None = None,
    ) -> None:
        register_secret(token)
        self._config = config
        self._token = token
        self._rng = rng
        self.budget = (
            budget
            if budget is not None
            else RetryBudget(
                config.retry_budget_s,
                sleep=sleep,
                clock=clock,
                then=RETRIED_NEXT_CYCLE if in_cycle else "",
            )
        )
        self.flow = (
            flow
            if flow is not None
            else FlowControl(config.max_in_flight, clock=self.budget.clock, sleep=self.budget.sleep)
        )
        self._counts = threading.Lock()
        self.requests_sent = 0
        # Whether Hybridbox has answered anything yet: before it has, a failure to reach it is a
        # wrong hybridbox.url until proven otherwise, and is not retried (see _unreachable).
        self.answered = False
        self._account_path = f"/v1/public/accounts/{quote(config.account_id, safe='')}"
        self._base_url = httpx.URL(config.url.rstrip("/"))
        self._transport = transport
        # A plain-http base URL (the emulator, a local proxy) never speaks TLS (redirects are not
        # followed), so there is no CA bundle to load (~40 ms of every start); https always
        # verifies, with one context for every thread's client.
        self._ssl_context: ssl.SSLContext | None = None
        self._lines = Lines(self._new_http)

    def _new_http(self) -> httpx.Client:
        if self._base_url.scheme != "http" and self._ssl_context is None:
            self._ssl_context = httpx.create_ssl_context()
        return httpx.Client(
            base_url=self._base_url,
            headers={
                "Authorization": f"Bearer {self._token}",
                "User-Agent": f"syncd/{__version__}",
                "Accept": "application/json",
                "Accept-Encoding": ACCEPT_ENCODING,
            },
            timeout=httpx.Timeout(self._config.timeout_s),
            transport=self._transport,
            follow_redirects=False,
            verify=self._ssl_context if self._ssl_context is not None else False,
        )

    # -- lifecycle

    def close(self) -> None:
        self._lines.close()

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

    def check_domain(self, domain: str, key: str = "hybridbox.domain") -> dict[str, Any]:
        """The domain's record; ConfigError naming ``key`` (the config key that names the
        domain) when the account has no such domain."""
        what = f"the check of domain {domain}"
        response = self._send("GET", self._path("domains", domain), what=what)
        if response.status_code == 404:
            raise ConfigError(
                f"Hybridbox account {self._config.account_id} has no domain {domain!r} "
                f"({self._summary(response)})",
                hint=f"check {key} (and hybridbox.account_id)",
            )
        return self._json_object(response, what)

    def bulk_create(self, domain: str, items: Sequence[NewMailbox]) -> BulkResult:
        """Create ``items`` in ``domain`` with ONE logical bulk call (retried only when safe)."""
        if not items:
            return BulkResult()
        return self.read_bulk(self.send_bulk(domain, items))

    def send_bulk(self, domain: str, items: Sequence[NewMailbox]) -> SentBulk:
        """The network half of :meth:`bulk_create`: send, and read the answer's bytes.

        Raises what sending may (:class:`OutcomeUnknown` when the request may have arrived but
        no answer came back); :meth:`read_bulk` says what the answer means. Split so that a
        pipelining caller's network thread does no more than the network.
        """
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
        return SentBulk(response, domain, items, what)

    def read_bulk(self, sent: SentBulk) -> BulkResult:
        """What the answer to :meth:`send_bulk` says, item by item (raises
        :class:`BatchTooLarge` or :class:`OutcomeUnknown` for an answer about the whole)."""
        return bulk_answer(
            sent.response,
            sent.domain,
            sent.items,
            sent.what,
            scrub=self._scrub,
            account_id=self._config.account_id,
        )

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
        return summary(response, self._scrub)

    def _unexpected(self, response: httpx.Response, what: str) -> UnexpectedResponse:
        return unexpected(response, what, self._scrub)

    def _json_object(self, response: httpx.Response, what: str) -> dict[str, Any]:
        data = json_or_none(response)
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

    # -- sending with retries

    def _backoff(self, attempt: int) -> float:
        doublings = min(attempt - 1, _BACKOFF_DOUBLINGS_MAX)
        ceiling = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2.0**doublings)
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
        budget = self.budget
        attempt = 0
        while True:
            attempt += 1
            budget.ensure_left()  # failed attempts may have used the budget up
            ticket = self.flow.wait_turn()
            line = self._lines.mine()
            request = line.http.build_request(
                method, path, params=params, json=json_body, extensions=line.extensions
            )
            started = budget.clock()
            try:
                answer = self._attempt(line, request, what, resend_safe, capability, ticket)
            except OutcomeUnknown as exc:
                # The time lost is waiting too, though the caller resolves this by lookup.
                budget.charge_since(started, reason=str(exc))
                raise
            if isinstance(answer, httpx.Response):
                return answer
            budget.charge_since(started, reason=answer.detail)
            self._wait_to_retry(method, answer, attempt)

    def _attempt(
        self,
        line: Line,
        request: httpx.Request,
        what: str,
        resend_safe: bool,
        capability: str | None,
        ticket: Ticket,
    ) -> httpx.Response | _Retry:
        """Send the request once: the answer to interpret, or why (and how soon) to send it
        again. Raises what no retry can help with, and OutcomeUnknown when resending is unsafe.
        The flow control hears how it went.
        """
        try:
            response = read_answer(
                line.http,
                request,
                timeout_s=self._config.timeout_s,
                watchdog=line.watchdog,
                clock=self.budget.clock,
            )
        except AnswerUnusable as exc:
            self._count_request()
            self.answered = True
            detail = f"{what}: {self._scrub(str(exc))}"
            if not resend_safe:
                raise OutcomeUnknown(
                    f"{detail}; the request may have been applied: look each item up"
                ) from None
            raise UnexpectedResponse(
                f"Hybridbox gave an unusable answer to {detail}", status=None
            ) from None
        except httpx.RequestError as exc:
            if isinstance(exc, httpx.TimeoutException):
                self.flow.congested(ticket, "timeout", None)
            return self._no_answer(exc, what, resend_safe)
        self._count_request()
        self.answered = True
        return self._judge(response, what, resend_safe, capability, ticket)

    def _count_request(self) -> None:
        with self._counts:
            self.requests_sent += 1

    def _no_answer(self, exc: httpx.RequestError, what: str, resend_safe: bool) -> _Retry:
        """An attempt that got no answer: why to retry it, or raise why not."""
        if isinstance(exc, httpx.LocalProtocolError):
            raise HybridboxUnavailable(
                f"syncd could not send {what}: {self._describe(exc)}"
            ) from None
        never_sent = isinstance(exc, _NEVER_SENT)
        if not self.answered and isinstance(exc, _NO_SERVER_THERE) and (never_sent or resend_safe):
            raise self._unreachable(exc) from None
        if never_sent:
            return _Retry(
                "connect_error", f"cannot connect to {self._config.url}: {self._describe(exc)}"
            )
        self._count_request()
        reason = "timeout" if isinstance(exc, httpx.TimeoutException) else "network_error"
        detail = f"{what}: no answer ({self._describe(exc)})"
        if not resend_safe:
            raise OutcomeUnknown(
                f"{detail}; the request may have been applied: look each item up"
            ) from None
        return _Retry(reason, detail)

    def _judge(
        self,
        response: httpx.Response,
        what: str,
        resend_safe: bool,
        capability: str | None,
        ticket: Ticket,
    ) -> httpx.Response | _Retry:
        """An answer: the one to interpret, or why (and how soon) to send the request again.
        The flow control hears whether it asked us to slow down."""
        status = response.status_code
        if status != 429 and status < 500:
            self.flow.answered(ticket, response.headers, clean=True)
        if status in (401, 403):
            raise self._not_authorized(response, what, capability)
        if response.is_redirect:
            raise self._redirected(response, what)
        if status != 429 and status < 500:
            return response
        retry_after = retry_after_seconds(response)
        if status in (429, 503):
            self.flow.congested(ticket, str(status), retry_after, response.headers)
        else:
            self.flow.answered(ticket, response.headers, clean=False)
        detail = f"{what}: {self._summary(response)}"
        if not resend_safe and not (status == 429 or (status == 503 and retry_after is not None)):
            raise OutcomeUnknown(f"{detail}; the request may have been applied: look each item up")
        reason = {429: "rate_limited", 503: "unavailable"}.get(status, "server_error")
        cap = self._config.max_retry_after_s
        if retry_after is not None and retry_after > cap:
            then = f"; {self.budget.then}" if self.budget.then else ""
            raise HybridboxUnavailable(
                f"{detail}; Hybridbox asked to wait {retry_after:.0f} s before retrying, "
                f"longer than hybridbox.max_retry_after_s ({cap:g} s){then}"
            )
        return _Retry(reason, detail, status, retry_after)

    def _unreachable(self, exc: httpx.RequestError) -> HybridboxUnavailable:
        """Hybridbox was never reached: say what failed, and what in hybridbox.url to check."""
        url = self._base_url
        port = url.port or (443 if url.scheme == "https" else 80)
        causes = _causes(exc)
        if any(isinstance(cause, socket.gaierror) for cause in causes):
            problem = f"the host name {url.host} does not resolve"
            check = "the host name in hybridbox.url, and this machine's DNS"
        elif any(isinstance(cause, ConnectionRefusedError) for cause in causes):
            problem = f"nothing accepts connections on {url.host} port {port} (connection refused)"
            check = "the port in hybridbox.url, and that Hybridbox (or the emulator) runs there"
        elif any(isinstance(cause, ssl.SSLError) for cause in causes):
            problem = f"the TLS handshake failed ({self._describe(exc)})"
            check = (
                "https:// or http:// in hybridbox.url, and that this machine trusts the "
                "server's certificate"
            )
        elif isinstance(exc, httpx.ConnectTimeout):
            problem = f"no connection within {self._config.timeout_s:g} s (hybridbox.timeout_s)"
            check = "the host and port in hybridbox.url, and any firewall or proxy in between"
        elif isinstance(exc, httpx.ConnectError | httpx.ProxyError):
            problem = f"could not connect ({self._describe(exc)})"
            check = "the host and port in hybridbox.url, and any proxy in between"
        else:
            problem = f"no HTTP answer ({self._describe(exc)})"
            check = "https:// or http:// and the port in hybridbox.url"
        return HybridboxUnavailable(
            f"cannot reach Hybridbox at {self._config.url}: {problem}", hint=f"check {check}"
        )

    def _redirected(self, response: httpx.Response, what: str) -> UnexpectedResponse:
        # Only where it points, not its query: that may carry anything.
        location = response.headers.get("location", "").partition("?")[0]
        return UnexpectedResponse(
            f"Hybridbox answered {what} with {response.status_code}, a redirect to "
            f"{self._scrub(excerpt(location))}; syncd does not follow redirects (its token would "
            "go along)",
            status=response.status_code,
            hint="set hybridbox.url to the address the API answers at",
        )

    def _wait_to_retry(self, method: str, retry: _Retry, attempt: int) -> None:
        """Log the retry and wait for it, charged to the cycle's retry budget."""
        # Retry-After is a minimum; the growing backoff floor keeps a server that answers
        # "Retry-After: 0" forever from spinning the loop.
        backoff = self._backoff(attempt)
        retry_after = retry.retry_after
        wait = backoff if retry_after is None else max(retry_after, backoff / 2)
        event(
            log,
            "hybridbox.retry",
            logging.WARNING,
            method=method,
            reason=retry.reason,
            status=retry.status,
            wait_s=round(wait, 2),
            retry_after=retry_after,
            attempt=attempt,
        )
        self.budget.wait(wait, reason=retry.detail)

    def _describe(self, exc: Exception) -> str:
        text = str(exc).strip()
        return self._scrub(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it was raised from: httpx wraps httpcore's error, which wraps the OS's."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain
