"""Drive the official FYERS SDK (fyers-apiv3) against a simulator; report what it does.

Runs INSIDE the fyers SDK virtualenv (tests/sdk/venvs.py): it imports the SDK and the
standard library only, never the project. Every SDK callback (and every line the SDK
prints) becomes one JSON line on stdout::

    {"t": <time.monotonic()>, "ev": "message" | "error" | "close" | "connect" | "print" |
           "rest" | "ready" | "done", "data": ...}

The SDK is pointed at the simulator exactly as providers/FYERS.md §15.2 shows: the
symbol-token URL (an instance attribute set in ``SymbolConversion.__init__``), the
index-name cache, the singleton reset, the private ``_FyersDataSocket__url``, and
``log_path`` in a temporary directory. No SDK file is edited.

Scenarios:
  stream   connect; ``on_connect`` (re-)subscribes --symbols (SymbolUpdate) and --depth
           (DepthUpdate) every time it runs, as a real user must after a reconnect.
  connect  connect and authenticate only (no subscription).
  rest     FyersModel quotes/depth for --symbols through the SDK's REST client, then exit.

Commands on stdin, one JSON object per line, while the scenario runs:
  {"cmd": "subscribe", "symbols": [...], "data_type": "SymbolUpdate", "channel": 11}
  {"cmd": "unsubscribe", "symbols": [...], "data_type": "SymbolUpdate", "channel": 11}
  {"cmd": "channel_resume", "channel": 11}
  {"cmd": "stop"}     close_connection(), wait briefly for on_close, exit.
The probe also exits by itself after --duration seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from typing import Any

from probe_io import PrintCapture, exit_now

_OUT = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
_LOCK = threading.Lock()


def emit(ev: str, data: Any = None) -> None:
    line = json.dumps({"t": time.monotonic(), "ev": ev, "data": data}, default=_jsonable)
    with _LOCK:
        _OUT.write(line + "\n")
        _OUT.flush()


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseException):
        return {"exception": type(value).__name__, "text": str(value)}
    if isinstance(value, bytes | bytearray):
        return value.hex()
    return repr(value)


def _exit(code: int = 0) -> None:
    exit_now(emit, _OUT, code)


def patch_sdk(api_url: str, index_map: str) -> Any:
    """The four test-side patches of FYERS.md §15.2; returns the data_ws module."""
    from fyers_apiv3.FyersWebsocket import data_ws

    token_api = api_url.rstrip("/") + "/data/symbol-token"
    original_init = data_ws.SymbolConversion.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self.symbols_token_api = token_api

    data_ws.SymbolConversion.__init__ = init
    if index_map == "download":
        # Fetch the simulator's index map the way the SDK would fetch FYERS's.
        import requests

        url = api_url.rstrip("/") + "/sym_details/index_hsm_mapping.json"
        data_ws.SymbolConversion._index_hsm_mapping_cache = requests.get(url, timeout=10).json()
    else:
        # Empty: the SDK falls back to its bundled map.json table (and never downloads).
        data_ws.SymbolConversion._index_hsm_mapping_cache = {}
    data_ws.FyersDataSocket._instance = None
    return data_ws


def run_socket(args: argparse.Namespace) -> None:
    data_ws = patch_sdk(args.api_url, args.index_map)
    log_dir = args.log_dir or tempfile.mkdtemp(prefix="fyers-sdk-log-")
    holder: dict[str, Any] = {}
    closed = threading.Event()

    def on_close(message: Any) -> None:
        emit("close", message)
        closed.set()

    def on_connect() -> None:
        emit("connect")
        if args.scenario != "stream":
            return
        sock = holder["sock"]
        if args.symbols:
            sock.subscribe(symbols=args.symbols, data_type="SymbolUpdate")
        if args.depth:
            sock.subscribe(symbols=args.depth, data_type="DepthUpdate")
        emit("subscribed")

    sock = data_ws.FyersDataSocket(
        access_token=args.token,
        log_path=log_dir,
        litemode=args.lite,
        write_to_file=False,
        reconnect=not args.no_reconnect,
        reconnect_retry=args.reconnect_retry,
        on_connect=on_connect,
        on_message=lambda message: emit("message", message),
        on_error=lambda message: emit("error", message),
        on_close=on_close,
    )
    holder["sock"] = sock
    sock._FyersDataSocket__url = args.socket_url

    stop = threading.Event()

    def commands() -> None:
        for line in sys.stdin:
            try:
                command = json.loads(line)
            except ValueError:
                continue
            name = command.get("cmd")
            emit("command", command)
            if name == "stop":
                stop.set()
                return
            data_type = command.get("data_type", "SymbolUpdate")
            channel = command.get("channel", 11)
            if name == "subscribe":
                sock.subscribe(symbols=command["symbols"], data_type=data_type, channel=channel)
            elif name == "unsubscribe":
                sock.unsubscribe(symbols=command["symbols"], data_type=data_type, channel=channel)
            elif name == "channel_resume":
                sock.channel_resume(channel)

    threading.Thread(target=commands, daemon=True).start()
    emit("ready", {"log_dir": log_dir})
    connector = threading.Thread(target=sock.connect, daemon=True)  # sleeps 2 s inside
    connector.start()
    stop.wait(args.duration)
    if stop.is_set() and sock.is_connected():
        # close_connection() also joins the ping thread, which sleeps 10 s at a time: wait
        # only for on_close, which comes as soon as the socket thread ends.
        threading.Thread(target=sock.close_connection, daemon=True).start()
        closed.wait(10.0)  # generous: a loaded CI machine delays the socket thread
    _exit(0)


def run_rest(args: argparse.Namespace) -> None:
    from fyers_apiv3 import fyersModel

    base = args.api_url.rstrip("/")
    fyersModel.Config.DATA_API = base + "/data"
    fyersModel.Config.API = base + "/api/v3"
    app_id, _, jwt = args.token.partition(":")
    model = fyersModel.FyersModel(
        client_id=app_id, token=jwt, is_async=False, log_path=args.log_dir or tempfile.mkdtemp()
    )
    emit("rest", {"call": "quotes", "response": model.quotes({"symbols": ",".join(args.symbols)})})
    for symbol in args.depth:
        response = model.depth({"symbol": symbol, "ohlcv_flag": "1"})
        emit("rest", {"call": "depth", "symbol": symbol, "response": response})
    _exit(0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--api-url", required=True)
    parser.add_argument("--socket-url", required=True)
    parser.add_argument("--token", required=True, help='"APPID:JWT" as a user gives it')
    parser.add_argument("--symbols", default="", help="comma-separated FYERS symbols")
    parser.add_argument("--depth", default="", help="symbols for DepthUpdate")
    parser.add_argument("--scenario", choices=["stream", "connect", "rest"], default="stream")
    parser.add_argument("--lite", action="store_true")
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--no-reconnect", action="store_true")
    parser.add_argument("--reconnect-retry", type=int, default=5)
    parser.add_argument("--index-map", choices=["empty", "download"], default="download")
    parser.add_argument("--log-dir", default="")
    args = parser.parse_args()
    args.symbols = [s for s in args.symbols.split(",") if s]
    args.depth = [s for s in args.depth.split(",") if s]
    sys.stdout = PrintCapture(emit)
    threading.Timer(args.duration + 15.0, _exit, (3,)).start()  # hard stop, whatever happens
    try:
        if args.scenario == "rest":
            run_rest(args)
        else:
            run_socket(args)
    except BaseException as exc:
        emit("crash", exc)
        _exit(2)


if __name__ == "__main__":
    main()
