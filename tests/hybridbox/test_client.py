"""Unit tests of the Hybridbox client over ``httpx.MockTransport`` (no sockets, no real sleeps).

End-to-end tests against the emulator over real HTTP live elsewhere; these pin down how each kind
of answer is turned into a result or an exception.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from syncd import __version__
from syncd.config import HybridboxConfig
from syncd.errors import ConfigError, HybridboxUnavailable, NotAuthorized
from syncd.hybridbox import (
    BatchRejected,
    BatchTooLarge,
    BulkResult,
    HybridboxClient,
    ItemKind,
    Mailbox,
    NewMailbox,
    OutcomeUnknown,
    RequestRefused,
    RetryBudget,
    UnexpectedResponse,
)
from tests.support.fake_time import FakeTime

ACCOUNT = "3f2b8c4e-1d2a-4b5c-9e8f-0a1b2c3d4e5f"
TOKEN = "hb_sa_Zm9vYmFyYmF6cXV4c2VjcmV0"
DOMAIN = "example.com"
PREFIX = f"/v1/public/accounts/{ACCOUNT}"

Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """Wraps a handler; keeps every request that reached the "server"."""

    def __init__(self, *answers: Handler | httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, httpx.Response):
            return answer
        return answer(request)

    def bodies(self) -> list[Any]:
        return [json.loads(request.content) for request in self.requests]


def config(**overrides: Any) -> HybridboxConfig:
    values: dict[str, Any] = {
        "url": "https://hb.test",
        "account_id": ACCOUNT,
        "domain": DOMAIN,
        "token_env": "SYNCD_TEST_HB_TOKEN",
        "page_size": 2,
        "max_retry_after_s": 60,
        "retry_budget_s": 300,
    }
    values.update(overrides)
    return HybridboxConfig(**values)


@pytest.fixture
def make_client(fake_time: FakeTime) -> Iterator[Callable[..., HybridboxClient]]:
    clients: list[HybridboxClient] = []

    def make(recorder: Recorder, budget_s: float = 300, **overrides: Any) -> HybridboxClient:
        budget = RetryBudget(budget_s, sleep=fake_time.sleep, clock=fake_time.clock)
        client = HybridboxClient(
            config(**overrides),
            TOKEN,
            budget=budget,
            transport=httpx.MockTransport(recorder),
            rng=lambda: 0.5,
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def events() -> Iterator[list[logging.LogRecord]]:
    """Records of syncd.hybridbox events, whatever another test did to the root logger."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("syncd.hybridbox")
    handler = Keep(level=logging.DEBUG)
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def fields(record: logging.LogRecord) -> dict[str, Any]:
    value: dict[str, Any] = getattr(record, "syncd_fields", {})
    return value


def mailbox_json(local_part: str, number: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "id": f"00000000-0000-4000-8000-{number:012d}",
        "local_part": local_part,
        "domain_id": "11111111-0000-4000-8000-000000000000",
        "domain_name": DOMAIN,
        "primary_email": f"{local_part}@{DOMAIN}",
        "first_name": local_part.split(".")[0].title(),
        "last_name": local_part.split(".")[-1].title(),
        "status": "active",
        "quota": {"allowed": 1024, "used": 0},
        "aliases": [],
        **extra,
    }


def error(status: int, code: str, message: str, **headers: str) -> httpx.Response:
    return httpx.Response(
        status, json={"error": {"code": code, "message": message}}, headers=headers
    )


ITEMS = [
    NewMailbox("Anna", "Meier", "anna.meier"),
    NewMailbox("Bo", "Lind", "bo.lind"),
    NewMailbox("Chloé", "Durand", "chloe.durand"),
]


# ------------------------------------------------------------------------------------- bulk


