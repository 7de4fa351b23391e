"""Django glue for the feed worker: its database backend, its configuration from settings,
and the embedded provider simulators.

``feeds.pool.worker`` knows nothing of Django; this module gives it the database through the
selectors and services (on Django's sync thread), the control channel through the channel
layer, and the coordinator through ``REDIS_URL``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections

from feeds.cache.l1 import l1_register, l1_unregister, latest_ticks_reader
from feeds.control import control_messages, control_send_async
from feeds.fanout import batch_publisher_build
from feeds.models import ProviderAccount
from feeds.pool.coordination import Coordinator, MemoryCoordinator, RedisCoordinator
from feeds.pool.distribution import Plan
from feeds.pool.pool import PoolInputs
from feeds.pool.worker import ControlMessage, FeedWorker, TickHook, WorkerConfig
from feeds.providers.backoff import Backoff
from feeds.providers.simulation.run import SimulatorSet, start_simulators
from feeds.providers.simulation.universe import sim_instrument_from
from feeds.selectors import instruments_for_simulation, pool_inputs_get
from feeds.services import placement_issues_record, pool_assignments_record
from feeds.tuning import HubTuning
from monitoring.runtime import perf_section_register, perf_section_unregister
from monitoring.services import connection_health_record
from validation.runtime import validator_build, validator_running

logger = logging.getLogger(__name__)

LOOPBACK = {"127.0.0.1", "localhost", "::1"}

T = TypeVar("T")

# Embedded mode: the one coordinator of this process (the worker's leases and heartbeats, read
# by the health check and the monitor as they would read Redis), and the loop it lives on.
_memory_coordinator = MemoryCoordinator()
_hub_loop: asyncio.AbstractEventLoop | None = None


def hub_coordinator_build() -> Coordinator:
    """Where the feed workers' leases and heartbeats live: a new client of ``REDIS_URL``, or
    in embedded mode this process's shared in-memory coordinator (do not close that one)."""
    if settings.REDIS_URL:
        return RedisCoordinator(settings.REDIS_URL)
    return _memory_coordinator


def memory_coordinator_is(coordinator: Coordinator) -> bool:
    """True for the process's shared in-memory coordinator (never closed by its users)."""
    return coordinator is _memory_coordinator


@dataclass(frozen=True, slots=True)
class HubAccess:
    """What sync code (Celery tasks) uses to reach the running hub."""

    coordinator: Coordinator

    async def send_control(self, message: ControlMessage) -> None:
        await control_send_async(message)


def hub_call(work: Callable[[HubAccess], Awaitable[T]], *, timeout: float = 10.0) -> T:
    """Run ``work`` against the hub's coordinator and control channel, from sync code.

    With Redis: on a loop of its own, with its own Redis client. Embedded: on the loop of the
    feed worker of this process (the in-process coordinator and channel layer are not
    thread-safe), or on a loop of its own when no worker runs here."""
    loop = _hub_loop
    if not settings.REDIS_URL and loop is not None and loop.is_running():
        access = HubAccess(coordinator=_memory_coordinator)
        return asyncio.run_coroutine_threadsafe(work(access), loop).result(timeout)

    async def run() -> T:
        coordinator = hub_coordinator_build()
        try:
            async with asyncio.timeout(timeout):
                return await work(HubAccess(coordinator=coordinator))
        finally:
            if not memory_coordinator_is(coordinator):
                await coordinator.close()

    return asyncio.run(run())


def _load_inputs() -> PoolInputs:
    close_old_connections()  # the worker lives for days; Django's request hooks never run
    return pool_inputs_get()


def _record_plan(plan: Plan, worker_id: str, holders: Mapping[str, str]) -> None:
    close_old_connections()
    pool_assignments_record(assignment=plan.assignment, worker_id=worker_id, holders=holders)
    placement_issues_record(left_out=plan.left_out, notes=plan.notes, worker_id=worker_id)


def _record_health(statuses: list[dict[str, Any]], worker_id: str) -> None:
    close_old_connections()
    connection_health_record(statuses=statuses, worker_id=worker_id)


class DjangoWorkerBackend:
    """``WorkerBackend`` on the database and the channel layer."""

    async def load_inputs(self) -> PoolInputs:
        return await sync_to_async(_load_inputs)()

    async def record_plan(self, plan: Plan, *, worker_id: str, holders: Mapping[str, str]) -> None:
        await sync_to_async(_record_plan)(plan, worker_id, holders)

    async def record_health(self, statuses: list[dict[str, Any]], *, worker_id: str) -> None:
        await sync_to_async(_record_health)(statuses, worker_id)

    def control_messages(self) -> AsyncIterator[ControlMessage]:
        return control_messages()

    async def send_control(self, message: ControlMessage) -> None:
        await control_send_async(message)

    async def close(self) -> None:
        # Django's sync thread runs one call at a time, in order: this one returns only
        # after any write a cancelled task started there has finished.
        await sync_to_async(close_old_connections)()


