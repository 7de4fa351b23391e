"""Failover time under load: random FYERS connection kills, time until every affected symbol
ticks again.

    .venv/bin/python bench/pool_failover.py [--kills 50] [--seed 1] [--faults close_clean,...]

Real parts: the worker built by ``feeds.runtime.feed_worker_build`` on a throwaway SQLite
database (``bench/_hub.py``), both simulators in this process over real sockets. Default
load: 1,000 generated equities enabled, 20 critical + 980 high frequency (FYERS first-fit:
5 connections of 200, the criticals cross-checked on Upstox) and 200 standard (Upstox), every
instrument ticking ``--ticks-per-second`` 2 (Poisson, with the simulator's bursts), so about
2,400 ticks/s reach the worker. Worker configuration as in tests/feeds/pool/test_worker.py:
silence 0.5 s, recover_after 1 s, connect grace 2 s, reconnect back-off 0.1 s to 1 s.

Each kill picks a random FYERS home connection (slots 0-4) and a random fault kind, then
measures, from the instant just before the fault (tick times are the ticks' own ``recv_ns``,
not the polling's):

* detected:        the health tracker marks the victim unavailable;
* plan moved:      the plan no longer places any of the victim's symbols on it;
* ticks elsewhere: every symbol the victim carried has a tick from a connection that did not
                   carry it before the kill (the failover proper). The five home connections
                   are full, so this is a new FYERS connection (the account allows
                   ``--fyers-connections``); its first tick per symbol is usually the snapshot
                   the simulator sends on subscribe, as FYERS does;
* ticking again:   every such symbol has a fresh tick from another connection or from the
                   victim itself once it has reconnected (a session live after the kill),
                   whichever comes first; a critical's Upstox twin, which never stopped, does
                   not count. This is the issue's "time until every affected symbol ticks
                   again" (goal: p99 <= 2 s). It differs from "ticks elsewhere" when the
                   victim reconnects before the plan has moved its symbols; the kill then
                   "recovered in place".

Connections are told apart by ``Tick.connection``, read in the worker's publisher hook.
Before the next kill it waits until the symbols are home again (the plan as before the first
kill, the temporary connection closed, the victim trusted again after ``--recover-after`` of
live).
The health tracker's flap window (60 s by default: a connection failing again within it
waits twice as long to be trusted) is shortened to ``--flap-window`` so that every return
takes ``--recover-after``; it does not affect the failover itself.

``--sim-process`` runs the simulators in a child process instead (``bench/_hub.py``; faults
through their ``/_sim/`` control API), for large runs where one process would carry both
sides' CPU, e.g. the issue's scale:

    .venv/bin/python bench/pool_failover.py --sim-process --symbols 10000 --critical 0 \
        --standard 0 --fyers-connections 51 --ticks-per-second 1 --silence 1

``--gap`` waits that much longer between "home again" and the next kill (by default the next
kill follows at once, while the worker may still be recording the return in the database).

Fault kinds (FYERS simulator): ``close_clean`` (close frame 1000), ``close_unclean`` (TCP
reset), ``stall`` (the socket stays open, silent, reads paused for ``--stall-seconds``;
caught by the silence watchdog), optionally ``reject_auth`` (new sockets refused for 1 s,
then a clean close).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from _hub import (
    SimulatorProcess,
    accounts_configure,
    django_setup,
    instruments_create,
    instruments_enable,
    percentile,
    point_at_simulators,
    sim_universe,
    until,
    worker_build,
)

if TYPE_CHECKING:
    from feeds.pool.distribution import Conn
    from feeds.pool.worker import FeedWorker
    from feeds.providers.simulation.run import SimulatorSet
    from feeds.providers.ticks import Tick

FAULT_KINDS = ("close_clean", "close_unclean", "stall", "reject_auth")


@dataclass(slots=True)
class Watch:
    """One kill: the first fresh tick of each of the victim's symbols."""

    victim: Conn
    t0_ns: int
    before: dict[str, frozenset[Conn]]  # key -> connections that carried it before
    # key -> first recv_ns after the kill from a connection that did not carry the key
    elsewhere: dict[str, int] = field(default_factory=dict)
    # key -> the same, or from the victim itself once it has reconnected; never from a twin
    # that carried the key all along (a critical's Upstox cross-check)
    again: dict[str, int] = field(default_factory=dict)


