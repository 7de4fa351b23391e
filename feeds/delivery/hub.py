"""The fan-out inside one ASGI process: tick batches in, per-client conflating queues out.

Each process holds one ``FanoutHub``. It is the only member of the channel-layer group the
feed workers publish to, so a batch crosses Redis once per process (one PUBLISH, one
SUBSCRIBE) and is decoded once, however many clients the process serves
(shared/notes/channels-layer-facts.md §1-2: per-consumer group membership costs one Redis
message and one deserialisation per consumer, and tops out near a thousand messages/s).

The hub keeps an index symbol -> clients and, for each tick, renders the JSON once per mode
the clients asked for; each client's ``ClientFeed`` queues it (conflating per symbol) and a
writer task per client sends whatever is pending whenever its socket can take more. A slow
socket slows only its own writer; the hub never waits on a client.

No Django: the channel layer and the clock are handed in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from feeds.delivery.flow import SendGate
from feeds.delivery.protocol import Mode, Rendered, update_message
from feeds.delivery.queue import ConflatingQueue, QueueFull
from monitoring.perf import LatencyHistogram

logger = logging.getLogger(__name__)

TICKS_GROUP = "market.ticks"
BATCH_TYPE = "ticks.batch"

SendText = Callable[[str], Awaitable[None]]


class TokenBucket:
    """``rate`` requests per second with bursts up to ``burst``; time is passed in."""

    def __init__(self, *, rate: float, burst: float | None = None, now: float = 0.0) -> None:
        self.rate = max(rate, 1e-9)
        self.burst = burst if burst is not None else max(rate, 1.0)
        self._tokens = self.burst
        self._at = now

    def take(self, now: float) -> float:
        """0 when a request may go ahead, else how many seconds until one may."""
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate


class DeliveryStats:
    """What this process's writers sent, for the performance monitor: latency from the hub's
    receipt and from the exchange's stamp to the moment an update went to the socket, and
    the counts. Shared by every ``ClientFeed`` of a hub, so it outlives the clients."""

    __slots__ = ("conflated", "exchange", "items_sent", "messages_sent", "receive")

    def __init__(self) -> None:
        self.receive = LatencyHistogram()
        self.exchange: dict[str, LatencyHistogram] = {}  # per provider
        self.messages_sent = 0
        self.items_sent = 0
        self.conflated = 0

    def sent(self, items: list[QueueItem], conflated: int, now_ns: int) -> None:
        self.messages_sent += 1
        self.items_sent += len(items)
        self.conflated += conflated
        # Another host's clock may run a little ahead: a latency is never below zero.
        self.receive.observe_many(
            [(now_ns - r) / 1e6 if now_ns > r else 0.0 for _, _, r, _, _ in items if r]
        )
        stamped = [(p, e) for _, _, _, e, p in items if e]
        if not stamped:
            return
        now_ms = now_ns / 1e6
        for provider in {p for p, _ in stamped}:
            histogram = self.exchange.get(provider)
            if histogram is None:
                histogram = self.exchange[provider] = LatencyHistogram()
            histogram.observe_many(
                [now_ms - e if now_ms > e else 0.0 for p, e in stamped if p == provider]
            )

    def snapshot(self) -> dict[str, Any]:
        return {
            "messages_sent": self.messages_sent,
            "items_sent": self.items_sent,
            "conflated": self.conflated,
            "latency_receive": self.receive.snapshot(),
            "latency_exchange": {p: h.snapshot() for p, h in self.exchange.items()},
        }


# What a client's queue holds per symbol: (seq, JSON fragment, received ns, exchange ms,
# provider); the times feed ``DeliveryStats`` when it is sent.
QueueItem = tuple[int, str, int, int, str]


@dataclass(frozen=True, slots=True)
class Limits:
    subscriptions: int
    requests_per_second: int
    updates_per_second: int
    connections: int

    def as_dict(self) -> dict[str, int]:
        return {
            "subscriptions": self.subscriptions,
            "requests_per_second": self.requests_per_second,
            "updates_per_second": self.updates_per_second,
            "connections": self.connections,
        }


@dataclass(slots=True)
class Subscription:
    mode: Mode
    seq: int = 0  # updates the hub had for this symbol on this connection


@dataclass
class UserState:
    """What one user holds in this process, over all of its connections."""

    limits: Limits
    bucket: TokenBucket
    feeds: set[ClientFeed] = field(default_factory=set)

    @property
    def subscriptions(self) -> int:
        return sum(len(f.subscriptions) for f in self.feeds)


class ClientFeed:
    """One client's subscriptions, its conflating queue and its writer."""

    def __init__(
        self,
        *,
        send_text: SendText,
        gate: SendGate | None = None,
        capacity: int,
        max_lag: float,
        patience: float,
        updates_per_second: float,
        clock: Callable[[], float] = time.monotonic,
        label: str = "",
        on_too_slow: Callable[[], Awaitable[None]] | None = None,
        stats: DeliveryStats | None = None,
    ) -> None:
        self.send_text = send_text
        self.stats = stats or DeliveryStats()  # the hub hands its own in ``attach``
        self.on_too_slow = on_too_slow  # the consumer closes the socket with 4008
        self.gate = gate or SendGate()
        self.clock = clock
        self.label = label
        self.subscriptions: dict[str, Subscription] = {}
        # Each symbol holds at most one pending update, so capacity = subscription limit.
        self.queue: ConflatingQueue[QueueItem] = ConflatingQueue(
            capacity=capacity, max_lag=max_lag, patience=patience
        )
        self.min_interval = 1.0 / updates_per_second if updates_per_second > 0 else 0.0
        self.messages_sent = 0
        self.items_sent = 0
        self.dropped = 0
        self.closed = False
        self._wake = asyncio.Event()
        self._holds = 0
        self._next_send = 0.0
        self._writer: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<ClientFeed {self.label} {len(self.subscriptions)} symbols>"

    # --- fed by the hub --------------------------------------------------------------------

    def offer(self, rendered: Rendered, now: float) -> None:
        sub = self.subscriptions.get(rendered.key)
        if sub is None:
            return
        sub.seq += 1
        try:
            item = (sub.seq, rendered.fragment(sub.mode), rendered.recv_ns, rendered.exchange_ms,
                    rendered.provider)  # fmt: skip
            self.queue.put(rendered.key, item, now)
        except QueueFull:  # only if the limit was lowered under a live connection
            self.dropped += 1
            return
        self._wake.set()

    # --- subscriptions ---------------------------------------------------------------------

    def forget(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.subscriptions.pop(key, None)
            self.queue.discard(key)  # an unsent update must not follow the unsubscribe

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Send nothing from the queue meanwhile (the snapshot must go out first)."""
        self._holds += 1
        try:
            yield
        finally:
            self._holds -= 1
            if self._holds == 0 and len(self.queue):
                self._wake.set()

    # --- the writer ------------------------------------------------------------------------

    def start(self) -> None:
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(
                self._write(), name=f"writer {self.label}"
            )

    async def stop(self) -> None:
        self.closed = True
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer

    async def _write(self) -> None:
        while not self.closed:
            await self._wake.wait()
            self._wake.clear()
            if self._holds:
                continue  # ``held`` wakes us again on release
            await self.gate.wait()  # the socket's buffer has room (Daphne)
            delay = self._next_send - self.clock()
            if delay > 0:  # the client's updates-per-second limit: later, conflated
                await asyncio.sleep(delay)
            if self._holds or self.closed:
                continue
            now = self.clock()
            batch = self.queue.take(now)
            if not batch.messages:
                continue
            self._next_send = now + self.min_interval
            text = update_message(batch.messages, conflated=batch.conflated,
                                  ts_ms=time.time_ns() / 1e6)  # fmt: skip
            try:
                await self.send_text(text)  # under Uvicorn this waits while the buffer is full
            except Exception:  # the socket went away; the consumer's disconnect cleans up
                logger.debug("delivery: send to %s failed", self.label, exc_info=True)
                return
            self.messages_sent += 1
            self.items_sent += len(batch.messages)
            self.stats.sent(batch.messages, batch.conflated, time.time_ns())


class FanoutHub:
    """Tick batches from the feed workers to this process's clients."""

    def __init__(
        self,
        *,
        max_instruments: int = 200_000,
        clock: Callable[[], float] = time.monotonic,
        preference: Iterable[str] = ("fyers", "upstox"),
        standby: float = 2.0,
    ) -> None:
        self.clock = clock
        self.max_instruments = max_instruments
        # Both providers carry critical instruments; clients are sent the first provider in
        # ``preference`` that ticked within ``standby`` seconds (both stay in ``latest``).
        self.preference = {p: rank for rank, p in enumerate(preference)}
        self.standby_ns = int(standby * 1e9)
        self.standby_held = 0
        # L1 of this process: key -> provider -> record, as the workers last published it.
        self.latest: dict[str, dict[str, dict[str, Any]]] = {}
        self.index: dict[str, set[ClientFeed]] = {}
        self.users: dict[Any, UserState] = {}
        self.batches = 0
        self.records = 0
        self.deliveries = 0
        self.malformed = 0
        self.dropped_instruments = 0
        self.slow_closed = 0
        self.last_batch_at: float | None = None
        self.stats = DeliveryStats()  # every client's sends, for the performance monitor
        # Fault drill (MDHUB_FAULT_BATCH_DELAY_MS): each batch costs this long to take in, as
        # on a receiver far from Redis; the performance monitor's reactions are tested on it.
        self.batch_delay = 0.0

    # --- clients ---------------------------------------------------------------------------

    def user_state(self, user_id: Any, limits: Limits) -> UserState:
        state = self.users.get(user_id)
        if state is None:
            rate = limits.requests_per_second
            state = self.users[user_id] = UserState(
                limits, TokenBucket(rate=rate, burst=rate * 2, now=self.clock())
            )
        else:
            state.limits = limits  # an admin may have changed them since
        return state

    def attach(self, user_id: Any, feed: ClientFeed) -> None:
        feed.stats = self.stats
        self.users[user_id].feeds.add(feed)
        feed.start()

    async def detach(self, user_id: Any, feed: ClientFeed) -> None:
        self.unsubscribe(feed, list(feed.subscriptions))
        state = self.users.get(user_id)
        if state is not None:
            state.feeds.discard(feed)
            if not state.feeds:
                del self.users[user_id]
        await feed.stop()

    def subscribe(self, feed: ClientFeed, keys: Iterable[str], mode: Mode) -> None:
        for key in keys:
            sub = feed.subscriptions.get(key)
            if sub is None:
                feed.subscriptions[key] = Subscription(mode)
                self.index.setdefault(key, set()).add(feed)
            else:
                sub.mode = mode

    def unsubscribe(self, feed: ClientFeed, keys: Iterable[str]) -> list[str]:
        gone = [k for k in keys if k in feed.subscriptions]
        for key in gone:
            holders = self.index.get(key)
            if holders is not None:
                holders.discard(feed)
                if not holders:
                    del self.index[key]
        feed.forget(gone)
        return gone

    def feeds(self) -> list[ClientFeed]:
        return [f for state in self.users.values() for f in state.feeds]

    def perf_snapshot(self) -> dict[str, Any]:
        """Counters since start and the state now, for the performance monitor."""
        feeds = self.feeds()
        return {
            "clients": len(feeds),
            "users": len(self.users),
            "subscriptions": sum(len(f.subscriptions) for f in feeds),
            "batches": self.batches,
            "records": self.records,
            "deliveries": self.deliveries,
            "slow_closed": self.slow_closed,
            "malformed": self.malformed,
            **self.stats.snapshot(),
        }

    # --- ticks -----------------------------------------------------------------------------

    def l1(self, key: str) -> Mapping[str, dict[str, Any]]:
        return self.latest.get(key, {})

    def dispatch(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Store each record as its instrument's latest and queue it for the subscribers."""
        now = self.clock()
        delivered = 0
        latest = self.latest
        index = self.index
        for record in records:
            try:
                key = record["key"]
                provider = record["provider"]
            except (KeyError, TypeError):
                self.malformed += 1
                continue
            providers = latest.get(key)
            if providers is None:
                if len(latest) >= self.max_instruments:
                    self.dropped_instruments += 1  # bounded; counted, shown in monitoring
                    continue
                providers = latest[key] = {}
            providers[provider] = record  # type: ignore[assignment]
            self.records += 1
            holders = index.get(key)
            if not holders:
                continue
            if self._standing_by(provider, record, providers):
                self.standby_held += 1
                continue
            rendered = Rendered(key, provider, record)
            for feed in holders:
                feed.offer(rendered, now)
            delivered += len(holders)
        self.deliveries += delivered
        return delivered

    def _standing_by(
        self, provider: str, record: Mapping[str, Any], providers: Mapping[str, Mapping[str, Any]]
    ) -> bool:
        """True for a tick of an instrument carried by two providers whose preferred one has
        ticked lately: clients follow one source at a time, not two interleaved (the prices
        of two feeds differ slightly and would flicker), and switch when it falls silent."""
        rank = self.preference.get(provider, len(self.preference))
        received = record.get("recv_ns", 0)
        for other, other_record in providers.items():
            if other == provider or self.preference.get(other, len(self.preference)) >= rank:
                continue
            if received - other_record.get("recv_ns", 0) < self.standby_ns:
                return True
        return False

    def receive_batch(self, message: Mapping[str, Any]) -> int:
        """A channel-layer message from a feed worker's publisher."""
        if message.get("type") != BATCH_TYPE:
            return 0
        try:
            records = orjson.loads(message["data"])
            if not isinstance(records, list):
                raise TypeError("a batch is a list of records")
        except (KeyError, TypeError, orjson.JSONDecodeError):
            self.malformed += 1
            logger.warning("delivery: malformed tick batch dropped")
            return 0
        self.batches += 1
        self.last_batch_at = self.clock()
        return self.dispatch(records)

    async def run(self, layer: Any, *, group: str = TICKS_GROUP) -> None:
        """Receive the workers' batches until cancelled."""
        channel = await layer.new_channel("fanout.")
        await layer.group_add(group, channel)
        try:
            while True:
                message = await layer.receive(channel)
                if self.batch_delay:
                    await asyncio.sleep(self.batch_delay)
                try:
                    self.receive_batch(message)
                except Exception:  # one bad batch must not stop delivery
                    logger.exception("delivery: tick batch failed")
        finally:
            with contextlib.suppress(Exception):
                await layer.group_discard(group, channel)

    async def sweep(self, *, every: float = 0.5) -> None:
        """Close the clients that stayed too far behind for too long (their consumers do)."""
        while True:
            await asyncio.sleep(every)
            now = self.clock()
            for feed in self.feeds():
                if feed.closed or not feed.queue.too_slow(now):
                    continue
                feed.closed = True
                self.slow_closed += 1
                if feed.on_too_slow is not None:
                    try:
                        await feed.on_too_slow()
                    except Exception:
                        logger.exception("delivery: closing a slow client failed")
