"""Conformance of the FYERS simulator with the official SDK (fyers-apiv3 3.2.0).

The SDK runs unchanged in its own venv (``fyers_probe.py``), patched only where
providers/FYERS.md §15.2 says, against a real simulator process. Each test asserts what a
user of ``FyersDataSocket`` sees: its callbacks, their order and the values in its ticks,
compared with what the simulator quotes over REST once the market is frozen.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from tests.sdk.conftest import Event, ProbeRun, Simulator

SBIN = "NSE:SBIN-EQ"
NIFTY = "NSE:NIFTY50-INDEX"
BAD = "NSE:NOSUCHSYMBOL-EQ"
SETTLE = 1.0  # seconds for frames already in flight to arrive after the market froze

AUTH_DONE = {"type": "cn", "code": 200, "message": "Authentication done", "s": "ok"}
AUTH_FAILED = {"type": "cn", "code": 11001, "message": "Authentication failed", "s": "error"}
SUBSCRIBED = {"type": "sub", "code": 200, "message": "Subscribed", "s": "ok"}

# What the SDK's scrip (sf) records hold in full mode: map.json's 21 names minus OI, Yhigh
# and Ylow (removed), plus what it adds (FYERS.md §9.3). The simulator sends no Yhigh/Ylow.
SF_KEYS = {
    "ltp", "vol_traded_today", "last_traded_time", "exch_feed_time", "bid_size", "ask_size",
    "bid_price", "ask_price", "last_traded_qty", "tot_buy_qty", "tot_sell_qty",
    "avg_trade_price", "low_price", "high_price", "lower_ckt", "upper_ckt", "open_price",
    "prev_close_price", "type", "symbol", "ch", "chp",
}  # fmt: skip
IF_KEYS = {
    "ltp", "prev_close_price", "exch_feed_time", "high_price", "low_price", "open_price",
    "type", "symbol", "ch", "chp",
}  # fmt: skip
DP_KEYS = {
    f"{side}_{what}{level}"
    for side in ("bid", "ask")
    for what in ("price", "size", "order")
    for level in range(1, 6)
} | {"type", "symbol"}


# --- event predicates ---------------------------------------------------------------------------


def reply(text: str) -> Callable[[Event], bool]:
    """An on_message control reply ("Authentication done", "Subscribed", ...)."""
    return lambda e: (
        e["ev"] == "message" and isinstance(e["data"], dict) and e["data"].get("message") == text
    )


def tick(symbol: str, kind: str) -> Callable[[Event], bool]:
    return lambda e: (
        e["ev"] == "message"
        and isinstance(e["data"], dict)
        and e["data"].get("symbol") == symbol
        and e["data"].get("type") == kind
    )


def error(code: int) -> Callable[[Event], bool]:
    return lambda e: (
        e["ev"] == "error" and isinstance(e["data"], dict) and e["data"]["code"] == code
    )


def printed(text: str) -> Callable[[Event], bool]:
    return lambda e: e["ev"] == "print" and text in e["data"]


def is_connect(e: Event) -> bool:
    return e["ev"] == "connect"


def last_tick(events: list[Event], symbol: str, kind: str) -> dict[str, Any]:
    matching = [e["data"] for e in events if tick(symbol, kind)(e)]
    assert matching, f"no {kind} tick for {symbol}"
    return matching[-1]


def stream(
    fyers_probe: Callable[..., ProbeRun],
    token: str,
    symbols: Sequence[str],
    depth: Sequence[str] = (),
    *extra: str,
    duration: float = 30.0,
) -> ProbeRun:
    return fyers_probe(
        "--token", token, "--symbols", ",".join(symbols), "--depth", ",".join(depth), *extra,
        duration=duration,
    )  # fmt: skip


def jwt(payload: dict[str, Any]) -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    return f"{header}.{b64(json.dumps(payload).encode())}.{b64(b'not-a-signature')}"


def sdk_log_errors(probe: ProbeRun) -> list[str]:
    """ERROR records of the SDK's own log (fyersDataSocket.log in the probe's log_path):
    the SDK swallows parse exceptions there, so a frame it could not read shows up only here."""
    errors = []
    for line in (probe.workdir / "fyersDataSocket.log").read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            errors.append(line)
            continue
        if record.get("level") in ("ERROR", "CRITICAL"):
            errors.append(f"{record.get('location')} {record.get('message')}")
    return errors


def frozen_quotes(sim: Simulator, token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Freeze the market, let in-flight frames land, then read the simulator's REST view."""
    sim.set_market(False)
    time.sleep(SETTLE)
    quotes = sim.fyers_get("/data/quotes", token, symbols=f"{SBIN},{NIFTY}")
    by_symbol = {row["n"]: row["v"] for row in quotes["d"]}
    depth = sim.fyers_get("/data/depth", token, symbol=SBIN, ohlcv_flag="1")["d"][SBIN]
    return by_symbol, depth