class Probe:
    """The worker's publisher hook: notes the first fresh tick of each watched symbol, by
    the connection that delivered it (``Tick.connection``)."""

    def __init__(self, worker: FeedWorker) -> None:
        from feeds.pool.pool import conn_from_name  # after django_setup(), like the rest

        self.conn_from_name = conn_from_name
        self.worker = worker
        self.watch: Watch | None = None

    def __call__(self, ticks: list[Tick]) -> None:
        watch = self.watch
        if watch is None or not ticks:
            return
        conn = self.conn_from_name(ticks[0].connection)  # one frame, one socket
        before, again, t0 = watch.before, watch.again, watch.t0_ns
        if conn == watch.victim:
            # Only a session that went live after the kill: frames read late from the
            # killed socket are not fresh.
            client = self.worker.pool.clients.get(conn)
            if client is not None and client.stats.live_since_ns > t0:
                for tick in ticks:
                    if tick.instrument in before and tick.instrument not in again:
                        again[tick.instrument] = tick.recv_ns
            return
        elsewhere = watch.elsewhere
        for tick in ticks:
            key = tick.instrument
            if (
                tick.recv_ns > t0
                and key in before
                and key not in elsewhere
                and (conn not in before[key])
            ):
                elsewhere[key] = tick.recv_ns
                again.setdefault(key, tick.recv_ns)

    def install(self) -> None:
        self.worker.publish = self


@dataclass(slots=True)
class Kill:
    kind: str
    victim: str
    symbols: int
    detect: float | None
    plan: float | None
    again: float | None  # every symbol ticking again; None: not within the timeout
    elsewhere: float | None  # ... from other connections; None: recovered in place
    back_home: float | None


def placements(worker: FeedWorker) -> dict[str, frozenset[Conn]]:
    assert worker.plan is not None
    return {k: frozenset(p.conn for p in ps) for k, ps in worker.plan.assignment.items()}


def on_conn(worker: FeedWorker, conn: Conn) -> set[str]:
    if worker.plan is None:
        return set()
    return {k for k, ps in worker.plan.assignment.items() for p in ps if p.conn == conn}


def local_address(worker: FeedWorker, conn: Conn) -> tuple[str, int] | None:
    """The local address of the socket our client of ``conn`` holds now."""
    ws = getattr(worker.pool.clients.get(conn), "_ws", None)
    return None if ws is None else tuple(ws.local_address)[:2]  # type: ignore[return-value]


class InProcessFaults:
    """Faults on the FYERS simulator running in this process."""

    def __init__(self, sims: SimulatorSet) -> None:
        self.sims = sims

    async def sim_id(self, local: tuple[str, int]) -> int | None:
        conns = self.sims.fyers.connections.values()
        return next((c.id for c in conns if tuple(c.socket.remote_address)[:2] == local), None)

    async def inject(self, kind: str, sim_id: int, stall_seconds: float) -> None:
        fyers, tokens = self.sims.fyers, self.sims.hub.tokens
        if kind == "close_clean":
            await fyers.fault_close(sim_id, clean=True)
        elif kind == "close_unclean":
            await fyers.fault_close(sim_id, clean=False)
        elif kind == "stall":
            fyers.fault_stall(sim_id, stall_seconds)
        elif kind == "reject_auth":
            tokens.reject_auth["fyers"] = True
            await fyers.fault_close(sim_id, clean=True)
            asyncio.get_running_loop().call_later(
                1.0, tokens.reject_auth.__setitem__, "fyers", False
            )
        else:
            raise ValueError(kind)


class RemoteFaults:
    """The same faults through the ``/_sim/`` control API of a simulator child process."""

    def __init__(self, api_url: str) -> None:
        import aiohttp

        self.api_url = api_url.rstrip("/")
        self.session = aiohttp.ClientSession()
        self._accept: asyncio.Task[None] | None = None

    async def _post(self, path: str, body: dict[str, Any]) -> None:
        async with self.session.post(self.api_url + path, json=body) as response:
            response.raise_for_status()

    async def sim_id(self, local: tuple[str, int]) -> int | None:
        async with self.session.get(self.api_url + "/_sim/connections") as response:
            rows = await response.json()
        return next((r["id"] for r in rows if r["remote"] == str(local)), None)

    async def inject(self, kind: str, sim_id: int, stall_seconds: float) -> None:
        if kind in ("close_clean", "close_unclean"):
            await self._post(f"/_sim/connections/{kind}", {"connection": sim_id})
        elif kind == "stall":
            body = {"connection": sim_id, "seconds": stall_seconds}
            await self._post("/_sim/connections/stall", body)
        elif kind == "reject_auth":
            await self._post("/_sim/auth", {"reject": True})
            await self._post("/_sim/connections/close_clean", {"connection": sim_id})

            async def accept() -> None:
                await asyncio.sleep(1.0)
                await self._post("/_sim/auth", {"reject": False})

            self._accept = asyncio.get_running_loop().create_task(accept())
        else:
            raise ValueError(kind)

    async def close(self) -> None:
        await self.session.close()


