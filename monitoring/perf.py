"""Latency histograms the performance monitor merges across processes.

Pure (no Django, no I/O). Each process that delivers ticks keeps a ``LatencyHistogram`` per
measure (exchange time → delivery, receive time → delivery); it publishes ``snapshot()``
with its heartbeat, and the monitor subtracts the previous snapshot (``minus``) and adds the
processes up (``merge``) to get the percentiles of a window. Fixed bucket bounds make all of
that exact and cheap: ``observe`` is a bisect and two additions, and the same bounds are the
Prometheus histogram's buckets.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping
from typing import Any, Final, Self

# Upper bounds in milliseconds (a value equal to a bound falls in that bucket); the last
# bucket has no bound. Finer where the 80 ms reaction threshold and the 100 ms goal are.
BOUNDS_MS: Final[tuple[float, ...]] = (
    0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 100, 150, 200, 300, 500,
    1_000, 2_000, 5_000,
)  # fmt: skip


class LatencyHistogram:
    __slots__ = ("counts", "sum_ms", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(BOUNDS_MS) + 1)
        self.total = 0
        self.sum_ms = 0.0

    def observe(self, ms: float) -> None:
        self.counts[bisect_left(BOUNDS_MS, ms)] += 1
        self.total += 1
        self.sum_ms += ms

    def observe_many(self, values: Iterable[float]) -> None:
        """``observe`` each value: one loop with its names local, for the delivery path,
        which times every update it sends."""
        counts, bounds, total, sum_ms = self.counts, BOUNDS_MS, 0, 0.0
        for ms in values:
            counts[bisect_left(bounds, ms)] += 1
            total += 1
            sum_ms += ms
        self.total += total
        self.sum_ms += sum_ms

    @property
    def mean(self) -> float | None:
        return self.sum_ms / self.total if self.total else None

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile (0..1), interpolated linearly inside its bucket; None when empty.
        Values past the last bound report that bound (a floor: "at least 5 s")."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile must be within 0..1, not {q}")
        if not self.total:
            return None
        rank = q * self.total
        seen = 0
        for i, count in enumerate(self.counts):
            if count and seen + count >= rank:
                if i == len(BOUNDS_MS):
                    return BOUNDS_MS[-1]
                low = BOUNDS_MS[i - 1] if i else 0.0
                return low + (BOUNDS_MS[i] - low) * max(0.0, rank - seen) / count
            seen += count
        return BOUNDS_MS[-1]

    def share_above(self, ms: float) -> float | None:
        """The share of observations above the bucket bound at or above ``ms``."""
        if not self.total:
            return None
        return sum(self.counts[bisect_left(BOUNDS_MS, ms) + 1 :]) / self.total

    # --- across processes and windows ---------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {"counts": list(self.counts), "total": self.total, "sum_ms": self.sum_ms}

    @classmethod
    def from_snapshot(cls, data: Mapping[str, Any]) -> Self:
        """A histogram from ``snapshot()``; ValueError for one with other buckets."""
        counts = [int(c) for c in data.get("counts", ())]
        if len(counts) != len(BOUNDS_MS) + 1:
            raise ValueError(f"expected {len(BOUNDS_MS) + 1} buckets, got {len(counts)}")
        histogram = cls()
        histogram.counts = counts
        histogram.total = sum(counts)
        histogram.sum_ms = float(data.get("sum_ms", 0.0))
        return histogram

    def minus(self, older: LatencyHistogram) -> LatencyHistogram:
        """What was observed since ``older`` (an earlier snapshot of the same histogram). A
        process that restarted has smaller counts: then everything counts as new."""
        if any(a < b for a, b in zip(self.counts, older.counts, strict=True)):
            return self.copy()
        delta = LatencyHistogram()
        delta.counts = [a - b for a, b in zip(self.counts, older.counts, strict=True)]
        delta.total = self.total - older.total
        delta.sum_ms = max(0.0, self.sum_ms - older.sum_ms)
        return delta

    def merge(self, other: LatencyHistogram) -> None:
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.total += other.total
        self.sum_ms += other.sum_ms

    def copy(self) -> LatencyHistogram:
        clone = LatencyHistogram()
        clone.counts = list(self.counts)
        clone.total = self.total
        clone.sum_ms = self.sum_ms
        return clone

    def summary(self) -> dict[str, float | int | None]:
        return {
            "count": self.total,
            "mean": self.mean,
            "p50": self.quantile(0.50),
            "p95": self.quantile(0.95),
            "p99": self.quantile(0.99),
        }


# --- windows over the processes' perf heartbeats -------------------------------------------

LAYERS = ("l1", "l2", "l3", "l4")
VALIDATION_COUNTS = ("checked", "flagged", "deferred", "dropped", "late_verdicts", "rechecks")


def _at(data: Any, *path: str) -> Any:
    """The value at ``path`` in a heartbeat; None where anything on the way is missing."""
    for name in path:
        data = data.get(name) if isinstance(data, Mapping) else None
    return data


def _num(data: Any, *path: str) -> float:
    """A counter deep in a heartbeat; 0 for anything absent or malformed."""
    data = _at(data, *path)
    return float(data) if isinstance(data, int | float) and not isinstance(data, bool) else 0.0


def _since(now: float, before: float) -> float:
    # A counter that went down belongs to a process that started again: all of it is new.
    return now - before if now >= before else now


def _histogram(data: Any) -> LatencyHistogram | None:
    if not isinstance(data, Mapping):
        return None
    try:
        return LatencyHistogram.from_snapshot(data)
    except (TypeError, ValueError):
        return None


class PerfWindow:
    """What every process did between two reports, added up. Built from the current
    heartbeats and those the previous report kept (``snapshots``); a process not seen then
    counts from its start."""

    def __init__(self) -> None:
        self.processes = 0
        self.clients = 0
        self.seconds = 0.0  # the longest process span in the window
        self.receive = LatencyHistogram()
        self.exchange: dict[str, LatencyHistogram] = {}
        self.tick_rates: dict[str, float] = {}  # provider -> ticks/s
        self.hits = dict.fromkeys(LAYERS, 0.0)
        self.misses = dict.fromkeys(LAYERS, 0.0)
        self.stale = 0.0
        self.missing = 0.0
        self.validation_rates = dict.fromkeys(VALIDATION_COUNTS, 0.0)
        self.offered = 0.0
        self.publisher_conflated = 0.0
        self.items_sent = 0.0
        self.client_conflated = 0.0

    @classmethod
    def build(
        cls, beats: Mapping[str, Mapping[str, Any]], previous: Mapping[str, Mapping[str, Any]]
    ) -> PerfWindow:
        window = cls()
        for ident, beat in beats.items():
            if isinstance(beat, Mapping):
                before = previous.get(ident)
                window._add(beat, before if isinstance(before, Mapping) else {})
        return window

    def _add(self, beat: Mapping[str, Any], before: Mapping[str, Any]) -> None:
        self.processes += 1
        start = _num(before, "at") or _num(beat, "process_metrics", "start_time_seconds")
        span = max(_num(beat, "at") - start, 1e-3)
        self.seconds = max(self.seconds, span)

        def delta(*path: str) -> float:
            return _since(_num(beat, *path), _num(before, *path))

        if isinstance(beat.get("delivery"), Mapping):
            self.clients += int(_num(beat, "delivery", "clients"))
            self.items_sent += delta("delivery", "items_sent")
            self.client_conflated += delta("delivery", "conflated")
            self._merge(self.receive, beat, before, "delivery", "latency_receive")
            exchange = beat["delivery"].get("latency_exchange")
            for provider in exchange if isinstance(exchange, Mapping) else ():
                held = self.exchange.setdefault(str(provider), LatencyHistogram())
                self._merge(held, beat, before, "delivery", "latency_exchange", provider)
        for layer in LAYERS:
            self.hits[layer] += delta("cache", "hits", layer)
            self.misses[layer] += delta("cache", "misses", layer)
        self.stale += delta("cache", "stale")
        self.missing += delta("cache", "missing")
        feeds = beat.get("feeds")
        if isinstance(feeds, Mapping):
            ticks = feeds.get("ticks")
            for provider in ticks if isinstance(ticks, Mapping) else ():
                rate = delta("feeds", "ticks", provider) / span
                self.tick_rates[str(provider)] = self.tick_rates.get(str(provider), 0.0) + rate
            for name in VALIDATION_COUNTS:
                self.validation_rates[name] += delta("feeds", "validation", name) / span
            self.offered += delta("feeds", "publisher", "offered")
            self.publisher_conflated += delta("feeds", "publisher", "conflated")

    @staticmethod
    def _merge(
        into: LatencyHistogram, beat: Mapping[str, Any], before: Mapping[str, Any], *path: str
    ) -> None:
        now = _histogram(_at(beat, *path))
        if now is None:
            return
        older = _histogram(_at(before, *path))
        into.merge(now.minus(older) if older is not None else now)

    # --- figures ---------------------------------------------------------------------------

    @property
    def lookups(self) -> int:
        """Snapshot lookups answered (each symbol asked once counts once)."""
        return int(sum(self.hits.values()) + self.stale + self.missing)

    @property
    def cache_efficiency(self) -> float | None:
        """The share of lookups answered from memory (L1 or L2): no REST call, no fallback."""
        lookups = self.lookups
        return (self.hits["l1"] + self.hits["l2"]) / lookups if lookups else None

    def hit_rates(self) -> dict[str, float | None]:
        rates: dict[str, float | None] = {}
        for layer in LAYERS:
            asked = self.hits[layer] + self.misses[layer]
            rates[layer] = self.hits[layer] / asked if asked else None
        return rates

    def conflation(self) -> dict[str, float | None]:
        return {
            "publisher": self.publisher_conflated,
            "publisher_share": self.publisher_conflated / self.offered if self.offered else None,
            "client": self.client_conflated,
            "client_share": (
                self.client_conflated / (self.client_conflated + self.items_sent)
                if self.client_conflated + self.items_sent
                else None
            ),
        }


def connection_tick_counters(beats: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """Each connection heartbeat's cumulative ticks and its time, for the next window."""
    return {
        str(name): {"ticks": _num(beat, "ticks"), "at": _num(beat, "at")}
        for name, beat in beats.items()
        if isinstance(beat, Mapping)
    }


