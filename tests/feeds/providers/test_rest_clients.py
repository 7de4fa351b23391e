"""The REST quote clients (L3) against the real simulators, over real sockets.

Prices are compared with the simulators' market model after freezing it, so "exact" means
equal integers at the instrument's scale. Requests are counted on the client's own aiohttp
session with a trace config, independently of the client's bookkeeping.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from feeds.providers.errors import AuthError, ProviderUnavailable, RateLimited
from feeds.providers.fyers.rest import FyersRestClient
from feeds.providers.ratelimit import RateLimiter, Window
from feeds.providers.rest import PartialRateLimited, scaled_prices
from feeds.providers.simulation.run import SimulatorSet, start_simulators, universe_from_masters
from feeds.providers.simulation.universe import SimInstrument
from feeds.providers.ticks import DepthLevel
from feeds.providers.upstox.rest import UpstoxRestClient

SBIN = ("NSE:SBIN", "NSE:SBIN-EQ", "NSE_EQ|INE062A01020")
NIFTY = ("NSE:NIFTY50", "NSE:NIFTY50-INDEX", "NSE_INDEX|Nifty 50")


@pytest.fixture(scope="module")
def universe() -> list[SimInstrument]:
    both = [i for i in universe_from_masters() if i.fyers_symbol and i.upstox_key]
    picked = [i for i in both if i.key in (SBIN[0], NIFTY[0])]
    picked += [i for i in both if i.instrument_type == "OPT"][:60]  # > one greeks call
    picked += [i for i in both if i.instrument_type == "EQ" and i.key != SBIN[0]][:70]
    return picked


@pytest.fixture
async def sims(universe: list[SimInstrument]) -> AsyncIterator[SimulatorSet]:
    sims = await start_simulators(universe, seed=11, ticks_per_second=5, step_interval=0.02)
    yield sims
    await sims.stop()


class Requests:
    """Every request a session starts: (path, query, headers)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, str], dict[str, str]]] = []
        self.trace = aiohttp.TraceConfig()
        self.trace.on_request_start.append(self._on_start)

    async def _on_start(self, session: Any, context: Any, params: Any) -> None:
        self.seen.append((params.url.path, dict(params.url.query), dict(params.headers)))

    def paths(self) -> list[str]:
        return [path for path, _, _ in self.seen]


@pytest.fixture
async def counted() -> AsyncIterator[tuple[aiohttp.ClientSession, Requests]]:
    requests = Requests()
    async with aiohttp.ClientSession(trace_configs=[requests.trace]) as session:
        yield session, requests


def fyers_client(sims: SimulatorSet, token: str | None = None, **kw: Any) -> FyersRestClient:
    token = token or sims.hub.tokens.issue_fyers()
    return FyersRestClient(
        api_url=f"http://127.0.0.1:{sims.fyers.rest_port}", token=lambda: token, **kw
    )


def upstox_client(sims: SimulatorSet, token: str | None = None, **kw: Any) -> UpstoxRestClient:
    token = token or sims.hub.tokens.issue_upstox()
    return UpstoxRestClient(
        api_url=f"http://127.0.0.1:{sims.upstox.rest_port}", token=lambda: token, **kw
    )


def options(sims: SimulatorSet) -> list[SimInstrument]:
    return [i for i in sims.hub.instruments.values() if i.instrument_type == "OPT"]


def permissive() -> RateLimiter:
    return RateLimiter([Window(10_000, 1.0)], name="test")


# --- FYERS -------------------------------------------------------------------------------


