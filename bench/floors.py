"""The floors: the least work each kind of cycle must do, measured in a fresh process.

``run.py`` runs each floor as ``python bench/floors.py KIND ...``; the floor times its own work
(not the interpreter's start-up) and prints one JSON line ``{"seconds": s, "count": n}``. A fresh
process keeps the harness's memory and caches out of the figure.

- ``csv PATH``: one ``csv.reader`` pass over the export (every row touched, nothing kept).
- ``ldap3 URL BIND_DN PASSWORD_FILE BASE_DN PAGE_SIZE [CSN]``: a raw ldap3 paged search of the
  same entries and attributes syncd asks for (with CSN: only those changed since, as a delta
  read asks), streamed (generator, nothing kept), checked for success.
- ``httpx URL ACCOUNT TOKEN_FILE DOMAIN CSV BATCH PREFIX SKIP``: the bulk bodies for the people
  in CSV after the first SKIP rows, ``BATCH`` per body, posted sequentially with one client.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

LDAP_ATTRIBUTES = ["entryUUID", "givenName", "sn", "mail", "hrStartDate", "employeeType"]
LDAP_FILTER = "(objectClass=inetOrgPerson)"


def csv_floor(path: str) -> tuple[float, int]:
    start = time.perf_counter()
    count = 0
    with open(path, encoding="utf-8", newline="") as file:
        for _row in csv.reader(file):
            count += 1
    return time.perf_counter() - start, count - 1  # minus the header


def ldap3_floor(
    url: str, bind_dn: str, password_file: str, base_dn: str, page_size: str, since_csn: str = ""
) -> tuple[float, int]:
    """With ``since_csn``, only the entries changed since that CSN (a delta read's floor)."""
    import ldap3

    password = Path(password_file).read_text(encoding="utf-8").strip()
    start = time.perf_counter()
    server = ldap3.Server(url, get_info=ldap3.NONE)
    conn = ldap3.Connection(server, bind_dn, password, auto_bind=True, raise_exceptions=True)
    count = 0
    for entry in conn.extend.standard.paged_search(
        base_dn,
        f"(&{LDAP_FILTER}(entryCSN>={since_csn}))" if since_csn else LDAP_FILTER,
        attributes=LDAP_ATTRIBUTES,
        paged_size=int(page_size),
        generator=True,
    ):
        if entry.get("type") == "searchResEntry":
            count += 1
    seconds = time.perf_counter() - start
    # paged_search ends quietly on sizeLimitExceeded: check, or a short read looks fast.
    if conn.result.get("result") != 0:
        raise SystemExit(f"ldap3 floor: the search ended with {conn.result}")
    conn.unbind()
    return seconds, count


def _bodies(rows: Iterator[list[str]], domain: str, batch: int, prefix: str) -> Iterator[bytes]:
    while chunk := list(islice(rows, batch)):
        items = [
            {"first_name": r[1], "last_name": r[2], "local_part": f"{prefix}{r[0].lower()}"}
            for r in chunk
        ]
        yield json.dumps({"domain": domain, "items": items}).encode()


def httpx_floor(
    url: str,
    account: str,
    token_file: str,
    domain: str,
    csv_path: str,
    batch: str,
    prefix: str,
    skip: str,
) -> tuple[float, int]:
    import httpx

    token = Path(token_file).read_text(encoding="utf-8").strip()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    endpoint = f"{url}/v1/public/accounts/{account}/mailboxes/bulk"
    with open(csv_path, encoding="utf-8", newline="") as file:
        rows = csv.reader(file)
        # The rows before the posted ones (the header; for the new hires, everyone already
        # there) are skipped before the clock starts: the floor is posting *those* batches.
        next(islice(rows, 1 + int(skip), 1 + int(skip)), None)
        start = time.perf_counter()
        count = 0
        with httpx.Client(headers=headers, timeout=60) as client:
            # The bodies are built inside the timed loop: serializing them is work syncd does
            # too (and so is reading the rows, for a first provisioning).
            for body in _bodies(rows, domain, int(batch), prefix):
                response = client.post(endpoint, content=body)
                response.raise_for_status()
                count += 1
        return time.perf_counter() - start, count


FLOORS = {"csv": csv_floor, "ldap3": ldap3_floor, "httpx": httpx_floor}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in FLOORS:
        print(f"usage: floors.py {{{','.join(FLOORS)}}} ARGS...", file=sys.stderr)
        return 64
    seconds, count = FLOORS[argv[0]](*argv[1:])  # type: ignore[operator]
    print(json.dumps({"seconds": seconds, "count": count}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