Faults = InProcessFaults | RemoteFaults


class Killer:
    """Kills FYERS connections one at a time and times each failover."""

    def __init__(
        self, args: argparse.Namespace, faults: Faults, worker: FeedWorker, probe: Probe
    ) -> None:
        self.args, self.faults, self.worker, self.probe = args, faults, worker, probe
        self.expected = args.symbols + args.critical + args.standard  # placements
        self.home: dict[str, frozenset[Conn]] = {}
        self.home_clients: set[Conn] = set()
        self._home_checked: tuple[object, bool] = (None, False)
        self._carries: tuple[object, Conn | None, set[str]] = (None, None, set())

    def settled(self) -> bool:
        """Every enabled instrument placed by the tier rules (nothing failed over, left out
        or refused), every connection trusted, every placement ticked."""
        worker = self.worker
        plan = worker.plan
        if plan is None or plan.left_out or worker.tracker.unavailable() or worker.pool.refused:
            return False
        placed = [(k, p) for k, ps in plan.assignment.items() for p in ps]
        return (
            len(placed) == self.expected
            and all(p.reason != "failover" for _, p in placed)
            and all(worker.latest.get(k, p.conn.provider) is not None for k, p in placed)
        )

    def remember_home(self) -> None:
        self.home = placements(self.worker)
        self.home_clients = set(self.worker.pool.clients)

    def plan_is_home(self) -> bool:
        """The plan places everything as before the first kill. Polled often: the answer is
        kept per plan object (each sync makes a new one), so that polling costs the worker's
        loop next to nothing even at 10k symbols."""
        plan = self.worker.plan
        if plan is None:
            return False
        if plan is not self._home_checked[0]:
            self._home_checked = (plan, placements(self.worker) == self.home)
        return self._home_checked[1]

    def carries(self, conn: Conn) -> set[str]:
        """``on_conn`` for the current plan, kept per plan object like ``plan_is_home``."""
        plan = self.worker.plan
        if plan is not self._carries[0] or conn != self._carries[1]:
            self._carries = (plan, conn, on_conn(self.worker, conn))
        return self._carries[2]

    def at_home(self) -> bool:
        worker = self.worker
        return (
            not worker.tracker.unavailable()
            and len(worker.pool.clients) == len(self.home_clients)
            and self.plan_is_home()
            and set(worker.pool.clients) == self.home_clients
        )

    async def kill(self, victim: Conn, kind: str) -> Kill:
        worker, faults = self.worker, self.faults
        sim_id = None
        for _ in range(100):  # the victim's socket, as the simulator numbers it
            local = local_address(worker, victim)
            sim_id = None if local is None else await faults.sim_id(local)
            if sim_id is not None:
                break
            await asyncio.sleep(0.1)
        if sim_id is None:
            raise SystemExit(f"no simulator socket for {victim}")
        affected = on_conn(worker, victim)
        watch = Watch(victim, time.time_ns(), {k: self.home[k] for k in affected})
        t0 = time.monotonic()
        self.probe.watch = watch
        await faults.inject(kind, sim_id, self.args.stall_seconds)
        detect: float | None = None
        plan: float | None = None

        def recovered() -> bool:
            nonlocal detect, plan
            now = time.monotonic() - t0
            if detect is None and victim in worker.tracker.unavailable():
                detect = now
            if plan is None and detect is not None and not (self.carries(victim) & affected):
                plan = now
            if len(watch.elsewhere) == len(watch.before):
                return True  # failed over
            # Or back on the victim before the plan moved them (or after it moved them back)
            return len(watch.again) == len(watch.before) and detect is not None and self.at_home()

        done = await until(recovered, self.args.timeout, step=0.005)
        self.probe.watch = None

        def took(seen: dict[str, int]) -> float | None:
            if done is None or len(seen) < len(watch.before):
                return None
            return (max(seen.values()) - watch.t0_ns) / 1e9

        again, elsewhere = took(watch.again), took(watch.elsewhere)
        # Home again before the next kill: the plan as before the first kill, the temporary
        # connection closed, the victim trusted again (live for recover_after).
        back = await until(self.at_home, 60.0)
        name = f"fyers:{victim.slot}"
        return Kill(kind, name, len(affected), detect, plan, again, elsewhere, back)


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} s"