# --- streaming ----------------------------------------------------------------------------------


def test_full_mode_connects_subscribes_and_ticks_match_simulator(
    sim: Simulator, fyers_probe: Callable[..., ProbeRun]
) -> None:
    token = sim.token("fyers")
    probe = stream(fyers_probe, token, [SBIN, NIFTY], [SBIN])

    auth = probe.wait_for(reply("Authentication done"), 10, "auth reply")
    assert auth["data"] == AUTH_DONE
    mode = probe.wait_for(reply("Full Mode On"), 5, "mode reply", after=auth["i"])
    assert mode["data"] == {"type": "ful", "code": 200, "message": "Full Mode On", "s": "ok"}
    connected = probe.wait_for(is_connect, 5, "on_connect", after=mode["i"])
    subs = probe.wait_count(reply("Subscribed"), 2, 10, "two subscribe replies")
    assert all(s["data"] == SUBSCRIBED for s in subs)
    assert subs[0]["i"] > connected["i"]
    # A snapshot, then live updates, for each of the three topics.
    probe.wait_count(tick(SBIN, "sf"), 3, 15, "SBIN sf ticks")
    probe.wait_count(tick(NIFTY, "if"), 3, 15, "NIFTY if ticks")
    probe.wait_count(tick(SBIN, "dp"), 3, 15, "SBIN depth ticks")
    assert not probe.select(lambda e: e["ev"] == "error"), probe.describe()

    # The simulator understood every frame the SDK sent (ping, auth, mode, subscribes).
    [conn] = sim.connections("fyers")
    assert conn["authenticated"] is True and conn["lite"] is False
    assert conn["topics"] == 3 and conn["bad_frames"] == 0

    quotes, depth = frozen_quotes(sim, token)
    events = probe.stop()
    assert events[-1]["ev"] == "done"
    closes = [e["data"] for e in events if e["ev"] == "close"]
    assert closes == [{"code": 200, "message": "Connection Closed", "s": "ok"}]
    assert sdk_log_errors(probe) == []  # every frame parsed without an exception

    sf = last_tick(events, SBIN, "sf")
    q = quotes[SBIN]
    assert set(sf) == SF_KEYS
    assert sf["ltp"] == q["lp"]
    assert (sf["bid_price"], sf["ask_price"]) == (q["bid"], q["ask"])
    assert (sf["open_price"], sf["high_price"], sf["low_price"]) == (
        q["open_price"],
        q["high_price"],
        q["low_price"],
    )
    assert sf["prev_close_price"] == q["prev_close_price"]
    assert sf["avg_trade_price"] == q["atp"]
    assert sf["vol_traded_today"] == q["volume"]
    assert sf["exch_feed_time"] == int(q["tt"])
    assert sf["last_traded_time"] == depth["ltt"]
    assert sf["last_traded_qty"] == depth["ltq"]
    assert (sf["tot_buy_qty"], sf["tot_sell_qty"]) == (depth["totalbuyqty"], depth["totalsellqty"])
    assert (sf["bid_size"], sf["ask_size"]) == (
        depth["bids"][0]["volume"],
        depth["ask"][0]["volume"],
    )
    assert sf["ch"] == pytest.approx(q["ch"], abs=1e-9)
    assert sf["chp"] == pytest.approx(q["chp"], abs=0.006)  # SDK: 4 places, REST: 2
    assert (sf["lower_ckt"], sf["upper_ckt"]) == (0, 0)  # the SDK forces both to 0

    ix = last_tick(events, NIFTY, "if")
    q = quotes[NIFTY]
    assert set(ix) == IF_KEYS
    assert ix["ltp"] == q["lp"]
    assert ix["prev_close_price"] == q["prev_close_price"]
    assert (ix["open_price"], ix["high_price"], ix["low_price"]) == (
        q["open_price"],
        q["high_price"],
        q["low_price"],
    )
    assert ix["exch_feed_time"] == int(q["tt"])
    assert ix["ch"] == pytest.approx(q["ch"], abs=0.006)  # SDK rounds index ch to 2 places
    assert ix["chp"] == pytest.approx(q["chp"], abs=0.006)

    dp = last_tick(events, SBIN, "dp")
    assert set(dp) == DP_KEYS
    for level in range(5):
        bid, ask = depth["bids"][level], depth["ask"][level]
        n = level + 1
        assert (dp[f"bid_price{n}"], dp[f"bid_size{n}"], dp[f"bid_order{n}"]) == (
            bid["price"],
            bid["volume"],
            bid["ord"],
        ), f"bid level {n}"
        assert (dp[f"ask_price{n}"], dp[f"ask_size{n}"], dp[f"ask_order{n}"]) == (
            ask["price"],
            ask["volume"],
            ask["ord"],
        ), f"ask level {n}"