def test_bulk_maps_results_by_index_and_sends_the_documented_request(
    make_client: Callable[..., HybridboxClient],
) -> None:
    recorder = Recorder(
        httpx.Response(
            200,
            json={
                "created": [
                    {"index": 2, "mailbox": mailbox_json("chloe.durand", 3, first_name="Chloé")},
                    {"index": 0, "mailbox": mailbox_json("anna.meier", 1)},
                ],
                "failed": [{"index": 1, "code": "invalid_name", "message": "bad name"}],
            },
        )
    )
    client = make_client(recorder)

    result = client.bulk_create(DOMAIN, ITEMS)

    assert [(c.index, c.mailbox.primary_email) for c in result.created] == [
        (2, "chloe.durand@example.com"),
        (0, "anna.meier@example.com"),
    ]
    assert result.created[1].mailbox.id == "00000000-0000-4000-8000-000000000001"
    assert [(f.index, f.code, f.kind) for f in result.failed] == [
        (1, "invalid_name", ItemKind.INVALID)
    ]
    assert result.unknown == []
    (request,) = recorder.requests
    assert request.method == "POST"
    assert request.url == f"https://hb.test{PREFIX}/mailboxes/bulk"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["user-agent"] == f"syncd/{__version__}"
    assert recorder.bodies() == [
        {
            "domain": DOMAIN,
            "items": [
                {"first_name": "Anna", "last_name": "Meier", "local_part": "anna.meier"},
                {"first_name": "Bo", "last_name": "Lind", "local_part": "bo.lind"},
                {"first_name": "Chloé", "last_name": "Durand", "local_part": "chloe.durand"},
            ],
        }
    ]
    assert client.requests_sent == 1


def test_bulk_partial_success_unknown_items_and_bad_indexes(
    make_client: Callable[..., HybridboxClient], events: list[logging.LogRecord]
) -> None:
    body = {
        "created": [
            {"index": 0, "mailbox": mailbox_json("anna.meier")},
            {"index": 7, "mailbox": mailbox_json("ghost")},  # out of range
            {"index": True, "mailbox": mailbox_json("bool")},  # not an index
        ],
        "failed": [
            {"index": 0, "code": "quota_exceeded", "message": "dup index"},  # already answered
            {"index": 2, "code": "already_exists", "message": "taken"},
            {"index": -1, "code": "quota_exceeded", "message": "negative"},
        ],
    }
    client = make_client(Recorder(httpx.Response(207, json=body)))

    result = client.bulk_create(DOMAIN, ITEMS)

    # Item 0 is answered twice, created and failed: an answer that contradicts itself confirms
    # nothing, so it is unknown (looked up) like item 1, which no entry answers.
    assert result.created == []
    assert [(f.index, f.kind) for f in result.failed] == [(2, ItemKind.TAKEN)]
    assert result.unknown == [0, 1]
    ignored = [r for r in events if r.getMessage() == "hybridbox.bulk_entry_ignored"]
    assert len(ignored) == 4
    assert all(r.levelno == logging.WARNING for r in ignored)
    assert any(r.getMessage() == "hybridbox.bulk_items_unknown" for r in events)


def test_a_created_mailbox_that_is_not_the_one_asked_for_is_unknown(
    make_client: Callable[..., HybridboxClient], events: list[logging.LogRecord]
) -> None:
    anna = mailbox_json("anna.meier", 1)
    body = {
        "created": [
            {"index": 0, "mailbox": anna},
            {"index": 1, "mailbox": anna},  # one mailbox answered for two items
            {"index": 2, "mailbox": mailbox_json("bo.lind", 2, first_name="Bo", last_name="Lind")},
        ]
    }
    client = make_client(Recorder(httpx.Response(200, json=body)))

    result = client.bulk_create(DOMAIN, ITEMS)

    # Only Anna's is hers; Bo's item got Anna's mailbox, Chloé's got Bo's: both looked up.
    assert [(c.index, c.mailbox.local_part) for c in result.created] == [(0, "anna.meier")]
    assert result.unknown == [1, 2]
    mismatches = [fields(r) for r in events if r.getMessage() == "hybridbox.bulk_entry_mismatch"]
    assert [(m["index"], m["asked"], m["answered"]) for m in mismatches] == [
        (1, "bo.lind@example.com", "anna.meier@example.com"),
        (2, "chloe.durand@example.com", "bo.lind@example.com"),
    ]


def test_bulk_created_entry_without_mailbox_is_filled_from_the_request(
    make_client: Callable[..., HybridboxClient],
) -> None:
    body = {"created": [{"index": 0, "id": "abc"}], "failed": None}
    client = make_client(Recorder(httpx.Response(201, json=body)))

    result = client.bulk_create(DOMAIN, ITEMS[:1])

    assert result.created[0].mailbox == Mailbox(
        "abc", "anna.meier", DOMAIN, "anna.meier@example.com", "Anna", "Meier", None
    )


