"""End-to-end delivery: simulator frame sent -> client message received, this design against
a naive Channels baseline, under Daphne and Uvicorn, every part in its own process.

    .venv/bin/python bench/delivery_e2e.py                       # the full matrix (~20 min)
    .venv/bin/python bench/delivery_e2e.py --designs design --servers daphne \
        --loads 2000 --clients 100 --seconds 5                   # a quick look (~1 min)

Processes (all on this machine, started and killed here, each in its own process group):

* a private ``redis-server`` on a free port (no persistence);
* the simulators (``_delivery_sim.py serve``): both providers over the enabled instruments,
  one market; it records, per tick, (instrument, cumulative volume) -> the wall time
  (``time.time_ns()``) at the end of the market step that built and queued the tick's FYERS
  frame (the socket writers send it on the next turns of that loop);
* the feed worker, ``_delivery_worker.py``: **design** runs ``feeds.runtime.feeds_serve``,
  exactly what ``manage.py runfeeds --no-simulators`` runs (the real publisher: one batch
  per ``MDHUB_FLUSH_MS`` to group ``market.ticks`` on the pub/sub layer, plus the L2 write),
  with the publisher's counters and flush/send/L2 timings readable; **baseline** is the same
  worker whose publish hook does one ``group_send`` per tick to group ``sym.<key>`` on
  ``channels_redis.core`` (at most ``--max-in-flight`` at once; past that, counted drops);
  **design-nol2** (a diagnostic, not in the default matrix) is the design without the L2
  write in the flush;
* the ASGI server, Daphne or Uvicorn (``--ws websockets``, uvloop when installed), serving
  ``mdproject.asgi:application`` (design: ``/ws/v1/market/``, the ``FanoutHub``, conflating
  per-client queues) or ``_delivery_naive:application`` (baseline: one group per symbol per
  consumer, one text frame per tick event);
* the load clients (``_delivery_clients.py``), 2 processes (4 from 200 clients), each
  client one socket subscribing 50 symbols in quote mode.

Load: ``--instruments`` (5,000) generated NSE equities, all on FYERS (``high_frequency``
tier, 200 per connection: 25 connections), each ticking ``load / instruments`` times a
second (Poisson, 10 ms market steps, no bursts). Client c subscribes instruments
``50c .. 50c+49`` (mod 5,000), so every instrument has ``clients * 50 / 5,000``
subscribers: 1 with 100 clients, 5 with 500.

Per run (design, server, clients, load): the rate is set, ``--warmup`` seconds pass, then
the simulators record every tick for ``--seconds`` (the window) while the clients record
every update item they receive until ``--tail`` seconds after it. Offline, each received
item is joined to its tick by (instrument, volume):

* latency = client receive time - simulator step time of that tick (same clock). It spans
  the simulator's frame write, the worker's read, decode and publish, Redis, the ASGI
  process's fan-out and send, the kernel, and the client's read up to its ``async for``
  (client-side queueing included: a saturated client adds to it);
* offered = sum over the window's ticks of the subscribers of their instrument (what the
  clients would get with no conflation); delivered = items received that match a window
  tick (a tick received later than ``--tail`` after the window counts as not delivered);
* conflated = the seq gaps in front of delivered items (the hub's own count of updates it
  replaced by newer ones); batch-replaced = ticks the design's publisher replaced by a newer
  one of the same instrument within a batch (its own counter, times the subscribers: the
  hub never sees those, so no seq gap shows them); unexplained = offered - delivered -
  conflated - batch-replaced (the baseline has no seq: all it misses is unexplained: silent
  drops);
* a run *keeps up* when (delivered + conflated + batch-replaced) / offered >= 0.99, p99
  <= ``--keep-up-ms`` (100), the median latency of the window's last third is within 50 ms
  of its first third (no growing lag) and no client was closed. The *sustainable
  throughput* of a (design, server, clients) is the highest load such that it and every
  lower load tested kept up.

CPU is utime+stime from /proc/<pid>/stat over the window (% of one core); RSS is the highest
VmRSS sampled every 0.25 s in the window. Results as JSON with ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import math
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))

from _delivery_common import (  # noqa: E402
    machine_cpu,
    proc_cpu_seconds,
    proc_status_kb,
    subscriber_counts,
)

PYTHON = sys.executable
VENV_BIN = Path(PYTHON).parent
PER_CONNECTION = 200  # FYERS symbols per connection (settings default)
DESIGNS = ("design", "baseline", "design-nol2")  # the last: a diagnostic (no L2 write)
SERVERS = ("daphne", "uvicorn")
PATHS = {"design": "/ws/v1/market/", "baseline": "/ws/naive/", "design-nol2": "/ws/v1/market/"}
APPS = {"design": "mdproject.asgi:application", "baseline": "_delivery_naive:application",
        "design-nol2": "mdproject.asgi:application"}  # fmt: skip

# --- processes ------------------------------------------------------------------------------

_started: list[int] = []  # process-group ids, for the last-resort kill


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Child:
    """A child process in its own process group; ``ask`` speaks the line protocol."""

    name: str
    proc: asyncio.subprocess.Process
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def read(self, limit: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), limit)
        except TimeoutError:
            raise SystemExit(f"{self.name}: no answer within {limit:g} s; log {self.log}:\n"
                             + self.tail()) from None  # fmt: skip
        if not line:
            raise SystemExit(f"{self.name} ended early; log {self.log}:\n{self.tail()}")
        return dict(json.loads(line))

    async def ask(self, command: str, limit: float = 60.0) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command.encode() + b"\n")
        await self.proc.stdin.drain()
        reply = await self.read(limit)
        if "error" in reply:
            raise SystemExit(f"{self.name}: {command}: {reply['error']}")
        return reply

    def tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc.returncode is None

    async def stop(self, limit: float = 10.0) -> None:
        """End of input (children that read commands), SIGTERM to the group, then SIGKILL."""
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            with contextlib.suppress(Exception):
                self.proc.stdin.write(b"quit\n")
                self.proc.stdin.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), limit / 2)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.proc.returncode is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), limit)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # anything it left behind
        with contextlib.suppress(ValueError):
            _started.remove(self.proc.pid)


async def spawn(
    name: str, cmd: list[str], *, env: dict[str, str], logs: Path, commands: bool = False
) -> Child:
    log = logs / f"{name}.log"
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            cwd=REPO_ROOT,
            env=env,
            stdin=asyncio.subprocess.PIPE if commands else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE if commands else out,
            stderr=out,
            start_new_session=True,
            limit=2**22,
        )
    _started.append(proc.pid)
    return Child(name, proc, log)


def kill_all_now() -> None:
    for pgid in list(_started):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)


async def wait_port(port: int, child: Child, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if not child.alive():
            raise SystemExit(f"{child.name} ended early; log {child.log}:\n{child.tail()}")
        with contextlib.suppress(OSError):
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        await asyncio.sleep(0.1)
    raise SystemExit(f"{child.name}: nothing listening on {port} after {limit:g} s")


# --- the bench ------------------------------------------------------------------------------


@dataclass
class Bench:
    args: argparse.Namespace
    tmp: Path
    logs: Path
    redis_url: str = ""
    redis: Child | None = None
    sim: Child | None = None
    token: str = ""
    described: dict[str, Any] = field(default_factory=dict)
    base_env: dict[str, str] = field(default_factory=dict)

    def env(self, **extra: str) -> dict[str, str]:
        return {**self.base_env, **extra}

    async def start(self) -> None:
        args = self.args
        env = {k: v for k, v in os.environ.items() if k not in (
            "DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND",
            "DJANGO_SETTINGS_MODULE", "MDHUB_VAR_DIR")}  # fmt: skip
        env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), str(BENCH_DIR)])
        port = free_port()
        self.redis_url = f"redis://127.0.0.1:{port}/0"
        self.redis = await spawn(
            "redis", ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                      "--appendonly", "no", "--dir", str(self.tmp)],
            env=env, logs=self.logs,
        )  # fmt: skip
        await wait_port(port, self.redis)
        var = self.tmp / "var"
        var.mkdir()
        setup = await asyncio.to_thread(
            subprocess.run,
            [PYTHON, str(BENCH_DIR / "_delivery_sim.py"), "setup", "--var-dir", str(var),
             "--instruments", str(args.instruments)],
            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        if setup.returncode:
            raise SystemExit(f"setup failed:\n{setup.stderr[-3000:]}")
        self.token = json.loads(setup.stdout.strip().splitlines()[-1])["token"]
        self.sim = await spawn(
            "simulators", [PYTHON, str(BENCH_DIR / "_delivery_sim.py"), "serve", "--var-dir",
                           str(var), "--rate", "0.1", "--step-ms", str(args.step_ms)]
            + (["--bursts"] if args.bursts else []),
            env=env, logs=self.logs, commands=True,
        )  # fmt: skip
        self.described = await self.sim.read(120.0)
        fyers, upstox = self.described["fyers"], self.described["upstox"]
        self.base_env = {
            **env,
            "DJANGO_SETTINGS_MODULE": "mdproject.settings",
            "MDHUB_VAR_DIR": str(var),
            "REDIS_URL": self.redis_url,
            "LOG_LEVEL": "WARNING",
            "FYERS_API_URL": fyers["api_url"],
            "FYERS_SOCKET_URL": fyers["socket_url"],
            "FYERS_ACCESS_TOKEN": fyers["token"],
            "UPSTOX_API_URL": upstox["api_url"],
            "UPSTOX_FEED_URL": upstox["feed_url"],
            "UPSTOX_ACCESS_TOKEN": upstox["token"],
            # One bench user holds every client: lift its per-user limits.
            "MDHUB_MAX_SUBSCRIPTIONS": "1000000",
            "MDHUB_MAX_CONNECTIONS": "100000",
            "MDHUB_MAX_REQUESTS_PER_SECOND": "100000",
        }

    async def stop(self) -> None:
        for child in (self.sim, self.redis):
            if child is not None:
                await child.stop()

    def flush_redis(self) -> None:
        import redis

        client = redis.Redis.from_url(self.redis_url)
        try:
            client.flushall()
        finally:
            client.close()


@dataclass
class Stack:
    design: str
    server: str
    clients: int
    worker: Child
    asgi: Child
    client_procs: list[Child]
    loop_name: str


async def stack_start(bench: Bench, design: str, server: str, clients: int) -> Stack:
    args = bench.args
    assert bench.sim is not None
    bench.flush_redis()
    await bench.sim.ask("rate 0.1")  # quiet while connecting
    env = bench.env()
    cmd = [PYTHON, str(BENCH_DIR / "_delivery_worker.py"), "--publisher",
           "naive" if design == "baseline" else "batch", "--max-in-flight",
           str(args.max_in_flight)]  # fmt: skip
    if design == "design-nol2":
        cmd.append("--no-l2")
    worker = await spawn(f"worker-{design}-{server}-{clients}", cmd, env=env, logs=bench.logs,
                         commands=True)  # fmt: skip
    connections = math.ceil(args.instruments / PER_CONNECTION)
    deadline = time.monotonic() + 180
    while True:
        stats = await bench.sim.ask("stats")
        if stats["subscribed"] >= args.instruments and stats["fyers_connections"] >= connections:
            break
        if not worker.alive() or time.monotonic() > deadline:
            raise SystemExit(f"worker not subscribed to everything ({stats['subscribed']}); "
                             f"log {worker.log}:\n{worker.tail()}")  # fmt: skip
        await asyncio.sleep(0.5)
    port = free_port()
    loop_name = "asyncio"
    if server == "daphne":
        cmd = [str(VENV_BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "-v", "0",
               APPS[design]]  # fmt: skip
    else:
        try:
            import uvloop  # noqa: F401

            loop_name = "uvloop"
        except ImportError:
            pass
        cmd = [PYTHON, "-m", "uvicorn", APPS[design], "--host", "127.0.0.1", "--port",
               str(port), "--ws", "websockets", "--loop", loop_name, "--lifespan", "off",
               "--log-level", "warning", "--no-access-log"]  # fmt: skip
    asgi = await spawn(f"{server}-{design}-{clients}", cmd, env=env, logs=bench.logs)
    await wait_port(port, asgi)
    procs = args.client_procs or (2 if clients < 200 else 4)
    procs = max(1, min(procs, clients))
    url = f"ws://127.0.0.1:{port}{PATHS[design]}"
    client_procs = []
    for i in range(procs):
        first = clients * i // procs
        count = clients * (i + 1) // procs - first
        cmd = [PYTHON, str(BENCH_DIR / "_delivery_clients.py"), "--url", url, "--design",
               "naive" if design == "baseline" else "design", "--first", str(first), "--count",
               str(count), "--per-client", str(args.per_client), "--instruments",
               str(args.instruments)]  # fmt: skip
        if design != "baseline":
            cmd += ["--token", bench.token]
        client_procs.append(await spawn(f"clients-{design}-{server}-{clients}-{i}", cmd, env=env,
                                        logs=bench.logs, commands=True))  # fmt: skip
    started = time.monotonic()
    replies = await asyncio.gather(*(c.ask("connect", 300.0) for c in client_procs))
    ready = sum(r["ready"] for r in replies)
    failed = sum(r["failed"] for r in replies)
    print(f"  {clients} clients ready in {time.monotonic() - started:.1f} s"
          + (f"; {failed} FAILED: {[r['errors'] for r in replies]}" if failed else ""),
          file=sys.stderr)  # fmt: skip
    if ready < clients:
        raise SystemExit(f"only {ready} of {clients} clients connected; see {asgi.log}")
    return Stack(design, server, clients, worker, asgi, client_procs, loop_name)


async def stack_stop(stack: Stack) -> None:
    await asyncio.gather(*(c.stop() for c in stack.client_procs))
    await stack.asgi.stop()
    await stack.worker.stop(limit=15.0)


class Sampler:
    """Highest VmRSS of each process while the window runs."""

    def __init__(self, pids: dict[str, list[int]]) -> None:
        self.pids = pids
        self.max_kb: Counter[str] = Counter()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            for role, pids in self.pids.items():
                kb = sum(proc_status_kb(pid, "VmRSS") for pid in pids)
                self.max_kb[role] = max(self.max_kb[role], kb)
            await asyncio.sleep(0.25)

    async def stop(self) -> dict[str, int]:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        return dict(self.max_kb)


def cpu_of(pids: dict[str, list[int]]) -> dict[str, float]:
    return {role: sum(proc_cpu_seconds(pid) for pid in ps) for role, ps in pids.items()}


def percentile(ordered: list[int], q: float) -> float:
    if not ordered:
        return float("nan")
    return float(ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))])


async def measure(bench: Bench, stack: Stack, load: float) -> dict[str, Any]:
    args = bench.args
    assert bench.sim is not None and bench.redis is not None
    rate = load / args.instruments
    await bench.sim.ask(f"rate {rate!r}")
    await asyncio.sleep(args.warmup)
    pids = {
        "server": [stack.asgi.pid],
        "worker": [stack.worker.pid],
        "redis": [bench.redis.pid],
        "simulators": [bench.sim.pid],
        "clients": [c.pid for c in stack.client_procs],
        "controller": [os.getpid()],
    }
    worker_before = await stack.worker.ask("stats")
    sim_before = await bench.sim.ask("stats")
    await asyncio.gather(*(c.ask("record") for c in stack.client_procs))
    sampler = Sampler(pids)
    sampler.start()
    cpu_before, machine_before = cpu_of(pids), machine_cpu()
    w0 = (await bench.sim.ask("record"))["at"]
    await asyncio.sleep(args.seconds)
    w1 = (await bench.sim.ask("unrecord"))["at"]
    cpu_after, machine_after = cpu_of(pids), machine_cpu()
    rss = await sampler.stop()
    window = (w1 - w0) / 1e9
    busy = (machine_after[0] - machine_before[0]) / max(1e-9, machine_after[1] - machine_before[1])
    busy *= 100
    sim_after = await bench.sim.ask("stats")
    worker_after = await stack.worker.ask("stats")
    await asyncio.sleep(args.tail)
    await asyncio.gather(*(c.ask("unrecord") for c in stack.client_procs))
    client_stats = await asyncio.gather(*(c.ask("stats") for c in stack.client_procs))
    hwm = {"server": proc_status_kb(stack.asgi.pid, "VmHWM"),
           "worker": proc_status_kb(stack.worker.pid, "VmHWM")}  # fmt: skip
    # Dump and join.
    sim_path = bench.tmp / "sim.pickle"
    await bench.sim.ask(f"dump {sim_path}", 120.0)
    with sim_path.open("rb") as f:
        ticks = pickle.load(f)
    sim_path.unlink()
    subs = subscriber_counts(stack.clients, args.per_client, args.instruments)
    emitted: dict[int, int] = {}
    offered = 0
    for sym, vol, at in zip(ticks["symbol"], ticks["volume"], ticks["at"], strict=True):
        emitted[(sym << 40) | vol] = at
        offered += subs[sym]
    lat: list[int] = []
    upstream: list[int] = []  # simulator step -> feed worker received the frame
    thirds: list[list[int]] = [[], [], []]
    span = max(1, w1 - w0)
    delivered = conflated = unmatched = overflow = messages = items = conflated_field = 0
    for i, child in enumerate(stack.client_procs):
        path = bench.tmp / f"clients-{i}.pickle"
        await child.ask(f"dump {path}", 120.0)
        with path.open("rb") as f:
            got = pickle.load(f)
        path.unlink()
        counts = got["counts"]
        overflow += counts.get("overflow", 0)
        messages += counts.get("messages", 0)
        items += counts.get("items", 0)
        conflated_field += counts.get("conflated_field", 0)
        for sym, vol, at, gap, hub in zip(got["symbol"], got["volume"], got["at"], got["gap"],
                                          got["hub_ns"], strict=True):  # fmt: skip
            sent = emitted.get((sym << 40) | vol)
            if sent is None:
                unmatched += 1  # a tick from before or after the window
                continue
            delivered += 1
            conflated += gap
            latency = at - sent
            lat.append(latency)
            upstream.append(hub - sent)
            thirds[min(2, (sent - w0) * 3 // span)].append(latency)
        del got
    lat.sort()
    upstream.sort()
    medians = []
    for part in thirds:
        part.sort()
        medians.append(percentile(part, 50) / 1e6)
    closes: Counter[str] = Counter()
    for stats in client_stats:
        closes.update(stats["closes"])
    sent_ticks = len(ticks["at"])
    publisher = publisher_delta(worker_before, worker_after)
    # The design's publisher keeps the latest tick per instrument within a batch: those
    # replaced never reach the hub, so no seq gap shows them. Scaled to the window's ticks
    # and the mean subscriber count (every instrument has the same number here).
    pub_offered = publisher.get("offered", 0)
    replaced = (
        publisher.get("conflated", 0) * sent_ticks / pub_offered * offered / max(1, sent_ticks)
        if pub_offered
        else 0.0
    )
    accounted = (delivered + conflated + replaced) / offered if offered else 0.0
    p99 = percentile(lat, 99) / 1e6
    growth = medians[2] - medians[0] if lat else float("nan")
    keeps_up = (
        accounted >= 0.99
        and p99 <= args.keep_up_ms
        and growth <= 50.0
        and not closes
        and sum(s["open"] for s in client_stats) == stack.clients
    )
    reconnects = sim_after["fyers_max_connection_id"] - sim_before["fyers_max_connection_id"]
    run: dict[str, Any] = {
        "design": stack.design,
        "server": stack.server,
        "server_loop": stack.loop_name if stack.server == "uvicorn" else "asyncio (Twisted)",
        "clients": stack.clients,
        "client_procs": len(stack.client_procs),
        "load": load,
        "window_seconds": window,
        "ingested_per_s": sent_ticks / window,
        "ticks": sent_ticks,
        "recorder_overflow": ticks["overflow"],
        "offered": offered,
        "offered_per_s": offered / window,
        "delivered": delivered,
        "delivered_per_s": delivered / window,
        "conflated": conflated,
        "batch_replaced": replaced,
        "unexplained": offered - delivered - conflated - replaced,
        "delivered_ratio": delivered / offered if offered else 0.0,
        "conflation_ratio": conflated / offered if offered else 0.0,
        "batch_replaced_ratio": replaced / offered if offered else 0.0,
        "accounted_ratio": accounted,
        "p50_ms": percentile(lat, 50) / 1e6,
        "p90_ms": percentile(lat, 90) / 1e6,
        "p99_ms": p99,
        "max_ms": lat[-1] / 1e6 if lat else float("nan"),
        "p50_by_third_ms": medians,
        "upstream_p50_ms": percentile(upstream, 50) / 1e6,
        "upstream_p99_ms": percentile(upstream, 99) / 1e6,
        "lag_growth_ms": growth,
        "keeps_up": keeps_up,
        "messages": messages,
        "items_per_message": items / messages if messages else 0.0,
        "conflated_field_sum": conflated_field,
        "unmatched_items": unmatched,
        "client_overflow": overflow,
        "client_closes": dict(closes),
        "clients_open": sum(s["open"] for s in client_stats),
        "cpu_percent": {r: (cpu_after[r] - cpu_before[r]) / window * 100 for r in pids},
        "cpu_us": {
            "simulators_per_tick": (cpu_after["simulators"] - cpu_before["simulators"])
            / max(1, sent_ticks)
            * 1e6,
            "worker_per_tick": (cpu_after["worker"] - cpu_before["worker"])
            / max(1, sent_ticks)
            * 1e6,
            "server_per_update": (cpu_after["server"] - cpu_before["server"])
            / max(1, delivered)
            * 1e6,
            "clients_per_update": (cpu_after["clients"] - cpu_before["clients"])
            / max(1, delivered)
            * 1e6,
            "server_per_message": (cpu_after["server"] - cpu_before["server"])
            / max(1, messages)
            * 1e6,
        },
        "machine_busy_percent": busy,
        "other_cpu_percent": busy * (os.cpu_count() or 1)
        - sum(cpu_after[r] - cpu_before[r] for r in pids) / window * 100,
        "rss_mb_max": {r: kb / 1024 for r, kb in rss.items()},
        "hwm_mb": {r: kb / 1024 for r, kb in hwm.items()},
        "simulator": {
            "loop_lag_max_s": sim_after["loop_lag"]["max"],
            "fyers_reconnects": reconnects,
            "queued_max": sim_after["queued_max"],
        },
    }
    run["publisher"] = publisher
    return run


def publisher_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The worker's publisher counters over the window; timings as count, mean and max."""
    out: dict[str, Any] = {}
    for key, value in after.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[key] = (
                value - before.get(key, 0)
                if key not in ("max_batch", "in_flight", "last_flush_seconds")
                else value
            )
    for name, timing in after.get("timings", {}).items():
        was = before.get("timings", {}).get(name, {"count": 0, "seconds": 0.0})
        count = timing["count"] - was["count"]
        seconds = timing["seconds"] - was["seconds"]
        out[name] = {"count": count, "mean_ms": seconds / count * 1000 if count else 0.0,
                     "max_ms": timing["max"] * 1000}  # fmt: skip
    return out


