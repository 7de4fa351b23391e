"""Shared setup for the pool benchmarks (``pool_failover.py``, ``pool_scale.py``).

A throwaway hub: Django on a fresh SQLite file in a temporary ``MDHUB_VAR_DIR`` (migrated),
generated NSE equities listed by both providers (unique keys, ISINs, fytokens and Upstox
keys), the default provider accounts, the real simulators (in this process, or in a child
process that reads the same database) and a ``FeedWorker`` built by
``feeds.runtime.feed_worker_build`` pointed at them.

The child-process runner (used by ``pool_scale.py``, so that the worker's CPU and memory are
its own):

    .venv/bin/python bench/_hub.py --var-dir DIR [--ticks-per-second 1] [--seed 1]

starts both simulators on free ports over the *enabled* instruments of DIR's database, prints
one JSON line (``SimulatorSet.describe``), then answers each ``stats`` line on stdin with one
JSON line (ticks offered to subscribed sockets per provider, market ticks, its CPU seconds
and RSS). It stops at end of input.

Nothing from the project is imported at module level: Django must be set up first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

REPO_ROOT = Path(__file__).resolve().parents[1]
RUNNER = str(Path(__file__).resolve())

if TYPE_CHECKING:
    from feeds.pool.worker import FeedWorker
    from feeds.providers.simulation.run import SimulatorSet
    from feeds.providers.simulation.universe import SimInstrument

BENCH_PREFIX = "NSE:BENCH"


# --- process figures ------------------------------------------------------------------------


def proc_status_kb(field: str, pid: int | str = "self") -> int:
    """A ``/proc/<pid>/status`` figure in kB (VmRSS, VmHWM); 0 where /proc or the process
    is missing."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds() -> float:
    """User + system CPU of this process (all threads)."""
    times = os.times()
    return times.user + times.system


class LoopLag:
    """How late this event loop wakes a task that sleeps ``interval``: a blocked or saturated
    loop shows here (and its sockets go unread meanwhile)."""

    def __init__(self, interval: float = 0.05, report_over: float = 0.5) -> None:
        self.interval = interval
        self.report_over = report_over
        self.max = 0.0
        self.samples = 0
        self.over_100ms = 0
        self.events: list[tuple[float, float]] = []  # (wall time, lag) above report_over
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def reset(self) -> None:
        self.max, self.samples, self.over_100ms, self.events = 0.0, 0, 0, []

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(self.interval)
            lag = loop.time() - started - self.interval
            self.samples += 1
            self.max = max(self.max, lag)
            if lag > 0.1:
                self.over_100ms += 1
            if lag > self.report_over:
                self.events.append((time.time(), lag))

    def summary(self) -> dict[str, Any]:
        return {
            "max": self.max,
            "samples": self.samples,
            "over_100ms": self.over_100ms,
            "events": self.events[-20:],
        }

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


# --- Django ---------------------------------------------------------------------------------


