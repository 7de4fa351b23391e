"""The worked examples of UPSTOX.md §10.3 and the captured request of §5, byte for byte."""

from __future__ import annotations

import json
import uuid

import pytest
from google.protobuf.internal import api_implementation
from google.protobuf.json_format import MessageToDict

from feeds.providers.ticks import ProviderName
from feeds.providers.upstox.codec import FeedBatch, MarketInfo, UpstoxDecoder, encode_request
from feeds.providers.upstox.proto import MarketDataFeedV3_pb2 as pb
from feeds.providers.upstox.server_codec import (
    WORKED_EXAMPLE_KEY,
    WORKED_EXAMPLE_TS,
    Request,
    decode_request,
    worked_example_feed,
    worked_example_market_info,
)

# §10.3, verbatim.
LIVE_45 = bytes.fromhex(
    "080112220a134e53455f45517c494e45303030544553543031120b0a090933333333334a93401895b3c18bb732"
)
MARKET_INFO_35 = bytes.fromhex(
    "08021895b3c18bb73222180a0a0a064e53455f464f10000a0a0a064e53455f45511002"
)
# §10.3 describes these two without printing them: the same message with ltt/ltq/cp set
# (63 bytes), and with type initial_feed (enum 0, so the leading "08 01" disappears).
LIVE_63 = bytes.fromhex(
    "080112340a134e53455f45517c494e45303030544553543031121d0a1b0933333333334a9340"
    "1080aec18bb732180a210000000000c092401895b3c18bb732"
)
INITIAL_43 = LIVE_45[2:]

# §5, captured from the SDK by the simulator.
CAPTURED_SUB = (
    b'{"guid": "9be4815c-de9f-4efa-8da9-e742d1985a97", "method": "sub", '
    b'"data": {"instrumentKeys": ["NSE_EQ|INE000TEST01"], "mode": "ltpc"}}'
)


def test_runtime_is_upb():
    assert api_implementation.Type() == "upb"


def test_generated_module_matches_the_sdk_schema():
    assert pb.DESCRIPTOR.name == "MarketDataFeedV3.proto"
    assert pb.DESCRIPTOR.package == "com.upstox.marketdatafeederv3udapi.rpc.proto"
    ltpc = pb.LTPC.DESCRIPTOR.fields_by_name
    assert ltpc["iep"].message_type.full_name == "google.protobuf.DoubleValue"
    assert ltpc["iep"].number == 5
    mff = pb.MarketFullFeed.DESCRIPTOR.fields_by_number
    assert [mff[n].name for n in range(11, 17)] == [
        "iep",
        "rp",
        "ieq",
        "iiqTotal",
        "iiqM",
        "casEligible",
    ]
    info = pb.MarketInfo.DESCRIPTOR.fields_by_name
    assert info["casMarketStatus"].message_type.fields_by_name["value"].message_type.name == (
        "StatusInfo"
    )
    assert info["preOpenSessionStatus"].number == 3
    assert pb.RequestMode.Name(3) == "full_d30"


def test_golden_bytes_are_what_the_protobuf_module_builds():
    # Independent of our encoder: the messages §10.3 describes, built field by field.
    ltp_only = pb.Feed(ltpc=pb.LTPC(ltp=1234.55))
    traded = pb.Feed(ltpc=pb.LTPC(ltp=1234.55, ltt=1732775008000, ltq=10, cp=1200.0))
    for kind, feed, wire in (
        (pb.live_feed, ltp_only, LIVE_45),
        (pb.live_feed, traded, LIVE_63),
        (pb.initial_feed, ltp_only, INITIAL_43),
    ):
        msg = pb.FeedResponse(type=kind, currentTs=WORKED_EXAMPLE_TS)
        msg.feeds[WORKED_EXAMPLE_KEY].CopyFrom(feed)
        assert msg.SerializeToString() == wire
    assert len(LIVE_45) == 45 and len(LIVE_63) == 63 and len(MARKET_INFO_35) == 35


