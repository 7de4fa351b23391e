"""Drive the official Upstox SDK (upstox-python-sdk) against a simulator; report what it does.

Runs INSIDE the upstox SDK virtualenv (tests/sdk/venvs.py): it imports the SDK and the
standard library only, never the project. Every SDK event becomes one JSON line on stdout::

    {"t": <time.monotonic()>, "ev": "open" | "message" | "error" | "close" |
           "reconnecting" | "autoReconnectStopped" | "rest" | "print" | "ready" | "done",
     "s": <streamer index>, "data": ...}

The SDK is pointed at the simulator as providers/UPSTOX.md §10.2 shows: the ``websocket``
name used by ``market_data_feeder_v3`` is replaced by a shim whose ``WebSocketApp`` turns
``wss://api.upstox.com`` into the simulator's feed host:port (the SDK then follows the 302
itself), and ``Configuration.host`` is the simulator's REST URL. No SDK file is edited.

Scenarios:
  stream   --streamers MarketDataStreamerV3 objects (``--stagger`` seconds apart), each
           constructed with --keys in --mode, so the SDK subscribes on every (re)open.
  rest     the SDK's REST calls (--calls: feed authorize V3; LTP / OHLC / full /
           option-greek quotes V3; full / LTP / OHLC quotes V2) for --keys, then exit.

Commands on stdin, one JSON object per line (``streamer`` defaults to 0):
  {"cmd": "subscribe" | "change_mode", "keys": [...], "mode": "full"}
  {"cmd": "unsubscribe", "keys": [...]}
  {"cmd": "disconnect"}     the user's disconnect() (close code 1000)
  {"cmd": "stop"}           disconnect every streamer, wait briefly for close, exit.
The probe also exits by itself after --duration seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import types
from typing import Any
from urllib.parse import urlsplit

from probe_io import PrintCapture, exit_now

_OUT = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
_LOCK = threading.Lock()


def emit(ev: str, data: Any = None, streamer: int | None = None) -> None:
    record: dict[str, Any] = {"t": time.monotonic(), "ev": ev, "data": data}
    if streamer is not None:
        record["s"] = streamer
    line = json.dumps(record, default=_jsonable)
    with _LOCK:
        _OUT.write(line + "\n")
        _OUT.flush()


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseException):
        out: dict[str, Any] = {"exception": type(value).__name__, "text": str(value)}
        status = getattr(value, "status_code", None) or getattr(value, "status", None)
        if status is not None:
            out["status"] = status
        return out
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, bytes | bytearray):
        return value.hex()
    return repr(value)


def _exit(code: int = 0) -> None:
    exit_now(emit, _OUT, code)


def patch_sdk(feed_url: str) -> None:
    """UPSTOX.md §10.2: the feeder's hard-coded wss://api.upstox.com goes to the simulator."""
    import websocket as real_websocket
    from upstox_client.feeder import market_data_feeder_v3

    parts = urlsplit(feed_url)
    target = f"{parts.scheme}://{parts.netloc}"
    shim = types.SimpleNamespace(
        **{n: getattr(real_websocket, n) for n in dir(real_websocket) if not n.startswith("__")}
    )

    def web_socket_app(url: str, **kwargs: Any) -> Any:
        return real_websocket.WebSocketApp(url.replace("wss://api.upstox.com", target), **kwargs)

    shim.WebSocketApp = web_socket_app
    market_data_feeder_v3.websocket = shim


def api_client(args: argparse.Namespace) -> Any:
    import upstox_client

    cfg = upstox_client.Configuration()
    cfg.access_token = args.token
    cfg.host = args.api_url.rstrip("/")
    return upstox_client.ApiClient(cfg)


