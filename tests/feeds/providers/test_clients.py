"""Our socket clients against our simulators, end to end over real sockets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from feeds.providers.backoff import Backoff
from feeds.providers.base import ClientState, ConnectionSlots, FeedClient
from feeds.providers.errors import CapExceeded
from feeds.providers.fyers.client import FyersClient
from feeds.providers.fyers.rest import FyersRestClient
from feeds.providers.simulation.faults import DataFault, FaultRule
from feeds.providers.simulation.run import SimulatorSet, start_simulators, universe_from_masters
from feeds.providers.ticks import Tick
from feeds.providers.upstox.client import UpstoxClient
from feeds.providers.upstox.rest import UpstoxRestClient

KEYS = ("NSE:SBIN", "NSE:RELIANCE", "NSE:NIFTY50", "NSE:NIFTYBANK")


@pytest.fixture(scope="module")
def universe():
    everything = universe_from_masters()
    picked = [i for i in everything if i.key in KEYS]
    picked += [i for i in everything if i.instrument_type == "EQ" and i.key not in KEYS][:40]
    return picked


@pytest.fixture
async def sims(universe) -> AsyncIterator[SimulatorSet]:
    sims = await start_simulators(universe, seed=7, ticks_per_second=20, step_interval=0.02)
    yield sims
    await sims.stop()


class Collector:
    def __init__(self) -> None:
        self.ticks: list[Tick] = []
        self.states: list[tuple[ClientState, str]] = []

    def __call__(self, ticks: list[Tick]) -> None:
        self.ticks.extend(ticks)

    def on_state(self, client: FeedClient, state: ClientState, reason: str) -> None:
        self.states.append((state, reason))

    def latest(self, symbol: str) -> Tick:
        return next(t for t in reversed(self.ticks) if t.symbol == symbol)

    def count(self, symbol: str) -> int:
        return sum(1 for t in self.ticks if t.symbol == symbol)


async def until(predicate: Callable[[], bool], within: float = 5.0) -> float:
    """Seconds until ``predicate()`` holds; fails the test past the timeout."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > within:
            pytest.fail(f"condition not met within {within} s")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


def client_options(sims: SimulatorSet, collector: Collector, token: list[str]) -> dict[str, Any]:
    return {
        "token": lambda: token[0],
        "on_ticks": collector,
        "on_state": collector.on_state,
        "ping_interval": 0.3,
        "ping_timeout": 0.6,
        "backoff": Backoff(base=0.05, cap=0.2),
        "auth_backoff": Backoff(base=0.1, cap=0.3),
    }


def fyers_client(sims: SimulatorSet, collector: Collector, token: list[str], **kw: Any):
    instruments = {i.fyers_symbol: i.key for i in sims.hub.instruments.values()}
    rest = FyersRestClient(
        api_url=f"http://127.0.0.1:{sims.fyers.rest_port}", token=lambda: token[0]
    )
    options = {**client_options(sims, collector, token), "symbol_cap": 200, **kw}
    return FyersClient(
        name="fyers:test:0",
        socket_url=f"ws://127.0.0.1:{sims.fyers.ws_port}/hsm/v1-5/prod",
        rest=rest,
        instruments=instruments,
        **options,
    )


def upstox_client(sims: SimulatorSet, collector: Collector, token: list[str], **kw: Any):
    instruments = {i.upstox_key: i.key for i in sims.hub.instruments.values()}
    rest = UpstoxRestClient(
        api_url=f"http://127.0.0.1:{sims.upstox.rest_port}", token=lambda: token[0]
    )
    options = {**client_options(sims, collector, token), "symbol_cap": 5000, **kw}
    return UpstoxClient(
        name="upstox:test:0",
        feed_url=f"ws://127.0.0.1:{sims.upstox.ws_port}/v3/feed/market-data-feed",
        rest=rest,
        instruments=instruments,
        **options,
    )


