"""The emulator's HTTP surface: Hybridbox's public routes and the ``/_emulator/`` admin API.

:class:`Emulator` wires the parts together and holds the route table; each part has a module:

- :mod:`syncd.emulator.state`: what all requests share (store, live faults, statistics, token);
- :mod:`syncd.emulator.pipeline`: the steps around every public request (faults in their order,
  authorization, error answers, statistics);
- :mod:`syncd.emulator.api`: the public route handlers;
- :mod:`syncd.emulator.admin`: the ``/_emulator/`` endpoints;
- :mod:`syncd.emulator.calls`: ``Call``, ``Reply``, ``ApiError`` and the JSON helpers they share.

The parts are separate classes each given the one :class:`~syncd.emulator.state.EmulatorState`
rather than mixins of one big class: every attribute then has one owner, a handler's inputs are
visible from its class, and the only state that changes hands (a reset replacing the faults and
statistics) goes through an object all of them read.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from syncd.emulator.admin import AdminApi
from syncd.emulator.api import PublicApi
from syncd.emulator.calls import Handler, admin_error
from syncd.emulator.faults import FaultSettings
from syncd.emulator.pipeline import ConnectionAborter, PublicPipeline
from syncd.emulator.state import EmulatorState
from syncd.emulator.store import Store

__all__ = ["Emulator"]


class Emulator:
    """One emulated Hybridbox account; :meth:`app` is its ASGI application."""

    def __init__(
        self,
        *,
        store: Store,
        token: str,
        faults: FaultSettings,
        preload: list[dict[str, Any]] | None = None,
        preload_path: Path | None = None,
    ) -> None:
        self.state = EmulatorState(
            store=store, token=token, faults=faults, preload=preload, preload_path=preload_path
        )
        self.pipeline = PublicPipeline(self.state)
        self.api = PublicApi(self.state)
        self.admin = AdminApi(self.state)

    @property
    def abort_connection(self) -> ConnectionAborter:
        return self.pipeline.abort_connection

    @abort_connection.setter
    def abort_connection(self, aborter: ConnectionAborter) -> None:
        self.pipeline.abort_connection = aborter

    def app(self) -> Starlette:
        prefix = "/v1/public/accounts/{account_id}"
        api, admin = self.api, self.admin

        def public(route: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
            async def endpoint(request: Request) -> Response:
                return await self.pipeline.run(route, request, handler)

            return endpoint

        routes = [
            Route(
                f"{prefix}/mailboxes/bulk",
                public("bulk_create", api.bulk_create),
                methods=["POST"],
            ),
            Route(f"{prefix}/mailboxes", public("create", api.create), methods=["POST"]),
            Route(f"{prefix}/mailboxes", public("list", api.list_mailboxes), methods=["GET"]),
            Route(f"{prefix}/mailboxes/{{mailbox}}", public("get", api.get), methods=["GET"]),
            Route(
                f"{prefix}/mailboxes/{{mailbox}}",
                public("rename", api.rename),
                methods=["PATCH"],
            ),
            Route(
                f"{prefix}/mailboxes/{{mailbox}}/aliases",
                public("add_alias", api.add_alias),
                methods=["POST"],
            ),
            Route(
                f"{prefix}/domains/{{domain}}",
                public("get_domain", api.get_domain),
                methods=["GET"],
            ),
            Route(prefix, public("get_account", api.get_account), methods=["GET"]),
            Route("/_emulator", admin.info, methods=["GET"]),
            Route("/_emulator/faults", admin.get_faults, methods=["GET"]),
            Route("/_emulator/faults", admin.put_faults, methods=["PUT", "PATCH"]),
            Route("/_emulator/mailboxes", admin.list_mailboxes, methods=["GET"]),
            Route("/_emulator/mailboxes", admin.add_mailboxes, methods=["POST"]),
            Route("/_emulator/stats", admin.stats, methods=["GET"]),
            Route("/_emulator/requests", admin.requests, methods=["GET"]),
            Route("/_emulator/reset", admin.reset, methods=["POST"]),
        ]
        return Starlette(
            routes=routes,
            exception_handlers={404: _not_found, 405: _method_not_allowed},
        )


async def _not_found(request: Request, exc: Exception) -> Response:
    return admin_error(404, "not_found", f"no route {request.method} {request.url.path}")


async def _method_not_allowed(request: Request, exc: Exception) -> Response:
    allow = exc.headers.get("Allow", "") if isinstance(exc, HTTPException) and exc.headers else ""
    response = admin_error(
        405, "method_not_allowed", f"{request.method} is not allowed on {request.url.path}"
    )
    if allow:
        response.headers["Allow"] = allow
    return response
