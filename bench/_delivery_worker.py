"""The feed worker of ``delivery_e2e.py`` (a child process), with either publisher.

    .venv/bin/python bench/_delivery_worker.py --publisher batch    # this design
    .venv/bin/python bench/_delivery_worker.py --publisher naive    # the baseline

Settings come from the environment (``REDIS_URL``, the simulators' URLs and tokens), as for
``manage.py runfeeds``.

``batch`` runs exactly what ``manage.py runfeeds --no-simulators`` runs,
``feeds.runtime.feeds_serve`` (the worker plus ``batch_publisher_build``'s publisher: one
batch per ``MDHUB_FLUSH_MS`` to group ``market.ticks`` on the settings' pub/sub layer, and
the L2 write), in a process of the bench's own so that the publisher's counters can be read:
``batch_publisher_build`` is wrapped to keep the publisher it builds, and that publisher's
``send``, ``store.write_records`` and ``flush`` are wrapped to time them. Nothing else is
changed. ``--no-l2`` (a diagnostic, design ``design-nol2`` of the bench) drops the
publisher's L2 store, so that a flush is the channel-layer send alone.

``naive`` is the same worker (``feeds.runtime.feed_worker_build``) whose publish hook does
one ``group_send`` per tick to the tick's symbol group ``sym.<key>`` through
``channels_redis.core.RedisChannelLayer`` (default capacity 100), as a first Channels design
would. The hook is called on the worker's loop and must not block, so each tick's send is a
task; at most ``--max-in-flight`` run at once and a tick past that is dropped and counted
(``dropped_in_flight``). The layer itself drops silently when a receiving process's inbox
holds ``capacity`` messages; it logs that at INFO, which is counted here (``over_capacity``:
channels over capacity, summed over ``group_send`` calls).

stdin commands (one JSON line each): ``stats``, ``quit``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _delivery_common import naive_group, serve_commands

NAIVE_PREFIX = "naive"  # as _delivery_naive.py


class Timings:
    """Count, total and maximum duration of some awaited calls."""

    def __init__(self) -> None:
        self.count: Counter[str] = Counter()
        self.total: Counter[str] = Counter()
        self.max: dict[str, float] = {}

    def wrap(self, name: str, call: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(call)
        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.monotonic()
            try:
                return await call(*args, **kwargs)
            finally:
                took = time.monotonic() - started
                self.count[name] += 1
                self.total[name] += took
                self.max[name] = max(self.max.get(name, 0.0), took)

        return timed

    def summary(self) -> dict[str, Any]:
        """Totals since the start; ``max`` since the previous summary."""
        out = {
            name: {"count": n, "seconds": self.total[name], "max": self.max[name]}
            for name, n in self.count.items()
        }
        self.max = dict.fromkeys(self.max, 0.0)
        return out


class OverCapacity(logging.Handler):
    """Counts channels_redis's "%s of %s channels over capacity in group %s"."""

    def __init__(self, counts: Counter[str]) -> None:
        super().__init__(logging.INFO)
        self.counts = counts

    def emit(self, record: logging.LogRecord) -> None:
        if "over capacity" in str(record.msg):
            args = record.args if isinstance(record.args, tuple) else ()
            self.counts["over_capacity"] += int(args[0]) if args else 1