def test_bulk_with_no_items_sends_nothing(make_client: Callable[..., HybridboxClient]) -> None:
    recorder = Recorder(httpx.Response(500))
    client = make_client(recorder)
    assert client.bulk_create(DOMAIN, []) == BulkResult()
    assert recorder.requests == []


def test_all_failed_batch_answered_with_422_is_still_read_item_by_item(
    make_client: Callable[..., HybridboxClient],
) -> None:
    body = {
        "created": [],
        "failed": [
            {"index": 0, "code": "invalid_local_part", "message": "bad"},
            {"index": 1, "code": "quota_exceeded", "message": "full"},
        ],
    }
    client = make_client(Recorder(httpx.Response(422, json=body)))

    result = client.bulk_create(DOMAIN, ITEMS[:2])

    # The item codes decide, not the status: quota_exceeded stays retryable.
    assert [(f.index, f.kind) for f in result.failed] == [
        (0, ItemKind.INVALID),
        (1, ItemKind.RETRY),
    ]


def test_409_for_a_single_item_bulk_means_taken(
    make_client: Callable[..., HybridboxClient],
) -> None:
    client = make_client(Recorder(httpx.Response(409, text="Conflict")))

    result = client.bulk_create(DOMAIN, ITEMS[:1])

    assert [(f.index, f.kind) for f in result.failed] == [(0, ItemKind.TAKEN)]
    assert result.created == [] and result.unknown == []


def test_409_for_a_multi_item_bulk_is_an_unknown_outcome(
    make_client: Callable[..., HybridboxClient],
) -> None:
    client = make_client(Recorder(error(409, "conflict", "an address is taken")))
    with pytest.raises(OutcomeUnknown, match="409"):
        client.bulk_create(DOMAIN, ITEMS)


def test_single_item_422_is_an_invalid_item(make_client: Callable[..., HybridboxClient]) -> None:
    client = make_client(Recorder(httpx.Response(422, json={"detail": "first_name is blank"})))

    result = client.bulk_create(DOMAIN, ITEMS[:1])

    (failure,) = result.failed
    assert failure.kind is ItemKind.INVALID
    assert "first_name is blank" in failure.message


def test_multi_item_422_naming_items_fails_those_and_leaves_the_rest_unknown(
    make_client: Callable[..., HybridboxClient],
) -> None:
    detail = [{"loc": ["body", "items", 1, "last_name"], "msg": "too short", "type": "too_short"}]
    client = make_client(Recorder(httpx.Response(422, json={"detail": detail})))

    result = client.bulk_create(DOMAIN, ITEMS)

    assert [(f.index, f.code, f.kind) for f in result.failed] == [
        (1, "too_short", ItemKind.INVALID)
    ]
    assert result.unknown == [0, 2]


def test_multi_item_422_naming_no_item_is_batch_rejected(
    make_client: Callable[..., HybridboxClient],
) -> None:
    client = make_client(Recorder(error(422, "bad_request", "items are malformed")))
    with pytest.raises(BatchRejected) as caught:
        client.bulk_create(DOMAIN, ITEMS)
    assert caught.value.status == 422
    assert caught.value.code == "bad_request"
    # An engine that halves batches on BatchTooLarge narrows down to the refused item.
    assert isinstance(caught.value, BatchTooLarge)
    assert caught.value.limit is None


@pytest.mark.parametrize(
    ("response", "limit"),
    [
        (error(413, "batch_too_large", "at most 50 items per request"), 50),
        (httpx.Response(413, json={"detail": "too big", "max_items": 25}), 25),
        (httpx.Response(413, text="<html>Request Entity Too Large</html>"), None),
        (error(422, "batch_too_large", "batch of 3 exceeds the limit of 2"), 2),
        (httpx.Response(422, json={"detail": "Too many items in one request"}), None),
    ],
)
def test_batch_too_large(
    make_client: Callable[..., HybridboxClient], response: httpx.Response, limit: int | None
) -> None:
    recorder = Recorder(response)
    client = make_client(recorder)
    with pytest.raises(BatchTooLarge) as caught:
        client.bulk_create(DOMAIN, ITEMS)
    assert caught.value.limit == limit
    assert len(recorder.requests) == 1


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_on_bulk_is_an_unknown_outcome_and_not_resent(
    make_client: Callable[..., HybridboxClient], fake_time: FakeTime, status: int
) -> None:
    recorder = Recorder(error(status, "internal", "boom"), httpx.Response(200, json={}))
    client = make_client(recorder)

    with pytest.raises(OutcomeUnknown, match=str(status)):
        client.bulk_create(DOMAIN, ITEMS)

    assert len(recorder.requests) == 1
    assert fake_time.sleeps == []


