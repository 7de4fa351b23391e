"""Provider-neutral canonical instrument keys.

Formats (exchange prefix, then the instrument):

* equity  ``NSE:SBIN`` (series ``EQ`` or none), ``NSE:SBIN-BE`` (any other series kept);
* index   ``NSE:NIFTY50``, ``BSE:SENSEX`` (the index *name* squeezed by :func:`index_name_key`);
* future  ``NSE:NIFTY-20261229-FUT``;
* option  ``NSE:NIFTY-20261229-24000-CE`` (strike without trailing zeros or exponent).

Neither FYERS symbols nor Upstox keys are used as-is: both encode provider conventions
(FYERS' ``-EQ`` suffix and ``26DEC`` month codes, Upstox' ISIN or token keys).
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal

from feeds.instruments.records import Exchange, InstrumentType, OptionType

_NON_ALNUM = re.compile(r"[^0-9A-Za-z]+")


def index_name_key(name: str) -> str:
    """Squeeze an index name: uppercase, non-alphanumerics removed ("Nifty 50" -> "NIFTY50")."""
    return _NON_ALNUM.sub("", name).upper()


def format_strike(strike: Decimal) -> str:
    """Plain decimal text without trailing zeros or exponent: 24000.00 -> "24000"."""
    if not strike.is_finite():
        raise ValueError(f"strike {strike} is not a finite number")
    # normalize() alone gives "2.4E+4"; the "f" format spells it out again.
    return format(strike.normalize(), "f")


def canonical_key(
    *,
    exchange: Exchange | str,
    instrument_type: InstrumentType | str,
    symbol_root: str,
    series: str = "",
    expiry: date | None = None,
    strike: Decimal | None = None,
    option_type: OptionType | str | None = None,
) -> str:
    """Build the canonical key; raises ValueError when a field the kind needs is missing."""
    exch = str(exchange).strip().upper()
    kind = InstrumentType(instrument_type)
    root = symbol_root.strip()
    if not exch:
        raise ValueError("canonical key needs an exchange")
    if not root:
        raise ValueError("canonical key needs a symbol root")

    if kind is InstrumentType.INDEX:
        name = index_name_key(root)
        if not name:
            raise ValueError(f"index name {symbol_root!r} has no letters or digits")
        return f"{exch}:{name}"

    root = root.upper()
    if kind is InstrumentType.EQ:
        suffix = series.strip().upper()
        return f"{exch}:{root}" if suffix in ("", "EQ") else f"{exch}:{root}-{suffix}"

    if expiry is None:
        raise ValueError(f"{kind.value} key needs an expiry")
    stamp = expiry.strftime("%Y%m%d")
    if kind is InstrumentType.FUT:
        return f"{exch}:{root}-{stamp}-FUT"

    if strike is None:
        raise ValueError("option key needs a strike")
    if option_type is None:
        raise ValueError("option key needs an option type")
    return f"{exch}:{root}-{stamp}-{format_strike(strike)}-{OptionType(option_type).value}"