def connection_tick_rates(
    now: Mapping[str, Mapping[str, float]],
    before: Mapping[str, Any],
    *,
    held: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """Ticks/s per connection between two sets of ``connection_tick_counters``; a connection
    not seen before, or whose count went down (a new worker holds it), waits for the next.
    A connection whose heartbeat has not changed since (two reports within one beat) keeps
    its rate in ``held``, the previous report's."""
    rates: dict[str, float] = {}
    for name, counters in now.items():
        earlier = before.get(name)
        if not isinstance(earlier, Mapping):
            continue
        span = counters["at"] - _num(earlier, "at")
        if span == 0 and held and name in held:
            rates[name] = held[name]
        elif span > 0 and counters["ticks"] >= _num(earlier, "ticks"):
            rates[name] = (counters["ticks"] - _num(earlier, "ticks")) / span
    return rates


def connection_tick_base(
    now: Mapping[str, Mapping[str, float]], before: Mapping[str, Any]
) -> dict[str, Any]:
    """The counters the next window starts from: the earlier ones for a connection whose
    heartbeat has not changed, so that its next rate spans the whole time."""
    return {
        name: before[name]
        if isinstance(before.get(name), Mapping) and _num(before[name], "at") == counters["at"]
        else counters
        for name, counters in now.items()
    }