async def run_kills(
    args: argparse.Namespace, faults: Faults, worker: FeedWorker, probe: Probe
) -> tuple[list[Kill], float, dict[str, int]]:
    rng = random.Random(args.seed)
    killer = Killer(args, faults, worker, probe)
    started = time.monotonic()
    if await until(killer.settled, 120.0, step=0.1) is None:
        raise SystemExit("the pool did not settle within 120 s of the worker's start")
    warm = time.monotonic() - started
    killer.remember_home()
    victims = sorted(c for c in killer.home_clients if c.provider == "fyers")
    ticks_before = dict(worker.stats.ticks)
    kills: list[Kill] = []
    for n in range(args.kills):
        victim, kind = rng.choice(victims), rng.choice(args.faults)
        if n and args.gap:
            await asyncio.sleep(args.gap)
        kill = await killer.kill(victim, kind)
        kills.append(kill)
        if args.verbose:
            print(f"  kill {n + 1:3d}: {kind:13s} slot {victim.slot}: {kill.symbols} symbols "
                  f"ticking again in {fmt(kill.again)} (detected {fmt(kill.detect)}, plan moved "
                  f"{fmt(kill.plan)}, elsewhere {fmt(kill.elsewhere)}, home again "
                  f"{fmt(kill.back_home)})", flush=True)  # fmt: skip
        if kill.back_home is None:
            raise SystemExit(f"kill {n + 1}: the symbols did not return home within 60 s")
    ticked = {p: worker.stats.ticks[p] - ticks_before.get(p, 0) for p in worker.stats.ticks}
    return kills, warm, ticked


def row(label: str, values: list[float], unit: float = 1.0) -> str:
    if not values:
        return f"  {label:<16}{'':>6}  (none)"
    p50, p99, top = (percentile(values, 50), percentile(values, 99), max(values))
    return f"  {label:<16}{len(values):>6}{p50 * unit:>10.3f}{p99 * unit:>10.3f}{top * unit:>10.3f}"


def report(
    args: argparse.Namespace,
    kills: list[Kill],
    warm: float,
    elapsed: float,
    ticked: Mapping[str, int],
) -> None:
    print()
    print(
        f"{args.kills} kills, seed {args.seed}, faults {','.join(args.faults)} (uniform); "
        f"{args.symbols} FYERS symbols ({args.critical} critical) + {args.standard} Upstox "
        f"at {args.ticks_per_second:g} ticks/s each; settled and ticking {warm:.1f} s after start"
    )
    rate = sum(ticked.values()) / elapsed if elapsed else 0.0
    per = ", ".join(f"{p} {n / elapsed:,.0f}/s" for p, n in sorted(ticked.items()))
    print(f"worker handled {rate:,.0f} ticks/s during the kills ({per}); {elapsed:.0f} s")
    header = f"  {'seconds':<16}{'kills':>6}{'p50':>10}{'p99':>10}{'max':>10}"
    print()
    print("ticking again: every affected symbol has a fresh tick (from another connection, or")
    print("from the victim once it has reconnected)")
    print(header)
    done = [k for k in kills if k.again is not None]
    print(row("all", [k.again for k in done if k.again is not None]))
    for kind in args.faults:
        print(row(kind, [k.again for k in done if k.kind == kind and k.again is not None]))
    timeouts = len(kills) - len(done)
    if timeouts:
        print(f"  {timeouts} kill(s) not ticking again within {args.timeout:g} s (left out above)")
    print()
    print("stages, from the kill (all kinds); back home: from recovery to the plan as before")
    print(header)
    print(row("detected", [k.detect for k in kills if k.detect is not None]))
    print(row("plan moved", [k.plan for k in kills if k.plan is not None]))
    moved = [k.elsewhere for k in kills if k.elsewhere is not None]
    print(row("ticks elsewhere", moved))
    print(row("ticking again", [k.again for k in done if k.again is not None]))
    print(row("back home", [k.back_home for k in kills if k.back_home is not None]))
    in_place = sum(1 for k in done if k.elsewhere is None)
    if in_place:
        print(
            f"  {in_place} kill(s) recovered in place: the victim was back before the plan "
            "moved its symbols (no 'ticks elsewhere')"
        )
    budget = 2.0
    values = [k.again for k in done if k.again is not None]
    within = sum(1 for v in values if v <= budget)
    p99 = percentile(values, 99) if values else float("inf")
    verdict = "met" if p99 <= budget and not timeouts else "NOT met"
    print()
    print(
        f"goal p99 <= {budget:g} s: {verdict} (p99 {p99:.3f} s; {within}/{len(kills)} kills "
        f"within {budget:g} s)"
    )


