"""Server -> client frames: golden bytes from FYERS.md §8/§15, replies, data and decoder state."""

from __future__ import annotations

from decimal import Decimal

import pytest

from feeds.providers.errors import FrameError
from feeds.providers.fyers.codec import (
    AuthReply,
    DataFrame,
    FyersDecoder,
    ModeReply,
    PauseReply,
    ResumeReply,
    ServerMessage,
    SubscribeReply,
    UnsubscribeReply,
)
from feeds.providers.fyers.server_codec import (
    encode_auth_reply,
    encode_data_frame,
    encode_reply,
    encode_server_message,
    lite_packet,
    snapshot_packet,
    update_packet,
    values_from_tick,
)
from feeds.providers.ticks import DepthLevel, ProviderName, Tick
from tests.feeds.providers.fyers.frames import (
    DP,
    EXPECTED,
    FULL_DP,
    FULL_IF,
    FULL_SF,
    NIFTY,
    NIFTY_IF,
    NOV,
    SBIN_SF,
    SF,
    SYM,
    TIDS,
    ready_decoder,
    sf_values,
    snapshots_frame,
)


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


# §15.3, verbatim
SNAPSHOT_1234_55 = h(
    "0031060000000100015300011073667c6e73655f636d7c393939303031010001e23f0000000102034e534506"
    "39393930303100"
)
UPDATE_1234_6 = h("00 0f 06 00000002 0001 55 0001 01 0001e244")
LITE_TWO_TOPICS = h("0015 06 00000002 0002 4c 0001 0001e26c 4c 0002 00256638")


def zero_multiplier(packet: bytes) -> bytes:
    """The server encoder refuses multiplier 0 (it crashes the SDK); patch it in."""
    tail = b"\x00\x01\x02\x03NSE"
    assert packet.count(tail) == 1
    return packet.replace(tail, b"\x00\x00\x02\x03NSE")


def decoder(expected: dict[str, str] | None = None, clock: int = 99) -> FyersDecoder:
    dec = FyersDecoder(recv_clock=lambda: clock)
    dec.expect(expected if expected is not None else {SF: SYM})
    return dec


def only_tick(events: list) -> Tick:
    (event,) = events
    assert isinstance(event, DataFrame)
    (tick,) = event.ticks
    return tick


def feed_error(dec: FyersDecoder, frame: bytes) -> str:
    before = dec.state_snapshot()
    with pytest.raises(FrameError) as info:
        dec.feed(frame)
    assert dec.state_snapshot() == before
    return info.value.reason


# --- replies (§8.1-§8.5) ---------------------------------------------------------------------


def test_auth_reply_golden() -> None:
    frame = h("00 0d 01 02  01 00 01 4b  02 00 04 00 00 00 00")
    assert encode_auth_reply(True) == frame
    assert FyersDecoder().feed(frame) == [AuthReply(ok=True, ack_every=0)]


def test_auth_reply_variants() -> None:
    dec = FyersDecoder()
    assert dec.feed(encode_auth_reply(True, ack_count=5)) == [AuthReply(True, 5)]
    assert dec.feed(encode_auth_reply(False)) == [AuthReply(False, 0)]
    # field 2 missing: the SDK still reports success, with no acks
    assert dec.feed(h("0006 01 01 010001 4b")) == [AuthReply(True, 0)]
    assert feed_error(dec, h("0009 01 02 010001 4b 020001 00")) == "bad_length"
    assert feed_error(dec, h("0009 01 01 020001 00")) == "missing_field"


def test_mode_and_subscription_replies_golden() -> None:
    assert encode_reply(12, True) == h("00 06 0c 01 01 00 01 4b")
    assert encode_reply(4, True) == h("00 06 04 01 01 00 01 4b")
    dec = FyersDecoder()
    assert dec.feed(h("00 06 0c 01 01 00 01 4b")) == [ModeReply(True)]
    assert dec.feed(h("00 06 04 01 01 00 01 4b")) == [SubscribeReply(True)]
    assert dec.feed(h("00 06 05 01 01 00 01 4b")) == [UnsubscribeReply(True)]


