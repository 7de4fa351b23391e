"""Parser for the Upstox instrument master (providers/UPSTOX.md §2): one JSON array, often gzipped.

A file that is not a JSON array is rejected whole with :class:`MasterFileError`; inside a
good array every element becomes either a validated :class:`UpstoxRow` or a :class:`RowError`
whose line is the element's 1-based position.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator, Mapping
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from feeds.instruments.records import (
    Exchange,
    InstrumentType,
    OptionType,
    RowError,
    Segment,
    SourceRef,
    UpstoxRow,
)

try:  # orjson is several times faster on the ~100 MB complete master; json is the fallback.
    import orjson

    def _loads(data: bytes) -> Any:
        return orjson.loads(data)

    _DECODE_ERRORS: tuple[type[Exception], ...] = (orjson.JSONDecodeError, UnicodeDecodeError)
except ImportError:  # pragma: no cover - orjson is installed in the project venv
    import json

    def _loads(data: bytes) -> Any:
        return json.loads(data)

    _DECODE_ERRORS = (json.JSONDecodeError, UnicodeDecodeError)


class MasterFileError(ValueError):
    """The whole file is unusable (not gzip/JSON, or not a JSON array)."""


# India has had no DST since 1945, so a fixed offset is exact and needs no tz database.
IST = timezone(timedelta(hours=5, minutes=30), "IST")

# segment -> (exchange, segment, is an index segment)
SEGMENTS: dict[str, tuple[Exchange, Segment, bool]] = {
    "NSE_EQ": (Exchange.NSE, Segment.CM, False),
    "NSE_INDEX": (Exchange.NSE, Segment.CM, True),
    "NSE_FO": (Exchange.NSE, Segment.FO, False),
    "NCD_FO": (Exchange.NSE, Segment.CD, False),
    "NSE_COM": (Exchange.NSE, Segment.COM, False),
    "BSE_EQ": (Exchange.BSE, Segment.CM, False),
    "BSE_INDEX": (Exchange.BSE, Segment.CM, True),
    "BSE_FO": (Exchange.BSE, Segment.FO, False),
    "BCD_FO": (Exchange.BSE, Segment.CD, False),
    "MCX_FO": (Exchange.MCX, Segment.COM, False),
    "MCX_INDEX": (Exchange.MCX, Segment.COM, True),
}
REQUIRED_KEYS = ("segment", "instrument_key", "exchange", "instrument_type", "trading_symbol")
# Index rows carry neither; these are what the exchanges use for index values.
INDEX_TICK_SIZE = Decimal("0.05")
INDEX_LOT_SIZE = 1

_GZIP_MAGIC = b"\x1f\x8b"
_MAX_EPOCH_MS = 253402300799000  # 9999-12-31: anything later is garbage
_MAX_LOT_SIZE = 10**9


class _Invalid(Exception):
    """Internal: the reason an element is rejected."""


def parse_upstox_json(
    path: str | Path, *, display_path: str | None = None
) -> Iterator[UpstoxRow | RowError]:
    """Parse one Upstox master file (``.json`` or ``.json.gz``, detected by content).

    The whole file is read and decoded when this is called: OSError for an unreadable file
    and MasterFileError for a file that is not a JSON array are raised here, not on the
    first ``next()``.
    """
    shown = display_path if display_path is not None else str(path)
    data = Path(path).read_bytes()
    if data.startswith(_GZIP_MAGIC):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise MasterFileError(f"{shown}: not a readable gzip file: {exc}") from None
    try:
        document = _loads(data)
    except _DECODE_ERRORS as exc:
        raise MasterFileError(f"{shown}: not valid JSON: {exc}") from None
    if not isinstance(document, list):
        raise MasterFileError(
            f"{shown}: expected a JSON array of instruments, got {_json_type(document)}"
        )
    return _iter_rows(document, shown)


def _iter_rows(document: list[Any], shown: str) -> Iterator[UpstoxRow | RowError]:
    for number, element in enumerate(document, start=1):
        source = SourceRef(shown, number)
        try:
            yield _parse_element(element, source)
        except _Invalid as exc:
            yield RowError(source, str(exc))


def _json_type(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "null" if value is None else type(value).__name__


def _parse_element(element: Any, source: SourceRef) -> UpstoxRow:
    if not isinstance(element, dict):
        raise _Invalid(f"element is {_json_type(element)}, not an object")

    missing = [key for key in REQUIRED_KEYS if element.get(key) in (None, "")]
    if missing:
        raise _Invalid("missing required key(s): " + ", ".join(repr(k) for k in missing))

    segment_name = _text(element, "segment")
    if segment_name not in SEGMENTS:
        raise _Invalid(f"unknown segment {segment_name!r}")
    exchange, segment, index_segment = SEGMENTS[segment_name]

    instrument_key = _text(element, "instrument_key")
    prefix = segment_name + "|"
    if not instrument_key.startswith(prefix) or len(instrument_key) == len(prefix):
        raise _Invalid(f"instrument_key {instrument_key!r} does not start with {prefix!r}")

    raw_type = _text(element, "instrument_type")
    option_type: OptionType | None = None
    series = ""
    if raw_type == "INDEX":
        if not index_segment:
            raise _Invalid(f"instrument_type 'INDEX' in non-index segment {segment_name!r}")
        instrument_type = InstrumentType.INDEX
    elif index_segment:
        raise _Invalid(f"instrument_type {raw_type!r} in index segment {segment_name!r}")
    elif raw_type == "FUT":
        instrument_type = InstrumentType.FUT
    elif raw_type in ("CE", "PE"):
        instrument_type = InstrumentType.OPT
        option_type = OptionType(raw_type)
    elif segment is Segment.CM:
        # In an equity segment the instrument_type is the series: EQ, BE, SG, ...
        instrument_type = InstrumentType.EQ
        series = raw_type
    else:
        raise _Invalid(f"unsupported instrument_type {raw_type!r} in segment {segment_name!r}")

    derivative = instrument_type in (InstrumentType.FUT, InstrumentType.OPT)
    exchange_token = _optional_text(element, "exchange_token")
    if not exchange_token and instrument_type is not InstrumentType.INDEX:
        raise _Invalid("missing required key(s): 'exchange_token'")

    if instrument_type is InstrumentType.INDEX and element.get("tick_size") is None:
        tick_size = INDEX_TICK_SIZE
    else:
        tick_size = _positive_decimal(element, "tick_size") / 100  # paise -> rupees
    if instrument_type is InstrumentType.INDEX and element.get("lot_size") is None:
        lot_size = INDEX_LOT_SIZE
    else:
        lot_size = _lot_size(element)

    expiry = _expiry(element) if derivative or element.get("expiry") is not None else None
    strike: Decimal | None = None
    underlying = ""
    if derivative:
        underlying = _optional_text(element, "underlying_symbol")
        if not underlying:
            raise _Invalid(f"missing required key(s): 'underlying_symbol' for {raw_type}")
    if instrument_type is InstrumentType.OPT:
        strike = _decimal_field(element, "strike_price")
        if strike is None or strike <= 0:
            raise _Invalid(f"bad strike_price {element.get('strike_price')!r}: not positive")

    return UpstoxRow(
        source=source,
        instrument_key=instrument_key,
        trading_symbol=_text(element, "trading_symbol"),
        name=_optional_text(element, "name"),
        exchange=exchange,
        segment=segment,
        instrument_type=instrument_type,
        series=series,
        isin=_optional_text(element, "isin"),
        exchange_token=exchange_token,
        underlying=underlying,
        tick_size=tick_size,
        lot_size=lot_size,
        expiry=expiry,
        strike=strike,
        option_type=option_type,
    )


def _text(element: Mapping[str, Any], key: str) -> str:
    value = element[key]
    if not isinstance(value, str):
        raise _Invalid(f"{key!r} must be a string, got {_json_type(value)}")
    return value.strip()


def _optional_text(element: Mapping[str, Any], key: str) -> str:
    value = element.get(key)
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int):
        # exchange_token is documented as a string; tolerate integers, nothing else.
        raise _Invalid(f"{key!r} must be a string, got {_json_type(value)}")
    return str(value).strip()


def _decimal_field(element: Mapping[str, Any], key: str) -> Decimal | None:
    """A JSON number (or numeric string) as Decimal via its text form; None when absent."""
    value = element.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _Invalid(f"bad {key} {value!r}: not a number")
    try:
        # str() first: Decimal(0.05) would carry the float's binary error.
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise _Invalid(f"bad {key} {value!r}: not a number") from None
    if not number.is_finite():
        raise _Invalid(f"bad {key} {value!r}: not a finite number")
    return number


def _positive_decimal(element: Mapping[str, Any], key: str) -> Decimal:
    number = _decimal_field(element, key)
    if number is None:
        raise _Invalid(f"missing required key(s): {key!r}")
    if number <= 0:
        raise _Invalid(f"bad {key} {element[key]!r}: not positive")
    return number


def _lot_size(element: Mapping[str, Any]) -> int:
    number = _positive_decimal(element, "lot_size")
    if number > _MAX_LOT_SIZE or number != number.to_integral_value():
        raise _Invalid(f"bad lot_size {element['lot_size']!r}: not a sane whole number")
    return int(number)


def _expiry(element: Mapping[str, Any]) -> date:
    number = _decimal_field(element, "expiry")
    raw = element.get("expiry")
    if number is None:
        raise _Invalid("missing required key(s): 'expiry'")
    if number != number.to_integral_value() or not 0 < number <= _MAX_EPOCH_MS:
        raise _Invalid(f"bad expiry {raw!r}: not a positive whole number of epoch milliseconds")
    # Integer arithmetic on the milliseconds: no float rounding near midnight.
    seconds = int(number) // 1000
    try:
        return datetime.fromtimestamp(seconds, tz=IST).date()
    except (OverflowError, OSError, ValueError) as exc:
        raise _Invalid(f"bad expiry {raw!r}: {exc}") from None
