"""What Active Directory does differently from a plain LDAP server, in one place.

* ``objectGUID`` (and ``mS-DS-ConsistencyGuid``, which Entra Connect uses as its source anchor)
  is 16 raw bytes whose first three fields are little-endian; the string everybody knows
  (PowerShell, ADSI Edit) is ``uuid.UUID(bytes_le=raw)``.
* An account is disabled when bit 0x2 (ACCOUNTDISABLE) of ``userAccountControl`` is set:
  512 is a normal enabled account, 514 the same account disabled, 66050 disabled with
  "password never expires".
* AD serves at most ``MaxPageSize`` (1000 by default) entries per page, whatever the client asks.
* AD may hand back an attribute under a ranged name such as ``member;range=0-1499``.
"""

from __future__ import annotations

import re
import uuid

ACCOUNTDISABLE = 0x2
AD_MAX_PAGE_SIZE = 1000

# Attributes that hold a binary GUID, compared lower-cased.
BINARY_GUID_ATTRIBUTES = frozenset({"objectguid", "ms-ds-consistencyguid"})


def guid_string(raw: bytes) -> str:
    """Render a binary AD GUID the standard way: lower case, no braces."""
    if len(raw) != 16:
        raise ValueError(f"a GUID has 16 bytes, this value has {len(raw)}")
    return str(uuid.UUID(bytes_le=raw))


def account_disabled(user_account_control: bytes | str) -> bool:
    """True when the ACCOUNTDISABLE bit is set; ValueError if the value is not a number."""
    text = (
        user_account_control.decode("ascii")
        if isinstance(user_account_control, bytes)
        else user_account_control
    )
    return bool(int(text.strip()) & ACCOUNTDISABLE)


def attribute_name(returned: str) -> str | None:
    """The plain attribute name a returned attribute description stands for, lower-cased.

    ``givenName`` → ``givenname``; AD's ranged ``member;range=0-1499`` → ``member``. Other
    options (``givenName;lang-de``, ``userCertificate;binary``) are different values than the
    ones asked for, so they map to None and are ignored.
    """
    name, _, options = returned.partition(";")
    if not options:
        return name.lower()
    if all(option.lower().startswith("range=") for option in options.split(";")):
        return name.lower()
    return None


# The "data NNN" code in AD's invalidCredentials message says why a bind failed.
_BIND_FAILURES = {
    "525": "the bind DN does not exist",
    "52e": "wrong password",
    "530": "the account may not log on at this time",
    "531": "the account may not log on from this computer",
    "532": "the password has expired",
    "533": "the account is disabled",
    "701": "the account has expired",
    "773": "the password must be changed before the account can bind",
    "775": "the account is locked out",
}
_DATA_CODE = re.compile(r"\bdata ([0-9a-f]{3}),", re.IGNORECASE)


def bind_failure_detail(message: str) -> str | None:
    """Explain AD's ``... AcceptSecurityContext error, data 52e, v4563`` bind failure."""
    match = _DATA_CODE.search(message)
    return _BIND_FAILURES.get(match[1].lower()) if match else None
