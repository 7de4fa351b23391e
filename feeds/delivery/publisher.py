"""The feed worker's publisher: ticks in, one batch per flush interval out.

The worker's tick path calls ``offer`` with every decoded tick (no awaiting there). Ticks wait
at most ``flush_interval`` (a few ms): the first tick into an empty batch arms a timer, and the
flush then sends everything pending as one channel-layer message; the L2 write to Redis
(one pipelined round trip) runs beside it and never holds the next batch. Within a batch
only the latest tick per (instrument, provider) is kept: a client shown the newer value
loses nothing by missing the older one, and the batch is bounded by the number of
instruments carried, however fast they tick.

While a flush is in flight the next batch gathers; it goes as soon as that flush is done and
its own interval has passed, so a slow channel layer makes batches bigger, not a backlog.

Every ``persist_interval`` the last tick of each instrument that changed is handed to
``persist`` (the database's ``LastTick`` rows: the cache's last resort after a restart).

No Django: the send, the L2 store and the persist callable are handed in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from feeds.cache.l2 import RedisLatestStore, tick_record
from feeds.providers.ticks import Tick

logger = logging.getLogger(__name__)

PERSIST_CHUNK = 200  # last ticks per database write

Send = Callable[[bytes], Awaitable[None]]
Persist = Callable[[dict[str, tuple[str, dict[str, Any]]]], Awaitable[Any]]


def wire_record(tick: Tick) -> dict[str, Any]:
    """A tick as the batches carry it: its cache record plus its instrument and provider."""
    record = tick_record(tick)
    record["key"] = tick.instrument
    record["provider"] = str(tick.provider)
    return record


@dataclass
class PublisherStats:
    offered: int = 0
    conflated: int = 0
    unmapped: int = 0
    batches: int = 0
    published: int = 0
    send_failures: int = 0
    l2_failures: int = 0
    persisted: int = 0
    last_flush_seconds: float = 0.0
    max_batch: int = 0


class BatchPublisher:
    def __init__(
        self,
        *,
        send: Send,
        store: RedisLatestStore | None = None,
        flush_interval: float = 0.005,
        persist: Persist | None = None,
        persist_interval: float = 15.0,
    ) -> None:
        self.send = send
        self.store = store
        self.flush_interval = flush_interval
        self.persist = persist
        self.persist_interval = persist_interval
        self.stats = PublisherStats()
        self._pending: dict[tuple[str, str], Tick] = {}
        self._first_pending_at = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._flushing: asyncio.Task[None] | None = None
        self._dirty: dict[str, tuple[str, dict[str, Any]]] = {}
        self._l2_pending: dict[tuple[str, str], dict[str, Any]] = {}
        self._l2_writer: asyncio.Task[None] | None = None
        self._persister: asyncio.Task[None] | None = None
        self._closed = False

    # --- the tick path ---------------------------------------------------------------------

    def offer(self, ticks: Iterable[Tick]) -> None:
        """The worker's publish hook: queue ticks for the next batch; never blocks."""
        if self._closed:
            return
        pending = self._pending
        was_empty = not pending
        for tick in ticks:
            self.stats.offered += 1
            if not tick.instrument:
                self.stats.unmapped += 1  # no canonical key: no client can have asked for it
                continue
            slot = (tick.instrument, tick.provider)
            if slot in pending:
                self.stats.conflated += 1
            pending[slot] = tick
        if was_empty and pending:
            self._first_pending_at = time.monotonic()
            self._arm()

    def _arm(self) -> None:
        if self._timer is not None or self._flushing is not None:
            return  # armed already, or the running flush re-arms when it is done
        delay = max(0.0, self._first_pending_at + self.flush_interval - time.monotonic())
        self._timer = asyncio.get_running_loop().call_later(delay, self._start_flush)

    def _start_flush(self) -> None:
        self._timer = None
        self._flushing = asyncio.get_running_loop().create_task(self._flush(), name="publisher")

    async def _flush(self) -> None:
        try:
            await self.flush()
        finally:
            self._flushing = None
            if self._pending and not self._closed:
                self._arm()

    async def flush(self) -> None:
        """Send what is pending now: one channel-layer message, one L2 round trip."""
        if not self._pending:
            return
        ticks = list(self._pending.values())
        self._pending = {}
        records = [wire_record(t) for t in ticks]
        started = time.monotonic()
        await self._send(orjson.dumps(records))
        for record in records:
            self._dirty[record["key"]] = (record["provider"], record)
        if self.store is not None:
            # L2 is written beside the batches, never in their way: a slow Redis round trip
            # must not hold the next batch (measured: it made batches of thousands).
            for record in records:
                self._l2_pending[(record["key"], record["provider"])] = record
            if self._l2_writer is None or self._l2_writer.done():
                self._l2_writer = asyncio.get_running_loop().create_task(
                    self._write_l2(), name="publisher L2"
                )
        stats = self.stats
        stats.batches += 1
        stats.published += len(records)
        stats.max_batch = max(stats.max_batch, len(records))
        stats.last_flush_seconds = time.monotonic() - started

    async def _send(self, payload: bytes) -> None:
        try:
            await self.send(payload)
        except Exception:
            self.stats.send_failures += 1
            if self.stats.send_failures in (1, 10, 100) or self.stats.send_failures % 1000 == 0:
                logger.exception("publisher: batch not sent (%d failures so far)",
                                 self.stats.send_failures)  # fmt: skip

    async def _write_l2(self) -> None:
        """Write what is pending for L2, again and again until nothing is (latest per
        instrument and provider: what piles up while a write is in flight is conflated)."""
        assert self.store is not None
        while self._l2_pending:
            pending, self._l2_pending = self._l2_pending, {}
            await self._write_l2_once(list(pending.values()))

    async def _write_l2_once(self, records: list[dict[str, Any]]) -> None:
        assert self.store is not None
        try:
            await self.store.write_records(records)
        except Exception:
            self.stats.l2_failures += 1
            if self.stats.l2_failures in (1, 10, 100) or self.stats.l2_failures % 1000 == 0:
                logger.exception("publisher: L2 write failed (%d failures so far)",
                                 self.stats.l2_failures)  # fmt: skip

    # --- persistence -----------------------------------------------------------------------

    def start(self) -> None:
        if self.persist is not None and self._persister is None:
            self._persister = asyncio.get_running_loop().create_task(
                self._persist_every(), name="publisher persist"
            )

    async def _persist_every(self) -> None:
        while True:
            await asyncio.sleep(self.persist_interval)
            await self.persist_now()

    async def persist_now(self) -> None:
        if self.persist is None or not self._dirty:
            return
        dirty, self._dirty = self._dirty, {}
        items = list(dirty.items())
        # In chunks: one bulk write of thousands of rows holds the GIL long enough to stall
        # the tick path (measured: it was the p99 of end-to-end latency).
        for start in range(0, len(items), PERSIST_CHUNK):
            chunk = dict(items[start : start + PERSIST_CHUNK])
            try:
                await self.persist(chunk)
                self.stats.persisted += len(chunk)
            except Exception:
                logger.exception("publisher: persisting %d last ticks failed", len(chunk))
                # Keep them for the next round unless newer ones arrived meanwhile.
                for key, value in chunk.items():
                    self._dirty.setdefault(key, value)
            await asyncio.sleep(0)

    async def close(self) -> None:
        """Send what is pending, persist what changed, stop the timers."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._flushing is not None:
            with contextlib.suppress(Exception):
                await self._flushing
        with contextlib.suppress(Exception):
            await self.flush()
        if self._l2_writer is not None:
            with contextlib.suppress(Exception):
                await self._l2_writer
        if self._persister is not None:
            self._persister.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._persister
            self._persister = None
        await self.persist_now()
