"""FYERS "HSM" data socket, client side: frame builders and a stateful frame decoder.

Sans-I/O: bytes in, typed events out (and the reverse for requests). The byte format is
FYERS.md §6-§9; every builder here reproduces what fyers-apiv3 3.2.0 sends, byte for byte,
including its odd length prefixes.

The decoder is on the hot path. It parses whole blocks with precompiled ``struct.Struct``
objects, keeps one small slotted object per topic, and builds ``Tick`` positionally. A bad
frame raises ``FrameError`` and leaves the decoder exactly as it was: every change a frame
makes is logged and undone if any later packet of that frame fails.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from struct import Struct
from typing import Final

from feeds.providers.errors import AuthError, CapExceeded, FrameError
from feeds.providers.fyers.symbols import topic_kind
from feeds.providers.ticks import MAX_SCALE, DepthLevel, ProviderName, Tick, exact_scaled

# --- wire constants (FYERS.md §6-§8) -------------------------------------------------------

SOURCE: Final = "PythonSDK-3.2.0"
DEFAULT_CHANNEL: Final = 11
MAX_TOPICS_PER_FRAME: Final = 1500

T_AUTH: Final = 1
T_ACK: Final = 3
T_SUBSCRIBE: Final = 4
T_UNSUBSCRIBE: Final = 5
T_DATA: Final = 6
T_PAUSE: Final = 7
T_RESUME: Final = 8
T_PING: Final = 11
T_MODE: Final = 12
T_MESSAGE: Final = 51

STATUS_OK: Final = 0x4B  # "K"
STATUS_FAIL: Final = 0x4E  # "N" (anything but K is failure)
MODE_LITE: Final = 0x4C  # "L"
MODE_FULL: Final = 0x46  # "F"
PKT_SNAPSHOT: Final = 0x53  # "S"
PKT_UPDATE: Final = 0x55  # "U"
PKT_LITE: Final = 0x4C  # "L"

NO_VALUE: Final = -0x80000000  # 0x80000000 read as signed int32: "no value" / "unchanged"

# Field counts of the SDK's name tables (§9.1); more than these is a malformed packet.
SF_FIELDS: Final = 21
IF_FIELDS: Final = 6
DP_FIELDS: Final = 30

KIND_SF: Final = 0
KIND_IF: Final = 1
KIND_DP: Final = 2
_KIND_CODE: Final = {"sf": KIND_SF, "if": KIND_IF, "dp": KIND_DP}
_KIND_FIELDS: Final = (SF_FIELDS, IF_FIELDS, DP_FIELDS)

# Which positions hold prices (scaled by precision and multiplier), per kind.
_SF_PRICES: Final = (0, 6, 7, 11, 13, 14, 17, 18, 19, 20)
_IF_PRICES: Final = (0, 1, 3, 4, 5)
_DP_PRICES: Final = tuple(range(10))

_U16: Final = Struct(">H")
_U32: Final = Struct(">I")
_I32: Final = Struct(">i")
_U64: Final = Struct(">Q")
_HB: Final = Struct(">HB")  # topic id + field count / name length
_HI: Final = Struct(">Hi")  # topic id + lite ltp
_DATA_HDR: Final = Struct(">IH")  # message number + packet count, at offset 3
_SNAP_TAIL: Final = Struct(">xxHB")  # unused, multiplier, precision
_INTS: Final = tuple(Struct(f">{k}i") for k in range(DP_FIELDS + 1))
_INTS_FROM: Final = tuple(s.unpack_from for s in _INTS)

_FYERS: Final = ProviderName.FYERS


# --- events -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuthReply:
    ok: bool
    ack_every: int  # send an ack after every N-th data frame; 0 = no acks


@dataclass(frozen=True, slots=True)
class ModeReply:
    ok: bool


@dataclass(frozen=True, slots=True)
class SubscribeReply:
    ok: bool


@dataclass(frozen=True, slots=True)
class UnsubscribeReply:
    ok: bool


@dataclass(frozen=True, slots=True)
class PauseReply:
    ok: bool


@dataclass(frozen=True, slots=True)
class ResumeReply:
    ok: bool


@dataclass(frozen=True, slots=True)
class ServerMessage:
    code: int  # e.g. 51001 "symbol limit exceeded"
    message: str
    ref_type: int  # type of the request it refers to (1, 4, 5, 7, 8), 0 if absent


@dataclass(frozen=True, slots=True)
class DataFrame:
    message_number: int
    ticks: list[Tick]


Event = (
    AuthReply
    | ModeReply
    | SubscribeReply
    | UnsubscribeReply
    | PauseReply
    | ResumeReply
    | ServerMessage
    | DataFrame
)

_REPLY_EVENTS: Final[Mapping[int, type]] = {
    T_MODE: ModeReply,
    T_SUBSCRIBE: SubscribeReply,
    T_UNSUBSCRIBE: UnsubscribeReply,
    T_PAUSE: PauseReply,
    T_RESUME: ResumeReply,
}


# --- client -> server frames ----------------------------------------------------------------


def _field(fid: int, value: bytes) -> bytes:
    if len(value) > 0xFFFF:
        raise ValueError(f"field {fid} too long ({len(value)} bytes)")
    return bytes((fid,)) + _U16.pack(len(value)) + value


def channel_mask(channel: int) -> bytes:
    """The 8-byte channel bitmask: bit n set for channel n."""
    if not 1 <= channel <= 63:
        raise ValueError(f"channel {channel} out of range 1..63")
    return _U64.pack(1 << channel)


def encode_auth(hsm_key: str, *, source: str = SOURCE) -> bytes:
    """Type 1, with the true length prefix (§7.1)."""
    body = (
        bytes((T_AUTH, 4))
        + _field(1, hsm_key.encode())
        + _field(2, b"P")  # constant "mode" byte of this SDK
        + _field(3, b"\x01")
        + _field(4, source.encode())
    )
    return _U16.pack(len(body)) + body


def encode_mode(*, lite: bool, channel: int = DEFAULT_CHANNEL) -> bytes:
    """Type 12; the SDK writes a zero length prefix (§7.2)."""
    flag = MODE_LITE if lite else MODE_FULL
    return (
        b"\x00\x00"
        + bytes((T_MODE, 2))
        + _field(1, channel_mask(channel))
        + _field(2, bytes((flag,)))
    )


def chunk_topics(topics: Sequence[str], size: int = MAX_TOPICS_PER_FRAME) -> list[list[str]]:
    """Split a topic list into subscribe-sized chunks, as the SDK does."""
    if size < 1:
        raise ValueError("size must be positive")
    return [list(topics[i : i + size]) for i in range(0, len(topics), size)]


def _topic_request(
    rtype: int, topics: Iterable[str], channel: int, token_len: int, source: str
) -> bytes:
    names = [t.encode("ascii") if isinstance(t, str) else bytes(t) for t in topics]
    if not names:
        raise ValueError("no topics")
    if len(names) > MAX_TOPICS_PER_FRAME:
        raise CapExceeded("topics per frame", MAX_TOPICS_PER_FRAME, len(names))
    if not 1 <= channel <= 63:
        raise ValueError(f"channel {channel} out of range 1..63")
    parts = [_U16.pack(len(names))]
    for name in names:
        if not 0 < len(name) <= 0xFF:
            raise ValueError(f"topic {name!r} must be 1..255 bytes")
        parts.append(bytes((len(name),)))
        parts.append(name)
    block = b"".join(parts)
    # The SDK's prefix counts the access token and source string, not the frame (§6).
    prefix = 18 + len(block) + token_len + len(source)
    if prefix > 0xFFFF:
        raise ValueError(f"length prefix {prefix} does not fit 16 bits")
    return _U16.pack(prefix) + bytes((rtype, 2)) + _field(1, block) + _field(2, bytes((channel,)))


def encode_subscribe(
    topics: Iterable[str],
    *,
    channel: int = DEFAULT_CHANNEL,
    token_len: int,
    source: str = SOURCE,
) -> bytes:
    """Type 4. ``token_len`` is the length of the access-token string as given to the SDK
    (``"APPID:JWT"``), which the SDK folds into the length prefix."""
    return _topic_request(T_SUBSCRIBE, topics, channel, token_len, source)


def encode_unsubscribe(
    topics: Iterable[str],
    *,
    channel: int = DEFAULT_CHANNEL,
    token_len: int,
    source: str = SOURCE,
) -> bytes:
    """Type 5, byte-identical to subscribe apart from the type."""
    return _topic_request(T_UNSUBSCRIBE, topics, channel, token_len, source)


def encode_pause(channel: int) -> bytes:
    """Type 7, zero length prefix (§7.4)."""
    return b"\x00\x00" + bytes((T_PAUSE, 1)) + _field(1, channel_mask(channel))


def encode_resume(channel: int) -> bytes:
    """Type 8, zero length prefix (§7.4)."""
    return b"\x00\x00" + bytes((T_RESUME, 1)) + _field(1, channel_mask(channel))


def encode_ack(message_number: int) -> bytes:
    """Type 3, true length prefix (§7.5)."""
    return b"\x00\x09" + bytes((T_ACK, 1)) + _field(1, _U32.pack(message_number))


_PING: Final = b"\x00\x01\x0b"


def encode_ping() -> bytes:
    """Type 11: exactly ``00 01 0b`` (§7.6)."""
    return _PING


def hsm_key_from_token(access_token: str, *, now: float | None = None) -> str:
    """The ``hsm_key`` claim of a FYERS access token (``"APPID:JWT"`` or a bare JWT).

    Like the SDK: no signature check; refuses a payload that is not base64url JSON, lacks
    ``hsm_key`` or ``exp``, or whose ``exp`` is in the past.
    """
    jwt = access_token.split(":", 1)[1] if ":" in access_token else access_token
    parts = jwt.split(".")
    if len(parts) != 3:
        raise AuthError("Please provide valid token")
    payload_b64 = parts[1]
    try:
        raw = base64.urlsafe_b64decode(payload_b64 + "=" * (-len(payload_b64) % 4))
        claims = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise AuthError("Please provide valid token") from exc
    if not isinstance(claims, dict):
        raise AuthError("Please provide valid token")
    hsm_key = claims.get("hsm_key")
    exp = claims.get("exp")
    if not isinstance(hsm_key, str) or not hsm_key:
        raise AuthError("Please provide valid token")
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        raise AuthError("Please provide valid token")
    if exp - int(time.time() if now is None else now) < 0:
        raise AuthError("Token is expired")
    return hsm_key


# --- shared parsing helpers (also used by server_codec) ------------------------------------


def parse_fields(frame: bytes, *, swapped_len_ok: bool = False) -> dict[int, bytes]:
    """The ``id / length / value`` fields of a non-data frame, from byte 3 (field count) on.

    Lengths come from the frame, never from the 2-byte prefix. The frame must end exactly
    after the last field. ``swapped_len_ok`` accepts a little-endian field length when the
    big-endian reading does not fit (the SDK reads some reply lengths in host order).
    """
    n = len(frame)
    if n < 4:
        raise FrameError("truncated", f"{n} bytes")
    count = frame[3]
    if count * 3 > n - 4:
        raise FrameError("bad_count", f"{count} fields in {n} bytes")
    out: dict[int, bytes] = {}
    p = 4
    for _ in range(count):
        if p + 3 > n:
            raise FrameError("truncated", f"field header at {p}")
        fid = frame[p]
        flen = (frame[p + 1] << 8) | frame[p + 2]
        p += 3
        if p + flen > n and swapped_len_ok:
            flen = frame[p - 1] << 8 | frame[p - 2]
        if p + flen > n:
            raise FrameError("truncated", f"field {fid} wants {flen} bytes at {p}")
        if fid in out:
            raise FrameError("bad_field", f"field {fid} repeated")
        out[fid] = frame[p : p + flen]
        p += flen
    if p != n:
        raise FrameError("bad_length", f"{n - p} trailing bytes")
    return out


def fixed(fields_: Mapping[int, bytes], fid: int, size: int) -> bytes:
    """A required field of an exact size."""
    value = fields_.get(fid)
    if value is None:
        raise FrameError("missing_field", f"field {fid}")
    if len(value) != size:
        raise FrameError("bad_length", f"field {fid} is {len(value)} bytes, not {size}")
    return value


def text(value: bytes, what: str) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FrameError("bad_utf8", what) from exc


# --- per-topic state ------------------------------------------------------------------------


Rec = tuple[int | None, ...]  # a topic's record: raw int32 per field position, None = never set


class _Expect:
    __slots__ = ("kind", "nfields", "symbol", "topic")

    def __init__(self, topic: str, symbol: str, kind: int) -> None:
        self.topic = topic
        self.symbol = symbol
        self.kind = kind
        self.nfields = _KIND_FIELDS[kind]


class _View:
    """One symbol's merged view: its quote topic (sf or if) and its depth topic."""

    __slots__ = ("depth", "main")

    def __init__(self) -> None:
        self.main: _Topic | None = None
        self.depth: _Topic | None = None


