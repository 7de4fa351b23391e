"""Load clients of ``delivery_e2e.py`` (a child process holding its share of the clients).

    .venv/bin/python bench/_delivery_clients.py --url ws://127.0.0.1:PORT/ws/v1/market/ \
        --design design --token mdh_... --first 0 --count 250 --instruments 5000

Each client is one WebSocket (``websockets``, asyncio, no compression, no pings) that
subscribes ``--per-client`` symbols in ``quote`` mode (``_delivery_common.client_symbols``)
and then reads as fast as it can. While recording, every update item is stored as
(instrument number, cumulative volume, receive time ``time.time_ns()`` taken when the
client's ``async for`` got the message, before parsing; the seq gap in front of it; the
time the feed worker received the tick's frame, from the item's ``recv_ts``/``recv_ns``):
five ``array``s, bounded by ``--max-recorded``.

stdin commands (one JSON line each): ``connect``, ``record``, ``unrecord``, ``dump PATH``
(pickle, then forget), ``stats``, ``quit``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import pickle
import sys
import time
from array import array
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _delivery_common import (
    client_symbols,
    instrument_key,
    proc_status_kb,
    serve_commands,
)


def write_pickle(path: str, payload: dict[str, Any]) -> None:
    with open(path, "wb") as out:
        pickle.dump(payload, out, protocol=pickle.HIGHEST_PROTOCOL)


class Recording:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.on = False
        self.reset()

    def reset(self) -> None:
        self.symbol, self.volume = array("i"), array("q")
        self.at, self.gap = array("q"), array("i")
        self.hub_ns = array("q")  # when the feed worker received the tick's frame
        self.counts: Counter[str] = Counter()


class Clients:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rec = Recording(args.max_recorded)
        self.tasks: list[asyncio.Task[None]] = []
        self.ready = 0
        self.failed = 0
        self.open = 0
        self.closes: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.ready_event = asyncio.Event()
        self.index = {instrument_key(n): n for n in range(args.instruments)}

    async def connect_all(self) -> dict[str, Any]:
        started = time.monotonic()
        gate = asyncio.Semaphore(self.args.connect_concurrency)
        args = self.args
        for client in range(args.first, args.first + args.count):
            self.tasks.append(asyncio.create_task(self.client(client, gate)))
        deadline = started + args.connect_timeout
        while self.ready + self.failed < args.count and time.monotonic() < deadline:
            self.ready_event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.ready_event.wait(), 1.0)
        return {
            "ready": self.ready,
            "failed": self.failed,
            "seconds": time.monotonic() - started,
            "errors": dict(self.errors),
        }

    async def client(self, number: int, gate: asyncio.Semaphore) -> None:
        args, rec, index = self.args, self.rec, self.index
        symbols = [instrument_key(n) for n in client_symbols(number, args.per_client,
                                                            args.instruments)]  # fmt: skip
        headers = {"Authorization": f"Token {args.token}"} if args.token else {}
        request = {"action": "subscribe", "id": 1, "mode": "quote", "symbols": symbols}
        ready_on = "snapshot" if args.design == "design" else "subscribed"
        ready = False
        last = dict.fromkeys(symbols, 0)
        loads = orjson.loads
        try:
            async with gate:
                ws = await connect(
                    args.url, additional_headers=headers, compression=None, ping_interval=None,
                    max_size=2**24, open_timeout=args.connect_timeout, close_timeout=2,
                )  # fmt: skip
                await ws.send(orjson.dumps(request).decode())
                self.open += 1
                async for frame in ws:
                    message = loads(frame)
                    if message.get("type") == ready_on:
                        break
                    if message.get("type") == "error":
                        self.errors[message.get("code", "?")] += 1
            ready = True
            self.ready += 1
            self.ready_event.set()
            async for frame in ws:
                at = time.time_ns()
                message = loads(frame)
                if message.get("type") != "update":
                    if message.get("type") == "error":
                        self.errors[message.get("code", "?")] += 1
                    continue
                data = message["data"]
                if not rec.on:
                    for item in data:
                        seq = item.get("seq")
                        if seq is not None:
                            last[item["symbol"]] = seq
                    continue
                counts = rec.counts
                counts["messages"] += 1
                counts["items"] += len(data)
                counts["conflated_field"] += message.get("conflated", 0)
                if len(rec.at) + len(data) > rec.limit:
                    counts["overflow"] += len(data)
                    continue
                for item in data:
                    symbol = item["symbol"]
                    seq = item.get("seq")
                    if seq is None:
                        gap = 0
                    else:
                        gap = seq - last[symbol] - 1
                        last[symbol] = seq
                    rec.symbol.append(index[symbol])
                    rec.volume.append(item.get("volume", -1))
                    rec.at.append(at)
                    rec.gap.append(gap)
                    if "recv_ts" in item:  # the API's epoch ms (design)
                        rec.hub_ns.append(int(item["recv_ts"] * 1_000_000))
                    else:  # the raw record (baseline)
                        rec.hub_ns.append(item.get("recv_ns", 0))
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd is not None else None
            self.closes[str(code)] += 1
        except Exception as exc:
            self.errors[type(exc).__name__] += 1
        finally:
            if not ready:
                self.failed += 1
                self.ready_event.set()
            else:
                self.open -= 1

    async def handle(self, command: str, words: list[str]) -> dict[str, Any]:
        rec = self.rec
        if command == "connect":
            return await self.connect_all()
        if command == "record":
            rec.reset()
            rec.on = True
            return {"recording": True, "at": time.time_ns()}
        if command == "unrecord":
            rec.on = False
            return {"recording": False, "at": time.time_ns(), "items": len(rec.at)}
        if command == "dump":
            write_pickle(words[0], {"symbol": rec.symbol, "volume": rec.volume, "at": rec.at,
                                    "gap": rec.gap, "hub_ns": rec.hub_ns,
                                    "counts": dict(rec.counts)})  # fmt: skip
            items = len(rec.at)
            rec.reset()
            return {"dumped": items}
        if command == "stats":
            return {
                "open": self.open,
                "ready": self.ready,
                "failed": self.failed,
                "closes": dict(self.closes),
                "errors": dict(self.errors),
                "rss_kb": proc_status_kb("self", "VmRSS"),
            }
        raise ValueError(f"unknown command {command!r}")

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def run(args: argparse.Namespace) -> None:
    clients = Clients(args)
    try:
        await serve_commands(clients.handle)
    finally:
        await clients.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--design", choices=["design", "naive"], required=True)
    parser.add_argument("--token", default="")
    parser.add_argument("--first", type=int, default=0, help="first client number")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--per-client", type=int, default=50)
    parser.add_argument("--instruments", type=int, required=True)
    parser.add_argument("--connect-concurrency", type=int, default=20)
    parser.add_argument("--connect-timeout", type=float, default=120.0)
    parser.add_argument("--max-recorded", type=int, default=8_000_000)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="uvloop")
    args = parser.parse_args()
    if args.loop == "uvloop":
        try:
            import uvloop

            uvloop.run(run(args))
            return
        except ImportError:
            pass
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
