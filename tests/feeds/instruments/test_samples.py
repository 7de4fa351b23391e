"""The shipped sample masters: they parse cleanly, link as designed, and regenerate identically."""

from __future__ import annotations

import csv
import gzip
import json
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from feeds.instruments import samples
from feeds.instruments.fyers_master import parse_fyers_csv
from feeds.instruments.linking import link_instruments
from feeds.instruments.records import (
    Exchange,
    FyersRow,
    InstrumentType,
    LinkResult,
    RowError,
    UpstoxRow,
)
from feeds.instruments.upstox_master import parse_upstox_json

SAMPLE_DIR = samples.DEFAULT_DIR
INDEX_KEYS = {
    "NSE:NIFTY50": ("NSE:NIFTY50-INDEX", "NSE_INDEX|Nifty 50"),
    "NSE:NIFTYBANK": ("NSE:NIFTYBANK-INDEX", "NSE_INDEX|Nifty Bank"),
    "NSE:NIFTYFINSERVICE": ("NSE:FINNIFTY-INDEX", "NSE_INDEX|Nifty Fin Service"),
    "NSE:INDIAVIX": ("NSE:INDIAVIX-INDEX", "NSE_INDEX|India VIX"),
    "NSE:NIFTYIT": ("NSE:NIFTYIT-INDEX", "NSE_INDEX|Nifty IT"),
    "NSE:NIFTYNEXT50": ("NSE:NIFTYNXT50-INDEX", "NSE_INDEX|Nifty Next 50"),
    "NSE:NIFTYMIDCAP50": ("NSE:NIFTYMIDCAP50-INDEX", "NSE_INDEX|Nifty Midcap 50"),
    "NSE:NIFTYAUTO": ("NSE:NIFTYAUTO-INDEX", "NSE_INDEX|Nifty Auto"),
    "NSE:NIFTYPHARMA": ("NSE:NIFTYPHARMA-INDEX", "NSE_INDEX|Nifty Pharma"),
    "NSE:NIFTYFMCG": ("NSE:NIFTYFMCG-INDEX", "NSE_INDEX|Nifty FMCG"),
    "NSE:NIFTYMETAL": ("NSE:NIFTYMETAL-INDEX", "NSE_INDEX|Nifty Metal"),
    "BSE:SENSEX": ("BSE:SENSEX-INDEX", "BSE_INDEX|SENSEX"),
    "BSE:BANKEX": ("BSE:BANKEX-INDEX", "BSE_INDEX|BANKEX"),
    "BSE:BSE100": ("BSE:BSE100-INDEX", "BSE_INDEX|BSE 100"),
}


@dataclass
class Parsed:
    fyers: list[FyersRow]
    upstox: list[UpstoxRow]
    errors: list[RowError]
    linked: LinkResult


@pytest.fixture(scope="module")
def parsed() -> Parsed:
    fyers: list[FyersRow] = []
    upstox: list[UpstoxRow] = []
    errors: list[RowError] = []
    for name in samples.FYERS_FILES:
        for row in parse_fyers_csv(SAMPLE_DIR / name, display_path=name):
            (errors if isinstance(row, RowError) else fyers).append(row)
    for row in parse_upstox_json(SAMPLE_DIR / samples.UPSTOX_FILE):
        (errors if isinstance(row, RowError) else upstox).append(row)
    return Parsed(fyers, upstox, errors, link_instruments(fyers_rows=fyers, upstox_rows=upstox))


def test_every_row_parses_and_links(parsed: Parsed) -> None:
    assert parsed.errors == []
    assert parsed.linked.rejected == []


def test_nse_equities(parsed: Parsed) -> None:
    equities = [
        r
        for r in parsed.linked.records
        if r.exchange is Exchange.NSE and r.instrument_type is InstrumentType.EQ
    ]
    assert len(equities) == samples.EQUITY_COUNT >= 2000
    assert Counter(r.tick_size for r in equities).keys() == {
        Decimal("0.01"),
        Decimal("0.05"),
    }
    assert {r.lot_size for r in equities} == {1}
    assert sum(r.key.endswith("-BE") for r in equities) == samples.BE_COUNT
    assert (
        len({r.isin for r in equities})
        == len({r.exchange_token for r in equities})
        == len(equities)
    )
    for record in equities:
        isin = record.isin
        assert len(isin) == 12 and isin.startswith("INE"), isin
        assert samples.isin_check_digit(isin[:11]) == isin[11], isin


def test_reference_equities(parsed: Parsed) -> None:
    by_key = {r.key: r for r in parsed.linked.records}
    sbin, reliance = by_key["NSE:SBIN"], by_key["NSE:RELIANCE"]
    assert (sbin.isin, sbin.exchange_token, sbin.fyers_symbol, sbin.fyers_token) == (
        "INE062A01020",
        "3045",
        "NSE:SBIN-EQ",
        "10100000003045",
    )
    assert sbin.upstox_key == "NSE_EQ|INE062A01020"
    assert (reliance.isin, reliance.upstox_key) == ("INE002A01018", "NSE_EQ|INE002A01018")


def test_indices_are_linked_on_both_sides(parsed: Parsed) -> None:
    by_key = {r.key: r for r in parsed.linked.records}
    for key, (fyers_symbol, upstox_key) in INDEX_KEYS.items():
        record = by_key[key]
        assert record.instrument_type is InstrumentType.INDEX
        assert (record.fyers_symbol, record.upstox_key) == (fyers_symbol, upstox_key)
    assert by_key["NSE:NIFTY50"].fyers_token == "101000000026000"
    indices = [r for r in parsed.linked.records if r.instrument_type is InstrumentType.INDEX]
    assert len(indices) == len(INDEX_KEYS)