class _Topic:
    """One subscribed topic's record. ``values`` is a tuple, replaced on every change, so an
    undo log can restore it and the depth-level cache can key on its identity."""

    __slots__ = (
        "build",
        "kind",
        "lv",
        "lv_src",
        "multiplier",
        "plain",
        "precision",
        "symbol",
        "topic",
        "values",
        "view",
    )

    def __init__(
        self,
        topic: str,
        symbol: str,
        kind: int,
        multiplier: int,
        precision: int,
        values: Rec,
        view: _View,
    ) -> None:
        self.topic = topic
        self.symbol = symbol
        self.kind = kind
        self.multiplier = multiplier
        self.precision = precision
        self.values = values  # raw int32 per field position; None = never set
        self.view = view
        self.build = _BUILDERS[kind]
        self.plain = kind == KIND_SF and multiplier == 1  # eligible for the inline fast path
        self.lv_src: Rec | None = None
        self.lv: _Levels = (0, (), (), (None, None, None, None))


# --- Tick building --------------------------------------------------------------------------

# Ticks are made with ``Tick.bare`` plus attribute stores: about twice as fast as the full
# constructor, since fields a record does not carry keep their class defaults.
_bare = Tick.bare


def _scaled(
    values: Sequence[int | None], prices: tuple[int, ...], precision: int, multiplier: int
) -> tuple[Sequence[int | None], int]:
    """Prices at one shared scale (slow path, multiplier != 1)."""
    if multiplier == 1:
        return values, precision
    parts = {}
    scale = precision
    for i in prices:
        raw = values[i]
        if raw is not None:
            parts[i] = pv = exact_scaled(raw, precision, multiplier)
            scale = max(scale, pv[1])
    out = list(values)
    for i, (v, s) in parts.items():
        out[i] = v * 10 ** (scale - s)
    return out, scale


