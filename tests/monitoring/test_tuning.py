"""The performance monitor's rules (monitoring/tuning.py): judge the last change, revert what
did not help, react to a figure out of bounds, stop where there is nothing left to try."""

from __future__ import annotations

import pytest

from monitoring.tuning import (
    FLUSH_INTERVAL,
    LENGTHEN_FRESHNESS,
    LOW_TIER_FRESH_AGE,
    REVERT,
    WIDEN_FLUSH,
    Figures,
    Pending,
    TuningLimits,
    tuning_decide,
)

LIMITS = TuningLimits()  # 80 ms, 70 %, flush 5 ms -> 40 ms, freshness 0.1 s -> 2 s -> 5 s
NOW = 1_000_000.0


def decide(figures: Figures, tuning=None, pending=(), reverted_at=None):
    return tuning_decide(figures=figures, tuning=tuning or {}, pending=list(pending),
                         reverted_at=reverted_at or {}, now=NOW, limits=LIMITS)  # fmt: skip


def test_within_bounds_nothing_changes() -> None:
    decision = decide(Figures(latency_mean_ms=20.0, cache_efficiency=0.95))
    assert decision.changes == [] and decision.judgements == [] and decision.stuck == []
    assert decision.tuning == {FLUSH_INTERVAL: None, LOW_TIER_FRESH_AGE: None}


def test_high_latency_widens_the_flush_four_times() -> None:
    decision = decide(Figures(latency_mean_ms=250.0))
    [change] = decision.changes
    assert (change.kind, change.setting, change.before, change.after) == (
        WIDEN_FLUSH, FLUSH_INTERVAL, 0.005, 0.02)  # fmt: skip
    assert change.metric_before == 250.0
    assert "250 ms above 80 ms" in change.reason
    assert decision.tuning[FLUSH_INTERVAL] == 0.02


def test_the_flush_never_goes_past_its_bound_and_then_the_monitor_says_so() -> None:
    assert decide(Figures(latency_mean_ms=95.0), {FLUSH_INTERVAL: 0.02}).changes[0].after == 0.04
    decision = decide(Figures(latency_mean_ms=95.0), {FLUSH_INTERVAL: 0.04})
    assert decision.changes == []
    assert decision.stuck and "40 ms bound" in decision.stuck[0]


def test_low_cache_efficiency_lengthens_low_tier_freshness_step_by_step() -> None:
    first = decide(Figures(cache_efficiency=0.30))
    [change] = first.changes
    assert (change.kind, change.before, change.after) == (LENGTHEN_FRESHNESS, 0.1, 2.0)
    assert "30% below 70%" in change.reason
    second = decide(Figures(cache_efficiency=0.30), first.tuning)
    assert second.changes[0].after == 5.0
    third = decide(Figures(cache_efficiency=0.30), second.tuning)
    assert third.changes == [] and "5 s bound" in third.stuck[0]


def test_both_figures_out_of_bounds_both_react() -> None:
    decision = decide(Figures(latency_mean_ms=120.0, cache_efficiency=0.1))
    assert {c.kind for c in decision.changes} == {WIDEN_FLUSH, LENGTHEN_FRESHNESS}


@pytest.mark.parametrize(
    ("after", "helped"),
    [
        (200.0, False),  # no better
        (185.0, False),  # 7.5 % better: not enough
        (150.0, True),  # 25 % better, still above the limit: kept (the next step may follow)
        (30.0, True),  # within the limit
    ],
)
def test_a_widened_flush_is_judged_by_the_latency_that_followed(after, helped) -> None:
    step = Pending(7, FLUSH_INTERVAL, before=0.005, after=0.02, metric_before=200.0)
    decision = decide(Figures(latency_mean_ms=after), {FLUSH_INTERVAL: 0.02}, [step])
    [judgement] = decision.judgements
    assert (judgement.ident, judgement.helped, judgement.metric_after) == (7, helped, after)
    if helped:
        assert all(c.kind != REVERT for c in decision.changes)
        assert decision.tuning[FLUSH_INTERVAL] >= 0.02  # kept (or widened further)
    else:
        [revert] = decision.changes  # and no new widening in the same report
        assert (revert.kind, revert.before, revert.after) == (REVERT, 0.02, 0.005)
        assert "did not help" in revert.reason
        assert decision.tuning[FLUSH_INTERVAL] is None  # back to the configured default


def test_a_helped_step_that_is_not_enough_is_followed_by_the_next_one() -> None:
    step = Pending(1, FLUSH_INTERVAL, before=0.005, after=0.02, metric_before=400.0)
    decision = decide(Figures(latency_mean_ms=150.0), {FLUSH_INTERVAL: 0.02}, [step])
    assert decision.judgements[0].helped
    [change] = decision.changes
    assert (change.kind, change.before, change.after) == (WIDEN_FLUSH, 0.02, 0.04)


def test_freshness_that_did_not_help_is_reverted_and_left_alone_for_a_while() -> None:
    step = Pending(3, LOW_TIER_FRESH_AGE, before=0.1, after=2.0, metric_before=0.30)
    decision = decide(Figures(cache_efficiency=0.31), {LOW_TIER_FRESH_AGE: 2.0}, [step])
    assert not decision.judgements[0].helped
    assert [(c.kind, c.after) for c in decision.changes] == [(REVERT, 0.1)]
    # Still low a report later, but reverted 60 s ago: not tried again yet.
    later = decide(Figures(cache_efficiency=0.31), decision.tuning,
                   reverted_at={LOW_TIER_FRESH_AGE: NOW - 60})  # fmt: skip
    assert later.changes == []
    # After retry_after it tries again.
    again = decide(Figures(cache_efficiency=0.31), decision.tuning,
                   reverted_at={LOW_TIER_FRESH_AGE: NOW - LIMITS.retry_after})  # fmt: skip
    assert [c.kind for c in again.changes] == [LENGTHEN_FRESHNESS]


def test_a_window_without_samples_judges_nothing_and_changes_nothing() -> None:
    step = Pending(5, FLUSH_INTERVAL, before=0.005, after=0.02, metric_before=300.0)
    decision = decide(Figures(), {FLUSH_INTERVAL: 0.02}, [step])
    assert decision.judgements == [] and decision.changes == []
    assert decision.tuning[FLUSH_INTERVAL] == 0.02  # kept until it can be judged


def test_a_change_settles_for_one_window_before_it_is_judged() -> None:
    step = Pending(9, FLUSH_INTERVAL, before=0.005, after=0.02, metric_before=200.0,
                   settling=True)  # fmt: skip
    decision = decide(Figures(latency_mean_ms=210.0), {FLUSH_INTERVAL: 0.02}, [step])
    assert decision.judgements == [] and decision.changes == []  # not judged, not widened
    assert decision.tuning[FLUSH_INTERVAL] == 0.02
