"""Latency histograms: percentiles, windows and merging across processes."""

from __future__ import annotations

import random

import pytest

from monitoring.perf import (
    BOUNDS_MS,
    LatencyHistogram,
    PerfWindow,
    connection_tick_base,
    connection_tick_counters,
    connection_tick_rates,
)


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


# --- windows over perf heartbeats -----------------------------------------------------------


def beat(at: float, *, latency: list[float], ticks: int, l1: int, l3: int, clients: int = 1,
         start: float = 0.0) -> dict:  # fmt: skip
    histogram = LatencyHistogram()
    histogram.observe_many(latency)
    return {
        "at": at,
        "process_metrics": {"start_time_seconds": start},
        "delivery": {"clients": clients, "items_sent": len(latency), "conflated": 0,
                     "latency_receive": histogram.snapshot(), "latency_exchange": {}},
        "cache": {"hits": {"l1": l1, "l2": 0, "l3": l3, "l4": 0},
                  "misses": {"l1": l3, "l2": 0, "l3": 0, "l4": 0}, "stale": 0, "missing": 0},
        "feeds": {"ticks": {"fyers": ticks},
                  "validation": {"checked": ticks, "flagged": ticks // 10},
                  "publisher": {"offered": ticks, "conflated": ticks // 2}},
    }  # fmt: skip


def test_a_window_is_what_happened_since_the_previous_snapshot() -> None:
    before = beat(100.0, latency=[5.0] * 10, ticks=1_000, l1=10, l3=90)
    now = beat(160.0, latency=[5.0] * 10 + [150.0] * 30, ticks=7_000, l1=70, l3=90)
    window = PerfWindow.build({"h:1": now}, {"h:1": before})
    assert window.processes == 1 and window.seconds == 60.0
    assert window.receive.total == 30 and window.receive.mean == 150.0  # only the new ones
    assert window.tick_rates == {"fyers": 100.0}  # 6,000 ticks in 60 s
    assert window.validation_rates["flagged"] == 10.0
    assert window.lookups == 60 and window.cache_efficiency == 1.0  # 60 new lookups, all L1
    assert window.hit_rates()["l1"] == 1.0 and window.hit_rates()["l3"] is None


def test_processes_add_up_and_a_new_process_counts_from_its_start() -> None:
    old = beat(160.0, latency=[10.0] * 20, ticks=600, l1=6, l3=4)
    new = beat(160.0, latency=[30.0] * 20, ticks=300, l1=0, l3=10, start=130.0)
    window = PerfWindow.build({"a:1": old, "b:2": new}, {"a:1": beat(100.0, latency=[], ticks=0,
                                                                      l1=0, l3=0)})  # fmt: skip
    assert window.processes == 2 and window.clients == 2
    assert window.receive.total == 40 and window.receive.mean == 20.0
    assert window.tick_rates["fyers"] == 600 / 60 + 300 / 30
    assert window.cache_efficiency == 6 / 20


def test_a_restarted_or_malformed_beat_does_not_break_the_window() -> None:
    restarted = beat(200.0, latency=[8.0] * 5, ticks=50, l1=1, l3=0)
    previous = beat(100.0, latency=[8.0] * 500, ticks=5_000, l1=100, l3=0)
    junk = {"at": "soon", "delivery": {"latency_receive": {"counts": [1, 2]}}, "cache": None}
    window = PerfWindow.build({"a:1": restarted, "junk": junk, "x": "not a beat"},
                              {"a:1": previous})  # fmt: skip
    assert window.receive.total == 5  # the counters went down: all of them are new
    assert window.tick_rates["fyers"] == 0.5
    assert window.processes == 2  # the junk one counted, contributing nothing


def test_ticks_per_connection_come_from_the_tick_counters_between_two_reports() -> None:
    before = connection_tick_counters({
        "fyers:primary:0": {"ticks": 1_000, "at": 100.0},
        "upstox:primary:0": {"ticks": 9_000, "at": 100.0},
    })  # fmt: skip
    now = connection_tick_counters({
        "fyers:primary:0": {"ticks": 4_000, "at": 160.0},  # 3,000 in 60 s
        "upstox:primary:0": {"ticks": 50, "at": 160.0},  # went down: another worker took it
        "fyers:primary:1": {"ticks": 700, "at": 160.0},  # new since the last report
        "broken": "not a beat",
    })  # fmt: skip
    assert connection_tick_rates(now, before) == {"fyers:primary:0": 50.0}


def test_two_reports_within_one_heartbeat_keep_the_rate_and_the_base() -> None:
    before = connection_tick_counters({"fyers:primary:0": {"ticks": 1_000, "at": 100.0}})
    same = connection_tick_counters({"fyers:primary:0": {"ticks": 1_000, "at": 100.0}})
    assert connection_tick_rates(same, before, held={"fyers:primary:0": 42.0}) == {
        "fyers:primary:0": 42.0
    }
    assert connection_tick_base(same, before) == before
    later = connection_tick_counters({"fyers:primary:0": {"ticks": 1_600, "at": 110.0}})
    assert connection_tick_base(later, before) == later
