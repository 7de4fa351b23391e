"""The worker's publisher: one batch per flush interval, the latest tick per instrument and
provider, L2 written in the same beat, last ticks handed over for persistence."""

from __future__ import annotations

import asyncio
import time

import orjson
import redis.asyncio as aioredis

from feeds.cache.l2 import RedisLatestStore
from feeds.delivery.publisher import BatchPublisher
from feeds.providers.ticks import ProviderName, Tick


def tick(key: str, ltp: int, provider: ProviderName = ProviderName.FYERS) -> Tick:
    t = Tick.bare(provider, f"sym-{key}", ltp, 2, time.time_ns())
    t.instrument = key
    return t


class Sink:
    def __init__(self) -> None:
        self.batches: list[list[dict]] = []
        self.at: list[float] = []

    async def send(self, payload: bytes) -> None:
        self.batches.append(orjson.loads(payload))
        self.at.append(time.monotonic())


async def test_ticks_within_one_interval_go_as_one_batch_latest_per_pair() -> None:
    sink = Sink()
    publisher = BatchPublisher(send=sink.send, flush_interval=0.02)
    started = time.monotonic()
    publisher.offer([tick("A", 1), tick("B", 2)])
    publisher.offer([tick("A", 3), tick("A", 4, ProviderName.UPSTOX)])
    await asyncio.sleep(0.05)
    assert len(sink.batches) == 1
    assert sink.at[0] - started >= 0.019  # waited for the interval, then went
    batch = {(r["key"], r["provider"]): r["ltp"] for r in sink.batches[0]}
    assert batch == {("A", "fyers"): 3, ("B", "fyers"): 2, ("A", "upstox"): 4}
    assert publisher.stats.conflated == 1 and publisher.stats.published == 3
    await publisher.close()


async def test_unmapped_ticks_are_counted_not_sent() -> None:
    sink = Sink()
    publisher = BatchPublisher(send=sink.send, flush_interval=0.001)
    publisher.offer([tick("", 1)])
    await asyncio.sleep(0.02)
    assert sink.batches == [] and publisher.stats.unmapped == 1
    await publisher.close()


async def test_a_slow_send_makes_bigger_batches_not_a_backlog() -> None:
    sent: list[int] = []

    async def slow_send(payload: bytes) -> None:
        await asyncio.sleep(0.05)
        sent.append(len(orjson.loads(payload)))

    publisher = BatchPublisher(send=slow_send, flush_interval=0.005)
    for i in range(100):
        publisher.offer([tick(f"K{i % 10}", i)])
        await asyncio.sleep(0.002)
    await publisher.close()
    assert sum(sent) <= 10 * len(sent)  # never more than one record per instrument per batch
    assert len(sent) < 10


async def test_a_failing_send_is_counted_and_publishing_goes_on() -> None:
    calls = 0

    async def flaky(payload: bytes) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("layer down")

    publisher = BatchPublisher(send=flaky, flush_interval=0.001)
    publisher.offer([tick("A", 1)])
    await asyncio.sleep(0.02)
    publisher.offer([tick("A", 2)])
    await asyncio.sleep(0.02)
    assert calls == 2 and publisher.stats.send_failures == 1 and publisher.stats.batches == 2
    await publisher.close()


async def test_changed_instruments_are_handed_to_persist_once_per_round() -> None:
    rounds: list[dict] = []

    async def persist(latest: dict) -> None:
        rounds.append({k: (p, r["ltp"]) for k, (p, r) in latest.items()})

    sink = Sink()
    publisher = BatchPublisher(send=sink.send, flush_interval=0.001, persist=persist,
                               persist_interval=0.05)  # fmt: skip
    publisher.start()
    publisher.offer([tick("A", 1), tick("B", 2)])
    await asyncio.sleep(0.01)
    publisher.offer([tick("A", 5)])
    await asyncio.sleep(0.07)
    assert rounds[0] == {"A": ("fyers", 5), "B": ("fyers", 2)}
    await publisher.close()
    assert len(rounds) == 1  # nothing changed since: nothing more to write


async def test_l2_is_written_in_the_same_flush(redis_url: str) -> None:
    client = aioredis.from_url(redis_url)
    store = RedisLatestStore(client, prefix="test:pub:l2:")
    sink = Sink()
    publisher = BatchPublisher(send=sink.send, store=store, flush_interval=0.002)
    publisher.offer([tick("NSE:A", 101), tick("NSE:A", 99, ProviderName.UPSTOX)])
    await asyncio.sleep(0.03)
    stored = await store.read(["NSE:A"])
    assert stored["NSE:A"]["fyers"]["ltp"] == 101 and stored["NSE:A"]["upstox"]["ltp"] == 99
    await publisher.close()
    await client.delete("test:pub:l2:NSE:A")
    await client.aclose()


async def test_a_slow_l2_write_never_holds_the_batches() -> None:
    class SlowStore:
        def __init__(self) -> None:
            self.writes: list[int] = []

        async def write_records(self, records: list[dict]) -> int:
            await asyncio.sleep(0.1)  # a Redis round trip gone slow
            self.writes.append(len(records))
            return len(records)

    sink = Sink()
    store = SlowStore()
    publisher = BatchPublisher(send=sink.send, store=store, flush_interval=0.005)  # type: ignore[arg-type]
    for i in range(20):
        publisher.offer([tick(f"K{i}", i)])
        await asyncio.sleep(0.01)
    assert len(sink.batches) >= 15  # one per tick, on time, while L2 lags behind
    await publisher.close()
    assert sum(store.writes) <= 20 and len(store.writes) <= 4  # conflated into few writes
