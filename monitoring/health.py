"""The health check's verdict on one broker connection, from its heartbeat.

Pure (no Django, no I/O): the health-check service reads the heartbeats the feed workers write
(``FeedWorker.connection_statuses``) and the connection's previous record, and calls
``connection_verdict``. The thresholds, in order (the first that applies decides):

unhealthy
  * no heartbeat for ``beat_stale`` seconds: the worker holding it stopped reporting (the
    service releases a stopped worker's connections to the others);
  * the worker has failed it over (down, silent, refused): already handled, no order;
  * live, carrying symbols, the market open, and no data for ``data_silence`` seconds while
    pings are still answered: the worker's own watchdog cannot tell this from a quiet market,
    so the check **orders a failover** (the worker restarts the socket; its symbols move to
    healthy connections meanwhile and come back once it has been live a while).
degraded
  * connecting, or live again but still inside its recovery hysteresis;
  * no data for half of ``data_silence`` (market open, symbols carried);
  * reconnected, or frame errors, since the previous check.
healthy
  * otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

HEALTHY: Final = "healthy"
DEGRADED: Final = "degraded"
UNHEALTHY: Final = "unhealthy"


@dataclass(frozen=True, slots=True)
class HealthThresholds:
    beat_stale: float = 5.0  # seconds without a heartbeat: its worker stopped reporting
    data_silence: float = 10.0  # seconds without data while pings are answered
    order_cooldown: float = 30.0  # at most one failover order per connection this often


@dataclass(frozen=True, slots=True)
class Previous:
    """The connection's last record (for what changed since)."""

    reconnects: int
    errors_total: int
    ordered_at: float | None = None  # epoch seconds of the last failover order, if any


@dataclass(frozen=True, slots=True)
class Verdict:
    verdict: str
    reason: str
    order: bool = False  # send the worker a failover order


def _seconds_since(ns: object, now: float) -> float | None:
    return now - ns / 1e9 if isinstance(ns, int) and ns > 0 else None


def errors_total(beat: Mapping[str, Any]) -> int:
    errors = beat.get("errors")
    return sum(int(n) for n in errors.values()) if isinstance(errors, Mapping) else 0


def connection_verdict(
    *,
    beat: Mapping[str, Any],
    previous: Previous | None,
    now: float,
    market_open: bool,
    thresholds: HealthThresholds,
) -> Verdict:
    """The verdict on one connection from its heartbeat ``beat`` at ``now`` (epoch seconds).

    ``market_open`` is whether the exchanges expect ticks now; the client's own view (Upstox
    announces the market status) must agree too."""
    beat_age = now - float(beat.get("at") or 0.0)
    if beat_age > thresholds.beat_stale:
        return Verdict(UNHEALTHY, f"no heartbeat for {beat_age:.0f} s (its worker stopped?)")
    state = str(beat.get("state", ""))
    if not beat.get("available", True):
        if state == "live":
            return Verdict(DEGRADED, "live again; its symbols return after the hysteresis")
        return Verdict(UNHEALTHY, f"failed over by its worker ({beat.get('reason') or state})")
    if state in ("connecting", "down"):
        return Verdict(DEGRADED, f"{state} ({beat.get('reason') or 'no reason given'})")

    expecting = market_open and bool(beat.get("market_open", True)) and int(beat.get("symbols", 0))
    quiet = _seconds_since(beat.get("last_message_ns"), now)
    if expecting and quiet is None:
        # Never any data: measure from when it went live.
        quiet = _seconds_since(beat.get("live_since_ns"), now)
    if expecting and quiet is not None and quiet >= thresholds.data_silence:
        ordered_at = previous.ordered_at if previous else None
        cooled = ordered_at is None or now - ordered_at >= thresholds.order_cooldown
        return Verdict(UNHEALTHY, f"no data for {quiet:.0f} s while answering pings", cooled)
    if state == "degraded":
        return Verdict(DEGRADED, str(beat.get("reason") or "degraded"))
    if expecting and quiet is not None and quiet >= thresholds.data_silence / 2:
        return Verdict(DEGRADED, f"no data for {quiet:.0f} s")
    if previous is not None:
        reconnects = int(beat.get("reconnects", 0)) - previous.reconnects
        if reconnects > 0:
            return Verdict(DEGRADED, f"reconnected {reconnects}x since the last check")
        errors = errors_total(beat) - previous.errors_total
        if errors > 0:
            return Verdict(DEGRADED, f"{errors} frame errors since the last check")
    return Verdict(HEALTHY, "live, data flowing")