async def test_fyers_quotes_equal_the_model_exactly(sims: SimulatorSet) -> None:
    sims.hub.model.market_open = False
    picked = [sims.hub.instruments[SBIN[0]], sims.hub.instruments[NIFTY[0]], options(sims)[0]]
    async with fyers_client(sims, instruments={SBIN[1]: SBIN[0]}) as client:
        ticks = await client.quotes([i.fyers_symbol for i in picked])
    assert set(ticks) == {i.fyers_symbol for i in picked}
    for inst in picked:
        tick, quote = ticks[inst.fyers_symbol], sims.hub.model.quote(inst.key)
        assert (tick.ltp, tick.scale) == (quote.ltp, inst.scale)
        assert (tick.open, tick.high, tick.low) == (quote.open, quote.high, quote.low)
        assert tick.prev_close == quote.prev_close
        assert tick.volume == quote.volume
        assert tick.exchange_ts == quote.exchange_ts // 1000 * 1000  # "tt" is in seconds
        if inst.is_index:
            assert tick.bid is None and tick.ask is None
        else:
            assert (tick.bid, tick.ask, tick.atp) == (quote.bid, quote.ask, quote.atp)
    assert ticks[SBIN[1]].instrument == SBIN[0]


async def test_fyers_quotes_are_chunked_by_50(
    sims: SimulatorSet, counted: tuple[aiohttp.ClientSession, Requests]
) -> None:
    session, requests = counted
    symbols = [i.fyers_symbol for i in sims.hub.instruments.values()][:120]
    client = fyers_client(sims, session=session)
    ticks = await client.quotes(symbols)
    assert set(ticks) == set(symbols)
    assert requests.paths() == ["/data/quotes"] * 3
    sizes = sorted(len(query["symbols"].split(",")) for _, query, _ in requests.seen)
    assert sizes == [20, 50, 50]
    await client.close()
    assert not session.closed  # a caller's session is the caller's to close


async def test_fyers_depth(sims: SimulatorSet) -> None:
    sims.hub.model.market_open = False
    option = options(sims)[0]
    async with fyers_client(sims) as client:
        sbin = await client.depth(SBIN[1])
        opt = await client.depth(option.fyers_symbol)
    quote = sims.hub.model.quote(SBIN[0])
    bids, asks = quote.depth(5)
    assert sbin.bids == bids and sbin.asks == asks and len(bids) == 5
    assert all(isinstance(level, DepthLevel) and level.orders for level in bids + asks)
    assert (sbin.bid, sbin.ask, sbin.bid_qty, sbin.ask_qty) == (
        quote.bid,
        quote.ask,
        quote.bid_qty,
        quote.ask_qty,
    )
    assert (sbin.lower_circuit, sbin.upper_circuit) == (quote.lower_circuit, quote.upper_circuit)
    assert (sbin.total_buy_qty, sbin.total_sell_qty) == (quote.total_buy_qty, quote.total_sell_qty)
    assert (sbin.ltp, sbin.open, sbin.high, sbin.low) == (
        quote.ltp,
        quote.open,
        quote.high,
        quote.low,
    )
    assert (sbin.prev_close, sbin.volume, sbin.atp) == (quote.prev_close, quote.volume, quote.atp)
    assert sbin.oi is None  # cash: oiflag false
    assert opt.oi == sims.hub.model.quote(option.key).oi and opt.oi


async def test_fyers_symbol_tokens_send_the_bare_jwt(
    sims: SimulatorSet, counted: tuple[aiohttp.ClientSession, Requests]
) -> None:
    session, requests = counted
    token = sims.hub.tokens.issue_fyers()
    client = fyers_client(sims, token, session=session)
    valid, invalid = await client.symbol_tokens([SBIN[1], NIFTY[1], "NSE:NOSUCH-EQ"])
    assert valid == {SBIN[1]: "10100000003045", NIFTY[1]: "101000000026000"}
    assert invalid == ["NSE:NOSUCH-EQ"]
    ((_, _, headers),) = requests.seen
    assert headers["Authorization"] == token.split(":", 1)[1]  # FYERS.md §3.2
    await client.quotes([SBIN[1]])
    assert requests.seen[-1][2]["Authorization"] == token  # the data API: "APP_ID:JWT"


async def test_fyers_market_status(sims: SimulatorSet) -> None:
    sims.hub.model.market_open = False
    async with fyers_client(sims) as client:
        status = await client.market_status()
    assert status and {s["status"] for s in status} == {"CLOSED"}


