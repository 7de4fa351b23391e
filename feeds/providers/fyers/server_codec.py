"""FYERS "HSM" data socket, server side: the inverse of ``codec`` for the simulator.

Decodes what a client (ours or the official SDK) sends, taking every length from the frame
itself (the SDK's prefixes are unreliable, FYERS.md §6), and builds replies and data frames.
Topic ids are written big-endian everywhere (§6 only asks for consistency).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from struct import Struct
from typing import Final

from feeds.providers.errors import FrameError
from feeds.providers.fyers.codec import (
    DP_FIELDS,
    IF_FIELDS,
    MODE_FULL,
    MODE_LITE,
    NO_VALUE,
    PKT_LITE,
    PKT_SNAPSHOT,
    PKT_UPDATE,
    STATUS_FAIL,
    STATUS_OK,
    T_ACK,
    T_AUTH,
    T_DATA,
    T_MESSAGE,
    T_MODE,
    T_PAUSE,
    T_PING,
    T_RESUME,
    T_SUBSCRIBE,
    T_UNSUBSCRIBE,
    fixed,
    parse_fields,
    text,
)
from feeds.providers.ticks import Tick, rescale

_U16: Final = Struct(">H")
_U32: Final = Struct(">I")
_I32: Final = Struct(">i")
_U64: Final = Struct(">Q")
_DATA_HDR: Final = Struct(">HBIH")
_INTS: Final = tuple(Struct(f">{k}i") for k in range(DP_FIELDS + 1))
_INT32_MIN: Final = -0x80000000
_INT32_MAX: Final = 0x7FFFFFFF


# --- client requests ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Auth:
    hsm_key: str
    source: str


@dataclass(frozen=True, slots=True)
class Mode:
    channels_mask: int
    lite: bool


@dataclass(frozen=True, slots=True)
class Subscribe:
    topics: tuple[str, ...]
    channel: int


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    topics: tuple[str, ...]
    channel: int


@dataclass(frozen=True, slots=True)
class Pause:
    mask: int


@dataclass(frozen=True, slots=True)
class Resume:
    mask: int


@dataclass(frozen=True, slots=True)
class Ack:
    message_number: int


@dataclass(frozen=True, slots=True)
class Ping:
    pass


ClientRequest = Auth | Mode | Subscribe | Unsubscribe | Pause | Resume | Ack | Ping


def channels_of(mask: int) -> list[int]:
    """Channel numbers whose bits are set in a mask."""
    return [c for c in range(64) if mask >> c & 1]


def _topic_block(block: bytes) -> tuple[str, ...]:
    n = len(block)
    if n < 2:
        raise FrameError("truncated", "topic block")
    count = _U16.unpack_from(block)[0]
    if count > n - 2:  # every topic takes at least its length byte
        raise FrameError("bad_count", f"{count} topics in {n} bytes")
    topics = []
    p = 2
    for _ in range(count):
        if p >= n:
            raise FrameError("truncated", "topic length")
        tlen = block[p]
        p += 1
        if tlen == 0:
            raise FrameError("bad_topic", "empty topic")
        if p + tlen > n:
            raise FrameError("truncated", "topic name")
        topics.append(text(block[p : p + tlen], "topic"))
        p += tlen
    if p != n:
        raise FrameError("bad_length", f"{n - p} bytes after {count} topics")
    return tuple(topics)


def decode_client_frame(frame: bytes) -> ClientRequest:
    """One client -> server message as a typed request; FrameError for anything malformed."""
    frame = bytes(frame)
    n = len(frame)
    if n < 3:
        raise FrameError("truncated", f"{n} bytes")
    ftype = frame[2]
    if ftype == T_PING:
        if n != 3:
            raise FrameError("bad_length", f"ping of {n} bytes")
        return Ping()
    if ftype not in _CLIENT_TYPES:
        raise FrameError("bad_type", f"type {ftype}")
    f = parse_fields(frame)
    if ftype == T_AUTH:
        key = f.get(1)
        if key is None:
            raise FrameError("missing_field", "hsm_key")
        return Auth(text(key, "hsm_key"), text(f.get(4, b""), "source"))
    if ftype == T_MODE:
        mask = _U64.unpack(fixed(f, 1, 8))[0]
        flag = fixed(f, 2, 1)[0]
        if flag not in (MODE_LITE, MODE_FULL):
            raise FrameError("bad_value", f"mode {flag:#04x}")
        return Mode(mask, flag == MODE_LITE)
    if ftype in (T_SUBSCRIBE, T_UNSUBSCRIBE):
        block = f.get(1)
        if block is None:
            raise FrameError("missing_field", "topic block")
        topics = _topic_block(block)
        channel = fixed(f, 2, 1)[0]
        cls = Subscribe if ftype == T_SUBSCRIBE else Unsubscribe
        return cls(topics, channel)
    if ftype in (T_PAUSE, T_RESUME):
        mask = _U64.unpack(fixed(f, 1, 8))[0]
        return Pause(mask) if ftype == T_PAUSE else Resume(mask)
    return Ack(_U32.unpack(fixed(f, 1, 4))[0])  # T_ACK


_CLIENT_TYPES: Final = frozenset(
    {T_AUTH, T_ACK, T_SUBSCRIBE, T_UNSUBSCRIBE, T_PAUSE, T_RESUME, T_MODE}
)

# --- server -> client frames ----------------------------------------------------------------


def _field(fid: int, value: bytes) -> bytes:
    return bytes((fid,)) + _U16.pack(len(value)) + value


def _frame(ftype: int, *fields_: bytes) -> bytes:
    body = bytes((ftype, len(fields_))) + b"".join(fields_)
    return _U16.pack(len(body)) + body


def _status(ok: bool) -> bytes:
    return bytes((STATUS_OK if ok else STATUS_FAIL,))


def encode_auth_reply(ok: bool, *, ack_count: int = 0) -> bytes:
    """Type 1: status and, always, the 4-byte ack count (§8.1)."""
    return _frame(T_AUTH, _field(1, _status(ok)), _field(2, _U32.pack(ack_count)))


_REPLY_TYPES: Final = frozenset({T_MODE, T_SUBSCRIBE, T_UNSUBSCRIBE, T_PAUSE, T_RESUME})


def encode_reply(request_type: int, ok: bool) -> bytes:
    """Types 12 / 4 / 5 / 7 / 8: one status field, ``K`` or ``N`` (§8.2-§8.4)."""
    if request_type not in _REPLY_TYPES:
        raise ValueError(f"no plain reply for request type {request_type}")
    return _frame(request_type, _field(1, _status(ok)))


def encode_server_message(code: int, message: str, ref_type: int) -> bytes:
    """Type 51 with a correct length prefix (the SDK checks it, §8.5)."""
    return _frame(
        T_MESSAGE,
        _field(1, _I32.pack(code)),
        _field(2, message.encode()),
        _field(3, bytes((ref_type,))),
    )


def encode_data_frame(message_number: int, packets: Sequence[bytes]) -> bytes:
    """Type 6: message number, packet count, packets back to back (§8.6)."""
    body = b"".join(packets)
    total = 9 + len(body)
    if len(packets) > 0xFFFF or total - 2 > 0xFFFF:
        raise ValueError("data frame too large: split the packets over several frames")
    return _DATA_HDR.pack(total - 2, T_DATA, message_number, len(packets)) + body


def _ints(values: Sequence[int | None]) -> bytes:
    if len(values) > DP_FIELDS:
        raise ValueError(f"{len(values)} fields; at most {DP_FIELDS}")
    return _INTS[len(values)].pack(*(NO_VALUE if v is None else v for v in values))


def _short(value: str, what: str) -> bytes:
    raw = value.encode()
    if len(raw) > 0xFF:
        raise ValueError(f"{what} longer than 255 bytes")
    return bytes((len(raw),)) + raw


def snapshot_packet(
    topic_id: int,
    topic: str,
    values: Sequence[int | None],
    *,
    multiplier: int = 1,
    precision: int = 2,
    exchange: str = "NSE",
    token: str = "",
    symbol: str = "",
) -> bytes:
    """An ``S`` packet: defines ``topic_id`` for ``topic`` and carries all its fields."""
    if not 1 <= multiplier <= 0xFFFF:
        raise ValueError("multiplier must be 1..65535 (0 crashes the SDK)")
    return (
        bytes((PKT_SNAPSHOT,))
        + _U16.pack(topic_id)
        + _short(topic, "topic")
        + bytes((len(values),))
        + _ints(values)
        + b"\x00\x00"
        + _U16.pack(multiplier)
        + bytes((precision,))
        + _short(exchange, "exchange")
        + _short(token, "token")
        + _short(symbol, "symbol")
    )


def update_packet(topic_id: int, values: Sequence[int | None]) -> bytes:
    """A ``U`` packet; None (or 0x80000000) means "unchanged"."""
    return bytes((PKT_UPDATE,)) + _U16.pack(topic_id) + bytes((len(values),)) + _ints(values)


def lite_packet(topic_id: int, ltp: int) -> bytes:
    """An ``L`` packet: a new LTP for an sf or if topic."""
    return bytes((PKT_LITE,)) + _U16.pack(topic_id) + _I32.pack(ltp)


def _raw(value: int | None, scale: int, precision: int) -> int | None:
    if value is None:
        return None
    raw = rescale(value, scale, precision)
    if not _INT32_MIN < raw <= _INT32_MAX:  # INT32_MIN itself is the no-value marker
        raise ValueError(f"{raw} does not fit a FYERS int32 field")
    return raw


def _plain(value: int | None) -> int | None:
    if value is not None and not _INT32_MIN < value <= _INT32_MAX:
        raise ValueError(f"{value} does not fit a FYERS int32 field")
    return value


def _secs(ms: int | None) -> int | None:
    return None if ms is None else _plain(ms // 1000)


def values_from_tick(tick: Tick, kind: str, *, precision: int | None = None) -> list[int | None]:
    """The raw int32 fields (21 sf / 6 if / 30 dp) a server sends for ``tick``.

    Prices are written at ``precision`` (default: the tick's scale) with multiplier 1;
    ValueError if that loses digits or a value does not fit int32. None = no value.
    """
    p = tick.scale if precision is None else precision
    s = tick.scale
    if kind == "sf":
        out = [
            _raw(tick.ltp, s, p),
            _plain(tick.volume),
            _secs(tick.ltt),
            _secs(tick.exchange_ts),
            _plain(tick.bid_qty),
            _plain(tick.ask_qty),
            _raw(tick.bid, s, p),
            _raw(tick.ask, s, p),
            _plain(tick.ltq),
            _plain(tick.total_buy_qty),
            _plain(tick.total_sell_qty),
            _raw(tick.atp, s, p),
            _plain(tick.oi),
            _raw(tick.low, s, p),
            _raw(tick.high, s, p),
            None,  # Yhigh: not in a Tick
            None,  # Ylow
            _raw(tick.lower_circuit, s, p),
            _raw(tick.upper_circuit, s, p),
            _raw(tick.open, s, p),
            _raw(tick.prev_close, s, p),
        ]
        return out
    if kind == "if":
        return [
            _raw(tick.ltp, s, p),
            _raw(tick.prev_close, s, p),
            _secs(tick.exchange_ts),
            _raw(tick.high, s, p),
            _raw(tick.low, s, p),
            _raw(tick.open, s, p),
        ][:IF_FIELDS]
    if kind == "dp":
        bids = list(tick.bids or ())[:5]
        asks = list(tick.asks or ())[:5]
        out = [None] * DP_FIELDS
        for i, lv in enumerate(bids):
            out[i] = _raw(lv.price, s, p)
            out[10 + i] = _plain(lv.qty)
            out[20 + i] = _plain(lv.orders)
        for i, lv in enumerate(asks):
            out[5 + i] = _raw(lv.price, s, p)
            out[15 + i] = _plain(lv.qty)
            out[25 + i] = _plain(lv.orders)
        return out
    raise ValueError(f"unknown kind {kind!r}")
