"""Django glue for the fan-out: the per-process hub on the channel layer, and the feed
worker's publisher with its L2 store and L4 persistence.

``feeds.delivery`` has no Django in it; this module hands it the channel layer, Redis and the
database, from the settings.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import close_old_connections

from feeds.cache.l1 import l1_register, l1_unregister
from feeds.cache.l2 import RedisLatestStore
from feeds.delivery.hub import BATCH_TYPE, TICKS_GROUP, FanoutHub
from feeds.delivery.publisher import BatchPublisher
from feeds.providers.backoff import Backoff
from feeds.services import last_ticks_record
from monitoring.runtime import perf_section_register, perf_section_unregister

logger = logging.getLogger(__name__)

_hubs: dict[asyncio.AbstractEventLoop, tuple[FanoutHub, list[asyncio.Task[None]]]] = {}


def fanout_hub_get() -> FanoutHub:
    """This process's hub, started on first use on the running loop (one per loop, so tests
    that run their own loops get their own)."""
    loop = asyncio.get_running_loop()
    entry = _hubs.get(loop)
    if entry is not None:
        return entry[0]
    for old_loop in [lp for lp in _hubs if lp.is_closed()]:
        del _hubs[old_loop]
    hub = FanoutHub()
    hub.batch_delay = settings.DELIVERY["FAULT_BATCH_DELAY"]
    if hub.batch_delay:
        logger.warning("fault drill: every tick batch delayed %.0f ms", hub.batch_delay * 1000)
    tasks = [
        loop.create_task(_receive_forever(hub), name="fanout hub"),
        loop.create_task(hub.sweep(), name="fanout sweep"),
    ]
    _hubs[loop] = (hub, tasks)
    l1_register("fanout", hub.l1)  # snapshots read this process's latest values first
    perf_section_register("delivery", hub.perf_snapshot)
    logger.info("fan-out hub started (group %s)", TICKS_GROUP)
    return hub


async def _receive_forever(hub: FanoutHub) -> None:
    """The hub's receive loop, started again after the channel layer fails (Redis down at
    start, a dropped connection): clients keep their subscriptions and get ticks again."""
    backoff = Backoff(base=0.2, cap=5.0)
    while True:
        try:
            await hub.run(get_channel_layer(), group=TICKS_GROUP)
        except asyncio.CancelledError:
            raise
        except Exception:
            delay = backoff.next_delay()
            logger.exception("fan-out hub: channel layer failed; again in %.1f s", delay)
            await asyncio.sleep(delay)


async def fanout_hub_stop() -> None:
    """Stop this loop's hub (tests and shutdown)."""
    entry = _hubs.pop(asyncio.get_running_loop(), None)
    if entry is None:
        return
    l1_unregister("fanout")
    perf_section_unregister("delivery")
    for task in entry[1]:
        task.cancel()
    await asyncio.gather(*entry[1], return_exceptions=True)


def _persist(latest: dict[str, tuple[str, dict[str, Any]]]) -> int:
    close_old_connections()
    return last_ticks_record(latest=latest)


def batch_publisher_build(*, redis_client: Any | None = None) -> BatchPublisher:
    """The feed worker's publisher: batches to the channel layer's tick group, L2 to Redis
    when ``REDIS_URL`` is set, L4 rows to the database."""
    layer = get_channel_layer()
    delivery = settings.DELIVERY

    async def send(payload: bytes) -> None:
        await layer.group_send(TICKS_GROUP, {"type": BATCH_TYPE, "data": payload})

    store = None
    if redis_client is None and settings.REDIS_URL:
        import redis.asyncio as aioredis

        redis_client = aioredis.from_url(settings.REDIS_URL)
    if redis_client is not None:
        store = RedisLatestStore(redis_client, ttl=delivery["L2_TTL"])
    return BatchPublisher(
        send=send,
        store=store,
        flush_interval=delivery["FLUSH_INTERVAL"],
        persist=sync_to_async(_persist),
        persist_interval=delivery["PERSIST_INTERVAL"],
    )
