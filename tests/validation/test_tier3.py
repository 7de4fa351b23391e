"""Tier 3: the trimmed-neighbourhood filter and the late, jump-keeping MAD filter."""

from __future__ import annotations

import random
import statistics
from typing import Any

import pytest

from validation.tier3 import MadFilter, MadVerdict, TrimmedFilter, TrimmedVerdict

TICK = 5  # 0.05 rupees at scale 2
BASE = 100_000  # 1000.00 rupees


def walk(seed: int, n: int, steps: tuple[int, ...] = (-1, 0, 1)) -> list[int]:
    """A random walk on the tick grid: each price moves by a step drawn from ``steps`` ticks."""
    rng, price, prices = random.Random(seed), BASE, []
    for _ in range(n):
        price += rng.choice(steps) * TICK
        prices.append(price)
    return prices


def on_grid(price: float) -> int:
    return round(price / TICK) * TICK


def trimmed(prices: list[int], **kwargs: Any) -> list[TrimmedVerdict | None]:
    f = TrimmedFilter(tick=TICK, **kwargs)
    return [f.check(p) for p in prices]


def mad(prices: list[int], **kwargs: Any) -> list[MadVerdict[int]]:
    """Every observation's verdict, in order (token = index)."""
    f: MadFilter[int] = MadFilter(tick=TICK, **kwargs)
    verdicts = [v for i, p in enumerate(prices) for v in f.push(p, i)] + f.flush()
    assert [v.token for v in verdicts] == list(range(len(prices)))
    return verdicts


def flagged(verdicts: list[TrimmedVerdict | None] | list[MadVerdict[int]]) -> list[int]:
    return [i for i, v in enumerate(verdicts) if v is not None and v.outlier]


# --- both filters ------------------------------------------------------------------------


@pytest.mark.parametrize("steps", [(-1, 0, 1), (-2, -1, 0, 0, 1, 2), (-1, 0, 0, 0, 0, 1)])
@pytest.mark.parametrize("seed", [1, 2])
def test_a_random_walk_has_no_outliers(seed: int, steps: tuple[int, ...]) -> None:
    prices = walk(seed, 20_000, steps)
    assert flagged(trimmed(prices)) == []
    assert flagged(mad(prices)) == []


SPIKES = {
    "+5 %": lambda p: p * 1.05,
    "-5 %": lambda p: p * 0.95,
    "+20 %": lambda p: p * 1.20,
    "x10": lambda p: p * 10,
    "/10": lambda p: p / 10,
}


@pytest.mark.parametrize("seed", [3, 4])
@pytest.mark.parametrize("kind", SPIKES)
def test_a_single_spike_is_flagged_and_nothing_else(kind: str, seed: int) -> None:
    prices = walk(seed, 2_000)
    prices[1_000] = on_grid(SPIKES[kind](prices[1_000]))
    assert flagged(trimmed(prices)) == [1_000]
    assert flagged(mad(prices)) == [1_000]


@pytest.mark.parametrize("move", [TICK, -TICK, 2 * TICK])
def test_a_flat_price_then_a_small_move_is_not_flagged(move: int) -> None:
    prices = [BASE] * 100 + [BASE + move] * 100
    verdicts = trimmed(prices)
    assert flagged(verdicts) == []
    first = verdicts[100]
    assert first is not None and first.std == 0.0 and first.bound == 3 * TICK  # the floor
    mads = mad(prices)
    assert flagged(mads) == []
    assert mads[50].scale == 2 * TICK  # deviation 0, floored at two ticks


