"""The FYERS data-socket client: one asyncio task, one socket (providers/FYERS.md §5, §14).

Per connect: ping at once, authenticate with the token's ``hsm_key``, set lite or full
mode, resolve symbols to fytokens (from the instrument master when known, else the
symbol-token REST call, ≤500 per call), subscribe their topics in frames of ≤1500, then
read. Application pings every 10 s and acks when the server asks for them. Unsubscribed
topics stay known to the decoder until the server confirms, so that packets still in
flight never spoil a frame for the others.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from feeds.providers.base import FeedClient, SessionEnded, first_to_finish
from feeds.providers.errors import AuthError, CapExceeded, FrameError, ProviderUnavailable
from feeds.providers.fyers import codec
from feeds.providers.fyers.rest import FyersRestClient
from feeds.providers.fyers.symbols import is_index, topic_for

APP_PING_INTERVAL = 10.0  # what the SDK does (FYERS.md §7.6)
AUTH_TIMEOUT = 10.0
TOPIC_CAP = 5000  # per socket, as the SDK enforces (§10)
MAX_PENDING_UNSUBSCRIBES = 1000


class FyersClient(FeedClient):
    provider = "fyers"

    def __init__(
        self,
        *,
        socket_url: str,
        rest: FyersRestClient,
        fytokens: Mapping[str, str] | None = None,
        lite: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.socket_url = socket_url
        self.rest = rest
        self.fytokens: dict[str, str] = dict(fytokens or {})
        self.lite = lite
        self.invalid_symbols: set[str] = set()
        self.decoder = codec.FyersDecoder()
        self._ws: ClientConnection | None = None
        self._token_len = 0
        self._topics: dict[str, list[str]] = {}  # symbol -> its topics on this socket
        self._pending_unsub: deque[list[str]] = deque(maxlen=MAX_PENDING_UNSUBSCRIBES)
        self._ack_every = 0
        self._data_frames = 0

    # --- caps ----------------------------------------------------------------------------

    def check_caps(self, planned: Mapping[str, str]) -> None:
        super().check_caps(planned)
        topics = sum(2 if m == "depth" and not is_index(s) else 1 for s, m in planned.items())
        if topics > TOPIC_CAP:
            raise CapExceeded(f"{self.name}: topics per socket", TOPIC_CAP, topics)

    # --- session -------------------------------------------------------------------------

    async def _session(self) -> None:
        token = self.token()
        hsm_key = codec.hsm_key_from_token(token)  # AuthError for a bad or expired token
        self._token_len = len(token)
        self.decoder = codec.FyersDecoder()
        self._topics.clear()
        self._pending_unsub.clear()
        self._data_frames = 0
        try:
            ws = await connect(
                self.socket_url,
                open_timeout=self.connect_timeout,
                ping_interval=self.ping_interval,
                ping_timeout=self.ping_timeout,
                close_timeout=2,
                max_size=2**22,
                max_queue=256,
            )
        except InvalidStatus as exc:
            raise ProviderUnavailable(
                f"handshake refused: HTTP {exc.response.status_code}"
            ) from None
        self._ws = ws
        try:
            await ws.send(codec.encode_ping())
            await ws.send(codec.encode_auth(hsm_key))
            await ws.send(codec.encode_mode(lite=self.lite))
            reply = await asyncio.wait_for(self._await_auth(ws), AUTH_TIMEOUT)
            if not reply.ok:
                raise AuthError(f"{self.name}: the socket refused the token")
            self._ack_every = reply.ack_every
            await self._send_subscriptions(dict(self.subscriptions))
            self._went_live()
            await first_to_finish(self._read(ws), self._ping(ws), self._watch_silence(ws))
        finally:
            self._ws = None
            await ws.close()

    async def _await_auth(self, ws: ClientConnection) -> codec.AuthReply:
        while True:
            for event in self._decode(await ws.recv()):
                if isinstance(event, codec.AuthReply):
                    return event

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for frame in ws:
                if isinstance(frame, str):
                    self.stats.errors["text_frame"] += 1
                    continue
                ticks: list = []
                for event in self._decode(frame):
                    if isinstance(event, codec.DataFrame):
                        held = self.subscriptions
                        ticks.extend(t for t in event.ticks if t.symbol in held)
                        await self._maybe_ack(ws, event.message_number)
                    else:
                        self._on_reply(event)
                self._deliver(ticks, len(frame))
        except ConnectionClosed as exc:
            raise SessionEnded(
                f"closed by server ({exc.rcvd.code if exc.rcvd else 1006})"
            ) from None

    def _decode(self, frame: bytes) -> list[Any]:
        try:
            return self.decoder.feed(frame)
        except FrameError as exc:
            self._frame_error(exc)
            return []

    async def _maybe_ack(self, ws: ClientConnection, message_number: int) -> None:
        if self._ack_every:
            self._data_frames += 1
            if self._data_frames % self._ack_every == 0:
                await ws.send(codec.encode_ack(message_number))

    def _on_reply(self, event: Any) -> None:
        if isinstance(event, codec.UnsubscribeReply):
            if self._pending_unsub:
                self.decoder.forget(self._pending_unsub.popleft())
        elif isinstance(event, codec.SubscribeReply) and not event.ok:
            self.stats.errors["subscribe_refused"] += 1
            self.stats.last_error = "subscription failed (code 11011)"
        elif isinstance(event, codec.ServerMessage):
            self.stats.errors[f"server_{event.code}"] += 1
            self.stats.last_error = f"{event.code}: {event.message}"

    async def _ping(self, ws: ClientConnection) -> None:
        while True:
            await asyncio.sleep(APP_PING_INTERVAL)
            await ws.send(codec.encode_ping())

    async def _close_socket(self) -> None:
        if self._ws is not None:
            await self._ws.close()

    # --- subscriptions -------------------------------------------------------------------

    async def _resolve(self, symbols: list[str]) -> None:
        missing = [s for s in symbols if s not in self.fytokens]
        if not missing:
            return
        valid, invalid = await self.rest.symbol_tokens(missing)
        self.fytokens.update(valid)
        if invalid:
            self.invalid_symbols.update(invalid)
            self.stats.errors["invalid_symbol"] += len(invalid)
            self.stats.last_error = f"invalid symbols: {', '.join(sorted(invalid)[:5])}"

    def _topics_for(self, symbol: str, mode: str) -> list[str]:
        fytoken = self.fytokens[symbol]
        topics = [topic_for(symbol=symbol, fytoken=fytoken, kind="SymbolUpdate")]
        if mode == "depth" and not is_index(symbol):
            topics.append(topic_for(symbol=symbol, fytoken=fytoken, kind="DepthUpdate"))
        return topics

    async def _send_subscriptions(self, symbols: Mapping[str, str]) -> None:
        ws = self._ws
        if ws is None or not symbols:
            return
        await self._resolve(list(symbols))
        wanted: dict[str, str] = {}
        dropped: list[str] = []
        for symbol, mode in symbols.items():
            if symbol not in self.fytokens:
                self.subscriptions.pop(symbol, None)  # invalid: not held, not counted
                continue
            try:
                topics = self._topics_for(symbol, mode)
            except ValueError as exc:  # unknown segment in the fytoken
                self.stats.errors["bad_fytoken"] += 1
                self.stats.last_error = f"{symbol}: {exc}"
                self.subscriptions.pop(symbol, None)
                continue
            old = set(self._topics.get(symbol, ()))
            self._topics[symbol] = topics
            wanted.update({t: symbol for t in topics if t not in old})
            dropped.extend(old.difference(topics))  # depth -> quote gives up the dp topic
        for chunk in codec.chunk_topics(dropped):
            self._pending_unsub.append(chunk)
            await ws.send(codec.encode_unsubscribe(chunk, token_len=self._token_len))
        if not wanted:
            return
        self.decoder.expect(wanted)
        for chunk in codec.chunk_topics(list(wanted)):
            await ws.send(codec.encode_subscribe(chunk, token_len=self._token_len))

    async def _send_unsubscriptions(self, symbols: list[str]) -> None:
        ws = self._ws
        topics = [t for s in symbols for t in self._topics.pop(s, ())]
        if ws is None or not topics:
            return
        for chunk in codec.chunk_topics(topics):
            self._pending_unsub.append(chunk)
            await ws.send(codec.encode_unsubscribe(chunk, token_len=self._token_len))
