"""The simulators' shared server side: one hub, tokens, connections and the control API.

``SimulatorHub`` steps one ``MarketModel`` on a clock and hands each attached provider
simulator the quotes that ticked (after that provider's faults). ``ProviderSimulator`` is
the base both provider servers build on: a registry of live sockets, each with a bounded
outbound queue and its own writer task (a slow client is closed, never allowed to slow the
market loop), and the connection faults (clean and unclean closes, stalls, auth rejection,
token expiry). ``control_routes`` exposes all of it over HTTP under ``/_sim/`` so tests and
the command line can script faults on a running simulator.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import itertools
import json
import logging
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from websockets.asyncio.server import Server, ServerConnection, serve

from feeds.providers.simulation.faults import (
    ConnectionFault,
    DataFault,
    Emission,
    FaultInjector,
    FaultLabel,
    FaultRule,
)
from feeds.providers.simulation.market import MarketModel, Quote
from feeds.providers.simulation.universe import SimInstrument

logger = logging.getLogger(__name__)


# --- tokens ------------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(slots=True)
class SimToken:
    provider: str
    value: str  # what the client is given ("APPID:JWT" for FYERS, a bearer for Upstox)
    expires_at: float
    hsm_key: str = ""
    revoked: bool = False

    def valid(self, now: float) -> bool:
        return not self.revoked and now < self.expires_at


class TokenRegistry:
    """Test tokens the simulators issue and check. Bounded: the oldest are forgotten."""

    MAX_TOKENS = 10_000

    def __init__(self) -> None:
        self._by_value: dict[str, SimToken] = {}
        self._by_hsm_key: dict[str, SimToken] = {}
        self.reject_auth: dict[str, bool] = {"fyers": False, "upstox": False}

    def issue_fyers(self, *, app_id: str = "SIMAPP-100", ttl: float = 86_400.0) -> str:
        """An unsigned JWT-shaped FYERS token whose payload carries ``hsm_key`` and ``exp``
        (providers/FYERS.md §4, §15.1): the official SDK decodes it like a real one."""
        now = time.time()
        hsm_key = secrets.token_hex(16)
        header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        payload = _b64url(
            json.dumps(
                {
                    "iss": "api.fyers.in",
                    "iat": int(now),
                    "exp": int(now + ttl),
                    "sub": "access_token",
                    "hsm_key": hsm_key,
                    "fy_id": "XS00000",
                    "appType": 100,
                }
            ).encode()
        )
        jwt = f"{header}.{payload}.{_b64url(secrets.token_bytes(24))}"
        token = SimToken("fyers", f"{app_id}:{jwt}", now + ttl, hsm_key=hsm_key)
        self._keep(token, jwt)
        return token.value

    def issue_upstox(self, *, ttl: float = 86_400.0) -> str:
        token = SimToken("upstox", "sim-" + secrets.token_urlsafe(24), time.time() + ttl)
        self._keep(token, token.value)
        return token.value

    def issue(self, provider: str) -> str:
        return self.issue_fyers() if provider == "fyers" else self.issue_upstox()

    def _keep(self, token: SimToken, lookup: str) -> None:
        if len(self._by_value) >= self.MAX_TOKENS:
            oldest = next(iter(self._by_value))
            gone = self._by_value.pop(oldest)
            self._by_hsm_key.pop(gone.hsm_key, None)
        self._by_value[lookup] = token
        if token.provider == "fyers":
            self._by_value[token.value] = token  # "APPID:JWT" as well as the bare JWT
            self._by_hsm_key[token.hsm_key] = token

    def check(self, provider: str, presented: str) -> SimToken | None:
        """The token if it is valid for ``provider`` (FYERS: "APPID:JWT" or the bare JWT)."""
        if self.reject_auth.get(provider):
            return None
        token = self._by_value.get(presented.strip())
        if token is None or token.provider != provider or not token.valid(time.time()):
            return None
        return token

    def check_hsm_key(self, hsm_key: str) -> SimToken | None:
        if self.reject_auth.get("fyers"):
            return None
        token = self._by_hsm_key.get(hsm_key)
        return token if token is not None and token.valid(time.time()) else None

    def expire(self, provider: str, value: str | None = None) -> list[SimToken]:
        """Expire one token, or every token of the provider; returns those expired."""
        expired = []
        for token in {id(t): t for t in self._by_value.values()}.values():
            if token.provider == provider and (value is None or token.value == value):
                token.revoked = True
                expired.append(token)
        return expired


# --- connections -------------------------------------------------------------------------


@dataclass(eq=False, slots=True)
class SimConnection:
    """One client socket on a provider simulator."""

    id: int
    provider: str
    socket: ServerConnection
    token: SimToken | None = None
    queue: asyncio.Queue[bytes] = field(default_factory=lambda: asyncio.Queue(maxsize=2_000))
    stalled_until: float = 0.0
    muted_until: float = 0.0
    writer: asyncio.Task[None] | None = None
    frames_sent: int = 0
    opened_at: float = field(default_factory=time.time)
    protocol: Any = None  # the provider's per-connection state

    @property
    def stalled(self) -> bool:
        return time.monotonic() < self.stalled_until

    @property
    def muted(self) -> bool:
        return time.monotonic() < self.muted_until

    def summary(self) -> dict[str, Any]:
        state = self.protocol.summary() if hasattr(self.protocol, "summary") else {}
        return {
            "id": self.id,
            "provider": self.provider,
            "remote": str(self.socket.remote_address),
            "frames_sent": self.frames_sent,
            "queued": self.queue.qsize(),
            "stalled": self.stalled,
            "muted": self.muted,
            "opened_at": self.opened_at,
            **state,
        }


class ProviderSimulator:
    """Base of a provider's simulator: connection registry, outbound queues, faults.

    Subclasses implement the protocol: ``ws_handler`` (per socket), ``on_step`` (build
    frames for the quotes that ticked) and the REST routes in ``rest_routes``.
    """

    provider = ""

    def __init__(self, hub: SimulatorHub, *, max_connections: int | None = None) -> None:
        self.hub = hub
        self.max_connections = max_connections
        self.connections: dict[int, SimConnection] = {}
        self._ids = itertools.count(1)
        self._server: Server | None = None
        self._runner: web.AppRunner | None = None
        self.host = "127.0.0.1"
        self.rest_port = 0
        self.ws_port = 0
        self._closing: set[asyncio.Task[None]] = set()

    # Subclass interface.
    def rest_routes(self) -> list[web.RouteDef]:
        return []

    def socket_options(self) -> dict[str, Any]:
        """Extra ``websockets.serve`` options (pings, a handshake hook)."""
        return {}

    async def ws_handler(self, socket: ServerConnection) -> None:
        raise NotImplementedError

    # Servers: the REST API (aiohttp, with the /_sim/ control routes) and the socket.
    async def start(self, host: str = "127.0.0.1", rest_port: int = 0, ws_port: int = 0) -> None:
        self.host = host
        app = web.Application(client_max_size=2**20)
        app.add_routes(self.rest_routes() + control_routes(self))
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, rest_port).start()
        self.rest_port = self._runner.addresses[0][1]
        options = {"max_size": 2**20, "max_queue": 64, "close_timeout": 2}
        self._server = await serve(
            self.ws_handler, host, ws_port, **{**options, **self.socket_options()}
        )
        self.ws_port = self._server.sockets[0].getsockname()[1]
        logger.info("%s simulator: REST :%s, socket :%s", self.provider, self.rest_port,
                    self.ws_port)  # fmt: skip

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._runner is not None:
            await self._runner.cleanup()

    def on_step(self, quotes: list[Quote], late: list[Emission]) -> None:
        raise NotImplementedError

    # Connection lifecycle.
    def open_connection(self, socket: ServerConnection, token: SimToken | None) -> SimConnection:
        conn = SimConnection(id=next(self._ids), provider=self.provider, socket=socket)
        conn.token = token
        conn.writer = asyncio.create_task(self._write_loop(conn), name=f"sim-writer-{conn.id}")
        self.connections[conn.id] = conn
        return conn

    async def close_connection(self, conn: SimConnection) -> None:
        self.connections.pop(conn.id, None)
        if conn.writer is not None:
            conn.writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await conn.writer

    def send(self, conn: SimConnection, frame: bytes) -> None:
        """Queue a frame; a client too slow to drain its queue is dropped like a real server
        would drop it, so that one reader never holds back the market loop."""
        try:
            conn.queue.put_nowait(frame)
        except asyncio.QueueFull:
            logger.warning("sim %s connection %s too slow; closing", self.provider, conn.id)
            self._close_soon(conn, 1011, "consumer too slow")

    def _close_soon(self, conn: SimConnection, code: int, reason: str) -> None:
        """Start a closing handshake without waiting for it: some clients (websocket-client)
        never finish it when the server closes first, and a control call must not hang.
        The connection leaves the registry at once: no more frames, no slot held."""
        self.connections.pop(conn.id, None)
        task = asyncio.create_task(conn.socket.close(code, reason))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _write_loop(self, conn: SimConnection) -> None:
        while True:
            frame = await conn.queue.get()
            if conn.stalled:
                # Stalled: the socket stays open and silent; frames wait (bounded queue).
                await asyncio.sleep(conn.stalled_until - time.monotonic())
            if conn.muted:
                continue  # muted: frames are dropped while pings are still answered
            try:
                await conn.socket.send(frame)
            except Exception:  # the socket closed under us; the handler cleans up
                return
            conn.frames_sent += 1

    # Connection faults.
    def targets(self, which: str | int) -> list[SimConnection]:
        if which in ("all", "*"):
            return list(self.connections.values())
        conn = self.connections.get(int(which))
        return [conn] if conn is not None else []

    async def fault_close(self, which: str | int, *, clean: bool, code: int | None = None) -> int:
        """Close sockets: clean = a close frame (code 1000 unless given), unclean = TCP reset."""
        closed = 0
        for conn in self.targets(which):
            kind = ConnectionFault.CLOSE_CLEAN if clean else ConnectionFault.CLOSE_UNCLEAN
            self.hub.faults.record(kind, self.provider, detail=f"connection {conn.id}")
            if clean:
                self._close_soon(conn, code or 1000, "closed by simulator")
            else:
                conn.socket.transport.abort()
            closed += 1
        return closed

    def fault_stall(self, which: str | int, seconds: float) -> int:
        """Freeze sockets: open, but nothing sent and nothing read, so not even WebSocket
        pongs come back (a hung server, not just a quiet market)."""
        conns = self.targets(which)
        loop = asyncio.get_running_loop()
        for conn in conns:
            self.hub.faults.record(
                ConnectionFault.STALL, self.provider, detail=f"connection {conn.id} {seconds:g}s"
            )
            conn.stalled_until = time.monotonic() + seconds
            transport = conn.socket.transport
            transport.pause_reading()
            loop.call_later(seconds, _resume_reading, transport)
        return len(conns)

    def fault_mute(self, which: str | int, seconds: float) -> int:
        """Keep sockets open and answering pings but send them no frames: a feed that quietly
        stopped streaming, which a client's silence watchdog cannot tell from a quiet market."""
        conns = self.targets(which)
        for conn in conns:
            self.hub.faults.record(
                ConnectionFault.MUTE, self.provider, detail=f"connection {conn.id} {seconds:g}s"
            )
            conn.muted_until = time.monotonic() + seconds
        return len(conns)

    def fault_inject(self, which: str | int, frame: bytes) -> int:
        """Send raw bytes (a malformed frame, say) down the sockets, in stream order."""
        conns = self.targets(which)
        for conn in conns:
            self.hub.faults.record("inject_frame", self.provider, detail=f"{len(frame)} bytes")
            self.send(conn, frame)
        return len(conns)

    async def fault_expire_tokens(self, value: str | None = None) -> int:
        """Expire tokens and drop the sockets that authenticated with them."""
        expired = {id(t) for t in self.hub.tokens.expire(self.provider, value)}
        self.hub.faults.record(ConnectionFault.EXPIRE_TOKEN, self.provider, detail=value or "all")
        dropped = 0
        for conn in list(self.connections.values()):
            if conn.token is not None and id(conn.token) in expired:
                self._close_soon(conn, 1008, "token expired")
                dropped += 1
        return dropped


