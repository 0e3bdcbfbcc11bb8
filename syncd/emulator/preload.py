"""Mailboxes created "behind syncd's back".

They come from a ``--preload`` file or from ``POST /_emulator/mailboxes``.

One record describes one mailbox. Keys (CSV columns or JSON object keys):

- ``local_part`` and optionally ``domain`` (name or id; default the first ``--domain``), or instead
  ``email`` / ``address`` / ``primary_email`` with the full address;
- ``first_name``, ``last_name`` (required);
- optional ``aliases`` (JSON: a list of addresses or of ``{"alias", "is_catch_all"}``; CSV:
  addresses separated by ``;``; an alias without ``@`` is in the mailbox's domain);
- optional ``id`` (a UUID) and ``created_at``.

The same validation rules as the public API apply. A JSON file holds a list of records or
``{"mailboxes": [...]}``; any other file is read as CSV with a header row.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from syncd.emulator.store import AddressTaken, Mailbox, Store
from syncd.emulator.validation import FieldError, check_local_part, check_name
from syncd.errors import ConfigError

_ADDRESS_KEYS = ("email", "address", "primary_email")


class RecordError(Exception):
    """A record cannot become a mailbox; ``code`` is an API error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def create_behind(store: Store, record: Mapping[str, Any], default_domain: str) -> Mailbox:
    """Create one mailbox from a record; raises RecordError (nothing created) when it cannot."""
    if not isinstance(record, Mapping):
        raise RecordError("invalid_request", "each mailbox must be an object")
    address = next((record[key] for key in _ADDRESS_KEYS if record.get(key)), None)
    local_part: Any
    domain_name: Any
    if address is not None:
        if not isinstance(address, str) or "@" not in address:
            raise RecordError("invalid_request", f"address {address!r} is not local@domain")
        local_part, domain_name = address.rsplit("@", 1)
    else:
        local_part = record.get("local_part")
        domain_name = record.get("domain") or default_domain
    domain = store.domain(str(domain_name))
    if domain is None:
        raise RecordError("domain_not_found", f"domain {domain_name!r} is not in this account")
    try:
        local_part = check_local_part(local_part)
        first_name = check_name(record.get("first_name"), "first_name")
        last_name = check_name(record.get("last_name"), "last_name")
    except FieldError as exc:
        raise RecordError(exc.code, exc.message) from exc
    aliases = _aliases(record.get("aliases"), domain.name)
    mailbox_id = record.get("id") or None
    if mailbox_id is not None:
        try:
            mailbox_id = str(uuid.UUID(str(mailbox_id)))
        except ValueError as exc:
            raise RecordError("invalid_request", f"id {mailbox_id!r} is not a UUID") from exc
    created_at = record.get("created_at") or None
    try:
        return store.create(
            domain,
            local_part,
            first_name,
            last_name,
            mailbox_id=mailbox_id,
            created_at=str(created_at) if created_at else None,
            aliases=aliases,
        )
    except AddressTaken as exc:
        raise RecordError("already_exists", f"{exc} is already taken") from exc


def _aliases(value: Any, domain_name: str) -> dict[str, bool]:
    if value in (None, "", []):
        return {}
    entries: list[Any]
    if isinstance(value, str):
        entries = [part.strip() for part in value.split(";") if part.strip()]
    elif isinstance(value, list):
        entries = value
    else:
        raise RecordError("invalid_request", "aliases must be a list or a ';'-separated string")
    aliases: dict[str, bool] = {}
    for entry in entries:
        if isinstance(entry, Mapping):
            alias, catch_all = entry.get("alias"), bool(entry.get("is_catch_all", False))
        else:
            alias, catch_all = entry, False
        if not isinstance(alias, str) or not alias:
            raise RecordError("invalid_request", f"alias {alias!r} is not an address")
        if "@" not in alias:
            alias = f"{alias}@{domain_name}"
        try:
            check_local_part(alias.rsplit("@", 1)[0].lower(), "alias")
        except FieldError as exc:
            raise RecordError(exc.code, exc.message) from exc
        aliases[alias.lower()] = catch_all
    return aliases


def read_preload(path: Path) -> list[dict[str, Any]]:
    """The records of a preload file; raises ConfigError saying what is wrong with it."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the preload file {path}: {exc}") from exc
    if path.suffix.lower() == ".json" or text.lstrip()[:1] in ("[", "{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"the preload file {path} is not valid JSON: {exc}") from exc
        if isinstance(data, dict):
            data = data.get("mailboxes")
        if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
            raise ConfigError(
                f"the preload file {path} must hold a list of mailbox objects "
                '(or {"mailboxes": [...]})'
            )
        return data
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames:
        raise ConfigError(f"the preload file {path} is empty; it needs a header row")
    return [{key.strip(): value for key, value in row.items() if key} for row in reader]


def load_preload(
    store: Store, records: list[dict[str, Any]], default_domain: str, path: Path
) -> int:
    """Create the preload's mailboxes; ones whose address exists already are skipped.

    Skipping makes ``--preload`` with ``--state`` safe to repeat across restarts.
    """
    created = 0
    with store.transaction():
        for number, record in enumerate(records, start=1):
            try:
                create_behind(store, record, default_domain)
                created += 1
            except RecordError as exc:
                if exc.code == "already_exists":
                    continue
                raise ConfigError(
                    f"the preload file {path}, record {number}: {exc.message}",
                    hint="fix or remove that record",
                ) from exc
    return created