def django_setup(var_dir: Path, *, log_level: str = "ERROR", migrate: bool = True) -> None:
    """Django on a throwaway SQLite file in ``var_dir`` (embedded mode: no Redis)."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
        os.environ.pop(name, None)  # hermetic: never a real database or broker
    os.environ["MDHUB_VAR_DIR"] = str(var_dir)
    os.environ["DJANGO_SETTINGS_MODULE"] = "mdproject.settings"
    os.environ["LOG_LEVEL"] = log_level
    import django

    django.setup()
    if migrate:
        from django.core.management import call_command

        call_command("migrate", verbosity=0)


def instruments_create(count: int) -> list[int]:
    """``count`` NSE equities listed by both providers; returns their ids in key order.

    Shapes as in the real masters: key ``NSE:BENCH00042``, FYERS ``NSE:BENCH00042-EQ`` with
    fytoken ``1010000000`` + exchange token, Upstox ``NSE_EQ|<ISIN>``, 12-character ISINs.
    """
    from decimal import Decimal

    from feeds.models import Instrument

    rows = []
    for n in range(count):
        isin = f"INE{n:06d}B01"  # 12 characters like INE062A01020; unique per n
        token = str(20_000 + n)
        rows.append(
            Instrument(
                key=f"{BENCH_PREFIX}{n:05d}",
                exchange="NSE",
                segment="CM",
                instrument_type="EQ",
                name=f"Bench Company {n} Ltd",
                isin=isin,
                exchange_token=token,
                tick_size=Decimal("0.05"),
                lot_size=1,
                fyers_symbol=f"{BENCH_PREFIX}{n:05d}-EQ",
                fyers_token=f"1010000000{token}",
                upstox_key=f"NSE_EQ|{isin}",
                upstox_trading_symbol=f"BENCH{n:05d}",
            )
        )
    Instrument.objects.bulk_create(rows, batch_size=500)
    return list(
        Instrument.objects.filter(key__startswith=BENCH_PREFIX)
        .order_by("key")
        .values_list("pk", flat=True)
    )


def instruments_enable(ids: Sequence[int], *, tier: str, priority: int = 50) -> None:
    """Enable and tier instruments through the services (as the admin would)."""
    from feeds import services
    from feeds.models import Instrument

    for start in range(0, len(ids), 2_000):  # keep each IN (...) well inside SQLite's limit
        chunk = list(ids[start : start + 2_000])
        services.instruments_set_enabled(instrument_ids=chunk, enabled=True)
        services.instruments_set_tier(instrument_ids=chunk, tier=tier)
        Instrument.objects.filter(pk__in=chunk).update(priority=priority)


def accounts_configure(*, fyers_connections: int, upstox_connections: int | None = None) -> None:
    """The default accounts (FYERS 200 symbols per connection; Upstox with its mode limits),
    then the connection counts asked for."""
    from feeds import services
    from feeds.models import ProviderAccount

    services.provider_accounts_ensure_defaults()
    ProviderAccount.objects.filter(provider="fyers").update(max_connections=fyers_connections)
    if upstox_connections is not None:
        ProviderAccount.objects.filter(provider="upstox").update(max_connections=upstox_connections)


def sim_universe(*, enabled_only: bool) -> list[SimInstrument]:
    from feeds.providers.simulation.universe import sim_instrument_from
    from feeds.selectors import instruments_for_simulation

    return [sim_instrument_from(r) for r in instruments_for_simulation(enabled_only=enabled_only)]


def point_at_simulators(described: dict[str, Any]) -> None:
    """Settings URLs and the accounts' token variables -> the simulators (like the tests'
    ``sims`` fixture)."""
    from django.conf import settings

    fyers, upstox = described["fyers"], described["upstox"]
    settings.FYERS = {**settings.FYERS, "API_URL": fyers["api_url"],
                      "SOCKET_URL": fyers["socket_url"]}  # fmt: skip
    settings.UPSTOX = {**settings.UPSTOX, "API_URL": upstox["api_url"],
                       "FEED_URL": upstox["feed_url"]}  # fmt: skip
    os.environ["FYERS_ACCESS_TOKEN"] = fyers["token"]
    os.environ["UPSTOX_ACCESS_TOKEN"] = upstox["token"]


def worker_build(**overrides: Any) -> FeedWorker:
    """The real worker (``feed_worker_build``) with settings-based config plus overrides."""
    from feeds.runtime import feed_worker_build, worker_config_from_settings

    config = worker_config_from_settings(**overrides)
    return feed_worker_build(config=config)


# --- simulators -----------------------------------------------------------------------------


def count_offered(sims: SimulatorSet) -> Counter[str]:
    """Count, per provider, the ticks each market step hands to subscribed, open sockets
    (one per socket holding the instrument; data faults are not used here). Wraps the
    instances' ``on_step``; the counting costs the simulators' CPU, not the worker's."""
    offered: Counter[str] = Counter()
    fyers, upstox = sims.fyers, sims.upstox
    fyers_step, upstox_step = fyers.on_step, upstox.on_step

    def fyers_on_step(quotes: list[Any], late: list[Any]) -> None:
        if fyers.connections:
            subscribers, open_ = fyers.subscribers, fyers.connections
            n = 0
            for quote in quotes:
                holders = subscribers.get(quote.key)
                if holders:
                    n += sum(1 for cid in holders if cid in open_)
            offered["fyers"] += n
        fyers_step(quotes, late)

    def upstox_on_step(quotes: list[Any], late: list[Any]) -> None:
        if upstox.connections:
            subscribers, open_ = upstox.subscribers, upstox.connections
            n = 0
            for quote in quotes:
                key = quote.instrument.upstox_key
                holders = subscribers.get(key) if key else None
                if holders:
                    n += sum(1 for cid in holders if cid in open_)
            offered["upstox"] += n
        upstox_step(quotes, late)

    fyers.on_step = fyers_on_step  # type: ignore[method-assign]
    upstox.on_step = upstox_on_step  # type: ignore[method-assign]
    return offered