@pytest.mark.parametrize(
    ("rtype", "event"),
    [
        (12, ModeReply),
        (4, SubscribeReply),
        (5, UnsubscribeReply),
        (7, PauseReply),
        (8, ResumeReply),
    ],
)
def test_reply_round_trip(rtype: int, event: type) -> None:
    dec = FyersDecoder()
    assert dec.feed(encode_reply(rtype, True)) == [event(True)]
    assert dec.feed(encode_reply(rtype, False)) == [event(False)]
    # the SDK reads this length in host order; a little-endian length is accepted too
    assert dec.feed(bytes([0, 6, rtype, 1, 1, 1, 0, 0x4B])) == [event(True)]


def test_encode_reply_refuses_other_types() -> None:
    with pytest.raises(ValueError):
        encode_reply(1, True)


def test_server_message_51001_golden() -> None:
    frame = (
        h("00 25 33 03  01 00 04 00 00 c7 39  02 00 15")
        + b"Symbol limit exceeded"
        + h("03 00 01 04")
    )
    assert encode_server_message(51001, "Symbol limit exceeded", 4) == frame
    assert FyersDecoder().feed(frame) == [ServerMessage(51001, "Symbol limit exceeded", 4)]


def test_server_message_round_trip_and_errors() -> None:
    dec = FyersDecoder()
    frame = encode_server_message(-7, "ünïcode ✓", 1)
    assert dec.feed(frame) == [ServerMessage(-7, "ünïcode ✓", 1)]
    assert feed_error(dec, b"\x01\x00" + frame[2:]) == "bad_length"  # the prefix is checked
    bad_text = encode_server_message(1, "ab", 4).replace(b"ab", b"\xff\xfe")
    assert feed_error(dec, bad_text) == "bad_utf8"
    assert dec.feed(h("000b 33 02 010004 00000001 020000")) == [ServerMessage(1, "", 0)]
    assert feed_error(dec, h("0007 33 01 020002 6869")) == "missing_field"
    assert feed_error(dec, h("0007 33 01 010002 6869")) == "bad_length"
    assert feed_error(dec, h("000f 33 03 010004 00000001 020000 030002 0404")) == "bad_length"


def test_other_frame_types() -> None:
    dec = FyersDecoder()
    assert dec.feed(h("00010b")) == []  # an echoed ping is ignored
    assert dec.feed(bytearray(h("00060401010001 4b"))) == [SubscribeReply(True)]
    assert dec.feed(memoryview(h("00060401010001 4e"))) == [SubscribeReply(False)]
    assert feed_error(dec, h("000063")) == "bad_type"
    assert feed_error(dec, h("0000")) == "truncated"
    assert feed_error(dec, b"") == "truncated"
    assert dict(dec.errors) == {"bad_type": 1, "truncated": 2}
    assert dec.frames == 3


# --- data frames: the worked examples (§15.3) -------------------------------------------------


def test_worked_example_snapshot_ltp_1234_55() -> None:
    assert len(SNAPSHOT_1234_55) == 51
    dec = decoder()
    events = dec.feed(SNAPSHOT_1234_55)
    assert events[0].message_number == 1  # type: ignore[union-attr]
    tick = only_tick(events)
    assert tick.provider is ProviderName.FYERS
    assert tick.symbol == "NSE:TESTSYM-EQ"
    assert (tick.ltp, tick.scale) == (123455, 2)
    assert tick.price() == Decimal("1234.55")
    assert tick.snapshot is True
    assert tick.recv_ns == 99
    # the SDK emits lower_ckt/upper_ckt 0; we report what the record says: never set
    assert tick.lower_circuit is None and tick.upper_circuit is None
    assert tick.prev_close is None and tick.volume is None and tick.bids is None


def test_worked_example_snapshot_is_what_the_server_encoder_builds() -> None:
    packet = snapshot_packet(1, SF, [123455], multiplier=1, precision=2, token="999001")
    assert encode_data_frame(1, [packet]) == SNAPSHOT_1234_55


