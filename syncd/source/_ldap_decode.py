"""A lean decoder for search entries: only what syncd reads, on syncd's own connection.

ldap3 turns every search entry into two dicts: ``raw_attributes`` (bytes) and ``attributes``
(every value decoded to str through ``to_unicode``, which looks up four config parameters per
value, in case-insensitive dicts). syncd maps entries from ``raw_attributes`` only (it decodes
and checks the few values it needs itself, see ``_ldap_entry``), so at 100k entries the second
dict is most of the client-side cost of a read. :func:`use_lean_entries` replaces the entry
decoding of *one* connection's strategy (an instance attribute, not a patch of ldap3) with one
that builds ``dn``, ``raw_dn`` and a plain ``raw_attributes`` dict, and leaves ``attributes``
empty; every other kind of message still goes through ldap3's own decoder.

Requires a connection opened with ``auto_range=False`` and ``return_empty_attributes=False``:
those are the only ldap3 features that read or write ``attributes`` after decoding.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ldap3 import Connection
from ldap3.utils.conv import to_unicode

# The protocolOp number of a SearchResultEntry in ldap3's fast (internal) BER decoder.
_SEARCH_RESULT_ENTRY = 4


def lean_entry(payload: Any) -> dict[str, Any]:
    """A decoded SearchResultEntry as a dict, from ldap3's fast-decoder payload.

    ``payload[0]`` is the DN, ``payload[1]`` the attribute list; each element is a
    ``(class, constructed, tag, value)`` tuple. Names decode as ldap3 decodes them (UTF-8, then
    its additional server encodings); values stay bytes.
    """
    raw_dn = payload[0][3]
    raw_attributes: dict[str, list[bytes]] = {}
    for attribute in payload[1][3]:
        description, values = attribute[3]
        raw_attributes[_text(description[3])] = [bytes(value[3]) for value in values[3]]
    return {
        "type": "searchResEntry",
        "raw_dn": raw_dn,
        "dn": _text(raw_dn),
        "raw_attributes": raw_attributes,
        "attributes": {},
    }


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:  # AD may send a DN that is not UTF-8; ldap3 knows the fallbacks
        return str(to_unicode(raw, from_server=True))


def use_lean_entries(connection: Connection) -> None:
    """Decode this connection's search entries with :func:`lean_entry` (see module docstring)."""
    if connection.auto_range or connection.empty_attributes or not connection.fast_decoder:
        return  # the full dicts are needed, or ldap3 is not using its fast decoder: keep it
    strategy = connection.strategy
    standard: Callable[[dict[str, Any]], dict[str, Any]] = strategy.decode_response_fast

    def decode(message: dict[str, Any]) -> dict[str, Any]:
        if message["protocolOp"] == _SEARCH_RESULT_ENTRY:
            return lean_entry(message["payload"])
        return standard(message)

    strategy.decode_response_fast = decode
