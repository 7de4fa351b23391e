"""The Upstox Market Data Feed V3 client: one asyncio task, one socket (UPSTOX.md §4-§9).

Per connect: a fresh one-time feeder URL (following the entry point's 302, or from the
authorize REST call), ``market_info`` first, then every held key re-subscribed, one ``sub``
per mode, as binary frames. WebSocket pings from the server are answered by the library;
our own keepalive pings detect a dead peer. The per-mode subscription limits are checked
here, before sending, since the server's reaction to an overflow is undocumented.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from feeds.providers.base import FeedClient, SessionEnded, first_to_finish
from feeds.providers.errors import AuthError, FrameError, ProviderUnavailable
from feeds.providers.upstox import codec
from feeds.providers.upstox.rest import UpstoxRestClient

# Our data modes -> Upstox feed modes. "full" carries OHLC, volume and 5 depth levels, so it
# serves both quote and depth; full_d30 needs Upstox Plus.
FEED_MODES = {"ltp": "ltpc", "quote": "full", "depth": "full"}
MARKET_INFO_TIMEOUT = 10.0
KEYS_PER_REQUEST = 1000  # the protocol sets no limit; this keeps frames modest
OPEN_STATUSES = frozenset({"NORMAL_OPEN", "PRE_OPEN_START", "CLOSING_START"})


class UpstoxClient(FeedClient):
    provider = "upstox"

    def __init__(
        self,
        *,
        feed_url: str,
        rest: UpstoxRestClient | None = None,
        use_authorize_endpoint: bool = False,
        mode_limits: Mapping[str, Mapping[str, int]] | None = None,
        scales: Mapping[str, int] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.feed_url = feed_url
        self.rest = rest
        self.use_authorize_endpoint = use_authorize_endpoint and rest is not None
        self.mode_limits = mode_limits or codec.DEFAULT_MODE_LIMITS
        self.decoder = codec.UpstoxDecoder(scales=scales)
        self.segment_status: dict[str, str] = {}
        self._ws: ClientConnection | None = None

    # --- caps ----------------------------------------------------------------------------

    def check_caps(self, planned: Mapping[str, str]) -> None:
        super().check_caps(planned)
        counts = Counter(FEED_MODES.get(mode, "full") for mode in planned.values())
        codec.check_mode_limits(counts, self.mode_limits)  # CapExceeded, nothing sent

    # --- session -------------------------------------------------------------------------

    async def _session(self) -> None:
        token = self.token()
        if self.use_authorize_endpoint:
            assert self.rest is not None
            url, headers = await self.rest.feed_authorize(), {}
        else:
            # websockets follows the 302 to the one-time feeder URL.
            url, headers = self.feed_url, {"Authorization": f"Bearer {token}"}
        try:
            ws = await connect(
                url,
                additional_headers=headers,
                open_timeout=self.connect_timeout,
                ping_interval=self.ping_interval,
                ping_timeout=self.ping_timeout,
                close_timeout=2,
                max_size=2**24,
                max_queue=256,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status == 401:
                raise AuthError(f"{self.name}: the feed refused the token (401)") from None
            raise ProviderUnavailable(f"{self.name}: feed handshake HTTP {status}") from None
        self._ws = ws
        try:
            await asyncio.wait_for(self._await_market_info(ws), MARKET_INFO_TIMEOUT)
            await self._send_subscriptions(dict(self.subscriptions))
            self._went_live()
            await first_to_finish(self._read(ws), self._watch_silence(ws))
        finally:
            self._ws = None
            await ws.close()

    async def _await_market_info(self, ws: ClientConnection) -> None:
        while True:
            frame = await ws.recv()
            for event in self._decode(frame):
                if isinstance(event, codec.MarketInfo):
                    self._market_info(event)
                    return

    def _market_info(self, event: codec.MarketInfo) -> None:
        self.segment_status.update(event.segment_status)
        self.market_open = any(s in OPEN_STATUSES for s in self.segment_status.values())

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for frame in ws:
                ticks: list = []
                for event in self._decode(frame):
                    if isinstance(event, codec.FeedBatch):
                        held = self.subscriptions
                        ticks.extend(t for t in event.ticks if t.symbol in held)
                    elif isinstance(event, codec.MarketInfo):
                        self._market_info(event)
                self._deliver(ticks, len(frame))
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd else 1006
            raise SessionEnded(f"closed by server ({code})") from None

    def _decode(self, frame: bytes | str) -> list[Any]:
        try:
            return self.decoder.feed(frame)
        except FrameError as exc:
            self._frame_error(exc)
            return []

    async def _close_socket(self) -> None:
        if self._ws is not None:
            await self._ws.close()

    # --- subscriptions -------------------------------------------------------------------

    async def _send_subscriptions(self, symbols: Mapping[str, str]) -> None:
        ws = self._ws
        if ws is None or not symbols:
            return
        by_mode: dict[str, list[str]] = {}
        for key, mode in symbols.items():
            by_mode.setdefault(FEED_MODES.get(mode, "full"), []).append(key)
        for feed_mode, keys in by_mode.items():
            for start in range(0, len(keys), KEYS_PER_REQUEST):
                chunk = keys[start : start + KEYS_PER_REQUEST]
                await ws.send(codec.encode_request("sub", chunk, feed_mode))

    async def _send_unsubscriptions(self, symbols: list[str]) -> None:
        ws = self._ws
        if ws is None:
            return
        for start in range(0, len(symbols), KEYS_PER_REQUEST):
            await ws.send(codec.encode_request("unsub", symbols[start : start + KEYS_PER_REQUEST]))