SUBSCRIPTIONS = {
    "fyers": {"NSE:SBIN-EQ": "depth", "NSE:NIFTY50-INDEX": "quote", "NSE:RELIANCE-EQ": "quote"},
    "upstox": {"NSE_EQ|INE062A01020": "depth", "NSE_INDEX|Nifty 50": "quote",
               "NSE_EQ|INE002A01018": "ltp"},
}  # fmt: skip
BUILDERS = {"fyers": fyers_client, "upstox": upstox_client}


async def running_client(sims: SimulatorSet, provider: str) -> tuple[Any, Collector, list[str]]:
    collector, token = Collector(), [sims.hub.tokens.issue(provider)]
    client = BUILDERS[provider](sims, collector, token)
    await client.subscribe(SUBSCRIPTIONS[provider])
    client.start()
    await asyncio.wait_for(client.wait_live(), 5)
    return client, collector, token


async def stop_client(client: Any) -> None:
    await client.close()
    await client.rest.close()


@pytest.fixture
async def fyers(sims) -> AsyncIterator[tuple[FyersClient, Collector, list[str]]]:
    running = await running_client(sims, "fyers")
    yield running
    await stop_client(running[0])


@pytest.fixture
async def upstox(sims) -> AsyncIterator[tuple[UpstoxClient, Collector, list[str]]]:
    running = await running_client(sims, "upstox")
    yield running
    await stop_client(running[0])


@pytest.fixture(params=["fyers", "upstox"])
async def feed(sims, request) -> AsyncIterator[tuple[Any, Collector, list[str], Any]]:
    client, collector, token = await running_client(sims, request.param)
    yield client, collector, token, getattr(sims, request.param)
    await stop_client(client)


async def freeze(sims: SimulatorSet) -> None:
    """Stop the market and let the last frames arrive, so values can be compared exactly."""
    sims.hub.model.market_open = False
    await asyncio.sleep(0.3)


# --- exact values ------------------------------------------------------------------------


async def test_fyers_ticks_carry_the_simulators_exact_values(sims, fyers):
    client, collector, _ = fyers
    await until(lambda: collector.count("NSE:SBIN-EQ") > 3 and collector.count("NSE:NIFTY50-INDEX"))
    await freeze(sims)

    quote = sims.hub.model.quote("NSE:SBIN")
    tick = collector.latest("NSE:SBIN-EQ")
    assert tick.instrument == "NSE:SBIN"
    assert (tick.ltp, tick.scale) == (quote.ltp, quote.instrument.scale)
    assert (tick.bid, tick.ask, tick.bid_qty, tick.ask_qty) == (
        quote.bid, quote.ask, quote.bid_qty, quote.ask_qty,
    )  # fmt: skip
    assert (tick.volume, tick.ltq, tick.oi) == (quote.volume, quote.ltq, quote.oi)
    assert (tick.open, tick.high, tick.low, tick.prev_close) == (
        quote.open, quote.high, quote.low, quote.prev_close,
    )  # fmt: skip
    assert (tick.lower_circuit, tick.upper_circuit) == (quote.lower_circuit, quote.upper_circuit)
    assert tick.exchange_ts // 1000 == quote.exchange_ts // 1000  # FYERS sends seconds
    bids, asks = quote.depth(5)
    assert [(b.price, b.qty, b.orders) for b in tick.bids] == [tuple(b) for b in bids]
    assert [(a.price, a.qty, a.orders) for a in tick.asks] == [tuple(a) for a in asks]

    index = collector.latest("NSE:NIFTY50-INDEX")
    nifty = sims.hub.model.quote("NSE:NIFTY50")
    assert (index.ltp, index.prev_close, index.high, index.low) == (
        nifty.ltp, nifty.prev_close, nifty.high, nifty.low,
    )  # fmt: skip
    assert client.state is ClientState.LIVE
    assert client.stats.ticks == len(collector.ticks)