def _up(values: Sequence[int | None], prices: tuple[int, ...], by: int) -> list[int | None]:
    """Raise the scale of the price positions by ``by`` digits (exact)."""
    out = list(values)
    f = 10**by
    for i in prices:
        if out[i] is not None:
            out[i] *= f  # type: ignore[operator]
    return out


def _up_levels(levels: tuple[DepthLevel, ...], by: int) -> tuple[DepthLevel, ...]:
    f = 10**by
    return tuple(DepthLevel(lv.price * f, lv.qty, lv.orders) for lv in levels)


_Top = tuple[int | None, int | None, int | None, int | None]  # bid, ask, bid_qty, ask_qty
_Levels = tuple[int, tuple[DepthLevel, ...], tuple[DepthLevel, ...], _Top]


# DepthLevel is a NamedTuple: tuple.__new__ skips its generated __new__ (about 2x cheaper).
_new_level = tuple.__new__


def _side(
    prices: Sequence[int | None], qtys: Sequence[int | None], orders: Sequence[int | None]
) -> tuple[DepthLevel, ...]:
    """Levels best first; a level needs a price and a size (order counts are optional)."""
    out = []
    for level in zip(prices, qtys, orders, strict=True):
        if level[0] is not None and level[1] is not None:
            out.append(_new_level(DepthLevel, level))
    return tuple(out)