def row(run: dict[str, Any]) -> str:
    cpu, rss = run["cpu_percent"], run["rss_mb_max"]
    return (
        f"{run['design']:<8} {run['server']:<7} {run['load']:>6,.0f} {run['ingested_per_s']:>7,.0f}"
        f" {run['clients']:>4} {run['offered_per_s']:>8,.0f} {run['p50_ms']:>8.1f}"
        f" {run['p99_ms']:>8.1f} {run['max_ms']:>8.1f} {run['upstream_p50_ms']:>5.1f}"
        f" {run['delivered_ratio']:>6.3f}"
        f" {run['conflation_ratio'] * 100:>6.1f}% {run['batch_replaced_ratio'] * 100:>6.1f}%"
        f" {run['unexplained'] / max(1, run['offered']) * 100:>6.1f}%"
        f" {cpu['server']:>5.0f}% {rss['server']:>6.0f} {cpu['worker']:>5.0f}%"
        f" {rss['worker']:>5.0f} {cpu['redis']:>5.0f}% {cpu['simulators']:>5.0f}%"
        f" {cpu['clients']:>5.0f}% {run['other_cpu_percent']:>5.0f}%"
        f" {run['machine_busy_percent']:>5.0f}%"
        f"  {'yes' if run['keeps_up'] else 'NO'}"
    )  # fmt: skip


