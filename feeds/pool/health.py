"""Connection health: which broker connections are unavailable for symbol placement.

A pure state machine (no I/O, no asyncio, no Django, no clock): ``HealthTracker`` is fed the
state changes of the feed clients (``observe``) and a periodic ``tick``, each with ``now`` in
monotonic seconds, and keeps the set of connections that ``distribute`` must treat as
unavailable (``unavailable()``). States are the values of ``feeds.providers.base.ClientState``;
the enum or its plain string value are both accepted.

The rules:

1. "down" or "degraded": unavailable at once (failover is immediate).
2. "connecting": a brand-new connection (never live, never failed) stays available for
   ``connect_grace`` seconds from when it was first observed, so that its first connect does
   not fail its symbols over; past the grace it is unavailable. A connection that is
   unavailable stays so while connecting. A connection that was available and not brand-new
   (it has been live) becomes unavailable at once: it lost its socket.
3. "live" on an unavailable connection starts the recovery clock; it becomes available after
   ``recover_after`` seconds of continuous "live". Any other state resets the clock.
4. Flapping: becoming unavailable within ``flap_window`` seconds of the last recovery doubles
   the connection's own ``recover_after`` (capped at ``max_recover_after``); after
   ``flap_window`` seconds of continuous availability it returns to the base value.
5. "closed" or ``forget`` removes the connection: it is not unavailable, it is gone. A later
   ``observe`` of the same id starts over as a brand-new connection.
6. A connection never observed (or removed) is available.

Time rules take effect at the instant they are due (first seen + grace, live since +
recover_after, available since + flap_window), whichever ``observe`` or ``tick`` notices them
first, so the outcome does not depend on how often ``tick`` runs; only when the change is
reported does. ``observe`` first brings that connection up to ``now`` under its previous state,
then applies the new one; it never touches other connections (their due changes are reported by
the next ``tick``). A ``now`` earlier than one already seen is read as the latest one seen.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

K = TypeVar("K", bound=Hashable)

CONNECTING: Final = "connecting"
LIVE: Final = "live"
DEGRADED: Final = "degraded"
DOWN: Final = "down"
CLOSED: Final = "closed"
STATES: Final = frozenset({CONNECTING, LIVE, DEGRADED, DOWN, CLOSED})


@dataclass(slots=True)
class _Health:
    state: str
    first_seen: float
    recover_after: float  # this connection's own value (rule 4)
    available: bool = True
    since: float = 0.0  # when ``available`` last changed, or first seen
    fresh: bool = True  # never live, never failed (rule 2)
    live_since: float | None = None  # start of the continuous live run while unavailable
    recovered_at: float | None = None  # the last unavailable -> available change
    flaps: int = 0  # failures within flap_window of a recovery since the last reset
    cause: str = ""  # why it last became unavailable


class HealthTracker(Generic[K]):
    """Unavailable connections from their clients' state changes (see the module docstring)."""

    def __init__(
        self,
        *,
        recover_after: float = 5.0,
        connect_grace: float = 3.0,
        flap_window: float = 60.0,
        max_recover_after: float = 60.0,
    ) -> None:
        for name, value in (
            ("recover_after", recover_after),
            ("connect_grace", connect_grace),
            ("flap_window", flap_window),
            ("max_recover_after", max_recover_after),
        ):
            if not value >= 0:  # also refuses NaN
                raise ValueError(f"{name} must be >= 0, got {value!r}")
        if max_recover_after < recover_after:
            raise ValueError(
                f"max_recover_after ({max_recover_after!r}) < recover_after ({recover_after!r})"
            )
        self.recover_after = recover_after
        self.connect_grace = connect_grace
        self.flap_window = flap_window
        self.max_recover_after = max_recover_after
        self._conns: dict[K, _Health] = {}
        self._unavailable: frozenset[K] = frozenset()
        self._latest = float("-inf")

    # --- public API ----------------------------------------------------------------------

    def observe(self, conn: K, state: str, now: float) -> bool:
        """Record ``conn``'s current state; True when its availability changed."""
        value = _state_value(state)
        now = self._clock(now)
        health = self._conns.get(conn)
        if value == CLOSED:
            self.forget(conn)
            return health is not None and not health.available
        if health is None:
            health = self._conns[conn] = _Health(
                state=value, first_seen=now, recover_after=self.recover_after, since=now
            )
            before = True
        else:
            before = health.available
            self._advance(health, now)
        self._apply(health, value, now)
        return self._settle(conn, health, before)

    def tick(self, now: float) -> bool:
        """Apply the time rules that are due; True if any availability changed."""
        now = self._clock(now)
        changed = False
        for health in self._conns.values():
            before = health.available
            self._advance(health, now)
            if health.available != before:
                changed = True
        if changed:
            self._unavailable = self._collect()
        return changed

    def unavailable(self) -> frozenset[K]:
        """Connections not to place symbols on, as of the last ``observe`` / ``tick``."""
        return self._unavailable

    def forget(self, conn: K) -> None:
        """The connection was closed on purpose: drop everything known about it."""
        health = self._conns.pop(conn, None)
        if health is not None and not health.available:
            self._unavailable = self._unavailable - {conn}

    def status(self, conn: K, now: float) -> dict[str, object]:
        """What is known about ``conn``: availability as of the last ``observe`` / ``tick``
        (like ``unavailable()``; this does not advance anything), ``recovering_for`` up to
        ``now``."""
        health = self._conns.get(conn)
        if health is None:
            return {
                "available": True,
                "state": None,
                "since": None,
                "flaps": 0,
                "recover_after": self.recover_after,
                "recovering_for": None,
                "reason": "unknown",
            }
        recovering_for = None
        if not health.available and health.live_since is not None:
            recovering_for = max(0.0, now - health.live_since)
        return {
            "available": health.available,
            "state": health.state,
            "since": health.since,
            "flaps": health.flaps,
            "recover_after": health.recover_after,
            "recovering_for": recovering_for,
            "reason": _reason(health),
        }

    # --- rules ---------------------------------------------------------------------------

    def _clock(self, now: float) -> float:
        self._latest = max(self._latest, now)
        return self._latest

    def _advance(self, health: _Health, now: float) -> None:
        """Apply the time rules due by ``now`` under the current state, each at its own time."""
        if health.available and health.state == CONNECTING and health.fresh:
            expiry = health.first_seen + self.connect_grace
            if now >= expiry:  # rule 2: the first connect took too long
                self._fail(health, expiry, "connect grace expired")
        if not health.available and health.state == LIVE and health.live_since is not None:
            due = health.live_since + health.recover_after
            if now >= due:  # rule 3
                self._recover(health, due)
        if (
            health.available
            and now >= health.since + self.flap_window
            and (health.flaps or health.recover_after != self.recover_after)
        ):  # rule 4: a flap_window of continuous availability
            health.flaps = 0
            health.recover_after = self.recover_after

    def _apply(self, health: _Health, value: str, now: float) -> None:
        """The new state at ``now`` (after ``_advance`` to ``now``)."""
        health.state = value
        if value == LIVE:
            health.fresh = False
            if not health.available:
                if health.live_since is None:
                    health.live_since = now
                self._advance(health, now)  # recover_after may be 0
            return
        health.live_since = None  # rule 3: any other state resets the recovery clock
        if value == CONNECTING:
            if health.available and not health.fresh:
                self._fail(health, now, "connection lost")  # it had been live
            elif health.available:
                self._advance(health, now)  # rule 2: brand-new, inside or past its grace
            return
        self._fail(health, now, value)  # rule 1: down / degraded

    def _fail(self, health: _Health, at: float, cause: str) -> None:
        health.fresh = False
        health.live_since = None
        if not health.available:
            return
        if health.recovered_at is not None and at - health.recovered_at < self.flap_window:
            health.flaps += 1  # rule 4
            health.recover_after = min(health.recover_after * 2, self.max_recover_after)
        health.available = False
        health.since = at
        health.cause = cause

    def _recover(self, health: _Health, at: float) -> None:
        health.available = True
        health.since = at
        health.recovered_at = at
        health.live_since = None

    def _settle(self, conn: K, health: _Health, before: bool) -> bool:
        if health.available == before:
            return False
        if health.available:
            self._unavailable = self._unavailable - {conn}
        else:
            self._unavailable = self._unavailable | {conn}
        return True

    def _collect(self) -> frozenset[K]:
        return frozenset(conn for conn, health in self._conns.items() if not health.available)


def _state_value(state: str) -> str:
    value = str(state)  # a StrEnum member's str() is its value
    if value not in STATES:
        raise ValueError(f"unknown client state {state!r}")
    return value


def _reason(health: _Health) -> str:
    if health.state == LIVE:
        return "live" if health.available else "recovering"
    if health.state == CONNECTING:
        return "connecting (grace)" if health.available else f"reconnecting ({health.cause})"
    return health.state  # down / degraded
