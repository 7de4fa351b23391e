"""Control messages to the feed workers, over the channel layer.

Writes that change what the pool must carry (instrument tier, priority, enabled, data mode;
provider accounts; an import) call ``pool_change_notify``; the message leaves after the
transaction commits, so a worker never reads the database before the change is visible. In
embedded mode the layer is in-process and the worker runs in the same process (the run
command); with Redis it is the pub/sub layer. A lost message costs at most one reconcile
interval: the workers re-read the database periodically anyway.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)

CONTROL_GROUP = "feeds.control"
# Group membership lapses after the layer's group_expiry (a day by default): renew it.
MEMBERSHIP_RENEWAL = 600.0


def pool_change_notify(*, reason: str) -> None:
    """Tell the feed workers to re-plan once the current transaction commits."""
    transaction.on_commit(partial(control_send, {"type": "pool.changed", "reason": reason}))


def control_send(message: dict[str, Any]) -> None:
    """Send a control message from sync code; failures are logged, never raised (the write
    that triggered it has committed and the periodic reconcile will catch up)."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(CONTROL_GROUP, message)
    except Exception as exc:
        logger.warning("feeds control: could not notify the workers (%s); they will pick "
                       "the change up at their next reconcile", exc)  # fmt: skip


async def control_send_async(message: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is not None:
        await layer.group_send(CONTROL_GROUP, message)


async def control_messages() -> AsyncIterator[dict[str, Any]]:
    """Every control message, for as long as the caller iterates."""
    layer = get_channel_layer()
    if layer is None:
        await asyncio.Event().wait()
        return
    channel = await layer.new_channel("feedsworker")
    await layer.group_add(CONTROL_GROUP, channel)
    try:
        while True:
            try:
                async with asyncio.timeout(MEMBERSHIP_RENEWAL):
                    message = await layer.receive(channel)
            except TimeoutError:
                await layer.group_add(CONTROL_GROUP, channel)
                continue
            yield message
    finally:
        try:
            await layer.group_discard(CONTROL_GROUP, channel)
        except Exception:  # shutting down; the membership lapses by itself
            logger.debug("feeds control: group_discard failed", exc_info=True)