class SimulatorProcess:
    """The simulators in a child process over the enabled instruments of ``var_dir``."""

    def __init__(self, var_dir: Path, *, ticks_per_second: float, seed: int) -> None:
        self.var_dir = var_dir
        self.ticks_per_second = ticks_per_second
        self.seed = seed
        self.proc: asyncio.subprocess.Process | None = None
        self.described: dict[str, Any] = {}
        self.log_path = var_dir / "simulators.log"

    async def start(self, limit: float = 120.0) -> dict[str, Any]:
        cmd = [sys.executable, RUNNER, "--var-dir", str(self.var_dir)]
        cmd += ["--ticks-per-second", str(self.ticks_per_second), "--seed", str(self.seed)]
        log = self.log_path.open("wb")
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *cmd,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                limit=2**20,
            )
        finally:
            log.close()  # the child holds its own descriptor
        self.described = await self._read(limit)
        return self.described

    async def reset_lag(self) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(b"reset\n")
        await self.proc.stdin.drain()

    async def stats(self) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(b"stats\n")
        await self.proc.stdin.drain()
        return await self._read(10.0)

    async def _read(self, limit: float) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), limit)
        if not line:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise SystemExit(f"the simulator process ended early:\n{tail}")
        return dict(json.loads(line))

    async def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 15.0)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


async def _serve(args: argparse.Namespace) -> None:
    from asgiref.sync import sync_to_async

    from feeds.providers.simulation.run import start_simulators

    universe = await sync_to_async(lambda: sim_universe(enabled_only=True))()
    sims = await start_simulators(universe, seed=args.seed, ticks_per_second=args.ticks_per_second)
    offered = count_offered(sims)
    lag = LoopLag()
    lag.start()
    print(json.dumps(sims.describe("127.0.0.1")), flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while line := await reader.readline():
            if line.strip() == b"reset":
                lag.reset()
            elif line.strip() == b"stats":
                stats = {
                    "at": time.monotonic(),
                    "offered": dict(offered),
                    "market_ticks": sims.hub.model.ticks_total,
                    "steps": sims.hub.steps,
                    "cpu_seconds": cpu_seconds(),
                    "rss_kb": proc_status_kb("VmRSS"),
                    "loop_lag": lag.summary(),
                    "connections": {
                        "fyers": len(sims.fyers.connections),
                        "upstox": len(sims.upstox.connections),
                    },
                }
                print(json.dumps(stats), flush=True)
    finally:
        lag.stop()
        await sims.stop()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Both simulators in this process over the enabled instruments of a "
        "benchmark database (a child of bench/pool_scale.py)."
    )
    parser.add_argument("--var-dir", type=Path, required=True)
    parser.add_argument("--ticks-per-second", type=float, default=1.0, help="per instrument")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    django_setup(args.var_dir, log_level="WARNING", migrate=False)
    asyncio.run(_serve(args))


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100) of a non-empty sample."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


async def until(predicate: Callable[[], bool], limit: float, step: float = 0.01) -> float | None:
    """Poll ``predicate``; the seconds it took, or None past ``limit``."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > limit:
            return None
        await asyncio.sleep(step)
    return time.monotonic() - start


if __name__ == "__main__":
    main()
