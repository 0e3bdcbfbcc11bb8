"""Serving the emulator with uvicorn (httptools parser, uvloop when installed).

Two things ASGI cannot express are added around uvicorn, each through a public extension point:

- *Dropping a connection with no HTTP answer.* uvicorn accepts a protocol class
  (``Config(http=...)``); a subclass of its httptools protocol records each connection's
  transport under the peer address (the same ``(host, port)`` that ASGI puts in
  ``scope["client"]``), so the app can call ``transport.abort()``: the socket is closed at once
  and the client sees the server disconnect without a response (or a reset).
- *A clean exit on SIGTERM/SIGINT.* uvicorn shuts down gracefully on either signal and then raises
  the signal again with the handler that was installed before it started; ``serve`` installs
  do-nothing handlers first, so the process returns normally (exit status 0).
"""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.utils import get_remote_addr

from syncd.emulator.app import Emulator


class ConnectionRegistry:
    """Open client connections by peer address, so that one can be aborted on purpose."""

    def __init__(self) -> None:
        self._transports: dict[tuple[str, int], asyncio.Transport] = {}

    def add(self, transport: asyncio.Transport) -> tuple[str, int] | None:
        peer = get_remote_addr(transport)
        if peer is not None:
            self._transports[peer] = transport
        return peer

    def discard(self, peer: tuple[str, int] | None) -> None:
        if peer is not None:
            self._transports.pop(peer, None)

    def abort(self, client: tuple[str, int] | None) -> bool:
        transport = self._transports.get(tuple(client)) if client else None  # type: ignore[arg-type]
        if transport is None:
            return False
        transport.abort()
        return True


def tracking_protocol(registry: ConnectionRegistry) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol, also recording each connection in ``registry``."""

    class TrackingHttpToolsProtocol(HttpToolsProtocol):
        _peer: tuple[str, int] | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._peer = registry.add(transport)

        def connection_lost(self, exc: Exception | None) -> None:
            registry.discard(self._peer)
            super().connection_lost(exc)

    return TrackingHttpToolsProtocol


class _Server(uvicorn.Server):
    """A uvicorn server that reports (once) when it is really listening."""

    def __init__(self, config: uvicorn.Config, on_listening: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_listening = on_listening

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self._on_listening()


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: the kernel picks a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=1024)


def serve(emulator: Emulator, sock: socket.socket, on_listening: Callable[[], None]) -> None:
    """Serve until SIGTERM or SIGINT, then return after a short graceful shutdown."""
    registry = ConnectionRegistry()
    emulator.abort_connection = registry.abort
    config = uvicorn.Config(
        emulator.app(),
        http=tracking_protocol(registry),
        lifespan="off",
        log_config=None,
        access_log=False,
        # scope["client"] must be the socket's peer address for the registry to find it.
        proxy_headers=False,
        server_header=False,
        headers=[("server", "hybridbox-emulator")],
        # Requests hanging on purpose (timeout_after_write) must not hold up a stop for long.
        timeout_graceful_shutdown=2,
    )
    server = _Server(config, on_listening)
    with _return_after_signals():
        server.run(sockets=[sock])


@contextmanager
def _return_after_signals() -> Iterator[None]:
    def ignore(signum: int, frame: FrameType | None) -> None:
        """uvicorn re-raises the stop signal after its shutdown: let that do nothing."""

    previous = {sig: signal.signal(sig, ignore) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
