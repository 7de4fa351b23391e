"""Server encoder -> client decoder, for every subscription mode (UPSTOX.md §6.2)."""

from __future__ import annotations

import pytest
from google.protobuf.json_format import MessageToDict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feeds.providers.ticks import DepthLevel, ProviderName, Tick, float_to_scaled
from feeds.providers.upstox.codec import (
    FeedBatch,
    MarketInfo,
    StatusInfo,
    UpstoxDecoder,
    default_scale,
)
from feeds.providers.upstox.proto import MarketDataFeedV3_pb2 as pb
from feeds.providers.upstox.server_codec import (
    encode_feed,
    encode_feed_messages,
    encode_market_info,
    feed_message,
)

from .samples import CUR, EQ, IDX, OPT, TS, expected, live_frame, rich_tick, without


def decode_one(frame: bytes, **kwargs) -> FeedBatch:
    (batch,) = UpstoxDecoder(recv_clock=lambda: 7, **kwargs).feed(frame)
    assert isinstance(batch, FeedBatch)
    return batch


@pytest.mark.parametrize(
    ("symbol", "mode", "index", "levels"),
    [
        (EQ, "ltpc", False, 5),
        (IDX, "ltpc", True, 5),
        (EQ, "full", False, 5),
        (OPT, "full", False, 5),
        (IDX, "full", True, 5),
        (OPT, "option_greeks", False, 5),
        (OPT, "full_d30", False, 30),
        (IDX, "full_d30", True, 30),
    ],
)
@pytest.mark.parametrize("kind", ["live", "initial"])
def test_round_trip_every_mode(symbol, mode, index, levels, kind):
    tick = rich_tick(symbol, levels=levels)
    frame = live_frame([tick], mode, kind=kind, index=frozenset({symbol} if index else ()))
    batch = decode_one(frame)
    assert (batch.kind, batch.current_ts) == (kind, TS)
    snapshot = kind == "initial"
    assert batch.ticks == [expected(tick, mode, index=index, snapshot=snapshot, recv_ns=7)]


def test_wire_shape_per_mode():
    """What each mode puts in Feed and requestMode, seen through the SDK's own dict view."""
    ticks = [rich_tick(EQ), rich_tick(IDX), rich_tick(OPT), rich_tick("NSE_FO|1", levels=30)]
    modes = {EQ: "full", IDX: "full", OPT: "option_greeks", "NSE_FO|1": "full_d30"}
    frame = encode_feed(
        ticks=ticks, modes=modes, kind="live", current_ts=TS, index_keys=frozenset({IDX})
    )
    feeds = MessageToDict(pb.FeedResponse.FromString(frame))["feeds"]
    assert set(feeds) == {EQ, IDX, OPT, "NSE_FO|1"}
    # Entries go on the wire in the caller's order (a parsed map iterates in hash order).
    at = [frame.index(key.encode()) for key in (EQ, IDX, OPT, "NSE_FO|1")]
    assert at == sorted(at)
    eq = feeds[EQ]
    assert eq["requestMode"] == "full_d5"
    assert len(eq["fullFeed"]["marketFF"]["marketLevel"]["bidAskQuote"]) == 5
    assert [b["interval"] for b in eq["fullFeed"]["marketFF"]["marketOHLC"]["ohlc"]] == [
        "1d",
        "I1",
    ]
    idx = feeds[IDX]
    assert idx["requestMode"] == "full_d5"
    assert set(idx["fullFeed"]) == {"indexFF"}
    assert set(idx["fullFeed"]["indexFF"]) == {"ltpc", "marketOHLC"}
    opt = feeds[OPT]
    assert opt["requestMode"] == "option_greeks"
    assert set(opt["firstLevelWithGreeks"]) >= {"ltpc", "firstDepth", "optionGreeks", "vtt"}
    d30 = feeds["NSE_FO|1"]
    assert d30["requestMode"] == "full_d30"
    assert len(d30["fullFeed"]["marketFF"]["marketLevel"]["bidAskQuote"]) == 30
    # ltpc: requestMode 0 is not on the wire; int64 fields are int64 (strings in the dict).
    ltpc = MessageToDict(pb.FeedResponse.FromString(live_frame([rich_tick(EQ)], "ltpc")))
    assert ltpc["type"] == "live_feed"
    assert "requestMode" not in ltpc["feeds"][EQ]
    assert ltpc["feeds"][EQ]["ltpc"]["ltt"] == "1732775008000"


def test_initial_kind_leaves_type_off_the_wire():
    frame = live_frame([rich_tick(EQ)], "ltpc", kind="initial")
    msg = pb.FeedResponse.FromString(frame)
    assert msg.type == pb.initial_feed
    assert not frame.startswith(b"\x08")  # field 1 never written
    assert "type" not in MessageToDict(msg)