def test_worked_example_full_snapshot_then_update() -> None:
    dec = decoder()
    snap = encode_data_frame(1, [snapshot_packet(1, SF, sf_values(ltp=123455, prev_close=120000))])
    first = only_tick(dec.feed(snap))
    assert (first.ltp, first.prev_close, first.scale) == (123455, 120000, 2)
    assert first.price() == Decimal("1234.55")
    assert first.price(first.prev_close) == Decimal("1200.00")
    assert encode_data_frame(2, [update_packet(1, [123460])]) == UPDATE_1234_6
    second = only_tick(dec.feed(UPDATE_1234_6))
    assert second.price() == Decimal("1234.6")
    assert second.prev_close == 120000  # re-emitted from the cached record
    assert second.snapshot is False
    # the SDK's derived ch/chp of the example follow from the exact values
    assert second.price() - second.price(second.prev_close) == Decimal("34.6")


def test_worked_example_lite_frame_for_two_topics() -> None:
    dec = decoder({SF: SYM, NIFTY_IF: NIFTY})
    dec.feed(
        encode_data_frame(
            1,
            [
                snapshot_packet(1, SF, [123455]),
                snapshot_packet(2, NIFTY_IF, [2450000, 2440000]),
            ],
        )
    )
    assert encode_data_frame(2, [lite_packet(1, 123500), lite_packet(2, 2451000)]) == (
        LITE_TWO_TOPICS
    )
    (frame,) = dec.feed(LITE_TWO_TOPICS)
    assert isinstance(frame, DataFrame) and frame.message_number == 2
    a, b = frame.ticks
    assert (a.symbol, a.price()) == (SYM, Decimal("1235.00"))
    assert (b.symbol, b.price(), b.prev_close) == (NIFTY, Decimal("24510.00"), 2440000)


def test_index_example_of_section_9_3() -> None:
    # {'ltp': 24500.1, 'prev_close_price': 24400.0, 'exch_feed_time': 1700000001,
    #  'high_price': 24600.0, 'low_price': 24300.0, 'open_price': 24450.0, 'type': 'if', ...}
    dec = decoder({NIFTY_IF: NIFTY})
    raw = [2450010, 2440000, 1700000001, 2460000, 2430000, 2445000]
    tick = only_tick(dec.feed(encode_data_frame(1, [snapshot_packet(2, NIFTY_IF, raw)])))
    assert tick.symbol == "NSE:NIFTY50-INDEX"
    assert tick.price() == Decimal("24500.1")
    assert [tick.price(x) for x in (tick.prev_close, tick.high, tick.low, tick.open)] == [
        Decimal("24400"),
        Decimal("24600"),
        Decimal("24300"),
        Decimal("24450"),
    ]
    assert tick.exchange_ts == 1700000001_000
    assert tick.ltt is None and tick.volume is None and tick.bids is None


def test_precision_four() -> None:
    dec = decoder({"sf|cde_fo|1": "NSE:USDINR26SEPFUT"})
    tick = only_tick(
        dec.feed(encode_data_frame(1, [snapshot_packet(9, "sf|cde_fo|1", [831234], precision=4)]))
    )
    assert tick.price() == Decimal("83.1234")


def test_multiplier_gives_one_exact_scale_for_all_prices() -> None:
    dec = decoder()
    values = sf_values(ltp=100, bid=101, ask=103, prev_close=1)
    tick = only_tick(dec.feed(encode_data_frame(1, [snapshot_packet(1, SF, values, multiplier=4)])))
    # 100/400 = 0.25, 101/400 = 0.2525, 103/400 = 0.2575, 1/400 = 0.0025: shared scale 4
    assert tick.scale == 4
    assert (tick.ltp, tick.bid, tick.ask, tick.prev_close) == (2500, 2525, 2575, 25)
    assert tick.price(tick.bid) == Decimal("0.2525")
    # a multiplier with a factor of 3 cannot be exact: rounded at the maximum scale (8)
    dec2 = decoder()
    t3 = only_tick(dec2.feed(encode_data_frame(1, [snapshot_packet(1, SF, [100], multiplier=3)])))
    assert (t3.ltp, t3.scale) == (33333333, 8)


# --- full field mapping -------------------------------------------------------------------------