async def test_fyers_unknown_symbols_are_left_out_and_counted(sims: SimulatorSet) -> None:
    async with fyers_client(sims) as client:
        ticks = await client.quotes([SBIN[1], "NSE:NOSUCH-EQ", "NSE:GHOST-EQ"])
    assert set(ticks) == {SBIN[1]}
    assert client.stats.unknown == 2
    assert client.stats.last_unknown == ["NSE:NOSUCH-EQ", "NSE:GHOST-EQ"]


async def test_fyers_budget_refused_before_any_request(
    sims: SimulatorSet, counted: tuple[aiohttp.ClientSession, Requests]
) -> None:
    session, requests = counted
    client = fyers_client(sims, session=session)
    with pytest.raises(RateLimited) as caught:
        await client.quotes([f"NSE:S{n}-EQ" for n in range(20_000)])
    assert "fyers quotes: 400 calls" in str(caught.value) and "200/min" in str(caught.value)
    assert caught.value.retry_after is None  # it never fits: split it
    assert requests.seen == []


async def test_fyers_waits_within_max_wait_then_refuses(
    sims: SimulatorSet, counted: tuple[aiohttp.ClientSession, Requests]
) -> None:
    session, requests = counted
    limiter = RateLimiter([Window(2, 0.5)], name="fyers-test")
    patient = fyers_client(sims, session=session, limiter=limiter, max_wait=1.0)
    hasty = fyers_client(sims, session=session, limiter=limiter, max_wait=0.2)
    await patient.quotes([SBIN[1]])
    await patient.quotes([SBIN[1]])
    with pytest.raises(RateLimited) as caught:  # the window frees up in ~0.5 s > 0.2 s
        await hasty.quotes([SBIN[1]])
    assert 0.2 < (caught.value.retry_after or 0) <= 0.5
    assert len(requests.seen) == 2  # refused before sending
    start = time.monotonic()
    await patient.quotes([SBIN[1]])  # waits for the window, within max_wait
    assert 0.2 < time.monotonic() - start < 1.0
    assert len(requests.seen) == 3


async def test_fyers_server_429_part_way_keeps_what_arrived(sims: SimulatorSet) -> None:
    async with fyers_client(sims, limiter=permissive()) as client:
        for _ in range(9):  # the server's 10/s budget has room for one more request
            await client.quotes([SBIN[1]])
        symbols = [i.fyers_symbol for i in sims.hub.instruments.values()][:100]
        with pytest.raises(PartialRateLimited) as caught:
            await client.quotes(symbols)  # two requests in flight: one answered, one 429
    assert len(caught.value.partial) == 50 and set(caught.value.partial) <= set(symbols)


async def test_fyers_server_429_is_rate_limited(sims: SimulatorSet) -> None:
    async with fyers_client(sims, limiter=permissive()) as client:
        outcomes = await asyncio.gather(
            *(client.quotes([SBIN[1]]) for _ in range(16)), return_exceptions=True
        )
    refused = [o for o in outcomes if isinstance(o, BaseException)]
    assert refused and all(isinstance(o, RateLimited) for o in refused)
    assert "server's rate limit" in str(refused[0]) and "-429" in str(refused[0])
    assert len(outcomes) - len(refused) >= 10


async def test_fyers_bad_token_is_auth_error(sims: SimulatorSet) -> None:
    bad = "SIMAPP-100:eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjF9.c2lnbmF0dXJlLWJhZA"
    async with fyers_client(sims, bad) as client:
        for call in (client.quotes([SBIN[1]]), client.symbol_tokens([SBIN[1]])):
            with pytest.raises(AuthError) as caught:
                await call
            assert "fyers" in str(caught.value) and bad.split(":")[1] not in str(caught.value)


# --- Upstox ------------------------------------------------------------------------------