def test_lite_mode_emits_ltp_only_records_that_match_simulator(
    sim: Simulator, fyers_probe: Callable[..., ProbeRun]
) -> None:
    token = sim.token("fyers")
    probe = stream(fyers_probe, token, [SBIN, NIFTY], [SBIN], "--lite")

    auth = probe.wait_for(reply("Authentication done"), 10, "auth reply")
    assert auth["data"] == AUTH_DONE
    mode = probe.wait_for(reply("Lite Mode On"), 5, "mode reply", after=auth["i"])
    assert mode["data"] == {"type": "lit", "code": 200, "message": "Lite Mode On", "s": "ok"}
    probe.wait_count(reply("Subscribed"), 2, 10, "two subscribe replies")
    probe.wait_count(tick(SBIN, "sf"), 3, 15, "SBIN lite ticks")
    probe.wait_count(tick(NIFTY, "if"), 3, 15, "NIFTY lite ticks")
    [conn] = sim.connections("fyers")
    assert conn["lite"] is True and conn["topics"] == 3 and conn["bad_frames"] == 0

    quotes, _ = frozen_quotes(sim, token)
    events = probe.stop()
    assert not [e for e in events if e["ev"] == "error"], probe.describe()
    for symbol, kind in ((SBIN, "sf"), (NIFTY, "if")):
        records = [e["data"] for e in events if tick(symbol, kind)(e)]
        # FYERS.md §9.3: lite records are exactly ltp, symbol and type.
        assert all(set(r) == {"ltp", "symbol", "type"} for r in records), records[:3]
        assert records[-1]["ltp"] == quotes[symbol]["lp"], symbol
    # Depth topics produce nothing in lite mode (the SDK's lite output needs an ltp): its
    # log shows a KeyError 'ltp' per depth packet and nothing else.
    assert not [e for e in events if tick(SBIN, "dp")(e)]
    errors = sdk_log_errors(probe)
    assert errors and all("__response_output" in e and "'ltp'" in e for e in errors), errors


@pytest.mark.parametrize("action", ["close_unclean", "close_clean"])
def test_sdk_reconnects_after_server_close_and_resubscribes(
    sim: Simulator, fyers_probe: Callable[..., ProbeRun], action: str
) -> None:
    token = sim.token("fyers")
    probe = stream(fyers_probe, token, [SBIN, NIFTY])
    first = probe.wait_for(tick(SBIN, "sf"), 15, "first SBIN tick")

    closed_at = time.monotonic()
    assert sim.control("fyers", "POST", f"connections/{action}", {"connection": "all"}) == {
        "affected": 1
    }
    attempt = probe.wait_for(
        printed("Attempting reconnect 1 of 5..."), 5, "reconnect notice", after=first["i"]
    )
    auth = probe.wait_for(reply("Authentication done"), 12, "second auth", after=attempt["i"])
    again = probe.wait_for(is_connect, 5, "second on_connect", after=auth["i"])
    # FYERS.md §11: 5 s before the first attempt, then connect() sleeps 2 s before on_connect.
    assert 5.0 <= again["t"] - closed_at < 12.0
    sub = probe.wait_for(reply("Subscribed"), 5, "re-subscription", after=again["i"])
    probe.wait_count(
        lambda e: e["i"] > sub["i"] and tick(SBIN, "sf")(e), 2, 10, "SBIN ticks after reconnect"
    )
    probe.wait_for(tick(NIFTY, "if"), 10, "NIFTY tick after reconnect", after=sub["i"])
    [conn] = sim.connections("fyers")
    assert conn["authenticated"] is True and conn["topics"] == 2
    events = probe.stop()
    errors = [e["data"] for e in events if e["ev"] == "error"]
    if action == "close_unclean":
        # A dropped TCP connection reaches on_error as websocket-client's own exception.
        assert errors == [
            {"exception": "WebSocketConnectionClosedException",
             "text": "Connection to remote host was lost."}
        ]  # fmt: skip
    else:
        assert errors == []