def test_sf_fields_map_onto_the_tick() -> None:
    dec = decoder()
    tick = only_tick(dec.feed(encode_data_frame(1, [snapshot_packet(1, SF, FULL_SF)])))
    assert tick == Tick(
        provider=ProviderName.FYERS,
        symbol=SYM,
        ltp=123455,
        scale=2,
        recv_ns=99,
        snapshot=True,
        volume=1000,
        ltt=1700000000_000,
        exchange_ts=1700000001_000,
        bid_qty=10,
        ask_qty=20,
        bid=123450,
        ask=123460,
        ltq=5,
        total_buy_qty=900,
        total_sell_qty=800,
        atp=123000,
        oi=77,
        low=120500,
        high=125000,
        lower_circuit=111110,
        upper_circuit=135800,
        open=121000,
        prev_close=120000,
    )


def test_if_fields_map_onto_the_tick() -> None:
    dec = decoder({NIFTY_IF: NIFTY})
    tick = only_tick(dec.feed(encode_data_frame(1, [snapshot_packet(5, NIFTY_IF, FULL_IF)])))
    assert tick == Tick(
        provider=ProviderName.FYERS,
        symbol=NIFTY,
        ltp=2451000,
        scale=2,
        recv_ns=99,
        snapshot=True,
        prev_close=2440000,
        exchange_ts=1700000001_000,
        high=2460000,
        low=2430000,
        open=2445000,
    )


def test_values_from_tick_round_trip() -> None:
    dec = FyersDecoder(recv_clock=lambda: 1)
    dec.expect(EXPECTED)
    (event,) = dec.feed(snapshots_frame(3))
    sf_tick, if_tick, dp_tick, sbin_tick = event.ticks  # type: ignore[union-attr]
    assert values_from_tick(sf_tick, "sf") == [*FULL_SF[:15], None, None, *FULL_SF[17:]]
    assert values_from_tick(if_tick, "if") == FULL_IF
    assert values_from_tick(dp_tick, "dp") == FULL_DP
    assert values_from_tick(sbin_tick, "sf") == sf_values(ltp=80000)
    # and back: a server that sends what a Tick says reproduces the Tick
    again = FyersDecoder(recv_clock=lambda: 1)
    again.expect(EXPECTED)
    (event2,) = again.feed(
        encode_data_frame(
            3,
            [
                snapshot_packet(1, SF, values_from_tick(sf_tick, "sf")),
                snapshot_packet(2, NIFTY_IF, values_from_tick(if_tick, "if")),
                snapshot_packet(3, DP, values_from_tick(dp_tick, "dp")),
                snapshot_packet(4, SBIN_SF, values_from_tick(sbin_tick, "sf")),
            ],
        )
    )
    assert event2.ticks == event.ticks  # type: ignore[union-attr]


def test_values_from_tick_precision_and_range() -> None:
    tick = Tick(ProviderName.FYERS, SYM, 123450, 2, 0, prev_close=120000)
    assert values_from_tick(tick, "sf", precision=1)[0] == 12345
    assert values_from_tick(tick, "sf", precision=4)[20] == 12000000
    with pytest.raises(ValueError):
        values_from_tick(Tick(ProviderName.FYERS, SYM, 123455, 2, 0), "sf", precision=1)
    with pytest.raises(ValueError):
        values_from_tick(Tick(ProviderName.FYERS, SYM, 2**31, 2, 0), "sf")
    with pytest.raises(ValueError):
        values_from_tick(tick, "xx")


# --- decoder state ------------------------------------------------------------------------------


def test_unchanged_markers_and_short_updates_keep_the_record() -> None:
    dec = ready_decoder()
    update = [NOV] * 21
    update[0] = 123500
    update[20] = 120100
    tick = only_tick(dec.feed(encode_data_frame(2, [update_packet(1, update)])))
    assert (tick.ltp, tick.prev_close, tick.volume, tick.high) == (123500, 120100, 1000, 125000)
    tick = only_tick(dec.feed(encode_data_frame(3, [update_packet(1, [NOV, 1001])])))
    assert (tick.ltp, tick.volume, tick.prev_close) == (123500, 1001, 120100)
    tick = only_tick(dec.feed(encode_data_frame(4, [update_packet(1, [])])))
    assert tick.ltp == 123500  # a packet still re-emits the whole record