def test_derivatives(parsed: Parsed) -> None:
    records = parsed.linked.records
    futures = [r for r in records if r.instrument_type is InstrumentType.FUT]
    options = [r for r in records if r.instrument_type is InstrumentType.OPT]
    assert len(futures) + len(options) >= 300
    assert all(r.fyers_token and r.upstox_key for r in futures + options)
    assert {r.key for r in futures} >= {
        f"NSE:{u}-{d}-FUT"
        for u in ("NIFTY", "BANKNIFTY", "FINNIFTY")
        for d in ("20261229", "20270126", "20270223")
    }
    per_underlying = Counter((r.underlying, r.expiry.isoformat()) for r in options)
    assert per_underlying == {
        ("NIFTY", "2026-12-29"): 82,  # 23000-25000 step 50, CE and PE
        ("NIFTY", "2027-01-26"): 82,
        ("BANKNIFTY", "2026-12-29"): 62,  # 50000-53000 step 100
        ("FINNIFTY", "2026-12-29"): 42,  # 22500-23500 step 50
    }
    lots = {r.underlying: r.lot_size for r in options}
    assert lots == {"NIFTY": 75, "BANKNIFTY": 35, "FINNIFTY": 65}
    option = next(r for r in options if r.key == "NSE:NIFTY-20261229-24000-CE")
    assert option.fyers_symbol == "NSE:NIFTY26DEC24000CE"
    assert option.fyers_token == f"1011261229{option.exchange_token}"
    assert option.upstox_key == f"NSE_FO|{option.exchange_token}"
    assert option.upstox_trading_symbol == "NIFTY 24000 CE 29 DEC 26"


def test_one_sided_equities_are_reported(parsed: Parsed) -> None:
    unmatched = parsed.linked.unmatched
    assert Counter(m.provider for m in unmatched) == {
        "fyers": samples.FYERS_ONLY_EQUITIES,
        "upstox": samples.UPSTOX_ONLY_EQUITIES,
    }
    assert samples.FYERS_ONLY_EQUITIES == samples.UPSTOX_ONLY_EQUITIES == 8
    by_key = {r.key: r for r in parsed.linked.records}
    for miss in unmatched:
        record = by_key[miss.key]
        assert record.instrument_type is InstrumentType.EQ
        assert bool(record.fyers_symbol) == (miss.provider == "fyers")
        assert bool(record.upstox_key) == (miss.provider == "upstox")


def test_fyers_files_have_the_real_layout() -> None:
    for name in samples.FYERS_FILES:
        with (SAMPLE_DIR / name).open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
        assert rows and all(len(row) == 21 for row in rows), name
        for row in rows:
            assert row[0].isdigit() and row[0][10:] == row[12], row  # no header; token layout
            assert row[6] == samples.SESSION and row[18:] == ["None", "None", "None"], row
            if row[8]:  # derivatives: fytoken carries the expiry as YYMMDD
                assert row[0][4:10] != "000000"
            else:
                assert row[0][4:10] == "000000"


def test_upstox_file_is_a_gzipped_array_with_the_documented_fields() -> None:
    raw = (SAMPLE_DIR / samples.UPSTOX_FILE).read_bytes()
    assert raw[:2] == b"\x1f\x8b" and raw[4:8] == b"\x00\x00\x00\x00"  # gzip, mtime 0
    elements = json.loads(gzip.decompress(raw))
    kinds = Counter(e["instrument_type"] for e in elements)
    assert kinds["INDEX"] == len(INDEX_KEYS) and kinds["FUT"] >= 9 and kinds["CE"] == kinds["PE"]
    option = next(e for e in elements if e["instrument_type"] == "CE")
    assert list(option) == [
        "weekly", "segment", "name", "exchange", "expiry", "instrument_type",
        "underlying_symbol", "instrument_key", "lot_size", "freeze_quantity", "exchange_token",
        "minimum_lot", "underlying_key", "tick_size", "underlying_type", "trading_symbol",
        "strike_price",
    ]  # fmt: skip
    assert option["tick_size"] == 5.0 and option["underlying_type"] == "INDEX"
    equity = next(e for e in elements if e["segment"] == "NSE_EQ")
    assert {"isin", "short_name", "security_type", "qty_multiplier"} <= equity.keys()
    index = next(e for e in elements if e["segment"] == "NSE_INDEX")
    assert "lot_size" not in index and "tick_size" not in index


def test_files_are_a_few_hundred_kilobytes() -> None:
    total = sum(
        (SAMPLE_DIR / n).stat().st_size for n in (*samples.FYERS_FILES, samples.UPSTOX_FILE)
    )
    assert 100_000 < total < 700_000


def test_regenerating_gives_byte_identical_files(tmp_path: Path) -> None:
    summary = samples.write_samples(tmp_path)
    for name in (*samples.FYERS_FILES, samples.UPSTOX_FILE):
        fresh, shipped = (tmp_path / name).read_bytes(), (SAMPLE_DIR / name).read_bytes()
        if name.endswith(".gz"):  # compare the payload first: a clearer failure
            assert gzip.decompress(fresh) == gzip.decompress(shipped), name
        assert fresh == shipped, f"{name}: run `python -m feeds.instruments.samples`"
    assert (summary.equities, summary.fyers_only, summary.upstox_only) == (2100, 8, 8)
    assert summary.derivatives >= 300


def test_main_prints_one_summary_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert samples.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert out.startswith(f"wrote {tmp_path}: 2100 NSE equities")
    assert samples.main(["--help"]) == 2
