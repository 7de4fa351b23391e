"""Upstox Market Data Feed V3, server side (for the simulator): the inverse of ``codec``.

``decode_request`` reads a client's JSON request; ``encode_market_info`` and ``encode_feed``
build ``FeedResponse`` frames the way Upstox does (UPSTOX.md §6.2, §6.3, §10.1). Map entries
(instruments, segments) go on the wire in the caller's order: that is what lets the worked
examples of §10.3 come out byte for byte, and keeps frames reproducible.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from ..errors import FrameError
from ..ticks import DepthLevel, ProviderName, Tick
from .codec import METHODS, MODES, Method, StatusInfo
from .proto import MarketDataFeedV3_pb2 as pb

MAX_REQUEST_BYTES: Final = 4 * 1024 * 1024

# Subscribed mode -> Feed.requestMode (§6.2).
REQUEST_MODES: Final[Mapping[str, int]] = {
    "ltpc": pb.ltpc,
    "full": pb.full_d5,
    "option_greeks": pb.option_greeks,
    "full_d30": pb.full_d30,
}
DEPTH_LEVELS: Final[Mapping[str, int]] = {"full": 5, "full_d30": 30}

_IST_OFFSET_MS: Final = 19_800_000  # +05:30: Indian trading days start at IST midnight
_DAY_MS: Final = 86_400_000
_MINUTE_MS: Final = 60_000


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True, slots=True)
class Request:
    guid: str
    method: Method
    mode: str | None  # None only for unsub
    instrument_keys: tuple[str, ...]


def decode_request(frame: bytes) -> Request:
    """A client's request frame; every malformed one is a ``FrameError``."""
    if isinstance(frame, str):
        # Upstox ignores text-frame requests (§5); the simulator must be able to tell.
        raise FrameError("text_frame", "requests must come in binary frames")
    if not isinstance(frame, bytes | bytearray | memoryview):
        raise FrameError("not_bytes", type(frame).__name__)
    if len(frame) > MAX_REQUEST_BYTES:
        raise FrameError("too_large", f"{len(frame)} bytes")
    try:
        obj = json.loads(bytes(frame))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise FrameError("bad_json", str(exc)[:200]) from None
    if not isinstance(obj, dict):
        raise FrameError("bad_request", "request is not a JSON object")
    for name in ("guid", "method", "data"):
        if name not in obj:
            raise FrameError("missing_field", name)
    guid, method, data = obj["guid"], obj["method"], obj["data"]
    if not isinstance(guid, str):
        raise FrameError("bad_request", "guid is not a string")
    if not isinstance(method, str) or method not in METHODS:
        raise FrameError("unknown_method", repr(method)[:100])
    if not isinstance(data, dict):
        raise FrameError("bad_request", "data is not an object")
    keys = data.get("instrumentKeys")
    if keys is None:
        raise FrameError("missing_field", "data.instrumentKeys")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise FrameError("bad_request", "instrumentKeys is not a list of strings")
    if not keys:
        raise FrameError("missing_field", "data.instrumentKeys is empty")
    mode = data.get("mode")
    if method == "unsub":
        mode = None  # the SDK never sends one; a stray one means nothing
    elif mode is None:
        if method == "change_mode":
            raise FrameError("missing_field", "data.mode")
        mode = "ltpc"  # §5: sub without a mode
    elif not isinstance(mode, str) or mode not in MODES:
        raise FrameError("unknown_mode", repr(mode)[:100])
    return Request(guid, method, mode, tuple(keys))


