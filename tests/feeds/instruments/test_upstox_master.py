"""Upstox instrument-master parser: plain and gzipped JSON, each kind, every rejection."""

from __future__ import annotations

import gzip
import json
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from feeds.instruments.records import (
    Exchange,
    InstrumentType,
    OptionType,
    RowError,
    Segment,
    SourceRef,
    UpstoxRow,
)
from feeds.instruments.upstox_master import MasterFileError, parse_upstox_json

EQUITY: dict[str, Any] = {
    "segment": "NSE_EQ",
    "name": "STATE BANK OF INDIA",
    "exchange": "NSE",
    "isin": "INE062A01020",
    "instrument_type": "EQ",
    "instrument_key": "NSE_EQ|INE062A01020",
    "lot_size": 1,
    "freeze_quantity": 100000.0,
    "exchange_token": "3045",
    "tick_size": 5.0,
    "trading_symbol": "SBIN",
    "short_name": "State Bank of India",
    "security_type": "NORMAL",
    "qty_multiplier": 1.0,
}
INDEX: dict[str, Any] = {
    "segment": "NSE_INDEX",
    "name": "Nifty 50",
    "exchange": "NSE",
    "instrument_type": "INDEX",
    "instrument_key": "NSE_INDEX|Nifty 50",
    "exchange_token": "26000",
    "trading_symbol": "NIFTY",
}
FUTURE: dict[str, Any] = {
    "weekly": False,
    "segment": "NSE_FO",
    "name": "NIFTY",
    "exchange": "NSE",
    "expiry": 1798538400000,  # 2026-12-29 15:30 IST
    "instrument_type": "FUT",
    "underlying_symbol": "NIFTY",
    "instrument_key": "NSE_FO|35003",
    "lot_size": 75,
    "freeze_quantity": 1800.0,
    "exchange_token": "35003",
    "minimum_lot": 75,
    "underlying_key": "NSE_INDEX|Nifty 50",
    "tick_size": 5.0,
    "underlying_type": "INDEX",
    "trading_symbol": "NIFTY FUT 29 DEC 26",
    "strike_price": 0.0,
}
OPTION: dict[str, Any] = {
    **FUTURE,
    "instrument_type": "PE",
    "instrument_key": "NSE_FO|35084",
    "exchange_token": "35084",
    "trading_symbol": "NIFTY 24000.5 PE 29 DEC 26",
    "strike_price": 24000.5,
}


def write(tmp_path: Path, document: Any, *, gz: bool = False, name: str = "master.json") -> Path:
    data = json.dumps(document).encode()
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def parse(tmp_path: Path, *elements: Any) -> list[UpstoxRow | RowError]:
    return list(parse_upstox_json(write(tmp_path, list(elements))))


def reason(tmp_path: Path, element: Any) -> str:
    (result,) = parse(tmp_path, element)
    assert isinstance(result, RowError), result
    return result.reason


def test_equity_element(tmp_path: Path) -> None:
    path = write(tmp_path, [EQUITY])
    (row,) = parse_upstox_json(path, display_path="upstox/complete.json.gz")
    assert row == UpstoxRow(
        source=SourceRef("upstox/complete.json.gz", 1),
        instrument_key="NSE_EQ|INE062A01020",
        trading_symbol="SBIN",
        name="STATE BANK OF INDIA",
        exchange=Exchange.NSE,
        segment=Segment.CM,
        instrument_type=InstrumentType.EQ,
        series="EQ",
        isin="INE062A01020",
        exchange_token="3045",
        underlying="",
        tick_size=Decimal("0.05"),
        lot_size=1,
        expiry=None,
        strike=None,
        option_type=None,
    )


def test_other_equity_series(tmp_path: Path) -> None:
    (row,) = parse(tmp_path, {**EQUITY, "instrument_type": "BE", "tick_size": 1.0})
    assert isinstance(row, UpstoxRow)
    assert (row.instrument_type, row.series, row.tick_size) == (
        InstrumentType.EQ,
        "BE",
        Decimal("0.01"),
    )


def test_index_element_gets_default_lot_and_tick(tmp_path: Path) -> None:
    (row,) = parse(tmp_path, INDEX)
    assert isinstance(row, UpstoxRow)
    assert (row.instrument_type, row.segment, row.lot_size, row.tick_size) == (
        InstrumentType.INDEX,
        Segment.CM,
        1,
        Decimal("0.05"),
    )
    assert (row.name, row.underlying, row.series) == ("Nifty 50", "", "")