# --- errors -------------------------------------------------------------------------------------


def test_symbol_cap_is_reported_with_the_sdk_code_51001(
    sim: Simulator, fyers_probe: Callable[..., ProbeRun]
) -> None:
    assert sim.control("fyers", "POST", "caps", {"topics": 1}) == {"topics": 1}
    token = sim.token("fyers")
    probe = stream(fyers_probe, token, [SBIN, NIFTY])

    capped = probe.wait_for(error(51001), 10, "symbol-limit error")
    assert capped["data"] == {
        "type": "sub",
        "code": 51001,
        "message": "Symbol limit exceeded",
        "s": "error",
    }
    time.sleep(1.0)
    assert not probe.select(reply("Subscribed"))
    assert not probe.select(lambda e: tick(SBIN, "sf")(e) or tick(NIFTY, "if")(e))
    [conn] = sim.connections("fyers")
    assert conn["topics"] == 0

    # One symbol fits the cap.
    probe.send({"cmd": "subscribe", "symbols": [SBIN]})
    sub = probe.wait_for(reply("Subscribed"), 5, "subscribe reply within the cap")
    probe.wait_for(tick(SBIN, "sf"), 10, "SBIN tick", after=sub["i"])
    probe.stop()


def test_rejected_auth_gives_11001(sim: Simulator, fyers_probe: Callable[..., ProbeRun]) -> None:
    token = sim.token("fyers")
    assert sim.control("fyers", "POST", "auth", {"reject": True}) == {"reject": True}
    probe = stream(fyers_probe, token, [SBIN])

    failed = probe.wait_for(error(11001), 10, "auth failure")
    assert failed["data"] == AUTH_FAILED
    probe.wait_for(is_connect, 5, "on_connect (the SDK calls it regardless)")
    # subscribe() in on_connect: the symbol-token call is refused too, which the SDK
    # reports as -300 with the server's message (FYERS.md §12).
    refused = probe.wait_for(error(-300), 5, "symbol-token refusal", after=failed["i"])
    assert refused["data"]["type"] == "sub" and refused["data"]["message"]
    time.sleep(1.0)
    events = probe.stop()
    assert not [e for e in events if reply("Authentication done")(e)]
    assert not [e for e in events if tick(SBIN, "sf")(e)]


def test_token_expired_on_the_server_gives_11001(
    sim: Simulator, fyers_probe: Callable[..., ProbeRun]
) -> None:
    token = sim.token("fyers")
    assert sim.control("fyers", "POST", "tokens/expire", {"token": token}) == {
        "dropped_connections": 0
    }
    probe = fyers_probe("--token", token, "--scenario", "connect", duration=15)
    failed = probe.wait_for(error(11001), 10, "auth failure")
    assert failed["data"] == AUTH_FAILED
    events = probe.stop()
    assert not [e for e in events if reply("Authentication done")(e)]


def test_token_expired_while_connected_drops_and_reconnect_fails_auth(
    sim: Simulator, fyers_probe: Callable[..., ProbeRun]
) -> None:
    token = sim.token("fyers")
    probe = stream(fyers_probe, token, [SBIN])
    first = probe.wait_for(tick(SBIN, "sf"), 15, "first SBIN tick")
    assert sim.control("fyers", "POST", "tokens/expire", {"token": token}) == {
        "dropped_connections": 1
    }
    attempt = probe.wait_for(
        printed("Attempting reconnect 1 of 5..."), 5, "reconnect notice", after=first["i"]
    )
    failed = probe.wait_for(error(11001), 12, "auth failure on reconnect", after=attempt["i"])
    assert failed["data"] == AUTH_FAILED
    assert not probe.select(reply("Authentication done"), after=attempt["i"])
    probe.stop()


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        (
            "exp_in_past",
            {"type": "cn", "code": -99, "message": "Token is expired", "s": "error"},
        ),
        (
            "not_a_jwt",
            {"type": "cn", "code": -300, "message": "Please provide valid token", "s": "error"},
        ),
    ],
)
def test_client_side_token_errors_never_reach_the_server(
    sim: Simulator, fyers_probe: Callable[..., ProbeRun], kind: str, expected: dict[str, Any]
) -> None:
    if kind == "exp_in_past":
        token = "SIMAPP-100:" + jwt({"exp": int(time.time()) - 3600, "hsm_key": "0" * 32})
    else:
        token = "SIMAPP-100:definitely-not-a-jwt"
    probe = stream(fyers_probe, token, [SBIN], duration=15)
    failed = probe.wait_for(lambda e: e["ev"] == "error", 10, "token error")
    assert failed["data"] == expected
    probe.wait_for(is_connect, 5, "on_connect (the SDK calls it regardless)")
    time.sleep(0.5)
    assert sim.connections("fyers") == []
    events = probe.stop()
    assert [e["data"] for e in events if e["ev"] == "error"] == [expected]


