"""Client -> server frames: golden bytes from FYERS.md §7/§15 and their server-side decoding."""

from __future__ import annotations

import base64
import json

import pytest

from feeds.providers.errors import AuthError, CapExceeded, FrameError
from feeds.providers.fyers.codec import (
    chunk_topics,
    encode_ack,
    encode_auth,
    encode_mode,
    encode_pause,
    encode_ping,
    encode_resume,
    encode_subscribe,
    encode_unsubscribe,
    hsm_key_from_token,
)
from feeds.providers.fyers.server_codec import (
    Ack,
    Auth,
    Mode,
    Pause,
    Ping,
    Resume,
    Subscribe,
    Unsubscribe,
    channels_of,
    decode_client_frame,
)


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", "").replace("\n", ""))


AUTH_ABC123 = h(
    """00 25 01 04  01 00 06 61 62 63 31 32 33  02 00 01 50  03 00 01 01
    04 00 0f 50 79 74 68 6f 6e 53 44 4b 2d 33 2e 32 2e 30"""
)
MODE_FULL = h("00 00 0c 02  01 00 08 00 00 00 00 00 00 08 00  02 00 01 46")
MODE_LITE = h("00 00 0c 02  01 00 08 00 00 00 00 00 00 08 00  02 00 01 4c")
SUBSCRIBE = h(
    "00 a3 04 02  01 00 13  00 01  10 73 66 7c 6e 73 65 5f 63 6d 7c 39 39 39 30 30 31  02 00 01 0b"
)
PAUSE_11 = h("00 00 07 01  01 00 08 00 00 00 00 00 00 08 00")
RESUME_11 = h("00 00 08 01  01 00 08 00 00 00 00 00 00 08 00")
ACK_7 = h("00 09 03 01  01 00 04 00 00 00 07")
PING = h("00 01 0b")


# --- golden -----------------------------------------------------------------------------------


def test_auth_golden() -> None:
    assert len(AUTH_ABC123) == 39
    assert encode_auth("abc123") == AUTH_ABC123
    # §15.2: the bytes the simulator received in the end-to-end run
    assert AUTH_ABC123.hex() == (
        "00250104010006616263313233020001500300010104000f507974686f6e53444b2d332e322e30"
    )


def test_mode_golden() -> None:
    assert encode_mode(lite=False) == MODE_FULL
    assert encode_mode(lite=True) == MODE_LITE
    assert MODE_FULL.hex() == "00000c02010008000000000000080002000146"  # §15.2


def test_subscribe_golden_with_the_sdk_length_quirk() -> None:
    # §15.3: 163 = 18 + 19 (topic block) + 111 (access token string) + 15 (source)
    frame = encode_subscribe(["sf|nse_cm|999001"], channel=11, token_len=111)
    assert frame == SUBSCRIBE
    assert len(frame) == 30
    assert frame[:2] == (163).to_bytes(2, "big")
    assert frame.hex() == "00a3040201001300011073667c6e73655f636d7c3939393030310200010b"


def test_unsubscribe_is_subscribe_with_type_5() -> None:
    assert encode_unsubscribe(["sf|nse_cm|999001"], token_len=111) == (
        SUBSCRIBE[:2] + b"\x05" + SUBSCRIBE[3:]
    )


def test_length_prefix_follows_token_and_source() -> None:
    frame = encode_subscribe(["a", "bc"], token_len=10, source="X")
    block = 2 + 2 + 3
    assert int.from_bytes(frame[:2], "big") == 18 + block + 10 + 1


def test_pause_resume_ack_ping_golden() -> None:
    assert encode_pause(11) == PAUSE_11
    assert encode_resume(11) == RESUME_11
    assert encode_ack(7) == ACK_7
    assert encode_ping() == PING == b"\x00\x01\x0b"


def test_topic_cap_and_chunks() -> None:
    topics = [f"sf|nse_cm|{i}" for i in range(3001)]
    with pytest.raises(CapExceeded) as info:
        encode_subscribe(topics, token_len=0)
    assert (info.value.what, info.value.limit, info.value.requested) == (
        "topics per frame",
        1500,
        3001,
    )
    chunks = chunk_topics(topics)
    assert [len(c) for c in chunks] == [1500, 1500, 1]
    assert [t for c in chunks for t in c] == topics
    for chunk in chunks:
        assert decode_client_frame(encode_subscribe(chunk, token_len=5)).topics == tuple(chunk)


def test_encoder_argument_errors() -> None:
    with pytest.raises(ValueError):
        encode_subscribe([], token_len=1)
    with pytest.raises(ValueError):
        encode_subscribe(["x" * 256], token_len=1)
    with pytest.raises(ValueError):
        encode_mode(lite=True, channel=64)
    with pytest.raises(ValueError):
        encode_pause(0)
    with pytest.raises(ValueError):
        chunk_topics(["a"], size=0)


# --- server-side decoding and round trips ------------------------------------------------------


def test_decode_golden_client_frames() -> None:
    assert decode_client_frame(AUTH_ABC123) == Auth("abc123", "PythonSDK-3.2.0")
    assert decode_client_frame(MODE_FULL) == Mode(1 << 11, lite=False)
    assert decode_client_frame(MODE_LITE) == Mode(1 << 11, lite=True)
    assert decode_client_frame(SUBSCRIBE) == Subscribe(("sf|nse_cm|999001",), 11)
    assert decode_client_frame(PAUSE_11) == Pause(1 << 11)
    assert decode_client_frame(RESUME_11) == Resume(1 << 11)
    assert decode_client_frame(ACK_7) == Ack(7)
    assert decode_client_frame(PING) == Ping()
    assert channels_of(decode_client_frame(PAUSE_11).mask) == [11]  # type: ignore[union-attr]