@pytest.mark.parametrize("k", [21, 15])
@pytest.mark.parametrize("changed", [0, 1, 5, 12, 20, 21])
def test_update_merge_paths(k: int, changed: int) -> None:
    """Few and many markers, full-length and short updates: one rule, several code paths."""
    dec = ready_decoder()
    update: list[int | None] = [None] * k
    for i in range(min(changed, k)):
        update[(i * 7) % k] = 500_000 + i
    expected = list(FULL_SF)
    for i, x in enumerate(update):
        if x is not None:
            expected[i] = x
    dec.feed(encode_data_frame(2, [update_packet(TIDS[SBIN_SF], update)]))
    dec.feed(encode_data_frame(3, [update_packet(TIDS[SBIN_SF], FULL_SF)]))
    tick = only_tick(dec.feed(encode_data_frame(4, [update_packet(TIDS[SBIN_SF], update)])))
    assert values_from_tick(tick, "sf") == [*expected[:15], None, None, *expected[17:]]


def test_inline_update_path_builds_the_same_tick_as_a_snapshot() -> None:
    dec = decoder({SBIN_SF: "NSE:SBIN-EQ"})
    first = only_tick(dec.feed(encode_data_frame(1, [snapshot_packet(4, SBIN_SF, FULL_SF)])))
    again = only_tick(dec.feed(encode_data_frame(2, [update_packet(4, FULL_SF)])))
    lite = only_tick(dec.feed(encode_data_frame(3, [lite_packet(4, FULL_SF[0])])))
    first.snapshot = False
    assert again == first == lite


def test_snapshot_encoder_refuses_a_zero_multiplier() -> None:
    with pytest.raises(ValueError):
        snapshot_packet(1, SF, [1], multiplier=0)


def test_never_set_fields_stay_none_and_can_be_set_later() -> None:
    dec = decoder()
    dec.feed(SNAPSHOT_1234_55)
    tick = only_tick(dec.feed(encode_data_frame(2, [update_packet(1, sf_values(oi=5))])))
    assert tick.oi == 5 and tick.volume is None and tick.ltp == 123455


def test_lite_before_snapshot_is_an_unknown_topic() -> None:
    dec = decoder()
    assert feed_error(dec, encode_data_frame(1, [lite_packet(1, 5)])) == "unknown_topic"
    assert feed_error(dec, encode_data_frame(1, [update_packet(1, [5])])) == "unknown_topic"


def test_snapshot_without_ltp_emits_nothing_until_an_ltp_arrives() -> None:
    dec = decoder()
    (frame,) = dec.feed(encode_data_frame(1, [snapshot_packet(1, SF, sf_values(vol=5))]))
    assert frame.ticks == []  # type: ignore[union-attr]
    tick = only_tick(dec.feed(encode_data_frame(2, [lite_packet(1, 100)])))
    assert (tick.ltp, tick.volume) == (100, 5)
    tick = only_tick(dec.feed(encode_data_frame(3, [lite_packet(1, -0x80000000)])))
    assert tick.ltp == 100  # a lite "no value" changes nothing


def test_snapshot_for_a_topic_not_expected() -> None:
    dec = decoder()
    frame = encode_data_frame(1, [snapshot_packet(1, "sf|nse_cm|424242", [1])])
    assert feed_error(dec, frame) == "unknown_topic"


def test_unsubscribe_then_packets_for_that_topic() -> None:
    dec = ready_decoder()
    dec.forget([SBIN_SF])
    assert SBIN_SF not in dec.expected
    for frame in (
        encode_data_frame(2, [update_packet(TIDS[SBIN_SF], [1])]),
        encode_data_frame(2, [lite_packet(TIDS[SBIN_SF], 1)]),
        encode_data_frame(2, [snapshot_packet(TIDS[SBIN_SF], SBIN_SF, [1])]),
        # one good packet first: the whole frame is still rejected
        encode_data_frame(2, [lite_packet(TIDS[SF], 1), lite_packet(TIDS[SBIN_SF], 1)]),
    ):
        assert feed_error(dec, frame) == "unknown_topic"
    tick = only_tick(dec.feed(encode_data_frame(3, [lite_packet(TIDS[SF], 123999)])))
    assert tick.ltp == 123999  # the other topics still decode
    ticks = dec.feed(encode_data_frame(4, [lite_packet(TIDS[NIFTY_IF], 2450100)]))[0].ticks  # type: ignore[union-attr]
    assert ticks[0].symbol == NIFTY


