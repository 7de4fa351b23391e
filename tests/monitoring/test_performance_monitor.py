"""The performance monitor against the real hub in one process: simulators on real sockets,
the feed worker and publisher, the fan-out hub and a WebSocket client through the ASGI app,
every part's perf heartbeat, and the ``monitoring.performance_report`` task run by a real
Celery worker thread. Two forced conditions: a slow path (every tick batch costs the fan-out
10 ms, the ``MDHUB_FAULT_BATCH_DELAY_MS`` drill) and a low cache hit rate (snapshots of slowly
ticking low-tier instruments)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from celery.contrib.testing.worker import start_worker

from feeds.delivery.hub import FanoutHub
from feeds.fanout import fanout_hub_get, fanout_hub_stop
from feeds.pool.worker import FeedWorker
from feeds.runtime import feed_worker_running
from feeds.selectors import cache_stats, market_data_close
from feeds.tuning import hub_tuning_get
from mdproject.celery import app
from monitoring.models import PerformanceAction, PerformanceReport
from monitoring.perf import LatencyHistogram
from monitoring.runtime import perf_section_unregister
from monitoring.services import MIN_DELIVERIES
from monitoring.tasks import performance_report
from tests.conftest import simulators_running
from tests.feeds.live import enable, live_worker_config, until
from tests.feeds.test_market_api import answer, connected, token_headers, user_make

pytestmark = pytest.mark.django_db(transaction=True)

PERF_BEAT = 0.2


@pytest.fixture
def celery_worker_thread() -> Iterator[None]:
    with start_worker(app, perform_ping_check=False, shutdown_timeout=30):
        yield


@pytest.fixture(autouse=True)
def _fresh_process(settings) -> None:
    """Fast perf beats, and this process's counters as if it had just started: the cache
    lookups of earlier tests, and a fan-out hub an earlier test left on its closed loop, are
    not this test's conditions."""
    settings.MONITORING = {**settings.MONITORING, "PERF_BEAT": PERF_BEAT}
    cache_stats().reset()
    perf_section_unregister("delivery")


async def report() -> dict[str, Any]:
    """One run of the task, by the Celery worker."""
    return await sync_to_async(lambda: performance_report.delay().get(timeout=20))()


def actions(setting: str) -> list[PerformanceAction]:
    rows = PerformanceAction.objects.filter(setting=setting)
    return list(rows.order_by("created_at", "pk"))


async def stream(keys: list[str], stop: asyncio.Event) -> None:
    """A trader subscribed to ``keys``, reading every update until ``stop``."""
    _, token = await user_make(f"trader-{time.monotonic_ns()}")
    async with connected(token_headers(token)) as ws:
        await answer(ws, "welcome")
        await ws.send_json_to({"action": "subscribe", "id": 1, "symbols": keys})
        await answer(ws, "snapshot")
        while not stop.is_set():
            try:
                await ws.receive_json_from(timeout=0.5)
            except TimeoutError:
                continue


def recent_mean(hub: FanoutHub, since: LatencyHistogram) -> float | None:
    return hub.stats.receive.minus(since).mean


