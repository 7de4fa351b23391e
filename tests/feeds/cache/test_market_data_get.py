"""``market_data_get`` with the real parts: Redis for L2, both simulators' REST for L3 (over
real sockets, through the rate-limited clients), ``LastTick`` rows for L4, the registered
worker table for L1.

Every test sets ``REDIS_URL`` itself (empty, or the private redis-server), so the embedded
and the Redis passes of the suite run the same walk.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from asgiref.sync import sync_to_async
from django.utils import timezone

from feeds import selectors, services
from feeds.cache import l1
from feeds.cache.l1 import l1_register, latest_ticks_reader
from feeds.cache.l2 import RedisLatestStore, tick_record
from feeds.models import Instrument, PoolAssignment, ProviderAccount
from feeds.pool.latest import LatestTicks
from feeds.providers.fyers.simulator import FyersSimulator
from feeds.providers.simulation.run import SimulatorSet, start_simulators
from feeds.providers.simulation.universe import sim_instrument_from
from feeds.providers.ticks import ProviderName, Tick
from feeds.providers.upstox.simulator import UpstoxSimulator
from feeds.selectors import (
    cache_stats,
    instruments_for_simulation,
    market_data_close,
    market_data_get,
)

pytestmark = pytest.mark.django_db(transaction=True)

SBIN, RELIANCE, INFY = "NSE:SBIN", "NSE:RELIANCE", "NSE:INFY"


@pytest.fixture(autouse=True)
async def fresh_process_state(settings, monkeypatch) -> AsyncIterator[None]:
    """No Redis unless a test asks; no L1 table, limiter history or stats from other tests."""
    settings.REDIS_URL = ""
    monkeypatch.setattr(l1, "_readers", {})
    monkeypatch.setattr(selectors, "_limiters", {})
    cache_stats().reset()
    yield
    await market_data_close()


def served(
    monkeypatch: pytest.MonkeyPatch, simulator: FyersSimulator | UpstoxSimulator
) -> list[str]:
    """Every data request the simulator's REST server handles (it authenticates each)."""
    seen: list[str] = []
    authenticate = simulator._rest_auth

    def spy(request: Any) -> Any:
        seen.append(request.path)
        return authenticate(request)

    monkeypatch.setattr(simulator, "_rest_auth", spy)
    return seen


@pytest.fixture
async def sims(sample_import, settings, monkeypatch) -> AsyncIterator[SimulatorSet]:
    await sync_to_async(services.provider_accounts_ensure_defaults)()
    rows = await sync_to_async(lambda: list(instruments_for_simulation()))()
    sims = await start_simulators([sim_instrument_from(r) for r in rows], seed=5)
    sims.hub.model.market_open = False  # frozen: what the REST answer says, the model says
    described = sims.describe("127.0.0.1")
    settings.FYERS = {**settings.FYERS, "API_URL": described["fyers"]["api_url"]}
    settings.UPSTOX = {**settings.UPSTOX, "API_URL": described["upstox"]["api_url"]}
    monkeypatch.setenv("FYERS_ACCESS_TOKEN", described["fyers"]["token"])
    monkeypatch.setenv("UPSTOX_ACCESS_TOKEN", described["upstox"]["token"])
    yield sims
    await sims.stop()


def _carry_on_upstox(key: str) -> None:
    PoolAssignment.objects.create(
        instrument=Instrument.objects.get(key=key),
        account=ProviderAccount.objects.get(provider="upstox"),
        connection_slot=0,
        data_mode="quote",
        reason="tier_rule",
        since=timezone.now(),
    )


async def timed(window: list[int], coro: Any) -> Any:
    """Await ``coro`` noting [ns before, ns after] in ``window``: the bounds of any age."""
    window[:] = [time.time_ns()]
    result = await coro
    window.append(time.time_ns())
    return result


def age_within(age: float | None, recv_ns: int, window: list[int]) -> bool:
    assert age is not None
    return (window[0] - recv_ns) / 1e9 <= age <= (window[1] - recv_ns) / 1e9


# --- L1 and L2 -----------------------------------------------------------------------------


