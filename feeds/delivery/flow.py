"""Back-pressure from the client's socket, whatever the ASGI server.

ASGI has no flow control for WebSocket sends. Uvicorn's ``send`` waits while its write buffer
is full, so a writer stuck there is back-pressure enough. Daphne's ``send`` never waits: it
hands the frame to Twisted, which buffers without limit, so a client that stops reading
would make the server's memory grow. Twisted's remedy, a push producer, is taken: Daphne's
HTTP channel stays registered on the transport after the upgrade, and a transport has one.
So under Daphne the gate reads the transport's user-space send buffer instead (the size
Twisted itself compares with ``bufferSize`` to pause producers) and holds the writer while
it is above ``high`` until it drains below ``low``. The transport is reached through the
``send`` callable Daphne hands the application.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)


def _twisted_backlog(transport: Any) -> int:
    # twisted.internet.abstract.FileDescriptor: bytes written but not yet taken by the kernel.
    return len(transport.dataBuffer) - transport.offset + transport._tempDataLen


class SendGate:
    """Lets the writer through while the socket's send buffer has room."""

    def __init__(
        self, transport: Any = None, *, high: int = 64 * 1024, low: int = 16 * 1024,
        poll: float = 0.01, protocol: Any = None,
    ) -> None:  # fmt: skip
        self.transport = transport
        self.protocol = protocol
        self.high = high
        self.low = low
        self.poll = poll
        self.pauses = 0

    @property
    def flow_controlled(self) -> bool:
        """True when the gate watches a buffer (Daphne); elsewhere ``send`` itself waits."""
        return self.transport is not None

    def backlog(self) -> int:
        return _twisted_backlog(self.transport) if self.transport is not None else 0

    def linger(self, seconds: float) -> None:
        """Give a closing handshake this long. A slow client's close frame waits behind what
        it has not read yet; autobahn's default (1 s) would drop the connection before it
        is read, and the client would never learn why it was closed."""
        if self.protocol is not None and hasattr(self.protocol, "closeHandshakeTimeout"):
            self.protocol.closeHandshakeTimeout = seconds  # an autobahn protocol option

    def _gone(self) -> bool:
        transport = self.transport
        return bool(getattr(transport, "disconnected", False)
                    or getattr(transport, "disconnecting", False))  # fmt: skip

    async def wait(self) -> None:
        if self.transport is None or self.backlog() <= self.high:
            return
        self.pauses += 1
        # Polled, not signalled: this only runs for a client that is already behind, and
        # the hub's sweep closes it if it stays there.
        while self.backlog() > self.low and not self._gone():  # noqa: ASYNC110 (nothing to await on)
            await asyncio.sleep(self.poll)


def _daphne_protocol(send: Callable[..., Any]) -> Any | None:
    # Channels' SessionMiddleware wraps send in a bound method whose object keeps the
    # server's callable as ``real_send`` (channels/sessions.py); look through such layers.
    for _ in range(8):
        inner = getattr(getattr(send, "__self__", None), "real_send", None)
        if inner is None:
            break
        send = inner
    # Daphne: send = functools.partial(server.handle_reply, protocol) (daphne/server.py).
    if isinstance(send, functools.partial) and send.args:
        protocol = send.args[0]
        if hasattr(protocol, "transport"):
            return protocol
    return None


def send_gate(send: Callable[..., Any]) -> SendGate:
    """A gate for the socket behind ``send``: watching Daphne's transport buffer, or always
    open elsewhere (where ``send`` itself waits)."""
    protocol = _daphne_protocol(send)
    transport = getattr(protocol, "transport", None)
    if transport is not None:
        try:
            _twisted_backlog(transport)
        except AttributeError:  # not the Twisted transport we know
            logger.warning("delivery: no flow control for %r; relying on conflation only",
                           type(transport).__name__)  # fmt: skip
            transport = None
    return SendGate(transport, protocol=protocol if transport is not None else None)