HEADER = (
    f"{'design':<8} {'server':<7} {'load':>6} {'ingest':>7} {'cli':>4} {'offer/s':>8}"
    f" {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'up50':>5} {'dlv/of':>6} {'confl':>7}"
    f" {'pubrep':>7} {'unexpl':>7}"
    f" {'srvCPU':>6} {'srvMB':>6} {'wkCPU':>6} {'wkMB':>5} {'redis':>6} {'sims':>6}"
    f" {'clnts':>6} {'other':>6} {'box':>6}  keeps up"
)


def sustainable(runs: list[dict[str, Any]]) -> dict[tuple[str, str, int], dict[str, Any]]:
    """Per (design, server, clients): the highest load such that it and every lower load
    tested kept up."""
    out: dict[tuple[str, str, int], dict[str, Any]] = {}
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["design"], run["server"], run["clients"]), []).append(run)
    for key, group in groups.items():
        group.sort(key=lambda r: r["load"])
        best = None
        for run in group:
            if not run["keeps_up"]:
                break
            best = run["load"]
        out[key] = {
            "load": best,
            "lowest_tested": group[0]["load"],
            "highest_tested": group[-1]["load"],
            "at_top": best == group[-1]["load"],
        }
    return out


def fmt_sustained(s: dict[str, Any]) -> str:
    if s["load"] is None:
        return f"< {s['lowest_tested']:,.0f} (lowest tested)"
    return f"{'>= ' if s['at_top'] else ''}{s['load']:,.0f}"