def test_503_with_retry_after_on_bulk_is_resent(
    make_client: Callable[..., HybridboxClient], fake_time: FakeTime
) -> None:
    ok = httpx.Response(200, json={"created": [], "failed": []})
    recorder = Recorder(error(503, "unavailable", "maintenance", **{"Retry-After": "3"}), ok)
    client = make_client(recorder)

    result = client.bulk_create(DOMAIN, ITEMS)

    assert result.unknown == [0, 1, 2]
    assert fake_time.sleeps == [3.0]
    assert len(recorder.requests) == 2


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ReadTimeout("timed out"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.ReadError("Connection reset by peer"),
        httpx.WriteTimeout("timed out"),
    ],
)
def test_maybe_applied_transport_errors_on_bulk_are_unknown_outcomes(
    make_client: Callable[..., HybridboxClient], fake_time: FakeTime, exc: Exception
) -> None:
    recorder = Recorder(exc, httpx.Response(200, json={"created": [], "failed": []}))
    client = make_client(recorder)

    with pytest.raises(OutcomeUnknown, match=type(exc).__name__):
        client.bulk_create(DOMAIN, ITEMS)

    assert len(recorder.requests) == 1
    assert fake_time.sleeps == []


def test_connect_errors_on_bulk_are_retried_with_growing_backoff(
    make_client: Callable[..., HybridboxClient],
    fake_time: FakeTime,
    events: list[logging.LogRecord],
) -> None:
    created = {"created": [{"index": 0, "mailbox": mailbox_json("anna.meier")}]}
    recorder = Recorder(
        httpx.Response(200, json={"name": DOMAIN}),  # Hybridbox has answered: not first contact
        httpx.ConnectError("Connection refused"),
        httpx.ConnectTimeout("timed out"),
        httpx.Response(200, json=created),
    )
    client = make_client(recorder)
    client.check_domain(DOMAIN)

    result = client.bulk_create(DOMAIN, ITEMS[:1])

    assert [c.index for c in result.created] == [0]
    # rng() == 0.5: three quarters of 0.5 s, then of 1 s.
    assert fake_time.sleeps == [0.375, 0.75]
    assert client.requests_sent == 2  # the two failed connects never sent anything
    retries = [fields(r) for r in events if r.getMessage() == "hybridbox.retry"]
    assert [(f["reason"], f["attempt"], f["wait_s"]) for f in retries] == [
        ("connect_error", 1, 0.38),
        ("connect_error", 2, 0.75),
    ]


def test_non_json_2xx_on_bulk_is_an_unknown_outcome(
    make_client: Callable[..., HybridboxClient],
) -> None:
    client = make_client(Recorder(httpx.Response(200, text="<html>OK</html>")))
    with pytest.raises(OutcomeUnknown, match="without a usable bulk result"):
        client.bulk_create(DOMAIN, ITEMS)


def test_2xx_bulk_without_result_lists_is_an_unknown_outcome(
    make_client: Callable[..., HybridboxClient],
) -> None:
    client = make_client(Recorder(httpx.Response(200, json={"created": "all of them"})))
    with pytest.raises(OutcomeUnknown):
        client.bulk_create(DOMAIN, ITEMS)


# ------------------------------------------------------------------------- auth and config


def test_401_names_the_token_setting_and_never_the_token(
    make_client: Callable[..., HybridboxClient],
    events: list[logging.LogRecord],
    tmp_path: Path,
) -> None:
    # A server that echoes the header back must not leak it through syncd's message.
    answer = error(401, "unauthorized", f"invalid token Bearer {TOKEN}")
    recorder = Recorder(answer)
    client = make_client(recorder, token_env=None, token_file=tmp_path / "token")

    with pytest.raises(NotAuthorized) as caught:
        client.check_account()

    text = str(caught.value)
    assert f"hybridbox.token_file ({tmp_path / 'token'})" in text
    assert "401 unauthorized" in text
    assert "rotate or fix it" in text
    assert TOKEN not in text
    assert len(recorder.requests) == 1
    assert all(TOKEN not in r.getMessage() + repr(fields(r)) for r in events)


