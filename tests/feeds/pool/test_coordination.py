"""Leases and heartbeats between feed workers: the same behaviour in memory and over Redis.

The Redis runs use the suite's private redis-server (``redis_url`` in tests/conftest.py;
never REDIS_URL's server: these tests flush the database between tests). Expiry is a fake
clock in memory and real short TTLs in Redis, behind ``Backend.advance``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from feeds.pool.coordination import (
    Coordinator,
    MemoryCoordinator,
    RedisCoordinator,
    coordinator_from_url,
)

SHORT = 0.1  # a TTL that has run out after WAIT
WAIT = 0.15
LONG = 30.0  # a TTL that outlives any test


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Backend:
    name: str
    coord: Coordinator
    advance: Callable[[float], Awaitable[None]]  # let time pass: fake clock or real sleep
    peer: Callable[[], Coordinator]  # another worker's coordinator on the same backend


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    if request.param == "memory":
        clock = FakeClock()
        memory = MemoryCoordinator(clock)

        async def advance(seconds: float) -> None:
            clock.now += seconds

        # Embedded mode has one process: every worker shares the one coordinator.
        yield Backend("memory", memory, advance, lambda: memory)
        await memory.close()
        return

    url = request.getfixturevalue("redis_url")
    admin = aioredis.Redis.from_url(url)
    await admin.flushdb()
    await admin.aclose()
    opened: list[RedisCoordinator] = []

    def peer() -> RedisCoordinator:
        opened.append(RedisCoordinator(url))
        return opened[-1]

    coord = peer()
    yield Backend("redis", coord, asyncio.sleep, peer)
    for each in opened:
        await each.close()


# --- leases ----------------------------------------------------------------------------------


async def test_claim_by_one_owner_excludes_another(backend: Backend) -> None:
    coord = backend.coord
    assert await coord.claim("fyers:primary:0", owner="w1", ttl=LONG)
    assert not await coord.claim("fyers:primary:0", owner="w2", ttl=LONG)
    assert await backend.peer().claim("fyers:primary:1", owner="w2", ttl=LONG)
    assert await coord.holders(["fyers:primary:0", "fyers:primary:1", "upstox:primary:0"]) == {
        "fyers:primary:0": "w1",
        "fyers:primary:1": "w2",
    }


async def test_claim_again_by_the_same_owner_renews(backend: Backend) -> None:
    coord = backend.coord
    assert await coord.claim("c", owner="w1", ttl=SHORT)
    assert await coord.claim("c", owner="w1", ttl=LONG)
    await backend.advance(WAIT)
    assert not await coord.claim("c", owner="w2", ttl=LONG)
    assert await coord.holders(["c"]) == {"c": "w1"}


async def test_an_expired_lease_is_taken_over_by_another_worker(backend: Backend) -> None:
    dead, alive = backend.coord, backend.peer()
    assert await dead.claim("c", owner="w1", ttl=SHORT)
    await backend.advance(WAIT)
    assert await alive.holders(["c"]) == {}
    assert await alive.claim("c", owner="w2", ttl=LONG)
    assert await dead.holders(["c"]) == {"c": "w2"}


async def test_a_zero_ttl_is_held_for_a_moment_and_does_not_fail(backend: Backend) -> None:
    assert await backend.coord.claim("c", owner="w1", ttl=0)
    await backend.advance(WAIT)
    assert await backend.coord.claim("c", owner="w2", ttl=LONG)


async def test_renew_extends_held_leases(backend: Backend) -> None:
    coord = backend.coord
    assert await coord.claim("a", owner="w1", ttl=SHORT)
    assert await coord.claim("b", owner="w1", ttl=SHORT)
    assert await coord.renew(["a", "b"], owner="w1", ttl=LONG) == {"a", "b"}
    await backend.advance(WAIT)
    assert await coord.holders(["a", "b"]) == {"a": "w1", "b": "w1"}


async def test_renew_returns_only_held_names_and_neither_resurrects_nor_steals(
    backend: Backend,
) -> None:
    coord = backend.coord
    assert await coord.claim("kept", owner="w1", ttl=LONG)
    assert await coord.claim("expired", owner="w1", ttl=SHORT)
    assert await coord.claim("theirs", owner="w2", ttl=LONG)
    await backend.advance(WAIT)
    names = ["kept", "expired", "theirs", "never"]
    assert await coord.renew(names, owner="w1", ttl=LONG) == {"kept"}
    assert await coord.holders(names) == {"kept": "w1", "theirs": "w2"}


async def test_renew_after_a_takeover_does_not_take_it_back(backend: Backend) -> None:
    old, new = backend.coord, backend.peer()
    assert await old.claim("c", owner="w1", ttl=SHORT)
    await backend.advance(WAIT)
    assert await new.claim("c", owner="w2", ttl=LONG)
    assert await old.renew(["c"], owner="w1", ttl=LONG) == set()
    assert await new.holders(["c"]) == {"c": "w2"}


async def test_release_deletes_only_our_own_leases(backend: Backend) -> None:
    coord = backend.coord
    assert await coord.claim("ours", owner="w1", ttl=LONG)
    assert await coord.claim("theirs", owner="w2", ttl=LONG)
    await coord.release(["ours", "theirs", "never"], owner="w1")
    assert await coord.holders(["ours", "theirs"]) == {"theirs": "w2"}
    assert await coord.claim("ours", owner="w3", ttl=LONG)


async def test_release_after_a_takeover_keeps_the_new_owner(backend: Backend) -> None:
    old, new = backend.coord, backend.peer()
    assert await old.claim("c", owner="w1", ttl=SHORT)
    await backend.advance(WAIT)
    assert await new.claim("c", owner="w2", ttl=LONG)
    await old.release(["c"], owner="w1")
    assert await new.holders(["c"]) == {"c": "w2"}


async def test_empty_and_repeated_names(backend: Backend) -> None:
    coord = backend.coord
    assert await coord.renew([], owner="w1", ttl=LONG) == set()
    await coord.release([], owner="w1")
    assert await coord.holders([]) == {}
    assert await coord.claim("c", owner="w1", ttl=LONG)
    assert await coord.renew(["c", "c"], owner="w1", ttl=LONG) == {"c"}
    assert await coord.holders(("c", "c")) == {"c": "w1"}


async def test_a_bare_string_is_not_a_collection_of_names(backend: Backend) -> None:
    with pytest.raises(TypeError):
        await backend.coord.renew("abc", owner="w1", ttl=LONG)
    with pytest.raises(TypeError):
        await backend.coord.holders("abc")


@pytest.mark.parametrize("expired_first", [False, True], ids=["free", "after-expiry"])
async def test_twenty_workers_racing_for_one_lease_exactly_one_wins(
    backend: Backend, expired_first: bool
) -> None:
    if expired_first:
        assert await backend.coord.claim("c", owner="dead", ttl=SHORT)
        await backend.advance(WAIT)
    workers = [backend.peer() for _ in range(20)]
    # Open every connection first: connecting would otherwise stagger the claims so much that
    # even a non-atomic get-then-set claim passes (it does, without this line).
    await asyncio.gather(*(w.holders(["warm-up"]) for w in workers))
    won = await asyncio.gather(
        *(w.claim("c", owner=f"w{i}", ttl=LONG) for i, w in enumerate(workers))
    )
    assert sum(won) == 1
    assert await backend.coord.holders(["c"]) == {"c": f"w{won.index(True)}"}


# --- heartbeats ------------------------------------------------------------------------------


async def test_heartbeats_are_written_and_read_by_kind(backend: Backend) -> None:
    coord, reader = backend.coord, backend.peer()
    await coord.beat("worker", "w1", {"pid": 11, "conns": ["fyers:primary:0"]}, ttl=LONG)
    await coord.beat("worker", "w2", {"pid": 12, "conns": []}, ttl=LONG)
    await coord.beat("conn", "fyers:primary:0", {"state": "up", "symbols": 200}, ttl=LONG)
    assert await reader.beats("worker") == {
        "w1": {"pid": 11, "conns": ["fyers:primary:0"]},
        "w2": {"pid": 12, "conns": []},
    }
    assert await reader.beats("conn") == {"fyers:primary:0": {"state": "up", "symbols": 200}}
    assert await reader.beats("nothing") == {}


async def test_a_heartbeat_is_overwritten_by_the_next(backend: Backend) -> None:
    await backend.coord.beat("worker", "w1", {"n": 1}, ttl=SHORT)
    await backend.coord.beat("worker", "w1", {"n": 2}, ttl=LONG)
    await backend.advance(WAIT)
    assert await backend.coord.beats("worker") == {"w1": {"n": 2}}


async def test_heartbeats_expire(backend: Backend) -> None:
    await backend.coord.beat("worker", "stale", {}, ttl=SHORT)
    await backend.coord.beat("worker", "fresh", {}, ttl=LONG)
    await backend.advance(WAIT)
    assert await backend.coord.beats("worker") == {"fresh": {}}


async def test_kinds_do_not_leak_into_each_other(backend: Backend) -> None:
    coord = backend.coord
    # A kind that prefixes another, and glob characters in kinds and idents.
    await coord.beat("conn", "a", {"k": "conn"}, ttl=LONG)
    await coord.beat("connection", "b", {"k": "connection"}, ttl=LONG)
    await coord.beat("k*", "x*[1]?", {"k": "k*"}, ttl=LONG)
    await coord.beat("kx", "y", {"k": "kx"}, ttl=LONG)
    assert await coord.beats("conn") == {"a": {"k": "conn"}}
    assert await coord.beats("k*") == {"x*[1]?": {"k": "k*"}}
    assert await coord.beats("k?") == {}


async def test_a_kind_with_a_colon_is_refused(backend: Backend) -> None:
    with pytest.raises(ValueError):
        await backend.coord.beat("conn:fyers", "0", {}, ttl=LONG)
    with pytest.raises(ValueError):
        await backend.coord.beats("conn:fyers")


async def test_heartbeat_info_is_json_and_a_copy(backend: Backend) -> None:
    coord = backend.coord
    info: dict[str, Any] = {"pair": (1, 2), "nested": {"a": 1}}
    await coord.beat("worker", "w1", info, ttl=LONG)
    info["nested"]["a"] = 99
    read = await coord.beats("worker")
    assert read == {"w1": {"pair": [1, 2], "nested": {"a": 1}}}
    read["w1"]["nested"]["a"] = 42
    assert (await coord.beats("worker"))["w1"]["nested"] == {"a": 1}
    with pytest.raises(TypeError):  # orjson.JSONEncodeError is a TypeError
        await coord.beat("worker", "w2", {"bad": object()}, ttl=LONG)
    assert set(await coord.beats("worker")) == {"w1"}


async def test_many_heartbeats(backend: Backend) -> None:
    for i in range(1500):  # more than one SCAN page and one MGET chunk
        await backend.coord.beat("conn", f"c{i}", {"i": i}, ttl=LONG)
    found = await backend.coord.beats("conn")
    assert len(found) == 1500
    assert found["c1499"] == {"i": 1499}


# --- Redis specifics -------------------------------------------------------------------------


@pytest.fixture
async def redis_admin(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    admin = aioredis.Redis.from_url(redis_url, decode_responses=True)
    await admin.flushdb()
    yield admin
    await admin.aclose()


async def test_redis_key_layout_and_expiry(redis_url: str, redis_admin: aioredis.Redis) -> None:
    async with RedisCoordinator(redis_url) as coord:
        assert await coord.claim("fyers:primary:0", owner="w1", ttl=5)
        await coord.beat("worker", "w1", {"pid": 1}, ttl=5)
    lease, beat = "mdhub:feeds:lease:fyers:primary:0", "mdhub:feeds:beat:worker:w1"
    assert await redis_admin.get(lease) == "w1"
    assert orjson.loads(await redis_admin.get(beat)) == {"pid": 1}
    for key in (lease, beat):
        assert 4000 < await redis_admin.pttl(key) <= 5000


async def test_redis_prefixes_are_separate_namespaces(
    redis_url: str, redis_admin: aioredis.Redis
) -> None:
    async with (
        RedisCoordinator(redis_url, prefix="a:") as a,
        RedisCoordinator(redis_url, prefix="b:") as b,
    ):
        assert await a.claim("c", owner="w1", ttl=LONG)
        assert await b.claim("c", owner="w2", ttl=LONG)
        await a.beat("worker", "w1", {}, ttl=LONG)
        assert await b.beats("worker") == {}
        assert await b.holders(["c"]) == {"c": "w2"}


async def test_redis_scripts_survive_a_flushed_script_cache(
    redis_url: str, redis_admin: aioredis.Redis
) -> None:
    async with RedisCoordinator(redis_url) as coord:
        assert await coord.claim("c", owner="w1", ttl=LONG)
        assert await coord.renew(["c"], owner="w1", ttl=LONG) == {"c"}
        await redis_admin.script_flush()  # as after a server restart: EVALSHA gets NOSCRIPT
        assert await coord.renew(["c"], owner="w1", ttl=LONG) == {"c"}
        await redis_admin.script_flush()
        await coord.release(["c"], owner="w1")
        assert await coord.holders(["c"]) == {}


async def test_redis_beats_skip_keys_that_expire_between_scan_and_mget(
    redis_url: str, redis_admin: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with RedisCoordinator(redis_url) as coord:
        await coord.beat("worker", "gone", {}, ttl=LONG)
        await coord.beat("worker", "here", {}, ttl=LONG)
        real_mget = coord._redis.mget

        async def mget_after_expiry(keys: list[str]) -> list[str | None]:
            await redis_admin.delete("mdhub:feeds:beat:worker:gone")
            return await real_mget(keys)

        monkeypatch.setattr(coord._redis, "mget", mget_after_expiry)
        assert await coord.beats("worker") == {"here": {}}


# --- memory specifics ------------------------------------------------------------------------


async def test_memory_purges_expired_entries_when_touched_or_listed() -> None:
    clock = FakeClock()
    coord = MemoryCoordinator(clock)
    names = [f"c{i}" for i in range(100)]
    for name in names:
        assert await coord.claim(name, owner="w1", ttl=SHORT)
        await coord.beat("conn", name, {}, ttl=SHORT)
    clock.now += WAIT
    assert await coord.holders(names) == {}
    assert await coord.beats("conn") == {}
    assert coord._leases == {}
    assert coord._beats == {}


async def test_memory_sweeps_what_nobody_touches_again() -> None:
    clock = FakeClock()
    coord = MemoryCoordinator(clock)
    for i in range(100):
        assert await coord.claim(f"c{i}", owner="w1", ttl=SHORT)
        await coord.beat("conn", f"c{i}", {}, ttl=SHORT)
    clock.now += 60
    assert await coord.claim("other", owner="w1", ttl=LONG)
    assert set(coord._leases) == {"other"}
    assert coord._beats == {}


# --- factory ---------------------------------------------------------------------------------


async def test_coordinator_from_url() -> None:
    assert isinstance(coordinator_from_url(None), MemoryCoordinator)
    assert isinstance(coordinator_from_url(""), MemoryCoordinator)
    coord = coordinator_from_url("redis://127.0.0.1:1/0")  # from_url does not connect yet
    assert isinstance(coord, RedisCoordinator)
    await coord.close()