def report(bench: Bench, runs: list[dict[str, Any]]) -> dict[str, Any]:
    args = bench.args
    print()
    print(
        f"Delivery end to end: {args.instruments:,} instruments on FYERS "
        f"({math.ceil(args.instruments / PER_CONNECTION)} connections), {args.per_client} "
        f"symbols per client, quote mode; {args.step_ms:g} ms market steps, bursts "
        f"{'on' if args.bursts else 'off'}; window {args.seconds:g} s after {args.warmup:g} s "
        f"warm-up, {args.tail:g} s tail; {os.cpu_count()} CPUs."
    )
    print(
        "latency = client receive (websockets async-for hands it the frame; client queueing "
        "included) - simulator market step that built and queued the tick's FYERS frame; "
        "same wall clock (time.time_ns)."
    )
    print(
        "design: runfeeds publisher (batch every MDHUB_FLUSH_MS=5 ms -> pub/sub group "
        "market.ticks) -> FanoutHub -> conflating per-client queues; baseline: one "
        "core-layer group_send per tick to sym.<key> -> one consumer per client in 50 groups "
        "-> one frame per tick."
    )
    print(
        "load = target ticks/s; ingest = ticks/s the simulators sent in the window; offer/s "
        "= updates/s the clients would get unconflated; up50 = p50 of simulator step -> feed "
        "worker received the frame (its recv_ts), the part of the latency before the hub; "
        "dlv/of = delivered/offered; confl = "
        "seq-gap conflation by the hub / offered; pubrep = updates lost to the publisher "
        "keeping only the latest tick per instrument in a batch (no seq gap shows them; "
        "estimated from its counter x subscribers) / offered; unexpl = neither delivered nor "
        "conflated (baseline: silent drops); CPU = % of "
        "one core over the window (other = every process not started here, e.g. "
        "other sessions' tests); MB = highest VmRSS; box = all cores busy %."
    )
    print()
    print(HEADER)
    for run in runs:
        print(row(run))
    flagged = [r for r in runs if r["client_closes"] or r["simulator"]["fyers_reconnects"]
               or r["client_overflow"] or r["recorder_overflow"]]  # fmt: skip
    for run in flagged:
        print(f"  note {run['design']}/{run['server']}/{run['load']:,.0f}/{run['clients']}: "
              f"client closes {run['client_closes']}, FYERS reconnects "
              f"{run['simulator']['fyers_reconnects']}, client overflow {run['client_overflow']}, "
              f"recorder overflow {run['recorder_overflow']}")  # fmt: skip
    print()
    print("publishers over the window. design: ticks offered, replaced within a batch by a "
          "newer tick of the same instrument (clients never see these: not in seq), batches, "
          "records published, flush / send / L2-write time mean and max. baseline: ticks, "
          "group_sends done, dropped at the in-flight bound, channels over capacity "
          "(silent drops logged by channels_redis), group_send time mean and max.")  # fmt: skip
    for run in runs:
        pub = run["publisher"]
        head = f"  {run['design']:<8} {run['server']:<7} {run['load']:>6,.0f} {run['clients']:>4}:"
        if run["design"] != "baseline":
            offered = pub.get("offered", 0)
            timing = "; ".join(
                f"{name} {pub[name]['mean_ms']:.1f}/{pub[name]['max_ms']:.0f} ms"
                for name in ("flush", "send", "l2_write")
                if name in pub
            )
            print(f"{head} {offered:>8,} ticks, {pub.get('conflated', 0):>7,} replaced in batch "
                  f"({pub.get('conflated', 0) / max(1, offered):.1%}), {pub.get('batches', 0):>5,} "
                  f"batches ({pub.get('published', 0) / max(1, pub.get('batches', 0)):,.0f} "
                  f"records each); {timing}")  # fmt: skip
        else:
            gs = pub.get("group_send", {"mean_ms": 0.0, "max_ms": 0.0})
            print(f"{head} {pub.get('ticks', 0):>8,} ticks, {pub.get('sent', 0):>8,} sent, "
                  f"{pub.get('dropped_in_flight', 0):>8,} dropped (bound {args.max_in_flight}), "
                  f"{pub.get('over_capacity', 0):>7,} over capacity; group_send "
                  f"{gs['mean_ms']:.1f}/{gs['max_ms']:.0f} ms")  # fmt: skip
    print()
    print(
        "CPU cost (CPU time over the window / work done in it): simulators and worker per "
        "tick ingested, server and clients per update delivered, server per message sent"
    )
    for run in runs:
        c = run["cpu_us"]
        print(f"  {run['design']:<8} {run['server']:<7} {run['load']:>6,.0f} {run['clients']:>4}: "
              f"sims {c['simulators_per_tick']:>5.0f} us/tick, worker {c['worker_per_tick']:>5.0f} "
              f"us/tick, server {c['server_per_update']:>5.1f} us/update "
              f"({c['server_per_message']:>5.0f} us/message, {run['items_per_message']:.1f} "
              f"items/message), clients {c['clients_per_update']:>5.1f} us/update")  # fmt: skip
    sustained = sustainable(runs)
    print()
    print(f"sustainable throughput (ticks/s ingested; keeps up = delivered+conflated+pubrep "
          f">= 99% of offered, p99 <= {args.keep_up_ms:g} ms, median lag growth <= 50 ms over the "
          f"window, no client closed; highest load with it and every lower load keeping "
          f"up):")  # fmt: skip
    ratios = []
    for server in SERVERS:
        for clients in sorted({r["clients"] for r in runs}):
            d = sustained.get(("design", server, clients))
            b = sustained.get(("baseline", server, clients))
            parts = []
            if d:
                parts.append(f"design {fmt_sustained(d)}")
            if b:
                parts.append(f"baseline {fmt_sustained(b)}")
            if not parts:
                continue
            text = f"  {server:<7} {clients:>4} clients: " + ", ".join(parts)
            if d and b:
                ratio = None
                if d["load"] is None:
                    ratio_text = "n/a (the design kept up at no load tested)"
                elif b["load"] is None:
                    ratio = d["load"] / b["lowest_tested"]
                    ratio_text = f"> {ratio:.1f}x (baseline below its lowest load tested)"
                elif d["at_top"] and b["at_top"]:
                    ratio_text = "n/a (both kept up at every load tested)"
                else:
                    ratio = d["load"] / b["load"]
                    ratio_text = f"{'>= ' if d['at_top'] else ''}{ratio:.1f}x"
                ratios.append({"server": server, "clients": clients, "ratio": ratio,
                               "text": ratio_text})  # fmt: skip
                text += f"; ratio {ratio_text}"
            print(text)
    same_load = []
    for run in runs:
        if run["design"] != "design":
            continue
        same = (run["server"], run["clients"], run["load"])
        twin = next((b for b in runs if b["design"] == "baseline"
                     and (b["server"], b["clients"], b["load"]) == same), None)  # fmt: skip
        if twin is None:
            continue
        same_load.append({
            "server": run["server"], "clients": run["clients"], "load": run["load"],
            "p50_baseline_over_design": twin["p50_ms"] / run["p50_ms"] if run["p50_ms"] else None,
            "p99_baseline_over_design": twin["p99_ms"] / run["p99_ms"] if run["p99_ms"] else None,
            "delivered_design": run["delivered_ratio"],
            "delivered_baseline": twin["delivered_ratio"],
            "server_cpu_baseline_over_design": twin["cpu_percent"]["server"]
            / max(1e-9, run["cpu_percent"]["server"]),
        })  # fmt: skip
    if same_load:
        print()
        print(
            "same load, baseline / design: p50, p99 latency ratios; delivered/offered; "
            "server CPU ratio"
        )
        for s in same_load:
            print(f"  {s['server']:<7} {s['load']:>6,.0f} {s['clients']:>4}: p50 "
                  f"{s['p50_baseline_over_design']:.1f}x, p99 {s['p99_baseline_over_design']:.1f}x"
                  f"; delivered {s['delivered_baseline']:.3f} vs {s['delivered_design']:.3f}; "
                  f"server CPU {s['server_cpu_baseline_over_design']:.2f}x")  # fmt: skip
    goal = [
        r for r in runs if r["design"] == "design" and r["load"] == 20_000 and r["clients"] == 500
    ]
    if goal:
        print()
        for run in goal:
            print(f"goal p99 <= 20 ms at 20k ticks/s with 500 clients, {run['server']}: p99 "
                  f"{run['p99_ms']:.1f} ms -> {'met' if run['p99_ms'] <= 20 else 'NOT met'} "
                  f"(delivered {run['delivered_ratio']:.3f}, conflated "
                  f"{run['conflation_ratio']:.1%} + {run['batch_replaced_ratio']:.1%} in "
                  f"publisher batches, box {run['machine_busy_percent']:.0f}% "
                  f"busy)")  # fmt: skip
    return {
        "sustainable": [
            {"design": k[0], "server": k[1], "clients": k[2], **v} for k, v in sustained.items()
        ],
        "throughput_ratios": ratios,
        "same_load": same_load,
    }