async def test_upstox_ticks_carry_the_simulators_exact_values(sims, upstox):
    client, collector, _ = upstox
    await until(lambda: collector.count("NSE_EQ|INE062A01020") > 3)
    await freeze(sims)

    quote = sims.hub.model.quote("NSE:SBIN")
    tick = collector.latest("NSE_EQ|INE062A01020")
    assert tick.instrument == "NSE:SBIN"
    assert (tick.ltp, tick.bid, tick.ask, tick.volume) == (
        quote.ltp,
        quote.bid,
        quote.ask,
        quote.volume,
    )
    assert (tick.open, tick.high, tick.low, tick.prev_close) == (
        quote.open, quote.high, quote.low, quote.prev_close,
    )  # fmt: skip
    assert tick.ltt == quote.ltt
    bids, _ = quote.depth(5)
    assert [(b.price, b.qty) for b in tick.bids] == [(b.price, b.qty) for b in bids]

    ltp_only = collector.latest("NSE_EQ|INE002A01018")
    reliance = sims.hub.model.quote("NSE:RELIANCE")
    assert (ltp_only.ltp, ltp_only.prev_close) == (reliance.ltp, reliance.prev_close)
    assert ltp_only.bids is None  # ltpc mode carries no book
    assert client.market_open is True and client.segment_status["NSE_EQ"] == "NORMAL_OPEN"


# --- reconnects --------------------------------------------------------------------------


@pytest.mark.parametrize("clean", [True, False], ids=["clean-close", "unclean-close"])
async def test_fyers_reconnects_after_a_close_and_resubscribes(sims, fyers, clean):
    client, collector, _ = fyers
    await until(lambda: collector.count("NSE:SBIN-EQ") > 0)
    assert await sims.fyers.fault_close("all", clean=clean) == 1
    await until(lambda: client.stats.reconnects == 1 and client.state is ClientState.LIVE)
    before = len(collector.ticks)
    wanted = {"NSE:SBIN-EQ", "NSE:RELIANCE-EQ"}
    await until(lambda: {t.symbol for t in collector.ticks[before:]} >= wanted)
    assert ClientState.DOWN in [s for s, _ in collector.states]


@pytest.mark.parametrize("clean", [True, False], ids=["clean-close", "unclean-close"])
async def test_upstox_reconnects_after_a_close_and_resubscribes(sims, upstox, clean):
    client, collector, _ = upstox
    await until(lambda: collector.count("NSE_EQ|INE062A01020") > 0)
    await sims.upstox.fault_close("all", clean=clean, code=1000 if clean else None)
    await until(lambda: client.stats.reconnects == 1 and client.state is ClientState.LIVE)
    before = len(collector.ticks)
    await until(lambda: "NSE_EQ|INE062A01020" in {t.symbol for t in collector.ticks[before:]})


async def test_a_stalled_socket_is_detected_and_replaced(feed):
    client, collector, _, simulator = feed
    await until(lambda: len(collector.ticks) > 5)
    simulator.fault_stall("all", 30)
    # Keepalive pings every 0.3 s, 0.6 s to answer: the frozen peer is dropped quickly.
    elapsed = await until(lambda: client.stats.reconnects == 1 and client.state is ClientState.LIVE)
    assert elapsed < 3
    before = len(collector.ticks)
    await until(lambda: len(collector.ticks) > before + 5)


async def watched_client(sims: SimulatorSet, provider: str) -> tuple[Any, Collector]:
    """A live, ticking client whose only liveness check is the silence watchdog (the
    library's keepalive is off): bound 0.4 s, on data or pong."""
    collector, token = Collector(), [sims.hub.tokens.issue(provider)]
    client = BUILDERS[provider](sims, collector, token, ping_interval=None, silence_timeout=0.4)
    await client.subscribe(SUBSCRIPTIONS[provider])
    client.start()
    await asyncio.wait_for(client.wait_live(), 5)
    await until(lambda: len(collector.ticks) > 5)
    return client, collector