def run_stream(args: argparse.Namespace) -> None:
    import upstox_client

    patch_sdk(args.feed_url)
    streamers: list[Any] = []

    def make(index: int) -> Any:
        streamer = upstox_client.MarketDataStreamerV3(api_client(args), list(args.keys), args.mode)
        streamer.auto_reconnect(True, args.interval, args.retry_count)
        streamer.on("open", lambda: emit("open", None, index))
        streamer.on("message", lambda message: emit("message", message, index))
        streamer.on("error", lambda error: emit("error", error, index))
        streamer.on("close", lambda code, reason: emit("close", [code, reason], index))
        streamer.on("reconnecting", lambda text: emit("reconnecting", text, index))
        streamer.on("autoReconnectStopped", lambda text: emit("autoReconnectStopped", text, index))
        return streamer

    stop = threading.Event()

    def commands() -> None:
        for line in sys.stdin:
            try:
                command = json.loads(line)
            except ValueError:
                continue
            emit("command", command)
            name = command.get("cmd")
            if name == "stop":
                stop.set()
                return
            try:
                streamer = streamers[command.get("streamer", 0)]
                if name == "subscribe":
                    streamer.subscribe(command["keys"], command["mode"])
                elif name == "change_mode":
                    streamer.change_mode(command["keys"], command["mode"])
                elif name == "unsubscribe":
                    streamer.unsubscribe(command["keys"])
                elif name == "disconnect":
                    streamer.disconnect()
            except Exception as exc:  # report, as a user would see it
                emit("command_error", exc)

    threading.Thread(target=commands, daemon=True).start()
    emit("ready")
    for index in range(args.streamers):
        if index and stop.wait(args.stagger):
            break
        streamers.append(make(index))
        streamers[-1].connect()
    stop.wait(max(0.0, args.duration - args.stagger * (args.streamers - 1)))
    if stop.is_set():
        for streamer in streamers:
            try:
                streamer.disconnect()
            except Exception as exc:
                emit("command_error", exc)
        time.sleep(0.5)  # let the close events arrive
    _exit(0)


def run_rest(args: argparse.Namespace) -> None:
    import upstox_client
    from upstox_client.rest import ApiException

    client = api_client(args)
    keys = ",".join(args.keys)
    calls = {
        "authorize_v3": lambda: upstox_client.WebsocketApi(
            client
        ).get_market_data_feed_authorize_v3(),
        "ltp": lambda: upstox_client.MarketQuoteV3Api(client).get_ltp(instrument_key=keys),
        "ohlc": lambda: upstox_client.MarketQuoteV3Api(client).get_market_quote_ohlc(
            "1d", instrument_key=keys
        ),
        "full": lambda: upstox_client.MarketQuoteV3Api(client).get_full_market_quote_v3(
            instrument_key=keys
        ),
        "option_greek": lambda: upstox_client.MarketQuoteV3Api(
            client
        ).get_market_quote_option_greek(instrument_key=keys),
        # V2 (MarketQuoteApi): the key list goes in the "symbol" argument.
        "full_v2": lambda: upstox_client.MarketQuoteApi(client).get_full_market_quote(keys, "2.0"),
        "ltp_v2": lambda: upstox_client.MarketQuoteApi(client).ltp(keys, "2.0"),
        "ohlc_v2": lambda: upstox_client.MarketQuoteApi(client).get_market_quote_ohlc(
            keys, "1d", "2.0"
        ),
    }
    for name in args.calls:
        try:
            emit("rest", {"call": name, "response": calls[name]().to_dict()})
        except ApiException as exc:
            body = exc.body.decode(errors="replace") if isinstance(exc.body, bytes) else exc.body
            emit("rest", {"call": name, "status": exc.status, "body": body})
    _exit(0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--api-url", required=True)
    parser.add_argument("--feed-url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--keys", default="", help="instrument keys, separated by ';'")
    parser.add_argument("--mode", default="ltpc")
    parser.add_argument("--scenario", choices=["stream", "rest"], default="stream")
    parser.add_argument("--streamers", type=int, default=1)
    parser.add_argument("--stagger", type=float, default=1.0)
    parser.add_argument("--interval", type=float, default=1.0, help="SDK reconnect interval")
    parser.add_argument("--retry-count", type=int, default=5)
    parser.add_argument("--calls", default="authorize_v3,ltp,ohlc,full")
    parser.add_argument("--duration", type=float, default=15.0)
    args = parser.parse_args()
    # ';' separates keys: index keys may contain spaces and commas are the REST separator.
    args.keys = [k for k in args.keys.split(";") if k]
    args.calls = [c for c in args.calls.split(",") if c]
    sys.stdout = PrintCapture(emit)
    threading.Timer(args.duration + 15.0, _exit, (3,)).start()
    try:
        if args.scenario == "rest":
            run_rest(args)
        else:
            run_stream(args)
    except BaseException as exc:
        emit("crash", exc)
        _exit(2)


if __name__ == "__main__":
    main()
