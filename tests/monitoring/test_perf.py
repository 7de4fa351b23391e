"""Latency histograms: percentiles, windows and merging across processes."""

from __future__ import annotations

import random

import pytest

from monitoring.perf import BOUNDS_MS, LatencyHistogram


def histogram(values) -> LatencyHistogram:
    h = LatencyHistogram()
    h.observe_many(values)
    return h


def test_an_empty_histogram_has_no_percentiles() -> None:
    h = LatencyHistogram()
    assert h.quantile(0.5) is None and h.mean is None and h.share_above(80) is None
    assert h.summary() == {"count": 0, "mean": None, "p50": None, "p95": None, "p99": None}


@pytest.mark.parametrize("q", [0.5, 0.9, 0.95, 0.99])
def test_percentiles_are_within_their_bucket_of_the_exact_ones(q: float) -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(2.5, 0.8) for _ in range(20_000)]  # ms, median ~12
    exact = sorted(values)[int(q * len(values)) - 1]
    estimate = histogram(values).quantile(q)
    # The estimate lies in the same bucket as the exact value.
    i = next(i for i, bound in enumerate(BOUNDS_MS) if exact <= bound)
    low = BOUNDS_MS[i - 1] if i else 0.0
    assert low <= estimate <= BOUNDS_MS[i], (exact, estimate)


def test_values_on_a_bound_and_past_the_last_bound() -> None:
    h = histogram([80.0, 80.0, 10_000.0])
    assert h.counts[BOUNDS_MS.index(80)] == 2
    assert h.quantile(1.0) == BOUNDS_MS[-1]  # a floor for what is past the last bound
    assert h.share_above(80) == pytest.approx(1 / 3)
    assert h.mean == pytest.approx(10_160 / 3)


def test_a_window_is_the_difference_of_two_snapshots() -> None:
    h = histogram([5.0] * 100)
    before = LatencyHistogram.from_snapshot(h.snapshot())
    h.observe_many([200.0] * 100)
    window = h.minus(before)
    assert window.total == 100
    assert window.quantile(0.5) > 150  # only the slow second half
    assert window.mean == pytest.approx(200.0)


def test_a_restarted_process_counts_from_zero() -> None:
    old = histogram([5.0] * 100)
    new = histogram([5.0] * 10)  # the process restarted: fewer than before
    assert new.minus(old).total == 10


def test_merging_processes_adds_them_up() -> None:
    a, b = histogram([1.0] * 90), histogram([500.0] * 10)
    a.merge(b)
    assert a.total == 100
    assert a.quantile(0.5) <= 1.0
    assert a.quantile(0.99) > 300


def test_a_snapshot_with_other_buckets_is_refused() -> None:
    with pytest.raises(ValueError, match="buckets"):
        LatencyHistogram.from_snapshot({"counts": [1, 2, 3], "sum_ms": 1.0})
    with pytest.raises(ValueError, match="quantile"):
        LatencyHistogram().quantile(1.5)