def test_invalid_symbol_and_index_depth_are_rejected_but_valid_ones_stream(
    sim: Simulator, fyers_probe: Callable[..., ProbeRun]
) -> None:
    token = sim.token("fyers")
    probe = stream(fyers_probe, token, [SBIN, BAD], [NIFTY])
    invalid = probe.wait_for(error(-300), 10, "invalid-symbol error")
    assert invalid["data"] == {
        "code": -300,
        "message": "Please provide a valid symbol",
        "s": "error",
        "type": "sub",
        "invalid_symbols": [BAD],
    }
    sub = probe.wait_for(reply("Subscribed"), 5, "subscription of the valid symbol")
    probe.wait_count(tick(SBIN, "sf"), 2, 10, "SBIN ticks")
    index_depth = probe.wait_for(error(-300), 10, "index-depth error", after=invalid["i"])
    assert index_depth["data"] == {
        "code": -300,
        "message": "Index does not have market depth",
        "s": "error",
        "type": "sub",
    }
    assert sub["data"] == SUBSCRIBED
    [conn] = sim.connections("fyers")
    assert conn["topics"] == 1
    probe.stop()


def test_unsubscribe_stops_that_symbol_only(
    sim: Simulator, fyers_probe: Callable[..., ProbeRun]
) -> None:
    token = sim.token("fyers")
    probe = stream(fyers_probe, token, [SBIN, NIFTY])
    probe.wait_count(tick(SBIN, "sf"), 2, 15, "SBIN ticks")
    probe.wait_count(tick(NIFTY, "if"), 2, 15, "NIFTY ticks")
    probe.send({"cmd": "unsubscribe", "symbols": [SBIN]})
    done = probe.wait_for(reply("Unsubscribed"), 10, "unsubscribe reply")
    assert done["data"] == {"type": "unsub", "code": 200, "message": "Unsubscribed", "s": "ok"}
    probe.wait_count(
        lambda e: e["i"] > done["i"] and tick(NIFTY, "if")(e), 3, 10, "NIFTY ticks afterwards"
    )
    assert not probe.select(tick(SBIN, "sf"), after=done["i"])
    [conn] = sim.connections("fyers")
    assert conn["topics"] == 1
    probe.stop()


def test_topic_ids_of_unsubscribed_topics_are_not_reused(
    sim: Simulator, fyers_probe: Callable[..., ProbeRun]
) -> None:
    """FYERS.md §15.1 item 8. The SDK never forgets a topic id, and looks scrip ids up
    before index ids: a reused id would make it label NIFTY's updates as SBIN ticks."""
    token = sim.token("fyers")
    probe = stream(fyers_probe, token, [SBIN])
    probe.wait_count(tick(SBIN, "sf"), 2, 15, "SBIN ticks")
    probe.send({"cmd": "unsubscribe", "symbols": [SBIN]})
    done = probe.wait_for(reply("Unsubscribed"), 10, "unsubscribe reply")
    probe.send({"cmd": "subscribe", "symbols": [NIFTY]})
    sub = probe.wait_for(reply("Subscribed"), 10, "subscribe reply", after=done["i"])
    probe.wait_count(
        lambda e: e["i"] > sub["i"] and tick(NIFTY, "if")(e), 4, 10, "NIFTY snapshot and updates"
    )
    events = probe.stop()
    assert not [e for e in events[done["i"] + 1 :] if tick(SBIN, "sf")(e)], probe.describe()
    assert sdk_log_errors(probe) == []


