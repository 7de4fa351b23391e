"""A local FYERS: the REST calls the socket client needs and the HSM data socket.

Speaks providers/FYERS.md byte for byte (§15.1): symbol-token conversion, quotes, depth,
market status and the index-name map over HTTP (aiohttp); the binary data socket over
``websockets``: pings before auth, auth against the token's ``hsm_key``, lite/full mode,
subscribe with the topic cap (type-51 code 51001 past it), a snapshot per new topic then
updates, unsubscribe, pause/resume, acks. Connection faults and data faults come from the
shared ``SimulatorHub``; ``/_sim/`` control routes sit beside the REST API.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from feeds.providers.errors import FrameError
from feeds.providers.fyers import server_codec as sc
from feeds.providers.fyers.codec import T_MODE, T_PAUSE, T_RESUME, T_SUBSCRIBE, T_UNSUBSCRIBE
from feeds.providers.fyers.symbols import INDEX_NAMES, index_name, is_index, segment_of
from feeds.providers.ratelimit import RateLimiter, Window
from feeds.providers.simulation.faults import ConnectionFault, Emission
from feeds.providers.simulation.market import Quote
from feeds.providers.simulation.server import (
    ProviderSimulator,
    SimConnection,
    SimulatorHub,
)
from feeds.providers.simulation.universe import SimInstrument
from feeds.providers.ticks import ProviderName

logger = logging.getLogger(__name__)

CODE_SYMBOL_LIMIT = 51001  # defines.py: "Standard plan symbol limit"
MAX_SYMBOLS_PER_TOKEN_CALL = 500  # the SDK never sends more (FYERS.md §3.2)
MAX_SYMBOLS_PER_QUOTE_CALL = 50  # FYERS.md §3.3
PACKETS_PER_FRAME = 500  # keeps every data frame well inside the 16-bit length


@dataclass(slots=True)
class _Topic:
    topic: str
    kind: str  # sf / if / dp
    instrument: SimInstrument


@dataclass(slots=True)
class FyersConnectionState:
    """The HSM session of one socket."""

    authenticated: bool = False
    lite: bool = False
    paused_channels: set[int] = field(default_factory=set)
    topic_channel: dict[str, int] = field(default_factory=dict)  # topic -> its channel
    ack_every: int = 0
    last_ack: int = 0
    message_number: int = 0
    topic_ids: dict[str, int] = field(default_factory=dict)  # topic -> id
    next_id: int = 1
    bad_frames: int = 0

    def summary(self) -> dict[str, Any]:
        return {
            "authenticated": self.authenticated,
            "lite": self.lite,
            "paused_channels": sorted(self.paused_channels),
            "topics": len(self.topic_ids),
            "last_ack": self.last_ack,
            "bad_frames": self.bad_frames,
        }

    def allocate(self, topic: str) -> int | None:
        """A fresh topic id; ids of unsubscribed topics are never sent again (§15.1), so a
        socket can define at most 65535 topics in its life (None past that)."""
        if self.next_id > 0xFFFF:
            return None
        topic_id = self.next_id
        self.next_id += 1
        self.topic_ids[topic] = topic_id
        return topic_id

    def release(self, topic: str) -> None:
        self.topic_ids.pop(topic, None)
        self.topic_channel.pop(topic, None)

    def next_message(self) -> int:
        self.message_number = (self.message_number + 1) & 0xFFFFFFFF
        return self.message_number


class FyersSimulator(ProviderSimulator):
    provider = "fyers"

    def __init__(
        self,
        hub: SimulatorHub,
        *,
        topic_cap: int = 5000,
        max_connections: int | None = None,
        ack_count: int = 0,
        precision: int | None = None,
    ) -> None:
        super().__init__(hub, max_connections=max_connections)
        self.topic_cap = topic_cap
        self.ack_count = ack_count
        self.precision = precision  # None: each instrument's own scale
        self.by_symbol: dict[str, SimInstrument] = {}
        self.topics: dict[str, _Topic] = {}
        for inst in hub.instruments.values():
            if inst.fyers_symbol and inst.fytoken and segment_of(inst.fytoken):
                self.by_symbol[inst.fyers_symbol] = inst
                for topic in self._topics_of(inst):
                    self.topics[topic.topic] = topic
        # canonical key -> connection id -> the topics it holds for that instrument
        self.subscribers: dict[str, dict[int, list[tuple[str, int]]]] = defaultdict(dict)
        self._rest_limits: dict[str, RateLimiter] = {}
        hub.attach(self)

    @staticmethod
    def _topics_of(inst: SimInstrument) -> list[_Topic]:
        segment = segment_of(inst.fytoken)
        if is_index(inst.fyers_symbol):
            # Both the mapped name and the SDK's fallback (for clients without the map).
            names = {index_name(inst.fyers_symbol), index_name(inst.fyers_symbol, {})}
            return [_Topic(f"if|{segment}|{name}", "if", inst) for name in names]
        token = inst.fytoken[10:]
        return [
            _Topic(f"sf|{segment}|{token}", "sf", inst),
            _Topic(f"dp|{segment}|{token}", "dp", inst),
        ]

    # --- lifecycle -----------------------------------------------------------------------

    def socket_options(self) -> dict[str, Any]:
        # No WebSocket-level pings: the SDK sends application pings and none of its own.
        return {"ping_interval": None}

    # --- REST ----------------------------------------------------------------------------

    def rest_routes(self) -> list[web.RouteDef]:
        return [
            web.post("/data/symbol-token", self.symbol_token),
            web.get("/data/quotes", self.quotes),
            web.get("/data/depth", self.depth),
            web.get("/data/marketStatus", self.market_status),
            web.get("/sym_details/index_hsm_mapping.json", self.index_mapping),
            web.post("/_sim/caps", self.set_caps),
        ]

    @staticmethod
    def _error(message: str, code: int = -300, status: int = 200) -> web.Response:
        return web.json_response({"s": "error", "code": code, "message": message}, status=status)

    def _rest_auth(self, request: web.Request) -> str | web.Response:
        # symbol-token sends the bare JWT, the data API "APP_ID:JWT" (FYERS.md §3.1-3.2);
        # the registry knows a token by both.
        token = self.hub.tokens.check(self.provider, request.headers.get("Authorization", ""))
        if token is None:
            return self._error("Could not authenticate the user", code=-16, status=401)
        limiter = self._rest_limits.setdefault(
            token.value, RateLimiter([Window(10, 1.0), Window(200, 60.0)])
        )
        if not limiter.try_acquire():
            return self._error("request limit reached", code=-429, status=429)
        return token.value

    async def symbol_token(self, request: web.Request) -> web.Response:
        auth = self._rest_auth(request)
        if isinstance(auth, web.Response):
            return auth
        try:
            body = await request.json()
            symbols = body["symbols"]
            if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
                raise TypeError
        except Exception:
            return self._error('Invalid input: expected {"symbols": [...]}')
        if len(symbols) > MAX_SYMBOLS_PER_TOKEN_CALL:
            return self._error(f"Please provide less than {MAX_SYMBOLS_PER_TOKEN_CALL} symbols")
        valid = {s: self.by_symbol[s].fytoken for s in symbols if s in self.by_symbol}
        invalid = [s for s in symbols if s not in self.by_symbol]
        return web.json_response(
            {"s": "ok", "code": 200, "message": "", "validSymbol": valid, "invalidSymbol": invalid}
        )

    def _quote_of(self, symbol: str) -> Quote | None:
        inst = self.by_symbol.get(symbol)
        return None if inst is None else self.hub.model.quote(inst.key)

    @staticmethod
    def _rupees(value: int | None, scale: int) -> float | None:
        return None if value is None else value / 10**scale

    async def quotes(self, request: web.Request) -> web.Response:
        auth = self._rest_auth(request)
        if isinstance(auth, web.Response):
            return auth
        symbols = [s for s in request.query.get("symbols", "").split(",") if s]
        if not symbols:
            return self._error("Please provide symbols")
        if len(symbols) > MAX_SYMBOLS_PER_QUOTE_CALL:
            return self._error(f"Max {MAX_SYMBOLS_PER_QUOTE_CALL} symbols are allowed")
        data = []
        for symbol in symbols:
            quote = self._quote_of(symbol)
            if quote is None:
                data.append({"n": symbol, "s": "error", "v": {"errmsg": "invalid symbol"}})
                continue
            s = quote.instrument.scale
            change = quote.ltp - quote.prev_close
            data.append(
                {
                    "n": symbol,
                    "s": "ok",
                    "v": {
                        "ch": self._rupees(change, s),
                        "chp": round(change * 100 / quote.prev_close, 2),
                        "lp": self._rupees(quote.ltp, s),
                        "spread": self._rupees(quote.ask - quote.bid, s),
                        "ask": self._rupees(quote.ask, s),
                        "bid": self._rupees(quote.bid, s),
                        "open_price": self._rupees(quote.open, s),
                        "high_price": self._rupees(quote.high, s),
                        "low_price": self._rupees(quote.low, s),
                        "prev_close_price": self._rupees(quote.prev_close, s),
                        "atp": self._rupees(quote.atp, s),
                        "volume": quote.volume,
                        "short_name": symbol.split(":")[1],
                        "exchange": quote.instrument.exchange,
                        "description": symbol,
                        "original_name": symbol,
                        "symbol": symbol,
                        "fyToken": quote.instrument.fytoken,
                        "tt": str(quote.exchange_ts // 1000),
                    },
                }
            )
        return web.json_response({"s": "ok", "code": 200, "d": data})

    async def depth(self, request: web.Request) -> web.Response:
        auth = self._rest_auth(request)
        if isinstance(auth, web.Response):
            return auth
        symbol = request.query.get("symbol", "")
        quote = self._quote_of(symbol)
        if quote is None:
            return self._error("Please provide a valid symbol")
        s = quote.instrument.scale
        bids, asks = quote.depth(5)
        entry: dict[str, Any] = {
            "totalbuyqty": quote.total_buy_qty,
            "totalsellqty": quote.total_sell_qty,
            # The real API's asymmetric keys: "bids" plural, "ask" singular (FYERS.md §3.4).
            "bids": [
                {"price": self._rupees(b.price, s), "volume": b.qty, "ord": b.orders} for b in bids
            ],
            "ask": [
                {"price": self._rupees(a.price, s), "volume": a.qty, "ord": a.orders} for a in asks
            ],
            "tick_Size": float(quote.instrument.tick_size),
            "ltp": self._rupees(quote.ltp, s),
            "ltq": quote.ltq,
            "ltt": quote.ltt // 1000,
            "lower_ckt": self._rupees(quote.lower_circuit, s) or 0,
            "upper_ckt": self._rupees(quote.upper_circuit, s) or 0,
            "expiry": "",
            "oi": quote.oi or 0,
            "oiflag": quote.oi is not None,
            "pdoi": 0,
            "oipercent": 0.0,
        }
        if request.query.get("ohlcv_flag") == "1":
            change = quote.ltp - quote.prev_close
            entry.update(
                o=self._rupees(quote.open, s),
                h=self._rupees(quote.high, s),
                l=self._rupees(quote.low, s),
                c=self._rupees(quote.prev_close, s),
                ch=self._rupees(change, s),
                chp=round(change * 100 / quote.prev_close, 2),
                v=quote.volume,
                atp=self._rupees(quote.atp, s),
            )
        return web.json_response({"s": "ok", "message": "", "d": {symbol: entry}})

    async def market_status(self, request: web.Request) -> web.Response:
        auth = self._rest_auth(request)
        if isinstance(auth, web.Response):
            return auth
        status = "OPEN" if self.hub.model.market_open else "CLOSED"
        segments = [(10, 10), (10, 11), (10, 12), (12, 10), (12, 11), (11, 20)]
        return web.json_response(
            {
                "s": "ok",
                "code": 200,
                "marketStatus": [
                    {"exchange": e, "segment": g, "market_type": "NORMAL", "status": status}
                    for e, g in segments
                ],
            }
        )

    async def index_mapping(self, request: web.Request) -> web.Response:
        return web.json_response(dict(INDEX_NAMES))

    async def set_caps(self, request: web.Request) -> web.Response:
        """The "exceed a cap" hook: lower the topic cap so the next subscribe overflows."""
        data = await request.json()
        self.topic_cap = int(data.get("topics", self.topic_cap))
        self.hub.faults.record(ConnectionFault.EXCEED_CAP, self.provider, detail=str(data))
        return web.json_response({"topics": self.topic_cap})

    # --- the socket ----------------------------------------------------------------------

    async def ws_handler(self, socket: ServerConnection) -> None:
        if self.max_connections is not None and len(self.connections) >= self.max_connections:
            await socket.close(1008, "connection limit reached")
            return
        conn = self.open_connection(socket, token=None)
        state = FyersConnectionState()
        conn.protocol = state
        try:
            async for message in socket:
                if isinstance(message, str):  # FYERS never uses text frames
                    state.bad_frames += 1
                    continue
                try:
                    request = sc.decode_client_frame(message)
                except FrameError:
                    state.bad_frames += 1
                    continue
                self._handle(conn, state, request)
        except ConnectionClosed:
            pass
        finally:
            for topic in list(state.topic_ids):
                self._unsubscribe_topic(conn, state, topic)
            await self.close_connection(conn)

    def _handle(
        self, conn: SimConnection, state: FyersConnectionState, request: sc.ClientRequest
    ) -> None:
        match request:
            case sc.Ping():
                pass  # accepted at any time, before auth too; no reply (FYERS.md §7.6)
            case sc.Auth(hsm_key=hsm_key):
                token = self.hub.tokens.check_hsm_key(hsm_key)
                state.authenticated = token is not None
                conn.token = token
                state.ack_every = self.ack_count if token is not None else 0
                self.send(conn, sc.encode_auth_reply(token is not None, ack_count=self.ack_count))
            case sc.Mode(lite=lite):
                if state.authenticated:
                    state.lite = lite
                self.send(conn, sc.encode_reply(T_MODE, state.authenticated))
            case sc.Subscribe(topics=topics, channel=channel):
                self._subscribe(conn, state, topics, channel)
            case sc.Unsubscribe(topics=topics):
                if state.authenticated:
                    for topic in topics:
                        self._unsubscribe_topic(conn, state, topic)
                self.send(conn, sc.encode_reply(T_UNSUBSCRIBE, state.authenticated))
            case sc.Pause(mask=mask):
                # Pause and resume act on channels: the SDK pauses the old channel when a
                # subscribe names a new one (FYERS.md §7.4).
                if state.authenticated:
                    state.paused_channels.update(sc.channels_of(mask))
                self.send(conn, sc.encode_reply(T_PAUSE, state.authenticated))
            case sc.Resume(mask=mask):
                if state.authenticated:
                    state.paused_channels.difference_update(sc.channels_of(mask))
                self.send(conn, sc.encode_reply(T_RESUME, state.authenticated))
            case sc.Ack(message_number=number):
                state.last_ack = number

    def _subscribe(
        self,
        conn: SimConnection,
        state: FyersConnectionState,
        topics: tuple[str, ...],
        channel: int,
    ) -> None:
        if not state.authenticated:
            self.send(conn, sc.encode_reply(T_SUBSCRIBE, False))
            return
        new = [t for t in dict.fromkeys(topics) if t in self.topics and t not in state.topic_ids]
        if state.next_id + len(new) > 0x10000:  # topic ids are 16 bits and never reused
            self.send(conn, sc.encode_reply(T_SUBSCRIBE, False))
            return
        if len(state.topic_ids) + len(new) > self.topic_cap:
            self.hub.faults.record(
                ConnectionFault.EXCEED_CAP,
                self.provider,
                detail=f"connection {conn.id}: {len(state.topic_ids) + len(new)} topics",
            )
            self.send(conn, sc.encode_server_message(CODE_SYMBOL_LIMIT, "Symbol limit exceeded", 4))
            return
        self.send(conn, sc.encode_reply(T_SUBSCRIBE, True))
        packets = []
        for topic in new:
            info = self.topics[topic]
            topic_id = state.allocate(topic)
            assert topic_id is not None  # checked above
            state.topic_channel[topic] = channel
            self.subscribers[info.instrument.key].setdefault(conn.id, []).append((topic, topic_id))
            quote = self.hub.model.quote(info.instrument.key)
            tick = quote.to_tick(ProviderName.FYERS, info.instrument.fyers_symbol, depth=5)
            try:
                values = sc.values_from_tick(tick, info.kind, precision=self.precision)
            except ValueError:
                continue
            packets.append(
                sc.snapshot_packet(
                    topic_id,
                    topic,
                    values,
                    precision=tick.scale if self.precision is None else self.precision,
                    exchange=info.instrument.exchange,
                    token=info.instrument.fytoken[10:],
                )
            )
        self._send_packets(conn, state, packets)

    def _unsubscribe_topic(
        self, conn: SimConnection, state: FyersConnectionState, topic: str
    ) -> None:
        info = self.topics.get(topic)
        state.release(topic)
        if info is None:
            return
        holders = self.subscribers.get(info.instrument.key)
        if holders and conn.id in holders:
            holders[conn.id] = [(t, i) for t, i in holders[conn.id] if t != topic]
            if not holders[conn.id]:
                del holders[conn.id]

    def _send_packets(
        self, conn: SimConnection, state: FyersConnectionState, packets: list[bytes]
    ) -> None:
        for start in range(0, len(packets), PACKETS_PER_FRAME):
            chunk = packets[start : start + PACKETS_PER_FRAME]
            self.send(conn, sc.encode_data_frame(state.next_message(), chunk))

    # --- market data ---------------------------------------------------------------------

    def on_step(self, quotes: list[Quote], late: list[Emission]) -> None:
        if not self.connections:
            return
        emissions: list[Emission] = []
        for quote in quotes:
            if self.subscribers.get(quote.key):
                emissions.extend(self.hub.faults.apply(self.provider, quote))
        emissions.extend(late)
        per_conn: dict[int, list[bytes]] = defaultdict(list)
        for emission in emissions:
            quote = emission.quote
            holders = self.subscribers.get(quote.key)
            if not holders:
                continue
            inst = quote.instrument
            tick = quote.to_tick(ProviderName.FYERS, inst.fyers_symbol, depth=5)
            encoded: dict[str, list[int | None] | None] = {}
            for conn_id, topics in holders.items():
                conn = self.connections.get(conn_id)
                if conn is None:
                    continue
                state: FyersConnectionState = conn.protocol
                paused = state.paused_channels
                for topic, topic_id in topics:
                    if paused and state.topic_channel.get(topic) in paused:
                        continue
                    kind = self.topics[topic].kind
                    if kind not in encoded:
                        try:
                            encoded[kind] = sc.values_from_tick(
                                tick, kind, precision=self.precision
                            )
                        except ValueError:  # a fault made it unrepresentable in int32
                            encoded[kind] = None
                    values = encoded[kind]
                    if values is None:
                        continue
                    # Lite mode: L packets for sf/if; depth topics keep getting U (§15.1).
                    if state.lite and kind != "dp":
                        per_conn[conn_id].append(sc.lite_packet(topic_id, values[0]))
                    else:
                        per_conn[conn_id].append(sc.update_packet(topic_id, values))
        for conn_id, packets in per_conn.items():
            conn = self.connections.get(conn_id)
            if conn is not None:
                self._send_packets(conn, conn.protocol, packets)