async def test_a_slow_path_widens_the_flush_and_a_change_that_did_not_help_is_reverted(
    celery_worker_thread, sims, settings
) -> None:
    # Every tick batch costs the fan-out 100 ms (at most 10 batches/s) while the simulators'
    # steps bring 20 or more a second: it falls further behind, whatever the flush interval.
    settings.DELIVERY = {**settings.DELIVERY, "FAULT_BATCH_DELAY": 0.1, "FLUSH_INTERVAL": 0.005}
    keys = await enable(10, tier="high_frequency")
    stop = asyncio.Event()
    async with feed_worker_running(config=live_worker_config("perf")) as worker:
        hub = fanout_hub_get()
        assert hub.batch_delay == 0.1
        client = asyncio.create_task(stream(keys, stop))
        try:
            await until(lambda: hub.stats.receive.total > 50, 20, "updates delivered")
            mark = hub.stats.receive.copy()
            await until(lambda: (recent_mean(hub, mark) or 0) > 150, 20, "a backlog")

            first = await report()
            assert first["latency_mean_ms"] > 80, first
            [widen] = await sync_to_async(actions)("flush_interval")
            assert (widen.kind, widen.setting, widen.before, widen.after) == (
                "widen_flush", "flush_interval", 0.005, 0.02)  # fmt: skip
            assert widen.metric_before == pytest.approx(first["latency_mean_ms"], abs=0.01)
            assert widen.helped is None and "above 80 ms" in widen.reason

            # Every process applies the tuning at its next perf beat.
            await until(lambda: publisher_flush(worker) == 0.02, 5, "the flush widened")
            assert hub_tuning_get().flush_interval == 0.02
            # The window right after a change is its settling time: reported, not judged.
            settling = await report()
            assert not any("flush_interval" in a for a in settling["actions"])
            since = hub.stats.receive.total  # a window with enough updates to judge by
            await until(lambda: hub.stats.receive.total > since + 2 * MIN_DELIVERIES, 30, "more")

            third = await report()
            await sync_to_async(widen.refresh_from_db)()
            assert widen.helped is False, (first, settling, third)
            assert widen.metric_after == pytest.approx(third["latency_mean_ms"], abs=0.01)
            assert widen.metric_after > 80
            revert = await sync_to_async(lambda: PerformanceAction.objects.get(kind="revert"))()
            assert (revert.setting, revert.before, revert.after) == ("flush_interval", 0.02, 0.005)
            assert "did not help" in revert.reason
            assert third["tuning"]["flush_interval"] is None  # the configured default again
            await until(lambda: publisher_flush(worker) == 0.005, 5, "the flush restored")
            # Not tried again within the retry time, though the latency is still high.
            assert not any("flush_interval" in a for a in (await report())["actions"])
            latest = await sync_to_async(lambda: PerformanceReport.objects.first())()
            assert latest.clients == 1 and latest.ticks_by_provider["fyers"] > 0
            assert latest.ticks_by_connection["fyers:primary:0"] > 0
        finally:
            stop.set()
            await client
            await fanout_hub_stop()
            await market_data_close()


def publisher_flush(worker: FeedWorker) -> float:
    assert worker.publish is not None
    return worker.publish.__self__.flush_interval  # the publisher's bound ``offer``


@pytest.fixture
async def slow_market(sample_import, settings, monkeypatch) -> AsyncIterator[Any]:
    # One tick a second per instrument: a snapshot rarely finds one younger than 100 ms.
    async with simulators_running(settings, monkeypatch, ticks_per_second=1) as sims:
        yield sims


async def test_a_low_hit_rate_lengthens_low_tier_freshness_and_it_helps(
    celery_worker_thread, slow_market, settings
) -> None:
    settings.DELIVERY = {**settings.DELIVERY, "FRESH_AGE": 0.1}
    keys = await enable(10, tier="low_frequency")
    _, token = await user_make("snapshots")
    async with feed_worker_running(config=live_worker_config("perf")) as worker:
        try:
            await until(lambda: len(worker.latest) >= 10, 15, "every instrument ticking")

            async def snapshots(rounds: int) -> list[dict[str, Any]]:
                """Subscribe and unsubscribe ``rounds`` times: a snapshot of ten each time."""
                sources = []
                async with connected(token_headers(token)) as ws:
                    await answer(ws, "welcome")
                    for n in range(rounds):
                        await ws.send_json_to({"action": "subscribe", "id": n, "symbols": keys})
                        sources += (await answer(ws, "snapshot"))["data"]
                        await ws.send_json_to({"action": "unsubscribe", "id": n,
                                               "symbols": keys})  # fmt: skip
                        await answer(ws, "unsubscribed")
                        await asyncio.sleep(0.05)
                return sources

            await snapshots(10)
            first = await report()
            assert first["cache_efficiency"] < 0.70, first
            [longer] = await sync_to_async(actions)("low_tier_fresh_age")
            assert (longer.kind, longer.setting, longer.before, longer.after) == (
                "lengthen_low_tier_freshness", "low_tier_fresh_age", 0.1, 2.0)  # fmt: skip
            assert longer.metric_before == pytest.approx(first["cache_efficiency"], abs=1e-4)

            await until(lambda: hub_tuning_get().low_tier_fresh_age == 2.0, 5, "applied")
            settling = await report()  # the settling window: not judged yet
            assert not any("low_tier_fresh_age" in a for a in settling["actions"])
            items = await snapshots(10)
            # What the trader sees: mostly in-memory values (a tick more than 2 s apart still
            # sends a snapshot to REST), none of them marked stale.
            assert sum(i["source"] in ("l1", "l2") for i in items) >= 0.7 * len(items)
            assert not any(i["stale"] for i in items if i["source"] in ("l1", "l2"))

            second = await report()
            await sync_to_async(longer.refresh_from_db)()
            assert longer.helped is True and second["cache_efficiency"] >= 0.7, second
            assert longer.metric_after == pytest.approx(second["cache_efficiency"], abs=1e-4)
        finally:
            await fanout_hub_stop()
            await market_data_close()
