"""Canonical keys: one table per kind, plus the refusals."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from feeds.instruments.keys import canonical_key, format_strike, index_name_key
from feeds.instruments.records import Exchange, InstrumentType, OptionType

DEC29 = date(2026, 12, 29)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Nifty 50", "NIFTY50"),
        ("Nifty Fin Service", "NIFTYFINSERVICE"),
        ("SENSEX", "SENSEX"),
        ("India VIX", "INDIAVIX"),
        ("NIFTY MID SELECT", "NIFTYMIDSELECT"),
        ("Nifty-Bank (TRI)", "NIFTYBANKTRI"),
        ("  bse 100 ", "BSE100"),
    ],
)
def test_index_name_key(name: str, expected: str) -> None:
    assert index_name_key(name) == expected


@pytest.mark.parametrize(
    ("strike", "expected"),
    [
        (Decimal("24000.00"), "24000"),
        (Decimal("24000.50"), "24000.5"),
        (Decimal("24000"), "24000"),
        (Decimal("2.4E+4"), "24000"),
        (Decimal("82.25"), "82.25"),
        (Decimal("0.0025"), "0.0025"),
    ],
)
def test_format_strike(strike: Decimal, expected: str) -> None:
    assert format_strike(strike) == expected


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"exchange": Exchange.NSE, "symbol_root": "SBIN", "series": "EQ"}, "NSE:SBIN"),
        ({"exchange": Exchange.NSE, "symbol_root": "SBIN"}, "NSE:SBIN"),
        ({"exchange": Exchange.NSE, "symbol_root": "SBIN", "series": "BE"}, "NSE:SBIN-BE"),
        ({"exchange": "NSE", "symbol_root": "BAJAJ-AUTO", "series": "EQ"}, "NSE:BAJAJ-AUTO"),
        ({"exchange": "NSE", "symbol_root": "M&M", "series": "eq"}, "NSE:M&M"),
        ({"exchange": Exchange.BSE, "symbol_root": "SBIN", "series": "A"}, "BSE:SBIN-A"),
    ],
)
def test_equity_keys(fields: dict, expected: str) -> None:
    assert canonical_key(instrument_type=InstrumentType.EQ, **fields) == expected


@pytest.mark.parametrize(
    ("exchange", "name", "expected"),
    [
        (Exchange.NSE, "Nifty 50", "NSE:NIFTY50"),
        (Exchange.NSE, "Nifty Bank", "NSE:NIFTYBANK"),
        (Exchange.NSE, "Nifty Fin Service", "NSE:NIFTYFINSERVICE"),
        (Exchange.BSE, "SENSEX", "BSE:SENSEX"),
        (Exchange.BSE, "BSE 100", "BSE:BSE100"),
    ],
)
def test_index_keys(exchange: Exchange, name: str, expected: str) -> None:
    key = canonical_key(exchange=exchange, instrument_type=InstrumentType.INDEX, symbol_root=name)
    assert key == expected


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"instrument_type": "FUT", "symbol_root": "NIFTY"}, "NSE:NIFTY-20261229-FUT"),
        (
            {"instrument_type": "OPT", "symbol_root": "NIFTY", "strike": Decimal("24000.00")},
            "NSE:NIFTY-20261229-24000-CE",
        ),
        (
            {"instrument_type": "OPT", "symbol_root": "NIFTY", "strike": Decimal("24000.50")},
            "NSE:NIFTY-20261229-24000.5-CE",
        ),
        (
            {
                "instrument_type": InstrumentType.OPT,
                "symbol_root": "BANKNIFTY",
                "strike": Decimal("51000.0"),
                "option_type": OptionType.PE,
            },
            "NSE:BANKNIFTY-20261229-51000-PE",
        ),
        # The series never leaks into derivative keys.
        (
            {"instrument_type": "FUT", "symbol_root": "SBIN", "series": "EQ"},
            "NSE:SBIN-20261229-FUT",
        ),
    ],
)
def test_derivative_keys(fields: dict, expected: str) -> None:
    fields = {"option_type": "CE", **fields} if fields["instrument_type"] == "OPT" else fields
    assert canonical_key(exchange=Exchange.NSE, expiry=DEC29, **fields) == expected


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"instrument_type": "EQ", "symbol_root": "  "}, "symbol root"),
        ({"instrument_type": "INDEX", "symbol_root": "--"}, "no letters"),
        ({"instrument_type": "FUT", "symbol_root": "NIFTY"}, "expiry"),
        ({"instrument_type": "OPT", "symbol_root": "NIFTY", "expiry": DEC29}, "strike"),
        (
            {
                "instrument_type": "OPT",
                "symbol_root": "NIFTY",
                "expiry": DEC29,
                "strike": Decimal(1),
            },
            "option type",
        ),
        ({"instrument_type": "SWAP", "symbol_root": "NIFTY"}, "SWAP"),
    ],
)
def test_missing_fields_are_refused(fields: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        canonical_key(exchange="NSE", **fields)
