"""FYERS symbol-master CSV parser: good rows of each kind and every rejection reason."""

from __future__ import annotations

import tempfile
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feeds.instruments.fyers_master import parse_fyers_csv
from feeds.instruments.records import (
    Exchange,
    FyersRow,
    InstrumentType,
    OptionType,
    RowError,
    Segment,
    SourceRef,
)

SBIN = (
    "10100000003045,STATE BANK OF INDIA,0,1,0.05,INE062A01020,0915-1530|1815-1915:,2026-10-03,,"
    "NSE:SBIN-EQ,10,10,3045,SBIN,3045,-1.0,XX,10100000003045,None,None,None"
)
NIFTY50 = (
    "101000000026000,Nifty 50,10,1,0.05,,0915-1530|1815-1915:,2026-10-03,,NSE:NIFTY50-INDEX,"
    "10,10,26000,NIFTY50,26000,-1.0,XX,101000000026000,None,None,None"
)
# 1798538400 = 2026-12-29 15:30 IST
NIFTY_FUT = (
    "101126122935003,NIFTY 29 Dec 26 FUT,11,75,0.05,,0915-1530|1815-1915:,2026-10-03,1798538400,"
    "NSE:NIFTY26DECFUT,10,11,35003,NIFTY,26000,-1.0,XX,101000000026000,None,0,0.0"
)
NIFTY_OPT = (
    "101126122935083,NIFTY 29 Dec 26 24000.5 CE,14,75,0.05,,0915-1530|1815-1915:,2026-10-03,"
    "1798538400,NSE:NIFTY26DEC24000.5CE,10,11,35083,NIFTY,26000,24000.50,CE,101000000026000,"
    "None,None,None"
)
CRUDE_FUT = (
    "1120260921565899,CRUDEOIL 21 Sep 26 FUT,30,100,1.0,,0900-2355|1815-1915:,2026-10-03,"
    "1790001000,MCX:CRUDEOIL26SEPFUT,11,20,565899,CRUDEOIL,294,-1.0,XX,1120260921565899,"
    "None,None,None"
)


def cells(line: str) -> list[str]:
    return line.split(",")


def with_cell(line: str, column: int, value: str) -> str:
    parts = cells(line)
    parts[column] = value
    return ",".join(parts)


def parse_lines(tmp_path: Path, *lines: str, name: str = "NSE_CM.csv") -> list:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return list(parse_fyers_csv(path))


def only(results: list) -> FyersRow | RowError:
    assert len(results) == 1, results
    return results[0]


def reason(tmp_path: Path, line: str) -> str:
    result = only(parse_lines(tmp_path, line))
    assert isinstance(result, RowError), result
    return result.reason


def test_equity_row(tmp_path: Path) -> None:
    row = only(parse_lines(tmp_path, SBIN))
    assert row == FyersRow(
        source=SourceRef(str(tmp_path / "NSE_CM.csv"), 1),
        fytoken="10100000003045",
        symbol="NSE:SBIN-EQ",
        name="STATE BANK OF INDIA",
        exchange=Exchange.NSE,
        segment=Segment.CM,
        instrument_type=InstrumentType.EQ,
        series="EQ",
        isin="INE062A01020",
        exchange_token="3045",
        underlying="SBIN",
        tick_size=Decimal("0.05"),
        lot_size=1,
        expiry=None,
        strike=None,
        option_type=None,
    )


def test_series_is_the_text_after_the_last_hyphen(tmp_path: Path) -> None:
    be = with_cell(SBIN, 9, "NSE:BAJAJ-AUTO-BE")
    row = only(parse_lines(tmp_path, be))
    assert isinstance(row, FyersRow)
    assert (row.series, row.instrument_type) == ("BE", InstrumentType.EQ)


def test_index_row(tmp_path: Path) -> None:
    row = only(parse_lines(tmp_path, NIFTY50))
    assert isinstance(row, FyersRow)
    assert row.instrument_type is InstrumentType.INDEX
    assert (row.name, row.series, row.exchange_token) == ("Nifty 50", "", "26000")


def test_exchange_instrument_type_10_alone_makes_an_index(tmp_path: Path) -> None:
    line = with_cell(NIFTY50, 9, "NSE:NIFTY50")
    row = only(parse_lines(tmp_path, line))
    assert isinstance(row, FyersRow) and row.instrument_type is InstrumentType.INDEX


