"""L2: the latest tick per instrument and provider in Redis, readable by every process.

One hash per instrument (``{prefix}{key}``), one field per provider holding the tick as
orjson. A flush of any number of ticks is one pipelined round trip; so is a read of any
number of instruments. Keys expire after ``ttl`` without a write, so instruments that are no
longer carried do not stay forever (the store is bounded by what the pool carries).

No Django: the worker and the web processes hand in their ``redis.asyncio`` client.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable
from typing import Any

import orjson
import redis.asyncio as aioredis

from feeds.providers.ticks import Tick

_ADDRESS = ("key", "provider")  # where a batch record goes, not part of the stored value
MAX_TRACKED = 500_000  # instruments whose expiry refresh is remembered; past it, start over

# Everything a client may be shown, in the tick's own integer-at-scale form.
RECORD_FIELDS = (
    "ltp", "scale", "recv_ns", "exchange_ts", "ltt", "ltq", "volume", "bid", "ask", "bid_qty",
    "ask_qty", "open", "high", "low", "prev_close", "atp", "oi", "total_buy_qty",
    "total_sell_qty", "lower_circuit", "upper_circuit", "iv", "delta", "theta", "gamma",
    "vega", "rho",
)  # fmt: skip


def tick_record(tick: Tick) -> dict[str, Any]:
    """The fields a tick carries (None left out), depth as [price, qty, orders] lists."""
    record = {name: value for name in RECORD_FIELDS if (value := getattr(tick, name)) is not None}
    if tick.flags:  # validation's verdict: the checks it failed, and tier 2's chosen price
        record["flags"] = tick.flags
        if tick.consensus is not None:
            record["consensus"] = tick.consensus
    if tick.connection:
        record["connection"] = tick.connection
    if tick.bids is not None:
        record["bids"] = [list(level) for level in tick.bids]
    if tick.asks is not None:
        record["asks"] = [list(level) for level in tick.asks]
    return record


class RedisLatestStore:
    def __init__(
        self, client: aioredis.Redis, *, prefix: str = "mdhub:l2:", ttl: float = 86_400.0
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.ttl_ms = max(1, round(ttl * 1000))
        self._expiry_set: dict[str, float] = {}  # key -> when its expiry was last refreshed

    async def write(self, ticks: Iterable[Tick]) -> int:
        """Store the latest of ``ticks`` per (instrument, provider); one round trip."""
        # An unmapped symbol has no canonical key to store under.
        return await self._put(
            (t.instrument, str(t.provider), tick_record(t)) for t in ticks if t.instrument
        )

    async def write_records(self, records: Iterable[dict[str, Any]]) -> int:
        """Store already-made records carrying ``key`` and ``provider`` (the publisher's
        batch records, stored as ``write`` stores ticks); the latest per pair wins."""
        return await self._put(
            (r["key"], r["provider"], {k: v for k, v in r.items() if k not in _ADDRESS})
            for r in records
        )

    async def _put(self, entries: Iterable[tuple[str, str, dict[str, Any]]]) -> int:
        latest: dict[str, dict[str, dict[str, Any]]] = {}
        for key, provider, record in entries:
            latest.setdefault(key, {})[provider] = record
        by_key = {
            key: {provider: orjson.dumps(record) for provider, record in fields.items()}
            for key, fields in latest.items()
        }
        await self._store(by_key)
        return sum(len(fields) for fields in by_key.values())

    async def _store(self, by_key: dict[str, dict[str, bytes]]) -> None:
        if not by_key:
            return
        now = time.monotonic()
        # The expiry only has to outlive the gaps between writes: refreshing it on every
        # write doubled the commands per flush for nothing.
        refresh_before = now - self.ttl_ms / 4000
        if len(self._expiry_set) > MAX_TRACKED:
            self._expiry_set.clear()
        async with self.client.pipeline(transaction=False) as pipe:
            for key, fields in by_key.items():
                name = self.prefix + key
                pipe.hset(name, mapping=fields)
                if self._expiry_set.get(key, 0.0) < refresh_before:
                    pipe.pexpire(name, self.ttl_ms)
                    self._expiry_set[key] = now
            await pipe.execute()

    async def read(self, keys: Collection[str]) -> dict[str, dict[str, dict[str, Any]]]:
        """key -> provider -> record, for the keys that have any; one round trip."""
        if isinstance(keys, str):
            raise TypeError("keys must be a collection of instrument keys, not one string")
        ordered = list(dict.fromkeys(keys))
        if not ordered:
            return {}
        async with self.client.pipeline(transaction=False) as pipe:
            for key in ordered:
                pipe.hgetall(self.prefix + key)
            replies = await pipe.execute()
        found: dict[str, dict[str, dict[str, Any]]] = {}
        for key, fields in zip(ordered, replies, strict=True):
            if fields:
                found[key] = {
                    (p.decode() if isinstance(p, bytes) else p): orjson.loads(v)
                    for p, v in fields.items()
                }
        return found
