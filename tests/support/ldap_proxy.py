"""A TCP proxy in front of an LDAP server, for tests that need the server to go away or a read
to be cut off, without touching the server itself (the Samba AD DC is shared by the session).

``LdapProxy(host, port)`` listens on a free loopback port and forwards every connection to
``host:port``. :meth:`LdapProxy.stop` stops listening and drops the open connections: to a client
the server behind :attr:`LdapProxy.url` has stopped. ``cut_after_entries = n`` makes the proxy
drop a connection once it has passed ``n`` search result entries to the client (the LDAP messages
of the answers are read as BER, one message at a time), as a directory does when it fails or a
network cuts a read half way. Plain ``ldap://`` only: the proxy must see the messages.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType

# BER: a SEQUENCE (an LDAPMessage), and the protocolOp tag of a SearchResultEntry.
_SEQUENCE = 0x30
_SEARCH_RESULT_ENTRY = 0x64
_LONG_LENGTH = 0x80
_CHUNK = 65536


def _message_length(buffer: bytes) -> int | None:
    """The length of the whole LDAPMessage at the start of ``buffer``, or None if ``buffer``
    does not hold its header yet."""
    if len(buffer) < 2:
        return None
    first = buffer[1]
    if first < _LONG_LENGTH:
        return 2 + first
    count = first & 0x7F
    if len(buffer) < 2 + count:
        return None
    return 2 + count + int.from_bytes(buffer[2 : 2 + count], "big")


def _operation(message: bytes) -> int:
    """The protocolOp tag of one whole LDAPMessage (after its messageID)."""
    # Skip the SEQUENCE header, then the INTEGER messageID (tag, length, value).
    at = 2 if message[1] < _LONG_LENGTH else 2 + (message[1] & 0x7F)
    id_length = message[at + 1]
    return message[at + 2 + id_length]


class LdapProxy:
    """See the module docstring. Use as a context manager, or call :meth:`stop`."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.cut_after_entries: int | None = None
        self.cuts = 0
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port: int = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._running = True
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while self._running:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()
            threading.Thread(target=self._answers, args=(server, client), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        """Client to server, as it comes."""
        with contextlib.suppress(OSError):
            while data := source.recv(_CHUNK):
                target.sendall(data)
        LdapProxy._close(source, target)

    def _answers(self, server: socket.socket, client: socket.socket) -> None:
        """Server to client, one whole LDAPMessage at a time, counting search entries."""
        buffer = b""
        entries = 0
        with contextlib.suppress(OSError):
            while data := server.recv(_CHUNK):
                buffer += data
                while (length := _message_length(buffer)) is not None and len(buffer) >= length:
                    message, buffer = buffer[:length], buffer[length:]
                    client.sendall(message)
                    if message[0] == _SEQUENCE and _operation(message) == _SEARCH_RESULT_ENTRY:
                        entries += 1
                        cut = self.cut_after_entries
                        if cut is not None and entries >= cut:
                            self.cuts += 1
                            self._close(server, client)
                            return
        self._close(server, client)

    @staticmethod
    def _close(*sockets: socket.socket) -> None:
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def stop(self) -> None:
        """Stop listening and drop every connection: the server is gone, as far as a client
        of :attr:`url` can tell."""
        self._running = False
        self._close(self._listener)
        with self._lock:
            sockets, self._sockets = self._sockets, []
        self._close(*sockets)

    def __enter__(self) -> LdapProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
