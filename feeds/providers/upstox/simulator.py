"""A local Upstox: market-quote REST, the feed authorize call, and Market Data Feed V3.

Follows providers/UPSTOX.md §10.1: ``GET /v3/feed/market-data-feed`` authenticates the
upgrade and answers 302 with a one-time feeder URL (401 for a bad token, so the official
SDK stops retrying; 403/5xx on demand to exercise its retry loop); the feeder accepts only
an unused code and enforces the connection limit; ``market_info`` goes first, then for each
``sub``/``change_mode`` a snapshot (``live_feed`` as the V3 docs show, or ``initial_feed``
with no type on the wire) and live updates; WebSocket pings while idle; only binary frames.
REST quotes (LTP, OHLC, option greeks, full V2/V3) carry the same prices as the feed.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http import HTTPStatus
from typing import Any, Literal

from aiohttp import web
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request as HttpRequest
from websockets.http11 import Response as HttpResponse

from feeds.providers.errors import CapExceeded, FrameError
from feeds.providers.ratelimit import RateLimiter, Window
from feeds.providers.simulation.faults import ConnectionFault, Emission
from feeds.providers.simulation.market import Quote
from feeds.providers.simulation.server import (
    ProviderSimulator,
    SimConnection,
    SimToken,
    SimulatorHub,
)
from feeds.providers.simulation.universe import SimInstrument
from feeds.providers.ticks import ProviderName, Tick
from feeds.providers.upstox import server_codec as sc
from feeds.providers.upstox.codec import DEFAULT_MODE_LIMITS, check_mode_limits

logger = logging.getLogger(__name__)

IST = timezone(timedelta(hours=5, minutes=30))
ENTRY_PATH = "/v3/feed/market-data-feed"
FEEDER_PATH = "/feeds"
CODE_TTL = 60.0  # seconds a one-time feeder URL stays usable
MAX_KEYS_PER_QUOTE_CALL = 500  # LTP / OHLC / full quotes (UPSTOX.md §3.3-3.6)
MAX_KEYS_PER_GREEKS_CALL = 50  # option greeks, per the docs
SEGMENTS = ("NSE_EQ", "NSE_FO", "NSE_INDEX", "BSE_EQ", "BSE_FO", "BSE_INDEX", "NCD_FO",
            "BCD_FO", "NSE_COM", "MCX_FO", "MCX_INDEX")  # fmt: skip


@dataclass(slots=True)
class UpstoxConnectionState:
    modes: dict[str, str] = field(default_factory=dict)  # instrument key -> mode
    requests: int = 0
    bad_frames: int = 0

    def summary(self) -> dict[str, Any]:
        counts: dict[str, int] = defaultdict(int)
        for mode in self.modes.values():
            counts[mode] += 1
        return {"subscriptions": dict(counts), "requests": self.requests,
                "bad_frames": self.bad_frames}  # fmt: skip


def _ist_iso(epoch_ms: int) -> str:
    """Upstox's ISO timestamp form, in India time."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, IST)
    return moment.isoformat(timespec="milliseconds")


def _upstox_error(status: int, code: str, message: str) -> web.Response:
    body = {"status": "error", "errors": [{"errorCode": code, "message": message}]}
    return web.json_response(body, status=status)


