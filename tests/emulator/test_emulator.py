"""The Hybridbox emulator over real HTTP: a subprocess on loopback, driven with httpx.

Most tests share one session-wide emulator that is reset before each test (``emulator``); tests
that need their own options, a state file or a restart start one with ``make_emulator``.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from syncd.emulator import DEFAULT_ACCOUNT_ID, main
from tests.support.emulator import REPO_ROOT, MakeEmulator, RunningEmulator

MAILBOX_FIELDS = {
    "id",
    "local_part",
    "domain_id",
    "domain_name",
    "primary_email",
    "first_name",
    "last_name",
    "status",
    "quota",
    "created_at",
    "updated_at",
    "aliases",
    "workspace_id",
    "workspace_name",
}


def item(local_part: str, first: str = "Anna", last: str = "Meier") -> dict[str, str]:
    return {"first_name": first, "last_name": last, "local_part": local_part}


def bulk(
    client: httpx.Client, *items: dict[str, Any], domain: str = "example.com"
) -> httpx.Response:
    return client.post("/mailboxes/bulk", json={"domain": domain, "items": list(items)})


def error_code(response: httpx.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


@pytest.fixture
def api(emulator: RunningEmulator) -> Iterator[httpx.Client]:
    with emulator.client() as client:
        yield client


# ------------------------------------------------------------------------------ shapes


def test_account_and_domain_shapes(emulator: RunningEmulator, api: httpx.Client) -> None:
    account = api.get(emulator.api_url).json()
    assert account["id"] == emulator.account_id
    assert "mailbox.create" in account["capabilities"]

    domain = api.get("/domains/example.com").json()
    assert domain["name"] == "example.com"
    assert domain["status"] == "active" and domain["outbound_routing_ready"] is True
    uuid.UUID(domain["id"])
    by_id = api.get(f"/domains/{domain['id']}").json()
    assert by_id == domain


def test_bulk_create_shapes_and_names_stored_exactly(
    emulator: RunningEmulator, api: httpx.Client
) -> None:
    names = [
        ("Zoë", "O'Brien-Smith"),
        ("李", "小龙"),
        ("Jean-Luc", "de la Tour"),
        ("محمد", "Dr. Ali"),
    ]
    items = [item(f"person.{n}", first, last) for n, (first, last) in enumerate(names)]
    response = bulk(api, *items)
    assert response.status_code == 200
    body = response.json()
    assert body["failed"] == []
    assert [entry["index"] for entry in body["created"]] == [0, 1, 2, 3]
    for entry, (first, last) in zip(body["created"], names, strict=True):
        mailbox = entry["mailbox"]
        assert set(mailbox) == MAILBOX_FIELDS
        assert (mailbox["first_name"], mailbox["last_name"]) == (first, last)
        assert mailbox["primary_email"] == f"{mailbox['local_part']}@example.com"
        assert mailbox["domain_name"] == "example.com"
        assert set(mailbox["quota"]) == {"allowed", "used"}
        assert mailbox["aliases"] == []
        assert mailbox["created_at"].endswith("Z")
    assert len(emulator.mailboxes()) == 4


def test_single_create_get_rename_alias(emulator: RunningEmulator, api: httpx.Client) -> None:
    domain_id = api.get("/domains/example.com").json()["id"]
    created = api.post(
        "/mailboxes",
        json={"domain": domain_id, "first_name": "Anna", "last_name": "Meier", "local_part": "am"},
    )
    assert created.status_code == 201
    mailbox = created.json()
    assert set(mailbox) == MAILBOX_FIELDS
    assert api.get(f"/mailboxes/{mailbox['id']}").json() == mailbox
    assert api.get("/mailboxes/am@example.com").json() == mailbox

    renamed = api.patch(f"/mailboxes/{mailbox['id']}", json={"last_name": "Meier-Schulz"})
    assert renamed.status_code == 200
    assert renamed.json()["last_name"] == "Meier-Schulz"
    assert renamed.json()["first_name"] == "Anna"
    bad_patch = api.patch(f"/mailboxes/{mailbox['id']}", json={"local_part": "x"})
    assert bad_patch.status_code == 422

    alias = api.post(
        "/mailboxes/am@example.com/aliases", json={"alias": "anna", "is_catch_all": False}
    )
    assert alias.status_code == 201
    assert alias.json()["aliases"] == [{"alias": "anna@example.com", "is_catch_all": False}]
    # An alias takes its address: neither a mailbox nor another alias may use it now.
    assert api.get("/mailboxes/anna@example.com").json()["id"] == mailbox["id"]
    taken = bulk(api, item("anna")).json()["failed"]
    assert [(f["index"], f["code"]) for f in taken] == [(0, "already_exists")]


def test_list_pages_with_total(emulator: RunningEmulator, api: httpx.Client) -> None:
    bulk(api, *(item(f"user{n}") for n in range(7)))
    seen: list[str] = []
    for page in (1, 2, 3):
        body = api.get("/mailboxes", params={"page": page, "page_size": 3}).json()
        assert (body["page"], body["page_size"], body["total"]) == (page, 3, 7)
        seen += [mailbox["local_part"] for mailbox in body["items"]]
    assert sorted(seen) == sorted(f"user{n}" for n in range(7))
    assert api.get("/mailboxes", params={"page": 4, "page_size": 3}).json()["items"] == []
    default = api.get("/mailboxes").json()
    assert (default["page"], default["page_size"]) == (1, 25)
    filtered = api.get("/mailboxes", params={"domain": "example.com", "search": "user3"}).json()
    assert [m["local_part"] for m in filtered["items"]] == ["user3"]
    assert api.get("/mailboxes", params={"page": 0}).status_code == 422


def test_page_size_over_100_is_clamped_or_rejected(
    emulator: RunningEmulator, api: httpx.Client
) -> None:
    assert api.get("/mailboxes", params={"page_size": 500}).json()["page_size"] == 100
    emulator.set_faults(page_size_overflow="reject")
    assert api.get("/mailboxes", params={"page_size": 101}).status_code == 422


# ------------------------------------------------------------------------------ auth and 404


def test_bad_or_missing_token_is_401(emulator: RunningEmulator) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": emulator.token}):
        response = httpx.get(f"{emulator.api_url}/mailboxes", headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"
        assert emulator.token not in response.text


def test_unknown_account_domain_mailbox_are_404(
    emulator: RunningEmulator, api: httpx.Client
) -> None:
    other = f"{emulator.url}/v1/public/accounts/{uuid.uuid4()}/mailboxes"
    assert api.get(other).status_code == 404
    assert error_code(api.get(other)) == "account_not_found"
    assert error_code(api.get("/domains/nope.example")) == "domain_not_found"
    response = bulk(api, item("a"), domain="nope.example")
    assert (response.status_code, error_code(response)) == (404, "domain_not_found")
    assert error_code(api.get("/mailboxes/nobody@example.com")) == "mailbox_not_found"
    assert api.get(f"/mailboxes/{uuid.uuid4()}").status_code == 404


# ------------------------------------------------------------------------------ rules


def test_local_part_taken_is_already_exists(emulator: RunningEmulator, api: httpx.Client) -> None:
    emulator.add_mailbox("taken", "Someone", "Else")
    body = bulk(api, item("taken"), item("free"), item("free")).json()
    assert [entry["index"] for entry in body["created"]] == [1]
    assert [(f["index"], f["code"]) for f in body["failed"]] == [
        (0, "already_exists"),
        (2, "already_exists"),
    ]
    single = api.post("/mailboxes", json={"domain": "example.com", **item("taken")})
    assert (single.status_code, error_code(single)) == (409, "already_exists")
    # All failed is still 200 with per-item results.
    all_failed = bulk(api, item("taken"))
    assert all_failed.status_code == 200 and all_failed.json()["created"] == []


@pytest.mark.parametrize(
    "local_part", ["", "Anna", "anna meier", ".anna", "anna.", "an..na", "ä", "a" * 65, "a+b"]
)
def test_invalid_local_part(api: httpx.Client, local_part: str) -> None:
    failed = bulk(api, item(local_part)).json()["failed"]
    assert [(f["index"], f["code"]) for f in failed] == [(0, "invalid_local_part")]


@pytest.mark.parametrize("name", ["", "   ", "Anna\nMeier", "Anna\x00", "x" * 101, None, 5])
def test_invalid_name(api: httpx.Client, name: Any) -> None:
    body = {
        "domain": "example.com",
        "items": [{"first_name": name, "last_name": "M", "local_part": "a"}],
    }
    failed = api.post("/mailboxes/bulk", json=body).json()["failed"]
    assert [(f["index"], f["code"]) for f in failed] == [(0, "invalid_name")]


def test_valid_edge_names_and_local_parts(api: httpx.Client) -> None:
    items = [item("a" * 64, "x" * 100, "O'Neil"), item("a_b-c.d", "Ĳsbrand", "Jr.")]
    assert bulk(api, *items).json()["failed"] == []


def test_malformed_requests(api: httpx.Client) -> None:
    not_json = api.post(
        "/mailboxes/bulk", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert (not_json.status_code, error_code(not_json)) == (400, "invalid_json")
    no_items = api.post("/mailboxes/bulk", json={"domain": "example.com"})
    assert no_items.status_code == 422


# ------------------------------------------------------------------------------ faults


def test_rate_limit_every_nth_request(emulator: RunningEmulator, api: httpx.Client) -> None:
    emulator.set_faults(rate_limit_every=3)
    statuses = [api.get("/mailboxes").status_code for _ in range(6)]
    assert statuses == [200, 200, 429, 200, 200, 429]
    emulator.set_faults(retry_after=7)  # the count restarts when settings change
    limited = [api.get("/mailboxes") for _ in range(3)][-1]
    assert limited.headers["Retry-After"] == "7"
    assert error_code(limited) == "rate_limited"


def test_rate_limit_is_a_token_bucket_with_retry_after_until_the_next_token(
    emulator: RunningEmulator, api: httpx.Client
) -> None:
    emulator.set_faults(rate_limit=2)  # 2 a second: a burst of 2, then one every 0.5 s
    statuses = [api.get("/mailboxes").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    limited = api.get("/mailboxes")
    assert limited.headers["Retry-After"] == "1"  # under a second, rounded up: never 0
    assert error_code(limited) == "rate_limited"
    assert "X-RateLimit-Limit" not in limited.headers
    time.sleep(0.55)
    assert api.get("/mailboxes").status_code == 200  # a token came back
    assert emulator.stats()["faults"]["rate_limit"] == 2


def test_rate_limit_retry_after_is_whole_seconds_until_a_token(
    emulator: RunningEmulator, api: httpx.Client
) -> None:
    emulator.set_faults(rate_limit=0.25)  # one every 4 s
    assert api.get("/mailboxes").status_code == 200
    limited = api.get("/mailboxes")
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "4"


def test_rate_limit_headers_announce_limit_and_remaining(
    emulator: RunningEmulator, api: httpx.Client
) -> None:
    emulator.set_faults(rate_limit=3, rate_limit_headers=True, fault_routes=["list"])
    answers = [api.get("/mailboxes") for _ in range(4)]
    assert [a.headers["X-RateLimit-Limit"] for a in answers] == ["3"] * 4
    assert [a.headers["X-RateLimit-Remaining"] for a in answers] == ["2", "1", "0", "0"]
    assert answers[-1].status_code == 429
    # Routes the faults do not apply to are neither limited nor announced.
    other = bulk(api, item("a"))
    assert other.status_code == 200 and "X-RateLimit-Limit" not in other.headers


def test_max_concurrent_refuses_the_one_too_many_and_latency_does_not_queue(
    emulator: RunningEmulator,
) -> None:
    emulator.set_faults(max_concurrent=2, latency_ms=400, fault_routes=["list"])

    def get(_: int) -> int:
        with emulator.client() as client:
            return client.get("/mailboxes").status_code

    started = time.monotonic()
    with ThreadPoolExecutor(3) as pool:
        statuses = sorted(pool.map(get, range(3)))
    took = time.monotonic() - started
    assert statuses == [200, 200, 503]
    assert took < 0.75  # two served side by side, not one after the other
    stats = emulator.stats()
    assert stats["concurrency"]["max_in_service"] == 2
    assert stats["faults"]["max_concurrent"] == 1


def test_latency_jitter_adds_up_to_j_ms(emulator: RunningEmulator, api: httpx.Client) -> None:
    emulator.set_faults(latency_ms=50, latency_jitter_ms=200, seed=3)
    took = []
    for _ in range(8):
        started = time.monotonic()
        api.get("/mailboxes")
        took.append(time.monotonic() - started)
    assert min(took) >= 0.05
    assert max(took) < 0.25 + 0.1
    assert max(took) - min(took) > 0.03  # not all the same


def test_retry_after_as_http_date(emulator: RunningEmulator, api: httpx.Client) -> None:
    emulator.set_faults(unavailable_rate=1, retry_after=30, retry_after_http_date=True)
    response = api.get("/mailboxes")
    assert response.status_code == 503
    when = parsedate_to_datetime(response.headers["Retry-After"]).timestamp()
    assert 20 < when - time.time() < 40


def test_error_and_unavailable_write_nothing(emulator: RunningEmulator, api: httpx.Client) -> None:
    emulator.set_faults(error_rate=1)
    response = bulk(api, item("a"))
    assert (response.status_code, error_code(response)) == (500, "internal_error")
    emulator.set_faults(error_rate=0, unavailable_rate=1)
    response = bulk(api, item("a"))
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert emulator.mailboxes() == []
    assert emulator.stats()["faults"] == {"error": 1, "unavailable": 1}


def test_drop_closes_connection_before_the_write(
    emulator: RunningEmulator, api: httpx.Client
) -> None:
    emulator.set_faults(drop_rate=1)
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        bulk(api, item("dropped"))
    assert emulator.mailboxes() == []
    assert emulator.stats()["requests"]["by_status"] == {"dropped": 1}


def test_drop_after_write_applies_it(emulator: RunningEmulator, api: httpx.Client) -> None:
    emulator.set_faults(drop_after_write_rate=1)
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        bulk(api, item("written"))
    assert [m["local_part"] for m in emulator.mailboxes()] == ["written"]
    # Reads are never "after write": they are answered normally.
    assert api.get("/mailboxes/written@example.com").status_code == 200


def test_error_after_write_applies_it(emulator: RunningEmulator, api: httpx.Client) -> None:
    emulator.set_faults(error_after_write_rate=1)
    assert bulk(api, item("written")).status_code == 500
    assert [m["local_part"] for m in emulator.mailboxes()] == ["written"]


def test_timeout_after_write_applies_it_then_hangs(
    emulator: RunningEmulator, api: httpx.Client
) -> None:
    emulator.set_faults(timeout_after_write_rate=1, hang_s=0.4)
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        api.post(
            "/mailboxes/bulk", json={"domain": "example.com", "items": [item("a")]}, timeout=0.2
        )
    assert [m["local_part"] for m in emulator.mailboxes()] == ["a"]
    # A patient client gets the normal answer after hang_s.
    response = bulk(api, item("b"))
    assert response.status_code == 200 and len(response.json()["created"]) == 1
    assert time.monotonic() - started >= 0.4


def test_forbid_create(emulator: RunningEmulator, api: httpx.Client) -> None:
    emulator.set_faults(forbid_create=True)
    for response in (
        bulk(api, item("a")),
        api.post("/mailboxes", json={"domain": "example.com", **item("a")}),
    ):
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "forbidden"
        assert "mailbox.create" in response.json()["error"]["message"]
    assert "mailbox.create" not in api.get(emulator.api_url).json()["capabilities"]
    assert api.get("/mailboxes").status_code == 200


def test_max_batch_is_413(emulator: RunningEmulator, api: httpx.Client) -> None:
    emulator.set_faults(max_batch=2)
    response = bulk(api, item("a"), item("b"), item("c"))
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "batch_too_large" and error["max_items"] == 2
    assert "too large" in error["message"] and "2" in error["message"]
    assert bulk(api, item("a"), item("b")).status_code == 200


def test_fail_rate_fails_items_not_created_and_is_seeded(
    emulator: RunningEmulator, api: httpx.Client
) -> None:
    emulator.set_faults(fail_rate=1)
    body = bulk(api, item("a"), item("b")).json()
    assert body["created"] == []
    assert {f["code"] for f in body["failed"]} == {"backend_busy"}
    assert emulator.mailboxes() == []

    def failing_indices(seed: int) -> list[int]:
        emulator.reset()
        emulator.set_faults(fail_rate=0.5, seed=seed)
        body = bulk(api, *(item(f"u{n}") for n in range(40))).json()
        return [entry["index"] for entry in body["failed"]]

    first = failing_indices(7)
    assert 0 < len(first) < 40
    assert failing_indices(7) == first
    assert failing_indices(8) != first


def test_latency_and_fault_routes(emulator: RunningEmulator, api: httpx.Client) -> None:
    emulator.set_faults(latency_ms=150, fault_routes=["bulk_create"])
    started = time.monotonic()
    api.get("/mailboxes")
    assert time.monotonic() - started < 0.15
    started = time.monotonic()
    bulk(api, item("a"))
    assert time.monotonic() - started >= 0.15


@pytest.mark.parametrize(
    ("style", "check"),
    [
        ("detail", lambda r: r.json() == {"detail": "an internal error occurred"}),
        ("text", lambda r: r.headers["content-type"].startswith("text/plain")),
        ("html", lambda r: r.headers["content-type"].startswith("text/html")),
    ],
)
def test_error_body_styles(
    emulator: RunningEmulator, api: httpx.Client, style: str, check: Any
) -> None:
    emulator.set_faults(error_rate=1, error_body=style)
    response = api.get("/mailboxes")
    assert response.status_code == 500 and check(response)


def test_bulk_status_switch(emulator: RunningEmulator, api: httpx.Client) -> None:
    emulator.set_faults(bulk_status=207)
    assert bulk(api, item("a")).status_code == 207


def test_shift_created_answers_each_item_with_the_next_ones_mailbox(
    emulator: RunningEmulator, api: httpx.Client
) -> None:
    emulator.set_faults(shift_created=True)
    items = [item(f"p{n}", f"First{n}", f"Last{n}") for n in range(3)]
    body = bulk(api, *items).json()
    answered = [(e["index"], e["mailbox"]["local_part"]) for e in body["created"]]
    assert answered == [(0, "p1"), (1, "p2"), (2, "p0")]
    # Every item was created as asked: only the answer is wrong.
    stored = {m["local_part"]: (m["first_name"], m["last_name"]) for m in emulator.mailboxes()}
    assert stored == {f"p{n}": (f"First{n}", f"Last{n}") for n in range(3)}
    assert emulator.stats()["faults"]["shift_created"] == 1


def test_drip_sends_the_body_slowly_and_honours_fault_routes(
    emulator: RunningEmulator, api: httpx.Client
) -> None:
    emulator.set_faults(drip_bytes_per_s=200, fault_routes=["get_domain"])
    started = time.monotonic()
    domain = api.get("/domains/example.com")
    took = time.monotonic() - started
    # The domain object is some 250 bytes: more than a second at 200 bytes a second.
    assert domain.status_code == 200 and domain.json()["name"] == "example.com"
    assert took >= (len(domain.content) - 200 * 0.1) / 200
    assert "content-length" not in domain.headers  # chunked: the length is not said up front
    started = time.monotonic()
    assert api.get("/mailboxes").status_code == 200
    assert time.monotonic() - started < 0.5

    # A client that gives up mid-body gets no more of it; the server is not stuck.
    emulator.set_faults(drip_bytes_per_s=1)
    with pytest.raises(httpx.ReadTimeout):
        api.get("/domains/example.com", timeout=0.5)
    emulator.set_faults(drip_bytes_per_s=0)
    assert api.get("/domains/example.com").status_code == 200
    assert emulator.stats()["faults"]["drip"] >= 2


# ------------------------------------------------------------------------------ admin API


def test_admin_faults_validation_and_reset(emulator: RunningEmulator) -> None:
    admin = httpx.Client(base_url=emulator.url)
    assert admin.put("/_emulator/faults", json={"fail_rate": 2}).status_code == 400
    assert admin.put("/_emulator/faults", json={"no_such": 1}).status_code == 400
    assert emulator.set_faults(**{"fail-rate": 0.25})["fail_rate"] == 0.25
    assert admin.put("/_emulator/faults", json={"drip_bytes_per_s": -1}).status_code == 400
    assert admin.put("/_emulator/faults", json={"shift_created": 1}).status_code == 400
    emulator.add_mailbox("someone")
    emulator.reset()
    assert emulator.faults()["fail_rate"] == 0.0
    assert emulator.mailboxes() == []
    admin.close()


def test_admin_reset_keep_rolls_back_to_the_first_mailboxes(
    emulator: RunningEmulator, api: httpx.Client
) -> None:
    bulk(api, item("a"), item("b"))
    bulk(api, item("c"))
    admin = httpx.Client(base_url=emulator.url)
    try:
        assert admin.post("/_emulator/reset", json={"keep": -1}).status_code == 400
        assert admin.post("/_emulator/reset", json={"keep": 2, "stats": False}).is_success
    finally:
        admin.close()
    assert sorted(m["local_part"] for m in emulator.mailboxes()) == ["a", "b"]
    assert api.get("/mailboxes/c@example.com").status_code == 404
    assert bulk(api, item("c")).json()["created"]  # its address is free again


def test_admin_add_mailboxes_and_stats(emulator: RunningEmulator, api: httpx.Client) -> None:
    result = emulator.add_mailboxes(
        [
            {"email": "x@example.com", "first_name": "X", "last_name": "Y"},
            {"local_part": "Bad", "first_name": "X", "last_name": "Y"},
        ]
    )
    assert [entry["index"] for entry in result["created"]] == [0]
    assert result["failed"][0]["code"] == "invalid_local_part"
    bulk(api, item("a"), item("x"))
    api.get("/mailboxes")
    stats = emulator.stats()
    assert stats["requests"]["total"] == 2
    assert stats["requests"]["by_route"] == {"bulk_create": {"200": 1}, "list": {"200": 1}}
    assert stats["bulk"] == {"requests": 1, "items": 2, "failed_items": {"already_exists": 1}}
    assert stats["mailboxes"]["created_by_api"] == 1
    assert stats["mailboxes"]["created_behind"] == 1
    assert stats["mailboxes"]["total"] == 2
    assert [r["route"] for r in emulator.requests()] == ["bulk_create", "list"]


# ------------------------------------------------------------------------------ process level


def test_options_state_and_restart(make_emulator: MakeEmulator, tmp_path: Path) -> None:
    state = tmp_path / "emulator.sqlite"
    emu = make_emulator(
        state=state, domains=("example.com", "example.org"), max_batch=3, fail_code="quota_exceeded"
    )
    assert emu.token_file.stat().st_mode & 0o777 == 0o600
    with emu.client() as api:
        assert bulk(api, item("a"), item("b"), item("c"), item("d")).status_code == 413
        assert len(bulk(api, item("a"), domain="example.org").json()["created"]) == 1
        first_id = bulk(api, item("a")).json()["created"][0]["mailbox"]["id"]
        api.patch(f"/mailboxes/{first_id}", json={"first_name": "Änne"})
        api.post(f"/mailboxes/{first_id}/aliases", json={"alias": "aa"})
    before = emu.mailboxes()
    assert emu.restart().returncode is None
    assert emu.mailboxes() == before
    with emu.client() as api:
        assert api.get("/mailboxes/aa@example.com").json()["first_name"] == "Änne"
        assert bulk(api, item("a")).json()["failed"][0]["code"] == "already_exists"
    assert emu.faults()["max_batch"] == 3
    assert emu.stop() == 0


def test_preload_csv_and_json(make_emulator: MakeEmulator, tmp_path: Path) -> None:
    csv_file = tmp_path / "existing.csv"
    csv_file.write_text(
        "local_part,first_name,last_name,aliases\nanna.meier,Anna,Meier,am;anna\nbob,Bob,Li,\n",
        encoding="utf-8",
    )
    emu = make_emulator(preload=csv_file)
    addresses = {m["primary_email"]: m for m in emu.mailboxes()}
    assert set(addresses) == {"anna.meier@example.com", "bob@example.com"}
    assert [a["alias"] for a in addresses["anna.meier@example.com"]["aliases"]] == [
        "am@example.com",
        "anna@example.com",
    ]
    with emu.client() as api:
        assert bulk(api, item("anna")).json()["failed"][0]["code"] == "already_exists"
    emu.reset()  # back to the preload, not to empty
    assert len(emu.mailboxes()) == 2

    json_file = tmp_path / "existing.json"
    json_file.write_text(
        json.dumps({"mailboxes": [{"email": "c@example.com", "first_name": "C", "last_name": "D"}]})
    )
    assert [m["local_part"] for m in make_emulator(preload=json_file).mailboxes()] == ["c"]


def test_preload_with_state_is_not_duplicated(make_emulator: MakeEmulator, tmp_path: Path) -> None:
    csv_file = tmp_path / "existing.csv"
    csv_file.write_text("email,first_name,last_name\nz@example.com,Z,Z\n", encoding="utf-8")
    emu = make_emulator(preload=csv_file, state=tmp_path / "s.sqlite")
    emu.restart()
    assert len(emu.mailboxes()) == 1


def test_bad_setup_exits_2_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--account-id", "not-a-uuid", "--port", "0"]) == 2
    assert "not a UUID" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("local_part,first_name,last_name\nBAD,A,B\n", encoding="utf-8")
    assert main(["--preload", str(bad), "--port", "0"]) == 2
    assert "record 1" in capsys.readouterr().err
    assert main(["--token-file", str(tmp_path / "missing"), "--port", "0"]) == 2
    with pytest.raises(SystemExit):
        main(["--fail-rate", "2"])


def test_sigint_stops_cleanly_and_listening_line(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "syncd.emulator", "--port", "0", "--domain", "a.test"]
    command += ["--domain", "b.test"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    assert line.startswith("hybridbox-emulator listening on http://127.0.0.1:")
    assert line.endswith(f"account={DEFAULT_ACCOUNT_ID} domains=a.test,b.test")
    process.send_signal(signal.SIGINT)
    assert process.wait(10) == 0
    process.stdout.close()
