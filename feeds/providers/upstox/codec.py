"""Upstox Market Data Feed V3, client side: request JSON out, protobuf ``FeedResponse`` in.

Sans-I/O (UPSTOX.md §5-§7). ``encode_request`` builds the bytes the SDK sends (to go out as a
BINARY frame); ``UpstoxDecoder.feed`` turns each binary frame into typed events with exact
integer prices. The decoder reads protobuf fields directly (HasField / WhichOneof); it never
goes through ``MessageToDict`` (the SDK's path, several times slower).
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from google.protobuf.message import DecodeError

from ..errors import CapExceeded, FrameError
from ..ticks import DepthLevel, ProviderName, Tick
from .proto import MarketDataFeedV3_pb2 as pb

Method = Literal["sub", "change_mode", "unsub"]
MODES: Final = frozenset({"ltpc", "option_greeks", "full", "full_d30"})
METHODS: Final = frozenset({"sub", "change_mode", "unsub"})

# §7.1. full_d30's printed "combined 1500" contradicts its individual 50; 50 is the safe bound.
DEFAULT_MODE_LIMITS: Final[Mapping[str, Mapping[str, int]]] = {
    "ltpc": {"individual": 5000, "combined": 2000},
    "option_greeks": {"individual": 3000, "combined": 2000},
    "full": {"individual": 2000, "combined": 1500},
    "full_d30": {"individual": 50, "combined": 50},
}

# Currency derivatives quote to 4 decimals (JPYINR tick 0.0025); everything else to 2.
_FOUR_DECIMAL_SEGMENTS: Final = ("NCD_FO|", "BCD_FO|")

# Caps on what one frame may carry. Upstox sends at most 30 depth levels and a handful of OHLC
# bars; the caps only stop hostile or corrupt frames from costing unbounded work.
MAX_FRAME_BYTES: Final = 16 * 1024 * 1024
MAX_FEEDS: Final = 10_000
MAX_DEPTH_LEVELS: Final = 50
MAX_OHLC_BARS: Final = 32
MAX_STATUS_ENTRIES: Final = 1024

_FeedResponse: Final = pb.FeedResponse
_TYPE_INITIAL: Final = pb.initial_feed
_TYPE_LIVE: Final = pb.live_feed
_TYPE_MARKET_INFO: Final = pb.market_info
_UPSTOX: Final = ProviderName.UPSTOX


# --------------------------------------------------------------------------- requests (§5)


def encode_request(
    method: Method,
    instrument_keys: Sequence[str],
    mode: str | None = None,
    *,
    guid: str | None = None,
) -> bytes:
    """The request JSON exactly as the SDK builds it; send it as a BINARY frame.

    ``mode`` is omitted from the JSON for ``unsub`` (which takes none) and for a ``sub``
    without one (the server then uses ``ltpc``); ``change_mode`` needs it.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}")
    if isinstance(instrument_keys, str | bytes):
        raise ValueError("instrument_keys must be a sequence of keys, not one string")
    keys = list(instrument_keys)
    if not keys or not all(isinstance(k, str) and k for k in keys):
        raise ValueError("instrument_keys must be non-empty strings")
    if method == "unsub":
        if mode is not None:
            raise ValueError("unsub takes no mode")
    elif mode is None:
        if method == "change_mode":
            raise ValueError("change_mode needs a mode")
    elif mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {sorted(MODES)}")
    data: dict[str, object] = {"instrumentKeys": keys}
    if mode is not None:
        data["mode"] = mode
    request = {"guid": str(uuid.uuid4()) if guid is None else guid, "method": method, "data": data}
    return json.dumps(request).encode("utf-8")


def check_mode_limits(
    counts_by_mode: Mapping[str, int],
    limits: Mapping[str, Mapping[str, int]] = DEFAULT_MODE_LIMITS,
) -> None:
    """Raise ``CapExceeded`` if one connection's planned subscriptions break §7.1.

    A mode used alone may go up to its "individual" limit; when several modes hold keys, each
    is held to its (lower) "combined" limit. Modes with a zero count are not "used".
    """
    used = {}
    for mode, count in counts_by_mode.items():
        if mode not in limits:
            raise ValueError(f"unknown mode {mode!r}")
        if count < 0:
            raise ValueError(f"negative count for {mode!r}")
        if count:
            used[mode] = count
    kind = "individual" if len(used) == 1 else "combined"
    for mode, count in used.items():
        limit = limits[mode][kind]
        if count > limit:
            raise CapExceeded(f"upstox {mode} subscriptions ({kind} limit)", limit, count)


# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class StatusInfo:
    """One entry of the pre-open / closing-auction status maps."""

    status: str
    updated_time: int  # epoch ms


@dataclass(frozen=True, slots=True)
class MarketInfo:
    current_ts: int  # epoch ms
    segment_status: dict[str, str]  # "NSE_EQ" -> "NORMAL_OPEN"
    pre_open: dict[str, StatusInfo] = field(default_factory=dict)
    cas: dict[str, StatusInfo] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FeedBatch:
    """One frame's instruments. ``initial`` (the post-subscribe snapshot) marks its ticks
    ``snapshot=True``. Tick order means nothing: the wire carries a map."""

    kind: Literal["initial", "live"]
    current_ts: int  # epoch ms, the server's send time for the whole batch
    ticks: list[Tick]


Event = MarketInfo | FeedBatch


# --------------------------------------------------------------------------- decoder


def default_scale(instrument_key: str) -> int:
    """Decimals kept for a key's prices when the caller gave none (§2.1 segments)."""
    return 4 if instrument_key.startswith(_FOUR_DECIMAL_SEGMENTS) else 2


def _status_name(value: int) -> str:
    # proto3 enums are open: a status newer than our schema arrives as a bare number.
    try:
        return pb.MarketStatus.Name(value)
    except ValueError:
        return f"UNKNOWN_{value}"


_POW10: Final = {scale: 10**scale for scale in range(9)}
# The cheap constructors: only the fields a frame carries are set (see ticks.Tick.bare).
_bare = Tick.bare
_level = tuple.__new__


# Prices: ``round(value * mult)`` with ``mult == 10 ** scale`` is float_to_scaled's own
# arithmetic, inlined on the hot paths (a call costs as much as the conversion; a test pins
# the two together).


def _depth(quotes: Sequence[pb.Quote], mult: int) -> tuple[tuple[DepthLevel, ...], ...]:
    """(bids, asks), best first; a side's all-zero slot is padding, not a level."""
    if len(quotes) > MAX_DEPTH_LEVELS:
        raise FrameError("too_many_levels", f"{len(quotes)} depth levels")
    bids = []
    asks = []
    for q in quotes:
        price = q.bidP
        qty = q.bidQ
        if price or qty:
            bids.append(_level(DepthLevel, (round(price * mult), qty, None)))
        price = q.askP
        qty = q.askQ
        if price or qty:
            asks.append(_level(DepthLevel, (round(price * mult), qty, None)))
    return tuple(bids), tuple(asks)


def _ltpc_tick(key: str, lt: pb.LTPC, scale: int, mult: int, snapshot: bool, recv_ns: int) -> Tick:
    # proto3 cannot say "absent": ltt/ltq 0 (no trade yet, or an index) and a prev close of
    # exactly 0.0 mean "not sent", so they become None. The LTP is kept as is.
    tick = _bare(_UPSTOX, key, round(lt.ltp * mult), scale, recv_ns)
    if snapshot:
        tick.snapshot = True
    ltt = lt.ltt
    if ltt:
        tick.exchange_ts = tick.ltt = ltt
    ltq = lt.ltq
    if ltq:
        tick.ltq = ltq
    cp = lt.cp
    if cp:
        tick.prev_close = round(cp * mult)
    return tick


def _set_day(tick: Tick, market_ohlc: pb.MarketOHLC, mult: int) -> None:
    """open/high/low from the "1d" bar (day so far); the I1/I30 bars are not tick fields."""
    bars = market_ohlc.ohlc
    if len(bars) > MAX_OHLC_BARS:
        raise FrameError("too_many_ohlc", f"{len(bars)} OHLC bars")
    for bar in bars:
        if bar.interval == "1d":
            # 0.0 is "not sent" here too: no trade yet today.
            value = bar.open
            tick.open = round(value * mult) if value else None
            value = bar.high
            tick.high = round(value * mult) if value else None
            value = bar.low
            tick.low = round(value * mult) if value else None
            return