async def test_l1_is_the_registered_worker_table(sample_import, settings) -> None:
    window: list[int] = []
    settings.DELIVERY = {**settings.DELIVERY, "FRESH_AGE": 5.0}  # a slow CI box stays fresh
    table = LatestTicks()
    sbin = Tick(ProviderName.FYERS, "NSE:SBIN-EQ", 81_005, 2, time.time_ns(), instrument=SBIN)
    infy = Tick(
        ProviderName.UPSTOX, "NSE_EQ|INE009A01021", 150_000, 2, time.time_ns(), instrument=INFY
    )
    table.put(sbin)
    table.put(infy)
    l1_register("worker", latest_ticks_reader(table))
    got = await timed(window, market_data_get(symbols=[SBIN, INFY]))
    assert (got[SBIN].source, got[SBIN].provider, got[SBIN].record) == (
        "l1",
        "fyers",
        tick_record(sbin),
    )
    assert age_within(got[SBIN].age, sbin.recv_ns, window) and not got[SBIN].stale
    # INFY is FYERS-first (not carried, FYERS lists it): Upstox's fresh value is L4's.
    assert (got[INFY].source, got[INFY].provider, got[INFY].stale) == ("l4", "upstox", False)
    assert cache_stats().hits["l1"] == 1 and cache_stats().hits["l4"] == 1


async def test_l2_is_redis_as_every_process_sees_it(sample_import, settings, redis_url) -> None:
    window: list[int] = []
    settings.REDIS_URL = redis_url
    settings.DELIVERY = {**settings.DELIVERY, "FRESH_AGE": 5.0}
    writer = aioredis.Redis.from_url(redis_url)
    await writer.flushdb()
    now = time.time_ns()
    fresh = Tick(ProviderName.FYERS, "NSE:SBIN-EQ", 81_015, 2, now, instrument=SBIN)
    old = Tick(ProviderName.FYERS, "NSE:INFY-EQ", 150_100, 2, now - 60 * 10**9, instrument=INFY)
    await RedisLatestStore(writer, ttl=settings.DELIVERY["L2_TTL"]).write([fresh, old])
    await writer.aclose()

    got = await timed(window, market_data_get(symbols=[SBIN, INFY]))
    assert (got[SBIN].source, got[SBIN].provider, got[SBIN].record["ltp"]) == (
        "l2",
        "fyers",
        81_015,
    )
    assert age_within(got[SBIN].age, now, window) and not got[SBIN].stale
    # Nothing fresher anywhere (no REST account here): the old L2 value, marked stale.
    assert (got[INFY].source, got[INFY].record, got[INFY].stale) == ("l2", tick_record(old), True)
    assert age_within(got[INFY].age, old.recv_ns, window)
    assert cache_stats().hits["l2"] == 1 and cache_stats().misses["l2"] == 1


# --- L3: the simulators' REST quotes ----------------------------------------------------------


async def test_l3_serves_the_simulators_quotes_exactly(sims, monkeypatch) -> None:
    window: list[int] = []
    await sync_to_async(_carry_on_upstox)(RELIANCE)  # Upstox first for this one
    fyers_seen, upstox_seen = served(monkeypatch, sims.fyers), served(monkeypatch, sims.upstox)
    got = await timed(window, market_data_get(symbols=[SBIN, RELIANCE], max_age=5.0))

    sbin, quote = got[SBIN], sims.hub.model.quote(SBIN)
    assert (sbin.source, sbin.provider, sbin.stale) == ("l3", "fyers", False)
    record = sbin.record
    assert record is not None
    assert (record["ltp"], record["scale"]) == (quote.ltp, quote.instrument.scale)
    assert (record["open"], record["high"], record["low"], record["prev_close"]) == (
        quote.open,
        quote.high,
        quote.low,
        quote.prev_close,
    )
    assert (record["bid"], record["ask"], record["volume"]) == (quote.bid, quote.ask, quote.volume)
    assert age_within(sbin.age, record["recv_ns"], window)

    reliance, quote = got[RELIANCE], sims.hub.model.quote(RELIANCE)
    assert (reliance.source, reliance.provider) == ("l3", "upstox")
    record = reliance.record
    assert record is not None
    bids, asks = quote.depth(5)
    assert record["ltp"] == quote.ltp
    assert record["bids"] == [list(level) for level in bids]
    assert record["asks"] == [list(level) for level in asks]
    assert (record["lower_circuit"], record["upper_circuit"]) == (
        quote.lower_circuit,
        quote.upper_circuit,
    )
    assert fyers_seen == ["/data/quotes"] and upstox_seen == ["/v3/market-quote/quotes"]
    assert cache_stats().hits["l3"] == 2