def test_future_and_option_rows(tmp_path: Path) -> None:
    fut, opt = parse_lines(tmp_path, NIFTY_FUT, NIFTY_OPT, name="NSE_FO.csv")
    assert isinstance(fut, FyersRow) and isinstance(opt, FyersRow)
    assert (fut.instrument_type, fut.segment, fut.expiry) == (
        InstrumentType.FUT,
        Segment.FO,
        date(2026, 12, 29),
    )
    assert (fut.strike, fut.option_type, fut.lot_size, fut.underlying) == (None, None, 75, "NIFTY")
    assert opt.instrument_type is InstrumentType.OPT
    assert (opt.strike, opt.option_type) == (Decimal("24000.50"), OptionType.CE)
    assert opt.source.line == 2


def test_mcx_future(tmp_path: Path) -> None:
    row = only(parse_lines(tmp_path, CRUDE_FUT, name="MCX_COM.csv"))
    assert isinstance(row, FyersRow)
    assert (row.exchange, row.segment, row.instrument_type) == (
        Exchange.MCX,
        Segment.COM,
        InstrumentType.FUT,
    )
    assert row.tick_size == Decimal("1.0")


@pytest.mark.parametrize(
    ("epoch", "expected"),
    [
        ("1798538400", date(2026, 12, 29)),  # 15:30 IST
        # 00:30 IST on 30 Dec is still 29 Dec in UTC: the date must be India's.
        ("1798569000", date(2026, 12, 30)),
        ("1798588799", date(2026, 12, 30)),  # 23:59:59 IST
        ("1798538400.0", date(2026, 12, 29)),
    ],
)
def test_expiry_is_the_date_in_india(tmp_path: Path, epoch: str, expected: date) -> None:
    row = only(parse_lines(tmp_path, with_cell(NIFTY_FUT, 8, epoch)))
    assert isinstance(row, FyersRow) and row.expiry == expected


def test_header_row_is_skipped_and_line_numbers_stay_physical(tmp_path: Path) -> None:
    header = ",".join(
        ["Fytoken", "Symbol Details", "Exchange Instrument type", "Minimum lot size"] + ["x"] * 17
    )
    results = parse_lines(tmp_path, header, SBIN, "", NIFTY50)
    assert [r.source.line for r in results] == [2, 4]
    assert all(isinstance(r, FyersRow) for r in results)


def test_only_the_first_row_may_be_a_header(tmp_path: Path) -> None:
    results = parse_lines(tmp_path, SBIN, "Fytoken,Symbol Details")
    assert isinstance(results[1], RowError)
    assert results[1].reason == "expected 21 columns, got 2"


def test_crlf_bom_and_display_path(tmp_path: Path) -> None:
    path = tmp_path / "NSE_CM.csv"
    path.write_bytes(b"\xef\xbb\xbf" + f"{SBIN}\r\n{NIFTY50}\r\n".encode())
    results = list(parse_fyers_csv(path, display_path="fyers/NSE_CM.csv"))
    assert [type(r) for r in results] == [FyersRow, FyersRow]
    assert results[1].source == SourceRef("fyers/NSE_CM.csv", 2)
    assert str(results[1].source) == "fyers/NSE_CM.csv:2"


