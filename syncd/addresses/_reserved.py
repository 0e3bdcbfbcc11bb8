"""Local parts that are never issued to a person, whatever the source asks or a name gives.

Some addresses stand for the domain itself rather than for anyone in it. Whoever reads them can
prove to a certificate authority that they control the domain (the CA/Browser Forum's Baseline
Requirements, 3.2.2.4.4, let a CA send its validation mail to ``admin``, ``administrator``,
``webmaster``, ``hostmaster`` or ``postmaster``), receives the abuse reports and bounces that
mail providers and other networks send there (RFC 2142), or is what other people write to for a
department. An ordinary employee given one of them, by a desired address in the HR export or by a
name that happens to spell it ("Admin Root" with the template ``{first}``), would hold the domain's
keys; and a mailbox recorded as a person's is listed as a leaver's one day, for an administrator
to delete.

So every candidate (the desired address, each template, the fallback) is compared with
:data:`ROLE_LOCAL_PARTS` plus ``addresses.reserved`` from the config, and a reserved one is skipped
like a taken one. Candidates are already lower-case local parts (see
:mod:`syncd.addresses._templates`), and the config's entries are lower-cased and checked as local
parts when it is loaded, so a plain set lookup compares them without case.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

# The role addresses syncd never issues, with where each group comes from:
ROLE_LOCAL_PARTS: frozenset[str] = frozenset(
    {
        # RFC 2142, "Mailbox names for common services, roles and functions": what other networks
        # write to about the domain (business, network operations, and each service).
        "info", "marketing", "sales", "support",
        "abuse", "noc", "security",
        "postmaster", "hostmaster", "usenet", "news", "webmaster", "www", "uucp", "ftp",
        # The CA/Browser Forum's constructed addresses for domain validation (admin, administrator
        # beside RFC 2142's three), and those some CAs accepted before it narrowed them down.
        "admin", "administrator",
        "ssladmin", "ssl-admin", "ssladministrator", "ssl-administrator", "sslwebmaster",
        # Mail systems' own: root's mail and bounces (RFC 5321's postmaster aside) go here on
        # most hosts, and automatic senders use the no-reply names.
        "root", "mailer-daemon", "nobody", "noreply", "no-reply",
        # The usual address of the IT department, which some CAs also took as the domain's.
        "it",
    }
)  # fmt: skip


@lru_cache(maxsize=8)
def _reserved(extra: tuple[str, ...]) -> frozenset[str]:
    return ROLE_LOCAL_PARTS | {local_part.strip().lower() for local_part in extra}


def reserved_local_parts(extra: Iterable[str] = ()) -> frozenset[str]:
    """:data:`ROLE_LOCAL_PARTS` and ``extra`` (``addresses.reserved``), lower case."""
    return _reserved(tuple(extra))


def is_role_local_part(local_part: str) -> bool:
    """True for one of :data:`ROLE_LOCAL_PARTS` (as opposed to a site's own reservation)."""
    return local_part.strip().lower() in ROLE_LOCAL_PARTS