def test_forget_depth_keeps_the_quote_topic() -> None:
    dec = ready_decoder()
    dec.forget([DP])
    tick = only_tick(dec.feed(encode_data_frame(2, [lite_packet(TIDS[SF], 5)])))
    assert tick.bids is None and tick.bid == 123450  # back to the sf record's own bid
    assert feed_error(dec, encode_data_frame(3, [update_packet(TIDS[DP], [])])) == "unknown_topic"


def test_reset_clears_topic_ids_but_keeps_expectations() -> None:
    dec = ready_decoder()
    dec.reset()
    assert feed_error(dec, encode_data_frame(2, [lite_packet(1, 5)])) == "unknown_topic"
    assert dec.expected == EXPECTED
    # a new connection: fresh ids for the same topics
    dec.feed(encode_data_frame(1, [snapshot_packet(77, SF, [42])]))
    tick = only_tick(dec.feed(encode_data_frame(2, [lite_packet(77, 43)])))
    assert (tick.ltp, tick.volume, tick.bids) == (43, None, None)  # nothing survived the reset


def test_new_topic_id_for_a_known_topic_retires_the_old_id() -> None:
    dec = ready_decoder()
    dec.feed(encode_data_frame(2, [snapshot_packet(50, SF, [1])]))
    assert feed_error(dec, encode_data_frame(3, [lite_packet(1, 2)])) == "unknown_topic"
    assert only_tick(dec.feed(encode_data_frame(3, [lite_packet(50, 2)]))).ltp == 2


def test_topic_id_reused_for_another_topic() -> None:
    dec = ready_decoder()
    dec.feed(encode_data_frame(2, [snapshot_packet(TIDS[SF], SBIN_SF, [7])]))
    tick = only_tick(dec.feed(encode_data_frame(3, [lite_packet(TIDS[SF], 8)])))
    assert tick.symbol == "NSE:SBIN-EQ"
    assert feed_error(dec, encode_data_frame(3, [lite_packet(TIDS[SBIN_SF], 9)])) == (
        "unknown_topic"
    )
    # SF lost its id: its depth packets no longer find a quote record
    (frame,) = dec.feed(encode_data_frame(4, [update_packet(TIDS[DP], [1])]))
    assert frame.ticks == []  # type: ignore[union-attr]


def test_expect_with_a_new_symbol_drops_the_old_state() -> None:
    dec = ready_decoder()
    dec.expect({SBIN_SF: "NSE:SBIN2-EQ"})
    assert feed_error(dec, encode_data_frame(2, [lite_packet(TIDS[SBIN_SF], 1)])) == (
        "unknown_topic"
    )
    dec.expect({SF: SYM})  # same symbol: state kept
    assert only_tick(dec.feed(encode_data_frame(2, [lite_packet(TIDS[SF], 1)]))).ltp == 1
    with pytest.raises(ValueError):
        dec.expect({"zz|nse_cm|1": "X"})


def test_counters_and_one_clock_read_per_frame() -> None:
    reads = []

    def clock() -> int:
        reads.append(1)
        return len(reads)

    dec = FyersDecoder(recv_clock=clock)
    dec.expect(EXPECTED)
    (event,) = dec.feed(snapshots_frame())
    assert {t.recv_ns for t in event.ticks} == {1}  # type: ignore[union-attr]
    assert len(reads) == 1
    assert (dec.frames, dec.packets, dec.ticks) == (1, 4, 4)
    with pytest.raises(FrameError):
        dec.feed(encode_data_frame(2, [lite_packet(1, 5), lite_packet(999, 5)]))
    assert (dec.frames, dec.packets, dec.ticks) == (1, 4, 4)
    assert dec.errors == {"unknown_topic": 1}