async def bench(args: argparse.Namespace, var_dir: Path) -> None:
    from asgiref.sync import sync_to_async

    from feeds.providers.backoff import Backoff
    from feeds.providers.simulation.run import start_simulators

    sims: SimulatorSet | None = None
    child: SimulatorProcess | None = None
    faults: Faults
    if args.sim_process:
        child = SimulatorProcess(var_dir, ticks_per_second=args.ticks_per_second, seed=args.seed)
        described = await child.start()
        faults = RemoteFaults(described["fyers"]["api_url"])
    else:
        universe = await sync_to_async(lambda: sim_universe(enabled_only=False))()
        sims = await start_simulators(
            universe, seed=args.seed, ticks_per_second=args.ticks_per_second, step_interval=0.05
        )
        described = sims.describe("127.0.0.1")
        faults = InProcessFaults(sims)
    point_at_simulators(described)
    worker = worker_build(
        worker_id="bench-failover",
        recover_after=args.recover_after,
        connect_grace=2.0,
        health_interval=0.05,
        client_options={
            "silence_timeout": args.silence,
            "backoff": Backoff(base=0.1, cap=1.0),
            "auth_backoff": Backoff(base=0.5, cap=1.0),
        },
    )
    worker.tracker.flap_window = args.flap_window
    probe = Probe(worker)
    probe.install()
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        started = time.monotonic()
        kills, warm, ticked = await run_kills(args, faults, worker, probe)
        elapsed = time.monotonic() - started - warm
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await task
        await worker.coordinator.close()
        if isinstance(faults, RemoteFaults):
            await faults.close()
        if sims is not None:
            await sims.stop()
        if child is not None:
            await child.stop()
    report(args, kills, warm, elapsed, ticked)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Failover time: random FYERS connection kills under load (p50/p99/max "
        "until every affected symbol ticks again).",
    )
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1, help="kills, fault kinds and market")
    parser.add_argument(
        "--faults",
        default="close_clean,close_unclean,stall",
        help=f"comma-separated, picked uniformly; from {', '.join(FAULT_KINDS)}",
    )
    parser.add_argument("--symbols", type=int, default=1000, help="on FYERS (200 a connection)")
    parser.add_argument("--critical", type=int, default=20, help="of --symbols; also on Upstox")
    parser.add_argument("--standard", type=int, default=200, help="more symbols, on Upstox")
    parser.add_argument("--ticks-per-second", type=float, default=2.0, help="per instrument")
    parser.add_argument("--fyers-connections", type=int, default=10, help="the account's max")
    parser.add_argument("--silence", type=float, default=0.5, help="client silence timeout (s)")
    parser.add_argument("--recover-after", type=float, default=1.0, help="seconds live")
    parser.add_argument("--flap-window", type=float, default=1.0, help="tracker flap window (s)")
    parser.add_argument("--stall-seconds", type=float, default=3.0)
    parser.add_argument("--timeout", type=float, default=15.0, help="per kill (s)")
    parser.add_argument(
        "--gap",
        type=float,
        default=0.0,
        help="extra seconds between being home again and the next kill (the worker may "
        "still be recording the return; 0 = kill at once)",
    )
    parser.add_argument(
        "--sim-process",
        action="store_true",
        help="run the simulators in a child process (bench/_hub.py); faults over /_sim/",
    )
    parser.add_argument("--log-level", default="ERROR")
    parser.add_argument("--verbose", action="store_true", help="one line per kill")
    args = parser.parse_args(argv)
    args.faults = [f for f in args.faults.split(",") if f]
    if unknown := set(args.faults) - set(FAULT_KINDS):
        parser.error(f"unknown faults: {', '.join(sorted(unknown))}")
    if not args.faults or args.kills < 1 or args.symbols < 200:
        parser.error("need at least one fault kind, one kill and 200 symbols")
    if args.critical > args.symbols:
        parser.error("--critical is part of --symbols")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-failover-") as tmp:
        django_setup(Path(tmp), log_level=args.log_level)
        ids = instruments_create(args.symbols + args.standard)
        accounts_configure(fyers_connections=args.fyers_connections)
        instruments_enable(ids[: args.critical], tier="critical", priority=100)
        instruments_enable(ids[args.critical : args.symbols], tier="high_frequency")
        instruments_enable(ids[args.symbols :], tier="standard")
        print(f"python {sys.version.split()[0]}; database in {tmp}", file=sys.stderr)
        asyncio.run(bench(args, Path(tmp)))


if __name__ == "__main__":
    main()