@pytest.mark.parametrize("provider", ["fyers", "upstox"])
async def test_silence_marks_a_frozen_socket_degraded_then_reconnects(sims, provider):
    client, _ = await watched_client(sims, provider)
    try:
        getattr(sims, provider).fault_stall("all", 30)
        elapsed = await until(lambda: client.state is ClientState.DEGRADED, within=2)
        assert 0.2 < elapsed < 1.0  # the bound is 0.4 s; the last pong may be 0.2 s old
        assert client.state_reason.startswith("silent")
        await until(lambda: client.stats.reconnects == 1 and client.state is ClientState.LIVE)
        assert client.stats.errors["silent"] == 1
    finally:
        await stop_client(client)


@pytest.mark.parametrize("provider", ["fyers", "upstox"])
async def test_a_quiet_socket_that_answers_pings_stays_live(sims, provider):
    client, collector = await watched_client(sims, provider)
    try:
        sims.hub.model.market_open = False  # no more data; the server still answers pings
        await asyncio.sleep(0.3)
        quiet_since, pongs_before = len(collector.ticks), client.stats.last_pong_ns
        await asyncio.sleep(1.5)  # well past the 0.4 s bound
        assert len(collector.ticks) == quiet_since
        assert client.stats.last_pong_ns > pongs_before
        assert client.state is ClientState.LIVE
        assert client.stats.reconnects == 0
    finally:
        await stop_client(client)


async def test_an_expired_token_means_auth_failure_until_a_new_token(sims, feed):
    client, collector, token, simulator = feed
    await simulator.fault_expire_tokens()
    await until(lambda: client.state is ClientState.DOWN and "auth failed" in client.state_reason)
    assert client.stats.errors["auth"] >= 1
    token[0] = sims.hub.tokens.issue(client.provider)  # the operator rotates the token
    await until(lambda: client.state is ClientState.LIVE, within=5)
    before = len(collector.ticks)
    await until(lambda: len(collector.ticks) > before + 3)


# --- subscriptions and caps --------------------------------------------------------------


async def test_caps_are_refused_locally_before_anything_is_sent(sims):
    collector, token = Collector(), [sims.hub.tokens.issue_fyers()]
    client = fyers_client(sims, collector, token, symbol_cap=2)
    client.start()
    await asyncio.wait_for(client.wait_live(), 5)
    await client.subscribe({"NSE:SBIN-EQ": "quote", "NSE:RELIANCE-EQ": "quote"})
    with pytest.raises(CapExceeded, match="symbols per connection: limit 2, requested 3"):
        await client.subscribe({"NSE:NIFTY50-INDEX": "quote"})
    await asyncio.sleep(0.2)
    assert set(client.subscriptions) == {"NSE:SBIN-EQ", "NSE:RELIANCE-EQ"}
    (conn,) = sims.fyers.connections.values()
    assert conn.protocol.summary()["topics"] == 2  # the refused symbol never reached it
    await client.close()
    await client.rest.close()

    u_collector, u_token = Collector(), [sims.hub.tokens.issue_upstox()]
    limits = {"ltpc": {"individual": 2, "combined": 1}, "option_greeks": {"individual": 1,
              "combined": 1}, "full": {"individual": 1, "combined": 1},
              "full_d30": {"individual": 1, "combined": 1}}  # fmt: skip
    upstox = upstox_client(sims, u_collector, u_token, mode_limits=limits)
    await upstox.subscribe({"NSE_EQ|INE062A01020": "ltp", "NSE_EQ|INE002A01018": "ltp"})
    with pytest.raises(CapExceeded):
        await upstox.subscribe({"NSE_INDEX|Nifty 50": "quote"})  # would mix modes: combined 1
    assert len(upstox.subscriptions) == 2
    await upstox.rest.close()


