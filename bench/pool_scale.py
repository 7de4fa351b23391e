"""Scale: 10,000 symbols on one feed worker against the simulators: memory, CPU, ticks/s.

    .venv/bin/python bench/pool_scale.py [--symbols 10000] [--critical 1000] [--rates 1,5]
                                         [--duration 30]

Shape (the issue's "10,000 symbols, FYERS cap 200 -> 50 connections, plus Upstox"): 10,000
generated NSE equities listed by both providers, all on FYERS (``--critical`` of them
critical, the rest high frequency; first-fit fills 50 connections of 200), the criticals
also carried by Upstox as cross-checks (default account: 2 connections, per-mode limits).
With the defaults that is 11,000 subscriptions on 51 sockets, all in the hub's default data
mode ``quote`` (FYERS full ``U`` packets, Upstox ``full``). ``--standard N`` adds N more
symbols that go to Upstox only.

Each rate in ``--rates`` (simulator ticks per second per instrument: Poisson arrivals plus the
simulator's bursts; liquid NSE names tick a few times a second, most of a 10k universe less)
runs in its own child process so that every figure is that run's alone:

* a fresh throwaway SQLite database (``bench/_hub.py``), the instruments and accounts;
* the simulators in a grandchild process (``bench/_hub.py`` runner) over the enabled
  instruments, so the worker process's CPU and memory are the worker's (plus Django);
* the real ``FeedWorker`` from ``feeds.runtime.feed_worker_build`` with the settings'
  configuration (silence 1 s, recover after 5 s);
* time from the worker's start until every instrument has ticked once (the simulators send
  a snapshot per new subscription, as FYERS and Upstox do) and until the pool has settled
  (every placement home: none failed over or left out, all ticked); then a fixed
  ``--duration`` window: ticks/s handled (``worker.stats.ticks``), ticks/s offered to the
  worker's sockets (counted in the simulator process) and the market's own tick rate,
  worker CPU seconds (``os.times``), RSS and peak RSS (``/proc/self/status`` VmRSS, VmHWM;
  the peak includes the setup: Django, migrations, 10k rows), reconnects and failovers, and
  how late each side's event loop wakes a 50 ms sleeper (a stalled loop leaves its sockets
  unread, and the clients' 1 s silence watchdog then fails connections over).

The simulators are one Python process: in the default full/quote mode they top out near one
core at roughly 17-20k ticks/s, so at ``--rates 5`` the offered rate is theirs, not 5 x
11,000, and their loop stalls for 1-2 s at a time (printed). ``--silence`` raises the
worker's silence timeout to keep such stalls from failing connections over.

The baseline, measured in this process after the runs: our decoders alone on frames built
as in ``bench/decode_vs_sdk.py`` (FYERS ``fyers_full``: 100 21-field ``U`` packets a frame;
Upstox ``upstox_full``), best of 3. Printed: handled / ceiling, and the worker's capacity
(ticks per CPU-second of the worker process, i.e. what one busy core would handle at this
cost per tick) against the ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _hub import (
    REPO_ROOT,
    LoopLag,
    SimulatorProcess,
    accounts_configure,
    cpu_seconds,
    django_setup,
    instruments_create,
    instruments_enable,
    point_at_simulators,
    proc_status_kb,
    until,
    worker_build,
)

FYERS_CAP = 200  # symbols per FYERS connection (the design's cap)


# --- one run (child process) ---------------------------------------------------------------


def snapshot(worker: Any) -> dict[str, Any]:
    clients = list(worker.pool.clients.values())
    return {
        "at": time.monotonic(),
        "cpu": cpu_seconds(),
        "ticks": dict(worker.stats.ticks),
        "reconnects": sum(c.stats.reconnects for c in clients),
        "failovers": worker.stats.failovers,
        "sync_errors": worker.stats.sync_errors,
    }


async def run_one(args: argparse.Namespace, var_dir: Path) -> dict[str, Any]:
    from feeds.providers.base import ClientState

    sims = SimulatorProcess(var_dir, ticks_per_second=args.ticks_per_second, seed=args.seed)
    described = await sims.start()
    point_at_simulators(described)
    overrides: dict[str, Any] = {"worker_id": f"bench-scale-{os.getpid()}"}
    if args.silence is not None:
        from feeds.runtime import worker_config_from_settings

        options = dict(worker_config_from_settings().client_options)
        overrides["client_options"] = {**options, "silence_timeout": args.silence}
    worker = worker_build(**overrides)
    stop = asyncio.Event()
    result: dict[str, Any] = {"instruments_in_simulator": described["instruments"]}
    instruments = args.symbols + args.standard
    expected = instruments + args.critical  # the criticals' Upstox cross-checks
    lag = LoopLag()
    lag.start()
    t0 = time.monotonic()
    task = asyncio.create_task(worker.run(stop))
    try:

        def placed() -> list[tuple[str, str]]:
            if worker.plan is None:
                return []
            return [(k, p.conn.provider) for k, ps in worker.plan.assignment.items() for p in ps]

        def all_live() -> bool:
            clients = worker.pool.clients.values()
            return len(clients) >= 2 and all(c.state is ClientState.LIVE for c in clients)

        def settled() -> bool:
            """Every placement at home (nothing failed over or left out) and ticked."""
            plan = worker.plan
            if plan is None or plan.left_out or worker.tracker.unavailable():
                return False
            pairs = placed()
            return (
                len(pairs) == expected
                and all(p.reason != "failover" for ps in plan.assignment.values() for p in ps)
                and all(worker.latest.get(k, p) is not None for k, p in pairs)
            )

        live = await until(all_live, args.warmup_timeout, step=0.05)
        result["seconds_to_all_live"] = None if live is None else time.monotonic() - t0
        if await until(lambda: len(worker.latest) >= instruments, args.warmup_timeout) is None:
            raise SystemExit(f"not every instrument ticked within {args.warmup_timeout:g} s")
        result["seconds_to_all_ticked"] = time.monotonic() - t0
        if await until(settled, args.warmup_timeout, step=0.2) is None:
            raise SystemExit(f"the pool did not settle within {args.warmup_timeout:g} s")
        result["seconds_to_settled"] = time.monotonic() - t0
        assert worker.plan is not None
        pairs = placed()
        result["placements"] = {p: sum(1 for _, q in pairs if q == p) for p in ("fyers", "upstox")}
        result["left_out"] = len(worker.plan.left_out)
        result["connections"] = {
            p: sum(1 for c in worker.pool.clients if c.provider == p) for p in ("fyers", "upstox")
        }
        await asyncio.sleep(args.settle)
        result["warmup"] = {
            "failovers": worker.stats.failovers,
            "worker_loop_lag": lag.summary(),
            "simulator_loop_lag": (await sims.stats())["loop_lag"],
        }
        lag.reset()
        await sims.reset_lag()
        a, sa = snapshot(worker), await sims.stats()
        rss_max = proc_status_kb("VmRSS")
        end = time.monotonic() + args.duration
        while time.monotonic() < end:
            await asyncio.sleep(min(1.0, max(0.0, end - time.monotonic())))
            rss_max = max(rss_max, proc_status_kb("VmRSS"))
        b, sb = snapshot(worker), await sims.stats()
        window_lag = lag.summary()
    finally:
        lag.stop()
        stop.set()
        with contextlib.suppress(Exception):
            await task
        await worker.coordinator.close()
        await sims.stop()

    span, sim_span = b["at"] - a["at"], sb["at"] - sa["at"]
    providers = sorted(set(b["ticks"]) | set(sb["offered"]))
    result.update(
        {
            "window_seconds": span,
            "handled_per_s": {p: (b["ticks"].get(p, 0) - a["ticks"].get(p, 0)) / span
                              for p in providers},
            "offered_per_s": {p: (sb["offered"].get(p, 0) - sa["offered"].get(p, 0)) / sim_span
                              for p in providers},
            "market_ticks_per_s": (sb["market_ticks"] - sa["market_ticks"]) / sim_span,
            "worker_cpu_seconds": b["cpu"] - a["cpu"],
            "simulator_cpu_seconds": sb["cpu_seconds"] - sa["cpu_seconds"],
            "simulator_rss_kb": sb["rss_kb"],
            "rss_kb_window_max": rss_max,
            "rss_kb_end": proc_status_kb("VmRSS"),
            "hwm_kb": proc_status_kb("VmHWM"),
            "reconnects": b["reconnects"] - a["reconnects"],
            "failovers": b["failovers"] - a["failovers"],
            "sync_errors": b["sync_errors"],
            "worker_loop_lag": window_lag,
            "simulator_loop_lag": sb["loop_lag"],
        }
    )  # fmt: skip
    return result


def child(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        var_dir = Path(tmp)
        django_setup(var_dir, log_level=args.log_level)
        ids = instruments_create(args.symbols + args.standard)
        accounts_configure(fyers_connections=math.ceil(args.symbols / FYERS_CAP))
        instruments_enable(ids[: args.critical], tier="critical", priority=100)
        instruments_enable(ids[args.critical : args.symbols], tier="high_frequency")
        if args.standard:
            instruments_enable(ids[args.symbols :], tier="standard")
        setup = {"rss_kb": proc_status_kb("VmRSS"), "hwm_kb": proc_status_kb("VmHWM")}
        result = asyncio.run(run_one(args, var_dir))
        result["setup"] = setup
        result["ticks_per_second"] = args.ticks_per_second
        print(json.dumps(result), flush=True)


# --- the decode ceiling (this process) -------------------------------------------------------


def decode_ceiling(seconds: float) -> dict[str, float]:
    """Ticks/s of our decoders alone (best of 3), frames as in bench/decode_vs_sdk.py."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    import decode_vs_sdk as dvs

    rates = {}
    with tempfile.TemporaryDirectory(prefix="bench-ceiling-") as tmp:
        directory = Path(tmp)
        manifest = {**dvs.build_fyers(directory), **dvs.build_upstox(directory)}
        for provider, case in (("fyers", "fyers_full"), ("upstox", "upstox_full")):
            prime = dvs.read_frames(directory / f"{case}.prime")
            timed = dvs.read_frames(directory / f"{case}.timed")
            handle = dvs.ours_handler(case, manifest[case], prime)
            pilot = dvs._time_loop(handle, timed, 200, 1)
            iterations = max(200, math.ceil(seconds / (pilot["best"] / 200)))
            iterations += iterations % 2
            timing = dvs._time_loop(handle, timed, iterations, 3)
            rates[provider] = timing["ticks"] / timing["best"]
    return rates