def test_401_on_bulk_is_not_retried_and_names_token_env(
    make_client: Callable[..., HybridboxClient], fake_time: FakeTime
) -> None:
    recorder = Recorder(httpx.Response(401, text=""))
    client = make_client(recorder)
    with pytest.raises(NotAuthorized, match=r"hybridbox.token_env \(\$SYNCD_TEST_HB_TOKEN\)"):
        client.bulk_create(DOMAIN, ITEMS)
    assert len(recorder.requests) == 1
    assert fake_time.sleeps == []


def test_403_on_bulk_says_mailbox_create_is_missing(
    make_client: Callable[..., HybridboxClient],
) -> None:
    client = make_client(Recorder(httpx.Response(403, json={"detail": "forbidden for this key"})))
    with pytest.raises(NotAuthorized) as caught:
        client.bulk_create(DOMAIN, ITEMS)
    assert "mailbox.create" in str(caught.value)
    assert "forbidden for this key" in str(caught.value)
    assert TOKEN not in str(caught.value)


def test_404_on_account_is_a_config_error_naming_account_id(
    make_client: Callable[..., HybridboxClient],
) -> None:
    recorder = Recorder(error(404, "not_found", "no such account"))
    client = make_client(recorder)
    with pytest.raises(ConfigError, match=r"hybridbox\.account_id"):
        client.check_account()
    assert recorder.requests[0].url.path == PREFIX


def test_404_on_domain_is_a_config_error_naming_domain(
    make_client: Callable[..., HybridboxClient],
) -> None:
    recorder = Recorder(error(404, "not_found", "no such domain"))
    client = make_client(recorder)
    with pytest.raises(ConfigError, match=r"hybridbox\.domain"):
        client.check_domain("nope.example")
    assert recorder.requests[0].url.path == f"{PREFIX}/domains/nope.example"


def test_404_on_bulk_is_a_config_error(make_client: Callable[..., HybridboxClient]) -> None:
    client = make_client(Recorder(httpx.Response(404, text="Not Found")))
    with pytest.raises(ConfigError) as caught:
        client.bulk_create(DOMAIN, ITEMS)
    assert "hybridbox.domain" in str(caught.value)
    assert "hybridbox.account_id" in str(caught.value)


def test_check_domain_returns_the_domain_object(
    make_client: Callable[..., HybridboxClient],
) -> None:
    domain = {"id": "d1", "name": DOMAIN, "status": "active", "outbound_routing_ready": True}
    client = make_client(Recorder(httpx.Response(200, json=domain)))
    assert client.check_domain(DOMAIN) == domain


# ------------------------------------------------------------------------ waits and retries


def test_429_with_retry_after_seconds_is_honoured(
    make_client: Callable[..., HybridboxClient],
    fake_time: FakeTime,
    events: list[logging.LogRecord],
) -> None:
    created = {"created": [{"index": 0, "mailbox": mailbox_json("anna.meier")}]}
    ok = httpx.Response(200, json=created)
    recorder = Recorder(error(429, "rate_limited", "slow down", **{"Retry-After": "7"}), ok)
    client = make_client(recorder)

    result = client.bulk_create(DOMAIN, ITEMS[:1])

    assert len(result.created) == 1
    assert fake_time.sleeps == [7.0]
    assert client.budget.spent == 7.0
    assert client.requests_sent == 2
    (retry,) = [fields(r) for r in events if r.getMessage() == "hybridbox.retry"]
    assert retry["reason"] == "rate_limited"
    assert retry["status"] == 429
    assert retry["wait_s"] == 7.0
    assert retry["attempt"] == 1