def _levels(st: _Topic) -> _Levels:
    """(scale, bids, asks, level-1 top of book) of a depth record, cached until it changes."""
    if st.lv_src is st.values:
        return st.lv
    prev = st.lv_src
    v = st.values
    if st.multiplier == 1:
        scale = st.precision
        if prev is not None:  # a side whose raw values did not change keeps its levels
            _, bids, asks, _ = st.lv
            if v[0:5] != prev[0:5] or v[10:15] != prev[10:15] or v[20:25] != prev[20:25]:
                bids = _side(v[0:5], v[10:15], v[20:25])
            if v[5:10] != prev[5:10] or v[15:20] != prev[15:20] or v[25:30] != prev[25:30]:
                asks = _side(v[5:10], v[15:20], v[25:30])
            st.lv_src = v
            st.lv = (scale, bids, asks, (v[0], v[5], v[10], v[15]))
            return st.lv
    else:
        v, scale = _scaled(v, _DP_PRICES, st.precision, st.multiplier)
    st.lv_src = st.values
    st.lv = (
        scale,
        _side(v[0:5], v[10:15], v[20:25]),
        _side(v[5:10], v[15:20], v[25:30]),
        (v[0], v[5], v[10], v[15]),
    )
    return st.lv


def _quote_tick(main: _Topic, recv_ns: int, snapshot: bool, from_depth: bool) -> Tick | None:
    """The merged Tick of a symbol whose quote record is ``main`` (sf), with its depth."""
    v = main.values
    if v[0] is None:
        return None  # no LTP yet: nothing a Tick can say
    if main.multiplier == 1:
        scale = main.precision
    else:
        v, scale = _scaled(v, _SF_PRICES, main.precision, main.multiplier)
    depth = main.view.depth
    if depth is None:
        bids = asks = None
        bid, ask, bid_qty, ask_qty = v[6], v[7], v[4], v[5]
    else:
        lscale, bids, asks, top = _levels(depth)
        if lscale > scale:  # rare: sf and dp records at different scales; align upwards
            v = _up(v, _SF_PRICES, lscale - scale)
            scale = lscale
        elif lscale < scale:
            by = scale - lscale
            bids = _up_levels(bids, by)
            asks = _up_levels(asks, by)
            f = 10**by
            top = (
                None if top[0] is None else top[0] * f,
                None if top[1] is None else top[1] * f,
                top[2],
                top[3],
            )
        if from_depth:  # the depth packet's level 1 is the freshest top of book
            bid, ask, bid_qty, ask_qty = top
        else:
            bid, ask, bid_qty, ask_qty = v[6], v[7], v[4], v[5]
    return _fill_sf(
        _bare(_FYERS, main.symbol, v[0], scale, recv_ns),  # type: ignore[arg-type]
        v,
        snapshot,
        bid,
        ask,
        bid_qty,
        ask_qty,
        bids,
        asks,
    )


