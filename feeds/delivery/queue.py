"""A client's outbound queue: latest value per symbol, bounded, with a slow-client verdict.

Each WebSocket client gets one. The fan-out puts every update for the symbols the client
asked for; the client's writer takes whatever is pending whenever the socket can take more.
A symbol that updates again before the writer took it is replaced in place (conflated): a
slow client gets fewer, newer updates and a count of what it missed, never a growing backlog.
Memory is bounded by the number of symbols the client may subscribe (the queue refuses a new
symbol past ``capacity``, which the consumer sets to the subscription limit).

A client that stays behind (its oldest pending update older than ``max_lag``) for longer than
``patience`` is told to go (``too_slow``): conflation keeps it from hurting anyone, but data
that old is no use to a trader and the socket is better closed with a clear reason.

Pure: no I/O, no asyncio, no Django; time is passed in (monotonic seconds).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

M = TypeVar("M")


@dataclass(frozen=True, slots=True)
class Batch(Generic[M]):
    """What the writer takes: the pending updates in first-queued order, how many updates
    were replaced by newer ones since the last take, and the age of the oldest one."""

    messages: list[M]
    conflated: int
    oldest_age: float


class QueueFull(Exception):
    """A new symbol past the queue's capacity (the consumer's subscription limit)."""


class ConflatingQueue(Generic[M]):
    def __init__(self, *, capacity: int, max_lag: float = 2.0, patience: float = 10.0) -> None:
        if capacity < 1 or max_lag <= 0 or patience < 0:
            raise ValueError("capacity >= 1, max_lag > 0 and patience >= 0 are required")
        self.capacity = capacity
        self.max_lag = max_lag
        self.patience = patience
        # symbol -> (message, when its oldest unsent update was queued)
        self._pending: dict[str, tuple[M, float]] = {}
        self._conflated = 0
        self.conflated_total = 0
        self.sent_total = 0
        self._behind_since: float | None = None

    def __len__(self) -> int:
        return len(self._pending)

    def put(self, symbol: str, message: M, now: float) -> bool:
        """Queue ``message`` as ``symbol``'s latest; True if it replaced an unsent one."""
        held = self._pending.get(symbol)
        if held is not None:
            # Keep the first-queued time: the client has been waiting since then.
            self._pending[symbol] = (message, held[1])
            self._conflated += 1
            self.conflated_total += 1
            return True
        if len(self._pending) >= self.capacity:
            raise QueueFull(f"{len(self._pending)} symbols pending, capacity {self.capacity}")
        self._pending[symbol] = (message, now)
        return False

    def discard(self, symbol: str) -> None:
        """The client unsubscribed: an unsent update for it must not go out."""
        self._pending.pop(symbol, None)

    def take(self, now: float) -> Batch[M]:
        """Everything pending, oldest first; the queue is empty afterwards."""
        pending, self._pending = self._pending, {}
        conflated, self._conflated = self._conflated, 0
        oldest = min((queued for _, queued in pending.values()), default=now)
        self.sent_total += len(pending)
        age = max(0.0, now - oldest)
        if age <= self.max_lag:
            # Caught up. A stale batch does not count: a client that reads a little now
            # and then, but never catches up, is still behind.
            self._behind_since = None
        return Batch([m for m, _ in pending.values()], conflated, age)

    def lag(self, now: float) -> float:
        """Age of the oldest pending update (0 when nothing is pending)."""
        if not self._pending:
            return 0.0
        return max(0.0, now - min(queued for _, queued in self._pending.values()))

    def too_slow(self, now: float) -> bool:
        """True once the client has been more than ``max_lag`` behind for ``patience``.

        Call it periodically (the hub's sweep does); a ``take`` of a batch no older than
        ``max_lag`` resets the clock."""
        if self.lag(now) <= self.max_lag:
            self._behind_since = None
            return False
        if self._behind_since is None:
            self._behind_since = now
        return now - self._behind_since >= self.patience
