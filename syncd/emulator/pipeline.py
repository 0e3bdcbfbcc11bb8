"""The steps every public request goes through around its route handler, and the error answers.

Every public request goes through :meth:`PublicPipeline.run` in this order (each step can end it):

0. ``rate_limit`` → 429 with ``Retry-After`` (whole seconds until the bucket has a token, at least
   1) when its token bucket is empty; ``max_concurrent`` → 503 with ``Retry-After`` when that many
   requests are being served already (a request is being served from here until its answer is
   ready, latency included, so concurrent requests wait side by side, not in a queue);
1. ``latency_ms`` (plus up to ``latency_jitter_ms``) sleep;
2. ``rate_limit_every`` → 429 with ``Retry-After``;
3. ``drop_rate`` → the connection is closed with no HTTP answer, nothing is applied;
4. ``unavailable_rate`` → 503 with ``Retry-After``; 5. ``error_rate`` → 500 (before any write);
6. bearer token → 401; account id → 404 ``account_not_found``;
7. the route itself (``forbid_create`` → 403, ``max_batch`` → 413, validation, per-item
   ``fail_rate`` in bulk);
8. after a write route answered 2xx (the write is applied): ``drop_after_write_rate`` → connection
   closed; ``error_after_write_rate`` → 500; ``timeout_after_write_rate`` → no answer for ``hang_s``
   seconds (or until the client hangs up), then the normal answer;
9. whatever the answer, ``drip_bytes_per_s`` sends its body at that many bytes a second (the
   headers at once), until it is all sent or the client hangs up; ``rate_limit_headers`` adds
   ``X-RateLimit-Limit`` and ``X-RateLimit-Remaining`` to it.

Steps 0-5, 8 and 9 apply only to routes named in ``fault_routes`` (all when empty). Handlers are
synchronous, so one request's store changes are never interleaved with another's.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from email.utils import formatdate
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from syncd.emulator.calls import ApiError, Call, Handler, json_response
from syncd.emulator.faults import WRITE_ROUTES
from syncd.emulator.state import EmulatorState
from syncd.emulator.stats import RequestRecord
from syncd.logs import event, get_logger

log = get_logger("syncd.emulator")

# Closes the connection of the request from this client address without an HTTP answer;
# returns False when the server cannot do that (then the emulator answers 500 instead).
ConnectionAborter = Callable[[tuple[str, int] | None], bool]

# A dripping body is sent in pieces this many seconds apart (one byte at a time when slower).
DRIP_TICK_S = 0.1


class PublicPipeline:
    """Runs one public request: faults, authorization, the handler, statistics, the answer."""

    def __init__(self, state: EmulatorState) -> None:
        self._state = state
        # Set by the server once it can abort connections (see syncd.emulator.server).
        self.abort_connection: ConnectionAborter = lambda client: False
        self._in_service = 0

    async def run(self, route: str, request: Request, handler: Handler) -> Response:
        response = await self._respond(route, request, handler)
        faults = self._state.faults
        if faults.settings.rate_limit_headers and faults.bucket and faults.applies_to(route):
            response.headers["X-RateLimit-Limit"] = f"{faults.bucket.rate:g}"
            response.headers["X-RateLimit-Remaining"] = str(faults.bucket.remaining)
        rate = faults.settings.drip_bytes_per_s
        if rate > 0 and faults.applies_to(route):
            self._state.stats.faults["drip"] += 1
            return _dripping(response, rate)
        return response

    async def _respond(self, route: str, request: Request, handler: Handler) -> Response:
        state = self._state
        state.seq += 1
        record = RequestRecord(
            seq=state.seq,
            route=route,
            method=request.method,
            path=request.url.path,
            status=0,
            fault=None,
            authorized=False,
            idempotency_key=request.headers.get("idempotency-key"),
        )
        faulted = state.faults.applies_to(route)
        if faulted:
            refused = self._refusal(record)
            if refused is not None:
                return refused
        self._in_service += 1
        state.stats.max_in_service = max(state.stats.max_in_service, self._in_service)
        try:
            return await self._serve(route, request, handler, record, faulted=faulted)
        finally:
            self._in_service -= 1

    def _refusal(self, record: RequestRecord) -> Response | None:
        """A request refused on arrival: over the rate limit, or too many being served."""
        faults = self._state.faults
        if faults.bucket is not None:
            wait = faults.bucket.take()
            if wait is not None:
                # Whole seconds, rounded up: asked to wait less, a client would come too early.
                retry_after = max(1, math.ceil(wait))
                return self._finish(
                    record, self._throttle(429, "rate_limited", retry_after), "rate_limit"
                )
        limit = faults.settings.max_concurrent
        if limit and self._in_service >= limit:
            return self._finish(record, self._throttle(503, "unavailable"), "max_concurrent")
        return None

    async def _serve(
        self,
        route: str,
        request: Request,
        handler: Handler,
        record: RequestRecord,
        *,
        faulted: bool,
    ) -> Response:
        faults = self._state.faults
        settings = faults.settings
        if faulted:
            latency = faults.latency_s()
            if latency > 0:
                await asyncio.sleep(latency)
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
            reply = handler(Call(dict(request.path_params), request.query_params, body, record))
        except ApiError as exc:
            return self._finish(record, self._error_response(exc))
        if faulted and route in WRITE_ROUTES and 200 <= reply.status < 300:
            if faults.roll(settings.drop_after_write_rate):
                return await self._drop(request, record, "drop_after_write")
            if faults.roll(settings.error_after_write_rate):
                return self._finish(record, self._internal_error(), "error_after_write")
            if faults.roll(settings.timeout_after_write_rate):
                response = self._finish(record, json_response(reply), "timeout_after_write")
                await self._hang(request, settings.hang_s)
                return response
        return self._finish(record, json_response(reply))

    def _finish(
        self, record: RequestRecord, response: Response, fault: str | None = None
    ) -> Response:
        record.status = response.status_code
        record.fault = fault
        self._state.stats.record(record)
        return response

    def _authorize(self, request: Request, record: RequestRecord) -> None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), self._state.token
        ):
            raise ApiError(
                401,
                "unauthorized",
                "missing or invalid bearer token",
                headers={"WWW-Authenticate": 'Bearer realm="hybridbox"'},
            )
        record.authorized = True
        if request.path_params.get("account_id", "").lower() != self._state.account_id:
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
        self._state.stats.record(record)
        # Wait until the server has noticed the closed socket, so that it sends nothing itself.
        await _wait_for_disconnect(request, timeout=1.0)
        return Response(status_code=204)  # never sent: the connection is gone

    async def _hang(self, request: Request, seconds: float) -> None:
        await _wait_for_disconnect(request, timeout=seconds)

    # ================================================================ error answers

    def _throttle(self, status: int, code: str, seconds: int | None = None) -> Response:
        settings = self._state.faults.settings
        seconds = settings.retry_after if seconds is None else seconds
        if settings.retry_after_http_date:
            retry_after = formatdate(time.time() + seconds, usegmt=True)
        else:
            retry_after = str(seconds)
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
        style = self._state.faults.settings.error_body
        if style == "detail":
            return JSONResponse({"detail": exc.message}, exc.status, headers)
        if style == "text":
            return Response(f"{exc.code}: {exc.message}\n", exc.status, headers, "text/plain")
        if style == "html":
            page = f"<html><body><h1>{exc.status} {exc.code}</h1></body></html>\n"
            return Response(page, exc.status, headers, "text/html")
        error = {"code": exc.code, "message": exc.message, **extra}
        return JSONResponse({"error": error}, exc.status, headers)


def _dripping(response: Response, bytes_per_s: float) -> Response:
    """The same answer, its body sent at ``bytes_per_s`` (chunked: no Content-Length)."""
    body = bytes(response.body)
    piece = max(1, int(bytes_per_s * DRIP_TICK_S))

    async def drip() -> AsyncIterator[bytes]:
        for start in range(0, len(body), piece):
            chunk = body[start : start + piece]
            yield chunk
            await asyncio.sleep(len(chunk) / bytes_per_s)

    headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
    # A client that hangs up ends the drip: Starlette stops iterating on a disconnect.
    return StreamingResponse(drip(), status_code=response.status_code, headers=headers)


async def _wait_for_disconnect(request: Request, timeout: float) -> None:
    """Return when the client has gone away, or after ``timeout`` seconds."""

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(disconnected(), timeout)
