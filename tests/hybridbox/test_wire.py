"""The client's bounds over real sockets, against a raw TCP server that answers badly on purpose.

httpx's ``timeout`` is per read: a server that drips its answer keeps each read short and the
request alive forever. These servers drip headers, drip a body, lie about ``Content-Length``,
never end a chunked body and send a gzip bomb; each must end within ``hybridbox.timeout_s`` (or
at once) with the right kind of failure. Every server gives up after ``SERVER_PATIENCE_S``, so a
client without the bounds makes the test fail on time rather than hang.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator

import httpx
import pytest

from syncd.errors import HybridboxUnavailable
from syncd.hybridbox import MAX_ANSWER_BYTES, HybridboxClient, OutcomeUnknown, RetryBudget
from tests.hybridbox.test_client import DOMAIN, ITEMS, TOKEN, config

TIMEOUT_S = 0.5
# A correct client is done well within this; a client without the bound waits for the server.
DONE_WITHIN_S = TIMEOUT_S + 1.0
SERVER_PATIENCE_S = 5.0
DRIP_EVERY_S = 0.05

Answer = Callable[[socket.socket], None]


class RawServer:
    """Answers every connection on a loopback port with ``answer(connection)``."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):  # the listener closed: the test is over
            while True:
                conn, _ = self.listener.accept()
                threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):  # the client hung up: that is the point
            _read_request(conn)
            self.answer(conn)

    def close(self) -> None:
        self.listener.close()


def _read_request(conn: socket.socket) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        body += conn.recv(65536)


def drip(conn: socket.socket, piece: bytes) -> None:
    """Send ``piece`` again and again, each well within a read timeout, for a while."""
    until = time.monotonic() + SERVER_PATIENCE_S
    while time.monotonic() < until:
        conn.sendall(piece)
        time.sleep(DRIP_EVERY_S)


@pytest.fixture
def serve() -> Iterator[Callable[..., HybridboxClient]]:
    servers: list[RawServer] = []
    clients: list[HybridboxClient] = []

    def make(answer: Answer, timeout_s: float = TIMEOUT_S) -> HybridboxClient:
        server = RawServer(answer)
        servers.append(server)
        # No retry budget: a GET that times out is not retried, so each test sees one attempt.
        client = HybridboxClient(
            config(url=server.url, timeout_s=timeout_s), TOKEN, budget=RetryBudget(0)
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
    for server in servers:
        server.close()


def timed(call: Callable[[], object]) -> tuple[BaseException, float]:
    started = time.monotonic()
    with pytest.raises((HybridboxUnavailable, OutcomeUnknown)) as caught:
        call()
    return caught.value, time.monotonic() - started


def test_headers_dripped_forever_end_at_the_deadline(
    serve: Callable[..., HybridboxClient],
) -> None:
    def answer(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nX-Padding: ")
        drip(conn, b"a")

    client = serve(answer)
    error, took = timed(client.check_account)

    assert isinstance(error, HybridboxUnavailable)
    assert "no complete answer within 0.5 s (hybridbox.timeout_s)" in str(error)
    assert TIMEOUT_S <= took < DONE_WITHIN_S


def chunked_without_end(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    drip(conn, b"1\r\n \r\n")


def body_a_byte_at_a_time(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n{")
    drip(conn, b" ")


def length_promising_more(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n{}")
    time.sleep(SERVER_PATIENCE_S)


@pytest.mark.parametrize(
    "answer", [chunked_without_end, body_a_byte_at_a_time, length_promising_more]
)
def test_a_bulk_answer_that_does_not_end_is_an_unknown_outcome_at_the_deadline(
    serve: Callable[..., HybridboxClient], answer: Answer
) -> None:
    client = serve(answer)
    error, took = timed(lambda: client.bulk_create(DOMAIN, ITEMS))

    # Created or not, nobody knows: the engine looks each item up; nothing is recorded from this.
    assert isinstance(error, OutcomeUnknown)
    assert "may have been applied" in str(error)
    assert took < DONE_WITHIN_S


def test_a_connection_closed_before_the_promised_length_is_an_unknown_outcome(
    serve: Callable[..., HybridboxClient],
) -> None:
    client = serve(lambda conn: conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n{}"))
    error, took = timed(lambda: client.bulk_create(DOMAIN, ITEMS))
    assert isinstance(error, OutcomeUnknown) and "RemoteProtocolError" in str(error)
    assert took < TIMEOUT_S


def test_a_declared_length_over_the_cap_is_refused_before_reading(
    serve: Callable[..., HybridboxClient],
) -> None:
    def answer(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n")
        drip(conn, b" " * 65536)

    client = serve(answer)
    error, took = timed(lambda: client.bulk_create(DOMAIN, ITEMS))
    assert isinstance(error, OutcomeUnknown)
    assert "1000000000 bytes long, more than syncd reads (16 MiB)" in str(error)
    assert took < TIMEOUT_S


def test_a_gzip_bomb_over_the_wire_is_stopped_at_the_cap(
    serve: Callable[..., HybridboxClient],
) -> None:
    def answer(conn: socket.socket) -> None:
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        compressor = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
        zeros = bytes(1024 * 1024)
        for _ in range(1024):  # 1 GiB of zeros, about 1 MiB on the wire
            piece = compressor.compress(zeros) + compressor.flush(zlib.Z_SYNC_FLUSH)
            conn.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))

    client = serve(answer)
    tracemalloc.start()
    try:
        error, took = timed(lambda: client.bulk_create(DOMAIN, ITEMS))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert isinstance(error, OutcomeUnknown)
    assert "larger than 16 MiB decoded" in str(error)
    assert peak < 3 * MAX_ANSWER_BYTES  # not the GiB it would inflate to
    assert took < DONE_WITHIN_S


def test_a_server_that_answers_well_is_read_over_the_same_wire(
    serve: Callable[..., HybridboxClient],
) -> None:
    body = httpx.Response(200, json={"id": "account"}).content
    gzipped = zlib.compress(body, wbits=zlib.MAX_WBITS | 16)

    def answer(conn: socket.socket) -> None:
        conn.sendall(
            # Connection: close, as this server does: a client that kept the connection for the
            # next request would race the server's close (a reset, now and then).
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(gzipped), gzipped)
        )

    # A generous deadline: this answer is on time, and a busy machine must not make it late.
    client = serve(answer, timeout_s=30)
    assert client.check_account() == {"id": "account"}
    assert client.check_account() == {"id": "account"}  # and again, on a new connection
