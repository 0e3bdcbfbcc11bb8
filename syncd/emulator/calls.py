"""What a public route handler is given and gives back, and the JSON helpers around that.

A handler (:data:`Handler`) turns a :class:`Call` into a :class:`Reply`, or raises
:class:`ApiError`; :mod:`syncd.emulator.pipeline` turns either into the HTTP answer. The admin
API and unknown routes answer their errors with :func:`admin_error`, whose body shape does not
follow the ``error_body`` fault switch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import QueryParams
from starlette.responses import JSONResponse, Response

from syncd.emulator.stats import RequestRecord


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


Handler = Callable[[Call], Reply]


def json_response(reply: Reply) -> Response:
    return JSONResponse(reply.body, reply.status, reply.headers or None)


def json_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_request", "the request body must be a JSON object")
    return body


def positive_int(query: QueryParams, name: str, default: int) -> int:
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


def admin_error(status: int, code: str, message: str) -> Response:
    return JSONResponse({"error": {"code": code, "message": message}}, status)