def _fill_sf(
    t: Tick,
    v: Sequence[int | None],
    snapshot: bool,
    bid: int | None,
    ask: int | None,
    bid_qty: int | None,
    ask_qty: int | None,
    bids: tuple[DepthLevel, ...] | None,
    asks: tuple[DepthLevel, ...] | None,
) -> Tick:
    """The sf record's fields (§9.1) onto a bare Tick; same stores as the inline fast path."""
    t.snapshot = snapshot
    t_exch = v[3]
    t.exchange_ts = None if t_exch is None else t_exch * 1000
    t_ltt = v[2]
    t.ltt = None if t_ltt is None else t_ltt * 1000
    t.ltq = v[8]
    t.volume = v[1]
    t.bid = bid
    t.ask = ask
    t.bid_qty = bid_qty
    t.ask_qty = ask_qty
    t.open = v[19]
    t.high = v[14]
    t.low = v[13]
    t.prev_close = v[20]
    t.atp = v[11]
    t.oi = v[12]
    t.total_buy_qty = v[9]
    t.total_sell_qty = v[10]
    t.lower_circuit = v[17]
    t.upper_circuit = v[18]
    if bids is not None:
        t.bids = bids
        t.asks = asks
    return t


def _sf_tick(st: _Topic, recv_ns: int, snapshot: bool) -> Tick | None:
    return _quote_tick(st, recv_ns, snapshot, False)


def _dp_tick(st: _Topic, recv_ns: int, snapshot: bool) -> Tick | None:
    main = st.view.main
    if main is None or main.kind != KIND_SF:
        return None  # depth state is kept; a Tick needs the symbol's quote record
    return _quote_tick(main, recv_ns, snapshot, True)


def _if_tick(st: _Topic, recv_ns: int, snapshot: bool) -> Tick | None:
    v = st.values
    if v[0] is None:
        return None
    if st.multiplier == 1:
        scale = st.precision
    else:
        v, scale = _scaled(v, _IF_PRICES, st.precision, st.multiplier)
    t = _bare(_FYERS, st.symbol, v[0], scale, recv_ns)  # type: ignore[arg-type]
    t.snapshot = snapshot
    t_exch = v[2]
    t.exchange_ts = None if t_exch is None else t_exch * 1000
    t.open = v[5]
    t.high = v[3]
    t.low = v[4]
    t.prev_close = v[1]
    return t


_BUILDERS: Final[tuple[Callable[[_Topic, int, bool], Tick | None], ...]] = (
    _sf_tick,
    _if_tick,
    _dp_tick,
)

_MISSING: Final = object()


# --- the decoder ----------------------------------------------------------------------------


