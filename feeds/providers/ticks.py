"""The provider-independent tick.

Prices are exact: an integer count of ``10 ** -scale`` rupees (``ltp=123455, scale=2`` is
₹1234.55). Every price field of one tick shares its ``scale``. Quantities are integers.
Times: ``exchange_ts`` and ``ltt`` are epoch milliseconds as the exchange stamped them;
``recv_ns`` is ``time.time_ns()`` when the frame reached the hub.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction
from typing import NamedTuple


class ProviderName(StrEnum):
    FYERS = "fyers"
    UPSTOX = "upstox"


class DepthLevel(NamedTuple):
    # A tuple, not a dataclass: decoders build dozens per depth tick (4x cheaper).
    price: int  # same scale as the tick
    qty: int
    orders: int | None = None  # FYERS carries order counts; Upstox does not


_new_object = object.__new__


# Not slotted on purpose: the defaults stay on the class, so ``Tick.bare`` can make a tick by
# setting only the fields a frame carries (about 2.5x cheaper than the full constructor).
@dataclass(eq=True)
class Tick:
    provider: ProviderName
    symbol: str  # the provider's own form: "NSE:SBIN-EQ", "NSE_EQ|INE062A01020"
    ltp: int
    scale: int
    recv_ns: int
    instrument: str = ""  # canonical key, filled by whoever knows the symbol map
    snapshot: bool = False  # first full record of a subscription (FYERS S, Upstox initial)
    exchange_ts: int | None = None
    ltt: int | None = None
    ltq: int | None = None
    volume: int | None = None  # cumulative traded quantity today
    bid: int | None = None
    ask: int | None = None
    bid_qty: int | None = None
    ask_qty: int | None = None
    open: int | None = None
    high: int | None = None
    low: int | None = None
    prev_close: int | None = None
    atp: int | None = None  # average traded price
    oi: int | None = None
    total_buy_qty: int | None = None
    total_sell_qty: int | None = None
    lower_circuit: int | None = None
    upper_circuit: int | None = None
    bids: tuple[DepthLevel, ...] | None = None  # best first
    asks: tuple[DepthLevel, ...] | None = None
    iv: float | None = None  # greeks and IV are model outputs, not prices: floats are fine
    delta: float | None = None
    theta: float | None = None
    gamma: float | None = None
    vega: float | None = None
    rho: float | None = None
    connection: str = ""  # the socket that delivered it ("fyers:primary:3"), set by the client
    flags: int = 0  # validation.checks.Check bits: the checks this tick failed (0: clean)
    consensus: int | None = None  # tier 2's chosen price, same scale, when the sources disagree

    @classmethod
    def bare(cls, provider: ProviderName, symbol: str, ltp: int, scale: int, recv_ns: int) -> Tick:
        """A tick with only the required fields set; the hot decode paths add the rest."""
        tick = _new_object(cls)
        tick.provider = provider
        tick.symbol = symbol
        tick.ltp = ltp
        tick.scale = scale
        tick.recv_ns = recv_ns
        return tick

    def price(self, value: int | None = None) -> Decimal | None:
        """A price field as an exact Decimal (the LTP when no value is given)."""
        raw = self.ltp if value is None else value
        return None if raw is None else Decimal(raw).scaleb(-self.scale)


# Prices in a FYERS packet are raw / (10**precision * multiplier). With multiplier 1 (the
# usual case) the raw value is already an exact integer at scale ``precision``.
MAX_SCALE = 8


def exact_scaled(raw: int, precision: int, multiplier: int) -> tuple[int, int]:
    """Return ``(value, scale)`` with value / 10**scale == raw / (10**precision * multiplier).

    The scale grows only as far as the division needs; a quotient with no finite decimal
    form (a multiplier with a factor other than 2 and 5) is rounded half-even at MAX_SCALE.
    """
    if multiplier == 1:
        return raw, precision
    exact = Fraction(raw, 10**precision * multiplier)
    for scale in range(precision, MAX_SCALE + 1):
        scaled = exact * 10**scale
        if scaled.denominator == 1:
            return scaled.numerator, scale
    return round(exact * 10**MAX_SCALE), MAX_SCALE


def float_to_scaled(value: float, scale: int) -> int:
    """A provider's double (Upstox) as an integer at ``scale``; exact for prices on a grid."""
    return round(value * 10**scale)


def rescale(value: int, from_scale: int, to_scale: int) -> int:
    """Change scale; refuses to lose digits silently."""
    if to_scale >= from_scale:
        return value * 10 ** (to_scale - from_scale)
    factor = 10 ** (from_scale - to_scale)
    if value % factor:
        raise ValueError(f"{value}e-{from_scale} has more than {to_scale} decimals")
    return value // factor
