"""Hostile input: only FrameError escapes, and a bad frame leaves the decoder as it was."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feeds.providers.errors import FrameError
from feeds.providers.upstox import codec
from feeds.providers.upstox.codec import FeedBatch, UpstoxDecoder
from feeds.providers.upstox.proto import MarketDataFeedV3_pb2 as pb
from feeds.providers.upstox.server_codec import encode_feed_messages

from .samples import EQ, TS, corpus, live_frame, market_info_frame, rich_tick

CORPUS = corpus()
GOOD = live_frame([rich_tick(EQ)], "full")


def state(decoder: UpstoxDecoder) -> tuple:
    return (decoder.frames, decoder.ticks, dict(decoder.segment_status), decoder.current_ts)


def primed() -> UpstoxDecoder:
    decoder = UpstoxDecoder(recv_clock=lambda: 1)
    decoder.feed(market_info_frame())
    decoder.feed(GOOD)
    return decoder


def feed_checked(decoder: UpstoxDecoder, frame) -> None:
    """Feed one frame: it either decodes, or raises FrameError and changes nothing but the
    error counter."""
    before = state(decoder)
    errors = sum(decoder.errors.values())
    try:
        events = decoder.feed(frame)
    except FrameError as exc:
        assert exc.reason and isinstance(exc.reason, str)
        assert state(decoder) == before
        assert sum(decoder.errors.values()) == errors + 1
        assert decoder.errors[exc.reason] >= 1
    else:
        assert isinstance(events, list)
        assert decoder.frames == before[0] + 1


def still_works(decoder: UpstoxDecoder) -> None:
    (batch,) = decoder.feed(GOOD)
    assert isinstance(batch, FeedBatch) and batch.ticks[0].symbol == EQ


def expect_reason(frame, reason: str) -> None:
    decoder = primed()
    before = state(decoder)
    with pytest.raises(FrameError) as info:
        decoder.feed(frame)
    assert info.value.reason == reason
    assert state(decoder) == before
    assert decoder.errors == {reason: 1}
    still_works(decoder)


def test_text_frame():
    expect_reason(GOOD.decode("latin-1"), "text_frame")
    expect_reason("", "text_frame")


def test_not_bytes():
    expect_reason(12345, "not_bytes")  # type: ignore[arg-type]


def test_bytes_like_frames_decode():
    same = UpstoxDecoder(recv_clock=lambda: 1).feed(GOOD)
    assert UpstoxDecoder(recv_clock=lambda: 1).feed(bytearray(GOOD)) == same
    assert UpstoxDecoder(recv_clock=lambda: 1).feed(memoryview(GOOD)) == same


def test_bad_protobuf_is_wrapped():
    expect_reason(b"\xff\xff\xff", "bad_protobuf")
    expect_reason(GOOD[:-3], "bad_protobuf")
    # A map key that is not UTF-8 (proto3 strings must be).
    expect_reason(b"\x12\x06\x0a\x02\xff\xfe\x12\x00", "bad_protobuf")


def test_unknown_type():
    msg = pb.FeedResponse(type=7, currentTs=TS)
    expect_reason(msg.SerializeToString(), "unknown_type")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_prices(value):
    msg = pb.FeedResponse(type=pb.live_feed)
    msg.feeds[EQ].ltpc.ltp = value
    expect_reason(msg.SerializeToString(), "bad_number")


def test_feed_without_member():
    msg = pb.FeedResponse(type=pb.live_feed)
    msg.feeds[EQ].requestMode = pb.full_d5
    expect_reason(msg.SerializeToString(), "empty_feed")
    msg = pb.FeedResponse(type=pb.live_feed)
    msg.feeds[EQ].fullFeed.SetInParent()
    expect_reason(msg.SerializeToString(), "empty_feed")
    msg = pb.FeedResponse(type=pb.live_feed)
    msg.feeds[EQ].fullFeed.marketFF.atp = 1.0
    expect_reason(msg.SerializeToString(), "empty_feed")


def test_giant_repeated_fields():
    msg = pb.FeedResponse(type=pb.live_feed)
    ff = msg.feeds[EQ].fullFeed.marketFF
    ff.ltpc.ltp = 1.0
    for _ in range(codec.MAX_DEPTH_LEVELS + 1):
        ff.marketLevel.bidAskQuote.add(bidQ=1, bidP=1.0)
    expect_reason(msg.SerializeToString(), "too_many_levels")

    msg = pb.FeedResponse(type=pb.live_feed)
    ff = msg.feeds[EQ].fullFeed.indexFF
    ff.ltpc.ltp = 1.0
    for _ in range(10_000):
        ff.marketOHLC.ohlc.add(interval="I1", open=1.0)
    expect_reason(msg.SerializeToString(), "too_many_ohlc")

    feeds = [(f"NSE_EQ|{i}", pb.Feed(ltpc=pb.LTPC(ltp=1.0))) for i in range(codec.MAX_FEEDS + 1)]
    expect_reason(encode_feed_messages(feeds=feeds, kind="live", current_ts=TS), "too_many_feeds")

    msg = pb.FeedResponse(type=pb.market_info)
    for i in range(codec.MAX_STATUS_ENTRIES + 1):
        msg.marketInfo.segmentStatus[f"S{i}"] = 2
    expect_reason(msg.SerializeToString(), "too_many_segments")

    # Past the byte cap nothing is even parsed; a field 15 varint repeated is valid protobuf.
    expect_reason(b"\x78\x01" * (codec.MAX_FRAME_BYTES // 2 + 1), "too_large")


def test_deep_nesting_is_a_frame_error():
    # Unknown field 15 as nested groups (start 0x7b, end 0x7c), deeper than upb's limit.
    expect_reason(b"\x7b" * 500 + b"\x7c" * 500, "bad_protobuf")
    # Shallow unknown fields are skipped, as the schema-drift note of §6.1 expects.
    assert UpstoxDecoder().feed(b"\x7b" * 5 + b"\x7c" * 5) == []


def test_valid_frame_after_garbage_still_decodes():
    decoder = primed()
    for junk in (b"\x00", b"\x0a\xff", "text", GOOD[:10], b"\x08\x05"):
        with pytest.raises(FrameError):
            decoder.feed(junk)
    still_works(decoder)
    assert decoder.frames == 3
    assert sum(decoder.errors.values()) == 5


PROPS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPS
@given(st.binary(max_size=400))
def test_arbitrary_bytes(data):
    decoder = primed()
    feed_checked(decoder, data)
    still_works(decoder)


@PROPS
@given(st.sampled_from(CORPUS), st.data())
def test_truncations(frame, data):
    cut = data.draw(st.integers(min_value=0, max_value=len(frame)))
    decoder = primed()
    feed_checked(decoder, frame[:cut])
    still_works(decoder)


@PROPS
@given(st.sampled_from(CORPUS), st.data())
def test_bit_flips(frame, data):
    flips = data.draw(st.lists(st.integers(0, len(frame) * 8 - 1), min_size=1, max_size=8))
    mutated = bytearray(frame)
    for bit in flips:
        mutated[bit // 8] ^= 1 << (bit % 8)
    decoder = primed()
    feed_checked(decoder, bytes(mutated))
    still_works(decoder)


@PROPS
@given(st.lists(st.sampled_from(CORPUS), min_size=1, max_size=4), st.binary(max_size=40))
def test_spliced_frames(frames, junk):
    decoder = primed()
    feed_checked(decoder, b"".join(frames) + junk)
    feed_checked(decoder, junk + b"".join(frames))
    still_works(decoder)


@PROPS
@given(st.text(max_size=200))
def test_text_frames(text):
    expect_reason(text, "text_frame")