def test_golden_bytes_give_the_sdk_dicts_of_the_spec():
    """Our schema yields exactly what the SDK emitted for these frames (§10.3)."""
    as_dict = [MessageToDict(pb.FeedResponse.FromString(b)) for b in (LIVE_45, LIVE_63)]
    assert as_dict[0] == {
        "type": "live_feed",
        "feeds": {"NSE_EQ|INE000TEST01": {"ltpc": {"ltp": 1234.55}}},
        "currentTs": "1732775008661",
    }
    assert as_dict[1]["feeds"]["NSE_EQ|INE000TEST01"]["ltpc"] == {
        "ltp": 1234.55,
        "ltt": "1732775008000",
        "ltq": "10",
        "cp": 1200.0,
    }
    assert "type" not in MessageToDict(pb.FeedResponse.FromString(INITIAL_43))
    assert MessageToDict(pb.FeedResponse.FromString(MARKET_INFO_35)) == {
        "type": "market_info",
        "currentTs": "1732775008661",
        "marketInfo": {"segmentStatus": {"NSE_EQ": "NORMAL_OPEN", "NSE_FO": "PRE_OPEN_START"}},
    }


def test_decode_live_45():
    (batch,) = UpstoxDecoder(recv_clock=lambda: 42).feed(LIVE_45)
    assert isinstance(batch, FeedBatch)
    assert (batch.kind, batch.current_ts) == ("live", 1732775008661)
    (tick,) = batch.ticks
    assert tick.provider is ProviderName.UPSTOX
    assert tick.symbol == "NSE_EQ|INE000TEST01"
    assert (tick.ltp, tick.scale, str(tick.price())) == (123455, 2, "1234.55")
    assert tick.recv_ns == 42
    assert tick.snapshot is False
    # Absent on the wire (proto3 zero) -> None.
    assert (tick.ltt, tick.exchange_ts, tick.ltq, tick.prev_close) == (None, None, None, None)


def test_decode_live_63():
    (batch,) = UpstoxDecoder().feed(LIVE_63)
    (tick,) = batch.ticks
    assert (tick.ltp, tick.ltt, tick.exchange_ts, tick.ltq, tick.prev_close) == (
        123455,
        1732775008000,
        1732775008000,
        10,
        120000,
    )
    assert batch.current_ts == 1732775008661


def test_decode_initial_feed_without_type():
    (batch,) = UpstoxDecoder().feed(INITIAL_43)
    assert batch.kind == "initial"
    assert batch.current_ts == 1732775008661
    assert [t.snapshot for t in batch.ticks] == [True]
    assert batch.ticks[0].ltp == 123455


def test_decode_market_info_35():
    decoder = UpstoxDecoder()
    (info,) = decoder.feed(MARKET_INFO_35)
    assert info == MarketInfo(
        1732775008661, {"NSE_EQ": "NORMAL_OPEN", "NSE_FO": "PRE_OPEN_START"}, {}, {}
    )
    assert decoder.segment_status == {"NSE_EQ": "NORMAL_OPEN", "NSE_FO": "PRE_OPEN_START"}
    assert decoder.current_ts == 1732775008661


@pytest.mark.parametrize(
    ("kwargs", "wire"),
    [
        ({}, LIVE_45),
        ({"with_trade": True}, LIVE_63),
        ({"kind": "initial"}, INITIAL_43),
    ],
)
def test_server_encoder_reproduces_feed_bytes(kwargs, wire):
    assert worked_example_feed(**kwargs) == wire


def test_server_encoder_reproduces_market_info_bytes():
    assert worked_example_market_info() == MARKET_INFO_35


def test_encode_request_reproduces_captured_bytes():
    out = encode_request(
        "sub", ["NSE_EQ|INE000TEST01"], "ltpc", guid="9be4815c-de9f-4efa-8da9-e742d1985a97"
    )
    assert out == CAPTURED_SUB


def test_decode_request_reads_captured_bytes():
    assert decode_request(CAPTURED_SUB) == Request(
        "9be4815c-de9f-4efa-8da9-e742d1985a97", "sub", "ltpc", ("NSE_EQ|INE000TEST01",)
    )


def test_encode_request_default_guid_is_a_fresh_uuid4():
    first = json.loads(encode_request("unsub", ["NSE_EQ|X"]))
    second = json.loads(encode_request("unsub", ["NSE_EQ|X"]))
    assert uuid.UUID(first["guid"]).version == 4
    assert first["guid"] != second["guid"]
    assert first == {
        "guid": first["guid"],
        "method": "unsub",
        "data": {"instrumentKeys": ["NSE_EQ|X"]},
    }
