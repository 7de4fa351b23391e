"""Capped exponential back-off with full jitter, for reconnect loops."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(slots=True)
class Backoff:
    """Delay before reconnect attempt n: uniform in [0, min(cap, base * factor**n)].

    Full jitter (AWS architecture blog, "Exponential Backoff And Jitter") spreads the
    reconnects of many pool connections that failed together, so they do not stampede the
    provider. ``reset()`` after a connection has been healthy again.
    """

    base: float = 0.2
    factor: float = 2.0
    cap: float = 10.0
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def next_delay(self) -> float:
        # Bound the exponent too, so a long outage cannot overflow the float.
        ceiling = min(self.cap, self.base * self.factor ** min(self.attempt, 64))
        self.attempt += 1
        return self.rng.uniform(0, ceiling)

    def reset(self) -> None:
        self.attempt = 0
