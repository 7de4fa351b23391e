from __future__ import annotations

from decimal import Decimal

import pytest

from validation.ticksize import nse_band_tick, on_grid, reference_tick, tick_grid

D = Decimal


@pytest.mark.parametrize("instrument_type", ["EQ", "FUT"])
@pytest.mark.parametrize(
    ("price", "tick"),
    [
        ("0", "0.01"),
        ("249.99", "0.01"),
        ("250", "0.05"),
        ("250.00", "0.05"),
        ("999.95", "0.05"),
        ("1000", "0.05"),  # "up to 1000"
        ("1000.05", "0.10"),
        ("5000", "0.10"),
        ("5000.10", "0.50"),
        ("10000", "0.50"),
        ("10000.50", "1.00"),
        ("20000", "1.00"),
        ("20001", "5.00"),
        ("150000", "5.00"),
    ],
)
def test_equity_and_stock_future_bands(instrument_type: str, price: str, tick: str):
    assert nse_band_tick(instrument_type=instrument_type, price=D(price)) == D(tick)


@pytest.mark.parametrize(
    ("price", "tick"),
    [
        ("100", "0.05"),  # the equity table would say 0.01
        ("15000", "0.05"),
        ("15000.05", "0.10"),
        ("30000", "0.10"),
        ("30000.10", "0.20"),
        ("80000", "0.20"),
    ],
)
def test_index_future_bands(price: str, tick: str):
    assert nse_band_tick(instrument_type="FUT", price=D(price), underlying_is_index=True) == D(tick)


@pytest.mark.parametrize("price", ["0.05", "240", "260", "25000"])
@pytest.mark.parametrize("underlying_is_index", [False, True])
def test_options_and_indices(price: str, underlying_is_index: bool):
    kw = {"price": D(price), "underlying_is_index": underlying_is_index}
    assert nse_band_tick(instrument_type="OPT", **kw) == D("0.05")
    assert nse_band_tick(instrument_type="INDEX", **kw) == D("0.01")


@pytest.mark.parametrize(
    ("instrument_type", "price"),
    [("EQ", "-1"), ("EQ", "NaN"), ("FUT", "Infinity"), ("BOND", "100"), ("", "100")],
)
def test_band_tick_rejects(instrument_type: str, price: str):
    with pytest.raises(ValueError):
        nse_band_tick(instrument_type=instrument_type, price=D(price))


@pytest.mark.parametrize(
    ("master", "instrument_type", "reference", "index", "tick"),
    [
        ("0.01", "EQ", "260", False, "0.01"),  # master wins although 260 is in the 0.05 band
        ("0.05", "EQ", "240", False, "0.05"),
        (None, "EQ", "240", False, "0.01"),
        (None, "EQ", "260", False, "0.05"),
        ("0", "EQ", "260", False, "0.05"),  # a zero master tick means "not given"
        (None, "FUT", "24000", True, "0.10"),
        (None, "FUT", "24000", False, "5.00"),
        (None, "OPT", "24000", True, "0.05"),
    ],
)
def test_reference_tick(
    master: str | None, instrument_type: str, reference: str, index: bool, tick: str
):
    got = reference_tick(
        master_tick=None if master is None else D(master),
        instrument_type=instrument_type,
        reference_price=D(reference),
        underlying_is_index=index,
    )
    assert got == D(tick)


@pytest.mark.parametrize(
    ("master", "reference", "price", "expected"),
    [
        # Master and band disagree in each row: the master wins. A stock whose master tick is
        # 0.01 keeps a one-paisa grid at Rs 260 (the band would say 0.05) ...
        ("0.01", "260", 26003, True),
        # ... and a master tick of 0.05 holds at Rs 240 (the band would say 0.01).
        ("0.05", "240", 24003, False),
        ("0.05", "240", 24005, True),
    ],
)
def test_master_tick_sets_the_grid(master: str, reference: str, price: int, expected: bool):
    tick = reference_tick(master_tick=D(master), instrument_type="EQ", reference_price=D(reference))
    assert on_grid(price, tick_grid(tick_size=tick, scale=2)) is expected


@pytest.mark.parametrize(
    ("tick", "scale", "grid"),
    [
        ("0.05", 2, 5),
        ("0.01", 2, 1),
        ("5.00", 2, 500),
        ("0.05", 4, 500),
        ("0.0025", 4, 25),  # currency derivatives
        ("0.0025", 2, None),  # finer than the scale: cannot be checked
        ("0.05", 1, None),
        ("0.001", 2, None),
        ("1", 0, 1),
        ("0", 2, None),
        ("-0.05", 2, None),
        ("NaN", 2, None),
        ("Infinity", 2, None),
    ],
)
def test_tick_grid(tick: str, scale: int, grid: int | None):
    assert tick_grid(tick_size=D(tick), scale=scale) == grid


@pytest.mark.parametrize(
    ("price", "grid", "expected"),
    [
        (26005, 5, True),
        (26003, 5, False),
        (26003, None, True),
        (0, 5, True),
        (834_525, 25, True),  # 83.4525 at scale 4 on a 0.0025 grid
        (834_530, 25, False),
    ],
)
def test_on_grid(price: int, grid: int | None, expected: bool):
    assert on_grid(price, grid) is expected
