"""Conformance of the Upstox simulator with the official SDK (upstox-python-sdk 2.30.0).

``MarketDataStreamerV3`` and the REST APIs run unchanged in their own venv
(``upstox_probe.py``), pointed at a real simulator process as providers/UPSTOX.md §10.2
shows. Each test asserts what a user of the SDK sees: its events, their order, and the
decoded values (``MessageToDict``: int64 as strings, defaults omitted), compared with the
simulator's REST quotes once the market is frozen.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.sdk.conftest import Event, ProbeRun, Simulator

SBIN = "NSE_EQ|INE062A01020"
NIFTY = "NSE_INDEX|Nifty 50"
OPTION = "NSE_FO|35009"  # NIFTY 23000 CE 29 DEC 26, from the sample master
SETTLE = 1.0  # seconds for frames already in flight to arrive after the market froze


# --- event predicates ---------------------------------------------------------------------------


def is_event(name: str, streamer: int = 0) -> Callable[[Event], bool]:
    return lambda e: e["ev"] == name and e.get("s", 0) == streamer


def is_message(streamer: int = 0) -> Callable[[Event], bool]:
    return is_event("message", streamer)


def is_market_info(e: Event) -> bool:
    return e["ev"] == "message" and e["data"].get("type") == "market_info"


def has_feed(key: str, streamer: int = 0) -> Callable[[Event], bool]:
    return lambda e: is_message(streamer)(e) and key in e["data"].get("feeds", {})


def last_feed(events: list[Event], key: str) -> dict[str, Any]:
    feeds = [e["data"]["feeds"][key] for e in events if has_feed(key)(e)]
    assert feeds, f"no feed for {key}"
    return feeds[-1]


def stream(
    upstox_probe: Callable[..., ProbeRun],
    token: str,
    keys: list[str],
    mode: str,
    *extra: str,
    duration: float = 30.0,
) -> ProbeRun:
    return upstox_probe(
        "--token", token, "--keys", ";".join(keys), "--mode", mode, *extra, duration=duration
    )  # fmt: skip


def by_token(rows: dict[str, Any]) -> dict[str, Any]:
    """REST quote data is keyed "SEGMENT:symbol"; index it by the instrument key."""
    return {row["instrument_token"]: row for row in rows.values()}


def frozen_rest(sim: Simulator, token: str, keys: list[str]) -> tuple[dict[str, Any], ...]:
    sim.set_market(False)
    time.sleep(SETTLE)
    joined = ",".join(keys)
    full = by_token(sim.upstox_get("/v3/market-quote/quotes", token, instrument_key=joined))
    ltp = by_token(sim.upstox_get("/v3/market-quote/ltp", token, instrument_key=joined))
    return full, ltp


def check_ltpc(ltpc: dict[str, Any], full: dict[str, Any], ltp: dict[str, Any]) -> None:
    assert ltpc["ltp"] == full["last_price"] == ltp["last_price"]
    assert ltpc.get("cp", 0.0) == full["prev_close_price"] == ltp["cp"]
    assert isinstance(ltpc["ltt"], str)  # int64 -> string in MessageToDict
    assert ltpc["ltt"] == full["last_trade_time"]
    assert ltpc.get("ltq", "0") == str(ltp["ltq"])


def check_day_bar(market_ohlc: dict[str, Any], full: dict[str, Any]) -> None:
    bars = {bar["interval"]: bar for bar in market_ohlc["ohlc"]}
    assert set(bars) == {"1d", "I1"}
    day = bars["1d"]
    ohlc = full["ohlc"]
    assert (day["open"], day["high"], day["low"]) == (ohlc["open"], ohlc["high"], ohlc["low"])
    assert day["close"] == full["last_price"]
    assert day.get("vol", "0") == str(full["volume"])


# --- streaming ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "keys"),
    [
        ("ltpc", [SBIN, NIFTY]),
        ("full", [SBIN, NIFTY]),
        ("option_greeks", [OPTION]),
        ("full_d30", [SBIN]),
    ],
)
def test_stream_market_info_snapshot_and_live_values_match_simulator(
    sim: Simulator, upstox_probe: Callable[..., ProbeRun], mode: str, keys: list[str]
) -> None:
    token = sim.token("upstox")
    probe = stream(upstox_probe, token, keys, mode)

    opened = probe.wait_for(is_event("open"), 10, "open event")
    info = probe.wait_for(is_message(), 5, "first message", after=opened["i"])
    assert info["data"]["type"] == "market_info", info
    statuses = info["data"]["marketInfo"]["segmentStatus"]
    assert {statuses[s] for s in ("NSE_EQ", "NSE_INDEX", "NSE_FO")} == {"NORMAL_OPEN"}
    assert info["data"]["currentTs"].isdigit()
    snapshot = probe.wait_for(is_message(), 5, "snapshot", after=info["i"])
    assert snapshot["data"]["type"] == "live_feed"  # the V3 docs' label (UPSTOX.md §6.3)
    assert set(snapshot["data"]["feeds"]) == set(keys)
    for key in keys:
        probe.wait_for(
            lambda e, key=key: e["i"] > snapshot["i"] and has_feed(key)(e), 15, f"update of {key}"
        )
    [conn] = sim.connections("upstox")
    assert conn["subscriptions"] == {mode: len(keys)} and conn["bad_frames"] == 0

    full, ltp = frozen_rest(sim, token, keys)
    events = probe.stop()
    assert not [e for e in events if e["ev"] in ("error", "reconnecting")], probe.describe()
    messages = [e["data"] for e in events if is_message()(e)]
    assert all(m["type"] == "live_feed" for m in messages[1:])
    assert all(m["currentTs"].isdigit() for m in messages)

    for key in keys:
        feed = last_feed(events, key)
        f, p = full[key], ltp[key]
        if mode == "ltpc":
            assert set(feed) == {"ltpc"}  # requestMode ltpc is enum 0: omitted
            check_ltpc(feed["ltpc"], f, p)
        elif mode == "full" and key == NIFTY:
            assert feed["requestMode"] == "full_d5"
            index = feed["fullFeed"]["indexFF"]
            assert set(index) == {"ltpc", "marketOHLC"}
            check_ltpc(index["ltpc"], f, p)
            check_day_bar(index["marketOHLC"], f)
        elif mode in ("full", "full_d30"):
            assert feed["requestMode"] == {"full": "full_d5", "full_d30": "full_d30"}[mode]
            market = feed["fullFeed"]["marketFF"]
            check_ltpc(market["ltpc"], f, p)
            levels = market["marketLevel"]["bidAskQuote"]
            assert len(levels) == {"full": 5, "full_d30": 30}[mode]
            # REST full quotes carry 5 levels: the feed's first five must equal them.
            for level, bid, ask in zip(levels, f["depth"]["buy"], f["depth"]["sell"]):  # noqa: B905
                assert (level.get("bidQ", "0"), level.get("bidP", 0.0)) == (
                    str(bid["quantity"]),
                    bid["price"],
                )
                assert (level.get("askQ", "0"), level.get("askP", 0.0)) == (
                    str(ask["quantity"]),
                    ask["price"],
                )
            assert market["optionGreeks"] == {}  # present but empty for an equity
            check_day_bar(market["marketOHLC"], f)
            assert market["atp"] == f["average_price"]
            assert market["vtt"] == str(f["volume"])
            assert (market["tbq"], market["tsq"]) == (
                f["total_buy_quantity"],
                f["total_sell_quantity"],
            )
        else:
            assert feed["requestMode"] == "option_greeks"
            first = feed["firstLevelWithGreeks"]
            check_ltpc(first["ltpc"], f, p)
            bid, ask = f["depth"]["buy"][0], f["depth"]["sell"][0]
            quote = first["firstDepth"]
            assert (quote["bidQ"], quote["bidP"]) == (str(bid["quantity"]), bid["price"])
            assert (quote["askQ"], quote["askP"]) == (str(ask["quantity"]), ask["price"])
            assert first["vtt"] == str(f["volume"])
            assert first.get("oi", 0.0) == f["oi"]
            assert isinstance(first["optionGreeks"], dict)


def test_change_mode_and_unsubscribe(sim: Simulator, upstox_probe: Callable[..., ProbeRun]) -> None:
    token = sim.token("upstox")
    probe = stream(upstox_probe, token, [SBIN, NIFTY], "ltpc")
    probe.wait_count(has_feed(SBIN), 2, 15, "SBIN ltpc feeds")

    probe.send({"cmd": "change_mode", "keys": [SBIN], "mode": "full"})
    command = probe.wait_for(lambda e: e["ev"] == "command", 5, "command echo")
    full = probe.wait_for(
        lambda e: has_feed(SBIN)(e) and "fullFeed" in e["data"]["feeds"][SBIN],
        10,
        "SBIN in full mode",
        after=command["i"],
    )
    assert full["data"]["feeds"][SBIN]["requestMode"] == "full_d5"
    later = probe.wait_count(
        lambda e: e["i"] > full["i"] and has_feed(SBIN)(e), 2, 10, "more SBIN feeds"
    )
    assert all("fullFeed" in e["data"]["feeds"][SBIN] for e in later)
    assert sim.connections("upstox")[0]["subscriptions"] == {"full": 1, "ltpc": 1}

    probe.send({"cmd": "unsubscribe", "keys": [SBIN]})
    unsub = probe.wait_for(lambda e: e["ev"] == "command", 5, "command echo", after=later[-1]["i"])
    time.sleep(0.5)  # feeds the server sent before it read the request may still arrive
    mark = probe.events[-1]["i"]
    probe.wait_count(
        lambda e: e["i"] > mark and has_feed(NIFTY)(e), 3, 10, "NIFTY feeds after unsubscribe"
    )
    assert not probe.select(has_feed(SBIN), after=mark), probe.describe()
    assert unsub["data"] == {"cmd": "unsubscribe", "keys": [SBIN]}
    assert sim.connections("upstox")[0]["subscriptions"] == {"ltpc": 1}
    probe.stop()


@pytest.mark.parametrize("sim", [["--upstox-snapshot", "initial"]], indirect=True)
def test_initial_feed_snapshot_reaches_the_sdk_without_a_type_key(
    sim: Simulator, upstox_probe: Callable[..., ProbeRun]
) -> None:
    """UPSTOX.md §6.3: ``initial_feed`` is enum 0, so MessageToDict prints no ``type``."""
    token = sim.token("upstox")
    probe = stream(upstox_probe, token, [SBIN, NIFTY], "ltpc")
    opened = probe.wait_for(is_event("open"), 10, "open event")
    info = probe.wait_for(is_message(), 5, "market_info", after=opened["i"])
    assert is_market_info(info)
    snapshot = probe.wait_for(is_message(), 5, "snapshot", after=info["i"])
    assert "type" not in snapshot["data"]
    assert set(snapshot["data"]["feeds"]) == {SBIN, NIFTY}
    assert snapshot["data"]["currentTs"].isdigit()
    live = probe.wait_for(is_message(), 10, "a live update", after=snapshot["i"])
    assert live["data"]["type"] == "live_feed"
    probe.stop()


# --- reconnection -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "body"), [("close_clean", {"code": 1011}), ("close_unclean", {})]
)
def test_abnormal_close_reconnects_at_once_and_resubscribes(
    sim: Simulator, upstox_probe: Callable[..., ProbeRun], action: str, body: dict[str, Any]
) -> None:
    token = sim.token("upstox")
    probe = stream(upstox_probe, token, [SBIN, NIFTY], "ltpc")
    first = probe.wait_for(has_feed(SBIN), 15, "first SBIN feed")

    closed_at = time.monotonic()
    done = sim.control("upstox", "POST", f"connections/{action}", {"connection": "all", **body})
    assert done == {"affected": 1}
    attempt = probe.wait_for(is_event("reconnecting"), 5, "reconnecting", after=first["i"])
    assert attempt["data"] == "Auto reconnect attempt 1/5"
    opened = probe.wait_for(is_event("open"), 5, "second open", after=attempt["i"])
    assert opened["t"] - closed_at < 3.0  # immediately, not after the 1 s retry interval
    info = probe.wait_for(is_message(), 5, "market_info again", after=opened["i"])
    assert is_market_info(info)
    snapshot = probe.wait_for(is_message(), 5, "snapshot again", after=info["i"])
    assert set(snapshot["data"]["feeds"]) == {SBIN, NIFTY}  # the SDK re-subscribed both
    probe.wait_for(has_feed(SBIN), 10, "live SBIN feed", after=snapshot["i"])

    between = probe.select(lambda e: e["i"] < attempt["i"], after=first["i"])
    closes = [e["data"] for e in between if e["ev"] == "close"]
    errors = [e["data"] for e in between if e["ev"] == "error"]
    if action == "close_clean":
        assert closes == [[1011, "closed by simulator"]]
    else:
        assert len(closes) == 1
    assert len(errors) == 1 and errors[0]["exception"].startswith("WebSocket")
    [conn] = sim.connections("upstox")
    assert conn["subscriptions"] == {"ltpc": 2}
    probe.stop()


def test_close_with_1000_does_not_reconnect(
    sim: Simulator, upstox_probe: Callable[..., ProbeRun]
) -> None:
    token = sim.token("upstox")
    probe = stream(upstox_probe, token, [SBIN], "ltpc")
    first = probe.wait_for(has_feed(SBIN), 15, "first SBIN feed")
    assert sim.control("upstox", "POST", "connections/close_clean", {"connection": "all"}) == {
        "affected": 1
    }
    close = probe.wait_for(is_event("close"), 5, "close event", after=first["i"])
    assert close["data"] == [1000, "closed by simulator"]
    time.sleep(3.0)
    events = probe.stop()
    assert not [e for e in events if e["ev"] == "reconnecting"], probe.describe()
    # websocket-client reports even a normal close on the error event; the SDK ignores it.
    errors = [e["data"] for e in events if e["ev"] == "error"]
    assert [(e["exception"], e["text"]) for e in errors] == [
        (
            "WebSocketConnectionClosedException",
            "Connection closed normally (code 1000): closed by simulator",
        )
    ]
    assert len([e for e in events if e["ev"] == "open"]) == 1
    assert sim.connections("upstox") == []


def test_handshake_401_errors_and_never_retries(
    sim: Simulator, upstox_probe: Callable[..., ProbeRun]
) -> None:
    probe = stream(upstox_probe, "sim-not-a-valid-token", [SBIN], "ltpc")
    failed = probe.wait_for(is_event("error"), 10, "handshake error")
    assert "401 Unauthorized" in failed["data"]["text"]
    probe.wait_for(is_event("close"), 5, "close event", after=failed["i"])
    time.sleep(3.0)
    events = probe.stop()
    assert [e["ev"] for e in events if e["ev"] in ("open", "reconnecting", "error")] == ["error"]


def test_handshake_403_retries_five_times_then_stops(
    sim: Simulator, upstox_probe: Callable[..., ProbeRun]
) -> None:
    token = sim.token("upstox")
    assert sim.control("upstox", "POST", "handshake", {"status": 403, "count": 6}) == {"pending": 6}
    probe = stream(upstox_probe, token, [SBIN], "ltpc")
    stopped = probe.wait_for(is_event("autoReconnectStopped"), 20, "autoReconnectStopped")
    assert stopped["data"] == "retryCount of 5 exhausted."
    events = probe.stop()
    errors = [e["data"]["text"] for e in events if e["ev"] == "error"]
    assert len(errors) == 6 and all("403 Forbidden" in text for text in errors), errors
    attempts = [e["data"] for e in events if e["ev"] == "reconnecting"]
    assert attempts == [f"Auto reconnect attempt {n}/5" for n in range(1, 6)]
    assert not [e for e in events if e["ev"] == "open"]
    # All six upgrades were consumed: the next one succeeds.
    assert sim.control("upstox", "POST", "handshake", {"status": 403, "count": 0}) == {"pending": 0}


def test_connection_limit_refuses_the_second_streamer_with_403(
    sim: Simulator, upstox_probe: Callable[..., ProbeRun]
) -> None:
    assert sim.control("upstox", "POST", "caps", {"connections": 1})["connections"] == 1
    token = sim.token("upstox")
    probe = stream(upstox_probe, token, [SBIN], "ltpc", "--streamers", "2", "--stagger", "1.5")
    probe.wait_for(has_feed(SBIN, 0), 15, "first streamer's feed")
    refused = probe.wait_for(is_event("error", 1), 10, "second streamer's handshake error")
    assert "403 Forbidden" in refused["data"]["text"]
    retry = probe.wait_for(is_event("reconnecting", 1), 5, "second streamer retries")
    assert retry["data"] == "Auto reconnect attempt 1/5"
    stopped = probe.wait_for(is_event("autoReconnectStopped", 1), 15, "second streamer gives up")
    # The first streamer kept its connection and its data throughout.
    probe.wait_for(has_feed(SBIN, 0), 5, "first streamer still fed", after=stopped["i"])
    events = probe.stop()
    assert not [e for e in events if e.get("s") == 1 and e["ev"] in ("open", "message")]
    assert not [e for e in events if e.get("s") == 0 and e["ev"] in ("error", "reconnecting")]
    assert len(sim.connections("upstox")) <= 1


def test_close_clean_control_call_returns_promptly(
    sim: Simulator, upstox_probe: Callable[..., ProbeRun]
) -> None:
    """/_sim/connections/close_clean must not hold the HTTP call for the closing handshake.

    websocket-client answers the server's close frame but leaves its TCP socket open (it
    never shuts it down when the server closed first), so a handler that awaits
    ``socket.close()`` waits for websockets' close_timeout (10 s) on every SDK connection.
    """
    token = sim.token("upstox")
    probe = stream(upstox_probe, token, [SBIN], "ltpc")
    probe.wait_for(has_feed(SBIN), 15, "first SBIN feed")
    started = time.monotonic()
    body = {"connection": "all", "code": 1011}
    assert sim.control("upstox", "POST", "connections/close_clean", body) == {"affected": 1}
    elapsed = time.monotonic() - started
    probe.wait_for(is_event("reconnecting"), 5, "the SDK's reconnect")
    probe.stop()
    assert elapsed < 2.0, f"close_clean took {elapsed:.1f} s to answer"


# --- REST through the SDK -----------------------------------------------------------------------


def test_sdk_rest_authorize_and_quotes_return_simulator_values(
    sim: Simulator, upstox_probe: Callable[..., ProbeRun]
) -> None:
    token = sim.token("upstox")
    keys = [SBIN, NIFTY, OPTION]
    sim.set_market(False)
    time.sleep(0.2)
    joined = ",".join(keys)
    raw = {
        "ltp": sim.upstox_get("/v3/market-quote/ltp", token, instrument_key=joined),
        "ohlc": sim.upstox_get(
            "/v3/market-quote/ohlc", token, instrument_key=joined, interval="1d"
        ),
        "full": sim.upstox_get("/v3/market-quote/quotes", token, instrument_key=joined),
        "option_greek": sim.upstox_get(
            "/v3/market-quote/option-greek", token, instrument_key=joined
        ),
    }
    probe = upstox_probe(
        "--token", token, "--scenario", "rest", "--keys", ";".join(keys),
        "--calls", "authorize_v3,ltp,ohlc,full,option_greek", duration=20,
    )  # fmt: skip
    events = probe.finish(30)
    rest = {e["data"]["call"]: e["data"] for e in events if e["ev"] == "rest"}
    assert set(rest) == {"authorize_v3", *raw}, events

    # WebsocketApi.get_market_data_feed_authorize_v3 -> a one-time feeder URL.
    auth = rest["authorize_v3"]["response"]
    assert auth["status"] == "success"
    url = auth["data"]["authorized_redirect_uri"]
    ws_port = sim.info["upstox"]["ws_port"]
    assert url.startswith(f"ws://127.0.0.1:{ws_port}/feeds?requestId=")
    assert "&code=" in url

    for call in raw:
        response = rest[call]["response"]
        assert response["status"] == "success", call
        assert set(response["data"]) == set(raw[call]), call
        for name, row in response["data"].items():
            expected = raw[call][name]
            # The SDK's models keep every field the simulator sent, with the same values
            # (fields the simulator does not send come back as None).
            for field, value in expected.items():
                got = row[field]
                if isinstance(value, dict):
                    got = {k: v for k, v in got.items() if v is not None}
                assert got == value, f"{call} {name} {field}"

    # One market behind both providers: FYERS quotes the same SBIN price.
    fyers_token = sim.token("fyers")
    fyers = sim.fyers_get("/data/quotes", fyers_token, symbols="NSE:SBIN-EQ")["d"][0]["v"]
    sbin = by_token(rest["ltp"]["response"]["data"])[SBIN]
    assert sbin["last_price"] == fyers["lp"]


def test_sdk_v2_market_quote_api_reaches_simulator(
    sim: Simulator, upstox_probe: Callable[..., ProbeRun]
) -> None:
    """SDK 2.30.0 still ships the V2 ``MarketQuoteApi``: ``get_full_market_quote``, ``ltp``
    and ``get_market_quote_ohlc`` send ``GET /v2/market-quote/{quotes,ltp,ohlc}?symbol=<keys>``
    with an ``Api-Version: 2.0`` header (the V2 name of the key list is ``symbol``; the V3
    calls and the current docs say ``instrument_key``)."""
    token = sim.token("upstox")
    keys = [SBIN, NIFTY]
    sim.set_market(False)
    time.sleep(0.2)
    joined = ",".join(keys)
    full_v3 = by_token(sim.upstox_get("/v3/market-quote/quotes", token, instrument_key=joined))
    ohlc_v3 = by_token(
        sim.upstox_get("/v3/market-quote/ohlc", token, instrument_key=joined, interval="1d")
    )
    probe = upstox_probe(
        "--token", token, "--scenario", "rest", "--keys", ";".join(keys),
        "--calls", "full_v2,ltp_v2,ohlc_v2", duration=20,
    )  # fmt: skip
    events = probe.finish(30)
    rest = {e["data"]["call"]: e["data"] for e in events if e["ev"] == "rest"}
    failures = {
        call: (r.get("status"), str(r.get("body"))[:200])
        for call, r in rest.items()
        if "response" not in r
    }
    assert failures == {}, failures

    full = by_token(rest["full_v2"]["response"]["data"])
    ltp = by_token(rest["ltp_v2"]["response"]["data"])
    ohlc = by_token(rest["ohlc_v2"]["response"]["data"])
    for key in keys:
        assert full[key]["last_price"] == ltp[key]["last_price"] == full_v3[key]["last_price"]
        assert full[key]["depth"] == full_v3[key]["depth"]
        assert full[key]["ohlc"] == {
            k: full_v3[key]["ohlc"][k] for k in ("open", "high", "low", "close")
        }
        live = ohlc_v3[key]["live_ohlc"]
        assert ohlc[key]["last_price"] == full_v3[key]["last_price"]
        day = ohlc[key]["ohlc"]
        assert (day["open"], day["high"], day["low"]) == (live["open"], live["high"], live["low"])