def test_equity_full_feed_carries_empty_greeks_decoded_as_none():
    tick = without(rich_tick(EQ), delta=None, theta=None, gamma=None, vega=None, rho=None)
    frame = live_frame([tick], "full")
    ff = pb.FeedResponse.FromString(frame).feeds[EQ].fullFeed.marketFF
    assert ff.HasField("optionGreeks") and ff.optionGreeks.ByteSize() == 0
    (out,) = decode_one(frame).ticks
    assert (out.delta, out.theta, out.gamma, out.vega, out.rho) == (None,) * 5
    assert out.bids == tick.bids


def test_thin_book_pads_with_zero_levels_that_decode_away():
    tick = without(
        rich_tick(EQ),
        bids=(DepthLevel(100000, 10),),
        asks=(),
        bid=100000,
        bid_qty=10,
        ask=None,
        ask_qty=None,
    )
    frame = live_frame([tick], "full")
    quotes = pb.FeedResponse.FromString(frame).feeds[EQ].fullFeed.marketFF.marketLevel
    assert len(quotes.bidAskQuote) == 5
    (out,) = decode_one(frame).ticks
    assert out.bids == (DepthLevel(100000, 10),)
    assert out.asks == ()
    assert (out.bid, out.bid_qty, out.ask, out.ask_qty) == (100000, 10, None, None)


def test_many_instruments_in_one_frame_share_recv_ns():
    ticks = [rich_tick(f"NSE_FO|{40000 + i}", base=i) for i in range(50)]
    calls = []

    def clock() -> int:
        calls.append(1)
        return 99

    (batch,) = UpstoxDecoder(recv_clock=clock).feed(live_frame(ticks, "ltpc"))
    # One tick per instrument; map order is not meaningful (upb iterates in hash order).
    assert sorted(batch.ticks, key=lambda t: t.symbol) == [
        expected(t, "ltpc", recv_ns=99) for t in ticks
    ]
    assert {t.recv_ns for t in batch.ticks} == {99}
    assert len(calls) == 1


def test_scales_default_by_segment_and_override():
    assert [default_scale(k) for k in (EQ, CUR, "BCD_FO|1", "MCX_FO|1", IDX)] == [2, 4, 4, 2, 2]
    cur = rich_tick(CUR, scale=4)
    (out,) = decode_one(live_frame([cur], "full")).ticks
    assert out == expected(cur, "full", recv_ns=7)
    assert out.scale == 4
    # A caller-given scale wins: same rupees, more digits.
    eq = rich_tick(EQ)
    (wide,) = decode_one(live_frame([eq], "ltpc"), scales={EQ: 4}).ticks
    assert (wide.scale, wide.ltp, wide.price()) == (4, eq.ltp * 100, eq.price())


def test_iep_wrapper_presence_survives_the_wire():
    """LTPC.iep is a DoubleValue: present-with-0.0 differs from absent on the wire."""
    tick = rich_tick(EQ)
    absent = feed_message(tick, "ltpc")
    present = feed_message(tick, "ltpc")
    present.ltpc.iep.value = 0.0
    present.ltpc.iep.SetInParent()
    frames = [
        encode_feed_messages(feeds=[(EQ, feed)], kind="live", current_ts=TS)
        for feed in (absent, present)
    ]
    assert frames[1] != frames[0] and b"\x2a\x00" in frames[1]  # field 5, empty wrapper
    parsed = [pb.FeedResponse.FromString(f).feeds[EQ].ltpc for f in frames]
    assert [p.HasField("iep") for p in parsed] == [False, True]
    assert MessageToDict(parsed[1])["iep"] == 0.0
    # The Tick has no iep field yet: both decode to the same tick.
    assert decode_one(frames[0]).ticks == decode_one(frames[1]).ticks


def test_market_info_with_status_maps_round_trips():
    frame = encode_market_info(
        current_ts=TS,
        segment_status={"NSE_EQ": "PRE_OPEN_END", "MCX_FO": "CLOSING_END"},
        pre_open={"NSE_EQ": StatusInfo("PRE_OPEN_END", TS - 5)},
        cas={"NSE_EQ": ("CAS_START", TS - 7)},
    )
    decoder = UpstoxDecoder()
    assert decoder.feed(frame) == [
        MarketInfo(
            TS,
            {"NSE_EQ": "PRE_OPEN_END", "MCX_FO": "CLOSING_END"},
            {"NSE_EQ": StatusInfo("PRE_OPEN_END", TS - 5)},
            {"NSE_EQ": StatusInfo("CAS_START", TS - 7)},
        )
    ]
    # A later market_info merges into the decoder's view.
    decoder.feed(encode_market_info(current_ts=TS + 1, segment_status={"NSE_EQ": "NORMAL_OPEN"}))
    assert decoder.segment_status == {"NSE_EQ": "NORMAL_OPEN", "MCX_FO": "CLOSING_END"}
    assert decoder.current_ts == TS + 1


