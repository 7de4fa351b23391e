"""Typed records passed between the master parsers, the linker and the import service."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from enum import StrEnum


class Exchange(StrEnum):
    NSE = "NSE"
    BSE = "BSE"
    MCX = "MCX"


class Segment(StrEnum):
    CM = "CM"  # capital market: equities and indices
    FO = "FO"  # equity/index derivatives
    CD = "CD"  # currency derivatives
    COM = "COM"  # commodities


class InstrumentType(StrEnum):
    EQ = "EQ"
    INDEX = "INDEX"
    FUT = "FUT"
    OPT = "OPT"


class OptionType(StrEnum):
    CE = "CE"
    PE = "PE"


@dataclass(frozen=True, slots=True)
class SourceRef:
    """Where a row came from: CSV line number, or 1-based record number in a JSON array."""

    path: str
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(frozen=True, slots=True)
class RowError:
    source: SourceRef
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"


@dataclass(frozen=True, slots=True)
class FyersRow:
    """One row of a FYERS symbol-master CSV (providers/FYERS.md §3.7), validated."""

    source: SourceRef
    fytoken: str
    symbol: str  # e.g. "NSE:SBIN-EQ"
    name: str
    exchange: Exchange
    segment: Segment
    instrument_type: InstrumentType
    series: str  # "EQ", "BE", ... for equities (the symbol's suffix); "" otherwise
    isin: str
    exchange_token: str
    underlying: str
    tick_size: Decimal  # rupees
    lot_size: int
    expiry: date | None
    strike: Decimal | None
    option_type: OptionType | None


@dataclass(frozen=True, slots=True)
class UpstoxRow:
    """One element of an Upstox instrument JSON array (providers/UPSTOX.md §2.2), validated."""

    source: SourceRef
    instrument_key: str  # e.g. "NSE_EQ|INE062A01020"
    trading_symbol: str
    name: str
    exchange: Exchange
    segment: Segment
    instrument_type: InstrumentType
    series: str
    isin: str
    exchange_token: str
    underlying: str
    tick_size: Decimal  # rupees (the file carries paise)
    lot_size: int
    expiry: date | None
    strike: Decimal | None
    option_type: OptionType | None


@dataclass(slots=True)
class InstrumentRecord:
    """A canonical instrument, merged from whichever masters list it.

    ``key`` is the provider-neutral canonical key (see ``feeds.instruments.keys``).
    Provider identity fields are "" when that provider does not list the instrument.
    """

    key: str
    exchange: Exchange
    segment: Segment
    instrument_type: InstrumentType
    name: str
    isin: str
    exchange_token: str
    underlying: str
    tick_size: Decimal
    lot_size: int
    expiry: date | None
    strike: Decimal | None
    option_type: OptionType | None
    fyers_symbol: str = ""
    fyers_token: str = ""
    upstox_key: str = ""
    upstox_trading_symbol: str = ""
    sources: list[SourceRef] = field(default_factory=list)


@dataclass(slots=True)
class Unmatched:
    """An instrument listed by one provider only: still imported, but reported."""

    key: str
    provider: str  # "fyers" or "upstox"
    source: SourceRef


@dataclass(slots=True)
class LinkResult:
    records: list[InstrumentRecord]
    unmatched: list[Unmatched]
    rejected: list[RowError]