class FyersDecoder:
    """Server -> client frames to events. Holds the per-connection topic state.

    Call ``expect()`` with the topics the client subscribed (topic -> FYERS symbol) before
    their snapshots arrive, ``forget()`` after unsubscribing, ``reset()`` on reconnect.
    ``feed()`` raises ``FrameError`` for a malformed frame and then has changed nothing but
    the ``errors`` counter.
    """

    __slots__ = (
        "_clock",
        "_expected",
        "_expected_b",
        "_tid_of",
        "_topics",
        "_views",
        "errors",
        "frames",
        "packets",
        "ticks",
    )

    def __init__(self, *, recv_clock: Callable[[], int] = time.time_ns) -> None:
        self._clock = recv_clock
        self._expected: dict[str, _Expect] = {}
        self._expected_b: dict[bytes, _Expect] = {}  # keyed by wire bytes: no decode per S
        self._topics: dict[int, _Topic] = {}  # topic id -> record
        self._tid_of: dict[str, int] = {}  # topic -> topic id
        self._views: dict[str, _View] = {}  # FYERS symbol -> merged view
        self.frames = 0  # frames decoded successfully
        self.packets = 0
        self.ticks = 0
        self.errors: Counter[str] = Counter()  # FrameError reason -> count

    # subscriptions -----------------------------------------------------------------------

    def expect(self, topic_to_symbol: Mapping[str, str]) -> None:
        """Accept snapshots for these topics; each Tick carries the topic's FYERS symbol."""
        new = {}
        for topic, symbol in topic_to_symbol.items():
            new[topic] = _Expect(topic, symbol, _KIND_CODE[topic_kind(topic)])
        for topic, exp in new.items():
            old = self._expected.get(topic)
            if old is not None and old.symbol != exp.symbol:
                self._drop_state(topic)
            self._expected[topic] = exp
            self._expected_b[topic.encode()] = exp

    def forget(self, topics: Iterable[str]) -> None:
        """Unsubscribed: drop the topics' state; later packets for them are errors."""
        for topic in topics:
            if self._expected.pop(topic, None) is not None:
                del self._expected_b[topic.encode()]
            self._drop_state(topic)

    def reset(self) -> None:
        """Drop all topic-id state (a new connection); expected topics are kept."""
        self._topics.clear()
        self._tid_of.clear()
        self._views.clear()

    @property
    def expected(self) -> dict[str, str]:
        return {t: e.symbol for t, e in self._expected.items()}

    def _drop_state(self, topic: str) -> None:
        tid = self._tid_of.pop(topic, None)
        if tid is None:
            return
        st = self._topics.pop(tid)
        view = st.view
        if view.main is st:
            view.main = None
        if view.depth is st:
            view.depth = None
        if view.main is None and view.depth is None and self._views.get(st.symbol) is view:
            del self._views[st.symbol]

    def state_snapshot(self) -> tuple[object, ...]:
        """A comparable picture of all decoder state except counters (for tests)."""
        topics = tuple(
            sorted(
                (tid, s.topic, s.symbol, s.kind, s.multiplier, s.precision, tuple(s.values))
                for tid, s in self._topics.items()
            )
        )
        views = tuple(
            sorted(
                (
                    sym,
                    None if v.main is None else (v.main.topic, id(v.main)),
                    None if v.depth is None else (v.depth.topic, id(v.depth)),
                )
                for sym, v in self._views.items()
            )
        )
        objs = tuple(sorted((tid, id(s)) for tid, s in self._topics.items()))
        expected = tuple(sorted((t, e.symbol, e.kind) for t, e in self._expected.items()))
        return topics, tuple(sorted(self._tid_of.items())), views, objs, expected

    # frames ------------------------------------------------------------------------------

    def feed(self, frame: bytes) -> list[Event]:
        """Decode one WebSocket message. Raises FrameError (state untouched) if malformed."""
        if type(frame) is not bytes:
            frame = bytes(frame)  # slices of it are used as dict keys
        try:
            if len(frame) < 3:
                raise FrameError("truncated", f"{len(frame)} bytes")
            ftype = frame[2]
            if ftype == T_DATA:
                events: list[Event] = [self._data(frame)]
            elif ftype in _REPLY_EVENTS:
                events = [self._reply(frame, ftype)]
            elif ftype == T_AUTH:
                events = [self._auth(frame)]
            elif ftype == T_MESSAGE:
                events = [self._message(frame)]
            elif ftype == T_PING:
                events = []  # the SDK has no handler for type 11; harmless if echoed
            else:
                raise FrameError("bad_type", f"type {ftype}")
        except FrameError as exc:
            self.errors[exc.reason] += 1
            raise
        self.frames += 1
        return events

    def _auth(self, frame: bytes) -> AuthReply:
        f = parse_fields(frame)
        status = f.get(1)
        if status is None:
            raise FrameError("missing_field", "auth status")
        ack = f.get(2)
        if ack is None:
            return AuthReply(status == b"K", 0)  # the SDK still reports success
        if len(ack) != 4:
            raise FrameError("bad_length", f"ack count is {len(ack)} bytes")
        return AuthReply(status == b"K", _U32.unpack(ack)[0])

    def _reply(self, frame: bytes, ftype: int) -> Event:
        f = parse_fields(frame, swapped_len_ok=True)
        status = f.get(1)
        if status is None:
            raise FrameError("missing_field", "status")
        return _REPLY_EVENTS[ftype](status == b"K")  # type: ignore[no-any-return]

    def _message(self, frame: bytes) -> ServerMessage:
        # The one server frame whose prefix the SDK checks (§8.5).
        if 2 + _U16.unpack_from(frame)[0] > len(frame):
            raise FrameError("bad_length", "type-51 length prefix beyond the frame")
        f = parse_fields(frame)
        code = _I32.unpack(fixed(f, 1, 4))[0]
        msg = f.get(2)
        if msg is None:
            raise FrameError("missing_field", "message text")
        ref = f.get(3)
        if ref is not None and len(ref) != 1:
            raise FrameError("bad_length", f"ref type is {len(ref)} bytes")
        return ServerMessage(code, text(msg, "message text"), ref[0] if ref else 0)

    def _data(self, frame: bytes) -> DataFrame:
        n = len(frame)
        if n < 9:
            raise FrameError("truncated", f"data header, {n} bytes")
        msgno, count = _DATA_HDR.unpack_from(frame, 3)
        if count * 4 > n - 9:  # the smallest packet (U with no fields) is 4 bytes
            raise FrameError("bad_count", f"{count} packets in {n} bytes")
        recv_ns = self._clock()
        get = self._topics.get
        ticks: list[Tick] = []
        append = ticks.append
        undo: list[tuple[_Topic, Rec]] = []  # (record, its previous values)
        sundo: list[tuple[object, object, object]] = []  # structural changes (snapshots)
        log = undo.append
        ints = _INTS_FROM
        nv = NO_VALUE
        fyers = _FYERS
        bare = _bare
        off = 9
        try:
            for _ in range(count):
                if off + 4 > n:
                    raise FrameError("truncated", f"packet header at {off}")
                ptype = frame[off]
                if ptype == PKT_UPDATE:
                    tid = frame[off + 1] << 8 | frame[off + 2]
                    k = frame[off + 3]
                    st = get(tid)
                    if st is None:
                        raise FrameError("unknown_topic", f"topic id {tid}")
                    old = st.values
                    nf = len(old)
                    if k > nf:
                        raise FrameError("bad_count", f"{k} fields for a {nf}-field topic")
                    start = off + 4
                    off = start + 4 * k
                    if off > n:
                        raise FrameError("truncated", f"update of topic id {tid}")
                    new = ints[k](frame, start)
                    # Merge "unchanged" markers with the record: C-level scans for a few
                    # markers, one loop over the fields for many (measured crossover ~9).
                    holes = new.count(nv)
                    if not holes:  # a full update: the packet is the record
                        v = new if k == nf else new + old[k:]
                    elif holes < 9:
                        w = list(new)
                        if k < nf:
                            w += old[k:]
                        i = -1
                        for _ in range(holes):
                            i = new.index(nv, i + 1)
                            w[i] = old[i]
                        v = tuple(w)
                    else:
                        w = list(old)
                        for i, x in enumerate(new):
                            if x != nv:
                                w[i] = x
                        v = tuple(w)
                    log((st, old))
                    st.values = v
                elif ptype == PKT_LITE:
                    if off + 7 > n:
                        raise FrameError("truncated", f"lite packet at {off}")
                    tid, ltp = _HI.unpack_from(frame, off + 1)
                    off += 7
                    st = get(tid)
                    if st is None:
                        raise FrameError("unknown_topic", f"topic id {tid}")
                    if st.kind == KIND_DP:
                        raise FrameError("lite_depth", f"lite packet for depth topic id {tid}")
                    v = st.values
                    if ltp != nv:
                        log((st, v))
                        v = (ltp,) + v[1:]  # noqa: RUF005 - concatenation is faster here
                        st.values = v
                else:
                    if ptype != PKT_SNAPSHOT:
                        raise FrameError("bad_packet", f"packet type {ptype:#04x} at {off}")
                    off, st = self._snapshot(frame, off, sundo)
                    tick = st.build(st, recv_ns, True)
                    if tick is not None:
                        append(tick)
                    continue
                # The common case inline (a plain sf record, no depth): saves two calls.
                if st.plain and v[0] is not None and st.view.depth is None:
                    t = bare(fyers, st.symbol, v[0], st.precision, recv_ns)
                    t_exch = v[3]
                    t.exchange_ts = None if t_exch is None else t_exch * 1000
                    t_ltt = v[2]
                    t.ltt = None if t_ltt is None else t_ltt * 1000
                    t.ltq = v[8]
                    t.volume = v[1]
                    t.bid = v[6]
                    t.ask = v[7]
                    t.bid_qty = v[4]
                    t.ask_qty = v[5]
                    t.open = v[19]
                    t.high = v[14]
                    t.low = v[13]
                    t.prev_close = v[20]
                    t.atp = v[11]
                    t.oi = v[12]
                    t.total_buy_qty = v[9]
                    t.total_sell_qty = v[10]
                    t.lower_circuit = v[17]
                    t.upper_circuit = v[18]
                    append(t)
                else:
                    tick = st.build(st, recv_ns, False)
                    if tick is not None:
                        append(tick)
            if off != n:
                raise FrameError("bad_length", f"{n - off} bytes after {count} packets")
        except BaseException:
            for st, old in reversed(undo):
                st.values = old
            self._rollback(sundo)
            raise
        self.packets += count
        self.ticks += len(ticks)
        return DataFrame(msgno, ticks)

    def _snapshot(
        self, frame: bytes, off: int, sundo: list[tuple[object, object, object]]
    ) -> tuple[int, _Topic]:
        """Parse one S packet at ``off`` and install its record (logged in ``sundo``)."""
        n = len(frame)
        tid, tlen = _HB.unpack_from(frame, off + 1)
        p = off + 4 + tlen
        if p + 1 > n:
            raise FrameError("truncated", f"snapshot topic name at {off}")
        exp = self._expected_b.get(frame[off + 4 : p])
        if exp is None:
            raise FrameError("unknown_topic", f"snapshot for an unexpected topic, id {tid}")
        k = frame[p]
        if k > exp.nfields:
            raise FrameError("bad_count", f"{k} fields for {exp.topic}")
        vstart = p + 1
        p = vstart + 4 * k
        if p + 5 > n:
            raise FrameError("truncated", f"snapshot of {exp.topic}")
        multiplier, precision = _SNAP_TAIL.unpack_from(frame, p)
        if multiplier == 0:
            raise FrameError("zero_multiplier", exp.topic)
        if precision > MAX_SCALE:
            raise FrameError("bad_precision", f"precision {precision} for {exp.topic}")
        p += 5
        for _ in range(3):  # exchange, exchange token, symbol: not needed, only skipped
            if p >= n:
                raise FrameError("truncated", f"snapshot strings of {exp.topic}")
            p += 1 + frame[p]
        if p > n:
            raise FrameError("truncated", f"snapshot strings of {exp.topic}")
        raw = _INTS[k].unpack_from(frame, vstart)
        values: Rec = tuple([None if x == NO_VALUE else x for x in raw])
        if k < exp.nfields:
            values += (None,) * (exp.nfields - k)

        # Install, logging each change so that a later failure in this frame undoes it.
        topics, tid_of, views = self._topics, self._tid_of, self._views
        prev = topics.get(tid)
        if prev is not None and prev.topic != exp.topic:
            self._detach(prev, sundo)  # the server reused the id for another topic
        prev_tid = tid_of.get(exp.topic)
        if prev_tid is not None and prev_tid != tid:
            self._detach(topics[prev_tid], sundo)  # a fresh id for a known topic
        view = views.get(exp.symbol)
        if view is None:
            view = _View()
            _log_set(views, exp.symbol, view, sundo)
        st = _Topic(exp.topic, exp.symbol, exp.kind, multiplier, precision, values, view)
        _log_set(topics, tid, st, sundo)
        _log_set(tid_of, exp.topic, tid, sundo)
        slot = "depth" if exp.kind == KIND_DP else "main"
        sundo.append((view, slot, getattr(view, slot)))
        setattr(view, slot, st)
        return p, st

    def _detach(self, st: _Topic, sundo: list[tuple[object, object, object]]) -> None:
        tid = self._tid_of[st.topic]
        _log_del(self._topics, tid, sundo)
        _log_del(self._tid_of, st.topic, sundo)
        view = st.view
        for slot in ("main", "depth"):
            if getattr(view, slot) is st:
                sundo.append((view, slot, st))
                setattr(view, slot, None)

    @staticmethod
    def _rollback(sundo: list[tuple[object, object, object]]) -> None:
        for target, key, old in reversed(sundo):
            if isinstance(target, dict):
                if old is _MISSING:
                    target.pop(key, None)
                else:
                    target[key] = old
            else:
                setattr(target, key, old)  # type: ignore[arg-type]


def _log_set(
    d: dict,  # type: ignore[type-arg]
    key: object,
    value: object,
    sundo: list[tuple[object, object, object]],
) -> None:
    sundo.append((d, key, d.get(key, _MISSING)))
    d[key] = value


def _log_del(d: dict, key: object, sundo: list[tuple[object, object, object]]) -> None:  # type: ignore[type-arg]
    sundo.append((d, key, d.pop(key)))
