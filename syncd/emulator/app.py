"""The emulator's HTTP surface: Hybridbox's public routes and the ``/_emulator/`` admin API.

Every public request goes through :meth:`Emulator.public` in this order (each step can end it):

1. ``latency_ms`` sleep;
2. ``rate_limit_every`` → 429 with ``Retry-After``;
3. ``drop_rate`` → the connection is closed with no HTTP answer, nothing is applied;
4. ``unavailable_rate`` → 503 with ``Retry-After``; 5. ``error_rate`` → 500 (before any write);
6. bearer token → 401; account id → 404 ``account_not_found``;
7. the route itself (``forbid_create`` → 403, ``max_batch`` → 413, validation, per-item
   ``fail_rate`` in bulk);
8. after a write route answered 2xx (the write is applied): ``drop_after_write_rate`` → connection
   closed; ``error_after_write_rate`` → 500; ``timeout_after_write_rate`` → no answer for ``hang_s``
   seconds (or until the client hangs up), then the normal answer.

Steps 1-5 and 8 apply only to routes named in ``fault_routes`` (all when empty). Handlers are
synchronous, so one request's store changes are never interleaved with another's.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import QueryParams
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from syncd.emulator.faults import (
    WRITE_ROUTES,
    FaultInjector,
    FaultSettings,
)
from syncd.emulator.preload import RecordError, create_behind, load_preload
from syncd.emulator.stats import RequestRecord, Stats
from syncd.emulator.store import AddressTaken, Domain, Mailbox, Store
from syncd.emulator.validation import FieldError, check_local_part, check_name
from syncd.logs import event, get_logger

log = get_logger("syncd.emulator")

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 25
CAPABILITIES = ("account.read", "domain.read", "mailbox.read", "mailbox.create", "mailbox.update")
ACCOUNT_NAME = "Emulated account"

# Closes the connection of the request from this client address without an HTTP answer;
# returns False when the server cannot do that (then the emulator answers 500 instead).
ConnectionAborter = Callable[[tuple[str, int] | None], bool]


@dataclass(slots=True)
class Call:
    """What a route handler gets: path parameters, query, parsed JSON body."""

    params: dict[str, str]
    query: QueryParams
    body: Any
    record: RequestRecord


@dataclass(slots=True)
class Reply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class ApiError(Exception):
    """Ends a public request with an error answer."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


Handler = Callable[["Emulator", Call], Reply]


