"""Client requests (§5) both ways, and the per-mode subscription limits (§7.1)."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from feeds.providers.errors import CapExceeded, FrameError
from feeds.providers.upstox.codec import DEFAULT_MODE_LIMITS, check_mode_limits, encode_request
from feeds.providers.upstox.server_codec import Request, decode_request

KEYS = ["NSE_INDEX|Nifty Bank", "NSE_EQ|INE062A01020"]


@pytest.mark.parametrize(
    ("method", "mode", "data"),
    [
        ("sub", "full", {"instrumentKeys": KEYS, "mode": "full"}),
        ("sub", None, {"instrumentKeys": KEYS}),
        ("change_mode", "full_d30", {"instrumentKeys": KEYS, "mode": "full_d30"}),
        ("change_mode", "option_greeks", {"instrumentKeys": KEYS, "mode": "option_greeks"}),
        ("unsub", None, {"instrumentKeys": KEYS}),
    ],
)
def test_encode_request_shape(method, mode, data):
    raw = encode_request(method, KEYS, mode, guid="g-1")
    # Key order matters for byte equality with the SDK: guid, method, data{instrumentKeys, mode}.
    assert raw == json.dumps({"guid": "g-1", "method": method, "data": data}).encode()
    assert list(json.loads(raw)) == ["guid", "method", "data"]
    assert list(json.loads(raw)["data"]) == list(data)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("sub", KEYS, "full_d5"), "unknown mode"),
        (("sub", KEYS, "FULL"), "unknown mode"),
        (("subscribe", KEYS, "full"), "unknown method"),
        (("change_mode", KEYS, None), "needs a mode"),
        (("unsub", KEYS, "ltpc"), "takes no mode"),
        (("sub", [], "ltpc"), "non-empty"),
        (("sub", ["NSE_EQ|X", ""], "ltpc"), "non-empty"),
        (("sub", "NSE_EQ|X", "ltpc"), "not one string"),
    ],
)
def test_encode_request_validates(args, message):
    with pytest.raises(ValueError, match=message):
        encode_request(*args)


@pytest.mark.parametrize("mode", ["ltpc", "option_greeks", "full", "full_d30"])
@pytest.mark.parametrize("method", ["sub", "change_mode"])
def test_request_round_trip(method, mode):
    raw = encode_request(method, KEYS, mode, guid="abc")
    assert decode_request(raw) == Request("abc", method, mode, tuple(KEYS))


def test_decode_request_defaults_and_unsub():
    assert decode_request(encode_request("sub", KEYS, guid="g")).mode == "ltpc"
    assert decode_request(encode_request("unsub", KEYS, guid="g")) == Request(
        "g", "unsub", None, tuple(KEYS)
    )
    # The server ignores a stray mode on unsub rather than failing the whole request.
    stray = b'{"guid": "g", "method": "unsub", "data": {"instrumentKeys": ["A|1"], "mode": "x"}}'
    assert decode_request(stray).mode is None
    # A bytearray or memoryview (what some socket libraries hand over) is fine.
    assert decode_request(bytearray(encode_request("sub", KEYS, guid="g"))).guid == "g"


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ('{"guid": "g", "method": "sub", "data": {"instrumentKeys": ["A|1"]}}', "text_frame"),
        (b"", "bad_json"),
        (b"{not json", "bad_json"),
        (b"\xff\xfe\x00garbage", "bad_json"),
        (b"[" * 100_000, "bad_json"),
        (b"[]", "bad_request"),
        (b'"sub"', "bad_request"),
        (b'{"method": "sub", "data": {"instrumentKeys": ["A|1"]}}', "missing_field"),
        (b'{"guid": "g", "data": {"instrumentKeys": ["A|1"]}}', "missing_field"),
        (b'{"guid": "g", "method": "sub"}', "missing_field"),
        (b'{"guid": "g", "method": "sub", "data": {}}', "missing_field"),
        (b'{"guid": "g", "method": "sub", "data": {"instrumentKeys": []}}', "missing_field"),
        (
            b'{"guid": "g", "method": "change_mode", "data": {"instrumentKeys": ["A|1"]}}',
            "missing_field",
        ),
        (
            b'{"guid": "g", "method": "subscribe", "data": {"instrumentKeys": ["A|1"]}}',
            "unknown_method",
        ),
        (
            b'{"guid": "g", "method": ["sub"], "data": {"instrumentKeys": ["A|1"]}}',
            "unknown_method",
        ),
        (
            b'{"guid": "g", "method": "sub", "data": {"instrumentKeys": ["A|1"], "mode": "d5"}}',
            "unknown_mode",
        ),
        (
            b'{"guid": "g", "method": "sub", "data": {"instrumentKeys": ["A|1"], "mode": 1}}',
            "unknown_mode",
        ),
        (b'{"guid": "g", "method": "sub", "data": {"instrumentKeys": "A|1"}}', "bad_request"),
        (b'{"guid": "g", "method": "sub", "data": {"instrumentKeys": [1]}}', "bad_request"),
        (b'{"guid": 1, "method": "sub", "data": {"instrumentKeys": ["A|1"]}}', "bad_request"),
        (b'{"guid": "g", "method": "sub", "data": []}', "bad_request"),
    ],
)
def test_decode_request_errors(frame, reason):
    with pytest.raises(FrameError) as info:
        decode_request(frame)
    assert info.value.reason == reason


@given(st.binary(max_size=300))
def test_decode_request_arbitrary_bytes_only_frame_error(data):
    with contextlib.suppress(FrameError):
        decode_request(data)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)


@given(
    guid=json_values,
    method=st.sampled_from(["sub", "change_mode", "unsub", "x"]) | json_values,
    data=st.fixed_dictionaries(
        {},
        optional={
            "instrumentKeys": st.lists(st.text(max_size=20), max_size=3) | json_values,
            "mode": st.sampled_from(["ltpc", "full", "full_d30", "option_greeks"]) | json_values,
        },
    )
    | json_values,
)
def test_decode_request_structured_junk_only_frame_error(guid, method, data):
    raw = json.dumps({"guid": guid, "method": method, "data": data}).encode()
    try:
        request = decode_request(raw)
    except FrameError:
        return
    assert request.method in ("sub", "change_mode", "unsub")
    assert all(isinstance(k, str) for k in request.instrument_keys)
    assert (request.mode is None) == (request.method == "unsub")


# --------------------------------------------------------------------------- §7.1 limits


@pytest.mark.parametrize(
    "counts",
    [
        {},
        {"ltpc": 5000},
        {"option_greeks": 3000},
        {"full": 2000},
        {"full_d30": 50},
        {"ltpc": 5000, "full": 0, "full_d30": 0},  # a zero count is not a mode "used"
        {"ltpc": 2000, "option_greeks": 2000, "full": 1500, "full_d30": 50},
        {"ltpc": 1, "full_d30": 50},
    ],
)
def test_mode_limits_within(counts):
    check_mode_limits(counts)
    check_mode_limits(counts, DEFAULT_MODE_LIMITS)


@pytest.mark.parametrize(
    ("counts", "mode_in_message", "limit", "requested"),
    [
        ({"ltpc": 5001}, "ltpc", 5000, 5001),
        ({"option_greeks": 3001}, "option_greeks", 3000, 3001),
        ({"full": 2001}, "full", 2000, 2001),
        ({"full_d30": 51}, "full_d30", 50, 51),
        ({"ltpc": 2001, "full": 1}, "ltpc", 2000, 2001),
        ({"ltpc": 1, "option_greeks": 2001}, "option_greeks", 2000, 2001),
        ({"ltpc": 1, "full": 1501}, "full", 1500, 1501),
        ({"ltpc": 1, "full_d30": 51}, "full_d30", 50, 51),
    ],
)
def test_mode_limits_exceeded(counts, mode_in_message, limit, requested):
    with pytest.raises(CapExceeded) as info:
        check_mode_limits(counts)
    assert (info.value.limit, info.value.requested) == (limit, requested)
    assert mode_in_message in info.value.what
    assert ("individual" if len(counts) == 1 else "combined") in info.value.what


def test_mode_limits_custom_table_and_bad_input():
    limits = {"ltpc": {"individual": 3, "combined": 1}, "full": {"individual": 2, "combined": 1}}
    check_mode_limits({"ltpc": 3}, limits)
    with pytest.raises(CapExceeded):
        check_mode_limits({"ltpc": 2, "full": 1}, limits)
    with pytest.raises(ValueError, match="unknown mode"):
        check_mode_limits({"full_d5": 1})
    with pytest.raises(ValueError, match="negative"):
        check_mode_limits({"ltpc": -1})
