"""The validator: inline marks, the bounded deferred stage, late verdicts, incidents,
escalation and REST re-checks."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

from feeds.providers.ticks import ProviderName, Tick
from validation.accuracy import AccuracyTracker
from validation.checks import Check, ValidationTier
from validation.engine import Validator, ValidatorConfig
from validation.tier1 import InstrumentSpec, Series, Tier1

T0 = 1_795_000_000_000
KEY = "NSE:SBIN"


def spec(tier: ValidationTier = ValidationTier.DEEP, key: str = KEY) -> InstrumentSpec:
    return InstrumentSpec(key=key, tick_size=Decimal("0.05"), tier=tier)


def tick(ltp: int, i: int, *, provider: str = "fyers", key: str = KEY) -> Tick:
    """The i-th tick of ``key``: 100 ms apart, received 5 ms after the exchange stamp."""
    ts = T0 + i * 100
    name = ProviderName(provider)
    symbol = f"{provider}:{key}"
    t = Tick(name, symbol, ltp, 2, (ts + 5) * 1_000_000, instrument=key)
    t.exchange_ts, t.volume = ts, i + 1
    return t


def walk(n: int, start: int = 0, base: int = 80_000) -> list[int]:
    return [base + 5 * ((i * 7) % 5 - 2) for i in range(start, start + n)]


def validator(**kwargs) -> Validator:
    v = Validator(tier1=Tier1(), tracker=AccuracyTracker(quiet=1.0), **kwargs)
    v.set_specs({KEY: spec()})
    return v


def test_tier1_flags_go_out_inline_and_the_rest_waits_for_the_deferred_stage() -> None:
    v = validator()
    ticks = [tick(p, i) for i, p in enumerate(walk(30))] + [tick(800_000, 30)]
    v(ticks)
    assert ticks[-1].flags == Check.JUMP  # set before the publisher sees it
    assert len(v.pending) == 31 and v.tracker.overall.ticks == 0
    assert v.process() == 31
    assert v.tracker.overall.ticks == 31 and v.tracker.overall.by_check["jump"] == 1


def test_the_queue_is_bounded_and_what_it_drops_is_counted() -> None:
    v = validator(config=ValidatorConfig(max_pending=100))
    v([tick(p, i) for i, p in enumerate(walk(250))])
    assert len(v.pending) == 100 and v.stats.dropped == 150
    assert v.pending[0].exchange_ts == T0 + 150 * 100  # the oldest went


class SlowDeepValidator(Validator):
    """A deep stage at 2 ms a tick: a slow REST re-check or an overloaded machine."""

    def _deep_checks(self, series: Series, tick: Tick) -> None:
        time.sleep(0.002)
        super()._deep_checks(series, tick)


async def test_a_slow_deferred_stage_never_holds_the_loop_for_long() -> None:
    v = SlowDeepValidator(tier1=Tier1(), config=ValidatorConfig(slice_seconds=0.004))
    v.set_specs({KEY: spec()})
    lags: list[float] = []

    async def heartbeat() -> None:  # stands for the socket reads of the worker
        while True:
            start = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append(time.perf_counter() - start - 0.001)

    stop = asyncio.Event()
    beat = asyncio.create_task(heartbeat())
    runner = asyncio.create_task(v.run(stop))
    started = time.perf_counter()
    v([tick(p, i) for i, p in enumerate(walk(500))])  # one second of deep work queued
    hook = time.perf_counter() - started
    await asyncio.sleep(0.3)
    stop.set()
    await runner
    beat.cancel()
    assert hook < 0.05  # the hook only queued
    assert 0 < v.stats.deferred < 500  # still working through them, in slices
    assert max(lags) < 0.05, f"the loop was held for {max(lags) * 1000:.0f} ms"


async def test_run_processes_everything_and_stops() -> None:
    v = validator()
    stop = asyncio.Event()
    runner = asyncio.create_task(v.run(stop))
    v([tick(p, i) for i, p in enumerate(walk(200))])
    for _ in range(100):
        await asyncio.sleep(0.01)
        if not v.pending:
            break
    stop.set()
    await runner
    assert v.stats.deferred == 200 and not v.pending


def test_a_deep_late_verdict_is_republished_when_the_tick_is_still_the_latest() -> None:
    sent: list[Tick] = []
    latest: dict[tuple[str, str], Tick] = {}
    v = validator(republish=sent.extend, latest=lambda k, p: latest.get((k, p)))
    # A price well off its neighbours but under tier 1's jump bound: tier 3 catches it.
    prices = [*walk(60), 82_000, *walk(40, 61)]
    ticks = [tick(p, i) for i, p in enumerate(prices)]
    for t in ticks[:61]:
        latest[(KEY, "fyers")] = t
        v([t])
    v.process()
    outlier = ticks[60]
    assert outlier.flags & Check.OUTLIER_TRIMMED  # decided at once, after the tick went out
    assert sent == [outlier]  # it was the latest: clients get the verdict now
    for t in ticks[61:]:
        latest[(KEY, "fyers")] = t
        v([t])
    v.process()
    assert outlier.flags & Check.OUTLIER_MAD  # 25 ticks later
    assert sent == [outlier]  # no longer the latest: counted, not re-sent
    assert v.tracker.overall.by_check["outlier_mad"] == 1
    assert v.tracker.overall.flagged == 1  # one tick, whatever the number of checks


def test_a_run_of_flags_is_one_incident() -> None:
    v = validator()
    ticks = [tick(p, i) for i, p in enumerate(walk(10))]
    for t in ticks[3:6]:
        t.bid, t.ask = t.ltp + 10, t.ltp + 5  # crossed
    v(ticks)
    v.process()
    v.sweep(now_ns=ticks[-1].recv_ns + 2 * 10**9)  # quiet for longer than 1 s
    (incident,) = v.tracker.incidents_drain()
    assert (incident.key, incident.provider, incident.check) == (KEY, "fyers", "crossed_book")
    assert incident.occurrences == 3 and incident.tier == 1
    assert incident.observed == ticks[5].ltp


def test_a_symbol_whose_providers_keep_disagreeing_is_escalated() -> None:
    v = Validator(tier1=Tier1(), tracker=AccuracyTracker(min_comparisons=20))
    v.set_specs({KEY: spec(ValidationTier.CROSS)})
    ticks = []
    for i in range(40):
        ticks.append(tick(80_000, i))
        # Every fourth second Upstox prints 2 % away: 75 % agreement.
        ticks.append(tick(81_600 if i % 4 == 3 else 80_000, i, provider="upstox"))
    v(ticks)
    v.process()
    assert v.tier_of(v.tier1.series[f"fyers:{KEY}"]) is ValidationTier.CROSS
    (escalation,) = v.sweep(now_ns=ticks[-1].recv_ns)
    assert escalation.key == KEY and escalation.preferred == "fyers"
    counts = v.tracker.symbols[KEY]
    assert counts.agreement is not None and counts.agreement < 0.995
    assert f"agreement {counts.agreement:.2%} over {counts.comparisons} comparisons" in (
        escalation.reason
    )
    assert v.tier_of(v.tier1.series[f"fyers:{KEY}"]) is ValidationTier.DEEP
    recorded = [i for i in v.tracker.incidents_drain() if i.check == "escalation"]
    assert recorded and recorded[0].decision == "escalated"
    assert v.sweep(now_ns=ticks[-1].recv_ns + 1) == []  # once


def test_a_discrepancy_marks_the_loser_with_the_consensus_price() -> None:
    v = Validator(tier1=Tier1())
    v.set_specs({KEY: spec(ValidationTier.CROSS)})
    for i in range(5):
        v([tick(80_000, i), tick(80_000, i, provider="upstox")])
    bad = tick(82_000, 5, provider="upstox")
    v([tick(80_005, 5), bad])
    v.process()
    assert bad.flags == Check.DISCREPANCY and bad.consensus == 80_005
    after = tick(82_010, 6, provider="upstox")
    v([after])  # marked inline now that the verdict stands
    assert after.flags == Check.DISCREPANCY and after.consensus == 80_005


async def test_rest_recheck_confirms_a_genuine_move_and_clears_the_reference() -> None:
    async def rest(keys: list[str]) -> dict[str, tuple[int, int]]:
        return {key: (88_000, 2) for key in keys}  # the market really is at 880

    v = validator(recheck=rest)
    ticks = [tick(p, i) for i, p in enumerate(walk(30))] + [tick(88_000, 30)]
    v(ticks)
    v.process()
    assert ticks[-1].flags & Check.JUMP
    assert await v.recheck_once() == 1
    assert v.stats.recheck_confirmed == 1
    assert v.tier1.last_good(f"fyers:{KEY}") == 88_000
    v.flush()
    confirmed = [i for i in v.tracker.incidents_drain() if i.check == "rest_recheck"]
    assert confirmed and confirmed[0].decision == "confirmed"


async def test_rest_recheck_disagreeing_adds_its_verdict() -> None:
    async def rest(keys: list[str]) -> dict[str, tuple[int, int]]:
        return {key: (80_000, 2) for key in keys}

    v = validator(recheck=rest)
    ticks = [tick(p, i) for i, p in enumerate(walk(30))] + [tick(88_000, 30)]
    v(ticks)
    v.process()
    await v.recheck_once()
    assert ticks[-1].flags & Check.REST_RECHECK


async def test_a_failing_rest_recheck_is_counted_and_harmless() -> None:
    async def rest(keys: list[str]) -> dict[str, tuple[int, int]]:
        raise ConnectionError("REST down")

    v = validator(recheck=rest)
    v([tick(p, i) for i, p in enumerate(walk(30))] + [tick(88_000, 30)])
    v.process()
    assert await v.recheck_once() == 0
    assert v.stats.recheck_failed == 1


def test_stale_symbols_become_incidents() -> None:
    v = validator()
    t = tick(80_000, 0)
    v([t])
    v.process()
    v.sweep(now_ns=t.recv_ns + 60 * 10**9)
    v.sweep(now_ns=t.recv_ns + 70 * 10**9)
    stale = [i for i in v.tracker.incidents_drain() if i.check == "stale"]
    assert len(stale) == 1 and stale[0].detail["silent_seconds"] >= 59


def test_high_frequency_symbols_get_tier_1_only() -> None:
    v = Validator(tier1=Tier1())
    v.set_specs({KEY: spec(ValidationTier.FAST)})
    prices = [*walk(60), 82_000, *walk(40, 61)]
    ticks = [tick(p, i) for i, p in enumerate(prices)]
    v(ticks)
    v.flush()
    assert not any(t.flags for t in ticks)  # the deep filters would flag 82_000
    assert v.deep == {}


def test_specs_set_later_carry_the_grid_and_the_per_type_threshold() -> None:
    v = Validator()
    v.set_specs({"NSE:OPT": InstrumentSpec(key="NSE:OPT", instrument_type="OPT", segment="FO",
                                            tick_size=Decimal("0.05"))})  # fmt: skip
    assert v.tier2.threshold_bps("NSE:OPT") == 300.0
    assert v.tier2.grid("NSE:OPT", 2) == 5


def test_the_earlier_tick_of_a_losing_provider_gets_its_verdict_late() -> None:
    sent: list[Tick] = []
    latest: dict[tuple[str, str], Tick] = {}
    v = Validator(tier1=Tier1(), republish=sent.extend, latest=lambda k, p: latest.get((k, p)))
    v.set_specs({KEY: spec(ValidationTier.CROSS)})

    def at_second(ltp: int, second: int, provider: str, ms: int = 0) -> Tick:
        t = tick(ltp, 0, provider=provider)
        t.exchange_ts = T0 + second * 1000 + ms  # FYERS stamps whole seconds
        t.recv_ns = (T0 + second * 1000 + 300) * 1_000_000
        return t

    for i in range(5):
        v([at_second(80_000, i, "fyers"), at_second(80_000, i, "upstox", 250)])
    bad = at_second(82_000, 5, "upstox", 250)  # Upstox goes 2.5 % off before FYERS prints
    latest[(KEY, "upstox")] = bad
    v([bad])
    v.process()
    assert bad.flags == 0  # nothing of that second to compare with yet: it went out clean
    v([at_second(80_005, 5, "fyers")])
    v.process()
    assert bad.flags == Check.DISCREPANCY and bad.consensus == 80_005
    assert sent == [bad]  # still the latest: re-sent with the verdict


def test_an_escalation_cleared_by_an_operator_is_dropped_and_measured_afresh() -> None:
    v = Validator(tier1=Tier1(), tracker=AccuracyTracker(min_comparisons=20))
    v.set_specs({KEY: spec(ValidationTier.CROSS)})
    for i in range(40):
        v([tick(80_000, i), tick(81_600 if i % 4 == 3 else 80_000, i, provider="upstox")])
    v.process()
    (escalation,) = v.sweep(now_ns=T0 * 10**6)
    v.escalations.clear()  # stored by the glue
    v.escalations_sync([escalation])
    assert KEY in v.overrides
    v.escalations_sync([])  # cleared in the admin
    assert KEY not in v.overrides and v.tracker.symbols[KEY].comparisons == 0
    assert v.sweep(now_ns=T0 * 10**6) == []  # not escalated again before new evidence