def test_index_without_exchange_token_is_fine(tmp_path: Path) -> None:
    element = {k: v for k, v in INDEX.items() if k != "exchange_token"}
    (row,) = parse(tmp_path, {**element, "segment": "BSE_INDEX", "instrument_key": "BSE_INDEX|X"})
    assert isinstance(row, UpstoxRow)
    assert (row.exchange, row.exchange_token) == (Exchange.BSE, "")


def test_future_and_option(tmp_path: Path) -> None:
    fut, opt = parse(tmp_path, FUTURE, OPTION)
    assert isinstance(fut, UpstoxRow) and isinstance(opt, UpstoxRow)
    assert (fut.instrument_type, fut.expiry, fut.strike, fut.underlying) == (
        InstrumentType.FUT,
        date(2026, 12, 29),
        None,
        "NIFTY",
    )
    assert (opt.instrument_type, opt.option_type, opt.strike) == (
        InstrumentType.OPT,
        OptionType.PE,
        Decimal("24000.5"),
    )
    assert (opt.tick_size, opt.lot_size, opt.source.line) == (Decimal("0.05"), 75, 2)


@pytest.mark.parametrize(
    ("segment", "exchange", "kind"),
    [
        ("NCD_FO", Exchange.NSE, Segment.CD),
        ("NSE_COM", Exchange.NSE, Segment.COM),
        ("BSE_FO", Exchange.BSE, Segment.FO),
        ("BCD_FO", Exchange.BSE, Segment.CD),
        ("MCX_FO", Exchange.MCX, Segment.COM),
    ],
)
def test_derivative_segments(tmp_path: Path, segment: str, exchange: Exchange, kind: Segment):
    element = {**FUTURE, "segment": segment, "instrument_key": f"{segment}|1"}
    (row,) = parse(tmp_path, element)
    assert isinstance(row, UpstoxRow) and (row.exchange, row.segment) == (exchange, kind)


def test_expiry_is_the_date_in_india(tmp_path: Path) -> None:
    # 2026-12-30 00:30 IST is 2026-12-29 19:00 UTC.
    (row,) = parse(tmp_path, {**FUTURE, "expiry": 1798569000000})
    assert isinstance(row, UpstoxRow) and row.expiry == date(2026, 12, 30)


def test_small_paise_tick(tmp_path: Path) -> None:
    currency = {**OPTION, "segment": "NCD_FO", "instrument_key": "NCD_FO|1", "tick_size": 0.25}
    (row,) = parse(tmp_path, currency)
    assert isinstance(row, UpstoxRow) and row.tick_size == Decimal("0.0025")


