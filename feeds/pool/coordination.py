"""Coordination between feed-worker processes: exclusive leases and heartbeats.

Each broker connection a worker opens is guarded by a lease with a TTL, so two workers never
hold the same connection and a dead worker's connections are taken over once its leases run
out. Workers and connections also write heartbeats (JSON info with a TTL) that other
processes read. With Redis (``RedisCoordinator``) this works across processes; in embedded
mode there is one worker in one process and ``MemoryCoordinator`` gives the same semantics
without a server. No Django here: the worker passes the settings in.
"""

from __future__ import annotations

import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Mapping
from types import TracebackType
from typing import Any, Self

import orjson
import redis.asyncio as aioredis

# How often MemoryCoordinator sweeps every entry, on top of purging what it touches: leases and
# beats nobody reads again (a removed connection, a renamed worker) would otherwise pile up.
_SWEEP_INTERVAL = 30.0

# SCAN's MATCH filters after COUNT keys are walked: the default of 10 would cost one round trip
# per ten keys of the whole database. MGET is chunked to keep each command reasonably small.
_SCAN_COUNT = 1000
_MGET_CHUNK = 1000

# KEYS: lease keys; ARGV[1]: owner; ARGV[2]: TTL in ms. Extends the keys still held by the owner
# and returns 1/0 per key. Atomic, so a lease that expired and was taken over is never touched.
_RENEW_LUA = """
local held = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
    held[i] = 1
  else
    held[i] = 0
  end
end
return held
"""

# KEYS: lease keys; ARGV[1]: owner. Deletes only the owner's keys; returns how many.
_RELEASE_LUA = """
local released = 0
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    released = released + redis.call('DEL', key)
  end
end
return released
"""


def _names(names: Collection[str]) -> list[str]:
    """Distinct names in their given order; a bare string is a mistake, not a set of letters."""
    if isinstance(names, str):
        raise TypeError(f"expected a collection of names, got the string {names!r}")
    return list(dict.fromkeys(names))


def _check_kind(kind: str) -> None:
    # Beat keys are "beat:{kind}:{ident}": a kind with a colon could alias another kind's idents.
    if not kind or ":" in kind:
        raise ValueError(f"heartbeat kind must be non-empty and without ':', got {kind!r}")


def _ttl_ms(ttl: float) -> int:
    # Redis refuses PX 0; the floor also keeps both implementations on the same granularity.
    return max(1, round(ttl * 1000))


def _encode(info: Mapping[str, Any]) -> bytes:
    return orjson.dumps(dict(info))


class Coordinator(ABC):
    """Leases and heartbeats shared by the feed workers.

    A lease is an exclusive, expiring claim on a name (a broker connection); its holder keeps it
    by renewing before the TTL runs out. A heartbeat is a small JSON document under
    ``(kind, ident)`` that disappears when not rewritten within its TTL. TTLs are seconds.
    """

    @abstractmethod
    async def claim(self, name: str, *, owner: str, ttl: float) -> bool:
        """Take the lease ``name`` if it is free, or renew it if ``owner`` already holds it.

        True when ``owner`` holds the lease afterwards.
        """

    @abstractmethod
    async def renew(self, names: Collection[str], *, owner: str, ttl: float) -> set[str]:
        """Extend ``owner``'s leases among ``names`` to ``ttl`` from now.

        Returns the names still held. A lease that expired (or was taken over) is not re-taken:
        the caller must ``claim`` it again, which is where exclusion is decided.
        """

    @abstractmethod
    async def release(self, names: Collection[str], *, owner: str) -> None:
        """Drop ``owner``'s leases among ``names``; another owner's leases are left alone."""

    @abstractmethod
    async def holders(self, names: Collection[str]) -> dict[str, str]:
        """``name -> owner`` for those of ``names`` currently leased."""

    @abstractmethod
    async def beat(self, kind: str, ident: str, info: Mapping[str, Any], *, ttl: float) -> None:
        """Write (or overwrite) the heartbeat ``(kind, ident)``; it expires after ``ttl``.

        ``info`` must be JSON-serialisable; readers get it back decoded, as plain JSON types.
        ``kind`` must not contain ``':'``.
        """

    @abstractmethod
    async def beats(self, kind: str) -> dict[str, dict[str, Any]]:
        """All live heartbeats of ``kind``: ``ident -> info``."""

    @abstractmethod
    async def close(self) -> None:
        """Release the coordinator's own resources (not its leases: see ``release``)."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class MemoryCoordinator(Coordinator):
    """In-process coordinator for embedded mode (one worker, one process).

    Every method runs without awaiting, so each call is atomic on the event loop, as the Redis
    commands and scripts are on the server. Expiry uses ``clock``, injectable for tests.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._leases: dict[str, tuple[str, float]] = {}  # name -> (owner, expires at)
        # kind -> ident -> (encoded info, expires at): stored encoded like in Redis, so readers
        # get plain JSON types and a copy that neither side can mutate under the other.
        self._beats: dict[str, dict[str, tuple[bytes, float]]] = {}
        self._next_sweep = clock() + _SWEEP_INTERVAL

    def _now(self) -> float:
        now = self._clock()
        if now >= self._next_sweep:
            self._sweep(now)
            self._next_sweep = now + _SWEEP_INTERVAL
        return now

    def _sweep(self, now: float) -> None:
        self._leases = {n: lease for n, lease in self._leases.items() if lease[1] > now}
        for kind in list(self._beats):
            self._purge_beats(kind, now)

    def _purge_beats(self, kind: str, now: float) -> dict[str, tuple[bytes, float]]:
        live = {i: beat for i, beat in self._beats.get(kind, {}).items() if beat[1] > now}
        if live:
            self._beats[kind] = live
        else:
            self._beats.pop(kind, None)
        return live

    def _holder(self, name: str, now: float) -> str | None:
        lease = self._leases.get(name)
        if lease is None:
            return None
        if lease[1] <= now:
            del self._leases[name]
            return None
        return lease[0]

    async def claim(self, name: str, *, owner: str, ttl: float) -> bool:
        now = self._now()
        if self._holder(name, now) not in (None, owner):
            return False
        self._leases[name] = (owner, now + _ttl_ms(ttl) / 1000)
        return True

    async def renew(self, names: Collection[str], *, owner: str, ttl: float) -> set[str]:
        now = self._now()
        held = set()
        for name in _names(names):
            if self._holder(name, now) == owner:
                self._leases[name] = (owner, now + _ttl_ms(ttl) / 1000)
                held.add(name)
        return held

    async def release(self, names: Collection[str], *, owner: str) -> None:
        now = self._now()
        for name in _names(names):
            if self._holder(name, now) == owner:
                del self._leases[name]

    async def holders(self, names: Collection[str]) -> dict[str, str]:
        now = self._now()
        return {n: h for n in _names(names) if (h := self._holder(n, now)) is not None}

    async def beat(self, kind: str, ident: str, info: Mapping[str, Any], *, ttl: float) -> None:
        _check_kind(kind)
        encoded = _encode(info)  # before any change: what is not serialisable fails as in Redis
        now = self._now()
        self._beats.setdefault(kind, {})[ident] = (encoded, now + _ttl_ms(ttl) / 1000)

    async def beats(self, kind: str) -> dict[str, dict[str, Any]]:
        _check_kind(kind)
        live = self._purge_beats(kind, self._now())
        return {ident: orjson.loads(encoded) for ident, (encoded, _) in live.items()}

    async def close(self) -> None:
        self._leases.clear()
        self._beats.clear()