async def test_upstox_ltp_keyed_by_requested_key_and_exact(sims: SimulatorSet) -> None:
    sims.hub.model.market_open = False
    picked = [sims.hub.instruments[SBIN[0]], sims.hub.instruments[NIFTY[0]], options(sims)[0]]
    async with upstox_client(sims) as client:
        ticks = await client.ltp([i.upstox_key for i in picked])
    # Not the response's "NSE_EQ:SBIN": the key we asked for (instrument_token).
    assert set(ticks) == {SBIN[2], NIFTY[2], picked[2].upstox_key}
    for inst in picked:
        tick, quote = ticks[inst.upstox_key], sims.hub.model.quote(inst.key)
        assert (tick.ltp, tick.scale, tick.prev_close) == (quote.ltp, 2, quote.prev_close)
        assert (tick.volume, tick.ltq) == (quote.volume, quote.ltq)


async def test_upstox_ohlc(sims: SimulatorSet) -> None:
    sims.hub.model.market_open = False
    async with upstox_client(sims) as client:
        daily = (await client.ohlc([SBIN[2]]))[SBIN[2]]
        minute = (await client.ohlc([SBIN[2]], interval="I1"))[SBIN[2]]
    quote = sims.hub.model.quote(SBIN[0])
    assert (daily.ltp, daily.open, daily.high, daily.low) == (
        quote.ltp,
        quote.open,
        quote.high,
        quote.low,
    )
    assert daily.prev_close == quote.prev_close
    assert minute.ltp == quote.ltp and minute.prev_close is None


@pytest.mark.parametrize("version", [2, 3])
async def test_upstox_full_quotes(sims: SimulatorSet, version: int) -> None:
    sims.hub.model.market_open = False
    option = options(sims)[0]
    async with upstox_client(sims) as client:
        ticks = await client.full_quotes([SBIN[2], option.upstox_key], version=version)
    for key, inst in ((SBIN[2], sims.hub.instruments[SBIN[0]]), (option.upstox_key, option)):
        tick, quote = ticks[key], sims.hub.model.quote(inst.key)
        bids, asks = quote.depth(5)
        assert tick.bids == bids and tick.asks == asks
        assert (tick.bid, tick.ask) == (quote.bid, quote.ask)
        assert (tick.ltp, tick.open, tick.high, tick.low, tick.prev_close, tick.atp) == (
            quote.ltp,
            quote.open,
            quote.high,
            quote.low,
            quote.prev_close,
            quote.atp,
        )
        assert (tick.lower_circuit, tick.upper_circuit) == (
            quote.lower_circuit,
            quote.upper_circuit,
        )
        assert (tick.volume, tick.oi) == (quote.volume, quote.oi)
        assert (tick.total_buy_qty, tick.total_sell_qty) == (
            quote.total_buy_qty,
            quote.total_sell_qty,
        )
        assert tick.exchange_ts == quote.exchange_ts and tick.ltt == quote.ltt


async def test_upstox_option_greeks_at_most_50_per_call(
    sims: SimulatorSet, counted: tuple[aiohttp.ClientSession, Requests]
) -> None:
    session, requests = counted
    keys = [i.upstox_key for i in options(sims)]
    assert len(keys) == 60
    client = upstox_client(sims, session=session)
    ticks = await client.option_greeks(keys)
    assert set(ticks) == set(keys)
    assert requests.paths() == ["/v3/market-quote/option-greek"] * 2
    sizes = sorted(len(query["instrument_key"].split(",")) for _, query, _ in requests.seen)
    assert sizes == [10, 50]
    tick = ticks[keys[0]]
    assert tick.oi == sims.hub.model.quote(options(sims)[0].key).oi
    assert all(isinstance(getattr(tick, g), float) for g in ("iv", "delta", "gamma", "theta"))


async def test_upstox_unknown_keys_are_left_out_and_counted(sims: SimulatorSet) -> None:
    async with upstox_client(sims) as client:
        ticks = await client.ltp([SBIN[2], "NSE_EQ|INE000000000"])
        assert set(ticks) == {SBIN[2]}
        assert await client.ltp(["NSE_EQ|INE000000001"]) == {}  # UDAPI1087: none known
    assert client.stats.unknown == 2