def test_fyers_model_rest_quotes_and_depth(
    sim: Simulator, fyers_probe: Callable[..., ProbeRun]
) -> None:
    token = sim.token("fyers")
    quotes, depth = frozen_quotes(sim, token)
    probe = fyers_probe(
        "--token", token, "--scenario", "rest", "--symbols", f"{SBIN},{NIFTY}", "--depth", SBIN,
        duration=15,
    )  # fmt: skip
    events = probe.finish(30)
    rest = {e["data"]["call"]: e["data"]["response"] for e in events if e["ev"] == "rest"}
    assert rest["quotes"]["s"] == "ok" and rest["quotes"]["code"] == 200
    assert {row["n"]: row["v"] for row in rest["quotes"]["d"]} == quotes
    assert rest["depth"]["s"] == "ok"
    assert rest["depth"]["d"] == {SBIN: depth}


SAMPLE_INDICES = [
    "NSE:NIFTY50-INDEX", "NSE:NIFTYBANK-INDEX", "NSE:FINNIFTY-INDEX", "NSE:INDIAVIX-INDEX",
    "NSE:NIFTYIT-INDEX", "NSE:NIFTYNXT50-INDEX", "NSE:NIFTYMIDCAP50-INDEX",
    "NSE:NIFTYAUTO-INDEX", "NSE:NIFTYPHARMA-INDEX", "NSE:NIFTYFMCG-INDEX",
    "NSE:NIFTYMETAL-INDEX", "BSE:SENSEX-INDEX", "BSE:BANKEX-INDEX", "BSE:BSE100-INDEX",
]  # fmt: skip


@pytest.mark.parametrize("index_map", ["download", "empty"])
def test_every_sample_index_gets_a_snapshot_whatever_name_map_the_sdk_uses(
    sim: Simulator, fyers_probe: Callable[..., ProbeRun], index_map: str
) -> None:
    """``download``: the SDK loads the simulator's index_hsm_mapping.json; ``empty``: it
    falls back to its bundled map.json. Either way its ``if|…|<name>`` topics must be ones
    the simulator knows, or the SDK is told "Subscribed" and then never gets data."""
    token = sim.token("fyers")
    probe = stream(fyers_probe, token, SAMPLE_INDICES, [], "--index-map", index_map)
    sub = probe.wait_for(reply("Subscribed"), 10, "subscribe reply")
    for symbol in SAMPLE_INDICES:
        probe.wait_for(tick(symbol, "if"), 5, f"snapshot of {symbol}", after=sub["i"])
    [conn] = sim.connections("fyers")
    assert conn["topics"] == len(SAMPLE_INDICES)
    probe.stop()


def test_channel_switch_pauses_only_the_previous_channel(
    sim: Simulator, fyers_probe: Callable[..., ProbeRun]
) -> None:
    """FYERS.md §7.4 / §15.1 item 9: pause and resume act on one channel's topics.

    Subscribing on channel 12 makes the SDK pause channel 11 first; channel_resume(11)
    pauses 12 and resumes 11. The topics of the channel that is not paused keep streaming.
    """
    token = sim.token("fyers")
    probe = stream(fyers_probe, token, [SBIN])  # channel 11, the SDK's default
    probe.wait_count(tick(SBIN, "sf"), 2, 15, "SBIN ticks on channel 11")

    probe.send({"cmd": "subscribe", "symbols": [NIFTY], "channel": 12})
    paused = probe.wait_for(reply("Channel Paused"), 10, "pause of channel 11")
    assert paused["data"] == {"type": "cp", "code": 200, "message": "Channel Paused", "s": "ok"}
    sub = probe.wait_for(reply("Subscribed"), 10, "subscription on channel 12", after=paused["i"])
    probe.wait_count(
        lambda e: e["i"] > sub["i"] and tick(NIFTY, "if")(e),
        3,
        6,
        "NIFTY snapshot and updates on the active channel 12",
    )
    assert not probe.select(tick(SBIN, "sf"), after=paused["i"]), "channel 11 is paused"

    probe.send({"cmd": "channel_resume", "channel": 11})
    resumed = probe.wait_for(reply("Channel Resumed"), 10, "resume of channel 11")
    assert resumed["data"] == {"type": "cr", "code": 200, "message": "Channel Resumed", "s": "ok"}
    probe.wait_count(
        lambda e: e["i"] > resumed["i"] and tick(SBIN, "sf")(e), 2, 6, "SBIN ticks again"
    )
    assert not probe.select(tick(NIFTY, "if"), after=resumed["i"]), "channel 12 is paused"
    probe.stop()