def _resume_reading(transport: asyncio.Transport) -> None:
    if not transport.is_closing():
        transport.resume_reading()


# --- the hub -----------------------------------------------------------------------------


class SimulatorHub:
    """One market, one fault injector and one token registry for both simulators."""

    def __init__(
        self,
        instruments: Iterable[SimInstrument],
        *,
        seed: int = 0,
        ticks_per_second: float = 1.0,
        step_interval: float = 0.05,
        market_open: bool = True,
        rates: dict[str, float] | None = None,
    ) -> None:
        self.instruments = {inst.key: inst for inst in instruments}
        self.model = MarketModel(
            self.instruments.values(),
            seed=seed,
            ticks_per_second=ticks_per_second,
            rates=rates,
            market_open=market_open,
        )
        self.faults = FaultInjector(seed=seed)
        self.tokens = TokenRegistry()
        self.step_interval = step_interval
        self.simulators: dict[str, ProviderSimulator] = {}
        self._task: asyncio.Task[None] | None = None
        self.steps = 0

    def attach(self, simulator: ProviderSimulator) -> None:
        self.simulators[simulator.provider] = simulator

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="sim-market-clock")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            next_at += self.step_interval
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            self.step()

    def step(self, now: float | None = None) -> list[Quote]:
        quotes = self.model.step(now)
        late = self.faults.due(now)
        self.steps += 1
        for provider, simulator in self.simulators.items():
            mine = [e for e in late if e.label is not None and e.label.provider == provider]
            try:
                simulator.on_step(quotes, mine)
            except Exception:  # one provider's bug must not stop the other's market
                logger.exception("sim %s failed on a market step", provider)
        return quotes