@pytest.mark.parametrize("channel", [1, 11, 30, 63])
def test_round_trip_every_client_frame(channel: int) -> None:
    topics = ["sf|nse_cm|3045", "if|nse_cm|Nifty 50", "dp|mcx_fo|565899"]
    assert decode_client_frame(encode_auth("k" * 300, source="me")) == Auth("k" * 300, "me")
    assert decode_client_frame(encode_mode(lite=True, channel=channel)) == Mode(1 << channel, True)
    assert decode_client_frame(
        encode_subscribe(topics, channel=channel, token_len=900)
    ) == Subscribe(tuple(topics), channel)
    assert decode_client_frame(
        encode_unsubscribe(topics, channel=channel, token_len=0)
    ) == Unsubscribe(tuple(topics), channel)
    assert decode_client_frame(encode_pause(channel)) == Pause(1 << channel)
    assert decode_client_frame(encode_resume(channel)) == Resume(1 << channel)
    assert decode_client_frame(encode_ack(0xFFFFFFFF)) == Ack(0xFFFFFFFF)
    assert decode_client_frame(bytearray(encode_ping())) == Ping()


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"", "truncated"),
        (b"\x00\x01", "truncated"),
        (b"\x00\x01\x0b\x00", "bad_length"),  # ping with a tail
        (b"\x00\x00\x63\x00", "bad_type"),
        (b"\x00\x00\x06\x00", "bad_type"),  # data frames only go server -> client
        (b"\x00\x00\x01", "truncated"),
        (b"\x00\x00\x01\xff\x01", "bad_count"),
        (b"\x00\x00\x01\x01\x01\x00\x05ab", "truncated"),
        (b"\x00\x00\x01\x00", "missing_field"),
        (ACK_7 + b"\x00", "bad_length"),
        (MODE_FULL[:-1] + b"\x41", "bad_value"),
        (h("00000c01 020001 46"), "missing_field"),
        (h("00000c02 010007 00000000000008 020001 46"), "bad_length"),
        (h("0000 04 02 010003 0001 00 02000101"), "bad_topic"),
        (h("0000 04 02 010004 ffff 0161 02000101"), "bad_count"),
        (h("0000 04 02 010004 0002 0161 02000101"), "truncated"),
        (h("0000 04 02 010005 0001 0161 00 02000101"), "bad_length"),
        (h("0000 04 02 010004 0001 01ff 02000101"), "bad_utf8"),
        (h("0000 04 01 010004 0001 0161"), "missing_field"),
        (h("0000 01 01 010001 ff"), "bad_utf8"),
        (h("0000 03 02 010004 00000001 010004 00000002"), "bad_field"),
    ],
)
def test_server_decoder_rejects_garbage(frame: bytes, reason: str) -> None:
    with pytest.raises(FrameError) as info:
        decode_client_frame(frame)
    assert info.value.reason == reason


def test_every_truncation_of_every_client_frame_is_a_frame_error() -> None:
    frames = [AUTH_ABC123, MODE_FULL, SUBSCRIBE, PAUSE_11, RESUME_11, ACK_7, PING]
    for frame in frames:
        for cut in range(len(frame)):
            with pytest.raises(FrameError):
                decode_client_frame(frame[:cut])


# --- the access token ---------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(payload: object, raw: bytes | None = None) -> str:
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64url(raw if raw is not None else json.dumps(payload).encode())
    return f"{header}.{body}.signature"


NOW = 1_800_000_000


def test_hsm_key_from_bare_and_prefixed_tokens() -> None:
    token = jwt({"hsm_key": "abc123", "exp": NOW + 60, "sub": "x"})
    assert hsm_key_from_token(token, now=NOW) == "abc123"
    assert hsm_key_from_token("XY12345ABC-100:" + token, now=NOW) == "abc123"
    assert hsm_key_from_token(token, now=NOW + 60) == "abc123"  # expires after this second


def test_hsm_key_padding_variants() -> None:
    for key in ("a", "ab", "abc", "abcd"):  # every payload length modulo 4
        assert hsm_key_from_token(jwt({"hsm_key": key, "exp": NOW + 1}), now=NOW) == key


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (jwt({"hsm_key": "k", "exp": NOW - 1}), "expired"),
        (jwt({"exp": NOW + 60}), "valid token"),
        (jwt({"hsm_key": "k"}), "valid token"),
        (jwt({"hsm_key": 5, "exp": NOW + 60}), "valid token"),
        (jwt({"hsm_key": "k", "exp": "later"}), "valid token"),
        (jwt(None, raw=b"not json"), "valid token"),
        (jwt(None, raw=b"\xff\xfe"), "valid token"),
        (jwt(["hsm_key"]), "valid token"),
        ("no-dots-here", "valid token"),
        ("a.b", "valid token"),
        ("APP:a.%%%.c", "valid token"),
        ("", "valid token"),
    ],
)
def test_hsm_key_refusals(token: str, message: str) -> None:
    with pytest.raises(AuthError, match=message):
        hsm_key_from_token(token, now=NOW)