def test_a_genuine_level_shift_is_kept() -> None:
    prices = walk(5, 1_000)
    jump = 500
    prices[jump:] = [p + BASE // 10 for p in prices[jump:]]  # +10 % that persists
    assert flagged(mad(prices)) == []
    verdicts = trimmed(prices)
    # The first ``confirm`` prices of the new level are flagged, then the window restarts
    # from them: no verdict while it refills to ``min_window``, then the new level is normal.
    assert flagged(verdicts) == [jump, jump + 1, jump + 2]
    refilled = jump + 20
    assert verdicts[jump + 3 : refilled] == [None] * 17
    assert all(v is not None and not v.outlier for v in verdicts[refilled:])


# --- TrimmedFilter -----------------------------------------------------------------------


def test_trimmed_has_no_verdict_until_the_window_fills_and_after_reset() -> None:
    f = TrimmedFilter(tick=TICK, min_window=20)
    assert [f.check(BASE) for _ in range(20)] == [None] * 20
    assert f.check(BASE) == TrimmedVerdict(False, BASE, 0.0, 3 * TICK)
    f.reset()
    assert f.check(BASE) is None


def test_trimmed_mean_and_std_are_those_of_the_trimmed_window() -> None:
    rng = random.Random(6)
    prices = [BASE + rng.randrange(-40, 41) * TICK for _ in range(60)]
    f = TrimmedFilter(tick=TICK, k=60, granularity_ticks=1000)  # accepts all of them
    for p in prices:
        f.check(p)
    verdict = f.check(BASE)
    kept = sorted(prices)[3:-3]  # 10 % of 60: 3 from each end
    assert verdict is not None
    assert verdict.mean == pytest.approx(statistics.mean(kept))
    assert verdict.std == pytest.approx(statistics.stdev(kept))
    assert verdict.bound == pytest.approx(3 * statistics.stdev(kept) + 1000 * TICK)


def test_a_spike_does_not_enter_the_window() -> None:
    f = TrimmedFilter(tick=TICK)
    for _ in range(30):
        f.check(BASE)
    for _ in range(2):  # not ``confirm`` of them: the window keeps the old level
        spike = f.check(BASE * 2)
        assert spike is not None and spike.outlier
        after = f.check(BASE)
        assert after is not None and not after.outlier and after.mean == BASE


def test_outliers_far_from_each_other_are_not_a_new_level() -> None:
    f = TrimmedFilter(tick=TICK)
    for _ in range(30):
        f.check(BASE)
    verdicts = [f.check(p) for p in (BASE * 2, BASE * 3, BASE // 2, BASE * 4, BASE)]
    assert [v is not None and v.outlier for v in verdicts] == [True, True, True, True, False]


def test_the_plain_rule_flags_a_trend_that_continuity_accepts() -> None:
    ramp = [BASE] * 60 + [BASE + i * TICK for i in range(1, 11)]  # steady one-tick steps up
    assert flagged(trimmed(ramp, continuity=False)) != []  # the trailing mean lags the trend
    assert flagged(trimmed(ramp)) == []


@pytest.mark.parametrize(
    "kwargs",
    [{"k": 10, "min_window": 20}, {"min_window": 2}, {"confirm": 0}, {"trim": 0.5}],
)
def test_trimmed_rejects_bad_parameters(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        TrimmedFilter(tick=TICK, **kwargs)


# --- MadFilter ---------------------------------------------------------------------------


@pytest.mark.parametrize("after", [1, 3, 25])
def test_mad_verdict_arrives_after_later_observations(after: int) -> None:
    f: MadFilter[int] = MadFilter(tick=TICK, after=after)
    for i, p in enumerate(walk(7, 200)):
        tokens = [v.token for v in f.push(p, i)]
        assert tokens == ([] if i < after else [i - after])


def test_mad_tokens_come_back_with_their_own_observation() -> None:
    f: MadFilter[object] = MadFilter(tick=TICK, after=4)
    tokens = [object() for _ in range(50)]
    prices = walk(8, 50)
    verdicts = [v for p, t in zip(prices, tokens, strict=True) for v in f.push(p, t)]
    verdicts += f.flush()
    assert [v.token for v in verdicts] == tokens  # the same objects, in order
    assert [v.price for v in verdicts] == prices


@pytest.mark.parametrize(
    ("index", "outlier"),
    [(0, False), (4, False), (5, True), (10, True)],
)
def test_mad_needs_five_preceding_observations(index: int, outlier: bool) -> None:
    prices = walk(9, 100)
    prices[index] *= 10
    assert flagged(mad(prices)) == ([index] if outlier else [])


def test_mad_flush_judges_the_pending_with_what_follows() -> None:
    f: MadFilter[int] = MadFilter(tick=TICK)
    prices = walk(10, 40)
    prices[-2] = on_grid(prices[-2] * 1.2)  # one following observation: the "both" rule
    prices[-1] = on_grid(prices[-1] * 0.8)  # none following: the preceding median only
    pushed = [v for i, p in enumerate(prices) for v in f.push(p, i)]
    assert [v.token for v in pushed] == list(range(15))
    rest = f.flush()
    assert [v.token for v in rest] == list(range(15, 40))
    assert [v.token for v in rest if v.outlier] == [38, 39]
    assert rest[-2].median_after == prices[-1]
    assert rest[-1].median_after is None and rest[-1].median_before is not None
    assert f.flush() == []


def test_mad_flush_of_a_short_stream() -> None:
    f: MadFilter[int] = MadFilter(tick=TICK)
    verdicts = [v for i in range(10) for v in f.push(BASE + i * TICK, i)]
    assert verdicts == []
    rest = f.flush()
    assert [v.token for v in rest] == list(range(10))
    assert rest[0].median_before is None and rest[0].median_after == BASE + 5 * TICK
    assert not any(v.outlier for v in rest)


def test_mad_keeps_its_history_across_a_flush() -> None:
    f: MadFilter[int] = MadFilter(tick=TICK, after=2)
    for i in range(30):
        f.push(BASE, i)
    f.flush()
    assert f.push(BASE * 10, 30) == []  # timing restarts: two later observations needed
    f.push(BASE, 31)
    (verdict,) = f.push(BASE, 32)
    assert verdict.token == 30 and verdict.outlier and verdict.median_before == BASE


@pytest.mark.parametrize("kwargs", [{"before": 4}, {"after": 0}])
def test_mad_rejects_bad_parameters(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        MadFilter(tick=TICK, **kwargs)


# --- memory ------------------------------------------------------------------------------


def test_memory_is_bounded() -> None:
    rng = random.Random(11)
    prices = walk(11, 10_000, (-2, -1, 0, 1, 2))
    for i in range(0, len(prices), 97):  # spikes, runs of bad prints, level shifts
        end = len(prices) if i % 5 == 0 else i + rng.randrange(1, 5)
        factor = rng.choice((0.5, 0.95, 1.1, 2.0))
        prices[i:end] = [on_grid(p * factor) for p in prices[i:end]]
    t = TrimmedFilter(tick=TICK, k=60, confirm=3)
    m: MadFilter[int] = MadFilter(tick=TICK, before=25, after=25)
    for i, p in enumerate(prices):
        t.check(p)
        m.push(p, i)
        assert len(t._window) <= 60 and len(t._sorted) == len(t._window)
        assert len(t._pending) < 3
        assert len(m._before) <= 25 and len(m._before_sorted) == len(m._before)
        assert len(m._pending) <= 25 and len(m._pending_sorted) == len(m._pending)
