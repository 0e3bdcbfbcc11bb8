"""Hybridbox's public mailbox API: the route handlers behind ``/v1/public/accounts/{id}/...``.

Each handler turns a :class:`~syncd.emulator.calls.Call` into a
:class:`~syncd.emulator.calls.Reply` or raises :class:`~syncd.emulator.calls.ApiError`; faults
around the handler, authorization and the HTTP answer are :mod:`syncd.emulator.pipeline`'s job.
Only the faults that shape a route's own answer are decided here (``forbid_create``,
``max_batch``, ``fail_rate``, ``shift_created``, ``bulk_status``, ``page_size_overflow``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from syncd.emulator.calls import ApiError, Call, Reply, json_object, positive_int
from syncd.emulator.state import EmulatorState
from syncd.emulator.store import AddressTaken, Domain, Mailbox
from syncd.emulator.validation import FieldError, check_local_part, check_name

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 25
CAPABILITIES = ("account.read", "domain.read", "mailbox.read", "mailbox.create", "mailbox.update")
ACCOUNT_NAME = "Emulated account"


class PublicApi:
    """The public routes' handlers, one method per route."""

    def __init__(self, state: EmulatorState) -> None:
        self._state = state

    def _domain(self, value: Any) -> Domain:
        if not isinstance(value, str) or not value:
            raise ApiError(422, "invalid_request", "domain is required (its name or id)")
        domain = self._state.store.domain(value)
        if domain is None:
            raise ApiError(404, "domain_not_found", f"domain {value!r} is not in this account")
        return domain

    def _mailbox(self, key: str) -> Mailbox:
        mailbox = self._state.store.by_address(key) if "@" in key else self._state.store.get(key)
        if mailbox is None:
            raise ApiError(404, "mailbox_not_found", f"no mailbox {key!r}")
        return mailbox

    def _check_create_allowed(self) -> None:
        if self._state.faults.settings.forbid_create:
            raise ApiError(
                403,
                "forbidden",
                "the token lacks the mailbox.create capability",
                missing_capability="mailbox.create",
            )

    def bulk_create(self, call: Call) -> Reply:
        self._check_create_allowed()
        body = json_object(call.body)
        domain = self._domain(body.get("domain"))
        items = body.get("items")
        if not isinstance(items, list):
            raise ApiError(422, "invalid_request", "items must be a list")
        settings = self._state.faults.settings
        if settings.max_batch and len(items) > settings.max_batch:
            raise ApiError(
                413,
                "batch_too_large",
                f"the batch is too large: {len(items)} items, the maximum is "
                f"{settings.max_batch} items per request",
                max_items=settings.max_batch,
            )
        roll_failures = self._state.faults.applies_to("bulk_create") and settings.fail_rate > 0
        created: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        with self._state.store.transaction():
            for index, item in enumerate(items):
                try:
                    mailbox = self._create_one(domain, item)
                    if roll_failures and self._state.faults.roll(settings.fail_rate):
                        raise ApiError(
                            503, settings.fail_code, "the backend is busy, try again later"
                        )
                    created.append({"index": index, "mailbox": self._commit(mailbox)})
                except ApiError as exc:
                    failed.append({"index": index, "code": exc.code, "message": exc.message})
                    self._state.stats.failed_items[exc.code] += 1
        stats = self._state.stats
        if settings.shift_created and self._state.faults.applies_to("bulk_create") and created:
            # Item i is answered with item i+1's mailbox (the last with the first's): every
            # mailbox exists, each reported at the wrong index.
            mailboxes = [entry["mailbox"] for entry in created]
            for entry, mailbox in zip(created, mailboxes[1:] + mailboxes[:1], strict=True):
                entry["mailbox"] = mailbox
            stats.faults["shift_created"] += 1
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
        if self._state.store.by_address(address) is not None:
            raise ApiError(409, "already_exists", f"the address {address} is already taken")
        return _PendingMailbox(domain, local_part, first_name, last_name)

    def _commit(self, pending: _PendingMailbox) -> dict[str, Any]:
        try:
            mailbox = self._state.store.create(
                pending.domain, pending.local_part, pending.first_name, pending.last_name
            )
        except AddressTaken as exc:  # pragma: no cover - checked just before
            raise ApiError(409, "already_exists", f"the address {exc} is already taken") from exc
        return mailbox.to_json()

    def create(self, call: Call) -> Reply:
        self._check_create_allowed()
        body = json_object(call.body)
        domain = self._domain(body.get("domain"))
        pending = self._create_one(domain, body)
        with self._state.store.transaction():
            mailbox = self._commit(pending)
        self._state.stats.created_by_api += 1
        return Reply(201, mailbox)

    def list_mailboxes(self, call: Call) -> Reply:
        query = call.query
        page = positive_int(query, "page", 1)
        page_size = positive_int(query, "page_size", DEFAULT_PAGE_SIZE)
        if page_size > MAX_PAGE_SIZE:
            if self._state.faults.settings.page_size_overflow == "reject":
                raise ApiError(422, "invalid_request", f"page_size must be at most {MAX_PAGE_SIZE}")
            page_size = MAX_PAGE_SIZE
        domain = self._domain(query["domain"]) if "domain" in query else None
        items, total = self._state.store.page(
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
        body = json_object(call.body)
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
        with self._state.store.transaction():
            self._state.store.rename(mailbox, first, last)
        self._state.stats.renamed += 1
        return Reply(200, mailbox.to_json())

    def add_alias(self, call: Call) -> Reply:
        mailbox = self._mailbox(call.params["mailbox"])
        body = json_object(call.body)
        alias = body.get("alias")
        is_catch_all = body.get("is_catch_all", False)
        if not isinstance(is_catch_all, bool):
            raise ApiError(422, "invalid_request", "is_catch_all must be true or false")
        if not isinstance(alias, str) or not alias:
            raise ApiError(422, "invalid_request", "alias is required")
        local_part, _, domain_name = alias.partition("@")
        domain = self._state.store.domain(domain_name) if domain_name else mailbox.domain
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
            with self._state.store.transaction():
                self._state.store.add_alias(mailbox, address, is_catch_all)
        except AddressTaken as exc:
            raise ApiError(
                409, "already_exists", f"the address {address} is already taken"
            ) from exc
        self._state.stats.aliases_added += 1
        return Reply(201, mailbox.to_json())

    def get_domain(self, call: Call) -> Reply:
        return Reply(200, self._domain(call.params["domain"]).to_json())

    def get_account(self, call: Call) -> Reply:
        forbid = self._state.faults.settings.forbid_create
        return Reply(
            200,
            {
                "id": self._state.account_id,
                "name": ACCOUNT_NAME,
                "status": "active",
                "capabilities": [c for c in CAPABILITIES if not (forbid and c == "mailbox.create")],
                "domains": [domain.name for domain in self._state.store.domains.values()],
            },
        )


@dataclass(slots=True)
class _PendingMailbox:
    domain: Domain
    local_part: str
    first_name: str
    last_name: str
