"""NSE tick sizes and the integer price grid that tier 1 checks prices against.

Tick sizes by price band (NSE circulars: one paisa below Rs 250 from June 2024; the band table
from 15 April 2025). NSE reviews them monthly on the closing price of the month's last trading
day and publishes them in the contract master, so an instrument's tick does not change within
the month when its price crosses a band edge: the master's tick is authoritative, and the band
table is only a fallback, applied to the reference price (the previous close), never to each
tick's own price.

No Django and no I/O.
"""

from __future__ import annotations

from decimal import Decimal

# Equities and stock futures. Bands are (lower, upper]: "250 to 1000" includes 1000, and a
# price exactly at 5000, 10000 or 20000 takes the lower band's tick. The first band is
# [0, 250), so 250 itself is already in the 0.05 band.
_EQ_FIRST_UPPER = Decimal(250)
_EQ_FIRST_TICK = Decimal("0.01")
_EQ_BANDS: tuple[tuple[Decimal, Decimal], ...] = (
    (Decimal(1000), Decimal("0.05")),
    (Decimal(5000), Decimal("0.10")),
    (Decimal(10000), Decimal("0.50")),
    (Decimal(20000), Decimal("1.00")),
)
_EQ_TOP_TICK = Decimal("5.00")

# Index futures, by the futures price (the index level): <= 15000, (15000, 30000], > 30000.
_INDEX_FUT_BANDS: tuple[tuple[Decimal, Decimal], ...] = (
    (Decimal(15000), Decimal("0.05")),
    (Decimal(30000), Decimal("0.10")),
)
_INDEX_FUT_TOP_TICK = Decimal("0.20")

_OPTION_TICK = Decimal("0.05")  # index and stock options: unchanged by the 2025 revision
# Indices are computed, not traded: no tick as such, but their values have two decimals.
_INDEX_TICK = Decimal("0.01")


def _banded(price: Decimal, bands: tuple[tuple[Decimal, Decimal], ...], top: Decimal) -> Decimal:
    for upper, tick in bands:
        if price <= upper:
            return tick
    return top


def nse_band_tick(
    *, instrument_type: str, price: Decimal, underlying_is_index: bool = False
) -> Decimal:
    """The band-table tick for ``price``; ``instrument_type`` is "EQ", "FUT", "OPT" or "INDEX".
    ``underlying_is_index`` picks the index-futures table for "FUT" and is ignored otherwise."""
    if not price.is_finite() or price < 0:
        raise ValueError(f"price must be a finite, non-negative Decimal: {price!r}")
    if instrument_type == "OPT":
        return _OPTION_TICK
    if instrument_type == "INDEX":
        return _INDEX_TICK
    if instrument_type == "FUT" and underlying_is_index:
        return _banded(price, _INDEX_FUT_BANDS, _INDEX_FUT_TOP_TICK)
    if instrument_type in ("EQ", "FUT"):
        if price < _EQ_FIRST_UPPER:
            return _EQ_FIRST_TICK
        return _banded(price, _EQ_BANDS, _EQ_TOP_TICK)
    raise ValueError(f"unknown instrument type: {instrument_type!r}")


def reference_tick(
    *,
    master_tick: Decimal | None,
    instrument_type: str,
    reference_price: Decimal,
    underlying_is_index: bool = False,
) -> Decimal:
    """The tick to hold an instrument to for the day: the master's when it has a positive one,
    else the band tick of ``reference_price`` (the previous close)."""
    # A zero tick in a master row means "not given" (index rows carry none), not "no grid".
    if master_tick is not None and master_tick.is_finite() and master_tick > 0:
        return master_tick
    return nse_band_tick(
        instrument_type=instrument_type,
        price=reference_price,
        underlying_is_index=underlying_is_index,
    )


def tick_grid(*, tick_size: Decimal, scale: int) -> int | None:
    """The tick in integer units of a price scaled by 10**scale (0.05 at scale 2 -> 5), or None
    when it is not a whole number of units there (or not positive): no grid can be checked."""
    if not tick_size.is_finite() or tick_size <= 0:
        return None
    units = tick_size.scaleb(scale)
    if units != units.to_integral_value():
        return None
    return int(units)


def on_grid(price: int, grid: int | None) -> bool:
    """Whether a scaled integer price is a whole number of ticks; True when there is no grid."""
    return grid is None or price % grid == 0
