"""Parser for the FYERS symbol-master CSV files (providers/FYERS.md §2.2 and §3.7).

One file per segment (``NSE_CM.csv``, ``NSE_FO.csv``, ...), no header row, 21 columns.
Every line becomes either a validated :class:`FyersRow` or a :class:`RowError`; bad content
never raises, so one broken line cannot stop an import.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path

from feeds.instruments.records import (
    Exchange,
    FyersRow,
    InstrumentType,
    OptionType,
    RowError,
    Segment,
    SourceRef,
)

COLUMN_COUNT = 21

# India has had no DST since 1945, so a fixed offset is exact and needs no tz database.
IST = timezone(timedelta(hours=5, minutes=30), "IST")

EXCHANGE_CODES: dict[str, Exchange] = {"10": Exchange.NSE, "11": Exchange.MCX, "12": Exchange.BSE}
SEGMENT_CODES: dict[str, Segment] = {
    "10": Segment.CM,
    "11": Segment.FO,
    "12": Segment.CD,
    "20": Segment.COM,
}
# fytoken characters 0-3 (FYERS.md §2.2): exchange code + segment code. Only these exist.
SEGMENT_PREFIXES: dict[str, tuple[Exchange, Segment]] = {
    "1010": (Exchange.NSE, Segment.CM),
    "1011": (Exchange.NSE, Segment.FO),
    "1012": (Exchange.NSE, Segment.CD),
    "1020": (Exchange.NSE, Segment.COM),
    "1120": (Exchange.MCX, Segment.COM),
    "1210": (Exchange.BSE, Segment.CM),
    "1211": (Exchange.BSE, Segment.FO),
    "1212": (Exchange.BSE, Segment.CD),
}
INDEX_EXCHANGE_INSTRUMENT_TYPE = "10"

# Column numbers (FYERS.md §3.7).
C_FYTOKEN = 0
C_NAME = 1
C_EXCH_INSTRUMENT_TYPE = 2
C_LOT = 3
C_TICK = 4
C_ISIN = 5
C_EXPIRY = 8
C_TICKER = 9
C_EXCHANGE = 10
C_SEGMENT = 11
C_SCRIP = 12
C_UNDERLYING = 13
C_STRIKE = 15
C_OPTION_TYPE = 16

_TICKER = re.compile(r"([A-Z]+):(\S+)")
_HEADER_CELL = re.compile(r"[A-Za-z][A-Za-z _]*")
# Beyond year 9999 datetime cannot represent it; anything that large is garbage anyway.
_MAX_EPOCH_SECONDS = 253402300799
_MAX_LOT_SIZE = 10**9


class _Invalid(Exception):
    """Internal: the reason a row is rejected."""


def parse_fyers_csv(
    path: str | Path, *, display_path: str | None = None
) -> Iterator[FyersRow | RowError]:
    """Parse one FYERS master file.

    The file is read when this is called, so an unreadable file raises OSError here rather
    than on the first ``next()``. ``display_path`` replaces the path in SourceRefs (e.g. a
    path relative to the import directory).
    """
    data = Path(path).read_bytes()
    return _iter_rows(data, display_path if display_path is not None else str(path))


def _iter_rows(data: bytes, shown: str) -> Iterator[FyersRow | RowError]:
    first_row = True
    # Split on LF only: that is what a physical line is. A stray CR inside a line is then
    # a CSV error for that line instead of silently shifting every later line number.
    for number, raw in enumerate(data.split(b"\n"), start=1):
        source = SourceRef(shown, number)
        raw = raw.removesuffix(b"\r")
        try:
            text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            yield RowError(source, f"invalid UTF-8 at byte {exc.start} of the line")
            first_row = False
            continue
        if not text.strip():
            continue  # blank lines (typically the trailing newline) carry nothing
        try:
            # One reader per line keeps line numbers physical; FYERS never quotes newlines.
            cells = [cell.strip() for cell in next(csv.reader([text]))]
        except csv.Error as exc:
            yield RowError(source, f"malformed CSV line: {exc}")
            first_row = False
            continue
        if first_row:
            first_row = False
            if _looks_like_header(cells):
                continue
        try:
            yield _parse_row(cells, source)
        except _Invalid as exc:
            yield RowError(source, str(exc))


def _looks_like_header(cells: list[str]) -> bool:
    first = cells[0] if cells else ""
    return not first.isdigit() and _HEADER_CELL.fullmatch(first) is not None


def _parse_row(cells: list[str], source: SourceRef) -> FyersRow:
    if len(cells) != COLUMN_COUNT:
        raise _Invalid(f"expected {COLUMN_COUNT} columns, got {len(cells)}")

    fytoken = cells[C_FYTOKEN]
    # 4 prefix digits + 6 expiry digits + at least one token digit (FYERS.md §2.2).
    if not (fytoken.isascii() and fytoken.isdigit()) or len(fytoken) < 11:
        raise _Invalid(f"fytoken {fytoken!r} is not a string of at least 11 digits")
    prefix = fytoken[:4]
    if prefix not in SEGMENT_PREFIXES:
        raise _Invalid(f"unknown segment prefix {prefix!r} in fytoken {fytoken!r}")
    exchange, segment = SEGMENT_PREFIXES[prefix]

    exch_code, seg_code = cells[C_EXCHANGE], cells[C_SEGMENT]
    if exch_code not in EXCHANGE_CODES:
        raise _Invalid(f"unknown exchange code {exch_code!r}")
    if seg_code not in SEGMENT_CODES:
        raise _Invalid(f"unknown segment code {seg_code!r}")
    if exch_code + seg_code != prefix:
        raise _Invalid(
            f"exchange code {exch_code!r} / segment code {seg_code!r} "
            f"({EXCHANGE_CODES[exch_code]} {SEGMENT_CODES[seg_code]}) disagree with "
            f"fytoken prefix {prefix!r} ({exchange} {segment})"
        )

    tick_size = _positive_decimal(cells[C_TICK], "tick size")
    lot_size = _positive_int(cells[C_LOT], "lot size")

    ticker = cells[C_TICKER]
    match = _TICKER.fullmatch(ticker)
    if match is None:
        raise _Invalid(f"symbol ticker {ticker!r} is not of the form EXCH:NAME")
    if match.group(1) != exchange.value:
        raise _Invalid(
            f"symbol ticker {ticker!r} names exchange {match.group(1)!r}, "
            f"but the row is for {exchange}"
        )
    ticker_name = match.group(2)

    expiry = _expiry(cells[C_EXPIRY])
    strike = _strike(cells[C_STRIKE])

    option_code = cells[C_OPTION_TYPE]
    if option_code not in ("CE", "PE", "XX"):
        raise _Invalid(f"option type {option_code!r} is not CE, PE or XX")
    option_type = OptionType(option_code) if option_code != "XX" else None

    if (
        ticker_name.endswith("-INDEX")
        or cells[C_EXCH_INSTRUMENT_TYPE] == INDEX_EXCHANGE_INSTRUMENT_TYPE
    ):
        instrument_type = InstrumentType.INDEX
    elif option_type is not None:
        instrument_type = InstrumentType.OPT
    elif segment is not Segment.CM:
        instrument_type = InstrumentType.FUT
    else:
        instrument_type = InstrumentType.EQ

    underlying = cells[C_UNDERLYING]
    exchange_token = cells[C_SCRIP]
    if not exchange_token:
        raise _Invalid("empty scrip code (exchange token)")
    if instrument_type in (InstrumentType.FUT, InstrumentType.OPT):
        # Without these the instrument has no canonical key.
        if expiry is None:
            raise _Invalid(f"{instrument_type} row has no expiry")
        if not underlying:
            raise _Invalid(f"{instrument_type} row has no underlying symbol")
    if instrument_type is InstrumentType.OPT:
        if strike is None:
            raise _Invalid("option row has no strike")
    else:
        strike = None  # FYERS writes -1.0 or 0.0 for non-options; either way meaningless
        option_type = None

    series = ""
    if instrument_type is InstrumentType.EQ and "-" in ticker_name:
        series = ticker_name.rsplit("-", 1)[1]

    return FyersRow(
        source=source,
        fytoken=fytoken,
        symbol=ticker,
        name=cells[C_NAME],
        exchange=exchange,
        segment=segment,
        instrument_type=instrument_type,
        series=series,
        isin=cells[C_ISIN],
        exchange_token=exchange_token,
        underlying=underlying,
        tick_size=tick_size,
        lot_size=lot_size,
        expiry=expiry,
        strike=strike,
        option_type=option_type,
    )


def _decimal(text: str) -> Decimal | None:
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def _positive_decimal(text: str, what: str) -> Decimal:
    value = _decimal(text)
    if value is None or value <= 0:
        raise _Invalid(f"{what} {text!r} is not a positive number")
    return value


def _positive_int(text: str, what: str) -> int:
    value = _decimal(text)
    # "75" and "75.0" are both fine; "7.5" is not a lot size. The upper bound keeps int()
    # away from absurd exponents such as "1E+999999999".
    if value is None or not 0 < value <= _MAX_LOT_SIZE or value != value.to_integral_value():
        raise _Invalid(f"{what} {text!r} is not a positive whole number")
    return int(value)


def _expiry(text: str) -> date | None:
    if not text:
        return None
    value = _decimal(text)
    if value is None or value != value.to_integral_value() or not 0 < value <= _MAX_EPOCH_SECONDS:
        raise _Invalid(f"bad expiry {text!r}: not a positive whole number of epoch seconds")
    try:
        return datetime.fromtimestamp(int(value), tz=IST).date()
    except (OverflowError, OSError, ValueError) as exc:
        raise _Invalid(f"bad expiry {text!r}: {exc}") from None


def _strike(text: str) -> Decimal | None:
    if not text:
        return None
    value = _decimal(text)
    if value is None:
        raise _Invalid(f"bad strike {text!r}: not a number")
    if value == -1:
        return None  # FYERS' "no strike" marker
    if value < 0:
        raise _Invalid(f"bad strike {text!r}: negative")
    return value if value > 0 else None
