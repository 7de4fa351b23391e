"""The database and the provider simulators of ``delivery_e2e.py`` (a child process).

    .venv/bin/python bench/_delivery_sim.py setup --var-dir DIR --instruments 5000
    .venv/bin/python bench/_delivery_sim.py serve --var-dir DIR [--step-ms 10] [--bursts]

``setup`` migrates a fresh SQLite file in DIR, creates ``--instruments`` generated NSE
equities (``bench/_hub.py``), enables them in the ``high_frequency`` tier (so each is placed
on FYERS only, 200 per connection: one tick per market move, no Upstox twin), gives the
FYERS account enough connections, creates a user with an API token and prints
``{"token": ...}``.

``serve`` starts both simulators (``start_simulators``) over the enabled instruments, prints
their description line, then obeys stdin commands, one JSON line each:

* ``rate R``: every instrument ticks R times a second from now on;
* ``record`` / ``unrecord``: start / stop the latency recorder (below);
* ``dump PATH``: write what was recorded (pickle of three ``array``s) and forget it;
* ``stats``: ticks, steps, connections, CPU, RSS, event-loop lag.

The recorder wraps ``sims.hub.step``: after each market step (the step builds every FYERS
frame of the quotes that ticked and queues it on its socket; the sockets' writer tasks send
them on the next turns of this loop) it stores, per quote that ticked, (instrument number,
cumulative volume, ``time.time_ns()``). Cumulative volume grows with every trade of an
equity, so (instrument, volume) names one tick end to end: the worker decodes it from the
FYERS frame and every client message carries it.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import pickle
import sys
import time
from array import array
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _hub
from _delivery_common import PREFIX, answer, serve_commands

MAX_RECORDED = 20_000_000  # ticks per recording (~400 MB); past it they are counted only


def setup(args: argparse.Namespace) -> None:
    _hub.django_setup(args.var_dir, log_level="WARNING")
    from django.contrib.auth import get_user_model

    from feeds import services

    per_connection = 200
    ids = _hub.instruments_create(args.instruments)
    _hub.instruments_enable(ids, tier="high_frequency")
    _hub.accounts_configure(fyers_connections=math.ceil(args.instruments / per_connection))
    user = get_user_model().objects.create_user(username="bench", password=None)
    _row, token = services.api_token_create(user=user, name="delivery_e2e")
    answer({"token": token, "instruments": len(ids)})


def write_pickle(path: str, payload: dict[str, Any]) -> None:
    with open(path, "wb") as out:
        pickle.dump(payload, out, protocol=pickle.HIGHEST_PROTOCOL)


class Recorder:
    def __init__(self) -> None:
        self.on = False
        self.symbol = array("i")
        self.volume = array("q")
        self.at = array("q")
        self.overflow = 0
        self.started_ns = 0
        self.stopped_ns = 0

    def start(self) -> None:
        self.symbol, self.volume, self.at = array("i"), array("q"), array("q")
        self.overflow = 0
        self.started_ns = time.time_ns()
        self.on = True

    def stop(self) -> None:
        self.on = False
        self.stopped_ns = time.time_ns()


async def serve(args: argparse.Namespace) -> None:
    from asgiref.sync import sync_to_async

    from feeds.providers.simulation.run import start_simulators

    universe = await sync_to_async(lambda: _hub.sim_universe(enabled_only=True))()
    sims = await start_simulators(
        universe, seed=args.seed, ticks_per_second=args.rate, step_interval=args.step_ms / 1000
    )
    model = sims.hub.model
    if not args.bursts:
        model.burst_every = float("inf")  # a steady load: no 5x bursts on random subsets
    number = {inst.key: int(inst.key[len(PREFIX) :]) for inst in universe}
    rec = Recorder()
    ticks = {"all": 0}
    step = sims.hub.step

    def recording_step(now: float | None = None) -> list[Any]:
        quotes = step(now)
        ticks["all"] += len(quotes)
        if rec.on and quotes:
            at = time.time_ns()  # every frame of this step is built and queued by now
            if len(rec.at) + len(quotes) > MAX_RECORDED:
                rec.overflow += len(quotes)
            else:
                for quote in quotes:
                    rec.symbol.append(number[quote.key])
                    rec.volume.append(quote.volume)
                    rec.at.append(at)
        return quotes

    sims.hub.step = recording_step  # type: ignore[method-assign]
    lag = _hub.LoopLag(interval=0.02)
    lag.start()

    async def handle(command: str, words: list[str]) -> dict[str, Any]:
        if command == "rate":
            rate = float(words[0])
            for key in list(model.quotes):  # in _by_rate order: each remove finds index 0
                model.set_rate(key, rate)
            lag.reset()
            return {"rate": rate}
        if command == "record":
            rec.start()
            return {"recording": True, "at": rec.started_ns}
        if command == "unrecord":
            rec.stop()
            return {"recording": False, "at": rec.stopped_ns, "ticks": len(rec.at)}
        if command == "dump":
            write_pickle(
                words[0],
                {
                    "symbol": rec.symbol,
                    "volume": rec.volume,
                    "at": rec.at,
                    "started_ns": rec.started_ns,
                    "stopped_ns": rec.stopped_ns,
                    "overflow": rec.overflow,
                },
            )
            recorded = len(rec.at)
            rec.symbol, rec.volume, rec.at = array("i"), array("q"), array("q")
            return {"dumped": recorded}
        if command == "stats":
            fyers = sims.fyers
            subscribed = sum(
                1 for holders in fyers.subscribers.values() if any(c in fyers.connections
                                                                   for c in holders)
            )  # fmt: skip
            return {
                "ticks": ticks["all"],
                "steps": sims.hub.steps,
                "fyers_connections": len(fyers.connections),
                "fyers_max_connection_id": max(fyers.connections, default=0),
                "upstox_connections": len(sims.upstox.connections),
                "subscribed": subscribed,
                "queued_max": max((c.queue.qsize() for c in fyers.connections.values()), default=0),
                "cpu_seconds": _hub.cpu_seconds(),
                "rss_kb": _hub.proc_status_kb("VmRSS"),
                "loop_lag": lag.summary(),
            }
        raise ValueError(f"unknown command {command!r}")

    answer(sims.describe("127.0.0.1"))
    try:
        await serve_commands(handle)
    finally:
        lag.stop()
        await sims.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["setup", "serve"])
    parser.add_argument("--var-dir", type=Path, required=True)
    parser.add_argument("--instruments", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=0.1, help="ticks/s per instrument")
    parser.add_argument("--step-ms", type=float, default=10.0, help="market clock")
    parser.add_argument("--bursts", action="store_true", help="keep the model's bursts")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.action == "setup":
        setup(args)
        return
    _hub.django_setup(args.var_dir, log_level="WARNING", migrate=False)
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
