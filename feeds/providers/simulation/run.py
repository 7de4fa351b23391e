"""Run both provider simulators in one process, sharing one market.

    python -m feeds.providers.simulation.run [--seed 1] [--fyers-rest-port 8765] ...

With no master files it lists the sample instruments shipped in the repo. Once listening it
prints one JSON line to stdout (ports, base URLs and a fresh test token per provider) so
that a parent process or a test can connect; then it logs to stderr until SIGTERM/SIGINT.
``manage.py run_simulators`` does the same with the instruments in the database.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from feeds.instruments.fyers_master import parse_fyers_csv
from feeds.instruments.linking import link_instruments
from feeds.instruments.records import RowError
from feeds.instruments.upstox_master import parse_upstox_json
from feeds.providers.fyers.simulator import FyersSimulator
from feeds.providers.simulation.server import SimulatorHub
from feeds.providers.simulation.universe import SimInstrument, sim_instrument_from
from feeds.providers.upstox.simulator import UpstoxSimulator

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "instruments" / "sample_data"


def universe_from_masters(
    fyers_files: Iterable[Path] | None = None, upstox_files: Iterable[Path] | None = None
) -> list[SimInstrument]:
    """Instruments linked from master files (the shipped samples by default)."""
    fyers_files = list(fyers_files or sorted((SAMPLE_DIR / "fyers").glob("*.csv")))
    upstox_files = list(upstox_files or sorted((SAMPLE_DIR / "upstox").glob("*.json*")))
    fyers = [r for p in fyers_files for r in parse_fyers_csv(p) if not isinstance(r, RowError)]
    upstox = [r for p in upstox_files for r in parse_upstox_json(p) if not isinstance(r, RowError)]
    linked = link_instruments(fyers_rows=fyers, upstox_rows=upstox)
    return [sim_instrument_from(record) for record in linked.records]


@dataclass(slots=True)
class SimulatorSet:
    hub: SimulatorHub
    fyers: FyersSimulator
    upstox: UpstoxSimulator

    def describe(self, host: str) -> dict[str, Any]:
        return {
            "fyers": {
                "api_url": f"http://{host}:{self.fyers.rest_port}",
                "socket_url": f"ws://{host}:{self.fyers.ws_port}/hsm/v1-5/prod",
                "rest_port": self.fyers.rest_port,
                "ws_port": self.fyers.ws_port,
                "token": self.hub.tokens.issue_fyers(),
            },
            "upstox": {
                "api_url": f"http://{host}:{self.upstox.rest_port}",
                "feed_url": f"ws://{host}:{self.upstox.ws_port}/v3/feed/market-data-feed",
                "rest_port": self.upstox.rest_port,
                "ws_port": self.upstox.ws_port,
                "token": self.hub.tokens.issue_upstox(),
            },
            "instruments": len(self.hub.instruments),
            "seed": self.hub.model.seed,
        }

    async def stop(self) -> None:
        await self.hub.stop()
        await self.fyers.stop()
        await self.upstox.stop()


async def start_simulators(
    instruments: Sequence[SimInstrument],
    *,
    host: str = "127.0.0.1",
    ports: tuple[int, int, int, int] = (0, 0, 0, 0),
    seed: int = 0,
    ticks_per_second: float = 1.0,
    step_interval: float = 0.05,
    fyers_topic_cap: int = 5000,
    fyers_max_connections: int | None = None,
    upstox_max_connections: int = 2,
    upstox_snapshot_kind: str = "live",
    market_open: bool = True,
) -> SimulatorSet:
    """Start the hub and both servers; ports are (FYERS REST, FYERS socket, Upstox REST,
    Upstox feed), 0 meaning any free port."""
    hub = SimulatorHub(
        instruments,
        seed=seed,
        ticks_per_second=ticks_per_second,
        step_interval=step_interval,
        market_open=market_open,
    )
    fyers = FyersSimulator(hub, topic_cap=fyers_topic_cap, max_connections=fyers_max_connections)
    upstox = UpstoxSimulator(
        hub,
        max_connections=upstox_max_connections,
        snapshot_kind="initial" if upstox_snapshot_kind == "initial" else "live",
    )
    await fyers.start(host, ports[0], ports[1])
    await upstox.start(host, ports[2], ports[3])
    hub.start()
    return SimulatorSet(hub, fyers, upstox)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_simulator_arguments(parser)
    parser.add_argument("--fyers-master", nargs="*", type=Path, default=None)
    parser.add_argument("--upstox-master", nargs="*", type=Path, default=None)
    return parser


def add_simulator_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by this module's CLI and ``manage.py run_simulators``."""
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--fyers-rest-port", type=int, default=8765)
    parser.add_argument("--fyers-socket-port", type=int, default=8766)
    parser.add_argument("--upstox-rest-port", type=int, default=8770)
    parser.add_argument("--upstox-feed-port", type=int, default=8771)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ticks-per-second", type=float, default=1.0, help="per instrument")
    parser.add_argument("--step-interval", type=float, default=0.05, help="market clock (s)")
    parser.add_argument("--fyers-topic-cap", type=int, default=5000)
    parser.add_argument("--fyers-max-connections", type=int, default=None)
    parser.add_argument("--upstox-max-connections", type=int, default=2)
    parser.add_argument("--upstox-snapshot", choices=["live", "initial"], default="live")
    parser.add_argument("--market-closed", action="store_true")


async def serve_until_stopped(
    instruments: Sequence[SimInstrument], options: dict[str, Any], out: Any = sys.stdout
) -> None:
    sims = await start_simulators(
        instruments,
        host=options["host"],
        ports=(
            options["fyers_rest_port"],
            options["fyers_socket_port"],
            options["upstox_rest_port"],
            options["upstox_feed_port"],
        ),
        seed=options["seed"],
        ticks_per_second=options["ticks_per_second"],
        step_interval=options["step_interval"],
        fyers_topic_cap=options["fyers_topic_cap"],
        fyers_max_connections=options["fyers_max_connections"],
        upstox_max_connections=options["upstox_max_connections"],
        upstox_snapshot_kind=options["upstox_snapshot"],
        market_open=not options["market_closed"],
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    # Only now say where we listen: a parent may send SIGTERM as soon as it has read this.
    print(json.dumps(sims.describe(options["host"])), file=out, flush=True)
    await stop.wait()
    await sims.stop()


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    instruments = universe_from_masters(args.fyers_master, args.upstox_master)
    asyncio.run(serve_until_stopped(instruments, vars(args)))


if __name__ == "__main__":
    main()