async def run_batch(args: argparse.Namespace) -> None:
    from feeds import runtime

    timings = Timings()
    built: list[Any] = []
    build = runtime.batch_publisher_build

    def keep(**kwargs: Any) -> Any:
        publisher = build(**kwargs)
        publisher.send = timings.wrap("send", publisher.send)
        publisher.flush = timings.wrap("flush", publisher.flush)  # type: ignore[method-assign]
        if args.no_l2:
            publisher.store = None  # diagnostic: no L2 write in the flush
        if publisher.store is not None:
            publisher.store.write_records = timings.wrap(  # type: ignore[method-assign]
                "l2_write", publisher.store.write_records
            )
        built.append(publisher)
        return publisher

    runtime.batch_publisher_build = keep  # type: ignore[assignment]
    stop = asyncio.Event()
    config = runtime.worker_config_from_settings(worker_id=args.worker_id)
    serving = asyncio.create_task(runtime.feeds_serve(stop, simulators=False, config=config))

    async def handle(command: str, words: list[str]) -> dict[str, Any]:
        if command == "stats":
            stats = dict(vars(built[-1].stats)) if built else {}
            return {**stats, "timings": timings.summary()}
        raise ValueError(f"unknown command {command!r}")

    await _serve(handle, serving, stop)


async def run_naive(args: argparse.Namespace) -> None:
    from channels_redis.core import RedisChannelLayer
    from django.conf import settings

    from feeds.cache.l2 import tick_record
    from feeds.runtime import feed_worker_build, worker_config_from_settings

    layer = RedisChannelLayer(hosts=[settings.REDIS_URL], prefix=NAIVE_PREFIX)
    counts: Counter[str] = Counter()
    core_logger = logging.getLogger("channels_redis.core")
    core_logger.setLevel(logging.INFO)
    core_logger.propagate = False
    core_logger.addHandler(OverCapacity(counts))
    loop = asyncio.get_running_loop()
    in_flight: set[asyncio.Task[None]] = set()
    timings = Timings()
    group_send = timings.wrap("group_send", layer.group_send)

    async def send(group: str, tick: dict[str, Any]) -> None:
        try:
            await group_send(group, {"type": "tick.update", "tick": tick})
            counts["sent"] += 1
        except Exception as exc:
            counts["failed"] += 1
            counts[f"failed:{type(exc).__name__}"] += 1
            if counts["failed"] in (1, 100, 10_000):
                logging.getLogger("bench").exception("group_send failed")

    def publish(ticks: list[Any]) -> None:
        for tick in ticks:
            if not tick.instrument:
                continue
            counts["ticks"] += 1
            if len(in_flight) >= args.max_in_flight:
                counts["dropped_in_flight"] += 1
                continue
            record = tick_record(tick)
            record["symbol"] = tick.instrument
            task = loop.create_task(send(naive_group(tick.instrument), record))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)

    config = worker_config_from_settings(worker_id=args.worker_id)
    worker = feed_worker_build(config=config, publish=publish)
    stop = asyncio.Event()
    serving = loop.create_task(worker.run(stop), name="naive worker")

    async def handle(command: str, words: list[str]) -> dict[str, Any]:
        if command == "stats":
            return {**counts, "in_flight": len(in_flight), "timings": timings.summary()}
        raise ValueError(f"unknown command {command!r}")

    try:
        await _serve(handle, serving, stop)
    finally:
        for pending in list(in_flight):
            pending.cancel()
        await worker.coordinator.close()
        await layer.close_pools()


async def _serve(
    handle: Callable[[str, list[str]], Awaitable[dict[str, Any]]],
    serving: asyncio.Task[None],
    stop: asyncio.Event,
) -> None:
    """Answer commands until end of input or ``quit``, or until the worker ends."""
    commands = asyncio.create_task(serve_commands(handle))
    try:
        await asyncio.wait([commands, serving], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.set()
        commands.cancel()
        await serving  # its error, if it ended on one, is raised here


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--publisher", choices=["batch", "naive"], required=True)
    parser.add_argument("--max-in-flight", type=int, default=64, help="naive only")
    parser.add_argument("--worker-id", default=None)
    parser.add_argument("--no-l2", action="store_true", help="batch only: skip the L2 write")
    args = parser.parse_args()
    args.worker_id = args.worker_id or f"bench-{args.publisher}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mdproject.settings")
    import django

    django.setup()
    asyncio.run(run_batch(args) if args.publisher == "batch" else run_naive(args))


if __name__ == "__main__":
    main()