def versions() -> dict[str, str]:
    out = {}
    for name in ("django", "channels", "channels-redis", "daphne", "twisted", "uvicorn", "uvloop",
                 "websockets", "redis", "orjson"):  # fmt: skip
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[name] = importlib.metadata.version(name)
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out["redis-server"] = subprocess.run(["redis-server", "--version"], capture_output=True,
                                             text=True, timeout=10).stdout.strip()  # fmt: skip
    out["python"] = sys.version.split()[0]
    return out


async def main_async(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="delivery_e2e."))
    logs = tmp / "logs"
    logs.mkdir()
    bench = Bench(args, tmp, logs)
    runs: list[dict[str, Any]] = []
    started = time.monotonic()
    ok = False
    try:
        print(f"setting up in {tmp} ...", file=sys.stderr)
        await bench.start()
        for design in args.designs:
            loads = sorted(set(args.loads + (args.baseline_extra_loads if design == "baseline"
                                             else args.design_extra_loads)))  # fmt: skip
            for server in args.servers:
                for clients in args.clients:
                    print(f"{design} on {server}, {clients} clients: starting "
                          f"({time.monotonic() - started:.0f} s in)", file=sys.stderr)  # fmt: skip
                    stack = await stack_start(bench, design, server, clients)
                    try:
                        for load in loads:
                            run = await measure(bench, stack, load)
                            runs.append(run)
                            print("  " + row(run), file=sys.stderr)
                    finally:
                        await stack_stop(stack)
        summary = report(bench, runs)
        print(f"\n({time.monotonic() - started:.0f} s in all)")
        if args.out:
            payload = {"args": {k: v for k, v in vars(args).items() if k != "out"},
                       "versions": versions(), "runs": runs, **summary}  # fmt: skip
            await asyncio.to_thread(Path(args.out).write_text, json.dumps(payload, indent=1))
            print(f"results written to {args.out}")
        ok = True
    finally:
        await bench.stop()
        kill_all_now()
        if not args.keep_logs and (ok or not args.keep_logs_on_error):
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"logs kept in {logs}", file=sys.stderr)