async def test_unsubscribe_stops_only_that_symbol(sims, fyers):
    client, collector, _ = fyers
    await until(lambda: collector.count("NSE:RELIANCE-EQ") > 0)
    await client.unsubscribe(["NSE:RELIANCE-EQ"])
    await asyncio.sleep(0.2)  # frames already in flight may still carry it
    mark = len(collector.ticks)
    await until(lambda: collector.count("NSE:SBIN-EQ") > 0 and len(collector.ticks) > mark + 10)
    assert all(t.symbol != "NSE:RELIANCE-EQ" for t in collector.ticks[mark:])
    assert client.stats.errors["unknown_topic"] == 0  # no frame was spoiled


async def test_invalid_symbols_are_reported_and_not_held(sims, fyers):
    client, collector, _ = fyers
    await client.subscribe({"NSE:NOSUCH-EQ": "quote"})
    before = len(collector.ticks)
    await until(lambda: len(collector.ticks) > before + 3)  # the others keep ticking
    assert "NSE:NOSUCH-EQ" in client.invalid_symbols
    assert "NSE:NOSUCH-EQ" not in client.subscriptions
    assert client.stats.errors["invalid_symbol"] == 1
    assert client.state is ClientState.LIVE


GARBAGE = {
    "fyers": bytes.fromhex("00ff06000000010005") + b"\x55" * 7,  # a data frame cut short
    "upstox": b"\xff\x00\x13",  # not protobuf
}


async def test_a_bad_frame_is_counted_and_nothing_else_changes(feed):
    client, collector, _, simulator = feed
    await until(lambda: len(collector.ticks) > 3)
    symbols = set(client.subscriptions)
    errors_before = sum(client.stats.errors.values())
    simulator.fault_inject("all", GARBAGE[client.provider])
    await until(lambda: sum(client.stats.errors.values()) > errors_before)
    before = len(collector.ticks)
    await until(lambda: len(collector.ticks) > before + 5)
    assert client.state is ClientState.LIVE and client.stats.reconnects == 0
    assert set(client.subscriptions) == symbols


async def test_upstox_can_connect_through_the_authorize_endpoint(sims):
    collector, token = Collector(), [sims.hub.tokens.issue_upstox()]
    client = upstox_client(sims, collector, token, use_authorize_endpoint=True)
    await client.subscribe({"NSE_EQ|INE062A01020": "ltp"})
    client.start()
    await asyncio.wait_for(client.wait_live(), 5)
    await until(lambda: collector.count("NSE_EQ|INE062A01020") > 0)
    await client.close()
    await client.rest.close()


async def test_connections_per_account_are_refused_locally(sims):
    slots = ConnectionSlots("upstox:primary", 2)
    clients = []
    for n in range(3):
        collector, token = Collector(), [sims.hub.tokens.issue_upstox()]
        client = upstox_client(sims, collector, token, slots=slots)
        client.name = f"upstox:primary:{n}"
        clients.append(client)
    clients[0].start()
    clients[1].start()
    with pytest.raises(CapExceeded, match="connections per account: limit 2, requested 3"):
        clients[2].start()
    await clients[0].close()
    clients[2].start()  # a slot was given back
    for client in clients[1:]:
        await client.wait_live()
        await client.close()
    for client in clients:
        await client.rest.close()


async def test_a_labelled_data_fault_reaches_the_client_as_labelled(sims, feed):
    client, collector, _, _ = feed
    key = "NSE:SBIN"
    symbol = "NSE:SBIN-EQ" if client.provider == "fyers" else "NSE_EQ|INE062A01020"
    await until(lambda: collector.count(symbol) > 0)
    sims.hub.faults.add(
        FaultRule(kind=DataFault.ZERO, provider=client.provider, keys=frozenset({key}), count=1)
    )
    await until(lambda: any(t.symbol == symbol and t.ltp == 0 for t in collector.ticks))
    (label,) = [lb for lb in sims.hub.faults.labels if lb.kind == "zero"]
    assert (label.provider, label.key, label.sent_ltp) == (client.provider, key, 0)
    assert label.true_ltp > 0