# --- control API -------------------------------------------------------------------------


def _label_json(label: FaultLabel) -> dict[str, Any]:
    return dataclasses.asdict(label)


def control_routes(simulator: ProviderSimulator) -> list[web.RouteDef]:
    """``/_sim/...`` routes for one provider's REST app. JSON in, JSON out."""
    hub = simulator.hub
    provider = simulator.provider

    async def body(request: web.Request) -> dict[str, Any]:
        if not request.can_read_body:
            return {}
        try:
            data = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise web.HTTPBadRequest(text=f"malformed JSON: {exc}") from None
        if not isinstance(data, dict):
            raise web.HTTPBadRequest(text="expected a JSON object")
        return data

    async def issue_token(request: web.Request) -> web.Response:
        return web.json_response({"token": hub.tokens.issue(provider)})

    async def expire_tokens(request: web.Request) -> web.Response:
        data = await body(request)
        dropped = await simulator.fault_expire_tokens(data.get("token"))
        return web.json_response({"dropped_connections": dropped})

    async def auth(request: web.Request) -> web.Response:
        data = await body(request)
        hub.tokens.reject_auth[provider] = bool(data.get("reject", True))
        if hub.tokens.reject_auth[provider]:
            hub.faults.record(ConnectionFault.REJECT_AUTH, provider)
        return web.json_response({"reject": hub.tokens.reject_auth[provider]})

    async def connections(request: web.Request) -> web.Response:
        return web.json_response([c.summary() for c in simulator.connections.values()])

    async def connection_fault(request: web.Request) -> web.Response:
        action = request.match_info["action"]
        data = await body(request)
        which = data.get("connection", "all")
        if action == "close_clean":
            count = await simulator.fault_close(which, clean=True, code=data.get("code"))
        elif action == "close_unclean":
            count = await simulator.fault_close(which, clean=False)
        elif action == "stall":
            count = simulator.fault_stall(which, float(data.get("seconds", 30)))
        elif action == "mute":
            count = simulator.fault_mute(which, float(data.get("seconds", 30)))
        elif action == "inject":
            try:
                frame = bytes.fromhex(data.get("hex", ""))
            except ValueError:
                raise web.HTTPBadRequest(text="hex: not hexadecimal") from None
            count = simulator.fault_inject(which, frame)
        else:
            raise web.HTTPNotFound(text=f"unknown action {action!r}")
        return web.json_response({"affected": count})

    async def add_fault(request: web.Request) -> web.Response:
        data = await body(request)
        try:
            rule = FaultRule(
                kind=DataFault(data["kind"]),
                provider=data.get("provider", provider),
                keys=frozenset(data["keys"]) if data.get("keys") else None,
                rate=float(data.get("rate", 0.0)),
                count=data.get("count"),
                magnitude=data.get("magnitude"),
                seconds=data.get("seconds"),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise web.HTTPBadRequest(text=f"bad fault rule: {exc}") from None
        hub.faults.add(rule)
        return web.json_response({"id": rule.id})

    async def clear_faults(request: web.Request) -> web.Response:
        hub.faults.clear()
        return web.json_response({"cleared": True})

    async def labels(request: web.Request) -> web.Response:
        since = int(request.query.get("since", "0"))
        limit = min(int(request.query.get("limit", "10000")), 100_000)
        rows = [_label_json(lb) for lb in hub.faults.labels if lb.id > since][:limit]
        return web.json_response(rows)

    async def market(request: web.Request) -> web.Response:
        data = await body(request)
        if "open" in data:
            hub.model.market_open = bool(data["open"])
        return web.json_response({"open": hub.model.market_open})

    async def status(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "provider": provider,
                "connections": len(simulator.connections),
                "instruments": len(hub.instruments),
                "market_open": hub.model.market_open,
                "ticks_total": hub.model.ticks_total,
                "steps": hub.steps,
                "faults": hub.faults.counts,
                "reject_auth": hub.tokens.reject_auth[provider],
            }
        )

    return [
        web.post("/_sim/token", issue_token),
        web.post("/_sim/tokens/expire", expire_tokens),
        web.post("/_sim/auth", auth),
        web.get("/_sim/connections", connections),
        web.post("/_sim/connections/{action}", connection_fault),
        web.post("/_sim/faults", add_fault),
        web.delete("/_sim/faults", clear_faults),
        web.get("/_sim/labels", labels),
        web.post("/_sim/market", market),
        web.get("/_sim/status", status),
    ]
