"""Tier 2: the two providers against each other, and each against its own clock."""

from __future__ import annotations

from feeds.providers.ticks import ProviderName, Tick
from validation.checks import Check
from validation.tier2 import Tier2, Tier2Config

KEY = "NSE:SBIN"
T0 = 1_795_000_000_000  # epoch ms, a whole second


def fyers(ltp: int, second: int, *, delay_ms: int = 5, flags: int = 0) -> Tick:
    """A FYERS tick: exchange time in whole seconds, received ``delay_ms`` after the moment."""
    ts = T0 + second * 1000
    t = Tick(ProviderName.FYERS, "NSE:SBIN-EQ", ltp, 2, (ts + delay_ms) * 1_000_000,
             instrument=KEY)  # fmt: skip
    t.exchange_ts, t.flags = ts, flags
    return t


def upstox(ltp: int, ms: int, *, delay_ms: int = 5, flags: int = 0) -> Tick:
    """An Upstox tick stamped in milliseconds (``ms`` after T0)."""
    ts = T0 + ms
    t = Tick(ProviderName.UPSTOX, "NSE_EQ|INE062A01020", ltp, 2, (ts + delay_ms) * 1_000_000,
             instrument=KEY)  # fmt: skip
    t.exchange_ts, t.flags = ts, flags
    return t


def agree(tier2: Tier2, seconds: int, price: int = 80_000) -> None:
    for s in range(seconds):
        tier2.process(fyers(price, s))
        tier2.process(upstox(price + 5, s * 1000 + 300))


def test_prices_of_the_same_moment_that_agree_are_counted_not_flagged() -> None:
    tier2 = Tier2()
    assert tier2.process(fyers(80_000, 0)) is None  # no other side yet
    comparison = tier2.process(upstox(80_040, 450))  # same second as FYERS stamps it
    assert comparison is not None and comparison.agreed
    assert comparison.gap_bps == 5.0 and comparison.fyers == 80_000
    assert tier2.agreement(KEY) == (1, 1)
    assert tier2.mark(upstox(80_040, 900)) == 0


def test_different_moments_are_not_compared() -> None:
    tier2 = Tier2()
    tier2.process(fyers(80_000, 0))
    assert tier2.process(upstox(90_000, 1_500)) is None  # the next second: FYERS not there yet
    assert tier2.agreement(KEY) == (0, 0)
    comparison = tier2.process(fyers(90_010, 1))  # ... now it is: the moment matches
    assert comparison is not None and comparison.agreed


def test_one_side_missing_compares_nothing() -> None:
    tier2 = Tier2()
    for s in range(10):
        assert tier2.process(fyers(80_000 + s, s)) is None
    assert tier2.agreement(KEY) == (0, 0)


def test_a_diverging_provider_loses_to_the_side_continuous_with_the_agreed_price() -> None:
    tier2 = Tier2()
    agree(tier2, 5)
    comparison = tier2.process(upstox(81_600, 5_200))  # Upstox alone goes +2 %
    assert comparison is None  # FYERS has not printed second 5 yet
    comparison = tier2.process(fyers(80_010, 5))
    assert comparison is not None and not comparison.agreed
    assert (comparison.winner, comparison.loser) == ("fyers", "upstox")
    assert comparison.reason == "continuous with the agreed price"
    assert comparison.gap_bps > 100 and comparison.consensus == 80_010
    # From now on Upstox's ticks go out marked, carrying the consensus price.
    later = upstox(81_610, 5_700)
    assert tier2.mark(later) == Check.DISCREPANCY and later.consensus == 80_010
    assert tier2.mark(fyers(80_010, 6)) == 0
    # They agree again: the marks stop.
    tier2.process(fyers(80_010, 6))
    tier2.process(upstox(80_015, 6_100))
    assert tier2.mark(upstox(80_015, 6_500)) == 0


def test_without_common_history_the_preferred_provider_wins() -> None:
    tier2 = Tier2(preferred=lambda key: "upstox")
    tier2.process(fyers(80_000, 0))
    comparison = tier2.process(upstox(82_000, 200))
    assert comparison is not None and comparison.winner == "upstox"
    assert comparison.reason == "preferred provider"
    assert Tier2().config.preferred == "fyers"  # the default


def test_a_side_with_bad_prices_just_now_loses() -> None:
    tier2 = Tier2()
    tier2.process(fyers(80_000, 0))
    tier2.process(fyers(800_000, 1, flags=Check.JUMP))  # tier 1 caught a x10 from FYERS
    tier2.process(upstox(82_000, 1_100))
    comparison = tier2.process(fyers(80_000, 1))
    assert comparison is not None and comparison.winner == "upstox"
    assert comparison.reason == "the other side failed checks just now"


def test_a_tighter_threshold_per_instrument() -> None:
    tier2 = Tier2(threshold_bps=lambda key: 20.0)
    tier2.process(fyers(80_000, 0))
    comparison = tier2.process(upstox(80_240, 100))  # 0.3 %
    assert comparison is not None and not comparison.agreed


def test_a_late_tick_is_marked_and_a_persistently_late_provider_lags() -> None:
    tier2 = Tier2(config=Tier2Config(lag_window=50))
    for i in range(30):  # a usual transit of a few ms
        assert not tier2.observe_transit(upstox(80_000, i * 100, delay_ms=5))
    assert not tier2.lagging("upstox")
    late = upstox(80_000, 3_000, delay_ms=2_000)
    assert tier2.observe_transit(late)
    assert tier2.mark(upstox(80_000, 3_100, delay_ms=2_000)) == Check.PROVIDER_LAG
    for i in range(15):
        tier2.observe_transit(upstox(80_000, 4_000 + i * 100, delay_ms=2_000))
    assert tier2.lagging("upstox") and not tier2.lagging("fyers")
    # Its usual transit did not learn the lag: late stays late.
    assert tier2.mark(upstox(80_000, 9_000, delay_ms=2_000)) == Check.PROVIDER_LAG
    for i in range(60):  # back on time: no longer lagging
        tier2.observe_transit(upstox(80_000, 10_000 + i * 100, delay_ms=5))
    assert not tier2.lagging("upstox")


def test_the_lagging_provider_loses_a_disagreement() -> None:
    tier2 = Tier2(config=Tier2Config(lag_window=40))
    for i in range(30):
        tier2.observe_transit(fyers(80_000, i, delay_ms=5))
        tier2.observe_transit(upstox(80_000, i * 1000, delay_ms=5))
    for i in range(30, 60):  # FYERS' ticks now come 2 s late
        tier2.observe_transit(fyers(80_000, i, delay_ms=2_000))
    assert tier2.lagging("fyers")
    tier2.process(fyers(80_000, 60))
    comparison = tier2.process(upstox(81_500, 60_100))
    assert comparison is not None and comparison.winner == "upstox"
    assert comparison.reason == "the other provider lags"


def test_state_is_bounded_by_the_instruments_carried() -> None:
    tier2 = Tier2()
    agree(tier2, 3)
    tier2.forget({"NSE:OTHER"})
    assert tier2.pairs == {}