# --------------------------------------------------------------------------- wire helpers


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _len_field(number: int, payload: bytes) -> bytes:
    """One length-delimited field (wire type 2): tag, length, payload."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _map_entry(number: int, key: str, value: bytes) -> bytes:
    """One map<string, message> entry as upb writes it: key (1), then value (2), always both."""
    return _len_field(number, _len_field(1, key.encode("utf-8")) + _len_field(2, value))


def _px(value: int | None, scale: int) -> float:
    # int / int is correctly rounded: the double nearest the decimal, as Upstox sends.
    return 0.0 if value is None else value / 10**scale


# --------------------------------------------------------------------------- market_info


def encode_market_info(
    *,
    current_ts: int,
    segment_status: Mapping[str, str],
    pre_open: Mapping[str, StatusInfo | tuple[str, int]] | None = None,
    cas: Mapping[str, StatusInfo | tuple[str, int]] | None = None,
) -> bytes:
    """A ``market_info`` FeedResponse; statuses are ``MarketStatus`` names ("NORMAL_OPEN")."""
    # One single-entry MarketInfo per map entry, concatenated: protobuf merges them, and the
    # entries stay in the caller's order (upb itself would write maps sorted by key).
    info = bytearray()
    for segment, status in segment_status.items():
        try:
            value = pb.MarketStatus.Value(status)
        except ValueError:
            raise ValueError(f"unknown market status {status!r}") from None
        info += pb.MarketInfo(segmentStatus={segment: value}).SerializeToString()
    for name, entries in (("casMarketStatus", cas), ("preOpenSessionStatus", pre_open)):
        for segment, item in (entries or {}).items():
            status, updated = (
                (item.status, item.updated_time) if isinstance(item, StatusInfo) else item
            )
            entry = {segment: pb.StatusInfo(status=status, updatedTime=updated)}
            info += pb.MarketInfo(**{name: entry}).SerializeToString()
    head = pb.FeedResponse(type=pb.market_info, currentTs=current_ts).SerializeToString()
    return head + _len_field(4, bytes(info))


# --------------------------------------------------------------------------- feeds


def _ltpc(target: pb.LTPC, tick: Tick) -> None:
    target.ltp = _px(tick.ltp, tick.scale)
    target.ltt = tick.ltt if tick.ltt is not None else (tick.exchange_ts or 0)
    target.ltq = tick.ltq or 0
    target.cp = _px(tick.prev_close, tick.scale)
    target.SetInParent()  # present even when every field is 0 (an untraded instrument)


def _ohlc(target: pb.MarketOHLC, tick: Tick, current_ts: int) -> None:
    """Day-so-far "1d" and current-minute "I1" bars (§6.2); a Tick knows no minute bar, so
    I1 is flat at the LTP."""
    ltp = _px(tick.ltp, tick.scale)
    at = tick.ltt or tick.exchange_ts or current_ts
    day_start = (at + _IST_OFFSET_MS) // _DAY_MS * _DAY_MS - _IST_OFFSET_MS
    target.ohlc.add(
        interval="1d",
        open=_px(tick.open, tick.scale),
        high=_px(tick.high, tick.scale),
        low=_px(tick.low, tick.scale),
        close=ltp,
        vol=tick.volume or 0,
        ts=day_start,
    )
    target.ohlc.add(
        interval="I1", open=ltp, high=ltp, low=ltp, close=ltp, ts=at // _MINUTE_MS * _MINUTE_MS
    )


def _greeks(target: pb.OptionGreeks, tick: Tick) -> None:
    target.delta = tick.delta or 0.0
    target.theta = tick.theta or 0.0
    target.gamma = tick.gamma or 0.0
    target.vega = tick.vega or 0.0
    target.rho = tick.rho or 0.0
    target.SetInParent()  # equities get an empty optionGreeks, as captured feeds show


def _side(
    levels: tuple[DepthLevel, ...] | None, best: int | None, qty: int | None
) -> tuple[DepthLevel, ...]:
    """A tick's book side; a tick with only best bid/ask yields a one-level side."""
    if levels is not None:
        return levels
    return () if best is None else (DepthLevel(best, qty or 0),)