# --- orchestration --------------------------------------------------------------------------


def run_child(args: argparse.Namespace, rate: float) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child"]
    cmd += ["--ticks-per-second", str(rate), "--symbols", str(args.symbols)]
    cmd += ["--critical", str(args.critical), "--standard", str(args.standard)]
    cmd += ["--duration", str(args.duration), "--settle", str(args.settle)]
    cmd += ["--warmup-timeout", str(args.warmup_timeout), "--seed", str(args.seed)]
    cmd += ["--log-level", args.log_level]
    if args.silence is not None:
        cmd += ["--silence", str(args.silence)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"run at {rate:g} ticks/s failed ({proc.returncode}):\n"
                         f"{proc.stderr[-4000:]}")  # fmt: skip
    if proc.stderr.strip() and args.log_level != "ERROR":
        print(proc.stderr, file=sys.stderr)
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def mb(kb: float) -> str:
    return f"{kb / 1024:,.0f} MB"


def report(args: argparse.Namespace, runs: list[dict[str, Any]], ceiling: dict[str, float]) -> None:
    print()
    first = runs[0]
    print(
        f"{args.symbols:,} symbols ({args.critical:,} critical, "
        f"{args.symbols - args.critical:,} high frequency"
        + (f", {args.standard:,} standard" if args.standard else "")
        + f"); placements {first['placements']['fyers']:,} FYERS on "
        f"{first['connections']['fyers']} connections + {first['placements']['upstox']:,} "
        f"Upstox on {first['connections']['upstox']}; {first['left_out']} left out"
    )
    print(
        f"decode ceiling (our decoders alone, this process): FYERS full "
        f"{ceiling['fyers']:,.0f} ticks/s, Upstox full {ceiling['upstox']:,.0f} ticks/s"
    )
    for run in runs:
        handled = sum(run["handled_per_s"].values())
        offered = sum(run["offered_per_s"].values())
        span = run["window_seconds"]
        cpu = run["worker_cpu_seconds"]
        ticks = handled * span
        # The ceiling for this run's provider mix: time per tick weighted by share.
        per_tick = sum(run["handled_per_s"].get(p, 0) / ceiling[p] for p in ceiling)
        mix_ceiling = handled / per_tick if per_tick else ceiling["fyers"]
        capacity = ticks / cpu if cpu else float("inf")
        print()
        print(f"simulator {run['ticks_per_second']:g} ticks/s per instrument, {span:.1f} s window")
        live = run["seconds_to_all_live"]
        warm = run["warmup"]
        print(f"  every instrument ticked {run['seconds_to_all_ticked']:.1f} s after the worker "
              f"started (all sockets live after {'-' if live is None else f'{live:.1f}'} s); "
              f"pool settled with all {sum(run['placements'].values()):,} placements home "
              f"and ticking after {run['seconds_to_settled']:.1f} s; {warm['failovers']} "
              f"failovers on the way (loop lag max: worker "
              f"{warm['worker_loop_lag']['max']:.2f} s, simulators "
              f"{warm['simulator_loop_lag']['max']:.2f} s)")  # fmt: skip
        print(
            f"  ticks/s: market {run['market_ticks_per_s']:,.0f}, offered to the worker's "
            f"sockets {offered:,.0f}, handled {handled:,.0f} ("
            + ", ".join(f"{p} {v:,.0f}" for p, v in sorted(run["handled_per_s"].items()))
            + f"); handled/offered {handled / offered if offered else 0:.3f}"
        )
        print(
            f"  worker CPU {cpu:.1f} s in {span:.1f} s ({cpu / span:.0%} of one core), "
            f"{cpu / ticks * 1e6 if ticks else 0:.1f} us per tick; simulators "
            f"{run['simulator_cpu_seconds'] / span:.0%} of a core in their own process"
        )
        print(
            f"  worker RSS {mb(run['rss_kb_window_max'])} (max in the window; "
            f"{mb(run['setup']['rss_kb'])} after setup, before the worker), peak VmHWM "
            f"{mb(run['hwm_kb'])}; goal < 500 MB: "
            f"{'met' if run['hwm_kb'] < 500 * 1024 else 'NOT met'}"
        )
        print(
            f"  vs decode ceiling for this mix ({mix_ceiling:,.0f} ticks/s): handled "
            f"{handled / mix_ceiling:.3f}x; worker capacity at this cost "
            f"{capacity:,.0f} ticks per CPU-second = {capacity / mix_ceiling:.2f}x the ceiling"
        )
        print(
            f"  during the window: {run['reconnects']} reconnects, {run['failovers']} "
            f"failovers, {run['sync_errors']} sync errors"
        )
        for side in ("worker", "simulator"):
            lag = run[f"{side}_loop_lag"]
            print(
                f"  {side} event-loop lag: max {lag['max'] * 1000:,.0f} ms, "
                f"{lag['over_100ms']}/{lag['samples']} wake-ups over 100 ms late"
                + "".join(
                    f"; {time.strftime('%H:%M:%S', time.localtime(at))} {late:.2f} s"
                    for at, late in lag["events"][:5]
                )
            )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="10,000 symbols on one feed worker against the simulators: RSS, CPU, "
        "ticks/s handled, against the decoders' own ceiling.",
    )
    parser.add_argument("--symbols", type=int, default=10_000, help="all on FYERS (200/conn)")
    parser.add_argument("--critical", type=int, default=1_000, help="of --symbols; +Upstox")
    parser.add_argument("--standard", type=int, default=0, help="more symbols, Upstox only")
    parser.add_argument("--rates", default="1,5", help="simulator ticks/s per instrument")
    parser.add_argument("--duration", type=float, default=30.0, help="measured window (s)")
    parser.add_argument("--settle", type=float, default=2.0, help="after all ticked (s)")
    parser.add_argument("--warmup-timeout", type=float, default=180.0)
    parser.add_argument("--ceiling-seconds", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--silence",
        type=float,
        default=None,
        help="client silence timeout (s); None: the settings' FEEDS_SILENCE_SECONDS (1 s)",
    )
    parser.add_argument("--log-level", default="ERROR")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ticks-per-second", type=float, default=1.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.critical > args.symbols or args.symbols < 1:
        parser.error("--critical is part of --symbols, which must be positive")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        child(args)
        return
    rates = [float(r) for r in args.rates.split(",") if r]
    runs = []
    for rate in rates:
        print(f"running {args.symbols:,} symbols at {rate:g} ticks/s ...", file=sys.stderr)
        runs.append(run_child(args, rate))
    ceiling = decode_ceiling(args.ceiling_seconds)
    report(args, runs, ceiling)


if __name__ == "__main__":
    main()