def numbers(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Simulator frame -> client message, this design vs a naive Channels "
        "baseline, under Daphne and Uvicorn.",
    )
    parser.add_argument("--designs", default="design,baseline")
    parser.add_argument("--servers", default="daphne,uvicorn")
    parser.add_argument("--loads", default="2000,5000,20000", help="ticks/s ingested")
    parser.add_argument("--baseline-extra-loads", default="100,250,500,1000",
                        help="baseline only: lower loads to find where it keeps up")  # fmt: skip
    parser.add_argument("--design-extra-loads", default="", help="design only")
    parser.add_argument("--clients", default="100,500")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured window")
    parser.add_argument("--warmup", type=float, default=4.0, help="after each rate change")
    parser.add_argument("--tail", type=float, default=2.0, help="late deliveries counted")
    parser.add_argument("--instruments", type=int, default=5000)
    parser.add_argument("--per-client", type=int, default=50)
    parser.add_argument("--client-procs", type=int, default=0, help="0: 2, or 4 from 200")
    parser.add_argument("--step-ms", type=float, default=10.0, help="simulator market clock")
    parser.add_argument("--bursts", action="store_true", help="keep the model's tick bursts")
    parser.add_argument(
        "--max-in-flight",
        type=int,
        default=64,
        help="baseline publisher: group_sends at once (redis-py 8 async pools "
        "raise MaxConnectionsError past 100 connections)",
    )
    parser.add_argument("--keep-up-ms", type=float, default=100.0, help="p99 bound")
    parser.add_argument("--out", default="", help="write the results as JSON here")
    parser.add_argument("--keep-logs-on-error", action="store_true")
    parser.add_argument("--keep-logs", action="store_true", help="keep the temp dir's logs")
    args = parser.parse_args(argv)
    args.designs = [d for d in args.designs.split(",") if d]
    args.servers = [s for s in args.servers.split(",") if s]
    if bad := set(args.designs) - set(DESIGNS) | set(args.servers) - set(SERVERS):
        parser.error(f"unknown {sorted(bad)}")
    args.loads = numbers(args.loads)
    args.baseline_extra_loads = numbers(args.baseline_extra_loads)
    args.design_extra_loads = numbers(args.design_extra_loads)
    args.clients = [int(c) for c in numbers(args.clients)]
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is needed (apt-get install redis-server)")
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: sys.exit(1))  # -> finally blocks, then kill_all_now
    try:
        asyncio.run(main_async(args))
    finally:
        kill_all_now()


if __name__ == "__main__":
    main()