def test_unknown_market_status_number_is_kept_not_fatal():
    msg = pb.FeedResponse(type=pb.market_info, currentTs=TS)
    msg.marketInfo.segmentStatus["NSE_EQ"] = 9  # proto3 enums are open
    (info,) = UpstoxDecoder().feed(msg.SerializeToString())
    assert info.segment_status == {"NSE_EQ": "UNKNOWN_9"}


def test_encoder_rejects_bad_input():
    with pytest.raises(ValueError, match="no subscribed mode"):
        encode_feed(ticks=[rich_tick(EQ)], modes={}, kind="live", current_ts=TS)
    with pytest.raises(ValueError, match="unknown mode"):
        encode_feed(ticks=[rich_tick(EQ)], modes={EQ: "full_d5"}, kind="live", current_ts=TS)
    with pytest.raises(ValueError, match="unknown kind"):
        live_frame([rich_tick(EQ)], "ltpc", kind="market_info")
    with pytest.raises(ValueError, match="unknown market status"):
        encode_market_info(current_ts=TS, segment_status={"NSE_EQ": "OPEN"})


def test_counters():
    decoder = UpstoxDecoder()
    decoder.feed(live_frame([rich_tick(EQ), rich_tick(OPT)], "full"))
    decoder.feed(b"")  # an empty FeedResponse is valid protobuf: no events
    assert decoder.counters() == {"frames": 2, "ticks": 2, "errors": {}}


# --------------------------------------------------------------------------- properties

prices = st.integers(min_value=1, max_value=10**9)
qtys = st.integers(min_value=1, max_value=10**9)
levels = st.builds(DepthLevel, prices, qtys, st.none())  # Upstox carries no order counts
greek = st.floats(allow_nan=False, allow_infinity=False, width=64, min_value=-1e6, max_value=1e6)
symbols = st.sampled_from([EQ, OPT, CUR, "BSE_EQ|INE002A01018", "MCX_FO|1", "BCD_FO|7"])


@st.composite
def ticks(draw) -> Tick:
    symbol = draw(symbols)
    bids = tuple(draw(st.lists(levels, min_size=1, max_size=30)))
    asks = tuple(draw(st.lists(levels, min_size=1, max_size=30)))
    ltt = draw(st.integers(min_value=1, max_value=2**62))
    return Tick(
        ProviderName.UPSTOX,
        symbol,
        draw(prices),
        default_scale(symbol),
        0,
        ltt=ltt,
        exchange_ts=ltt,
        ltq=draw(qtys),
        prev_close=draw(prices),
        open=draw(prices),
        high=draw(prices),
        low=draw(prices),
        atp=draw(prices),
        volume=draw(st.integers(min_value=0, max_value=2**62)),
        oi=draw(st.integers(min_value=0, max_value=2**50)),
        total_buy_qty=draw(st.integers(min_value=0, max_value=2**50)),
        total_sell_qty=draw(st.integers(min_value=0, max_value=2**50)),
        iv=draw(greek),
        delta=draw(greek),
        theta=draw(greek),
        gamma=draw(greek),
        vega=draw(greek),
        rho=draw(greek),
        bids=bids,
        asks=asks,
        bid=bids[0].price,
        bid_qty=bids[0].qty,
        ask=asks[0].price,
        ask_qty=asks[0].qty,
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tick=ticks(), mode=st.sampled_from(["ltpc", "full", "option_greeks", "full_d30"]))
def test_round_trip_property(tick, mode):
    if mode == "full":
        tick = without(tick, bids=tick.bids[:5], asks=tick.asks[:5])
    if all(getattr(tick, g) == 0 for g in ("delta", "theta", "gamma", "vega", "rho")):
        tick = without(tick, delta=0.5)  # all-zero greeks read as "none" (equities)
    (out,) = decode_one(live_frame([tick], mode)).ticks
    assert out == expected(tick, mode, recv_ns=7)


@given(
    value=st.floats(min_value=-1e12, max_value=1e12, allow_nan=False),
    symbol=symbols,
)
def test_prices_convert_exactly_as_float_to_scaled(value, symbol):
    """The decoder inlines float_to_scaled for speed; it must stay the same function."""
    msg = pb.FeedResponse(type=pb.live_feed)
    msg.feeds[symbol].ltpc.ltp = value
    msg.feeds[symbol].ltpc.cp = value
    (tick,) = decode_one(msg.SerializeToString()).ticks
    assert tick.ltp == float_to_scaled(value, default_scale(symbol))
    assert tick.prev_close == (float_to_scaled(value, tick.scale) if value else None)
