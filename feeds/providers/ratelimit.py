"""Client-side rate limiting for provider REST calls.

Each provider publishes limits over several windows at once (FYERS: 10/s and 200/min;
Upstox: 50/s and 500/min). A call spends one unit in every window. A caller may wait a
bounded time for room; anything that cannot fit is refused with ``RateLimited`` saying
why, before the request is sent.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from feeds.providers.errors import RateLimited


@dataclass(frozen=True, slots=True)
class Window:
    limit: int
    seconds: float

    def __str__(self) -> str:
        per = {1.0: "s", 60.0: "min", 1800.0: "30 min", 86400.0: "day"}.get(
            self.seconds, f"{self.seconds:g} s"
        )
        return f"{self.limit}/{per}"


class RateLimiter:
    """Sliding-window limiter over several windows; not thread-safe (one event loop)."""

    def __init__(
        self,
        windows: Sequence[Window],
        *,
        name: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not windows:
            raise ValueError("at least one window")
        self.windows = tuple(sorted(windows, key=lambda w: w.seconds))
        self.name = name
        self._clock = clock
        # Send times of the calls still inside the longest window; bounded by its limit.
        self._sent: deque[float] = deque(maxlen=max(w.limit for w in self.windows))
        self.refused = 0

    def delay_for(self, calls: int = 1) -> float:
        """Seconds until ``calls`` more calls fit every window (0 when they fit now)."""
        too_many = [w for w in self.windows if calls > w.limit]
        if too_many:
            self.refused += 1
            raise RateLimited(
                f"{self.name or 'provider'}: {calls} calls at once exceed the budget "
                f"of {too_many[0]}; split the request over time"
            )
        now = self._clock()
        delay = 0.0
        sent = list(self._sent)
        for window in self.windows:
            recent = [t for t in sent if t > now - window.seconds]
            excess = len(recent) + calls - window.limit
            if excess > 0:
                # Wait until the oldest `excess` calls leave this window.
                delay = max(delay, recent[excess - 1] + window.seconds - now)
        return delay

    def try_acquire(self, calls: int = 1) -> bool:
        if self.delay_for(calls) > 0:
            return False
        now = self._clock()
        self._sent.extend([now] * calls)
        return True

    async def acquire(self, calls: int = 1, *, max_wait: float = 1.0) -> None:
        """Wait (at most ``max_wait`` seconds) for room, then spend it.

        Raises ``RateLimited`` with ``retry_after`` when the wait would be longer: the caller
        decides whether to try later or fall back to another cache layer.
        """
        while True:
            delay = self.delay_for(calls)
            if delay <= 0:
                now = self._clock()
                self._sent.extend([now] * calls)
                return
            if delay > max_wait:
                self.refused += 1
                raise RateLimited(
                    f"{self.name or 'provider'}: rate budget "
                    f"{', '.join(map(str, self.windows))} is spent; retry in {delay:.2f} s",
                    retry_after=delay,
                )
            max_wait -= delay
            await asyncio.sleep(delay)