def worker_config_from_settings(**overrides: Any) -> WorkerConfig:
    feeds = settings.FEEDS
    values: dict[str, Any] = {
        "lease_ttl": feeds["LEASE_TTL"],
        "recover_after": feeds["RECOVER_AFTER"],
        "reconcile_interval": feeds["RECONCILE_INTERVAL"],
        "health_record_interval": feeds["HEALTH_RECORD_INTERVAL"],
        "client_options": {
            "silence_timeout": feeds["SILENCE_TIMEOUT"],
            # Reconnect quickly at first; the back-off still grows to its cap.
            "backoff": Backoff(base=0.2, cap=10.0),
        },
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    return WorkerConfig(**values)


def feed_worker_build(
    *,
    config: WorkerConfig | None = None,
    validate: TickHook | None = None,
    publish: TickHook | None = None,
) -> FeedWorker:
    """A worker wired to this hub's database, channel layer and Redis (or memory)."""
    return FeedWorker(
        backend=DjangoWorkerBackend(),
        coordinator=hub_coordinator_build(),
        config=config or worker_config_from_settings(),
        validate=validate,
        publish=publish,
    )


def _port(url: str) -> int:
    parts = urlsplit(url)
    if parts.hostname not in LOOPBACK:
        raise ValueError(f"{url}: the embedded simulators only serve on this machine")
    return parts.port or (443 if parts.scheme in ("https", "wss") else 80)


async def embedded_simulators_start() -> SimulatorSet:
    """Start both simulators where the settings point, over the instruments in the database,
    and give every provider account a simulator token through its token variable."""
    rows = await sync_to_async(lambda: list(instruments_for_simulation()))()
    ports = (
        _port(settings.FYERS["API_URL"]),
        _port(settings.FYERS["SOCKET_URL"]),
        _port(settings.UPSTOX["API_URL"]),
        _port(settings.UPSTOX["FEED_URL"]),
    )
    sims = await start_simulators([sim_instrument_from(r) for r in rows], ports=ports)
    accounts = await sync_to_async(lambda: list(ProviderAccount.objects.all()))()
    for account in accounts:
        # The simulators accept only their own tokens; values are never logged.
        os.environ[account.token_env] = sims.hub.tokens.issue(account.provider)
    logger.info(
        "simulators: FYERS on :%d/:%d, Upstox on :%d/:%d, %d instruments; tokens set for %d "
        "account(s)", *ports, len(rows), len(accounts),
    )  # fmt: skip
    return sims


@contextlib.asynccontextmanager
async def feed_worker_running(
    *, config: WorkerConfig | None = None, stop: asyncio.Event | None = None
) -> AsyncIterator[FeedWorker]:
    """A worker running on this loop with its validator, its publisher (channel layer, L2, L4)
    and its L1 registered, until the block ends. ``stop`` is set if the worker ends on its
    own."""
    publisher = batch_publisher_build()
    validator = validator_build(republish=publisher.offer)
    worker = feed_worker_build(config=config, validate=validator, publish=publisher.offer)
    validator.latest = worker.latest.get  # a late verdict is re-sent only on the latest tick
    l1_register("worker", latest_ticks_reader(worker.latest))
    global _hub_loop
    _hub_loop = asyncio.get_running_loop()
    publisher.start()
    default_flush = publisher.flush_interval

    def feeds_perf() -> dict[str, Any]:
        v, p = validator.stats, publisher.stats
        return {
            "worker": worker.id,
            "ticks": dict(worker.stats.ticks),
            "publisher": {"offered": p.offered, "conflated": p.conflated, "batches": p.batches,
                          "published": p.published, "send_failures": p.send_failures,
                          "flush_interval": publisher.flush_interval},
            "validation": {"checked": v.inline, "flagged": v.flagged, "deferred": v.deferred,
                           "dropped": v.dropped, "late_verdicts": v.late_verdicts,
                           "rechecks": v.rechecks},
        }  # fmt: skip

    def feeds_tuned(tuning: HubTuning) -> None:
        publisher.flush_interval = tuning.flush_interval or default_flush

    perf_section_register("feeds", feeds_perf, on_tuning=feeds_tuned)
    stop = stop or asyncio.Event()
    try:
        async with validator_running(validator):
            loop = asyncio.get_running_loop()
            task = loop.create_task(worker.run(stop), name=f"worker {worker.id}")
            task.add_done_callback(lambda _: stop.set())  # its error is raised at ``await``
            try:
                yield worker
            finally:
                stop.set()
                await task
    finally:
        perf_section_unregister("feeds")
        await publisher.close()
        l1_unregister("worker")
        if publisher.store is not None:
            await publisher.store.client.aclose()
        if not memory_coordinator_is(worker.coordinator):
            await worker.coordinator.close()


async def feeds_serve(
    stop: asyncio.Event, *, simulators: bool, config: WorkerConfig | None = None
) -> None:
    """The feed side of the hub until ``stop``: the simulators (when asked) and one worker."""
    sims = await embedded_simulators_start() if simulators else None
    try:
        async with feed_worker_running(config=config, stop=stop) as worker:
            logger.info("feed worker %s started (%s coordination), publishing every %g ms",
                        worker.id, "Redis" if settings.REDIS_URL else "in-process",
                        settings.DELIVERY["FLUSH_INTERVAL"] * 1000)  # fmt: skip
            await stop.wait()
    finally:
        if sims is not None:
            await sims.stop()