class Emulator:
    """State shared by all requests: store, faults, statistics, token."""

    def __init__(
        self,
        *,
        store: Store,
        token: str,
        faults: FaultSettings,
        preload: list[dict[str, Any]] | None = None,
        preload_path: Path | None = None,
    ) -> None:
        self.store = store
        self.account_id = store.account_id
        self._token = token.encode()
        self.initial_faults = faults
        self.faults = FaultInjector(faults)
        self.stats = Stats()
        self.preload = preload or []
        self.preload_path = preload_path or Path("<preload>")
        self.abort_connection: ConnectionAborter = lambda client: False
        self._seq = 0

    @property
    def default_domain(self) -> str:
        return next(iter(self.store.domains.values())).name

    # ================================================================ the public pipeline

    async def public(self, route: str, request: Request, handler: Handler) -> Response:
        self._seq += 1
        record = RequestRecord(
            seq=self._seq,
            route=route,
            method=request.method,
            path=request.url.path,
            status=0,
            fault=None,
            authorized=False,
            idempotency_key=request.headers.get("idempotency-key"),
        )
        faults = self.faults
        faulted = faults.applies_to(route)
        settings = faults.settings
        if faulted:
            if settings.latency_ms > 0:
                await asyncio.sleep(settings.latency_ms / 1000)
            if faults.rate_limited():
                return self._finish(record, self._throttle(429, "rate_limited"), "rate_limit")
            if faults.roll(settings.drop_rate):
                return await self._drop(request, record, "drop")
            if faults.roll(settings.unavailable_rate):
                return self._finish(record, self._throttle(503, "unavailable"), "unavailable")
            if faults.roll(settings.error_rate):
                return self._finish(record, self._internal_error(), "error")
        try:
            self._authorize(request, record)
            body = await self._json_body(request) if request.method in ("POST", "PATCH") else None
            reply = handler(
                self, Call(dict(request.path_params), request.query_params, body, record)
            )
        except ApiError as exc:
            return self._finish(record, self._error_response(exc))
        if faulted and route in WRITE_ROUTES and 200 <= reply.status < 300:
            if faults.roll(settings.drop_after_write_rate):
                return await self._drop(request, record, "drop_after_write")
            if faults.roll(settings.error_after_write_rate):
                return self._finish(record, self._internal_error(), "error_after_write")
            if faults.roll(settings.timeout_after_write_rate):
                response = self._finish(record, _json(reply), "timeout_after_write")
                await self._hang(request, settings.hang_s)
                return response
        return self._finish(record, _json(reply))

    def _finish(
        self, record: RequestRecord, response: Response, fault: str | None = None
    ) -> Response:
        record.status = response.status_code
        record.fault = fault
        self.stats.record(record)
        return response

    def _authorize(self, request: Request, record: RequestRecord) -> None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), self._token
        ):
            raise ApiError(
                401,
                "unauthorized",
                "missing or invalid bearer token",
                headers={"WWW-Authenticate": 'Bearer realm="hybridbox"'},
            )
        record.authorized = True
        if request.path_params.get("account_id", "").lower() != self.account_id:
            raise ApiError(404, "account_not_found", "no such account for this token")

    async def _json_body(self, request: Request) -> Any:
        raw = await request.body()
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ApiError(
                400, "invalid_json", f"the request body is not valid JSON: {exc}"
            ) from exc

    async def _drop(self, request: Request, record: RequestRecord, fault: str) -> Response:
        if not self.abort_connection(request.client):
            event(log, "emulator.drop_unsupported", logging.ERROR, route=record.route)
            return self._finish(
                record,
                self._error_response(
                    ApiError(500, "internal_error", "the emulator could not drop this connection")
                ),
                fault,
            )
        record.status = "dropped"
        record.fault = fault
        self.stats.record(record)
        # Wait until the server has noticed the closed socket, so that it sends nothing itself.
        await _wait_for_disconnect(request, timeout=1.0)
        return Response(status_code=204)  # never sent: the connection is gone

    async def _hang(self, request: Request, seconds: float) -> None:
        await _wait_for_disconnect(request, timeout=seconds)

    # ================================================================ error answers

    def _throttle(self, status: int, code: str) -> Response:
        settings = self.faults.settings
        if settings.retry_after_http_date:
            retry_after = formatdate(time.time() + settings.retry_after, usegmt=True)
        else:
            retry_after = str(settings.retry_after)
        message = (
            "too many requests, slow down"
            if status == 429
            else "the service is temporarily unavailable"
        )
        return self._error_response(
            ApiError(status, code, message, headers={"Retry-After": retry_after})
        )

    def _internal_error(self) -> Response:
        return self._error_response(ApiError(500, "internal_error", "an internal error occurred"))

    def _error_response(self, exc: ApiError) -> Response:
        extra = dict(exc.extra)
        headers: dict[str, str] = extra.pop("headers", {})
        style = self.faults.settings.error_body
        if style == "detail":
            return JSONResponse({"detail": exc.message}, exc.status, headers)
        if style == "text":
            return Response(f"{exc.code}: {exc.message}\n", exc.status, headers, "text/plain")
        if style == "html":
            page = f"<html><body><h1>{exc.status} {exc.code}</h1></body></html>\n"
            return Response(page, exc.status, headers, "text/html")
        error = {"code": exc.code, "message": exc.message, **extra}
        return JSONResponse({"error": error}, exc.status, headers)

    # ================================================================ public routes

    def _domain(self, value: Any) -> Domain:
        if not isinstance(value, str) or not value:
            raise ApiError(422, "invalid_request", "domain is required (its name or id)")
        domain = self.store.domain(value)
        if domain is None:
            raise ApiError(404, "domain_not_found", f"domain {value!r} is not in this account")
        return domain

    def _mailbox(self, key: str) -> Mailbox:
        mailbox = self.store.by_address(key) if "@" in key else self.store.get(key)
        if mailbox is None:
            raise ApiError(404, "mailbox_not_found", f"no mailbox {key!r}")
        return mailbox

    def _check_create_allowed(self) -> None:
        if self.faults.settings.forbid_create:
            raise ApiError(
                403,
                "forbidden",
                "the token lacks the mailbox.create capability",
                missing_capability="mailbox.create",
            )

    def bulk_create(self, call: Call) -> Reply:
        self._check_create_allowed()
        body = _object(call.body)
        domain = self._domain(body.get("domain"))
        items = body.get("items")
        if not isinstance(items, list):
            raise ApiError(422, "invalid_request", "items must be a list")
        settings = self.faults.settings
        if settings.max_batch and len(items) > settings.max_batch:
            raise ApiError(
                413,
                "batch_too_large",
                f"the batch is too large: {len(items)} items, the maximum is "
                f"{settings.max_batch} items per request",
                max_items=settings.max_batch,
            )
        roll_failures = self.faults.applies_to("bulk_create") and settings.fail_rate > 0
        created: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        with self.store.transaction():
            for index, item in enumerate(items):
                try:
                    mailbox = self._create_one(domain, item)
                    if roll_failures and self.faults.roll(settings.fail_rate):
                        raise ApiError(
                            503, settings.fail_code, "the backend is busy, try again later"
                        )
                    created.append({"index": index, "mailbox": self._commit(mailbox)})
                except ApiError as exc:
                    failed.append({"index": index, "code": exc.code, "message": exc.message})
                    self.stats.failed_items[exc.code] += 1
        stats = self.stats
        stats.bulk_requests += 1
        stats.bulk_items += len(items)
        stats.created_by_api += len(created)
        call.record.items, call.record.created, call.record.failed = (
            len(items),
            len(created),
            len(failed),
        )
        return Reply(settings.bulk_status, {"created": created, "failed": failed})

    def _create_one(self, domain: Domain, item: Any) -> _PendingMailbox:
        """Validate one item; the mailbox is created only by :meth:`_commit`."""
        if not isinstance(item, dict):
            raise ApiError(422, "invalid_request", "each item must be an object")
        try:
            local_part = check_local_part(item.get("local_part"))
            first_name = check_name(item.get("first_name"), "first_name")
            last_name = check_name(item.get("last_name"), "last_name")
        except FieldError as exc:
            raise ApiError(422, exc.code, exc.message) from exc
        address = f"{local_part}@{domain.name}"
        if self.store.by_address(address) is not None:
            raise ApiError(409, "already_exists", f"the address {address} is already taken")
        return _PendingMailbox(domain, local_part, first_name, last_name)

    def _commit(self, pending: _PendingMailbox) -> dict[str, Any]:
        try:
            mailbox = self.store.create(
                pending.domain, pending.local_part, pending.first_name, pending.last_name
            )
        except AddressTaken as exc:  # pragma: no cover - checked just before
            raise ApiError(409, "already_exists", f"the address {exc} is already taken") from exc
        return mailbox.to_json()

    def create(self, call: Call) -> Reply:
        self._check_create_allowed()
        body = _object(call.body)
        domain = self._domain(body.get("domain"))
        pending = self._create_one(domain, body)
        with self.store.transaction():
            mailbox = self._commit(pending)
        self.stats.created_by_api += 1
        return Reply(201, mailbox)

    def list_mailboxes(self, call: Call) -> Reply:
        query = call.query
        page = _positive_int(query, "page", 1)
        page_size = _positive_int(query, "page_size", DEFAULT_PAGE_SIZE)
        if page_size > MAX_PAGE_SIZE:
            if self.faults.settings.page_size_overflow == "reject":
                raise ApiError(422, "invalid_request", f"page_size must be at most {MAX_PAGE_SIZE}")
            page_size = MAX_PAGE_SIZE
        domain = self._domain(query["domain"]) if "domain" in query else None
        items, total = self.store.page(
            domain=domain,
            workspace_id=query.get("workspace_id"),
            search=query.get("search"),
            offset=(page - 1) * page_size,
            limit=page_size,
        )
        return Reply(
            200,
            {
                "items": [mailbox.to_json() for mailbox in items],
                "page": page,
                "page_size": page_size,
                "total": total,
            },
        )

    def get(self, call: Call) -> Reply:
        return Reply(200, self._mailbox(call.params["mailbox"]).to_json())

    def rename(self, call: Call) -> Reply:
        mailbox = self._mailbox(call.params["mailbox"])
        body = _object(call.body)
        unknown = sorted(set(body) - {"first_name", "last_name"})
        if unknown:
            raise ApiError(
                422,
                "invalid_request",
                f"only first_name and last_name can be changed, not {', '.join(unknown)}",
            )
        if not body:
            raise ApiError(422, "invalid_request", "give first_name and/or last_name")
        try:
            first = check_name(body["first_name"], "first_name") if "first_name" in body else None
            last = check_name(body["last_name"], "last_name") if "last_name" in body else None
        except FieldError as exc:
            raise ApiError(422, exc.code, exc.message) from exc
        with self.store.transaction():
            self.store.rename(mailbox, first, last)
        self.stats.renamed += 1
        return Reply(200, mailbox.to_json())

    def add_alias(self, call: Call) -> Reply:
        mailbox = self._mailbox(call.params["mailbox"])
        body = _object(call.body)
        alias = body.get("alias")
        is_catch_all = body.get("is_catch_all", False)
        if not isinstance(is_catch_all, bool):
            raise ApiError(422, "invalid_request", "is_catch_all must be true or false")
        if not isinstance(alias, str) or not alias:
            raise ApiError(422, "invalid_request", "alias is required")
        local_part, _, domain_name = alias.partition("@")
        domain = self.store.domain(domain_name) if domain_name else mailbox.domain
        if domain is None:
            raise ApiError(
                422, "invalid_request", f"the alias domain {domain_name!r} is not in this account"
            )
        try:
            check_local_part(local_part, "alias")
        except FieldError as exc:
            raise ApiError(422, exc.code, exc.message) from exc
        address = f"{local_part}@{domain.name}"
        try:
            with self.store.transaction():
                self.store.add_alias(mailbox, address, is_catch_all)
        except AddressTaken as exc:
            raise ApiError(
                409, "already_exists", f"the address {address} is already taken"
            ) from exc
        self.stats.aliases_added += 1
        return Reply(201, mailbox.to_json())

    def get_domain(self, call: Call) -> Reply:
        return Reply(200, self._domain(call.params["domain"]).to_json())

    def get_account(self, call: Call) -> Reply:
        forbid = self.faults.settings.forbid_create
        return Reply(
            200,
            {
                "id": self.account_id,
                "name": ACCOUNT_NAME,
                "status": "active",
                "capabilities": [c for c in CAPABILITIES if not (forbid and c == "mailbox.create")],
                "domains": [domain.name for domain in self.store.domains.values()],
            },
        )

    # ================================================================ admin API

    async def admin_get_faults(self, request: Request) -> Response:
        return JSONResponse(self.faults.settings.as_dict())

    async def admin_put_faults(self, request: Request) -> Response:
        try:
            changes = await request.json()
        except json.JSONDecodeError as exc:
            return _admin_error(400, "invalid_json", f"the body is not valid JSON: {exc}")
        if not isinstance(changes, dict):
            return _admin_error(400, "invalid_request", "the body must be an object of faults")
        try:
            settings = self.faults.settings.updated(changes)
        except ValueError as exc:
            return _admin_error(400, "invalid_fault", str(exc))
        self.faults.replace(settings)
        event(
            log, "emulator.faults_changed", **{k.replace("-", "_"): v for k, v in changes.items()}
        )
        return JSONResponse(settings.as_dict())

    async def admin_list_mailboxes(self, request: Request) -> Response:
        domain_name = request.query_params.get("domain")
        mailboxes = list(self.store.all())
        if domain_name:
            domain = self.store.domain(domain_name)
            mailboxes = [m for m in mailboxes if domain is not None and m.domain is domain]
        return JSONResponse(
            {"items": [mailbox.to_json() for mailbox in mailboxes], "total": len(mailboxes)}
        )

    async def admin_add_mailboxes(self, request: Request) -> Response:
        try:
            body = await request.json()
        except json.JSONDecodeError as exc:
            return _admin_error(400, "invalid_json", f"the body is not valid JSON: {exc}")
        if isinstance(body, dict) and isinstance(body.get("items"), list):
            body = body["items"]
        if isinstance(body, list):
            created: list[dict[str, Any]] = []
            failed: list[dict[str, Any]] = []
            with self.store.transaction():
                for index, record in enumerate(body):
                    try:
                        mailbox = create_behind(self.store, record, self.default_domain)
                    except RecordError as exc:
                        failed.append({"index": index, "code": exc.code, "message": exc.message})
                        continue
                    created.append({"index": index, "mailbox": mailbox.to_json()})
            self.stats.created_behind += len(created)
            return JSONResponse({"created": created, "failed": failed})
        try:
            with self.store.transaction():
                mailbox = create_behind(self.store, body, self.default_domain)
        except RecordError as exc:
            status = {"already_exists": 409, "domain_not_found": 404}.get(exc.code, 422)
            return _admin_error(status, exc.code, exc.message)
        self.stats.created_behind += 1
        return JSONResponse(mailbox.to_json(), 201)

    async def admin_stats(self, request: Request) -> Response:
        return JSONResponse(self.stats.to_json(len(self.store)))

    async def admin_requests(self, request: Request) -> Response:
        records = [record.to_json() for record in self.stats.recent]
        return JSONResponse({"items": records, "total": self.stats.requests})

    async def admin_info(self, request: Request) -> Response:
        return JSONResponse(
            {
                "account_id": self.account_id,
                "domains": [domain.to_json() for domain in self.store.domains.values()],
                "mailboxes": len(self.store),
                "persistent": self.store.journal is not None,
            }
        )

    async def admin_reset(self, request: Request) -> Response:
        """``POST /_emulator/reset`` ``{"mailboxes", "faults", "stats": bool}`` (all true by
        default) resets those; ``{"keep": N}`` instead keeps the first N mailboxes created and
        forgets the later ones (the bench repeats a run from the same point this way)."""
        raw = await request.body()
        try:
            parts = json.loads(raw) if raw.strip() else {}
        except json.JSONDecodeError as exc:
            return _admin_error(400, "invalid_json", f"the body is not valid JSON: {exc}")
        if not isinstance(parts, dict):
            return _admin_error(400, "invalid_request", "the body must be an object")
        keep = parts.get("keep")
        if keep is not None:
            # {"keep": N}: back to the first N mailboxes created, whatever "mailboxes" says.
            if not isinstance(keep, int) or isinstance(keep, bool) or keep < 0:
                return _admin_error(400, "invalid_request", "keep must be a whole number >= 0")
            self.store.truncate(keep)
        elif parts.get("mailboxes", True):
            self.store.clear()
            load_preload(self.store, self.preload, self.default_domain, self.preload_path)
        if parts.get("faults", True):
            self.faults = FaultInjector(self.initial_faults)
        if parts.get("stats", True):
            self.stats = Stats()
            self._seq = 0
        event(log, "emulator.reset", **{key: bool(parts.get(key, True)) for key in _RESETTABLE})
        return JSONResponse({"reset": {key: bool(parts.get(key, True)) for key in _RESETTABLE}})

    # ================================================================ the ASGI app

    def app(self) -> Starlette:
        prefix = "/v1/public/accounts/{account_id}"

        def public(route: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
            async def endpoint(request: Request) -> Response:
                return await self.public(route, request, handler)

            return endpoint

        routes = [
            Route(
                f"{prefix}/mailboxes/bulk",
                public("bulk_create", Emulator.bulk_create),
                methods=["POST"],
            ),
            Route(f"{prefix}/mailboxes", public("create", Emulator.create), methods=["POST"]),
            Route(f"{prefix}/mailboxes", public("list", Emulator.list_mailboxes), methods=["GET"]),
            Route(f"{prefix}/mailboxes/{{mailbox}}", public("get", Emulator.get), methods=["GET"]),
            Route(
                f"{prefix}/mailboxes/{{mailbox}}",
                public("rename", Emulator.rename),
                methods=["PATCH"],
            ),
            Route(
                f"{prefix}/mailboxes/{{mailbox}}/aliases",
                public("add_alias", Emulator.add_alias),
                methods=["POST"],
            ),
            Route(
                f"{prefix}/domains/{{domain}}",
                public("get_domain", Emulator.get_domain),
                methods=["GET"],
            ),
            Route(prefix, public("get_account", Emulator.get_account), methods=["GET"]),
            Route("/_emulator", self.admin_info, methods=["GET"]),
            Route("/_emulator/faults", self.admin_get_faults, methods=["GET"]),
            Route("/_emulator/faults", self.admin_put_faults, methods=["PUT", "PATCH"]),
            Route("/_emulator/mailboxes", self.admin_list_mailboxes, methods=["GET"]),
            Route("/_emulator/mailboxes", self.admin_add_mailboxes, methods=["POST"]),
            Route("/_emulator/stats", self.admin_stats, methods=["GET"]),
            Route("/_emulator/requests", self.admin_requests, methods=["GET"]),
            Route("/_emulator/reset", self.admin_reset, methods=["POST"]),
        ]
        return Starlette(
            routes=routes,
            exception_handlers={404: _not_found, 405: _method_not_allowed},
        )


_RESETTABLE = ("mailboxes", "faults", "stats")


@dataclass(slots=True)
class _PendingMailbox:
    domain: Domain
    local_part: str
    first_name: str
    last_name: str


def _json(reply: Reply) -> Response:
    return JSONResponse(reply.body, reply.status, reply.headers or None)


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_request", "the request body must be a JSON object")
    return body


def _positive_int(query: QueryParams, name: str, default: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ApiError(422, "invalid_request", f"{name} must be a whole number of 1 or more")
    return value


def _admin_error(status: int, code: str, message: str) -> Response:
    return JSONResponse({"error": {"code": code, "message": message}}, status)


async def _not_found(request: Request, exc: Exception) -> Response:
    return _admin_error(404, "not_found", f"no route {request.method} {request.url.path}")


async def _method_not_allowed(request: Request, exc: Exception) -> Response:
    allow = exc.headers.get("Allow", "") if isinstance(exc, HTTPException) and exc.headers else ""
    response = _admin_error(
        405, "method_not_allowed", f"{request.method} is not allowed on {request.url.path}"
    )
    if allow:
        response.headers["Allow"] = allow
    return response


async def _wait_for_disconnect(request: Request, timeout: float) -> None:
    """Return when the client has gone away, or after ``timeout`` seconds."""

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(disconnected(), timeout)
