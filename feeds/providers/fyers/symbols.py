"""FYERS identifiers: fytoken segments and socket topic names, built exactly as SDK 3.2.0 does.

See FYERS.md §2. Nothing here does I/O; the index-name table a caller downloads
(``index_hsm_mapping.json``) can be passed in place of the small built-in one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal

# fytoken characters 0-3 -> segment name used in topics (FYERS.md §2.2).
SEGMENTS: Final[Mapping[str, str]] = {
    "1010": "nse_cm",
    "1011": "nse_fo",
    "1012": "cde_fo",
    "1020": "nse_com",
    "1120": "mcx_fo",
    "1210": "bse_cm",
    "1211": "bse_fo",
    "1212": "bcs_fo",
}

# FYERS index symbol -> the index name the socket uses in `if|<segment>|<name>` topics.
# A small subset of the SDK's bundled map.json; unknown indices fall back as the SDK does.
INDEX_NAMES: Final[Mapping[str, str]] = {
    "NSE:NIFTY50-INDEX": "Nifty 50",
    "NSE:NIFTYBANK-INDEX": "Nifty Bank",
    "NSE:FINNIFTY-INDEX": "Nifty Fin Service",
    "NSE:INDIAVIX-INDEX": "India VIX",
    "NSE:NIFTYIT-INDEX": "Nifty IT",
    "NSE:NIFTYNXT50-INDEX": "Nifty Next 50",
    "NSE:MIDCPNIFTY-INDEX": "Nifty Midcap 50",
    "NSE:NIFTYMIDCAP50-INDEX": "Nifty Midcap 50",
    "NSE:NIFTYAUTO-INDEX": "Nifty Auto",
    "NSE:NIFTYPHARMA-INDEX": "Nifty Pharma",
    "NSE:NIFTYFMCG-INDEX": "Nifty FMCG",
    "NSE:NIFTYMETAL-INDEX": "Nifty Metal",
    "BSE:SENSEX-INDEX": "SENSEX",
    "BSE:BANKEX-INDEX": "BANKEX",
    "BSE:BSE100-INDEX": "BSE 100",
}

TopicKind = Literal["sf", "if", "dp"]
# What a caller asks for: FYERS's own data_type names or the short topic kinds.
RequestKind = Literal["sf", "if", "dp", "SymbolUpdate", "DepthUpdate"]

_DEPTH_KINDS: Final = frozenset({"dp", "DepthUpdate"})
_SYMBOL_KINDS: Final = frozenset({"sf", "if", "SymbolUpdate"})
TOPIC_KINDS: Final = ("sf", "if", "dp")


def segment_of(fytoken: str) -> str | None:
    """The topic segment for a fytoken, or None when the SDK would silently drop it."""
    return SEGMENTS.get(fytoken[:4])


def is_index(symbol: str) -> bool:
    """The SDK's rule: an index exactly when the text after the last ``-`` is ``INDEX``."""
    parts = symbol.split("-")
    return len(parts) > 1 and parts[-1] == "INDEX"


def index_name(symbol: str, index_names: Mapping[str, str] | None = None) -> str:
    """The index's topic name from the mapping, else the text between ``:`` and the first ``-``."""
    names = INDEX_NAMES if index_names is None else index_names
    name = names.get(symbol)
    if name is not None:
        return name
    if ":" not in symbol:
        raise ValueError(f"not a FYERS symbol: {symbol!r}")
    return symbol.split(":")[1].split("-")[0]


def topic_for(
    *,
    symbol: str,
    fytoken: str,
    kind: RequestKind,
    index_names: Mapping[str, str] | None = None,
) -> str:
    """The socket topic for one symbol: ``sf|nse_cm|3045``, ``if|nse_cm|Nifty 50``, ``dp|...``.

    ``kind`` says what is wanted (quotes or depth); whether quotes become ``sf`` or ``if`` is
    decided by the symbol, as in the SDK. ``index_names=None`` uses the built-in table.
    Raises ValueError for depth of an index, an unknown segment or a malformed fytoken.
    """
    if kind in _DEPTH_KINDS:
        depth = True
    elif kind in _SYMBOL_KINDS:
        depth = False
    else:
        raise ValueError(f"unknown kind {kind!r}")
    segment = segment_of(fytoken)
    if segment is None:
        raise ValueError(f"fytoken {fytoken!r} has an unknown segment code")
    if is_index(symbol):
        if depth:
            raise ValueError("Index does not have market depth")
        return f"if|{segment}|{index_name(symbol, index_names)}"
    token = fytoken[10:]
    if not token:
        raise ValueError(f"fytoken {fytoken!r} carries no exchange token")
    return f"{'dp' if depth else 'sf'}|{segment}|{token}"


def topic_kind(topic: str) -> TopicKind:
    """``sf``, ``if`` or ``dp`` from a topic name; ValueError for anything else."""
    kind = topic[:2]
    if topic[2:3] != "|" or kind not in TOPIC_KINDS:
        raise ValueError(f"not a FYERS topic: {topic!r}")
    return kind  # type: ignore[return-value]
