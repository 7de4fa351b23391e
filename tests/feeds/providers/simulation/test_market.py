from __future__ import annotations

from decimal import Decimal

import pytest

from feeds.providers.simulation.market import MarketModel
from feeds.providers.simulation.universe import SimInstrument
from feeds.providers.ticks import ProviderName


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def run(model: MarketModel, clock: Clock, seconds: float, step: float = 0.05) -> list:
    ticked = []
    for _ in range(int(seconds / step)):
        clock.now += step
        ticked.extend(model.step())
    return ticked


def test_same_seed_same_market(sample_universe):
    runs = []
    for _ in range(2):
        clock = Clock()
        model = MarketModel(sample_universe, seed=42, clock=clock)
        run(model, clock, 5)
        runs.append({k: (q.ltp, q.volume, q.seq) for k, q in model.quotes.items()})
    assert runs[0] == runs[1]
    clock = Clock()
    other = MarketModel(sample_universe, seed=43, clock=clock)
    run(other, clock, 5)
    assert {k: (q.ltp, q.volume, q.seq) for k, q in other.quotes.items()} != runs[0]


def test_prices_stay_on_grid_inside_circuits_with_sane_books(sample_universe):
    clock = Clock()
    model = MarketModel(sample_universe, seed=1, ticks_per_second=5, clock=clock)
    run(model, clock, 20)
    for quote in model.quotes.values():
        inst = quote.instrument
        assert quote.ltp > 0 and quote.ltp % inst.tick == 0, inst.key
        assert quote.low <= quote.ltp <= quote.high
        if quote.lower_circuit is not None:
            assert quote.lower_circuit <= quote.ltp <= quote.upper_circuit
        if not inst.is_index:
            assert 0 < quote.bid < quote.ask, inst.key  # never crossed
            assert quote.bid % inst.tick == 0 and quote.ask % inst.tick == 0


def test_tick_rate_and_volume(sample_universe):
    clock = Clock()
    model = MarketModel(sample_universe, seed=3, ticks_per_second=2, burst_every=1e9, clock=clock)
    volumes = {k: q.volume for k, q in model.quotes.items()}
    ticked = run(model, clock, 10, step=0.02)
    expected = 2 * 10 * len(sample_universe)
    # Distinct instruments per step are counted once, so allow a little under the mean.
    assert 0.85 * expected < len(ticked) < 1.1 * expected
    for key, quote in model.quotes.items():
        assert quote.volume >= volumes[key]  # cumulative volume never falls


def test_bursts_raise_the_rate():
    universe = [SimInstrument(f"NSE:S{i}", "NSE", "CM", "EQ", Decimal("0.05")) for i in range(200)]
    clock = Clock()
    calm = MarketModel(universe, seed=5, burst_every=1e9, clock=clock)
    calm_count = len(run(calm, clock, 10))
    clock = Clock()
    bursty = MarketModel(
        universe, seed=5, burst_every=0.5, burst_seconds=5, burst_share=0.5, clock=clock
    )
    assert len(run(bursty, clock, 10)) > 1.5 * calm_count


def test_closed_market_does_not_tick(sample_universe):
    clock = Clock()
    model = MarketModel(sample_universe, market_open=False, clock=clock)
    assert run(model, clock, 2) == []
    model.market_open = True
    assert run(model, clock, 2)


def test_derivatives_follow_their_underlying(sample_universe):
    clock = Clock()
    model = MarketModel(sample_universe, seed=9, clock=clock)
    nifty = model.quote("NSE:NIFTY50")
    futures = [
        q
        for q in model.quotes.values()
        if q.instrument.underlying == "NIFTY" and q.instrument.instrument_type == "FUT"
    ]
    assert futures
    for future in futures:
        assert abs(future.ltp - nifty.ltp) < nifty.ltp * 0.03
    calls = sorted(
        (
            q
            for q in model.quotes.values()
            if q.instrument.underlying == "NIFTY"
            and q.instrument.option_type == "CE"
            and q.instrument.expiry == futures[0].instrument.expiry
        ),
        key=lambda q: q.instrument.strike,
    )
    # Deeper in the money is dearer: call prices fall as the strike rises.
    prices = [q.ltp for q in calls]
    assert prices[0] > prices[len(prices) // 2] > prices[-1]


def test_quote_to_tick_carries_everything(sample_universe):
    model = MarketModel(sample_universe, seed=2, clock=Clock())
    quote = model.quote("NSE:SBIN")
    tick = quote.to_tick(ProviderName.FYERS, "NSE:SBIN-EQ", recv_ns=5, depth=5)
    assert (tick.ltp, tick.scale, tick.instrument) == (quote.ltp, 2, "NSE:SBIN")
    assert tick.bids[0].price == quote.bid and tick.asks[0].price == quote.ask
    assert len(tick.bids) == len(tick.asks) == 5
    assert [lvl.price for lvl in tick.bids] == sorted(
        (lvl.price for lvl in tick.bids), reverse=True
    )
    assert tick.upper_circuit == quote.upper_circuit and tick.prev_close == quote.prev_close
    index = model.quote("NSE:NIFTY50").to_tick(ProviderName.UPSTOX, "NSE_INDEX|Nifty 50")
    assert index.bid is None and index.volume is None


@pytest.mark.parametrize("levels", [5, 30])
def test_depth_is_deterministic(sample_universe, levels):
    model = MarketModel(sample_universe, seed=2, clock=Clock())
    quote = model.quote("NSE:RELIANCE")
    assert quote.depth(levels) == quote.depth(levels)
    assert len(quote.depth(levels)[0]) == levels