def test_429_with_http_date_retry_after_uses_the_servers_date(
    make_client: Callable[..., HybridboxClient], fake_time: FakeTime
) -> None:
    # The server's clock is a year off ours: only the difference between its headers counts.
    server_now = datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC)
    headers = {
        "Date": format_datetime(server_now, usegmt=True),
        "Retry-After": format_datetime(server_now + timedelta(seconds=12), usegmt=True),
    }
    recorder = Recorder(
        httpx.Response(429, headers=headers), httpx.Response(200, json={"id": ACCOUNT})
    )
    client = make_client(recorder)

    assert client.check_account() == {"id": ACCOUNT}
    assert fake_time.sleeps == [12.0]


def test_http_date_retry_after_without_a_date_header_uses_our_clock(
    make_client: Callable[..., HybridboxClient], fake_time: FakeTime
) -> None:
    later = datetime.now(UTC) + timedelta(seconds=20)
    recorder = Recorder(
        httpx.Response(503, headers={"Retry-After": format_datetime(later, usegmt=True)}),
        httpx.Response(200, json={"id": ACCOUNT}),
    )
    client = make_client(recorder)

    client.check_account()

    (slept,) = fake_time.sleeps
    assert 17 <= slept <= 20  # HTTP dates have whole seconds


def test_retry_after_longer_than_the_cap_gives_up_at_once(
    make_client: Callable[..., HybridboxClient], fake_time: FakeTime
) -> None:
    recorder = Recorder(error(429, "rate_limited", "come back later", **{"Retry-After": "3600"}))
    client = make_client(recorder, max_retry_after_s=60)

    with pytest.raises(HybridboxUnavailable) as caught:
        client.bulk_create(DOMAIN, ITEMS)

    assert "max_retry_after_s" in str(caught.value)
    assert "3600" in str(caught.value)
    assert fake_time.sleeps == []
    assert len(recorder.requests) == 1


def test_get_retries_5xx_and_timeouts_until_an_answer(
    make_client: Callable[..., HybridboxClient], fake_time: FakeTime
) -> None:
    recorder = Recorder(
        httpx.Response(502, text="<html><body>Bad Gateway</body></html>"),
        httpx.ReadTimeout("timed out"),
        httpx.RemoteProtocolError("Server disconnected"),
        httpx.Response(200, json=mailbox_json("anna.meier")),
    )
    client = make_client(recorder)

    mailbox = client.get_mailbox("00000000-0000-4000-8000-000000000001")

    assert mailbox is not None and mailbox.local_part == "anna.meier"
    assert fake_time.sleeps == [0.375, 0.75, 1.5]
    assert client.requests_sent == 4


def test_backoff_is_capped_at_30_seconds(
    make_client: Callable[..., HybridboxClient], fake_time: FakeTime
) -> None:
    recorder = Recorder(*[httpx.Response(500)] * 9, httpx.Response(200, json={}))
    client = make_client(recorder, budget_s=1000)
    client._rng = lambda: 1.0  # the top of the jitter range

    client.check_account()

    assert fake_time.sleeps == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]


def test_exhausted_budget_raises_unavailable_with_counts(
    make_client: Callable[..., HybridboxClient],
    fake_time: FakeTime,
    events: list[logging.LogRecord],
) -> None:
    recorder = Recorder(error(500, "internal", "database is down"))
    client = make_client(recorder, budget_s=5)

    with pytest.raises(HybridboxUnavailable) as caught:
        client.check_account()

    text = str(caught.value)
    # 0.375 + 0.75 + 1.5 = 2.625 s slept; the next wait (3 s) would overrun 5 s.
    assert fake_time.sleeps == [0.375, 0.75, 1.5]
    assert "gave up after 3 retries / 2.6 s" in text
    assert "retried next cycle" in text
    assert "database is down" in text
    assert "hybridbox.retry_budget_s" in text
    assert any(r.getMessage() == "hybridbox.gave_up" for r in events)


def test_budget_is_shared_by_the_calls_of_a_cycle(
    make_client: Callable[..., HybridboxClient], fake_time: FakeTime
) -> None:
    recorder = Recorder(
        httpx.Response(429, headers={"Retry-After": "4"}),
        httpx.Response(200, json={}),
        httpx.Response(429, headers={"Retry-After": "4"}),
    )
    client = make_client(recorder, budget_s=6)

    client.check_account()
    with pytest.raises(HybridboxUnavailable, match=r"gave up after 1 retries / 4\.0 s"):
        client.check_account()
    assert fake_time.sleeps == [4.0]


