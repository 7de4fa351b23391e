"""The channel layer and cache that the current mode selects really work.

Run twice by scripts/test.sh: embedded (in-process) and with REDIS_URL (a real Redis).
"""

from __future__ import annotations

import os
import uuid

from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache

from mdproject.celery import app as celery_app


def test_mode_matches_what_the_runner_asked_for():
    # scripts/test.sh states its intent; a bare pytest run infers it from REDIS_URL.
    expected = os.environ.get("MDHUB_TEST_MODE") or (
        "redis" if os.environ.get("REDIS_URL") else "embedded"
    )
    assert settings.EMBEDDED_MODE is (expected == "embedded")


async def test_channel_layer_group_round_trip():
    layer = get_channel_layer()
    group = f"test-{uuid.uuid4().hex[:8]}"
    channel = await layer.new_channel()
    await layer.group_add(group, channel)
    try:
        await layer.group_send(group, {"type": "tick.batch", "ticks": [["NSE:SBIN", 80015, 2]]})
        message = await layer.receive(channel)
    finally:
        await layer.group_discard(group, channel)
    assert message == {"type": "tick.batch", "ticks": [["NSE:SBIN", 80015, 2]]}


def test_cache_round_trip():
    key = f"test:{uuid.uuid4().hex}"
    cache.set(key, {"ltp": "800.15"}, timeout=30)
    assert cache.get(key) == {"ltp": "800.15"}
    cache.delete(key)
    assert cache.get(key) is None


def test_celery_app_reads_django_settings():
    assert celery_app.conf.broker_url == settings.CELERY_BROKER_URL
    assert celery_app.conf.beat_scheduler == "django_celery_beat.schedulers:DatabaseScheduler"
