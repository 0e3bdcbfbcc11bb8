"""One answer off the wire, bounded in time and in size.

Package-private: the client (:mod:`syncd.hybridbox._client`) sends every request through
:func:`read_answer`. httpx's ``timeout`` bounds each read, not the request: a server that sends its
answer one byte a second never trips it, and a gzip answer may inflate to any size. So:

- The whole request (connect, send, the answer's headers and body) gets one deadline,
  ``hybridbox.timeout_s`` after it starts. The body is read chunk by chunk with the clock checked
  after each, and a :class:`Watchdog` ends a request still blocked inside httpx at the deadline (a
  server dripping its headers) by shutting its socket down. Either way the request fails as an
  ``httpx.ReadTimeout``, which the client treats like any timeout (for a bulk POST: an unknown
  outcome, resolved by lookup).
- The decoded body is capped at :data:`MAX_ANSWER_BYTES`. syncd asks only for gzip or deflate and
  inflates them itself, asking zlib for no more than what is left under the cap, so a small gzip
  bomb never grows in memory; over the cap, or in an encoding syncd did not ask for, the answer is
  :class:`AnswerUnusable`.

The answer comes back as an ordinary, fully read ``httpx.Response`` (its body decoded, its
``Content-Encoding`` gone), so reading it is unchanged.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import weakref
import zlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import httpx

# The largest decoded answer syncd reads. The largest answers it asks for are a bulk answer for
# 1000 items (hybridbox.batch_size's maximum) and a list page of 1000 mailboxes
# (hybridbox.page_size's maximum): about 0.5 kB of JSON per mailbox, so well under 1 MiB. 16 MiB
# leaves room for servers that say much more, and still ends a decompression bomb early.
MAX_ANSWER_BYTES = 16 * 1024 * 1024

# The only content codings syncd accepts, which it inflates itself (see BoundedDecoder). Sent
# explicitly: httpx would also offer br and zstd whenever their packages happen to be installed.
ACCEPT_ENCODING = "gzip, deflate"
_ZLIB_WBITS = {
    "gzip": zlib.MAX_WBITS | 16,
    "x-gzip": zlib.MAX_WBITS | 16,
    "deflate": zlib.MAX_WBITS,
}
# "deflate" is zlib-wrapped by the standard, but some servers send it raw.
_RAW_DEFLATE_WBITS = -zlib.MAX_WBITS

# The headers that described the body as it came over the wire, not as it is once decoded.
_WIRE_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})

# httpcore's trace events that hand over a new connection's stream: plain TCP, then TLS over it.
_CONNECTED_EVENTS = frozenset({"connection.connect_tcp.complete", "connection.start_tls.complete"})


class AnswerUnusable(Exception):
    """An answer syncd will not read: larger than MAX_ANSWER_BYTES decoded, or in a content coding
    it did not ask for. Reading it again would give the same: not a reason to retry."""


# ------------------------------------------------------------------------------- the deadline


class Alarm:
    """Whether the watchdog ended the request it guarded (set from the watchdog's timer)."""

    __slots__ = ("fired",)

    def __init__(self) -> None:
        self.fired = False


class Watchdog:
    """Ends a request that overruns its deadline wherever httpx is blocked on it.

    It learns every connection's socket from httpx's documented ``trace`` extension (pass
    :meth:`trace` as ``extensions={"trace": ...}``), and when a request's time is up shuts them
    down: a blocked read then returns at once, and the request fails. One client sends one request
    at a time (:class:`Lines` gives each sending thread a client of its own), so the sockets shut
    down are that request's and idle keep-alive ones, which httpx then replaces. One thread
    watches all of a client's requests (a thread started per request would cost more than the
    rest of a request's own work); :meth:`close` ends it.
    """

    def __init__(self) -> None:
        self._sockets: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        self._wake = threading.Condition()
        self._alarm: Alarm | None = None  # the request being guarded, if any
        self._deadline = 0.0
        self._closed = False
        self._thread: threading.Thread | None = None

    def trace(self, event_name: str, info: Mapping[str, Any]) -> None:
        if event_name not in _CONNECTED_EVENTS:
            return
        get_extra_info = getattr(info.get("return_value"), "get_extra_info", None)
        sock = get_extra_info("socket") if callable(get_extra_info) else None
        if isinstance(sock, socket.socket):
            with self._wake:
                self._sockets.add(sock)

    @contextlib.contextmanager
    def armed(self, seconds: float) -> Iterator[Alarm]:
        """Guard the request made inside the ``with``: after ``seconds``, end it."""
        alarm = Alarm()
        with self._wake:
            self._alarm, self._deadline = alarm, time.monotonic() + seconds
            if self._thread is None:
                # A daemon thread: never keeps syncd from exiting.
                self._thread = threading.Thread(
                    target=self._watch, name="syncd-hybridbox-watchdog", daemon=True
                )
                self._thread.start()
            self._wake.notify()
        try:
            yield alarm
        finally:
            with self._wake:
                if self._alarm is alarm:
                    self._alarm = None

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()

    def _watch(self) -> None:
        while True:
            with self._wake:
                overrun = self._next_overrun()
            if overrun is None:
                return
            for sock in overrun:
                with contextlib.suppress(OSError):  # closed meanwhile: nothing to end
                    # The plain socket's shutdown, also for a TLS socket: ssl.SSLSocket's own
                    # drops its TLS state first, under the feet of the thread reading from it.
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def _next_overrun(self) -> list[socket.socket] | None:
        """Wait (holding ``_wake``) until a guarded request overruns its deadline: the sockets
        to shut down then; None once closed."""
        while not self._closed:
            alarm = self._alarm
            if alarm is None:
                self._wake.wait()
                continue
            left = self._deadline - time.monotonic()
            if left > 0:
                self._wake.wait(left)
                continue
            alarm.fired = True
            self._alarm = None
            return list(self._sockets)
        return None


class Line:
    """One sending thread's way to Hybridbox: its own httpx client (and so its own connections),
    and the watchdog of its requests."""

    __slots__ = ("extensions", "http", "watchdog")

    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        self.watchdog = Watchdog()
        # Passed with every request, so that the watchdog learns the line's sockets.
        self.extensions: dict[str, Any] = {"trace": self.watchdog.trace}

    def close(self) -> None:
        self.http.close()
        self.watchdog.close()


class Lines:
    """A :class:`Line` per thread that sends, made on its first request.

    A watchdog ends an overdue request by shutting down the sockets of its client, so a client
    must carry one request at a time: several threads sending at once (bulk requests in flight)
    each get a client of their own rather than sharing one pool of connections.
    """

    def __init__(self, make_client: Callable[[], httpx.Client]) -> None:
        self._make_client = make_client
        self._local = threading.local()
        self._lock = threading.Lock()
        self._lines: list[Line] = []

    def mine(self) -> Line:
        line: Line | None = getattr(self._local, "line", None)
        if line is None:
            line = Line(self._make_client())
            self._local.line = line
            with self._lock:
                self._lines.append(line)
        return line

    def close(self) -> None:
        with self._lock:
            lines, self._lines = self._lines, []
        for line in lines:
            line.close()


def overdue(request: httpx.Request, timeout_s: float) -> httpx.ReadTimeout:
    return httpx.ReadTimeout(
        f"no complete answer within {timeout_s:g} s (hybridbox.timeout_s)", request=request
    )


# ------------------------------------------------------------------------------- the body


class BoundedDecoder:
    """Decodes a body's content coding (none, gzip or deflate), keeping at most ``cap`` bytes."""

    def __init__(self, content_encoding: str, cap: int) -> None:
        codings = [c.strip().lower() for c in content_encoding.split(",")]
        codings = [c for c in codings if c and c != "identity"]
        if len(codings) > 1 or (codings and codings[0] not in _ZLIB_WBITS):
            raise AnswerUnusable(
                f"the answer is encoded as {content_encoding!r}, which syncd did not ask for "
                f"(it asks for {ACCEPT_ENCODING})"
            )
        self.cap = cap
        self.total = 0
        self.coding = codings[0] if codings else None
        self._zlib = zlib.decompressobj(_ZLIB_WBITS[self.coding]) if self.coding else None
        self._started = False

    def feed(self, data: bytes) -> bytes:
        """The decoded bytes of the next chunk; AnswerUnusable once over the cap."""
        out = data if self._zlib is None else self._inflate(data)
        self._count(out)
        return out

    def flush(self) -> bytes:
        out = self._zlib.flush() if self._zlib is not None else b""
        self._count(out)
        return out

    def _inflate(self, data: bytes) -> bytes:
        assert self._zlib is not None
        # At most one byte more than the cap allows: enough to know it is over, never more.
        room = self.cap - self.total + 1
        try:
            out = self._zlib.decompress(data, room)
        except zlib.error:
            if self.coding != "deflate" or self._started:
                raise
            self._zlib = zlib.decompressobj(_RAW_DEFLATE_WBITS)
            out = self._zlib.decompress(data, room)
        self._started = True
        return out

    def _count(self, out: bytes) -> None:
        self.total += len(out)
        if self.total > self.cap:
            raise AnswerUnusable(
                f"the answer is larger than {self.cap // (1024 * 1024)} MiB decoded; syncd stopped "
                "reading it"
            )


def read_answer(
    http: httpx.Client,
    request: httpx.Request,
    *,
    timeout_s: float,
    watchdog: Watchdog,
    clock: Callable[[], float],
    cap: int = MAX_ANSWER_BYTES,
) -> httpx.Response:
    """Send ``request`` and read its whole answer within ``timeout_s`` and ``cap``.

    Raises what httpx raises (``httpx.ReadTimeout`` when the deadline passed), or
    :class:`AnswerUnusable`.
    """
    deadline = clock() + timeout_s
    with watchdog.armed(timeout_s) as alarm:
        try:
            response = http.send(request, stream=True)
            try:
                body = _read_body(response, cap, lambda: clock() > deadline, timeout_s)
            finally:
                response.close()
        except httpx.RequestError as exc:
            if alarm.fired:  # the watchdog ended it: whatever broke, the deadline passed
                raise overdue(request, timeout_s) from exc
            raise
    headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in _WIRE_HEADERS]
    return httpx.Response(response.status_code, headers=headers, content=body, request=request)


def _read_body(
    response: httpx.Response, cap: int, late: Callable[[], bool], timeout_s: float
) -> bytes:
    if response.is_stream_consumed:
        # Built in memory with its content (a test's httpx.MockTransport): nothing comes over
        # the wire, and httpx has decoded it already.
        return BoundedDecoder("", cap).feed(response.content)
    decoder = BoundedDecoder(response.headers.get("content-encoding", ""), cap)
    declared = response.headers.get("content-length", "")
    if decoder.coding is None and declared.isdigit() and int(declared) > cap:
        # Said up front: no need to read a byte of it.
        raise AnswerUnusable(
            f"the answer says it is {int(declared)} bytes long, more than syncd reads "
            f"({cap // (1024 * 1024)} MiB)"
        )
    parts: list[bytes] = []
    try:
        for raw in response.iter_raw():
            parts.append(decoder.feed(raw))
            if late():
                raise overdue(response.request, timeout_s)
        parts.append(decoder.flush())
    except zlib.error as exc:
        raise httpx.DecodingError(
            f"the answer's {decoder.coding} body is corrupt: {exc}", request=response.request
        ) from None
    return b"".join(parts)
