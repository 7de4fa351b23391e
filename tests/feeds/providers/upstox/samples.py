"""Sample ticks and frames shared by the Upstox codec tests."""

from __future__ import annotations

import dataclasses

from feeds.providers.ticks import DepthLevel, ProviderName, Tick
from feeds.providers.upstox.server_codec import encode_feed, encode_market_info

TS = 1732775008661
LTT = 1732775008000

EQ = "NSE_EQ|INE062A01020"
OPT = "NSE_FO|45450"
IDX = "NSE_INDEX|Nifty 50"
CUR = "NCD_FO|14294"

# Fields each mode carries besides the LTPC ones (UPSTOX.md §5, §6.2).
LTPC_FIELDS = ("ltp", "scale", "ltt", "exchange_ts", "ltq", "prev_close")
DEPTH_FIELDS = ("bid", "ask", "bid_qty", "ask_qty")
GREEK_FIELDS = ("delta", "theta", "gamma", "vega", "rho")
OHLC_FIELDS = ("open", "high", "low")
MODE_FIELDS: dict[tuple[str, bool], tuple[str, ...]] = {
    ("ltpc", False): LTPC_FIELDS,
    ("ltpc", True): LTPC_FIELDS,
    ("full", True): LTPC_FIELDS + OHLC_FIELDS,
    ("full_d30", True): LTPC_FIELDS + OHLC_FIELDS,
    ("option_greeks", False): LTPC_FIELDS + DEPTH_FIELDS + GREEK_FIELDS + ("volume", "oi", "iv"),
    ("full", False): LTPC_FIELDS
    + DEPTH_FIELDS
    + GREEK_FIELDS
    + OHLC_FIELDS
    + (
        "bids",
        "asks",
        "atp",
        "volume",
        "oi",
        "iv",
        "total_buy_qty",
        "total_sell_qty",
    ),
}
MODE_FIELDS[("full_d30", False)] = MODE_FIELDS[("full", False)]
MODE_FIELDS[("option_greeks", True)] = MODE_FIELDS[("option_greeks", False)]


def rich_tick(symbol: str = OPT, *, scale: int = 2, levels: int = 5, base: int = 0) -> Tick:
    """A tick with every field an Upstox feed can carry set to a non-zero value."""
    unit = 10 ** (scale - 2)  # 0.01 rupee at any scale, so prices stay on the grid
    ltp = (10_000 + base) * 5 * unit
    tick = Tick(ProviderName.UPSTOX, symbol, ltp, scale, 0)
    tick.ltt = tick.exchange_ts = LTT + base
    tick.ltq = 75
    tick.prev_close = ltp - 300 * unit
    tick.open = ltp - 100 * unit
    tick.high = ltp + 250 * unit
    tick.low = ltp - 400 * unit
    tick.atp = ltp - 35 * unit
    tick.volume = 1_234_500
    tick.oi = 98_765
    tick.total_buy_qty = 555_000
    tick.total_sell_qty = 444_000
    tick.iv = 0.1834
    tick.delta, tick.theta, tick.gamma, tick.vega, tick.rho = 0.52, -12.5, 0.0011, 8.25, 0.75
    tick.bids = tuple(DepthLevel(ltp - 5 * unit * (i + 1), 75 * (i + 1)) for i in range(levels))
    tick.asks = tuple(DepthLevel(ltp + 5 * unit * (i + 1), 50 * (i + 2)) for i in range(levels))
    tick.bid, tick.bid_qty = tick.bids[0].price, tick.bids[0].qty
    tick.ask, tick.ask_qty = tick.asks[0].price, tick.asks[0].qty
    return tick


def expected(
    tick: Tick, mode: str, *, index: bool = False, snapshot: bool = False, recv_ns: int = 0
) -> Tick:
    """What the client decoder should make of ``tick`` sent in ``mode``: the mode's fields,
    everything else None."""
    keep = MODE_FIELDS[(mode, index)]
    out = Tick(tick.provider, tick.symbol, tick.ltp, tick.scale, recv_ns, snapshot=snapshot)
    for name in keep:
        setattr(out, name, getattr(tick, name))
    return out


def without(tick: Tick, **changes: object) -> Tick:
    return dataclasses.replace(tick, **changes)


def live_frame(ticks: list[Tick], mode: str, *, kind: str = "live", index=frozenset()) -> bytes:
    return encode_feed(
        ticks=ticks,
        modes={t.symbol: mode for t in ticks},
        kind=kind,  # type: ignore[arg-type]
        current_ts=TS,
        index_keys=index,
    )


def market_info_frame() -> bytes:
    return encode_market_info(
        current_ts=TS, segment_status={"NSE_EQ": "NORMAL_OPEN", "NSE_FO": "NORMAL_OPEN"}
    )


def corpus() -> list[bytes]:
    """Valid frames of every shape, for mutation."""
    return [
        market_info_frame(),
        live_frame([rich_tick(EQ), rich_tick(OPT, base=1)], "ltpc"),
        live_frame([rich_tick(EQ)], "full", kind="initial"),
        live_frame([rich_tick(IDX)], "full", index=frozenset({IDX})),
        live_frame([rich_tick(OPT)], "option_greeks"),
        live_frame([rich_tick(OPT, levels=30)], "full_d30"),
        live_frame([rich_tick(CUR, scale=4)], "full"),
    ]