def test_gzip_is_detected_by_content_not_name(tmp_path: Path) -> None:
    gz = write(tmp_path, [EQUITY, INDEX], gz=True, name="complete.json")
    plain = write(tmp_path, [EQUITY, INDEX], name="complete.json.gz")
    from_gz = [r for r in parse_upstox_json(gz, display_path="x")]
    from_plain = [r for r in parse_upstox_json(plain, display_path="x")]
    assert from_gz == from_plain
    assert all(isinstance(r, UpstoxRow) for r in from_gz)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"status": "error"}', "expected a JSON array of instruments, got an object"),
        (b'"hello"', "expected a JSON array of instruments, got a string"),
        (b"null", "got null"),
        (b"[1, 2", "not valid JSON"),
        (b"", "not valid JSON"),
        (b"\xff\xfe[]", "not valid JSON"),
        (b"\x1f\x8b\x08\x00garbage", "not a readable gzip file"),
        (gzip.compress(b'{"a": 1}'), "expected a JSON array"),
    ],
)
def test_file_level_rejections(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "complete.json.gz"
    path.write_bytes(content)
    with pytest.raises(MasterFileError, match=message) as info:
        parse_upstox_json(path, display_path="up.json.gz")  # raises at call time
    assert str(info.value).startswith("up.json.gz: ")
    assert isinstance(info.value, ValueError)


def test_unreadable_file_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        parse_upstox_json(tmp_path / "missing.json")


def test_empty_array_yields_nothing(tmp_path: Path) -> None:
    assert parse(tmp_path) == []


def drop(element: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in element.items() if k not in keys}


@pytest.mark.parametrize(
    ("element", "expected"),
    [
        ([1, 2], "element is an array, not an object"),
        ("NSE_EQ|INE062A01020", "element is a string, not an object"),
        (None, "element is null, not an object"),
        (drop(EQUITY, "segment"), "missing required key(s): 'segment'"),
        (
            drop(EQUITY, "instrument_key", "trading_symbol"),
            "missing required key(s): 'instrument_key', 'trading_symbol'",
        ),
        ({**EQUITY, "exchange": ""}, "missing required key(s): 'exchange'"),
        (drop(EQUITY, "exchange_token"), "missing required key(s): 'exchange_token'"),
        (drop(FUTURE, "expiry"), "missing required key(s): 'expiry'"),
        (drop(FUTURE, "underlying_symbol"), "missing required key(s): 'underlying_symbol'"),
        ({**EQUITY, "segment": "XYZ_EQ"}, "unknown segment 'XYZ_EQ'"),
        ({**EQUITY, "segment": 7}, "'segment' must be a string, got a number"),
        (
            {**EQUITY, "instrument_key": "BSE_EQ|INE062A01020"},
            "instrument_key 'BSE_EQ|INE062A01020' does not start with 'NSE_EQ|'",
        ),
        ({**EQUITY, "instrument_key": "NSE_EQ|"}, "does not start with 'NSE_EQ|'"),
        ({**EQUITY, "instrument_type": "INDEX"}, "'INDEX' in non-index segment 'NSE_EQ'"),
        ({**INDEX, "instrument_type": "EQ"}, "instrument_type 'EQ' in index segment"),
        ({**FUTURE, "instrument_type": "SWAP"}, "unsupported instrument_type 'SWAP'"),
        ({**EQUITY, "tick_size": "abc"}, "bad tick_size 'abc': not a number"),
        ({**EQUITY, "tick_size": 0}, "bad tick_size 0: not positive"),
        ({**EQUITY, "tick_size": True}, "bad tick_size True: not a number"),
        ({**EQUITY, "tick_size": [5]}, "bad tick_size [5]: not a number"),
        ({**EQUITY, "tick_size": "NaN"}, "bad tick_size 'NaN': not a finite number"),
        (drop(EQUITY, "tick_size"), "missing required key(s): 'tick_size'"),
        ({**EQUITY, "lot_size": -75}, "bad lot_size -75: not positive"),
        ({**EQUITY, "lot_size": 7.5}, "bad lot_size 7.5: not a sane whole number"),
        ({**EQUITY, "lot_size": 1e300}, "not a sane whole number"),
        ({**FUTURE, "expiry": "soon"}, "bad expiry 'soon': not a number"),
        ({**FUTURE, "expiry": -1}, "bad expiry -1: not a positive whole number"),
        ({**FUTURE, "expiry": 10**20}, "not a positive whole number of epoch milliseconds"),
        ({**OPTION, "strike_price": 0.0}, "bad strike_price 0.0: not positive"),
        ({**OPTION, "strike_price": "x"}, "bad strike_price 'x': not a number"),
        (drop(OPTION, "strike_price"), "bad strike_price None: not positive"),
        ({**EQUITY, "exchange_token": {"a": 1}}, "'exchange_token' must be a string"),
    ],
)
def test_element_rejections(tmp_path: Path, element: Any, expected: str) -> None:
    assert expected in reason(tmp_path, element)


def test_errors_do_not_stop_the_array(tmp_path: Path) -> None:
    results = parse(tmp_path, EQUITY, {**EQUITY, "segment": "XYZ_EQ"}, INDEX)
    assert [type(r) for r in results] == [UpstoxRow, RowError, UpstoxRow]
    assert str(results[1]) == f"{tmp_path / 'master.json'}:2: unknown segment 'XYZ_EQ'"
    assert results[2].source.line == 3


def test_integer_exchange_token_is_tolerated(tmp_path: Path) -> None:
    (row,) = parse(tmp_path, {**FUTURE, "exchange_token": 35003})
    assert isinstance(row, UpstoxRow) and row.exchange_token == "35003"