# --- malformed data frames ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (h("0000 06 000000"), "truncated"),
        (h("0000 06 00000001 ffff") + bytes(11), "bad_count"),  # 65535 packets in 20 bytes
        (h("0000 06 00000001 0002") + lite_packet(1, 5), "bad_count"),
        (h("0000 06 00000001 0001") + lite_packet(1, 5)[:6], "truncated"),
        (h("0000 06 00000001 0001 58 0001 00"), "bad_packet"),
        (encode_data_frame(1, [lite_packet(1, 5)]) + b"\x00", "bad_length"),
        (encode_data_frame(1, [update_packet(1, [1] * 22)]), "bad_count"),
        (encode_data_frame(1, [update_packet(2, [1] * 7)]), "bad_count"),
        (encode_data_frame(1, [update_packet(3, [1] * 30)])[:-1], "truncated"),
        (encode_data_frame(1, [update_packet(1, [1] * 21)])[:-3], "truncated"),
        (encode_data_frame(1, [lite_packet(3, 5)]), "lite_depth"),
        (encode_data_frame(1, [lite_packet(999, 5)]), "unknown_topic"),
        (encode_data_frame(1, [snapshot_packet(1, SF, [1] * 22)]), "bad_count"),
        (encode_data_frame(1, [snapshot_packet(2, NIFTY_IF, [1] * 7)]), "bad_count"),
        (encode_data_frame(1, [zero_multiplier(snapshot_packet(1, SF, [1]))]), "zero_multiplier"),
        (encode_data_frame(1, [snapshot_packet(1, SF, [1], precision=9)]), "bad_precision"),
        (encode_data_frame(1, [snapshot_packet(1, SF, [1], symbol="X")])[:-1], "truncated"),
        (encode_data_frame(1, [snapshot_packet(1, SF, [1], exchange="")])[:-3], "truncated"),
        (encode_data_frame(1, [snapshot_packet(1, SF, [1])])[:20], "truncated"),
    ],
)
def test_malformed_data_frames(frame: bytes, reason: str) -> None:
    dec = ready_decoder()
    assert feed_error(dec, frame) == reason
    assert dec.errors == {reason: 1}


def test_a_failure_late_in_a_frame_undoes_everything_before_it() -> None:
    dec = ready_decoder()
    before = dec.state_snapshot()
    bad = encode_data_frame(
        9,
        [
            update_packet(TIDS[SF], [1, 2, 3]),
            snapshot_packet(60, SBIN_SF, [5]),  # retires id 4, adds id 60
            snapshot_packet(TIDS[NIFTY_IF], SF, [6]),  # id reused for another topic
            update_packet(TIDS[DP], FULL_DP),
            lite_packet(60, 7),
            zero_multiplier(snapshot_packet(TIDS[DP], DP, [1])),  # fails here
        ],
    )
    with pytest.raises(FrameError, match="zero_multiplier"):
        dec.feed(bad)
    assert dec.state_snapshot() == before
    # and it still decodes as before
    tick = only_tick(dec.feed(encode_data_frame(10, [update_packet(TIDS[SBIN_SF], [])])))
    assert (tick.symbol, tick.ltp) == ("NSE:SBIN-EQ", 80000)


# --- depth and the merged per-symbol view -------------------------------------------------------


BIDS = (
    DepthLevel(123450, 10, 1),
    DepthLevel(123445, 11, 2),
    DepthLevel(123440, 12, 3),
    DepthLevel(123435, 13, 4),
    DepthLevel(123430, 14, 5),
)
ASKS = (
    DepthLevel(123460, 20, 6),
    DepthLevel(123465, 21, 7),
    DepthLevel(123470, 22, 8),
    DepthLevel(123475, 23, 9),
    DepthLevel(123480, 24, 10),
)


def test_depth_tick_carries_the_symbols_latest_ltp() -> None:
    dec = ready_decoder()
    dec.feed(encode_data_frame(2, [lite_packet(TIDS[SF], 123999)]))
    update = [NOV] * 30
    update[0], update[10] = 123455, 99  # new best bid and its size
    tick = only_tick(dec.feed(encode_data_frame(3, [update_packet(TIDS[DP], update)])))
    assert (tick.symbol, tick.ltp, tick.snapshot) == (SYM, 123999, False)
    assert tick.bids == (DepthLevel(123455, 99, 1), *BIDS[1:])
    assert tick.asks == ASKS
    assert (tick.bid, tick.bid_qty, tick.ask, tick.ask_qty) == (123455, 99, 123460, 20)
    assert tick.volume == 1000  # the rest of the quote record rides along


