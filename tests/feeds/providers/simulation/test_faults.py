from __future__ import annotations

from feeds.providers.simulation.faults import DataFault, FaultInjector, FaultRule
from feeds.providers.simulation.market import MarketModel
from tests.feeds.providers.simulation.test_market import Clock


def model_and_injector(universe, **kwargs):
    clock = Clock()
    model = MarketModel(universe, seed=11, ticks_per_second=5, clock=clock)
    return model, FaultInjector(seed=1, clock=clock, **kwargs), clock


def emissions_for(model, injector, clock, provider="fyers", seconds=2.0):
    out = []
    for _ in range(int(seconds / 0.05)):
        clock.now += 0.05
        for quote in model.step():
            out.extend(injector.apply(provider, quote))
    return out


def test_no_rules_sends_the_quote_itself(sample_universe):
    model, injector, clock = model_and_injector(sample_universe)
    emissions = emissions_for(model, injector, clock)
    assert emissions and all(e.label is None for e in emissions)
    assert all(e.quote is model.quote(e.quote.key) for e in emissions)


def test_every_data_fault_is_labelled_and_leaves_the_market_alone(sample_universe):
    model, injector, clock = model_and_injector(sample_universe)
    emissions_for(model, injector, clock, seconds=0.5)  # so repeats have a previous tick
    for kind in DataFault:
        if kind is DataFault.LAG:
            continue
        injector.clear()
        injector.add(FaultRule(kind=kind, count=5))
        faulty = [e for e in emissions_for(model, injector, clock, seconds=1) if e.label]
        assert len(faulty) == 5, kind
        for emission in faulty:
            label, sent = emission.label, emission.quote
            assert label.kind == kind and label.provider == "fyers"
            assert sent is not model.quote(label.key)  # a copy: the market is untouched
            assert label.sent_ltp == sent.ltp


def test_fault_shapes(sample_universe):
    model, injector, clock = model_and_injector(sample_universe)
    emissions_for(model, injector, clock, seconds=0.5)

    def one(kind, **rule):
        injector.clear()
        injector.add(FaultRule(kind=kind, count=1, **rule))
        return next(e for e in emissions_for(model, injector, clock, seconds=1) if e.label)

    zero = one(DataFault.ZERO)
    assert zero.quote.ltp == 0
    negative = one(DataFault.NEGATIVE)
    assert negative.quote.ltp < 0
    off = one(DataFault.OFF_GRID)
    assert off.quote.ltp % off.quote.instrument.tick != 0
    shift = one(DataFault.DECIMAL_SHIFT)
    ratio = shift.label.sent_ltp / shift.label.true_ltp
    assert ratio > 9 or ratio < 0.11
    crossed = one(DataFault.CROSSED)
    assert crossed.quote.bid > crossed.quote.ask
    band = one(DataFault.OUT_OF_BAND)
    limit = band.quote.upper_circuit if band.quote.upper_circuit is not None else band.quote.high
    assert band.quote.ltp > limit
    back = one(DataFault.OUT_OF_ORDER)
    assert back.quote.exchange_ts < model.quote(back.label.key).exchange_ts
    volume = one(DataFault.FALLING_VOLUME)
    assert volume.quote.volume < model.quote(volume.label.key).volume


def test_duplicate_sends_twice(sample_universe):
    model, injector, clock = model_and_injector(sample_universe)
    injector.add(FaultRule(kind=DataFault.DUPLICATE, count=1))
    emissions = emissions_for(model, injector, clock, seconds=0.2)
    index = next(i for i, e in enumerate(emissions) if e.label)
    assert emissions[index - 1].quote.key == emissions[index].quote.key
    assert emissions[index - 1].quote.ltp == emissions[index].quote.ltp


def test_divergence_and_lag_target_one_provider_for_a_while(sample_universe):
    model, injector, clock = model_and_injector(sample_universe)
    injector.add(
        FaultRule(
            kind=DataFault.DIVERGENCE,
            provider="upstox",
            keys=frozenset({"NSE:SBIN"}),
            rate=1.0,
            magnitude=0.03,
            seconds=1.0,
        )
    )
    injector.add(
        FaultRule(
            kind=DataFault.LAG,
            provider="fyers",
            rate=1.0,
            magnitude=0.5,
            keys=frozenset({"NSE:RELIANCE"}),
        )
    )
    clock.now += 0.05
    sbin = model.quote("NSE:SBIN")
    assert injector.apply("fyers", sbin)[0].quote is sbin
    diverged = injector.apply("upstox", sbin)[0]
    assert diverged.label.kind == "divergence" and diverged.quote.ltp > sbin.ltp
    reliance = model.quote("NSE:RELIANCE")
    assert injector.apply("fyers", reliance) == []  # held back
    assert injector.due() == []
    clock.now += 0.6
    late = injector.due()
    assert [e.quote.key for e in late] == ["NSE:RELIANCE"] and late[0].label.kind == "lag"
    clock.now += 1.0  # the divergence rule has expired
    assert injector.apply("upstox", sbin)[0].quote is sbin


def test_labels_are_bounded_and_streamed(sample_universe):
    seen = []
    model, injector, clock = model_and_injector(sample_universe, log_limit=10, sink=seen.append)
    injector.add(FaultRule(kind=DataFault.SPIKE, rate=1.0))
    emissions_for(model, injector, clock, seconds=0.5)
    assert len(injector.labels) == 10 < len(seen) == injector.counts["spike"]
    connection = injector.record("close_unclean", "fyers", detail="connection 2")
    assert seen[-1] is connection and connection.kind == "close_unclean"
