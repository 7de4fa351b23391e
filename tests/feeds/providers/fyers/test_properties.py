"""Property-based tests: malformed input only ever raises FrameError and never changes state."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from feeds.providers.errors import FrameError
from feeds.providers.fyers.codec import (
    NO_VALUE,
    DataFrame,
    FyersDecoder,
    encode_ack,
    encode_auth,
    encode_mode,
    encode_pause,
    encode_resume,
    encode_subscribe,
    encode_unsubscribe,
)
from feeds.providers.fyers.server_codec import (
    Auth,
    Subscribe,
    Unsubscribe,
    decode_client_frame,
    encode_auth_reply,
    encode_data_frame,
    encode_reply,
    encode_server_message,
    lite_packet,
    snapshot_packet,
    update_packet,
)
from tests.feeds.providers.fyers.frames import (
    EXPECTED,
    NIFTY_IF,
    SF,
    TIDS,
    ready_decoder,
    valid_frames,
)

PROPS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

SERVER_FRAMES = [
    *valid_frames(),
    encode_auth_reply(True, ack_count=3),
    encode_reply(4, True),
    encode_reply(12, False),
    encode_server_message(51001, "Symbol limit exceeded", 4),
    b"\x00\x01\x0b",
]
CLIENT_FRAMES = [
    encode_auth("abc123"),
    encode_mode(lite=False),
    encode_subscribe(["sf|nse_cm|999001", "if|nse_cm|Nifty 50"], token_len=111),
    encode_unsubscribe(["dp|nse_cm|3045"], token_len=0),
    encode_pause(11),
    encode_resume(3),
    encode_ack(7),
    b"\x00\x01\x0b",
]


def feed_checked(dec: FyersDecoder, frame: bytes) -> list | None:
    """Feed one frame: only FrameError may escape, and then the state must be unchanged."""
    before = dec.state_snapshot()
    try:
        return dec.feed(frame)
    except FrameError as exc:
        assert isinstance(exc.reason, str) and exc.reason
        assert dec.state_snapshot() == before
        return None


def decode_checked(frame: bytes) -> object | None:
    try:
        return decode_client_frame(frame)
    except FrameError:
        return None


# --- client decoder -----------------------------------------------------------------------------

_headers = st.sampled_from([b"", b"\x00\x00\x06", b"\x00\x00\x06\x00\x00\x00\x01\x00\x01"])
_packet_starts = st.sampled_from([b"S", b"U", b"L", b"S\x00\x01\x10sf|nse_cm|999001"])


@PROPS
@given(st.binary(max_size=400))
def test_arbitrary_bytes(data: bytes) -> None:
    feed_checked(ready_decoder(), data)


@PROPS
@given(_headers, st.lists(st.tuples(_packet_starts, st.binary(max_size=40)), max_size=6))
def test_arbitrary_data_frames(header: bytes, parts: list[tuple[bytes, bytes]]) -> None:
    frame = header + b"".join(a + b for a, b in parts)
    feed_checked(ready_decoder(), frame)


@pytest.mark.parametrize("index", range(len(SERVER_FRAMES)))
def test_every_truncation_is_a_frame_error(index: int) -> None:
    frame = SERVER_FRAMES[index]
    dec = ready_decoder()
    for cut in range(len(frame)):
        before = dec.state_snapshot()
        with pytest.raises(FrameError):
            dec.feed(frame[:cut])
        assert dec.state_snapshot() == before
    assert dec.feed(frame) is not None  # the whole frame is fine


@PROPS
@given(st.sampled_from(SERVER_FRAMES), st.data())
def test_bit_flips(frame: bytes, data: st.DataObject) -> None:
    flips = data.draw(st.lists(st.integers(0, len(frame) * 8 - 1), min_size=1, max_size=4))
    mutated = bytearray(frame)
    for bit in flips:
        mutated[bit // 8] ^= 1 << (bit % 8)
    feed_checked(ready_decoder(), bytes(mutated))


@PROPS
@given(st.sampled_from(SERVER_FRAMES), st.binary(min_size=1, max_size=40))
def test_extended_frames(frame: bytes, tail: bytes) -> None:
    feed_checked(ready_decoder(), frame + tail)


@PROPS
@given(st.sampled_from(SERVER_FRAMES), st.integers(0, 0xFFFF))
def test_wrong_length_prefixes(frame: bytes, prefix: int) -> None:
    dec = ready_decoder()
    result = feed_checked(dec, prefix.to_bytes(2, "big") + frame[2:])
    if frame[2] != 51:  # only type 51 has a checked prefix; elsewhere it is ignored
        assert result == ready_decoder().feed(frame)


@PROPS
@given(st.sampled_from([f for f in SERVER_FRAMES if f[2] == 6]), st.integers(0, 0xFFFF))
def test_wrong_packet_counts(frame: bytes, count: int) -> None:
    mutated = frame[:7] + count.to_bytes(2, "big") + frame[9:]
    assume(mutated != frame)
    dec = ready_decoder()
    with pytest.raises(FrameError) as info:
        dec.feed(mutated)
    assert info.value.reason in {"bad_count", "truncated", "bad_length"}


def test_giant_count_fails_fast() -> None:
    frame = b"\x00\x12\x06\x00\x00\x00\x01\xff\xff" + bytes(11)  # 65535 packets, 20 bytes
    dec = ready_decoder()
    start = time.perf_counter()
    for _ in range(1000):
        with pytest.raises(FrameError, match="bad_count"):
            dec.feed(frame)
    assert time.perf_counter() - start < 0.5


@PROPS
@given(st.integers(0, 0xFFFF).filter(lambda t: t not in TIDS.values()), st.booleans())
def test_unknown_topic_ids(tid: int, lite: bool) -> None:
    packet = lite_packet(tid, 5) if lite else update_packet(tid, [5])
    dec = ready_decoder()
    frame = encode_data_frame(2, [lite_packet(TIDS[SF], 1), packet])
    before = dec.state_snapshot()
    with pytest.raises(FrameError, match="unknown_topic"):
        dec.feed(frame)
    assert dec.state_snapshot() == before


@PROPS
@given(st.binary(max_size=200), st.sampled_from(valid_frames()))
def test_a_valid_frame_after_garbage_decodes_correctly(garbage: bytes, frame: bytes) -> None:
    dec = ready_decoder()
    assume(feed_checked(dec, garbage) is None)  # garbage that happened to be valid is not
    assert dec.feed(frame) == ready_decoder().feed(frame)


# A reference model: the decoder agrees with a plain list of raw values per topic.

_int32 = st.integers(-(2**31) + 1, 2**31 - 1)
_maybe = st.one_of(st.none(), _int32)


@st.composite
def _ops(draw: st.DrawFn) -> list[tuple[str, str, list[int | None]]]:
    ops = []
    for _ in range(draw(st.integers(1, 12))):
        topic = draw(st.sampled_from([SF, NIFTY_IF]))
        size = 21 if topic == SF else 6
        kind = draw(st.sampled_from(["U", "L"]))
        if kind == "L":
            ops.append(("L", topic, [draw(_int32)]))
        else:
            ops.append(("U", topic, draw(st.lists(_maybe, max_size=size))))
    return ops


@PROPS
@given(_ops(), st.integers(1, 5))
def test_decoder_agrees_with_a_reference_model(ops: list, per_frame: int) -> None:
    dec = ready_decoder()
    model = {SF: list(dec_values(dec, SF)), NIFTY_IF: list(dec_values(dec, NIFTY_IF))}
    for i in range(0, len(ops), per_frame):
        chunk = ops[i : i + per_frame]
        packets = []
        for kind, topic, values in chunk:
            if kind == "L":
                packets.append(lite_packet(TIDS[topic], values[0]))
                model[topic][0] = values[0]
            else:
                packets.append(update_packet(TIDS[topic], values))
                for j, v in enumerate(values):
                    if v is not None:
                        model[topic][j] = v
        (event,) = dec.feed(encode_data_frame(i, packets))
        assert isinstance(event, DataFrame) and len(event.ticks) == len(chunk)
        for topic in model:
            assert dec_values(dec, topic) == model[topic]
        last = {topic: tick for (_, topic, _), tick in zip(chunk, event.ticks, strict=True)}
        if SF in last:
            tick = last[SF]
            assert (tick.ltp, tick.volume, tick.prev_close) == (
                model[SF][0],
                model[SF][1],
                model[SF][20],
            )
        if NIFTY_IF in last:
            assert (last[NIFTY_IF].ltp, last[NIFTY_IF].open) == (
                model[NIFTY_IF][0],
                model[NIFTY_IF][5],
            )


def dec_values(dec: FyersDecoder, topic: str) -> list[int | None]:
    for _tid, name, _sym, _kind, _m, _p, values in dec.state_snapshot()[0]:  # type: ignore[misc]
        if name == topic:
            return list(values)
    raise AssertionError(topic)


@PROPS
@given(st.lists(_maybe, min_size=21, max_size=21), st.integers(1, 50), st.integers(0, 8))
def test_snapshot_round_trip(values: list[int | None], multiplier: int, precision: int) -> None:
    dec = FyersDecoder(recv_clock=lambda: 0)
    dec.expect(EXPECTED)
    frame = encode_data_frame(
        1, [snapshot_packet(1, SF, values, multiplier=multiplier, precision=precision)]
    )
    (event,) = dec.feed(frame)
    assert dec_values(dec, SF) == values
    assert len(event.ticks) == (0 if values[0] is None else 1)  # type: ignore[union-attr]
    assert NO_VALUE not in [v for v in dec_values(dec, SF) if v is not None]


# --- server-side decoder ------------------------------------------------------------------------


@PROPS
@given(st.binary(max_size=300))
def test_client_frame_decoder_arbitrary_bytes(data: bytes) -> None:
    decode_checked(data)


@PROPS
@given(st.sampled_from([1, 3, 4, 5, 7, 8, 11, 12]), st.binary(max_size=120))
def test_client_frame_decoder_typed_garbage(ftype: int, body: bytes) -> None:
    decode_checked(b"\x00\x00" + bytes((ftype,)) + body)


@pytest.mark.parametrize("index", range(len(CLIENT_FRAMES)))
def test_client_frame_truncations(index: int) -> None:
    frame = CLIENT_FRAMES[index]
    for cut in range(len(frame)):
        with pytest.raises(FrameError):
            decode_client_frame(frame[:cut])
    decode_client_frame(frame)


@PROPS
@given(st.sampled_from(CLIENT_FRAMES), st.data())
def test_client_frame_bit_flips(frame: bytes, data: st.DataObject) -> None:
    bits = data.draw(st.lists(st.integers(0, len(frame) * 8 - 1), min_size=1, max_size=4))
    mutated = bytearray(frame)
    for bit in bits:
        mutated[bit // 8] ^= 1 << (bit % 8)
    decode_checked(bytes(mutated))


_topic = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=40
)


@PROPS
@given(
    st.lists(_topic, min_size=1, max_size=60),
    st.integers(1, 63),
    st.integers(0, 5000),
    st.booleans(),
)
def test_topic_requests_round_trip(
    topics: list[str], channel: int, token_len: int, unsubscribe: bool
) -> None:
    if unsubscribe:
        frame = encode_unsubscribe(topics, channel=channel, token_len=token_len)
        assert decode_client_frame(frame) == Unsubscribe(tuple(topics), channel)
    else:
        frame = encode_subscribe(topics, channel=channel, token_len=token_len)
        assert decode_client_frame(frame) == Subscribe(tuple(topics), channel)


@PROPS
@given(st.text(min_size=1, max_size=500), st.text(max_size=40))
def test_auth_round_trip(key: str, source: str) -> None:
    try:
        frame = encode_auth(key, source=source)
    except UnicodeEncodeError:
        assume(False)
        return
    assert decode_client_frame(frame) == Auth(key, source)