def test_quote_ticks_carry_the_depth_levels() -> None:
    dec = ready_decoder()
    update = sf_values(ltp=124000, bid=123900, bid_qty=3)
    tick = only_tick(dec.feed(encode_data_frame(2, [update_packet(TIDS[SF], update)])))
    assert (tick.bids, tick.asks) == (BIDS, ASKS)
    assert (tick.bid, tick.bid_qty) == (123900, 3)  # from the packet that triggered the tick


def test_depth_before_any_quote_emits_nothing_but_is_kept() -> None:
    dec = decoder({SF: SYM, DP: SYM})
    (frame,) = dec.feed(encode_data_frame(1, [snapshot_packet(3, DP, FULL_DP)]))
    assert frame.ticks == []  # type: ignore[union-attr]
    (frame,) = dec.feed(encode_data_frame(2, [update_packet(3, [123451])]))
    assert frame.ticks == []  # type: ignore[union-attr]
    tick = only_tick(dec.feed(encode_data_frame(3, [snapshot_packet(1, SF, [123455])])))
    assert tick.bids == (DepthLevel(123451, 10, 1), *BIDS[1:])
    assert tick.snapshot is True


def test_partial_depth_levels() -> None:
    dec = decoder({SF: SYM, DP: SYM})
    dec.feed(encode_data_frame(1, [snapshot_packet(1, SF, [100])]))
    values = [NOV] * 30
    values[0], values[10] = 99, 5  # one bid level, no order count, no asks
    values[1] = 98  # a price without a size is not a level
    tick = only_tick(dec.feed(encode_data_frame(2, [snapshot_packet(3, DP, values)])))
    assert tick.bids == (DepthLevel(99, 5, None),)
    assert tick.asks == ()
    assert (tick.bid, tick.ask, tick.bid_qty, tick.ask_qty) == (99, None, 5, None)


def test_depth_at_another_precision_is_aligned_to_one_scale() -> None:
    dec = decoder({SF: SYM, DP: SYM})
    dec.feed(encode_data_frame(1, [snapshot_packet(1, SF, [12345, *[NOV] * 5, 12340])]))
    depth = [NOV] * 30
    depth[0], depth[10], depth[5], depth[15] = 1234000, 1, 1235000, 2  # precision 4
    tick = only_tick(dec.feed(encode_data_frame(2, [snapshot_packet(3, DP, depth, precision=4)])))
    assert tick.scale == 4
    assert (tick.ltp, tick.bid, tick.ask) == (1234500, 1234000, 1235000)
    tick = only_tick(dec.feed(encode_data_frame(3, [lite_packet(1, 12346)])))
    assert (tick.scale, tick.ltp, tick.bid) == (4, 1234600, 1234000)  # sf's own bid, rescaled
    # and the other way round: depth coarser than the quote record
    dec2 = decoder({SF: SYM, DP: SYM})
    dec2.feed(encode_data_frame(1, [snapshot_packet(1, SF, [1234500], precision=4)]))
    depth2 = [NOV] * 30
    depth2[0], depth2[10] = 12340, 1
    tick = only_tick(dec2.feed(encode_data_frame(2, [snapshot_packet(3, DP, depth2)])))
    assert (tick.scale, tick.ltp, tick.bid, tick.bids) == (
        4,
        1234500,
        1234000,
        (DepthLevel(1234000, 1, None),),
    )


def test_depth_with_a_multiplier() -> None:
    dec = decoder({SF: SYM, DP: SYM})
    dec.feed(encode_data_frame(1, [snapshot_packet(1, SF, [100])]))
    depth = [NOV] * 30
    depth[0], depth[10] = 101, 1
    tick = only_tick(dec.feed(encode_data_frame(2, [snapshot_packet(3, DP, depth, multiplier=4)])))
    assert (tick.scale, tick.ltp, tick.bid) == (4, 10000, 2525)
