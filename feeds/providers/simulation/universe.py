"""The instruments a simulator lists, with both providers' identities."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class SimInstrument:
    key: str  # canonical key
    exchange: str  # NSE / BSE / MCX
    segment: str  # CM / FO / CD / COM
    instrument_type: str  # EQ / INDEX / FUT / OPT
    tick_size: Decimal  # rupees
    fyers_symbol: str = ""
    fytoken: str = ""
    upstox_key: str = ""
    upstox_trading_symbol: str = ""
    name: str = ""
    lot_size: int = 1
    underlying: str = ""
    expiry: date | None = None
    strike: Decimal | None = None
    option_type: str = ""

    @property
    def scale(self) -> int:
        """Decimal places of prices: 4 for currency derivatives, 2 elsewhere."""
        return 4 if self.segment == "CD" else 2

    @property
    def tick(self) -> int:
        """The tick size as an integer at ``scale`` (at least 1)."""
        return max(1, int(self.tick_size.scaleb(self.scale)))

    @property
    def is_index(self) -> bool:
        return self.instrument_type == "INDEX"


# Underlying name in the derivatives masters -> the canonical key of the index it tracks.
INDEX_UNDERLYINGS = {
    "NIFTY": "NSE:NIFTY50",
    "BANKNIFTY": "NSE:NIFTYBANK",
    "FINNIFTY": "NSE:NIFTYFINSERVICE",
    "MIDCPNIFTY": "NSE:NIFTYMIDCAP50",
    "SENSEX": "BSE:SENSEX",
    "BANKEX": "BSE:BANKEX",
}


def underlying_key(instrument: SimInstrument) -> str:
    """Canonical key of a derivative's underlying ("" for cash instruments)."""
    if instrument.instrument_type not in ("FUT", "OPT") or not instrument.underlying:
        return ""
    return INDEX_UNDERLYINGS.get(
        instrument.underlying, f"{instrument.exchange}:{instrument.underlying}"
    )


def sim_instrument_from(source: object) -> SimInstrument:
    """Build from anything shaped like an instrument: a master ``InstrumentRecord`` or the
    ``feeds.models.Instrument`` model (same attribute names)."""

    def text(name: str) -> str:
        value = getattr(source, name, "") or ""
        return str(getattr(value, "value", value))

    return SimInstrument(
        key=text("key"),
        exchange=text("exchange"),
        segment=text("segment"),
        instrument_type=text("instrument_type"),
        tick_size=Decimal(getattr(source, "tick_size", None) or "0.05"),
        fyers_symbol=text("fyers_symbol"),
        fytoken=text("fyers_token"),
        upstox_key=text("upstox_key"),
        upstox_trading_symbol=text("upstox_trading_symbol"),
        name=text("name"),
        lot_size=int(getattr(source, "lot_size", 1) or 1),
        underlying=text("underlying"),
        expiry=getattr(source, "expiry", None),
        strike=getattr(source, "strike", None),
        option_type=text("option_type"),
    )
