"""Putting ldap3 errors and search results into words an administrator can act on.

Why a connect failed (``classify_connect_error``: a TLS problem to fix, or a server that cannot
be reached now), what a result code and its diagnostic message say (``result_text``), why a read
stopped short (``limit_reason``). Kept apart from ``syncd.source.ldap``, which decides when to
retry, raise or stop; the functions here only find the words, from their arguments alone.
"""

from __future__ import annotations

from typing import Any

from ldap3.core.exceptions import LDAPStartTLSError
from ldap3.core.results import (
    RESULT_REFERRAL,
    RESULT_SIZE_LIMIT_EXCEEDED,
    RESULT_TIME_LIMIT_EXCEEDED,
)

from syncd.config import LdapSource
from syncd.errors import ConfigError

_RESULT_NAMES = {
    RESULT_TIME_LIMIT_EXCEEDED: "timeLimitExceeded",
    RESULT_SIZE_LIMIT_EXCEEDED: "sizeLimitExceeded",
    RESULT_REFERRAL: "referral",
}


class Unreachable(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TlsFailure(Exception):
    def __init__(self, error: ConfigError) -> None:
        super().__init__(str(error))
        self.error = error


def classify_connect_error(
    exc: BaseException, url: str, host: str, config: LdapSource
) -> Exception:
    text = str(exc)
    if "doesn't match any name" in text:
        return TlsFailure(
            ConfigError(
                f"the TLS certificate of {url} is not valid for the host name {host!r}",
                hint="use a host name the certificate lists in source.url, or have the "
                "certificate reissued; source.ca_file does not help here",
            )
        )
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        reason = text.split("certificate verify failed:", 1)[-1].split("(_ssl.c", 1)[0]
        reason = reason.strip(" '\",()") or "verification failed"
        if config.ca_file is not None:
            hint = f"source.ca_file ({config.ca_file}) is not the CA that issued it; point "
            hint += "source.ca_file at the right CA certificate"
        else:
            hint = "set source.ca_file to the PEM certificate of the CA that issued it"
        return TlsFailure(
            ConfigError(f"the TLS certificate of {url} is not trusted: {reason}", hint=hint)
        )
    if isinstance(exc, LDAPStartTLSError) and "startTLS failed" in text:
        return TlsFailure(
            ConfigError(
                f"LDAP server {url} refused StartTLS ({text})",
                hint="enable TLS on the server, or use its ldaps:// URL",
            )
        )
    if "SSL" in text or isinstance(exc, LDAPStartTLSError):
        return TlsFailure(
            ConfigError(
                f"TLS handshake with {url} failed: {text}",
                hint="check that the port speaks LDAPS (usually 636) or StartTLS (389)",
            )
        )
    return Unreachable(_short_reason(text))


def _short_reason(text: str) -> str:
    """'socket connection error while opening: [Errno 111] Connection refused' → the tail."""
    for marker in ("] ", "error while opening: "):
        if marker in text:
            text = text.rsplit(marker, 1)[-1]
    return text.strip(" '\",()[]") or "connection failed"


def result_text(result: dict[str, Any]) -> str:
    text = f"rc {result['result']} {result.get('description') or ''}".strip()
    # AD ends its diagnostic messages with a NUL byte; it has no place in a log line.
    message = (result.get("message") or "").replace("\x00", "").strip()
    return f"{text}: {message}" if message else text


def limit_reason(result: dict[str, Any], read: int, pages: int) -> str:
    code = result["result"]
    name = _RESULT_NAMES.get(code) or result.get("description") or "error"
    what = result_text(result) if code not in _RESULT_NAMES else f"rc {code} {name}"
    if code in (RESULT_TIME_LIMIT_EXCEEDED, RESULT_SIZE_LIMIT_EXCEEDED):
        kind = "time" if code == RESULT_TIME_LIMIT_EXCEEDED else "size"
        return (
            f"the server stopped the search at its {kind} limit after {read} entries in "
            f"{pages} page(s) ({what}); raise the limit for the bind DN or narrow the filter"
        )
    return f"the search ended with {what} after {read} entries in {pages} page(s)"