class RedisCoordinator(Coordinator):
    """Coordinator over one Redis server, shared by all feed-worker processes.

    Keys: ``{prefix}lease:{name}`` holds the owner, ``{prefix}beat:{kind}:{ident}`` the
    orjson-encoded info; both expire through Redis (PX). Multi-key scripts assume a single
    server, not Redis Cluster.
    """

    def __init__(self, url: str, *, prefix: str = "mdhub:feeds:") -> None:
        self.prefix = prefix
        self._redis = aioredis.Redis.from_url(url, decode_responses=True)
        # Registered scripts run via EVALSHA and load themselves on NOSCRIPT (e.g. after a
        # server restart), so the script text is not resent on every call.
        self._renew = self._redis.register_script(_RENEW_LUA)
        self._release = self._redis.register_script(_RELEASE_LUA)

    def _lease_key(self, name: str) -> str:
        return f"{self.prefix}lease:{name}"

    def _beat_key(self, kind: str, ident: str) -> str:
        return f"{self.prefix}beat:{kind}:{ident}"

    async def claim(self, name: str, *, owner: str, ttl: float) -> bool:
        key, ms = self._lease_key(name), _ttl_ms(ttl)
        if await self._redis.set(key, owner, nx=True, px=ms):
            return True
        # Taken: ours (renew it) or another owner's (the compare in the script says no).
        held = await self._renew(keys=[key], args=[owner, ms])
        return bool(held[0])

    async def renew(self, names: Collection[str], *, owner: str, ttl: float) -> set[str]:
        names = _names(names)
        if not names:
            return set()
        keys = [self._lease_key(n) for n in names]
        held = await self._renew(keys=keys, args=[owner, _ttl_ms(ttl)])
        return {name for name, flag in zip(names, held, strict=True) if flag}

    async def release(self, names: Collection[str], *, owner: str) -> None:
        names = _names(names)
        if names:
            await self._release(keys=[self._lease_key(n) for n in names], args=[owner])

    async def holders(self, names: Collection[str]) -> dict[str, str]:
        names = _names(names)
        if not names:
            return {}
        owners = await self._redis.mget([self._lease_key(n) for n in names])
        return {name: owner for name, owner in zip(names, owners, strict=True) if owner}

    async def beat(self, kind: str, ident: str, info: Mapping[str, Any], *, ttl: float) -> None:
        _check_kind(kind)
        await self._redis.set(self._beat_key(kind, ident), _encode(info), px=_ttl_ms(ttl))

    async def beats(self, kind: str) -> dict[str, dict[str, Any]]:
        _check_kind(kind)
        head = self._beat_key(kind, "")
        # Glob characters in the prefix or kind must match literally. SCAN may return a key
        # twice: the set dedupes.
        scan = self._redis.scan_iter(match=_glob_escape(head) + "*", count=_SCAN_COUNT)
        keys = list({key async for key in scan})
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(keys), _MGET_CHUNK):
            chunk = keys[start : start + _MGET_CHUNK]
            for key, value in zip(chunk, await self._redis.mget(chunk), strict=True):
                if value is not None:  # expired between SCAN and MGET
                    found[key[len(head) :]] = orjson.loads(value)
        return found

    async def close(self) -> None:
        await self._redis.aclose()


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def coordinator_from_url(url: str | None) -> Coordinator:
    """``RedisCoordinator`` for a Redis URL; ``MemoryCoordinator`` (embedded mode) without one."""
    return RedisCoordinator(url) if url else MemoryCoordinator()