def feed_message(
    tick: Tick,
    mode: str,
    *,
    index: bool = False,
    current_ts: int = 0,
) -> pb.Feed:
    """The ``Feed`` Upstox sends for ``tick`` to a client subscribed in ``mode`` (§6.2).

    None fields go out as 0 (proto3 has no "absent" for scalars). Exposed so tests and the
    simulator can adjust a message (e.g. set ``LTPC.iep``) before ``encode_feed_messages``.
    """
    if mode not in REQUEST_MODES:
        raise ValueError(f"unknown mode {mode!r}")
    feed = pb.Feed(requestMode=REQUEST_MODES[mode])
    scale = tick.scale
    if mode == "ltpc":
        _ltpc(feed.ltpc, tick)
    elif mode == "option_greeks":
        fl = feed.firstLevelWithGreeks
        _ltpc(fl.ltpc, tick)
        depth = fl.firstDepth
        depth.bidQ = tick.bid_qty or 0
        depth.bidP = _px(tick.bid, scale)
        depth.askQ = tick.ask_qty or 0
        depth.askP = _px(tick.ask, scale)
        depth.SetInParent()
        _greeks(fl.optionGreeks, tick)
        fl.vtt = tick.volume or 0
        fl.oi = float(tick.oi or 0)
        fl.iv = tick.iv or 0.0
    elif index:
        # Indices have no book: LTPC + OHLC only, whatever the depth asked for.
        ff = feed.fullFeed.indexFF
        _ltpc(ff.ltpc, tick)
        _ohlc(ff.marketOHLC, tick, current_ts)
    else:
        ff = feed.fullFeed.marketFF
        _ltpc(ff.ltpc, tick)
        bids = _side(tick.bids, tick.bid, tick.bid_qty)
        asks = _side(tick.asks, tick.ask, tick.ask_qty)
        quotes = ff.marketLevel.bidAskQuote
        for i in range(DEPTH_LEVELS[mode]):  # always the full ladder; empty slots are zeros
            quote = quotes.add()
            if i < len(bids):
                quote.bidQ = bids[i].qty
                quote.bidP = bids[i].price / 10**scale
            if i < len(asks):
                quote.askQ = asks[i].qty
                quote.askP = asks[i].price / 10**scale
        _greeks(ff.optionGreeks, tick)
        _ohlc(ff.marketOHLC, tick, current_ts)
        ff.atp = _px(tick.atp, scale)
        ff.vtt = tick.volume or 0
        ff.oi = float(tick.oi or 0)
        ff.iv = tick.iv or 0.0
        ff.tbq = float(tick.total_buy_qty or 0)
        ff.tsq = float(tick.total_sell_qty or 0)
    return feed


def encode_feed_messages(
    *,
    feeds: Iterable[tuple[str, pb.Feed]],
    kind: Literal["initial", "live"],
    current_ts: int,
) -> bytes:
    """A FeedResponse from ready ``Feed`` messages, entries in the given order.

    ``initial`` leaves ``type`` unset: enum 0 is never written (§6.3).
    """
    if kind not in ("initial", "live"):
        raise ValueError(f"unknown kind {kind!r}")
    parts = [pb.FeedResponse(type=pb.live_feed).SerializeToString() if kind == "live" else b""]
    for key, feed in feeds:
        parts.append(_map_entry(2, key, feed.SerializeToString()))
    parts.append(pb.FeedResponse(currentTs=current_ts).SerializeToString())
    return b"".join(parts)


def encode_feed(
    *,
    ticks: Sequence[Tick],
    modes: Mapping[str, str],
    kind: Literal["initial", "live"],
    current_ts: int,
    index_keys: set[str] | frozenset[str] = frozenset(),
) -> bytes:
    """One FeedResponse carrying ``ticks``, each shaped by its key's subscribed mode."""
    feeds = []
    for tick in ticks:
        mode = modes.get(tick.symbol)
        if mode is None:
            raise ValueError(f"{tick.symbol!r} has no subscribed mode")
        feeds.append(
            (
                tick.symbol,
                feed_message(tick, mode, index=tick.symbol in index_keys, current_ts=current_ts),
            )
        )
    return encode_feed_messages(feeds=feeds, kind=kind, current_ts=current_ts)


# --------------------------------------------------------------------------- §10.3 examples

WORKED_EXAMPLE_KEY: Final = "NSE_EQ|INE000TEST01"
WORKED_EXAMPLE_TS: Final = 1732775008661


def worked_example_tick(*, with_trade: bool = False) -> Tick:
    """LTP 1234.55; with ``with_trade`` also ltt 1732775008000, ltq 10, cp 1200.0."""
    tick = Tick(ProviderName.UPSTOX, WORKED_EXAMPLE_KEY, 123455, 2, 0)
    if with_trade:
        tick.ltt = tick.exchange_ts = 1732775008000
        tick.ltq = 10
        tick.prev_close = 120000
    return tick


def worked_example_feed(
    *, kind: Literal["initial", "live"] = "live", with_trade: bool = False
) -> bytes:
    """§10.3: the 45-byte live ltpc frame (63 bytes ``with_trade``; 2 fewer as initial)."""
    return encode_feed(
        ticks=[worked_example_tick(with_trade=with_trade)],
        modes={WORKED_EXAMPLE_KEY: "ltpc"},
        kind=kind,
        current_ts=WORKED_EXAMPLE_TS,
    )


def worked_example_market_info() -> bytes:
    """§10.3: the 35-byte market_info frame (NSE_FO entry first, as in the captured bytes)."""
    return encode_market_info(
        current_ts=WORKED_EXAMPLE_TS,
        segment_status={"NSE_FO": "PRE_OPEN_START", "NSE_EQ": "NORMAL_OPEN"},
    )
