"""L2 over a real redis-server: what one process writes, another reads back exactly."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from feeds.cache.l2 import RedisLatestStore, tick_record
from feeds.providers.ticks import DepthLevel, ProviderName, Tick


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    await client.flushdb()
    yield client
    await client.aclose()


def tick(key: str, provider: ProviderName, ltp: int, recv_ns: int, **extra) -> Tick:
    t = Tick(provider, f"sym-{key}", ltp, 2, recv_ns, **extra)
    t.instrument = key
    return t


async def test_a_flush_keeps_the_latest_per_instrument_and_provider(client, redis_url) -> None:
    store = RedisLatestStore(client)
    ticks = [
        tick("NSE:SBIN", ProviderName.FYERS, 81_000, 1),
        tick("NSE:SBIN", ProviderName.FYERS, 81_005, 2, volume=10, bid=81_000, ask=81_005,
             bids=(DepthLevel(81_000, 50, 3),)),
        tick("NSE:SBIN", ProviderName.UPSTOX, 81_010, 3),
        tick("NSE:RELIANCE", ProviderName.UPSTOX, 245_050, 4, exchange_ts=1_700_000_000_000),
    ]  # fmt: skip
    assert await store.write(ticks) == 3
    other = RedisLatestStore(aioredis.Redis.from_url(redis_url))  # another process's view
    found = await other.read(["NSE:SBIN", "NSE:RELIANCE", "NSE:UNKNOWN"])
    await other.client.aclose()
    assert set(found) == {"NSE:SBIN", "NSE:RELIANCE"}
    assert found["NSE:SBIN"]["fyers"] == {
        "ltp": 81_005, "scale": 2, "recv_ns": 2, "volume": 10, "bid": 81_000, "ask": 81_005,
        "bids": [[81_000, 50, 3]],
    }  # fmt: skip
    assert found["NSE:SBIN"]["upstox"]["ltp"] == 81_010
    assert found["NSE:RELIANCE"]["upstox"]["exchange_ts"] == 1_700_000_000_000


async def test_unmapped_ticks_and_empty_reads_cost_nothing(client) -> None:
    store = RedisLatestStore(client)
    stray = Tick(ProviderName.FYERS, "NSE:NEW-EQ", 100, 2, 1)  # no canonical key
    assert await store.write([stray]) == 0
    assert await store.read([]) == {}
    assert await client.dbsize() == 0
    with pytest.raises(TypeError):
        await store.read("NSE:SBIN")


async def test_keys_expire_when_nothing_writes_them(client) -> None:
    store = RedisLatestStore(client, ttl=0.2)
    await store.write([tick("NSE:SBIN", ProviderName.FYERS, 1, 1)])
    assert await store.read(["NSE:SBIN"])
    await asyncio.sleep(0.3)
    assert await store.read(["NSE:SBIN"]) == {}


async def test_a_thousand_instruments_in_one_flush(client) -> None:
    store = RedisLatestStore(client)
    keys = [f"NSE:EQ{i:04d}" for i in range(1000)]
    assert await store.write(tick(k, ProviderName.FYERS, i, i) for i, k in enumerate(keys)) == 1000
    found = await store.read(keys)
    assert len(found) == 1000
    assert all(found[k]["fyers"]["ltp"] == i for i, k in enumerate(keys))


def test_a_record_leaves_out_what_the_tick_does_not_carry() -> None:
    t = tick("NSE:SBIN", ProviderName.FYERS, 5, 7)
    t.connection = "fyers:primary:0"
    assert tick_record(t) == {"ltp": 5, "scale": 2, "recv_ns": 7, "connection": "fyers:primary:0"}