def test_rename_patches_names_and_retries_503(
    make_client: Callable[..., HybridboxClient], fake_time: FakeTime
) -> None:
    renamed = mailbox_json("anna.meier", first_name="Anna-Lena")
    recorder = Recorder(httpx.Response(503), httpx.Response(200, json=renamed))
    client = make_client(recorder)

    mailbox = client.rename("mb-1", "Anna-Lena", "Meier")

    assert mailbox.first_name == "Anna-Lena"
    assert [r.method for r in recorder.requests] == ["PATCH", "PATCH"]
    assert recorder.requests[0].url.path == f"{PREFIX}/mailboxes/mb-1"
    assert recorder.bodies()[0] == {"first_name": "Anna-Lena", "last_name": "Meier"}
    assert len(fake_time.sleeps) == 1


def test_rename_of_a_missing_mailbox_says_so(make_client: Callable[..., HybridboxClient]) -> None:
    client = make_client(Recorder(error(404, "not_found", "no mailbox")))
    with pytest.raises(RequestRefused, match="no longer exists") as caught:
        client.rename("mb-1", "A", "B")
    assert caught.value.status == 404
    # Not a reason to stop the cycle: the engine records it for that person.
    assert not isinstance(caught.value, HybridboxUnavailable)


def test_rename_refused_names_is_a_refusal_for_that_mailbox(
    make_client: Callable[..., HybridboxClient],
) -> None:
    client = make_client(Recorder(error(422, "invalid_name", "control characters")))
    with pytest.raises(RequestRefused, match="invalid_name: control characters") as caught:
        client.rename("mb-1", "A\x00", "B")
    assert (caught.value.status, caught.value.code) == (422, "invalid_name")


# --------------------------------------------------------------------- odd bodies and lookups


def test_non_json_error_body_is_shown_as_a_short_excerpt(
    make_client: Callable[..., HybridboxClient],
) -> None:
    page = "<html><head><title>400 Bad Request</title></head><body>" + "x" * 500 + "</body></html>"
    client = make_client(Recorder(httpx.Response(400, text=page)))

    with pytest.raises(UnexpectedResponse) as caught:
        client.check_account()

    text = str(caught.value)
    assert "400: <html><head><title>400 Bad Request</title>" in text
    assert text.endswith("…")
    assert len(text) < 320
    assert caught.value.status == 400


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"error": {"code": "nope", "message": "Nope."}}, "418 nope: Nope."),
        ({"detail": [{"loc": ["query"], "msg": "bad"}]}, '418: [{"loc":["query"],"msg":"bad"}]'),
        ({"error": "teapot"}, "418 teapot"),
        ({"error": "I am a teapot"}, "418: I am a teapot"),
        ([1, 2], "418: [1,2]"),
        ({"weird": True}, '418: {"weird":true}'),
        (None, "418: (empty body)"),
    ],
)
def test_every_error_body_shape_gives_a_message(
    make_client: Callable[..., HybridboxClient], body: Any, expected: str
) -> None:
    response = httpx.Response(418) if body is None else httpx.Response(418, json=body)
    client = make_client(Recorder(response))
    with pytest.raises(UnexpectedResponse) as caught:
        client.check_account()
    assert str(caught.value).endswith(expected)


def test_get_mailbox_404_is_none(make_client: Callable[..., HybridboxClient]) -> None:
    client = make_client(Recorder(httpx.Response(404, text="not here")))
    assert client.get_mailbox("whatever") is None


def test_find_by_address_uses_the_address_route(
    make_client: Callable[..., HybridboxClient],
) -> None:
    recorder = Recorder(httpx.Response(200, json=mailbox_json("anna.meier")))
    client = make_client(recorder)

    mailbox = client.find_by_address("anna.meier", DOMAIN)

    assert mailbox is not None and mailbox.primary_email == "anna.meier@example.com"
    path = recorder.requests[0].url.raw_path.decode()
    assert path == f"{PREFIX}/mailboxes/anna.meier@example.com"


