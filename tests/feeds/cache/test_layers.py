"""The layered cache's walk: each layer's hit and miss, ages, sources, staleness, stats.

L1 is an in-memory table and L3/L4 are plain async callables (the cache's own inputs); L2 is
the real ``RedisLatestStore`` over the private redis-server. The clock is fixed, so ages are
exact.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import pytest
import redis.asyncio as aioredis

from feeds.cache.l2 import RedisLatestStore
from feeds.cache.layers import CachedValue, InstrumentRef, LayeredCache, LayerStats
from feeds.providers.errors import ProviderUnavailable, RateLimited
from feeds.providers.ticks import ProviderName, Tick

NOW = 1_764_052_800_000_000_000  # ns
SBIN = InstrumentRef("NSE:SBIN", "fyers", "NSE:SBIN-EQ", "NSE_EQ|INE062A01020")
INFY = InstrumentRef("NSE:INFY", "fyers", "NSE:INFY-EQ", "NSE_EQ|INE009A01021")
TCS = InstrumentRef("NSE:TCS", "upstox", "NSE:TCS-EQ", "NSE_EQ|INE467B01029")


def rec(ltp: int, age: float) -> dict[str, Any]:
    return {"ltp": ltp, "scale": 2, "recv_ns": NOW - round(age * 1e9)}


class Table:
    """An L1 table: key -> provider -> record; counts reads."""

    def __init__(self, rows: Mapping[str, Mapping[str, dict[str, Any]]] | None = None) -> None:
        self.rows = {k: dict(v) for k, v in (rows or {}).items()}
        self.reads = 0

    def __call__(self, key: str) -> Mapping[str, dict[str, Any]]:
        self.reads += 1
        return self.rows.get(key, {})


class Rest:
    """An L3 fetcher: answers from ``rows`` (symbol -> record) or raises ``error``."""

    def __init__(self, rows: Mapping[str, dict[str, Any]] | None = None) -> None:
        self.rows = dict(rows or {})
        self.calls: list[list[str]] = []
        self.error: Exception | None = None

    async def __call__(self, symbols: Sequence[str]) -> Mapping[str, dict[str, Any]]:
        self.calls.append(list(symbols))
        if self.error is not None:
            raise self.error
        return {s: self.rows[s] for s in symbols if s in self.rows}


class Persisted:
    """An L4 loader over key -> (provider, record)."""

    def __init__(self, rows: Mapping[str, tuple[str, dict[str, Any]]] | None = None) -> None:
        self.rows = dict(rows or {})
        self.calls: list[list[str]] = []

    async def __call__(self, keys: Sequence[str]) -> Mapping[str, tuple[str, dict[str, Any]]]:
        self.calls.append(list(keys))
        return {k: self.rows[k] for k in keys if k in self.rows}


def make(**parts: Any) -> LayeredCache:
    parts.setdefault("fresh_age", 0.1)
    return LayeredCache(clock=lambda: NOW, **parts)


def counts(stats: LayerStats) -> tuple[dict[str, int], dict[str, int]]:
    return dict(stats.hits), dict(stats.misses)


@pytest.fixture
async def l2(redis_url: str) -> AsyncIterator[RedisLatestStore]:
    client = aioredis.Redis.from_url(redis_url)
    yield RedisLatestStore(client, prefix=f"test:{uuid.uuid4().hex}:")
    await client.aclose()


async def l2_put(store: RedisLatestStore, key: str, provider: str, ltp: int, age: float) -> None:
    tick = Tick(ProviderName(provider), f"sym-{key}", ltp, 2, NOW - round(age * 1e9))
    tick.instrument = key
    await store.write([tick])


# --- each layer ----------------------------------------------------------------------------


async def test_a_fresh_l1_value_is_the_answer_and_nothing_below_is_asked() -> None:
    rest, persisted = Rest({"NSE:SBIN-EQ": rec(1, 0)}), Persisted()
    cache = make(
        l1=Table({"NSE:SBIN": {"fyers": rec(81_005, 0.012)}}), l3={"fyers": rest}, l4=persisted
    )
    got = await cache.get([SBIN])
    assert got == {
        "NSE:SBIN": CachedValue("NSE:SBIN", rec(81_005, 0.012), "fyers", "l1", 0.012, stale=False)
    }
    assert rest.calls == [] and persisted.calls == []
    assert counts(cache.stats) == (
        {"l1": 1, "l2": 0, "l3": 0, "l4": 0},
        dict.fromkeys(("l1", "l2", "l3", "l4"), 0),
    )


async def test_l2_answers_what_l1_does_not_have(l2: RedisLatestStore) -> None:
    await l2_put(l2, "NSE:SBIN", "fyers", 81_010, 0.03)
    cache = make(l1=Table(), l2=l2, l4=Persisted())
    value = (await cache.get([SBIN]))["NSE:SBIN"]
    expected = {"ltp": 81_010, "scale": 2, "recv_ns": NOW - 30_000_000}
    assert (value.source, value.provider, value.record, value.age, value.stale) == (
        "l2",
        "fyers",
        expected,
        0.03,
        False,
    )
    assert counts(cache.stats) == (
        {"l1": 0, "l2": 1, "l3": 0, "l4": 0},
        {"l1": 1, "l2": 0, "l3": 0, "l4": 0},
    )


async def test_l3_is_one_call_per_provider_for_every_symbol_that_reaches_it(
    l2: RedisLatestStore,
) -> None:
    fyers = Rest({"NSE:SBIN-EQ": rec(81_000, 0.001), "NSE:INFY-EQ": rec(150_000, 0.002)})
    upstox = Rest({"NSE_EQ|INE467B01029": rec(390_000, 0.003)})
    cache = make(l1=Table(), l2=l2, l3={"fyers": fyers, "upstox": upstox}, l4=Persisted())
    got = await cache.get([SBIN, INFY, TCS])
    assert fyers.calls == [["NSE:SBIN-EQ", "NSE:INFY-EQ"]]
    assert upstox.calls == [["NSE_EQ|INE467B01029"]]
    assert {k: (v.source, v.provider, v.record["ltp"], v.age) for k, v in got.items()} == {
        "NSE:SBIN": ("l3", "fyers", 81_000, 0.001),
        "NSE:INFY": ("l3", "fyers", 150_000, 0.002),
        "NSE:TCS": ("l3", "upstox", 390_000, 0.003),
    }
    assert counts(cache.stats) == (
        {"l1": 0, "l2": 0, "l3": 3, "l4": 0},
        {"l1": 3, "l2": 3, "l3": 0, "l4": 0},
    )


async def test_l3_is_not_asked_for_a_symbol_its_provider_does_not_list() -> None:
    rest = Rest()
    cache = make(l3={"upstox": rest}, l4=Persisted())
    got = await cache.get([InstrumentRef("NSE:ODD", "upstox", "NSE:ODD-EQ", "")])
    assert rest.calls == [] and got["NSE:ODD"].source is None
    assert cache.stats.misses == {"l1": 0, "l2": 0, "l3": 0, "l4": 1}  # only L4 was consulted


@pytest.mark.parametrize(
    "error",
    [
        RateLimited("fyers quotes: budget spent", retry_after=30.0),
        ProviderUnavailable("fyers quotes: no answer within 2 s"),
    ],
)
async def test_a_refused_l3_call_falls_through_and_is_logged_once_per_burst(
    error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    rest = Rest({"NSE:SBIN-EQ": rec(81_000, 0)})
    rest.error = error
    persisted = Persisted({"NSE:SBIN": ("fyers", rec(80_500, 600))})
    cache = make(l3={"fyers": rest}, l4=persisted)
    with caplog.at_level(logging.INFO, logger="feeds.cache.layers"):
        for _ in range(3):
            value = (await cache.get([SBIN]))["NSE:SBIN"]
            assert (value.source, value.record["ltp"], value.stale) == ("l4", 80_500, True)
        rest.error = None
        assert (await cache.get([SBIN]))["NSE:SBIN"].source == "l3"
    assert len(rest.calls) == 4
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "l3:fyers" in m and type(error).__name__ in m]) == 1
    assert any("works again after 3 failed lookups" in m for m in messages)
    assert cache.stats.misses["l3"] == 3 and cache.stats.hits["l3"] == 1


async def test_l2_down_falls_through_without_raising(caplog: pytest.LogCaptureFixture) -> None:
    with socket_nobody_listens_on() as port:
        client = aioredis.Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_timeout=1)
        cache = make(l2=RedisLatestStore(client), l3={"fyers": Rest({"NSE:SBIN-EQ": rec(7, 0)})})
        with caplog.at_level(logging.WARNING, logger="feeds.cache.layers"):
            value = (await cache.get([SBIN]))["NSE:SBIN"]
            await cache.get([SBIN])
        await client.aclose()
    assert value.source == "l3"
    assert len([r for r in caplog.records if "cache l2" in r.getMessage()]) == 1
    assert cache.stats.misses["l2"] == 2


# --- L4: the other provider, then the newest value anywhere --------------------------------


async def test_l4_takes_the_other_providers_fresh_value() -> None:
    table = Table({"NSE:SBIN": {"fyers": rec(81_000, 3.0), "upstox": rec(81_020, 0.05)}})
    persisted = Persisted({"NSE:SBIN": ("fyers", rec(80_000, 900))})
    cache = make(l1=table, l4=persisted)
    value = (await cache.get([SBIN]))["NSE:SBIN"]
    assert (value.source, value.provider, value.record["ltp"], value.age, value.stale) == (
        "l4",
        "upstox",
        81_020,
        0.05,
        False,
    )
    assert persisted.calls == []  # a fresh value needs no database
    assert counts(cache.stats)[0]["l4"] == 1


async def test_l4_takes_the_other_providers_value_from_l2_too(l2: RedisLatestStore) -> None:
    await l2_put(l2, "NSE:TCS", "fyers", 390_100, 0.02)
    cache = make(l1=Table(), l2=l2)
    value = (await cache.get([TCS]))["NSE:TCS"]  # Upstox first, it has nothing
    assert (value.source, value.provider, value.record["ltp"], value.stale) == (
        "l4",
        "fyers",
        390_100,
        False,
    )


async def test_only_a_persisted_value_is_served_stale_with_its_age() -> None:
    persisted = Persisted({"NSE:SBIN": ("upstox", rec(80_950, 3600.5))})
    cache = make(l1=Table(), l3={"fyers": Rest()}, l4=persisted)
    value = (await cache.get([SBIN]))["NSE:SBIN"]
    assert value == CachedValue("NSE:SBIN", rec(80_950, 3600.5), "upstox", "l4", 3600.5, stale=True)
    assert persisted.calls == [["NSE:SBIN"]]
    assert cache.stats.stale == 1
    assert cache.stats.misses == {"l1": 1, "l2": 0, "l3": 1, "l4": 1}


async def test_when_nothing_is_fresh_the_newest_value_anywhere_wins(
    l2: RedisLatestStore,
) -> None:
    await l2_put(l2, "NSE:SBIN", "fyers", 81_002, 2.0)  # newer than L1's
    await l2_put(l2, "NSE:INFY", "upstox", 150_003, 4.0)
    table = Table(
        {
            "NSE:SBIN": {"fyers": rec(81_001, 5.0), "upstox": rec(81_003, 3.0)},
            "NSE:INFY": {"fyers": rec(150_001, 9.0)},
            "NSE:TCS": {"upstox": rec(390_001, 90.0)},
        }
    )
    persisted = Persisted(
        {
            "NSE:SBIN": ("fyers", rec(80_000, 900.0)),
            "NSE:INFY": ("fyers", rec(150_002, 6.0)),
            "NSE:TCS": ("upstox", rec(390_002, 30.0)),
        }
    )
    cache = make(l1=table, l2=l2, l4=persisted)
    got = await cache.get([SBIN, INFY, TCS])
    view = {k: (v.source, v.provider, v.record["ltp"], v.age, v.stale) for k, v in got.items()}
    assert view == {
        "NSE:SBIN": ("l2", "fyers", 81_002, 2.0, True),  # the primary's own, just old
        "NSE:INFY": ("l4", "upstox", 150_003, 4.0, True),  # the other provider's, in L2
        "NSE:TCS": ("l4", "upstox", 390_002, 30.0, True),  # the persisted row
    }
    assert persisted.calls == [["NSE:SBIN", "NSE:INFY", "NSE:TCS"]]  # one load for all
    assert cache.stats.stale == 3


async def test_a_symbol_nobody_has_has_no_source() -> None:
    cache = make(l1=Table(), l3={"fyers": Rest()}, l4=Persisted())
    got = await cache.get([SBIN])
    assert got == {"NSE:SBIN": CachedValue("NSE:SBIN", None, None, None, None, stale=False)}
    assert cache.stats.missing == 1


# --- freshness -----------------------------------------------------------------------------


async def test_the_freshness_bound_is_inclusive() -> None:
    table = Table({"NSE:SBIN": {"fyers": rec(1, 0.1)}, "NSE:INFY": {"fyers": rec(2, 0.1)}})
    table.rows["NSE:INFY"]["fyers"]["recv_ns"] -= 1  # one nanosecond older than the bound
    cache = make(l1=table, l4=Persisted())
    got = await cache.get([SBIN, INFY])  # max_age defaults to fresh_age (0.1 s)
    assert (got["NSE:SBIN"].source, got["NSE:SBIN"].stale) == ("l1", False)
    assert (got["NSE:INFY"].source, got["NSE:INFY"].stale) == ("l1", True)
    assert got["NSE:INFY"].age == pytest.approx(0.1 + 1e-9)
    assert cache.stats.hits["l1"] == 1 and cache.stats.misses["l1"] == 1


async def test_max_age_moves_the_walk_and_stale_follows_the_hubs_bound() -> None:
    table = Table({"NSE:SBIN": {"fyers": rec(81_000, 0.5)}})
    rest = Rest({"NSE:SBIN-EQ": rec(81_005, 0.0)})
    cache = make(l1=table, l3={"fyers": rest})
    tolerant = (await cache.get([SBIN], max_age=1.0))["NSE:SBIN"]
    assert (tolerant.source, tolerant.age, tolerant.stale) == ("l1", 0.5, True)
    strict = (await cache.get([SBIN], max_age=0.2))["NSE:SBIN"]
    assert (strict.source, strict.record["ltp"], strict.stale) == ("l3", 81_005, False)


async def test_a_value_from_a_clock_ahead_is_never_younger_than_new() -> None:
    cache = make(l1=Table({"NSE:SBIN": {"fyers": rec(1, -0.004)}}))
    assert (await cache.get([SBIN]))["NSE:SBIN"].age == 0.0


async def test_keys_come_back_once_in_the_order_asked() -> None:
    cache = make(l1=Table({k.key: {"fyers": rec(1, 0)} for k in (SBIN, INFY)}))
    assert list(await cache.get([INFY, SBIN, INFY])) == ["NSE:INFY", "NSE:SBIN"]


# --- stats ---------------------------------------------------------------------------------


async def test_hit_rates_per_layer() -> None:
    stats = LayerStats()
    assert stats.hit_rates() == {"l1": None, "l2": None, "l3": None, "l4": None}
    table = Table({"NSE:SBIN": {"fyers": rec(1, 0.01)}, "NSE:TCS": {"fyers": rec(3, 0.01)}})
    rest = Rest({"NSE:INFY-EQ": rec(2, 0)})
    cache = make(l1=table, l3={"fyers": rest}, l4=Persisted(), stats=stats)
    await cache.get([SBIN, INFY, TCS])  # L1 hit; L1 miss + L3 hit; L1 miss + L4 hit (other)
    assert stats.hit_rates() == {"l1": 1 / 3, "l2": None, "l3": 1.0, "l4": 1.0}
    stats.reset()
    assert stats.hits == dict.fromkeys(("l1", "l2", "l3", "l4"), 0)


class socket_nobody_listens_on:
    """A port that refuses connections: bound, never listening."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return self.sock.getsockname()[1]

    def __exit__(self, *exc: object) -> None:
        self.sock.close()
