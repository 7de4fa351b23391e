"""What every provider's socket client shares: state, counters, reconnects, liveness.

A ``FeedClient`` owns one socket. ``run()`` keeps it connected for as long as the client
lives: connect, authenticate, subscribe everything it holds, read frames; on any failure
report the state, wait a capped, jittered back-off and do it again. Subclasses supply the
protocol in ``_session`` (open, authenticate, resubscribe, read until the socket ends) and
``_send_subscriptions`` / ``_send_unsubscriptions``. Ticks go to the ``on_ticks`` callback,
which must not block (the pool hands them to a bounded queue).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from websockets.asyncio.client import ClientConnection

from feeds.providers.backoff import Backoff
from feeds.providers.errors import AuthError, CapExceeded, FrameError, ProviderError
from feeds.providers.ticks import Tick

logger = logging.getLogger(__name__)


class ClientState(StrEnum):
    CONNECTING = "connecting"
    LIVE = "live"
    DEGRADED = "degraded"  # connected but not trustworthy (silent, refusing requests)
    DOWN = "down"  # not connected; reconnecting after a back-off
    CLOSED = "closed"  # closed on purpose; will not reconnect


@dataclass(slots=True)
class ClientStats:
    frames: int = 0
    ticks: int = 0
    bytes: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    connects: int = 0
    reconnects: int = 0
    restarts: int = 0  # sessions ended on the health check's order
    last_message_ns: int = 0
    last_pong_ns: int = 0
    live_since_ns: int = 0
    last_error: str = ""
    # (monotonic second, frames) over the last minute, for messages per second.
    _window: deque[tuple[int, int]] = field(default_factory=lambda: deque(maxlen=60))

    def count_frame(self, size: int, ticks: int) -> None:
        self.frames += 1
        self.bytes += size
        self.ticks += ticks
        self.last_message_ns = time.time_ns()
        second = int(time.monotonic())
        if self._window and self._window[-1][0] == second:
            self._window[-1] = (second, self._window[-1][1] + 1)
        else:
            self._window.append((second, 1))

    def messages_per_second(self, span: int = 10) -> float:
        now = int(time.monotonic())
        recent = sum(n for second, n in self._window if now - span <= second < now)
        return recent / span

    def snapshot(self) -> dict[str, object]:
        return {
            "frames": self.frames,
            "ticks": self.ticks,
            "bytes": self.bytes,
            "errors": dict(self.errors),
            "connects": self.connects,
            "reconnects": self.reconnects,
            "restarts": self.restarts,
            "last_message_ns": self.last_message_ns,
            "last_pong_ns": self.last_pong_ns,
            "live_since_ns": self.live_since_ns,
            "messages_per_second": self.messages_per_second(),
            "last_error": self.last_error,
        }


class ConnectionSlots:
    """The connections one provider account may hold at once (FYERS: per user; Upstox: 2 on
    the normal plan, 5 on Plus). Clients of the account share one instance and take a slot
    when they start, so the pool can never open one connection too many."""

    def __init__(self, account: str, limit: int) -> None:
        self.account = account
        self.limit = limit
        self.holders: set[str] = set()

    def take(self, holder: str) -> None:
        if holder in self.holders:
            return
        if len(self.holders) >= self.limit:
            raise CapExceeded(f"{self.account}: connections per account", self.limit,
                              len(self.holders) + 1)  # fmt: skip
        self.holders.add(holder)

    def give_back(self, holder: str) -> None:
        self.holders.discard(holder)


TickSink = Callable[[list[Tick]], None]
StateSink = Callable[["FeedClient", ClientState, str], None]


class SessionEnded(ProviderError):
    """The socket ended; ``run()`` reconnects after a back-off."""


class FeedClient(ABC):
    """One provider socket that stays connected and keeps its subscriptions."""

    provider = ""

    def __init__(
        self,
        *,
        name: str,
        token: Callable[[], str | None],
        on_ticks: TickSink,
        on_state: StateSink | None = None,
        symbol_cap: int,
        instruments: Mapping[str, str] | None = None,
        ping_interval: float | None = 5.0,
        ping_timeout: float = 5.0,
        silence_timeout: float | None = None,
        connect_timeout: float = 10.0,
        backoff: Backoff | None = None,
        auth_backoff: Backoff | None = None,
        slots: ConnectionSlots | None = None,
    ) -> None:
        self.name = name
        self.slots = slots
        self._token = token
        self.on_ticks = on_ticks
        self.on_state = on_state
        self.symbol_cap = symbol_cap
        # Provider symbol -> canonical key, stamped on every tick.
        self.instruments: dict[str, str] = dict(instruments or {})
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.silence_timeout = silence_timeout
        self.connect_timeout = connect_timeout
        self.backoff = backoff or Backoff()
        # A refused token rarely fixes itself within seconds: back off further.
        self.auth_backoff = auth_backoff or Backoff(base=2.0, cap=60.0)
        self.subscriptions: dict[str, str] = {}  # provider symbol -> data mode
        self.state = ClientState.DOWN
        self.state_reason = ""
        self.stats = ClientStats()
        self.market_open = True  # providers that announce it (Upstox market_info) update it
        self._closed = False
        self._live = asyncio.Event()
        self._session_task: asyncio.Task[None] | None = None
        self._restart_reason = ""  # set by ``restart``: the next reconnect is at once

    # --- public API ----------------------------------------------------------------------

    async def subscribe(self, symbols: Mapping[str, str]) -> None:
        """Add symbols (provider form -> mode: ltp / quote / depth). Refuses past the caps
        with ``CapExceeded`` before sending anything; sent at once when live, else on the
        next connect."""
        new = {s: m for s, m in symbols.items() if self.subscriptions.get(s) != m}
        if not new:
            return
        planned = {**self.subscriptions, **new}
        self.check_caps(planned)
        self.subscriptions = planned
        if self.state in (ClientState.LIVE, ClientState.DEGRADED):
            await self._send_subscriptions(new)

    async def unsubscribe(self, symbols: list[str]) -> None:
        gone = [s for s in symbols if s in self.subscriptions]
        for symbol in gone:
            del self.subscriptions[symbol]
        if gone and self.state in (ClientState.LIVE, ClientState.DEGRADED):
            await self._send_unsubscriptions(gone)

    def set_account(self, *, token: Callable[[], str | None], symbol_cap: int) -> None:
        """The account was edited: the next connect reads the new token variable, and the
        cap applies to subscriptions from now on."""
        self._token = token
        self.symbol_cap = symbol_cap

    def check_caps(self, planned: Mapping[str, str]) -> None:
        if len(planned) > self.symbol_cap:
            raise CapExceeded(f"{self.name}: symbols per connection", self.symbol_cap, len(planned))

    async def run(self) -> None:
        """Stay connected until ``close()``."""
        while not self._closed:
            self._set_state(ClientState.CONNECTING, "connecting")
            try:
                await self._session()
                reason = "socket closed"
                delay = self.backoff.next_delay()
            except AuthError as exc:
                reason = f"auth failed: {exc}"
                self.stats.errors["auth"] += 1
                delay = self.auth_backoff.next_delay()
            except (OSError, TimeoutError, ProviderError, asyncio.IncompleteReadError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
                delay = self.backoff.next_delay()
            except Exception as exc:  # websockets' own errors and anything unforeseen
                if self._closed:
                    break
                reason = f"{type(exc).__name__}: {exc}"
                self.stats.errors["unexpected"] += 1
                logger.warning("%s: unexpected error", self.name, exc_info=True)
                delay = self.backoff.next_delay()
            self._live.clear()
            if self._closed:
                break
            if self._restart_reason:
                reason, self._restart_reason = f"restarted: {self._restart_reason}", ""
                delay = 0.0
            self.stats.last_error = reason
            self._set_state(ClientState.DOWN, reason)
            await asyncio.sleep(delay)
        self._set_state(ClientState.CLOSED, "closed")

    def start(self) -> asyncio.Task[None]:
        """Run in a task. Raises ``CapExceeded`` if the account has no connection left."""
        if self.slots is not None:
            self.slots.take(self.name)
        if self._session_task is None or self._session_task.done():
            self._session_task = asyncio.create_task(self.run(), name=f"feed-{self.name}")
        return self._session_task

    async def wait_live(self) -> None:
        """Until the next time the socket is authenticated and subscribed."""
        await self._live.wait()

    async def restart(self, reason: str) -> bool:
        """End the current session and connect again at once, with every subscription (an
        order from the health check: the socket looks alive but carries nothing). False
        when there is no session to end."""
        if self._closed or self.state not in (ClientState.LIVE, ClientState.DEGRADED):
            return False
        self._restart_reason = reason
        self.stats.restarts += 1
        await self._close_socket()
        return True

    async def close(self) -> None:
        self._closed = True
        if self.slots is not None:
            self.slots.give_back(self.name)
        await self._close_socket()
        if self._session_task is not None:
            self._session_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._session_task
        self._set_state(ClientState.CLOSED, "closed")

    def status(self) -> dict[str, object]:
        return {
            "name": self.name,
            "provider": self.provider,
            "state": self.state.value,
            "reason": self.state_reason,
            "symbols": len(self.subscriptions),
            "symbol_cap": self.symbol_cap,
            "market_open": self.market_open,
            **self.stats.snapshot(),
        }

    # --- for subclasses ------------------------------------------------------------------

    @abstractmethod
    async def _session(self) -> None:
        """Connect, authenticate, resubscribe everything, then read until the socket ends
        (return or raise). Call ``_went_live()`` once subscriptions are sent."""

    @abstractmethod
    async def _send_subscriptions(self, symbols: Mapping[str, str]) -> None: ...

    @abstractmethod
    async def _send_unsubscriptions(self, symbols: list[str]) -> None: ...

    @abstractmethod
    async def _close_socket(self) -> None: ...

    def token(self) -> str:
        value = self._token()
        if not value:
            raise AuthError(f"{self.name}: no access token (is its environment variable set?)")
        return value

    def _went_live(self) -> None:
        self.stats.connects += 1
        if self.stats.connects > 1:
            self.stats.reconnects += 1
        self.stats.live_since_ns = time.time_ns()
        self.backoff.reset()
        self.auth_backoff.reset()
        self._live.set()
        self._set_state(ClientState.LIVE, "subscribed")

    def _deliver(self, ticks: list[Tick], size: int) -> None:
        self.stats.count_frame(size, len(ticks))
        if not ticks:
            return
        instruments, name = self.instruments, self.name
        for tick in ticks:
            tick.instrument = instruments.get(tick.symbol, "")
            tick.connection = name
        try:
            self.on_ticks(ticks)
        except Exception:  # a consumer's bug must not kill the socket
            self.stats.errors["sink"] += 1
            logger.exception("%s: tick sink failed", self.name)
        if self.state is ClientState.DEGRADED and self.state_reason.startswith("silent"):
            self._set_state(ClientState.LIVE, "data again")

    def _frame_error(self, exc: FrameError) -> None:
        self.stats.errors[exc.reason] += 1
        self.stats.last_error = str(exc)

    def _set_state(self, state: ClientState, reason: str) -> None:
        if state is self.state and reason == self.state_reason:
            return
        self.state, self.state_reason = state, reason
        if self.on_state is not None:
            try:
                self.on_state(self, state, reason)
            except Exception:
                logger.exception("%s: state sink failed", self.name)

    async def _watch_silence(self, ws: ClientConnection | None = None) -> None:
        """Silence while the market is open and symbols are held: no data and no pong.
        Degraded at the bound, and the session is ended at twice the bound so that ``run()``
        reconnects. With ``ws`` it pings every half bound, so a quiet but healthy socket
        (an illiquid set of symbols) stays live while a hung peer is caught."""
        if not self.silence_timeout:
            await asyncio.Event().wait()  # disabled: never ends the session
        bound = self.silence_timeout
        last_ping = 0.0
        while True:
            await asyncio.sleep(bound / 4)
            now = time.monotonic()
            if ws is not None and now - last_ping >= bound / 2:
                last_ping = now
                with contextlib.suppress(Exception):  # closing: the read side reports it
                    waiter = await ws.ping()
                    waiter.add_done_callback(self._ponged)
            if not (self.market_open and self.subscriptions):
                continue
            stats = self.stats
            heard = max(stats.last_message_ns, stats.last_pong_ns, stats.live_since_ns)
            quiet = (time.time_ns() - heard) / 1e9
            if quiet > 2 * bound:
                self.stats.errors["silent"] += 1
                raise SessionEnded(f"no data and no pong for {quiet:.1f} s")
            if quiet > bound and self.state is ClientState.LIVE:
                self._set_state(ClientState.DEGRADED, f"silent for {quiet:.1f} s")
            elif (
                quiet <= bound
                and self.state is ClientState.DEGRADED
                and self.state_reason.startswith("silent")
            ):
                self._set_state(ClientState.LIVE, "answering again")

    def _ponged(self, waiter: asyncio.Future[float]) -> None:
        if not waiter.cancelled() and waiter.exception() is None:
            self.stats.last_pong_ns = time.time_ns()


async def first_to_finish(*coros: Awaitable[None]) -> None:
    """Run side by side; when one returns or raises, cancel the rest and re-raise."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    for task in done:
        error = task.exception()
        if error is not None:
            raise error
