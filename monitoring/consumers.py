"""The monitoring page's WebSocket, ``/ws/v1/monitor/``: the hub's state, pushed.

Thin: the state is ``monitoring.selectors.monitor_state_get``; this pushes it on connect and
every ``PAGE_INTERVAL`` seconds, and answers ``ping`` and ``refresh``. Staff only (see
``monitoring.access``); others are accepted, told why, and closed: 4001 when not logged in,
4003 when not staff (a refused handshake would reach the page as an anonymous 1006).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from typing import Any

import orjson
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from feeds.delivery.hub import TokenBucket
from feeds.delivery.protocol import message
from monitoring.access import monitor_access_allowed
from monitoring.selectors import monitor_state_get

logger = logging.getLogger(__name__)

DEFAULT_INTERVAL = 2.0
# An interval below this would make every open page a steady load on the database; above
# the upper bound the page would no longer be "live".
MIN_INTERVAL, MAX_INTERVAL = 0.5, 60.0


class CloseCode:
    NOT_LOGGED_IN = 4001
    FORBIDDEN = 4003


def push_interval() -> float:
    """Seconds between pushes: ``MONITORING["PAGE_INTERVAL"]`` (2 s by default), bounded."""
    value = settings.MONITORING.get("PAGE_INTERVAL", DEFAULT_INTERVAL)
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return DEFAULT_INTERVAL
    if not math.isfinite(seconds):
        return DEFAULT_INTERVAL
    return min(MAX_INTERVAL, max(MIN_INTERVAL, seconds))


class StateCache:
    """The rendered ``state`` message, shared by every monitoring socket of this process: the
    selector runs at most about twice per interval however many pages are open."""

    def __init__(self) -> None:
        self.text: str | None = None
        self.at = 0.0
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def clear(self) -> None:
        self.text = None

    async def get(self, *, max_age: float) -> str:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a lock belongs to one loop (tests run several)
            self._lock, self._loop = asyncio.Lock(), loop
        assert self._lock is not None
        async with self._lock:
            if self.text is None or time.monotonic() - self.at >= max_age:
                state = await database_sync_to_async(monitor_state_get)()
                self.text = message("state", **state)
                self.at = time.monotonic()
            return self.text


state_cache = StateCache()


class MonitorConsumer(AsyncWebsocketConsumer):
    pusher: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        self.bucket = TokenBucket(rate=2, burst=10, now=time.monotonic())
        await self.accept()
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close_with(CloseCode.NOT_LOGGED_IN, "not logged in: log in again")
            return
        if not monitor_access_allowed(user):
            await self.close_with(CloseCode.FORBIDDEN, "the monitoring page is for staff only")
            return
        self.interval = push_interval()
        self.pusher = asyncio.get_running_loop().create_task(self.push_forever())

    async def disconnect(self, code: int) -> None:
        if self.pusher is not None:
            self.pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.pusher
            self.pusher = None

    async def close_with(self, code: int, reason: str) -> None:
        # Daphne does not pass a close reason on, so it goes out as a last message as well.
        with contextlib.suppress(Exception):
            await self.send(message("closing", code=code, reason=reason))
        await self.close(code=code, reason=reason)

    async def push_forever(self) -> None:
        while True:
            await self.push()
            await asyncio.sleep(self.interval)

    async def push(self) -> None:
        try:
            text = await state_cache.get(max_age=self.interval / 2)
        except Exception:
            # A database hiccup must not end the page: say so and try again next time.
            logger.exception("monitor: state failed")
            text = message("error", code="internal_error", message="the state could not be read")
        await self.send(text_data=text)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        retry_after = self.bucket.take(time.monotonic())
        if retry_after:
            await self.error("rate_limited", "too many requests", retry_after=retry_after)
            return
        try:
            request = orjson.loads(text_data) if text_data is not None else None
        except orjson.JSONDecodeError:
            request = None
        if not isinstance(request, dict):
            await self.error("malformed_request", "expected a JSON object")
            return
        action, request_id = request.get("action"), request.get("id")
        if action == "ping":
            await self.send(message("pong", request_id, server_ts=time.time_ns() / 1e6))
        elif action == "refresh" and self.pusher is not None:
            await self.push()
        else:
            await self.error("unknown_action", f"unknown action {action!r}", request_id)

    async def error(self, code: str, text: str, request_id: Any = None, **fields: Any) -> None:
        await self.send(message("error", request_id, code=code, message=text, **fields))
