"""The client against servers that are wrong, slow or hostile (``httpx.MockTransport``, fake time).

Each test pins one bound: a wrong ``hybridbox.url`` fails at the first contact instead of being
retried; failed attempts are charged to the retry budget; an answer is bounded in time (a body
dripped forever) and in size (a gzip bomb) as a whole; a redirect is never followed. Over real
sockets, the same bounds are tested in ``test_wire.py``.
"""

from __future__ import annotations

import socket
import ssl
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from syncd.errors import HybridboxUnavailable
from syncd.hybridbox import (
    MAX_ANSWER_BYTES,
    HybridboxClient,
    OutcomeUnknown,
    RetryBudget,
    UnexpectedResponse,
)
from tests.hybridbox.test_client import DOMAIN, ITEMS, TOKEN, Recorder, config, mailbox_json
from tests.support.fake_time import FakeTime

MiB = 1024 * 1024


@pytest.fixture
def make_client(fake_time: FakeTime) -> Iterator[Callable[..., HybridboxClient]]:
    """A client over a Recorder, its budget and backoff on fake time (as in test_client.py)."""
    clients: list[HybridboxClient] = []

    def make(recorder: Recorder, budget_s: float = 300, **overrides: Any) -> HybridboxClient:
        budget = RetryBudget(budget_s, sleep=fake_time.sleep, clock=fake_time.clock)
        transport = httpx.MockTransport(recorder)
        client = HybridboxClient(
            config(**overrides), TOKEN, budget=budget, transport=transport, rng=lambda: 0.5
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def caused_by(exc: httpx.RequestError, cause: BaseException) -> httpx.RequestError:
    """``exc`` raised from ``cause``, as httpx raises an OS error (through httpcore's)."""
    exc.__cause__ = cause
    return exc


# ------------------------------------------------------------------------ first contact


@pytest.mark.parametrize(
    ("failure", "says"),
    [
        (
            caused_by(httpx.ConnectError("[Errno 111]"), ConnectionRefusedError(111, "refused")),
            "nothing accepts connections on hb.test port 443 (connection refused)",
        ),
        (
            caused_by(httpx.ConnectError("[Errno -2]"), socket.gaierror(-2, "Name unknown")),
            "the host name hb.test does not resolve",
        ),
        (
            caused_by(httpx.ConnectError("[SSL]"), ssl.SSLError(1, "WRONG_VERSION_NUMBER")),
            "the TLS handshake failed",
        ),
        (httpx.ConnectTimeout("timed out"), "no connection within 30 s (hybridbox.timeout_s)"),
        (httpx.ReadError("[Errno 104] Connection reset by peer"), "no HTTP answer"),
    ],
)
def test_a_wrong_url_fails_at_the_first_contact_naming_the_key(
    make_client: Callable[..., HybridboxClient],
    fake_time: FakeTime,
    failure: httpx.RequestError,
    says: str,
) -> None:
    recorder = Recorder(failure)
    client = make_client(recorder)

    with pytest.raises(HybridboxUnavailable) as caught:
        client.check_account()

    message = str(caught.value)
    assert message.startswith("cannot reach Hybridbox at https://hb.test: ")
    assert says in message
    assert "check " in message and "hybridbox.url" in message
    assert "next cycle" not in message  # a wrong URL is not fixed by waiting
    assert TOKEN not in message
    assert len(recorder.requests) == 1 and fake_time.sleeps == []


def test_after_a_first_answer_the_same_failures_are_retried(
    make_client: Callable[..., HybridboxClient], fake_time: FakeTime
) -> None:
    refused = caused_by(httpx.ConnectError("[Errno 111]"), ConnectionRefusedError(111, "refused"))
    recorder = Recorder(
        httpx.Response(200, json={"id": "account"}),
        refused,
        httpx.ReadError("Connection reset by peer"),
        httpx.Response(200, json={"id": "account"}),
    )
    client = make_client(recorder)
    client.check_account()

    client.check_account()  # Hybridbox was answering and stopped: back off and retry

    assert fake_time.sleeps == [0.375, 0.75]
    assert len(recorder.requests) == 4


@pytest.mark.parametrize(
    ("in_cycle", "ending"),
    [(False, "s (the retry budget"), (True, "the rest is retried next cycle")],
)
def test_only_a_cycle_s_client_promises_a_next_cycle(
    fake_time: FakeTime, in_cycle: bool, ending: str
) -> None:
    # validate makes its client with in_cycle=False: no next cycle retries what it checks.
    recorder = Recorder(httpx.Response(200, json={}), httpx.Response(503))
    transport = httpx.MockTransport(recorder)
    settings = config(retry_budget_s=1)
    with HybridboxClient(
        settings,
        TOKEN,
        transport=transport,
        sleep=fake_time.sleep,
        clock=fake_time.clock,
        rng=lambda: 0.5,
        in_cycle=in_cycle,
    ) as client:
        client.check_account()
        with pytest.raises(HybridboxUnavailable) as caught:
            client.check_account()
    message = str(caught.value)
    assert "gave up after 1 retries" in message and ending in message
    assert ("next cycle" in message) is in_cycle


# ------------------------------------------------------------------------ the retry budget


def slow(fake_time: FakeTime, seconds: float, outcome: httpx.Response | Exception) -> Any:
    """A handler whose attempt takes ``seconds`` of fake time, then answers or fails."""

    def handle(request: httpx.Request) -> httpx.Response:
        fake_time.now += seconds
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    return handle


def test_time_spent_in_failed_attempts_is_charged_to_the_budget(
    make_client: Callable[..., HybridboxClient], fake_time: FakeTime
) -> None:
    recorder = Recorder(
        httpx.Response(200, json={}),  # Hybridbox answered once: then it timed out, 5 s a time
        slow(fake_time, 5, httpx.ReadTimeout("timed out")),
    )
    client = make_client(recorder, budget_s=12)
    client.check_account()
    started = fake_time.now

    with pytest.raises(HybridboxUnavailable, match=r"gave up after 2 retries / 16\.1 s"):
        client.check_account()

    # 5 s + 0.375 s + 5 s + 0.75 s + 5 s: the last attempt started within the budget and may
    # overrun it by its own timeout, no more. Before, only the sleeps counted (1.125 s of 12).
    assert fake_time.now - started == pytest.approx(16.125)
    assert fake_time.now - started <= 12 + 5
    assert len(recorder.requests) == 4


def test_a_budget_overrun_by_unknown_outcomes_stops_the_next_request(
    make_client: Callable[..., HybridboxClient], fake_time: FakeTime
) -> None:
    recorder = Recorder(slow(fake_time, 30, httpx.ReadTimeout("timed out")))
    client = make_client(recorder, budget_s=40)

    with pytest.raises(OutcomeUnknown):
        client.bulk_create(DOMAIN, ITEMS)
    with pytest.raises(OutcomeUnknown):
        client.bulk_create(DOMAIN, ITEMS)  # 30 s of 40 spent: still allowed
    with pytest.raises(HybridboxUnavailable, match=r"hybridbox\.retry_budget_s"):
        client.find_by_address("anna.meier", DOMAIN)  # 60 s of 40: nothing more is sent

    assert client.budget.spent == 60
    assert len(recorder.requests) == 2


# ------------------------------------------------------------------------ the answer's bounds


class LazyStream(httpx.SyncByteStream):
    """A body made as it is read, counting the chunks read: what a server has sent so far."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks
        self.read = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.chunks:
            self.read += 1
            yield chunk


def gzip_of_zeros(total: int, step: int = MiB) -> Iterator[bytes]:
    """``total`` zero bytes, gzip-compressed a step at a time (about 1 kB per MiB)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    zeros = bytes(step)
    for _ in range(total // step):
        yield compressor.compress(zeros) + compressor.flush(zlib.Z_SYNC_FLUSH)
    yield compressor.flush()


BOMB_BYTES = 256 * MiB  # 16 times the cap; about 260 kB on the wire


@pytest.mark.parametrize("call", ["bulk", "lookup"])
def test_a_gzip_bomb_is_stopped_at_the_cap_before_it_is_inflated(
    make_client: Callable[..., HybridboxClient], fake_time: FakeTime, call: str
) -> None:
    streams: list[LazyStream] = []

    def bomb(request: httpx.Request) -> httpx.Response:
        streams.append(LazyStream(gzip_of_zeros(BOMB_BYTES)))
        headers = {"content-encoding": "gzip", "content-type": "application/json"}
        return httpx.Response(200, headers=headers, stream=streams[-1])

    client = make_client(Recorder(bomb))
    tracemalloc.start()
    try:
        if call == "bulk":
            # The request may have been applied: its items are looked up, nothing recorded.
            with pytest.raises(OutcomeUnknown, match="larger than 16 MiB decoded"):
                client.bulk_create(DOMAIN, ITEMS)
        else:
            # Asking again would bring the same bomb: not retried.
            with pytest.raises(UnexpectedResponse, match="larger than 16 MiB decoded"):
                client.get_mailbox("anna.meier@example.com")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert len(streams) == 1 and fake_time.sleeps == []
    # Stopped a MiB past the cap: the rest of the bomb was never read, let alone inflated.
    assert streams[0].read <= MAX_ANSWER_BYTES // MiB + 2 < BOMB_BYTES // MiB
    assert peak < 3 * MAX_ANSWER_BYTES


def test_a_gzip_answer_under_the_cap_is_read_as_usual(
    make_client: Callable[..., HybridboxClient],
) -> None:
    body = httpx.Response(200, json=mailbox_json("anna.meier")).content
    gzipped = zlib.compress(body, wbits=zlib.MAX_WBITS | 16)
    headers = {"content-encoding": "gzip", "content-type": "application/json"}
    recorder = Recorder(
        lambda request: httpx.Response(200, headers=headers, stream=LazyStream(iter([gzipped])))
    )
    client = make_client(recorder)

    mailbox = client.get_mailbox("anna.meier@example.com")

    assert mailbox is not None and mailbox.local_part == "anna.meier"
    assert recorder.requests[0].headers["accept-encoding"] == "gzip, deflate"


def test_an_encoding_syncd_did_not_ask_for_is_not_read(
    make_client: Callable[..., HybridboxClient],
) -> None:
    headers = {"content-encoding": "br"}
    client = make_client(
        Recorder(lambda r: httpx.Response(200, headers=headers, stream=LazyStream(iter([b"x"]))))
    )
    with pytest.raises(OutcomeUnknown, match="encoded as 'br'"):
        client.bulk_create(DOMAIN, ITEMS)


def test_a_body_dripped_forever_ends_at_the_request_s_deadline(
    make_client: Callable[..., HybridboxClient], fake_time: FakeTime
) -> None:
    def drip() -> Iterator[bytes]:
        yield b'{"created": ['
        while True:  # one byte a second, each well within the per-read timeout
            fake_time.now += 1
            yield b" "

    streams: list[LazyStream] = []

    def answer(request: httpx.Request) -> httpx.Response:
        streams.append(LazyStream(drip()))
        return httpx.Response(200, stream=streams[-1])

    client = make_client(Recorder(answer), timeout_s=10)

    with pytest.raises(OutcomeUnknown, match=r"no complete answer within 10 s"):
        client.bulk_create(DOMAIN, ITEMS)

    assert streams[0].read == 12  # the opening, then 10 s of bytes, then one past the deadline
    assert client.budget.spent == 11


# ------------------------------------------------------------------------ redirects


def test_a_redirect_is_not_followed_and_the_token_goes_nowhere_else(
    make_client: Callable[..., HybridboxClient],
) -> None:
    moved = httpx.Response(
        302, headers={"location": "https://collector.example.net/v1?steal=" + TOKEN}
    )
    recorder = Recorder(moved)
    client = make_client(recorder)

    with pytest.raises(HybridboxUnavailable) as caught:
        client.bulk_create(DOMAIN, ITEMS)

    message = str(caught.value)
    assert "302, a redirect to https://collector.example.net/v1;" in message
    assert "hybridbox.url" in message and TOKEN not in message and "steal" not in message
    assert [request.url.host for request in recorder.requests] == ["hb.test"]