def _set_greeks(tick: Tick, greeks: pb.OptionGreeks) -> None:
    # Equity full feeds carry an empty optionGreeks (§6.2): present but empty means "none".
    if greeks.ByteSize():
        tick.delta = greeks.delta
        tick.theta = greeks.theta
        tick.gamma = greeks.gamma
        tick.vega = greeks.vega
        tick.rho = greeks.rho


def _market_ff(
    key: str, ff: pb.MarketFullFeed, scale: int, mult: int, snapshot: bool, recv_ns: int
) -> Tick:
    if not ff.HasField("ltpc"):
        raise FrameError("empty_feed", f"{key}: marketFF without ltpc")
    tick = _ltpc_tick(key, ff.ltpc, scale, mult, snapshot, recv_ns)
    bids, asks = _depth(ff.marketLevel.bidAskQuote, mult)
    tick.bids = bids
    tick.asks = asks
    if bids:
        level = bids[0]
        tick.bid = level.price
        tick.bid_qty = level.qty
    if asks:
        level = asks[0]
        tick.ask = level.price
        tick.ask_qty = level.qty
    _set_day(tick, ff.marketOHLC, mult)
    atp = ff.atp
    if atp:
        tick.atp = round(atp * mult)
    # Carried by the mode, so 0 is a real value here (no trades yet, no open interest).
    tick.volume = ff.vtt
    tick.oi = round(ff.oi)
    tick.iv = ff.iv
    tick.total_buy_qty = round(ff.tbq)
    tick.total_sell_qty = round(ff.tsq)
    if ff.HasField("optionGreeks"):
        _set_greeks(tick, ff.optionGreeks)
    return tick


def _index_ff(
    key: str, ff: pb.IndexFullFeed, scale: int, mult: int, snapshot: bool, recv_ns: int
) -> Tick:
    if not ff.HasField("ltpc"):
        raise FrameError("empty_feed", f"{key}: indexFF without ltpc")
    tick = _ltpc_tick(key, ff.ltpc, scale, mult, snapshot, recv_ns)
    _set_day(tick, ff.marketOHLC, mult)
    return tick


def _first_level(
    key: str, fl: pb.FirstLevelWithGreeks, scale: int, mult: int, snapshot: bool, recv_ns: int
) -> Tick:
    if not fl.HasField("ltpc"):
        raise FrameError("empty_feed", f"{key}: firstLevelWithGreeks without ltpc")
    tick = _ltpc_tick(key, fl.ltpc, scale, mult, snapshot, recv_ns)
    if fl.HasField("firstDepth"):
        q = fl.firstDepth
        price = q.bidP
        qty = q.bidQ
        if price or qty:
            tick.bid = round(price * mult)
            tick.bid_qty = qty
        price = q.askP
        qty = q.askQ
        if price or qty:
            tick.ask = round(price * mult)
            tick.ask_qty = qty
    if fl.HasField("optionGreeks"):
        _set_greeks(tick, fl.optionGreeks)
    tick.volume = fl.vtt
    tick.oi = round(fl.oi)
    tick.iv = fl.iv
    return tick


