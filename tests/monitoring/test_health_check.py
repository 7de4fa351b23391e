"""The health check against the real feed side: simulators on real sockets, the feed worker
as ``runhub``/``runfeeds`` build it, and the ``monitoring.health_check`` task run by a real
Celery worker thread over the broker of the mode under test (in memory, or Redis)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from celery.contrib.testing.worker import start_worker

from feeds.pool.distribution import Conn, connection_name
from feeds.pool.worker import FeedWorker
from feeds.providers.simulation.run import SimulatorSet
from feeds.runtime import feed_worker_running
from mdproject.celery import app
from monitoring.models import Alert, ConnectionHealth, HealthAction
from monitoring.tasks import health_check
from tests.feeds.live import enable, live_worker_config, until

pytestmark = pytest.mark.django_db(transaction=True)

CHECK_INTERVAL = 5.0  # the beat schedule's interval
FYERS0 = Conn("fyers", "primary", 0)


@pytest.fixture
def celery_worker_thread() -> Iterator[None]:
    with start_worker(app, perform_ping_check=False, shutdown_timeout=30):
        yield


@pytest.fixture
async def hub(sims: SimulatorSet) -> AsyncIterator[tuple[list[str], FeedWorker]]:
    keys = await enable(6, tier="high_frequency")  # on FYERS connection 0, listed by both
    # Symbols of a failed connection come back after 1 s of it being live again.
    config = live_worker_config("health", recover_after=1.0)
    async with feed_worker_running(config=config) as worker:
        await until(lambda: all(worker.latest.get(k, "fyers") for k in keys), 15, "ticking")
        yield keys, worker


async def check() -> dict[str, Any]:
    """One run of the task, by the Celery worker."""
    return await sync_to_async(lambda: health_check.delay().get(timeout=20))()


def fyers_ticks_since(worker: FeedWorker, keys: list[str], since_ns: int) -> bool:
    return all(
        (tick := worker.latest.providers(key).get("fyers")) is not None and tick.recv_ns > since_ns
        for key in keys
    )


async def test_a_stalled_connection_is_unhealthy_within_one_interval_and_recovers(
    celery_worker_thread, hub, sims: SimulatorSet
) -> None:
    keys, worker = hub
    name = connection_name(FYERS0)
    deadline = time.monotonic() + 5
    while (await check())["verdicts"].get(name) != "healthy":
        assert time.monotonic() < deadline, "not healthy at the start"

    stalled_at = time.monotonic()
    assert sims.fyers.fault_stall("all", 2.5) == 1
    verdict = ""
    while time.monotonic() - stalled_at < CHECK_INTERVAL:  # the next scheduled check at worst
        verdict = (await check())["verdicts"][name]
        if verdict == "unhealthy":
            break
    assert verdict == "unhealthy", "not marked unhealthy within one check interval"

    row = await sync_to_async(
        lambda: ConnectionHealth.objects.filter(connection_id=name, verdict="unhealthy").first()
    )()
    assert row is not None and "failed over by its worker" in row.note
    alert = await sync_to_async(lambda: Alert.objects.get(kind="connection_unhealthy"))()
    assert alert.subject == name and alert.is_open

    # The symbols recover on FYERS (the worker reconnects; they return after the hysteresis)
    # and the next check says so and closes the alert.
    since = time.time_ns()
    await until(lambda: fyers_ticks_since(worker, keys, since), 20, "FYERS ticks again")

    def back_home() -> bool:
        plan = worker.plan
        return plan is not None and all(p.conn == FYERS0 for k in keys for p in plan.assignment[k])

    await until(back_home, 10, "the symbols back on their connection")
    deadline = time.monotonic() + 10
    while (await check())["verdicts"][name] != "healthy":
        assert time.monotonic() < deadline, "not healthy again"
    await sync_to_async(alert.refresh_from_db)()
    assert not alert.is_open


async def test_a_silent_connection_that_still_answers_pings_gets_a_failover_order(
    celery_worker_thread, hub, sims: SimulatorSet, settings
) -> None:
    settings.MONITORING = {**settings.MONITORING, "DATA_SILENCE": 1.5}
    keys, worker = hub
    name = connection_name(FYERS0)
    # Muted: no data, pings answered. The worker's own watchdog sees a quiet, healthy socket.
    assert sims.fyers.fault_mute("all", 60) == 1
    muted_at = time.monotonic()
    result: dict[str, Any] = {}
    while not result.get("ordered"):
        assert time.monotonic() - muted_at < 1.5 + CHECK_INTERVAL, "no order"
        result = await check()
    assert result["ordered"] == [name]
    assert result["verdicts"][name] == "unhealthy"
    assert worker.pool.clients[FYERS0].state.value in ("live", "degraded", "connecting")

    # The worker restarts the socket; the new one is not muted, so FYERS ticks come again.
    since = time.time_ns()
    await until(lambda: worker.stats.ordered_restarts == 1, 5, "the order carried out")
    await until(lambda: fyers_ticks_since(worker, keys, since), 15, "FYERS ticks again")
    assert worker.pool.clients[FYERS0].stats.restarts == 1
    ordered = await sync_to_async(
        lambda: ConnectionHealth.objects.get(action=HealthAction.FAILOVER_ORDERED)
    )()
    assert ordered.connection_id == name and "no data for" in ordered.note
    # No second order while the first is fresh, even if the next check came early.
    assert not (await check())["ordered"]
