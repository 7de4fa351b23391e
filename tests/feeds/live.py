"""Helpers for tests that run the real feed side: simulators on real sockets, the worker."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async

from feeds import services
from feeds.models import Instrument
from feeds.pool.worker import WorkerConfig
from feeds.providers.backoff import Backoff
from feeds.providers.simulation.universe import sim_instrument_from
from feeds.runtime import worker_config_from_settings
from feeds.selectors import instruments_for_simulation


async def until(predicate: Callable[[], bool], limit: float, what: str) -> float:
    """Poll until ``predicate()``; returns the seconds it took."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > limit:
            raise AssertionError(f"not within {limit} s: {what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


def universe() -> list:
    return [sim_instrument_from(i) for i in instruments_for_simulation()]


def _enable(count: int, *, tier: str, priority: int = 50, skip: int = 0) -> list[str]:
    """Enable ``count`` equities listed by both providers, in key order after ``skip``."""
    rows = list(
        Instrument.objects.filter(instrument_type="EQ")
        .exclude(fyers_token="")
        .exclude(upstox_key="")
        .order_by("key")[skip : skip + count]
    )
    ids = [r.pk for r in rows]
    services.instruments_set_enabled(instrument_ids=ids, enabled=True)
    services.instruments_set_tier(instrument_ids=ids, tier=tier)
    Instrument.objects.filter(pk__in=ids).update(priority=priority)
    return [r.key for r in rows]


enable = sync_to_async(_enable)


def live_worker_config(name: str, **overrides: Any) -> WorkerConfig:
    """A worker that notices failures and recovers fast, for tests of the live feed side."""
    return worker_config_from_settings(
        worker_id=f"{name}-{uuid.uuid4().hex[:8]}", lease_ttl=3.0, health_interval=0.05,
        client_options={"silence_timeout": 1.0, "backoff": Backoff(base=0.1, cap=1.0)},
        **overrides,
    )  # fmt: skip