def test_unreadable_file_raises_at_call_time(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        parse_fyers_csv(tmp_path / "missing.csv")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (",".join(cells(SBIN)[:17]), "expected 21 columns, got 17"),
        (SBIN + ",extra", "expected 21 columns, got 22"),
        (
            with_cell(SBIN, 0, "19990000001234"),
            "unknown segment prefix '1999' in fytoken '19990000001234'",
        ),
        (with_cell(SBIN, 0, "1010000000AB"), "fytoken '1010000000AB' is not a string of"),
        (with_cell(SBIN, 0, "1010"), "fytoken '1010' is not a string of"),
        (with_cell(SBIN, 10, "13"), "unknown exchange code '13'"),
        (with_cell(SBIN, 11, "99"), "unknown segment code '99'"),
        (
            with_cell(SBIN, 11, "11"),
            "exchange code '10' / segment code '11' (NSE FO) disagree with fytoken prefix "
            "'1010' (NSE CM)",
        ),
        (with_cell(SBIN, 10, "12"), "disagree with fytoken prefix '1010' (NSE CM)"),
        (with_cell(SBIN, 4, "abc"), "tick size 'abc' is not a positive number"),
        (with_cell(SBIN, 4, "0"), "tick size '0' is not a positive number"),
        (with_cell(SBIN, 4, "-0.05"), "tick size '-0.05' is not a positive number"),
        (with_cell(SBIN, 4, "NaN"), "tick size 'NaN' is not a positive number"),
        (with_cell(SBIN, 3, "0"), "lot size '0' is not a positive whole number"),
        (with_cell(SBIN, 3, "7.5"), "lot size '7.5' is not a positive whole number"),
        (with_cell(SBIN, 3, "1E+999999999"), "lot size '1E+999999999' is not a positive"),
        (with_cell(SBIN, 3, ""), "lot size '' is not a positive whole number"),
        (with_cell(SBIN, 9, "SBIN-EQ"), "symbol ticker 'SBIN-EQ' is not of the form EXCH:NAME"),
        (with_cell(SBIN, 9, "NSE:"), "symbol ticker 'NSE:' is not of the form EXCH:NAME"),
        (with_cell(SBIN, 9, "BSE:SBIN-EQ"), "names exchange 'BSE', but the row is for NSE"),
        (with_cell(NIFTY_FUT, 8, "tomorrow"), "bad expiry 'tomorrow'"),
        (with_cell(NIFTY_FUT, 8, "-5"), "bad expiry '-5'"),
        (with_cell(NIFTY_FUT, 8, "99999999999999999"), "bad expiry '99999999999999999'"),
        (with_cell(NIFTY_FUT, 8, ""), "FUT row has no expiry"),
        (with_cell(NIFTY_OPT, 15, "abc"), "bad strike 'abc': not a number"),
        (with_cell(NIFTY_OPT, 15, "-50"), "bad strike '-50': negative"),
        (with_cell(NIFTY_OPT, 15, "-1.0"), "option row has no strike"),
        (with_cell(NIFTY_OPT, 16, "CA"), "option type 'CA' is not CE, PE or XX"),
        (with_cell(SBIN, 16, ""), "option type '' is not CE, PE or XX"),
        (with_cell(NIFTY_FUT, 13, ""), "FUT row has no underlying symbol"),
        (with_cell(SBIN, 12, ""), "empty scrip code"),
        ("10100000003045,STATE BANK\rOF INDIA,0", "malformed CSV line"),
    ],
)
def test_rejections(tmp_path: Path, line: str, expected: str) -> None:
    assert expected in reason(tmp_path, line)


def test_error_carries_file_and_line(tmp_path: Path) -> None:
    results = parse_lines(tmp_path, SBIN, ",".join(cells(SBIN)[:17]), NIFTY50)
    error = results[1]
    assert isinstance(error, RowError)
    assert str(error) == f"{tmp_path / 'NSE_CM.csv'}:2: expected 21 columns, got 17"
    assert isinstance(results[2], FyersRow) and results[2].source.line == 3


def test_invalid_utf8_is_a_row_error_and_parsing_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "NSE_CM.csv"
    bad = SBIN.replace("STATE BANK", "STATE \xff BANK").encode("latin-1")
    path.write_bytes(bad + b"\n" + NIFTY50.encode() + b"\n")
    first, second = parse_fyers_csv(path)
    assert isinstance(first, RowError) and "invalid UTF-8" in first.reason
    assert first.source.line == 1
    assert isinstance(second, FyersRow)


def test_non_ascii_names_are_kept(tmp_path: Path) -> None:
    row = only(parse_lines(tmp_path, with_cell(SBIN, 1, "SOCIÉTÉ ₹ LTD")))
    assert isinstance(row, FyersRow) and row.name == "SOCIÉTÉ ₹ LTD"


# Lines that get past the column count, so the field checks are exercised too.
_ANY_21_CELLS = st.lists(
    st.text(alphabet=st.characters(exclude_characters="\n")), min_size=21, max_size=21
).map(",".join)
_NEAR_VALID = st.lists(
    st.sampled_from([*cells(NIFTY_OPT), "", "-1", "1e9999", "NaN", "x"]), min_size=21, max_size=21
).map(",".join)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.text(), _ANY_21_CELLS, _NEAR_VALID), max_size=8))
def test_parser_never_raises_on_arbitrary_lines(lines: list[str]) -> None:
    data = "\n".join(lines).encode("utf-8", "surrogatepass")  # lone surrogates: bad UTF-8
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.csv"
        path.write_bytes(data)
        for result in parse_fyers_csv(path):
            assert isinstance(result, FyersRow | RowError)
            assert result.source.line >= 1
