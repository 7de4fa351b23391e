"""What the performance monitor's latency measures cost on the delivery path.

Every update a client's writer sends is observed twice (receive -> sent, exchange -> sent) by
``DeliveryStats.sent``. This drives the real ``FanoutHub`` and ``ClientFeed`` writers (100
clients, 50 symbols each, a no-op socket) with batches of ticks, once with the real
``DeliveryStats`` and once with a baseline that only counts, in alternating rounds of the same
run, and prints updates/s and the ratio.

    .venv/bin/python bench/perf_overhead.py [--rounds 6] [--batches 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mdproject.settings")

from feeds.delivery.hub import (
    ClientFeed,
    DeliveryStats,
    FanoutHub,
    Limits,
    QueueItem,
)
from feeds.delivery.protocol import Mode

CLIENTS, SYMBOLS_EACH, UNIVERSE, BATCH = 100, 50, 500, 200


class CountingStats(DeliveryStats):
    """The baseline: the counters, no histograms."""

    def sent(self, items: list[QueueItem], conflated: int, now_ns: int) -> None:
        self.messages_sent += 1
        self.items_sent += len(items)
        self.conflated += conflated


async def run(stats: DeliveryStats, batches: int) -> float:
    """Updates sent per second through every client's writer."""
    hub = FanoutHub()
    hub.stats = stats

    async def send(_: str) -> None:
        return None

    feeds = []
    for n in range(CLIENTS):
        feed = ClientFeed(send_text=send, capacity=SYMBOLS_EACH, max_lag=60, patience=60,
                          updates_per_second=0)  # fmt: skip
        hub.user_state(n, _limits())
        hub.attach(n, feed)
        keys = [f"NSE:S{(n * 7 + i) % UNIVERSE}" for i in range(SYMBOLS_EACH)]
        hub.subscribe(feed, keys, Mode.LTP)
        feeds.append(feed)
    now_ms = time.time_ns() // 1_000_000
    records = [
        [{"key": f"NSE:S{(b * BATCH + i) % UNIVERSE}", "provider": "fyers", "ltp": 100 + i,
          "scale": 2, "recv_ns": time.time_ns(), "exchange_ts": now_ms} for i in range(BATCH)]
        for b in range(8)
    ]  # fmt: skip
    start = time.perf_counter()
    for b in range(batches):
        hub.dispatch(records[b % len(records)])
        await asyncio.sleep(0)  # the writers run
    for _ in range(10_000):  # the writers drain what is left
        if not any(len(f.queue) for f in feeds):
            break
        await asyncio.sleep(0)
    elapsed = time.perf_counter() - start
    for n, feed in enumerate(feeds):
        await hub.detach(n, feed)
    return stats.items_sent / elapsed


def _limits() -> Limits:
    return Limits(subscriptions=SYMBOLS_EACH, requests_per_second=10, updates_per_second=0,
                  connections=10)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--batches", type=int, default=2000)
    args = parser.parse_args()
    measured: dict[str, list[float]] = {"baseline (counters only)": [], "with latency": []}
    for _ in range(args.rounds):  # alternate, so drift hits both alike
        measured["baseline (counters only)"].append(asyncio.run(run(CountingStats(), args.batches)))
        measured["with latency"].append(asyncio.run(run(DeliveryStats(), args.batches)))
    base = statistics.median(measured["baseline (counters only)"])
    for name, rates in measured.items():
        rate = statistics.median(rates)
        print(f"{name:28s} {rate:12,.0f} updates/s (median of {len(rates)}), "
              f"ratio {rate / base:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
