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
        for ms in values:
            self.observe(ms)

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