class UpstoxDecoder:
    """Binary ``FeedResponse`` frames -> ``MarketInfo`` / ``FeedBatch`` events.

    State (``segment_status``, ``current_ts``, ``frames``, ``ticks``) changes only when a whole
    frame decoded; a bad frame raises ``FrameError`` and only bumps ``errors[reason]``.
    """

    def __init__(
        self,
        *,
        scales: Mapping[str, int] | None = None,
        recv_clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self._scales = scales
        self._clock = recv_clock
        self.frames = 0
        self.ticks = 0
        self.errors: Counter[str] = Counter()
        self.segment_status: dict[str, str] = {}  # merged over every market_info seen
        self.current_ts: int | None = None  # of the last good frame

    def counters(self) -> dict[str, object]:
        return {"frames": self.frames, "ticks": self.ticks, "errors": dict(self.errors)}

    def scale_for(self, instrument_key: str) -> int:
        if self._scales is not None:
            scale = self._scales.get(instrument_key)
            if scale is not None:
                return scale
        return default_scale(instrument_key)

    def feed(self, frame: bytes | str) -> list[Event]:
        try:
            events = self._decode(frame)
        except FrameError as exc:
            self.errors[exc.reason] += 1
            raise
        # Commit only now: nothing above touched the decoder's state.
        self.frames += 1
        for event in events:
            if isinstance(event, FeedBatch):
                self.ticks += len(event.ticks)
            else:
                self.segment_status.update(event.segment_status)
            self.current_ts = event.current_ts
        return events

    # The work; it has no side effects on self.
    def _decode(self, frame: bytes | str) -> list[Event]:
        if isinstance(frame, str):
            raise FrameError("text_frame", "Upstox sends protobuf in binary frames")
        if not isinstance(frame, bytes):
            if not isinstance(frame, bytearray | memoryview):
                raise FrameError("not_bytes", type(frame).__name__)
            frame = bytes(frame)
        if len(frame) > MAX_FRAME_BYTES:
            raise FrameError("too_large", f"{len(frame)} bytes")
        try:
            # A fresh message each time: cheaper than ParseFromString's Clear() of the last one.
            msg = _FeedResponse.FromString(frame)
        except DecodeError as exc:
            raise FrameError("bad_protobuf", str(exc)) from None
        except RecursionError:  # defensive: upb bounds nesting itself
            raise FrameError("bad_protobuf", "nesting too deep") from None

        msg_type = msg.type
        if msg_type not in (_TYPE_INITIAL, _TYPE_LIVE, _TYPE_MARKET_INFO):
            raise FrameError("unknown_type", f"FeedResponse.type = {msg_type}")
        current_ts = msg.currentTs
        events: list[Event] = []
        try:
            if msg_type == _TYPE_MARKET_INFO or msg.HasField("marketInfo"):
                events.append(_market_info(msg.marketInfo, current_ts))
            feeds = msg.feeds
            if feeds:
                if len(feeds) > MAX_FEEDS:
                    raise FrameError("too_many_feeds", f"{len(feeds)} instruments")
                # A missing type is initial_feed (enum 0 is never on the wire, §6.3).
                snapshot = msg_type == _TYPE_INITIAL
                ticks = self._ticks(feeds, snapshot, self._clock())
                events.append(FeedBatch("initial" if snapshot else "live", current_ts, ticks))
        except (ValueError, OverflowError) as exc:
            # round() of a NaN or infinite double: a corrupt number, not a program error.
            raise FrameError("bad_number", str(exc)) from None
        return events

    def _ticks(self, feeds: Mapping[str, pb.Feed], snapshot: bool, recv_ns: int) -> list[Tick]:
        scales = self._scales
        ticks: list[Tick] = []
        append = ticks.append
        for key, feed in feeds.items():
            scale = scales.get(key) if scales is not None else None
            if scale is None:
                # default_scale(), with a cheap first test ("NCD_FO", "BCD_FO": "C" second).
                scale = 4 if key[1:2] == "C" and key.startswith(_FOUR_DECIMAL_SEGMENTS) else 2
            mult = _POW10.get(scale) or 10**scale
            which = feed.WhichOneof("FeedUnion")
            if which == "ltpc":
                append(_ltpc_tick(key, feed.ltpc, scale, mult, snapshot, recv_ns))
            elif which == "fullFeed":
                full = feed.fullFeed
                inner = full.WhichOneof("FullFeedUnion")
                if inner == "marketFF":
                    append(_market_ff(key, full.marketFF, scale, mult, snapshot, recv_ns))
                elif inner == "indexFF":
                    append(_index_ff(key, full.indexFF, scale, mult, snapshot, recv_ns))
                else:
                    raise FrameError("empty_feed", f"{key}: fullFeed without a member")
            elif which == "firstLevelWithGreeks":
                append(_first_level(key, feed.firstLevelWithGreeks, scale, mult, snapshot, recv_ns))
            else:
                raise FrameError("empty_feed", f"{key}: Feed without a member")
        return ticks


def _market_info(info: pb.MarketInfo, current_ts: int) -> MarketInfo:
    seg = info.segmentStatus
    cas = info.casMarketStatus
    pre = info.preOpenSessionStatus
    if max(len(seg), len(cas), len(pre)) > MAX_STATUS_ENTRIES:
        raise FrameError("too_many_segments", "market_info map too large")
    return MarketInfo(
        current_ts,
        {k: _status_name(v) for k, v in seg.items()},
        {k: StatusInfo(v.status, v.updatedTime) for k, v in pre.items()},
        {k: StatusInfo(v.status, v.updatedTime) for k, v in cas.items()},
    )
