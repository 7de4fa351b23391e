"""Small builders for test data (plain functions; no factory library needed)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from itertools import count
from typing import Any

from feeds.models import Instrument

_seq = count(1)


def instrument_make(**overrides: Any) -> Instrument:
    n = next(_seq)
    fields: dict[str, Any] = {
        "key": f"NSE:TEST{n}",
        "exchange": "NSE",
        "segment": "CM",
        "instrument_type": "EQ",
        "name": f"Test Company {n} Ltd",
        "isin": f"INE{n:06d}01",
        "exchange_token": str(90000 + n),
        "tick_size": Decimal("0.05"),
        "lot_size": 1,
        "fyers_symbol": f"NSE:TEST{n}-EQ",
        "fyers_token": f"1010000000{90000 + n}",
        "upstox_key": f"NSE_EQ|INE{n:06d}01",
    }
    fields.update(overrides)
    return Instrument.objects.create(**fields)


def option_make(**overrides: Any) -> Instrument:
    fields: dict[str, Any] = {
        "segment": "FO",
        "instrument_type": "OPT",
        "underlying": "NIFTY",
        "expiry": date(2026, 12, 29),
        "strike": Decimal("24000"),
        "option_type": "CE",
        "lot_size": 75,
    }
    fields.update(overrides)
    return instrument_make(**fields)
