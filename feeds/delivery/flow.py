"""Back-pressure from the client's socket, whatever the ASGI server.

ASGI has no flow control for WebSocket sends. Uvicorn's ``send`` waits while its write buffer
is full, so a writer stuck there is back-pressure enough. Daphne's ``send`` never waits: it
hands the frame to Twisted, which buffers without limit, so a client that stops reading
would make the server's memory grow. Twisted's own remedy is a push producer: the transport
calls ``pauseProducing`` when its buffer passes 64 KiB and ``resumeProducing`` when it has
drained. ``send_gate`` registers one on Daphne's protocol (reached through the ``send``
callable Daphne hands the application) and gives the writer an awaitable gate.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)


class SendGate:
    """Open while the transport can take more; a Twisted ``IPushProducer`` for Daphne."""

    def __init__(self) -> None:
        self._open = asyncio.Event()
        self._open.set()
        self.pauses = 0
        self.flow_controlled = False  # True when a server reports its buffer to the gate

    @property
    def is_open(self) -> bool:
        return self._open.is_set()

    async def wait(self) -> None:
        await self._open.wait()

    # Twisted calls these on its reactor, which under Daphne is this asyncio loop.
    def pauseProducing(self) -> None:
        self.pauses += 1
        self._open.clear()

    def resumeProducing(self) -> None:
        self._open.set()

    def stopProducing(self) -> None:
        self._open.set()  # the connection is gone; the writer finds that out on its own


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
        if hasattr(protocol, "registerProducer") and hasattr(protocol, "transport"):
            return protocol
    return None


def send_gate(send: Callable[..., Any]) -> SendGate:
    """A gate for the socket behind ``send``: flow-controlled under Daphne, always open
    elsewhere (there ``send`` itself waits)."""
    gate = SendGate()
    protocol = _daphne_protocol(send)
    if protocol is None:
        return gate
    try:
        from twisted.internet.interfaces import IPushProducer
        from zope.interface import directlyProvides

        directlyProvides(gate, IPushProducer)
        protocol.registerProducer(gate, True)
        gate.flow_controlled = True
    except Exception:  # another producer already registered, or a Daphne we do not know
        logger.warning("delivery: no flow control on this socket; relying on conflation only",
                       exc_info=True)  # fmt: skip
    return gate
