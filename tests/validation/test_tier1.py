"""Tier 1, rule by rule: good and bad ticks, and the real-world edge cases."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from feeds.providers.ticks import ProviderName, Tick
from validation.checks import Check, ValidationTier
from validation.sessions import SessionCalendar
from validation.tier1 import InstrumentSpec, Tier1

# A Wednesday, 11:00 IST (05:30 UTC): the cash market is open.
OPEN_MS = int(datetime(2026, 11, 25, 5, 30, tzinfo=UTC).timestamp() * 1000)

SPECS = {
    "NSE:SBIN": InstrumentSpec(key="NSE:SBIN", tick_size=Decimal("0.05")),
    "NSE:PENNY": InstrumentSpec(key="NSE:PENNY", tick_size=Decimal("0.01")),
    "NSE:NOTICK": InstrumentSpec(key="NSE:NOTICK", tick_size=None),
    "NSE:NIFTY50": InstrumentSpec(
        key="NSE:NIFTY50", instrument_type="INDEX", tick_size=Decimal("0.05")
    ),
    "NSE:NIFTY-CE": InstrumentSpec(
        key="NSE:NIFTY-CE", instrument_type="OPT", segment="FO", tick_size=Decimal("0.05")
    ),
}


def tick(key: str = "NSE:SBIN", ltp: int = 80_000, *, at: int = 0, **fields: Any) -> Tick:
    """A FYERS tick of ``key`` ``at`` ms after OPEN_MS; quote fields only when given."""
    t = Tick(ProviderName.FYERS, f"F:{key}", ltp, 2, (OPEN_MS + at) * 1_000_000, instrument=key)
    t.exchange_ts = OPEN_MS + at
    for name, value in fields.items():
        setattr(t, name, value)
    return t


def run(ticks: list[Tick], *, tier1: Tier1 | None = None) -> list[int]:
    tier1 = tier1 or Tier1(specs=SPECS)
    return [tier1.check(t) for t in ticks]


def series(prices: list[int], key: str = "NSE:SBIN", **fields: Any) -> list[Tick]:
    """Ticks one second apart with a growing volume (so none is a repeat)."""
    return [tick(key, p, at=i * 1000, volume=100 * (i + 1), **fields) for i, p in enumerate(prices)]


# --- one rule at a time -------------------------------------------------------------------

CASES = [
    # (what, ticks, flags of each tick)
    ("clean walk", series([80_000, 80_005, 79_995, 80_010]), [0, 0, 0, 0]),
    ("zero price", series([80_000, 0]), [0, Check.NOT_POSITIVE]),
    ("negative price", series([80_000, -80_000]), [0, Check.NOT_POSITIVE]),
    ("off the 0.05 grid", series([80_000, 80_002]), [0, Check.OFF_TICK_GRID]),
    ("bid off the grid", [tick(bid=79_993, ask=80_005, volume=1)], [Check.OFF_TICK_GRID]),
    ("above the upper circuit",
     series([80_000, 88_005], lower_circuit=72_000, upper_circuit=88_000),
     [0, Check.OUTSIDE_CIRCUIT]),
    ("below the lower circuit",
     series([80_000, 71_995], lower_circuit=72_000, upper_circuit=88_000),
     [0, Check.OUTSIDE_CIRCUIT]),
    ("a circuit hit is a price, not a jump",
     series([80_000, 88_000], lower_circuit=72_000, upper_circuit=88_000), [0, 0]),
    ("above the day's high", series([80_000, 80_600], low=79_000, high=80_500),
     [0, Check.OUTSIDE_DAY_RANGE]),
    ("inside the day's range", series([80_000, 80_500], low=79_000, high=80_500), [0, 0]),
    ("crossed book", [tick(bid=80_010, ask=80_005, volume=1)], [Check.CROSSED_BOOK]),
    ("locked book is allowed", [tick(bid=80_005, ask=80_005, volume=1)], [0]),
    ("exchange time backwards",
     [tick(at=5000, volume=1), tick(at=3000, volume=2)], [0, Check.TIME_BACKWARDS]),
    ("same exchange time is fine",
     [tick(at=5000, volume=1), tick(80_005, at=5000, volume=2)], [0, 0]),
    ("cumulative volume falls",
     [tick(volume=500), tick(at=1000, volume=250)], [0, Check.VOLUME_BACKWARDS]),
    ("exact repeat", [tick(volume=500, ltq=5), tick(volume=500, ltq=5)], [0, Check.DUPLICATE]),
    ("an index repeating its value is not a duplicate",
     [tick("NSE:NIFTY50", 2_400_000), tick("NSE:NIFTY50", 2_400_000)], [0, 0]),
    ("an index value is computed: no grid, whatever the master says",
     series([2_400_000, 2_400_003], "NSE:NIFTY50"), [0, 0]),
    ("decimal shift x10", series([80_000, 800_000]), [0, Check.JUMP]),
    ("decimal shift /10", series([80_000, 8_000]), [0, Check.JUMP]),
    ("5 % spike then back", series([80_000, 84_000, 80_005]), [0, Check.JUMP, 0]),
    ("2.5 % equity move is not a jump", series([80_000, 82_000]), [0, 0]),
    ("index: 2 % is a jump", series([2_400_000, 2_448_000], "NSE:NIFTY50"), [0, Check.JUMP]),
    ("index: 1 % is not", series([2_400_000, 2_424_000], "NSE:NIFTY50"), [0, 0]),
    ("option: 4 % is not a jump",
     series([12_000, 12_480], "NSE:NIFTY-CE"), [0, 0]),
    ("option: 10 % is", series([12_000, 13_200], "NSE:NIFTY-CE"), [0, Check.JUMP]),
    ("cheap option: three ticks is never a jump",
     series([50, 65, 50], "NSE:NIFTY-CE"), [0, 0, 0]),
    ("master tick 0.01 above Rs 250 stays 0.01 (monthly review)",
     series([26_000, 26_003], "NSE:PENNY"), [0, 0]),
    ("no master tick: the band of the previous close (Rs 600: 0.05)",
     series([60_000, 60_003], "NSE:NOTICK", prev_close=60_000), [0, Check.OFF_TICK_GRID]),
]  # fmt: skip


@pytest.mark.parametrize(("ticks", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rule(ticks: list[Tick], expected: list[int]) -> None:
    assert run(ticks) == [int(e) for e in expected]
    # The flags are on the ticks themselves, for the publisher.
    assert [t.flags for t in ticks] == [int(e) for e in expected]


# --- jumps: genuine moves, spikes, the reference ---------------------------------------------


def test_a_genuine_10_percent_move_is_flagged_once_not_twice() -> None:
    flags = run(series([80_000, 80_005, 88_000, 88_005, 87_995, 88_010]))
    assert flags == [0, 0, Check.JUMP, 0, 0, 0]


def test_a_flagged_tick_never_becomes_the_reference() -> None:
    tier1 = Tier1(specs=SPECS)
    ticks = series([80_000, 800_000, 80_010, 79_990])  # x10, then back to normal
    assert run(ticks, tier1=tier1) == [0, Check.JUMP, 0, 0]
    assert tier1.last_good("F:NSE:SBIN") == 79_990


def test_two_spikes_in_a_row_far_apart_do_not_confirm_each_other() -> None:
    assert run(series([80_000, 88_000, 72_000, 80_005])) == [0, Check.JUMP, Check.JUMP, 0]


def test_the_jump_bound_follows_the_instruments_own_moves() -> None:
    # A symbol that moves 1.2 % per tick as a habit: a 3.5 % move is within 8 mean moves.
    prices = [80_000 + (960 if i % 2 else 0) for i in range(60)]
    ticks = series([*prices, prices[-1] + 2_800])
    assert run(ticks)[-1] == 0


def test_providers_are_checked_separately() -> None:
    tier1 = Tier1(specs=SPECS)
    fyers = tick(volume=10)
    upstox = Tick(ProviderName.UPSTOX, "NSE_EQ|X", 80_000, 2, fyers.recv_ns,
                  instrument="NSE:SBIN")  # fmt: skip
    upstox.exchange_ts, upstox.volume = fyers.exchange_ts, 10
    # The same values from the other provider are not a duplicate.
    assert run([fyers, upstox], tier1=tier1) == [0, 0]


# --- sessions ----------------------------------------------------------------------------


def test_pre_open_allows_crossed_books_and_big_moves_then_anchors_the_open() -> None:
    calendar = SessionCalendar()  # exchange hours
    tier1 = Tier1(specs=SPECS, calendar=calendar)
    pre_open = int(datetime(2026, 11, 25, 3, 35, tzinfo=UTC).timestamp() * 1000)  # 09:05 IST
    open_ = int(datetime(2026, 11, 25, 3, 46, tzinfo=UTC).timestamp() * 1000)  # 09:16 IST

    def at(ms: int, ltp: int, **fields: Any) -> Tick:
        return tick(ltp=ltp, at=ms - OPEN_MS, **fields)

    ticks = [
        at(pre_open, 80_000, bid=81_000, ask=80_500),  # unmatched book: crossed is normal
        at(pre_open + 60_000, 86_400),  # indicative price 8 % away: no jump in pre-open
        at(open_, 86_450, volume=10),  # the open follows the equilibrium price
        at(open_ + 1000, 80_000, volume=20),  # back to yesterday's level in one print: a jump
    ]
    assert run(ticks, tier1=tier1) == [0, 0, 0, Check.JUMP]


def test_a_new_trading_day_starts_volumes_over() -> None:
    day = 86_400_000
    assert run([tick(volume=9_000), tick(at=day, volume=10)]) == [0, 0]


# --- staleness ---------------------------------------------------------------------------


def test_a_silent_symbol_is_stale_once_per_silence() -> None:
    tier1 = Tier1(specs={"NSE:SBIN": InstrumentSpec(key="NSE:SBIN", tick_size=Decimal("0.05"),
                                                    tier=ValidationTier.FAST)})  # fmt: skip
    first = tick(volume=1)
    tier1.check(first)
    soon = first.recv_ns + 10 * 10**9
    later = first.recv_ns + 31 * 10**9  # FAST symbols: 30 s
    assert list(tier1.stale(now_ns=soon)) == []
    stale = list(tier1.stale(now_ns=later))
    assert [(s.key, round(silent)) for s, silent in stale] == [("NSE:SBIN", 31)]
    assert list(tier1.stale(now_ns=later + 10**9)) == []  # reported once
    tier1.check(tick(at=40_000, volume=2))
    assert len(list(tier1.stale(now_ns=later + 40 * 10**9))) == 1  # a new silence


def test_no_staleness_while_the_market_is_closed() -> None:
    tier1 = Tier1(specs=SPECS, calendar=SessionCalendar())
    sunday = int(datetime(2026, 11, 29, 5, 30, tzinfo=UTC).timestamp() * 1000)
    t = tick(at=sunday - OPEN_MS, volume=1)
    tier1.check(t)
    assert list(tier1.stale(now_ns=t.recv_ns + 3600 * 10**9)) == []


# --- bookkeeping -------------------------------------------------------------------------


def test_unmapped_ticks_are_counted_not_checked() -> None:
    tier1 = Tier1(specs=SPECS)
    stray = Tick(ProviderName.FYERS, "NSE:UNKNOWN-EQ", -5, 2, 0)
    assert tier1.check(stray) == 0
    assert tier1.unchecked == 1


def test_instruments_no_longer_carried_are_forgotten() -> None:
    tier1 = Tier1(specs=SPECS)
    run(series([80_000]) + series([2_400_000], "NSE:NIFTY50"), tier1=tier1)
    tier1.set_specs({"NSE:NIFTY50": SPECS["NSE:NIFTY50"]})
    assert set(tier1.series) == {"F:NSE:NIFTY50"}


def test_a_spec_change_applies_to_the_running_series() -> None:
    tier1 = Tier1(specs=SPECS)
    run(series([26_000]), tier1=tier1)
    tier1.set_specs({"NSE:SBIN": InstrumentSpec(key="NSE:SBIN", tick_size=Decimal("0.10"))})
    assert tier1.check(tick(ltp=26_005, at=1000, volume=999)) == Check.OFF_TICK_GRID