def test_find_by_address_falls_back_to_an_exact_search(
    make_client: Callable[..., HybridboxClient],
) -> None:
    page = {
        "items": [
            mailbox_json("anna.meier2", 2),
            mailbox_json("anna.meier", 1, primary_email="Anna.Meier@Example.com"),
        ],
        "page": 1,
        "page_size": 2,
        "total": 2,
    }
    recorder = Recorder(httpx.Response(404), httpx.Response(200, json=page))
    client = make_client(recorder)

    mailbox = client.find_by_address("anna.meier", DOMAIN)

    assert mailbox is not None and mailbox.id.endswith("1")
    search = recorder.requests[1]
    assert search.url.path == f"{PREFIX}/mailboxes"
    assert dict(search.url.params) == {
        "domain": DOMAIN,
        "search": "anna.meier",
        "page": "1",
        "page_size": "2",
    }


def test_find_by_address_returns_none_when_search_has_only_near_matches(
    make_client: Callable[..., HybridboxClient],
) -> None:
    page = {"items": [mailbox_json("anna.meier2", 2)], "page": 1, "page_size": 2, "total": 1}
    client = make_client(Recorder(httpx.Response(404), httpx.Response(200, json=page)))
    assert client.find_by_address("anna.meier", DOMAIN) is None


def test_list_pages_until_total_and_dedups_by_id(
    make_client: Callable[..., HybridboxClient],
) -> None:
    boxes = [mailbox_json(name, n) for n, name in enumerate(["a.a", "b.b", "c.c", "d.d", "e.e"])]
    pages = [boxes[0:2], [boxes[1], boxes[2]], boxes[3:5]]  # b.b moved across a page boundary

    def answer(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params["page"])
        size = int(request.url.params["page_size"])
        body = {"items": pages[page - 1], "page": page, "page_size": size, "total": 5}
        return httpx.Response(200, json=body)

    recorder = Recorder(answer)
    client = make_client(recorder)

    listed = list(client.list_mailboxes(DOMAIN))

    assert [m.local_part for m in listed] == ["a.a", "b.b", "c.c", "d.d", "e.e"]
    assert [r.url.params["page"] for r in recorder.requests] == ["1", "2", "3"]
    assert {r.url.params["page_size"] for r in recorder.requests} == {"2"}
    assert {r.url.params["domain"] for r in recorder.requests} == {DOMAIN}


def test_list_keeps_paging_when_the_server_clamps_page_size(
    make_client: Callable[..., HybridboxClient],
) -> None:
    boxes = [mailbox_json(f"p.{n}", n) for n in range(5)]

    def answer(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params["page"])
        items = boxes[(page - 1) * 2 : page * 2]  # serves 2 although 10 were asked for
        return httpx.Response(200, json={"items": items, "page": page, "total": 5})

    client = make_client(Recorder(answer), page_size=10)
    assert len(list(client.list_mailboxes(DOMAIN))) == 5


def test_list_stops_on_an_empty_page_even_if_total_promises_more(
    make_client: Callable[..., HybridboxClient],
) -> None:
    first = {"items": [mailbox_json("a.a")], "page": 1, "page_size": 2, "total": 9}
    empty = {"items": [], "page": 2, "page_size": 2, "total": 9}
    recorder = Recorder(httpx.Response(200, json=first), httpx.Response(200, json=empty))
    client = make_client(recorder)
    assert [m.local_part for m in client.list_mailboxes(DOMAIN)] == ["a.a"]
    assert len(recorder.requests) == 2


def test_find_by_address_without_a_local_part_sends_nothing(
    make_client: Callable[..., HybridboxClient],
) -> None:
    recorder = Recorder(httpx.Response(500))
    client = make_client(recorder)
    assert client.find_by_address("", DOMAIN) is None
    assert recorder.requests == []


def test_list_404_is_a_config_error(make_client: Callable[..., HybridboxClient]) -> None:
    client = make_client(Recorder(httpx.Response(404, json={"detail": "Not Found"})))
    with pytest.raises(ConfigError, match=r"hybridbox\.domain"):
        list(client.list_mailboxes("nope.example"))


def test_client_is_a_context_manager_that_closes_its_connections() -> None:
    recorder = Recorder(httpx.Response(200, json={"id": ACCOUNT}))
    with HybridboxClient(config(), TOKEN, transport=httpx.MockTransport(recorder)) as client:
        client.check_account()
        client.check_account()
    assert client.requests_sent == 2
    with pytest.raises(RuntimeError, match="closed"):
        client.check_account()