class UpstoxSimulator(ProviderSimulator):
    provider = "upstox"

    def __init__(
        self,
        hub: SimulatorHub,
        *,
        max_connections: int = 2,
        mode_limits: dict[str, dict[str, int]] | None = None,
        snapshot_kind: Literal["live", "initial"] = "live",
        cap_reaction: Literal["drop", "close"] = "drop",
        ping_interval: float = 10.0,
    ) -> None:
        super().__init__(hub, max_connections=max_connections)
        self.mode_limits = {m: dict(v) for m, v in (mode_limits or DEFAULT_MODE_LIMITS).items()}
        self.snapshot_kind = snapshot_kind
        self.cap_reaction = cap_reaction
        self.ping_interval = ping_interval
        self.by_key: dict[str, SimInstrument] = {
            inst.upstox_key: inst for inst in hub.instruments.values() if inst.upstox_key
        }
        self.index_keys = frozenset(k for k, i in self.by_key.items() if i.is_index)
        self.subscribers: dict[str, dict[int, str]] = defaultdict(dict)  # key -> conn -> mode
        self._codes: dict[str, tuple[SimToken, float]] = {}  # one-time code -> token, expiry
        self.handshake_failures: list[int] = []  # statuses to answer the next upgrades with
        self._rest_limits: dict[str, RateLimiter] = {}
        hub.attach(self)

    # --- lifecycle -----------------------------------------------------------------------

    def socket_options(self) -> dict[str, Any]:
        # The entry point answers 302 (or 401/403) before any upgrade; the server pings.
        return {"process_request": self.process_request, "ping_interval": self.ping_interval}

    def _feeder_url(self, token: SimToken) -> str:
        now = time.monotonic()
        self._codes = {c: v for c, v in self._codes.items() if v[1] > now}  # bounded by TTL
        code = str(uuid.uuid4())
        self._codes[code] = (token, now + CODE_TTL)
        return f"ws://{self.host}:{self.ws_port}{FEEDER_PATH}?requestId={uuid.uuid4()}&code={code}"

    def _bearer(self, authorization: str) -> SimToken | None:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer" or not value:
            return None
        return self.hub.tokens.check(self.provider, value)

    # --- the feed handshake --------------------------------------------------------------

    def process_request(
        self, connection: ServerConnection, request: HttpRequest
    ) -> HttpResponse | None:
        path, _, query = request.path.partition("?")
        if path == ENTRY_PATH:
            if self.handshake_failures:
                status = self.handshake_failures.pop(0)
                return connection.respond(status, f"{HTTPStatus(status).phrase}\n")
            token = self._bearer(request.headers.get("Authorization", ""))
            if token is None:
                # The SDK matches "401 Unauthorized" and then stops retrying (UPSTOX.md §8).
                return connection.respond(HTTPStatus.UNAUTHORIZED, "Unauthorized\n")
            response = connection.respond(HTTPStatus.FOUND, "")
            response.headers["Location"] = self._feeder_url(token)
            return response
        if path == FEEDER_PATH:
            params = dict(part.partition("=")[::2] for part in query.split("&") if part)
            entry = self._codes.pop(params.get("code", ""), None)
            if entry is None or entry[1] < time.monotonic():
                return connection.respond(HTTPStatus.FORBIDDEN, "invalid or used code\n")
            token = entry[0]
            if not token.valid(time.time()):
                return connection.respond(HTTPStatus.UNAUTHORIZED, "Unauthorized\n")
            held = sum(1 for c in self.connections.values() if c.token is token)
            if self.max_connections is not None and held >= self.max_connections:
                self.hub.faults.record(
                    ConnectionFault.EXCEED_CAP, self.provider, detail=f"{held} connections"
                )
                return connection.respond(HTTPStatus.FORBIDDEN, "connection limit reached\n")
            connection.sim_token = token  # type: ignore[attr-defined]
            return None
        return connection.respond(HTTPStatus.NOT_FOUND, "Not Found\n")

    async def ws_handler(self, socket: ServerConnection) -> None:
        conn = self.open_connection(socket, getattr(socket, "sim_token", None))
        state = UpstoxConnectionState()
        conn.protocol = state
        status = "NORMAL_OPEN" if self.hub.model.market_open else "NORMAL_CLOSE"
        self.send(
            conn,
            sc.encode_market_info(
                current_ts=int(time.time() * 1000),
                segment_status=dict.fromkeys(SEGMENTS, status),
            ),
        )
        try:
            async for message in socket:
                try:
                    request = sc.decode_request(message)
                except FrameError:
                    state.bad_frames += 1  # text frames included: Upstox ignores them
                    continue
                state.requests += 1
                await self._handle(conn, state, request)
        except ConnectionClosed:
            pass
        finally:
            for key in list(state.modes):
                self._drop(conn, state, key)
            await self.close_connection(conn)

    async def _handle(
        self, conn: SimConnection, state: UpstoxConnectionState, request: sc.Request
    ) -> None:
        keys = [k for k in dict.fromkeys(request.instrument_keys) if k in self.by_key]
        if request.method == "unsub":
            for key in keys:
                self._drop(conn, state, key)
            return
        if request.method == "change_mode":
            keys = [k for k in keys if k in state.modes]
        planned = dict(state.modes)
        planned.update(dict.fromkeys(keys, request.mode))
        counts: dict[str, int] = defaultdict(int)
        for mode in planned.values():
            counts[mode] += 1
        try:
            check_mode_limits(counts, self.mode_limits)
        except CapExceeded as exc:
            self.hub.faults.record(
                ConnectionFault.EXCEED_CAP, self.provider, detail=f"connection {conn.id}: {exc}"
            )
            if self.cap_reaction == "close":
                await conn.socket.close(1008, "subscription limit exceeded")
            return
        for key in keys:
            state.modes[key] = request.mode or "ltpc"
            self.subscribers[key][conn.id] = state.modes[key]
        if keys:
            ticks = [self._tick(self.hub.model.quote(self.by_key[k].key)) for k in keys]
            self.send(
                conn,
                sc.encode_feed(
                    ticks=ticks,
                    modes=state.modes,
                    kind=self.snapshot_kind,
                    current_ts=int(time.time() * 1000),
                    index_keys=self.index_keys,
                ),
            )

    def _drop(self, conn: SimConnection, state: UpstoxConnectionState, key: str) -> None:
        state.modes.pop(key, None)
        holders = self.subscribers.get(key)
        if holders is not None:
            holders.pop(conn.id, None)

    def _tick(self, quote: Quote) -> Tick:
        return quote.to_tick(ProviderName.UPSTOX, quote.instrument.upstox_key, depth=30)

    # --- market data ---------------------------------------------------------------------

    def on_step(self, quotes: list[Quote], late: list[Emission]) -> None:
        if not self.connections:
            return
        emissions: list[Emission] = []
        for quote in quotes:
            if quote.instrument.upstox_key and self.subscribers.get(quote.instrument.upstox_key):
                emissions.extend(self.hub.faults.apply(self.provider, quote))
        emissions.extend(late)
        per_conn: dict[int, list[tuple[str, Any]]] = defaultdict(list)
        current_ts = int(time.time() * 1000)
        for emission in emissions:
            key = emission.quote.instrument.upstox_key
            holders = self.subscribers.get(key)
            if not holders:
                continue
            tick = self._tick(emission.quote)
            built: dict[str, Any] = {}
            for conn_id, mode in holders.items():
                if mode not in built:
                    built[mode] = sc.feed_message(
                        tick, mode, index=key in self.index_keys, current_ts=current_ts
                    )
                per_conn[conn_id].append((key, built[mode]))
        for conn_id, feeds in per_conn.items():
            conn = self.connections.get(conn_id)
            if conn is not None:
                self.send(
                    conn,
                    sc.encode_feed_messages(feeds=feeds, kind="live", current_ts=current_ts),
                )

    # --- REST ----------------------------------------------------------------------------

    def rest_routes(self) -> list[web.RouteDef]:
        return [
            web.get(ENTRY_PATH + "/authorize", self.authorize),
            web.get("/v3/market-quote/ltp", self.ltp),
            web.get("/v3/market-quote/ohlc", self.ohlc),
            web.get("/v3/market-quote/option-greek", self.option_greeks),
            web.get("/v2/market-quote/quotes", self.full_quotes),
            web.get("/v2/market-quote/ltp", self.ltp_v2),
            web.get("/v2/market-quote/ohlc", self.ohlc_v2),
            web.get("/v3/market-quote/quotes", self.full_quotes),
            web.post("/_sim/caps", self.set_caps),
            web.post("/_sim/handshake", self.set_handshake_failures),
        ]

    def _rest_auth(self, request: web.Request) -> SimToken | web.Response:
        token = self._bearer(request.headers.get("Authorization", ""))
        if token is None:
            return _upstox_error(401, "UDAPI100050", "Invalid token used to access API")
        limiter = self._rest_limits.setdefault(
            token.value, RateLimiter([Window(50, 1.0), Window(500, 60.0), Window(2000, 1800.0)])
        )
        if not limiter.try_acquire():
            return _upstox_error(429, "UDAPI10005", "Too Many Request Sent")
        return token

    def _keys(self, request: web.Request, limit: int) -> list[str] | web.Response:
        # The V2 API in the official SDK sends the keys as ``symbol``; V3 as ``instrument_key``.
        raw = request.query.get("instrument_key") or request.query.get("symbol", "")
        if not raw:
            return _upstox_error(400, "UDAPI1009", "instrument_key is required")
        keys = [k for k in raw.split(",") if k]
        if len(keys) > limit:
            return _upstox_error(400, "UDAPI100043", "Maximum instrument key limit exceeded")
        if any("|" not in k for k in keys):
            return _upstox_error(400, "UDAPI1011", "Invalid instrument key format")
        known = [k for k in keys if k in self.by_key]
        if not known:
            return _upstox_error(400, "UDAPI1087", "Invalid Instrument key")
        return known

    def _quotes(self, request: web.Request, limit: int) -> list[Quote] | web.Response:
        auth = self._rest_auth(request)
        if isinstance(auth, web.Response):
            return auth
        keys = self._keys(request, limit)
        if isinstance(keys, web.Response):
            return keys
        return [self.hub.model.quote(self.by_key[k].key) for k in keys]

    @staticmethod
    def _response_key(quote: Quote) -> str:
        inst = quote.instrument
        segment = inst.upstox_key.split("|", 1)[0]
        return f"{segment}:{inst.upstox_trading_symbol or inst.upstox_key.split('|', 1)[1]}"

    @staticmethod
    def _px(value: int | None, quote: Quote) -> float:
        return 0.0 if value is None else value / 10**quote.instrument.scale

    async def authorize(self, request: web.Request) -> web.Response:
        token = self._bearer(request.headers.get("Authorization", ""))
        if token is None:
            return _upstox_error(401, "UDAPI100050", "Invalid token used to access API")
        url = self._feeder_url(token)
        # Both keys: the docs deprecate the camelCase one, but the SDK reads only it (§3.2).
        data = {"authorized_redirect_uri": url, "authorizedRedirectUri": url}
        return web.json_response({"status": "success", "data": data})

    async def ltp(self, request: web.Request) -> web.Response:
        quotes = self._quotes(request, MAX_KEYS_PER_QUOTE_CALL)
        if isinstance(quotes, web.Response):
            return quotes
        data = {
            self._response_key(q): {
                "last_price": self._px(q.ltp, q),
                "instrument_token": q.instrument.upstox_key,
                "ltq": q.ltq,
                "volume": q.volume,
                "cp": self._px(q.prev_close, q),
            }
            for q in quotes
        }
        return web.json_response({"status": "success", "data": data})

    async def ltp_v2(self, request: web.Request) -> web.Response:
        quotes = self._quotes(request, MAX_KEYS_PER_QUOTE_CALL)
        if isinstance(quotes, web.Response):
            return quotes
        data = {
            self._response_key(q): {
                "last_price": self._px(q.ltp, q),
                "instrument_token": q.instrument.upstox_key,
            }
            for q in quotes
        }
        return web.json_response({"status": "success", "data": data})

    async def ohlc_v2(self, request: web.Request) -> web.Response:
        quotes = self._quotes(request, MAX_KEYS_PER_QUOTE_CALL)
        if isinstance(quotes, web.Response):
            return quotes
        data = {
            self._response_key(q): {
                "ohlc": {
                    "open": self._px(q.open, q),
                    "high": self._px(q.high, q),
                    "low": self._px(q.low, q),
                    "close": self._px(q.ltp, q),
                },
                "last_price": self._px(q.ltp, q),
                "instrument_token": q.instrument.upstox_key,
            }
            for q in quotes
        }
        return web.json_response({"status": "success", "data": data})

    async def ohlc(self, request: web.Request) -> web.Response:
        interval = request.query.get("interval", "1d")
        if interval not in ("1d", "I1", "I30"):
            return _upstox_error(400, "UDAPI1022", "Invalid interval")
        quotes = self._quotes(request, MAX_KEYS_PER_QUOTE_CALL)
        if isinstance(quotes, web.Response):
            return quotes
        day_start = int(time.time() // 86_400 * 86_400 * 1000)
        data = {}
        for q in quotes:
            live = {"open": self._px(q.open, q), "high": self._px(q.high, q),
                    "low": self._px(q.low, q), "close": self._px(q.ltp, q),
                    "volume": q.volume, "ts": day_start}  # fmt: skip
            prev = {"open": self._px(q.prev_close, q), "high": self._px(q.prev_close, q),
                    "low": self._px(q.prev_close, q), "close": self._px(q.prev_close, q),
                    "volume": 0, "ts": day_start - 86_400_000}  # fmt: skip
            data[self._response_key(q)] = {
                "last_price": self._px(q.ltp, q),
                "instrument_token": q.instrument.upstox_key,
                "prev_ohlc": prev,
                "live_ohlc": live,
            }
        return web.json_response({"status": "success", "data": data})

    async def option_greeks(self, request: web.Request) -> web.Response:
        quotes = self._quotes(request, MAX_KEYS_PER_GREEKS_CALL)
        if isinstance(quotes, web.Response):
            return quotes
        data = {
            self._response_key(q): {
                "last_price": self._px(q.ltp, q),
                "instrument_token": q.instrument.upstox_key,
                "ltq": q.ltq,
                "volume": q.volume,
                "cp": self._px(q.prev_close, q),
                # The market model prices no greeks; zeros say "not computed".
                "iv": 0.0, "vega": 0.0, "gamma": 0.0, "theta": 0.0, "delta": 0.0,
                "oi": float(q.oi or 0),
            }
            for q in quotes
        }  # fmt: skip
        return web.json_response({"status": "success", "data": data})

    async def full_quotes(self, request: web.Request) -> web.Response:
        quotes = self._quotes(request, MAX_KEYS_PER_QUOTE_CALL)
        if isinstance(quotes, web.Response):
            return quotes
        data = {}
        for q in quotes:
            bids, asks = q.depth(5)
            data[self._response_key(q)] = {
                "ohlc": {"open": self._px(q.open, q), "high": self._px(q.high, q),
                         "low": self._px(q.low, q), "close": self._px(q.prev_close, q)},
                "depth": {
                    "buy": [{"quantity": b.qty, "price": self._px(b.price, q),
                             "orders": b.orders or 0} for b in bids],
                    "sell": [{"quantity": a.qty, "price": self._px(a.price, q),
                              "orders": a.orders or 0} for a in asks],
                },
                "timestamp": _ist_iso(q.exchange_ts),
                "instrument_token": q.instrument.upstox_key,
                "symbol": q.instrument.upstox_trading_symbol,
                "last_price": self._px(q.ltp, q),
                "volume": q.volume,
                "average_price": self._px(q.atp, q),
                "oi": float(q.oi or 0),
                "net_change": self._px(q.ltp - q.prev_close, q),
                "total_buy_quantity": float(q.total_buy_qty),
                "total_sell_quantity": float(q.total_sell_qty),
                "lower_circuit_limit": self._px(q.lower_circuit, q),
                "upper_circuit_limit": self._px(q.upper_circuit, q),
                "last_trade_time": str(q.ltt),
                "oi_day_high": 0.0,
                "oi_day_low": 0.0,
            }  # fmt: skip
            if request.path.startswith("/v3/"):  # V3 adds these; V2 has only ohlc.close
                data[self._response_key(q)]["prev_close_price"] = self._px(q.prev_close, q)
        return web.json_response({"status": "success", "data": data})

    # --- control -------------------------------------------------------------------------

    async def set_caps(self, request: web.Request) -> web.Response:
        """Lower (or restore) the connection and per-mode limits at run time."""
        data = await request.json()
        if "connections" in data:
            self.max_connections = int(data["connections"])
        for mode, pair in (data.get("mode_limits") or {}).items():
            self.mode_limits[mode] = {k: int(v) for k, v in pair.items()}
        if "reaction" in data:
            self.cap_reaction = data["reaction"]
        return web.json_response(
            {
                "connections": self.max_connections,
                "mode_limits": self.mode_limits,
                "reaction": self.cap_reaction,
            }
        )

    async def set_handshake_failures(self, request: web.Request) -> web.Response:
        """Answer the next ``count`` upgrade requests with ``status`` (403, 500, 503…)."""
        data = await request.json()
        status, count = int(data.get("status", 403)), int(data.get("count", 1))
        self.handshake_failures = [status] * min(count, 1000)
        self.hub.faults.record("handshake_status", self.provider, detail=f"{status} x{count}")
        return web.json_response({"pending": len(self.handshake_failures)})
