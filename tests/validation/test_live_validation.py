"""Validation end to end: the simulators inject labelled faults on real sockets, the real
feed worker validates, and a WebSocket client (Channels' communicator on the full ASGI app)
sees what a user would: suspect values marked, the consensus price, outcome rows stored."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async

from feeds.fanout import fanout_hub_stop
from feeds.providers.simulation.faults import DataFault, FaultRule
from feeds.providers.simulation.run import SimulatorSet
from feeds.providers.ticks import Tick
from feeds.runtime import feed_worker_running
from feeds.selectors import market_data_close
from tests.feeds.live import enable, live_worker_config, until
from tests.feeds.test_market_api import Emitted, answer, connected, token_headers, user_make
from validation.engine import Validator
from validation.models import ValidationOutcome
from validation.tier1 import Series

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def critical(
    sims: SimulatorSet, settings
) -> AsyncIterator[tuple[list[str], Emitted, object]]:
    """Four critical equities (both providers, all tiers) through the real worker."""
    settings.VALIDATION = {**settings.VALIDATION, "RECORD_INTERVAL": 0.3, "INCIDENT_QUIET": 0.5}
    emitted = Emitted(sims)
    keys = await enable(4, tier="critical")
    config = live_worker_config("val")
    async with feed_worker_running(config=config) as worker:
        await until(
            lambda: all(len(worker.latest.providers(k)) == 2 for k in keys), 15,
            "every instrument ticking from both providers",
        )  # fmt: skip
        yield keys, emitted, worker
    await fanout_hub_stop()
    await market_data_close()


async def suspect_item(ws, key: str, within: float = 8.0) -> dict:
    async with asyncio.timeout(within):
        while True:
            update = await answer(ws, "update", within)
            for item in update["data"]:
                if item["symbol"] == key and item["suspect"]:
                    return item


def outcomes(**filters) -> list[ValidationOutcome]:
    return list(ValidationOutcome.objects.filter(**filters).select_related("instrument"))


async def test_a_decimal_shift_reaches_clients_marked_and_becomes_one_outcome(sims, critical):
    keys, emitted, _ = critical
    key = keys[0]
    sims.hub.model.set_rate(key, 20.0)  # enough prints for tier 3's windows in a second
    await asyncio.sleep(1.5)
    _, token = await user_make("trader")
    async with connected(token_headers(token)) as ws:
        await answer(ws, "welcome")
        await ws.send_json_to({"action": "subscribe", "mode": "quote", "symbols": [key]})
        await answer(ws, "snapshot")
        sims.hub.faults.add(FaultRule(kind=DataFault.DECIMAL_SHIFT, provider="fyers",
                                      keys=frozenset({key}), count=1))  # fmt: skip
        item = await suspect_item(ws, key)
        (label,) = sims.hub.faults.labels_for(["decimal_shift"])
        scale = emitted.scales[key]
        # x10 or /10 leaves the circuit band and the day's range (a jump when none is sent).
        assert item["provider"] == "fyers"
        assert set(item["checks"]) & {"outside_circuit", "outside_day_range", "jump"}
        assert round(item["ltp"] * 10**scale) == label.sent_ltp  # the bad value, marked
        # The next new print is clean: the shift never became the reference. (The bad one
        # may come again first, carrying tier 3's late verdict while it is the latest.)
        while True:
            update = await answer(ws, "update")
            fresh = [i for i in update["data"] if i["ltp"] != item["ltp"]]
            if fresh:
                assert not fresh[0]["suspect"], fresh[0]
                break

    rows = await _wait_rows(lambda: outcomes(instrument__key=key, check_name__in=item["checks"]))
    assert {r.check_name for r in rows} == set(item["checks"])  # one incident per check
    row = rows[0]
    assert row.provider == "fyers" and row.tier == 1 and row.occurrences == 1
    assert row.observed_value == Decimal(label.sent_ltp).scaleb(-scale)
    # Tier 3 found it an outlier too, and asked the REST quote (the third opinion), which
    # gave the market's price, not the shifted one.
    (recheck,) = await _wait_rows(
        lambda: outcomes(instrument__key=key, check_name="rest_recheck"), within=10.0
    )
    assert recheck.decision == "flagged" and recheck.tier == 3
    assert recheck.observed_value == Decimal(label.sent_ltp).scaleb(-scale)
    assert emitted.saw(key, float(recheck.reference_value))


async def test_a_diverging_provider_is_outvoted_and_clients_get_the_consensus(sims, critical):
    keys, emitted, _ = critical
    key = keys[1]
    _, token = await user_make("quant")
    async with connected(token_headers(token)) as ws:
        await answer(ws, "welcome")
        await ws.send_json_to({"action": "subscribe", "mode": "ltp", "symbols": [key]})
        await answer(ws, "snapshot")
        # FYERS (the feed clients follow) prints 2 % high for 3 s: under tier 1's jump bound,
        # so only the comparison with Upstox can catch it.
        sims.hub.faults.add(FaultRule(kind=DataFault.DIVERGENCE, provider="fyers",
                                      keys=frozenset({key}), rate=1.0, magnitude=0.02,
                                      seconds=3.0))  # fmt: skip
        item = await suspect_item(ws, key)
        assert item["provider"] == "fyers" and item["checks"] == ["discrepancy"]
        assert not emitted.saw(key, item["ltp"])  # FYERS' price is off the market
        assert emitted.saw(key, item["consensus"])  # the consensus is a true market price
        assert abs(item["ltp"] / item["consensus"] - 1.02) < 0.01

    rows = await _wait_rows(lambda: outcomes(instrument__key=key, check_name="discrepancy"))
    row = rows[0]
    assert row.decision == "consensus_upstox" and row.tier == 2 and row.provider == ""
    assert row.fyers_value is not None and row.upstox_value is not None
    assert row.consensus_value == row.upstox_value and row.gap_bps > 100
    assert row.detail["reason"] == "continuous with the agreed price"


async def test_the_worker_keeps_delivering_while_the_deep_stage_is_slow(
    sims, critical, monkeypatch
):
    keys, emitted, worker = critical
    validator: Validator = worker.validate  # type: ignore[assignment]
    validator.config = dataclasses.replace(validator.config, max_pending=50)
    deep = Validator._deep_checks

    def overloaded(self: Validator, series: Series, tick: Tick) -> None:
        time.sleep(0.01)  # 1,000 times its usual cost: far slower than the ticks arrive
        deep(self, series, tick)

    monkeypatch.setattr(Validator, "_deep_checks", overloaded)
    for key in keys:  # 160 ticks/s: 1.6 s of deep work every second
        sims.hub.model.set_rate(key, 20.0)
    _, token = await user_make("patient")
    async with connected(token_headers(token)) as ws:
        await answer(ws, "welcome")
        await ws.send_json_to({"action": "subscribe", "mode": "ltp", "symbols": keys})
        await answer(ws, "snapshot")
        lags, started = [], time.monotonic()
        while time.monotonic() - started < 4.0:
            update = await answer(ws, "update")
            lags += [update["ts"] - item["recv_ts"] for item in update["data"]]
            assert all(emitted.saw(i["symbol"], i["ltp"]) for i in update["data"])
    # Every tick still went out at once: the hub's own latency stayed small...
    assert len(lags) >= 8 and max(lags) < 100, max(lags)
    # ...while the deferred stage fell behind and shed its oldest work, counted.
    assert validator.stats.dropped > 0


async def _wait_rows(select, within: float = 8.0) -> list:
    rows: list = []

    def found() -> bool:
        rows[:] = select()
        return bool(rows)

    check = sync_to_async(found)
    start = time.monotonic()
    while not await check():
        assert time.monotonic() - start < within, "no outcome row recorded in time"
        await asyncio.sleep(0.1)
    return rows