async def test_upstox_budget_refused_before_any_request(
    sims: SimulatorSet, counted: tuple[aiohttp.ClientSession, Requests]
) -> None:
    session, requests = counted
    client = upstox_client(sims, session=session)
    with pytest.raises(RateLimited) as caught:
        await client.ltp([f"NSE_EQ|K{n}" for n in range(501 * 500)])
    assert "501 calls" in str(caught.value) and "500/min" in str(caught.value)
    with pytest.raises(RateLimited, match="51 calls"):
        await client.option_greeks([f"NSE_FO|{n}" for n in range(51 * 50)])
    assert requests.seen == []


async def test_upstox_server_429_is_rate_limited(sims: SimulatorSet) -> None:
    async with upstox_client(sims, limiter=permissive()) as client:
        outcomes = await asyncio.gather(
            *(client.ltp([SBIN[2]]) for _ in range(60)), return_exceptions=True
        )
    refused = [o for o in outcomes if isinstance(o, BaseException)]
    assert refused and all(isinstance(o, RateLimited) for o in refused)
    assert "UDAPI10005" in str(refused[0])


async def test_upstox_bad_token_is_auth_error(sims: SimulatorSet) -> None:
    bad = "sim-not-a-token-at-all"
    async with upstox_client(sims, bad) as client:
        for call in (client.ltp([SBIN[2]]), client.feed_authorize()):
            with pytest.raises(AuthError) as caught:
                await call
            assert "upstox" in str(caught.value) and bad not in str(caught.value)


async def test_upstox_feed_authorize_url_works_once(sims: SimulatorSet) -> None:
    async with upstox_client(sims) as client:
        url = await client.feed_authorize()
    assert url.startswith("ws://127.0.0.1:")
    async with connect(url) as ws:
        assert isinstance(await asyncio.wait_for(ws.recv(), 2), bytes)  # market_info
    with pytest.raises(InvalidStatus) as caught:
        async with connect(url):
            pass
    assert caught.value.response.status_code == 403


# --- both --------------------------------------------------------------------------------


async def test_stopped_simulator_is_unavailable(universe: list[SimInstrument]) -> None:
    sims = await start_simulators(universe[:5], seed=1)
    fyers = fyers_client(sims, timeout=1.0)
    upstox = upstox_client(sims, timeout=1.0)
    await fyers.quotes([SBIN[1]])  # a pooled keep-alive connection, too
    await sims.stop()
    for call in (fyers.quotes([SBIN[1]]), upstox.ltp([SBIN[2]])):
        start = time.monotonic()
        with pytest.raises(ProviderUnavailable) as caught:
            await call
        assert time.monotonic() - start < 1.0
        assert caught.value.__context__ is None  # nothing carrying the request hangs off it
    await fyers.close()
    await upstox.close()


@pytest.mark.parametrize("provider", ["fyers", "upstox"])
async def test_silent_server_times_out(provider: str) -> None:
    done = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)  # take the request, never answer
        await done.wait()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    if provider == "fyers":
        client: Any = FyersRestClient(api_url=url, token=lambda: "A:B", timeout=0.3)
        call = client.quotes([SBIN[1]])
    else:
        client = UpstoxRestClient(api_url=url, token=lambda: "token", timeout=0.3)
        call = client.ltp([SBIN[2]])
    start = time.monotonic()
    with pytest.raises(ProviderUnavailable, match=r"no answer within 0\.3 s"):
        await call
    assert 0.25 < time.monotonic() - start < 1.0
    await client.close()
    done.set()
    server.close()
    await server.wait_closed()


async def test_owned_session_is_closed(sims: SimulatorSet) -> None:
    async with upstox_client(sims) as client:
        await client.ltp([SBIN[2]])
        session = client.session
        assert session is not None and not session.closed
    assert session.closed


def test_prices_keep_every_decimal() -> None:
    # A currency price needs 4 decimals: the shared scale rises, nothing is rounded away.
    values, scale = scaled_prices([Decimal("83.2525"), Decimal("83.25"), None], 2)
    assert (values, scale) == ([832525, 832500, None], 4)
    assert scaled_prices([Decimal(str(426.85)), Decimal(str(0.1 + 0.2))], 2)[1] == 8
