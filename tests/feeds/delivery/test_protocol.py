"""Requests parsed and answers rendered as docs/websocket-api.md says."""

from __future__ import annotations

import orjson
import pytest

from feeds.delivery.protocol import (
    MAX_SYMBOLS_PER_REQUEST,
    Action,
    ErrorCode,
    Mode,
    ProtocolError,
    Rendered,
    item_render,
    request_parse,
    snapshot_item,
    update_message,
)
from validation.checks import Check

RECORD = {
    "ltp": 81235, "scale": 2, "recv_ns": 1_764_052_800_128_200_000, "exchange_ts": 1764052800127,
    "ltt": 1764052800100, "ltq": 10, "volume": 123456, "bid": 81230, "ask": 81240,
    "bid_qty": 50, "ask_qty": 75, "open": 80000, "high": 82000, "low": 79950,
    "prev_close": 80000, "bids": [[81230, 50, 3], [81225, 10, 1]], "asks": [[81240, 75, None]],
    "connection": "fyers:primary:0",
}  # fmt: skip


def test_subscribe_is_parsed_with_mode_and_id() -> None:
    request = request_parse('{"action":"subscribe","id":7,"symbols":["NSE:SBIN"," NSE:SBIN"],'
                            '"mode":"depth"}')  # fmt: skip
    assert request.action is Action.SUBSCRIBE
    assert request.id == 7
    assert request.symbols == ("NSE:SBIN",)  # trimmed and de-duplicated
    assert request.mode is Mode.DEPTH


def test_mode_defaults_to_ltp() -> None:
    assert request_parse('{"action":"subscribe","symbols":["A"]}').mode is Mode.LTP


@pytest.mark.parametrize(
    ("text", "code", "fragment"),
    [
        ("{not json", ErrorCode.MALFORMED_REQUEST, "not valid JSON"),
        ("[1, 2]", ErrorCode.MALFORMED_REQUEST, "JSON object"),
        ('{"action":"dance"}', ErrorCode.MALFORMED_REQUEST, "unknown action 'dance'"),
        ('{"action":"subscribe"}', ErrorCode.MALFORMED_REQUEST, "'symbols'"),
        ('{"action":"subscribe","symbols":"NSE:SBIN"}', ErrorCode.MALFORMED_REQUEST, "list"),
        ('{"action":"subscribe","symbols":[1]}', ErrorCode.MALFORMED_REQUEST, "string"),
        ('{"action":"subscribe","symbols":["A"],"mode":"full"}', ErrorCode.MALFORMED_REQUEST,
         "unknown mode 'full'"),
        ('{"action":"auth"}', ErrorCode.MALFORMED_REQUEST, "'token'"),
        ('{"action":"ping","id":{"a":1}}', ErrorCode.MALFORMED_REQUEST, "'id'"),
    ],
)  # fmt: skip
def test_bad_requests_name_what_is_wrong(text: str, code: ErrorCode, fragment: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        request_parse(text)
    assert caught.value.code is code
    assert fragment in caught.value.message
    rendered = orjson.loads(caught.value.render())
    assert rendered["type"] == "error" and rendered["code"] == code.value


def test_errors_keep_the_request_id_when_it_was_readable() -> None:
    with pytest.raises(ProtocolError) as caught:
        request_parse('{"action":"subscribe","id":"a1","mode":"x","symbols":["A"]}')
    assert orjson.loads(caught.value.render())["id"] == "a1"


def test_too_many_symbols_is_a_limit_error() -> None:
    symbols = [f"S{i}" for i in range(MAX_SYMBOLS_PER_REQUEST + 1)]
    with pytest.raises(ProtocolError) as caught:
        request_parse(orjson.dumps({"action": "subscribe", "symbols": symbols}))
    assert caught.value.code is ErrorCode.LIMIT_EXCEEDED


def test_binary_or_missing_frames_are_malformed() -> None:
    with pytest.raises(ProtocolError):
        request_parse(None)


def test_ltp_item_has_exact_prices_change_and_times() -> None:
    item = item_render("NSE:SBIN", "fyers", RECORD, Mode.LTP)
    assert item == {
        "symbol": "NSE:SBIN", "provider": "fyers", "ltp": 812.35, "ltq": 10,
        "ltt": 1764052800100, "exchange_ts": 1764052800127, "recv_ts": 1764052800128.2,
        "suspect": False, "close": 800.0, "change": 12.35, "change_pct": 1.54,
    }  # fmt: skip


def test_a_flagged_tick_is_suspect_with_its_checks_and_the_consensus_price() -> None:
    flags = int(Check.JUMP | Check.DISCREPANCY)
    item = item_render("NSE:SBIN", "fyers", {**RECORD, "flags": flags, "consensus": 81240},
                       Mode.LTP)  # fmt: skip
    assert item["suspect"] is True
    assert item["checks"] == ["jump", "discrepancy"]
    assert item["consensus"] == 812.4 and item["ltp"] == 812.35  # the tick's own price stays


def test_quote_adds_book_top_and_session_fields_and_depth_adds_levels() -> None:
    quote = item_render("NSE:SBIN", "fyers", RECORD, Mode.QUOTE)
    assert quote["bid"] == 812.3 and quote["ask"] == 812.4 and quote["volume"] == 123456
    assert quote["open"] == 800.0 and quote["high"] == 820.0 and quote["low"] == 799.5
    assert "bids" not in quote and "connection" not in quote
    depth = item_render("NSE:SBIN", "fyers", RECORD, Mode.DEPTH)
    assert depth["bids"] == [[812.3, 50, 3], [812.25, 10, 1]]
    assert depth["asks"] == [[812.4, 75, None]]


def test_missing_fields_are_left_out_not_null() -> None:
    item = item_render("NSE:X", "upstox", {"ltp": 5, "scale": 2}, Mode.QUOTE)
    assert item == {"symbol": "NSE:X", "provider": "upstox", "ltp": 0.05, "suspect": False}


def test_update_message_splices_each_clients_seq_into_one_rendering() -> None:
    rendered = Rendered("NSE:SBIN", "fyers", RECORD)
    text = update_message([(41, rendered.fragment(Mode.LTP))], conflated=3, ts_ms=1.5)
    body = orjson.loads(text)
    assert body["type"] == "update" and body["conflated"] == 3 and body["ts"] == 1.5
    assert body["data"] == [{"seq": 41, **item_render("NSE:SBIN", "fyers", RECORD, Mode.LTP)}]
    assert rendered.fragment(Mode.LTP) is rendered.fragment(Mode.LTP)  # rendered once


def test_snapshot_item_of_an_unknown_value() -> None:
    item = snapshot_item("NSE:X", seq=0, provider=None, record=None, mode=Mode.LTP,
                         source=None, age=None, stale=True)  # fmt: skip
    assert item == {"symbol": "NSE:X", "provider": None, "seq": 0, "source": None, "age": None,
                    "stale": True}  # fmt: skip
