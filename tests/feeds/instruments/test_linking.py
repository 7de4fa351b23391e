"""Linking FYERS and Upstox rows into canonical records."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal

from feeds.instruments.linking import link_instruments
from feeds.instruments.records import (
    Exchange,
    FyersRow,
    InstrumentRecord,
    InstrumentType,
    OptionType,
    RowError,
    Segment,
    SourceRef,
    Unmatched,
    UpstoxRow,
)

DEC29 = date(2026, 12, 29)
JAN26 = date(2027, 1, 26)


def f_src(line: int) -> SourceRef:
    return SourceRef("fyers/NSE_CM.csv", line)


def u_src(line: int) -> SourceRef:
    return SourceRef("upstox/complete.json.gz", line)


def fyers_equity(line: int = 1, **changes: object) -> FyersRow:
    row = FyersRow(
        source=f_src(line),
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
    return replace(row, **changes)


def upstox_equity(line: int = 1, **changes: object) -> UpstoxRow:
    row = UpstoxRow(
        source=u_src(line),
        instrument_key="NSE_EQ|INE062A01020",
        trading_symbol="SBIN",
        name="State Bank of India",
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
    return replace(row, **changes)


def fyers_option(line: int = 1, token: str = "35083", **changes: object) -> FyersRow:
    return fyers_equity(
        line,
        **(
            dict(
                fytoken=f"1011261229{token}",
                symbol="NSE:NIFTY26DEC24000CE",
                name="NIFTY 29 Dec 26 24000 CE",
                segment=Segment.FO,
                instrument_type=InstrumentType.OPT,
                series="",
                isin="",
                exchange_token=token,
                underlying="NIFTY",
                lot_size=75,
                expiry=DEC29,
                strike=Decimal("24000.0"),
                option_type=OptionType.CE,
            )
            | changes
        ),
    )


def upstox_option(line: int = 1, token: str = "35083", **changes: object) -> UpstoxRow:
    return upstox_equity(
        line,
        **(
            dict(
                instrument_key=f"NSE_FO|{token}",
                trading_symbol="NIFTY 24000 CE 29 DEC 26",
                name="NIFTY",
                segment=Segment.FO,
                instrument_type=InstrumentType.OPT,
                series="",
                isin="",
                exchange_token=token,
                underlying="NIFTY",
                lot_size=75,
                expiry=DEC29,
                strike=Decimal("24000"),
                option_type=OptionType.CE,
            )
            | changes
        ),
    )


def fyers_index(line: int = 1, **changes: object) -> FyersRow:
    return fyers_equity(
        line,
        **(
            dict(
                fytoken="101000000026000",
                symbol="NSE:NIFTY50-INDEX",
                name="Nifty 50",
                instrument_type=InstrumentType.INDEX,
                series="",
                isin="",
                exchange_token="26000",
                underlying="NIFTY50",
            )
            | changes
        ),
    )


def upstox_index(line: int = 1, **changes: object) -> UpstoxRow:
    return upstox_equity(
        line,
        **(
            dict(
                instrument_key="NSE_INDEX|Nifty 50",
                trading_symbol="NIFTY",
                name="Nifty 50",
                instrument_type=InstrumentType.INDEX,
                series="",
                isin="",
                exchange_token="26000",
            )
            | changes
        ),
    )


def test_equities_link_by_isin() -> None:
    # Different symbols on purpose: only the ISIN links them.
    result = link_instruments(
        fyers_rows=[fyers_equity()],
        upstox_rows=[upstox_equity(trading_symbol="SBI", exchange_token="9999")],
    )
    assert (result.unmatched, result.rejected) == ([], [])
    assert result.records == [
        InstrumentRecord(
            key="NSE:SBIN",
            exchange=Exchange.NSE,
            segment=Segment.CM,
            instrument_type=InstrumentType.EQ,
            name="STATE BANK OF INDIA",  # FYERS preferred
            isin="INE062A01020",
            exchange_token="3045",
            underlying="SBIN",
            tick_size=Decimal("0.05"),
            lot_size=1,
            expiry=None,
            strike=None,
            option_type=None,
            fyers_symbol="NSE:SBIN-EQ",
            fyers_token="10100000003045",
            upstox_key="NSE_EQ|INE062A01020",
            upstox_trading_symbol="SBI",
            sources=[f_src(1), u_src(1)],
        )
    ]


def test_same_isin_on_another_exchange_does_not_link() -> None:
    bse = upstox_equity(instrument_key="BSE_EQ|INE062A01020", exchange=Exchange.BSE, series="A")
    result = link_instruments(fyers_rows=[fyers_equity()], upstox_rows=[bse])
    assert [r.key for r in result.records] == ["BSE:SBIN-A", "NSE:SBIN"]
    assert [(m.key, m.provider) for m in result.unmatched] == [
        ("NSE:SBIN", "fyers"),
        ("BSE:SBIN-A", "upstox"),
    ]


def test_missing_fields_fall_back_to_upstox() -> None:
    result = link_instruments(
        fyers_rows=[fyers_equity(name="", underlying="")], upstox_rows=[upstox_equity()]
    )
    (record,) = result.records
    assert record.name == "State Bank of India"
    assert record.underlying == ""


def test_be_series_keeps_its_suffix() -> None:
    result = link_instruments(
        fyers_rows=[fyers_equity(symbol="NSE:SBIN-BE", series="BE")],
        upstox_rows=[upstox_equity(series="BE")],
    )
    assert [r.key for r in result.records] == ["NSE:SBIN-BE"]


def test_derivatives_link_by_token_and_expiry() -> None:
    result = link_instruments(
        fyers_rows=[
            fyers_option(),
            fyers_option(2, token="40001", expiry=JAN26, symbol="NSE:NIFTY27JAN24000CE"),
        ],
        upstox_rows=[
            # Same token, other expiry: a reused token, not the same contract.
            upstox_option(1, token="40001", expiry=DEC29, strike=Decimal("25000")),
            upstox_option(2),
        ],
    )
    assert result.rejected == []
    by_key = {r.key: r for r in result.records}
    linked = by_key["NSE:NIFTY-20261229-24000-CE"]
    assert (linked.upstox_key, linked.fyers_symbol) == ("NSE_FO|35083", "NSE:NIFTY26DEC24000CE")
    assert (linked.name, linked.lot_size, linked.sources) == (
        "NIFTY 29 Dec 26 24000 CE",
        75,
        [f_src(1), u_src(2)],
    )
    assert sorted((m.key, m.provider) for m in result.unmatched) == [
        ("NSE:NIFTY-20261229-25000-CE", "upstox"),
        ("NSE:NIFTY-20270126-24000-CE", "fyers"),
    ]


def test_indices_link_by_squeezed_name() -> None:
    result = link_instruments(
        fyers_rows=[
            fyers_index(),
            fyers_index(
                2,
                fytoken="101000000026037",
                symbol="NSE:FINNIFTY-INDEX",
                name="Nifty Fin Service",
                exchange_token="26037",
            ),
        ],
        upstox_rows=[
            upstox_index(name="NIFTY 50"),
            upstox_index(2, instrument_key="NSE_INDEX|Nifty Fin Service", name=""),
        ],
    )
    assert (result.unmatched, result.rejected) == ([], [])
    assert [(r.key, r.fyers_symbol, r.upstox_key) for r in result.records] == [
        ("NSE:NIFTY50", "NSE:NIFTY50-INDEX", "NSE_INDEX|Nifty 50"),
        ("NSE:NIFTYFINSERVICE", "NSE:FINNIFTY-INDEX", "NSE_INDEX|Nifty Fin Service"),
    ]


def test_one_sided_rows_are_records_and_unmatched() -> None:
    result = link_instruments(
        fyers_rows=[fyers_equity()],
        upstox_rows=[
            upstox_equity(
                instrument_key="NSE_EQ|INE002A01018", isin="INE002A01018", trading_symbol="RELIANCE"
            ),
        ],
    )
    assert [r.key for r in result.records] == ["NSE:RELIANCE", "NSE:SBIN"]
    reliance = result.records[0]
    assert (reliance.fyers_symbol, reliance.fyers_token, reliance.upstox_key) == (
        "",
        "",
        "NSE_EQ|INE002A01018",
    )
    assert result.unmatched == [
        Unmatched("NSE:SBIN", "fyers", f_src(1)),
        Unmatched("NSE:RELIANCE", "upstox", u_src(1)),
    ]


def test_equity_without_isin_cannot_link() -> None:
    result = link_instruments(
        fyers_rows=[fyers_equity(isin="")],
        upstox_rows=[upstox_equity(isin="", trading_symbol="SBI")],
    )
    assert sorted(m.provider for m in result.unmatched) == ["fyers", "upstox"]


def test_duplicate_fyers_rows_are_rejected_with_the_first_location() -> None:
    result = link_instruments(
        fyers_rows=[
            fyers_equity(1),
            fyers_equity(2),  # same fytoken
            fyers_equity(3, fytoken="10100000099999"),  # same symbol
            fyers_equity(4, fytoken="10100000099998", symbol="NSE:SBI-EQ"),  # same ISIN
        ],
        upstox_rows=[upstox_equity()],
    )
    assert result.rejected == [
        RowError(f_src(2), "duplicate fytoken '10100000003045' (first at fyers/NSE_CM.csv:1)"),
        RowError(f_src(3), "duplicate FYERS symbol 'NSE:SBIN-EQ' (first at fyers/NSE_CM.csv:1)"),
        RowError(f_src(4), "duplicate NSE ISIN 'INE062A01020' (first at fyers/NSE_CM.csv:1)"),
    ]
    (record,) = result.records
    assert record.sources == [f_src(1), u_src(1)]


def test_duplicate_canonical_key_within_a_provider() -> None:
    # Different tickers, the same key: "NSE:SBIN-EQ" and "NSE:SBIN" both mean NSE:SBIN.
    result = link_instruments(
        fyers_rows=[
            fyers_equity(1),
            fyers_equity(2, fytoken="10100000099999", symbol="NSE:SBIN", isin="INE000000000"),
        ],
        upstox_rows=[],
    )
    assert result.rejected == [
        RowError(f_src(2), "duplicate canonical key 'NSE:SBIN' (first at fyers/NSE_CM.csv:1)")
    ]


def test_duplicate_upstox_rows() -> None:
    path = "upstox/complete.json.gz"
    result = link_instruments(
        fyers_rows=[fyers_option()],
        upstox_rows=[
            upstox_option(1),
            upstox_option(2),  # same instrument_key
            # Another key, but the same exchange token and expiry.
            upstox_option(3, instrument_key="NSE_FO|X35083", strike=Decimal("24050")),
            upstox_index(4),
            upstox_index(5, instrument_key="NSE_INDEX|NIFTY50"),  # same squeezed index name
        ],
    )
    assert [(e.source.line, e.reason) for e in result.rejected] == [
        (2, f"duplicate instrument_key 'NSE_FO|35083' (first at {path}:1)"),
        (3, f"duplicate NSE FO exchange token/expiry '35083/2026-12-29' (first at {path}:1)"),
        (5, f"duplicate canonical key 'NSE:NIFTY50' (first at {path}:4)"),
    ]
    assert {r.key for r in result.records} == {"NSE:NIFTY-20261229-24000-CE", "NSE:NIFTY50"}


def test_conflicting_types_keep_the_fyers_row() -> None:
    future = upstox_option(
        7, instrument_type=InstrumentType.FUT, strike=None, option_type=None,
        trading_symbol="NIFTY FUT 29 DEC 26",
    )  # fmt: skip
    result = link_instruments(fyers_rows=[fyers_option()], upstox_rows=[future])
    (error,) = result.rejected
    assert error.source == u_src(7)
    assert error.reason.startswith(
        "conflicts with FYERS NSE:NIFTY26DEC24000CE at fyers/NSE_CM.csv:1 "
        "(instrument type FUT vs OPT"
    )
    (record,) = result.records
    assert (record.key, record.upstox_key, record.sources) == (
        "NSE:NIFTY-20261229-24000-CE",
        "",
        [f_src(1)],
    )
    assert result.unmatched == [Unmatched(record.key, "fyers", f_src(1))]


def test_conflicting_strike_or_side() -> None:
    result = link_instruments(
        fyers_rows=[fyers_option()],
        upstox_rows=[upstox_option(strike=Decimal("24050"), option_type=OptionType.PE)],
    )
    (error,) = result.rejected
    assert "option type PE vs CE; strike 24050 vs 24000" in error.reason


def test_upstox_only_row_cannot_take_a_used_key() -> None:
    # Upstox lists SBIN under a new ISIN that FYERS does not know yet.
    result = link_instruments(
        fyers_rows=[fyers_equity()],
        upstox_rows=[upstox_equity(instrument_key="NSE_EQ|INE062A01038", isin="INE062A01038")],
    )
    (error,) = result.rejected
    assert error.reason == (
        "canonical key 'NSE:SBIN' already belongs to fyers/NSE_CM.csv:1, "
        "which does not link to this row"
    )
    assert [r.key for r in result.records] == ["NSE:SBIN"]


def test_rows_without_a_key_are_rejected() -> None:
    result = link_instruments(fyers_rows=[fyers_option(expiry=None)], upstox_rows=[])
    (error,) = result.rejected
    assert error.reason == "no canonical key: OPT key needs an expiry"
    assert result.records == []


def test_output_is_sorted_and_does_not_depend_on_input_order() -> None:
    fyers = [fyers_option(), fyers_index(2), fyers_equity(3)]
    upstox = [upstox_equity(1), upstox_option(2), upstox_index(3)]
    first = link_instruments(fyers_rows=fyers, upstox_rows=upstox)
    second = link_instruments(fyers_rows=fyers[::-1], upstox_rows=upstox[::-1])
    keys = [r.key for r in first.records]
    assert keys == sorted(keys) == [r.key for r in second.records]
    assert keys == ["NSE:NIFTY-20261229-24000-CE", "NSE:NIFTY50", "NSE:SBIN"]


def test_accepts_generators() -> None:
    result = link_instruments(
        fyers_rows=(r for r in [fyers_equity()]), upstox_rows=(r for r in [upstox_equity()])
    )
    assert len(result.records) == 1 and not result.unmatched
