"""The emulator's own API under ``/_emulator/``, for tests, the bench and people trying syncd.

It changes the faults, creates mailboxes "behind syncd's back", shows statistics and the recent
requests, and resets all of that. These endpoints need no token, are never faulted and are not
counted in the statistics; their errors are always ``{"error": {"code", "message"}}`` whatever
``error_body`` says.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from syncd.emulator.calls import admin_error
from syncd.emulator.faults import FaultInjector
from syncd.emulator.preload import RecordError, create_behind, load_preload
from syncd.emulator.state import EmulatorState
from syncd.emulator.stats import Stats
from syncd.logs import event, get_logger

log = get_logger("syncd.emulator")

_RESETTABLE = ("mailboxes", "faults", "stats")


class AdminApi:
    """The ``/_emulator/`` endpoints, one method per route."""

    def __init__(self, state: EmulatorState) -> None:
        self._state = state

    async def get_faults(self, request: Request) -> Response:
        return JSONResponse(self._state.faults.settings.as_dict())

    async def put_faults(self, request: Request) -> Response:
        try:
            changes = await request.json()
        except json.JSONDecodeError as exc:
            return admin_error(400, "invalid_json", f"the body is not valid JSON: {exc}")
        if not isinstance(changes, dict):
            return admin_error(400, "invalid_request", "the body must be an object of faults")
        try:
            settings = self._state.faults.settings.updated(changes)
        except ValueError as exc:
            return admin_error(400, "invalid_fault", str(exc))
        self._state.faults.replace(settings)
        event(
            log, "emulator.faults_changed", **{k.replace("-", "_"): v for k, v in changes.items()}
        )
        return JSONResponse(settings.as_dict())

    async def list_mailboxes(self, request: Request) -> Response:
        domain_name = request.query_params.get("domain")
        mailboxes = list(self._state.store.all())
        if domain_name:
            domain = self._state.store.domain(domain_name)
            mailboxes = [m for m in mailboxes if domain is not None and m.domain is domain]
        return JSONResponse(
            {"items": [mailbox.to_json() for mailbox in mailboxes], "total": len(mailboxes)}
        )

    async def add_mailboxes(self, request: Request) -> Response:
        state = self._state
        try:
            body = await request.json()
        except json.JSONDecodeError as exc:
            return admin_error(400, "invalid_json", f"the body is not valid JSON: {exc}")
        if isinstance(body, dict) and isinstance(body.get("items"), list):
            body = body["items"]
        if isinstance(body, list):
            created: list[dict[str, Any]] = []
            failed: list[dict[str, Any]] = []
            with state.store.transaction():
                for index, record in enumerate(body):
                    try:
                        mailbox = create_behind(state.store, record, state.default_domain)
                    except RecordError as exc:
                        failed.append({"index": index, "code": exc.code, "message": exc.message})
                        continue
                    created.append({"index": index, "mailbox": mailbox.to_json()})
            state.stats.created_behind += len(created)
            return JSONResponse({"created": created, "failed": failed})
        try:
            with state.store.transaction():
                mailbox = create_behind(state.store, body, state.default_domain)
        except RecordError as exc:
            status = {"already_exists": 409, "domain_not_found": 404}.get(exc.code, 422)
            return admin_error(status, exc.code, exc.message)
        state.stats.created_behind += 1
        return JSONResponse(mailbox.to_json(), 201)

    async def stats(self, request: Request) -> Response:
        return JSONResponse(self._state.stats.to_json(len(self._state.store)))

    async def requests(self, request: Request) -> Response:
        records = [record.to_json() for record in self._state.stats.recent]
        return JSONResponse({"items": records, "total": self._state.stats.requests})

    async def info(self, request: Request) -> Response:
        state = self._state
        return JSONResponse(
            {
                "account_id": state.account_id,
                "domains": [domain.to_json() for domain in state.store.domains.values()],
                "mailboxes": len(state.store),
                "persistent": state.store.journal is not None,
            }
        )

    async def reset(self, request: Request) -> Response:
        """``POST /_emulator/reset`` ``{"mailboxes", "faults", "stats": bool}`` (all true by
        default) resets those; ``{"keep": N}`` instead keeps the first N mailboxes created and
        forgets the later ones (the bench repeats a run from the same point this way)."""
        state = self._state
        raw = await request.body()
        try:
            parts = json.loads(raw) if raw.strip() else {}
        except json.JSONDecodeError as exc:
            return admin_error(400, "invalid_json", f"the body is not valid JSON: {exc}")
        if not isinstance(parts, dict):
            return admin_error(400, "invalid_request", "the body must be an object")
        keep = parts.get("keep")
        if keep is not None:
            # {"keep": N}: back to the first N mailboxes created, whatever "mailboxes" says.
            if not isinstance(keep, int) or isinstance(keep, bool) or keep < 0:
                return admin_error(400, "invalid_request", "keep must be a whole number >= 0")
            state.store.truncate(keep)
        elif parts.get("mailboxes", True):
            state.store.clear()
            load_preload(state.store, state.preload, state.default_domain, state.preload_path)
        if parts.get("faults", True):
            state.faults = FaultInjector(state.initial_faults)
        if parts.get("stats", True):
            state.stats = Stats()
            state.seq = 0
        event(log, "emulator.reset", **{key: bool(parts.get(key, True)) for key in _RESETTABLE})
        return JSONResponse({"reset": {key: bool(parts.get(key, True)) for key in _RESETTABLE}})