async def test_l3_respects_the_rate_budget_and_falls_to_l4(
    sims, settings, monkeypatch, caplog
) -> None:
    settings.FYERS = {**settings.FYERS, "RATE_PER_SECOND": 2, "RATE_PER_MINUTE": 2}
    persisted_ns = time.time_ns() - 3600 * 10**9
    await sync_to_async(services.last_ticks_record)(
        latest={SBIN: ("fyers", {"ltp": 80_000, "scale": 2, "recv_ns": persisted_ns})}
    )
    seen = served(monkeypatch, sims.fyers)
    answers = [(await market_data_get(symbols=[SBIN]))[SBIN] for _ in range(2)]
    assert [(a.source, a.stale) for a in answers] == [("l3", False)] * 2
    assert len(seen) == 2

    with caplog.at_level(logging.WARNING, logger="feeds.cache.layers"):
        started = time.monotonic()
        later = [(await market_data_get(symbols=[SBIN]))[SBIN] for _ in range(3)]
        elapsed = time.monotonic() - started
    assert len(seen) == 2  # the budget was spent: nothing more reached the provider
    assert elapsed < settings.DELIVERY["REST_MAX_WAIT"]  # refused at once, not waited for
    assert all((v.source, v.record["ltp"], v.stale) == ("l4", 80_000, True) for v in later)
    assert all(3600 <= v.age < 3600 + 5 for v in later)
    warnings = [r for r in caplog.records if "l3:fyers" in r.getMessage()]
    assert len(warnings) == 1 and "RateLimited" in warnings[0].getMessage()
    assert cache_stats().misses["l3"] == 3 and cache_stats().hits["l3"] == 2


async def test_a_snapshot_bigger_than_the_budget_gets_what_fits(
    sims, settings, monkeypatch
) -> None:
    settings.FYERS = {**settings.FYERS, "RATE_PER_SECOND": 2, "RATE_PER_MINUTE": 2}
    keys = await sync_to_async(
        lambda: list(
            Instrument.objects.filter(instrument_type="EQ")
            .exclude(fyers_symbol="")
            .order_by("key")
            .values_list("key", flat=True)[:120]
        )
    )()
    seen = served(monkeypatch, sims.fyers)
    got = await market_data_get(symbols=keys)
    # Two calls of 50 (all the budget has); the other 20 fall through, none was dropped.
    assert len(seen) == 2
    sources = [got[k].source for k in keys]
    assert sources.count("l3") == 100 and sources.count(None) == 20
    for key in keys:
        if got[key].source == "l3":
            assert got[key].record["ltp"] == sims.hub.model.quote(key).ltp


async def test_l4_is_the_persisted_row_marked_stale_with_its_age(sample_import) -> None:
    window: list[int] = []
    recv_ns = time.time_ns() - 90 * 10**9
    record = {"ltp": 245_050, "scale": 2, "recv_ns": recv_ns, "volume": 12}
    await sync_to_async(services.last_ticks_record)(latest={RELIANCE: ("upstox", record)})
    got = await timed(window, market_data_get(symbols=[RELIANCE, SBIN, "NSE:NOSUCH"]))
    value = got[RELIANCE]
    assert (value.source, value.provider, value.record, value.stale) == (
        "l4",
        "upstox",
        record,
        True,
    )
    assert age_within(value.age, recv_ns, window)
    assert got[SBIN].source is None and got[SBIN].record is None
    assert got["NSE:NOSUCH"].source is None
    assert cache_stats().stale == 1 and cache_stats().missing == 2


async def test_concurrent_callers_share_one_cache(sample_import) -> None:
    results = await asyncio.gather(*(market_data_get(symbols=[SBIN]) for _ in range(5)))
    assert all(r[SBIN].source is None for r in results)
    assert len(selectors._loop_caches) == 1
