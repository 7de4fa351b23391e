"""The production shape for real: the Procfile's processes over Redis and PostgreSQL.

Every process is started from its own line of the Procfile, so the lines themselves are what
is tested: the broker simulators, two Daphne servers, two feed workers sharing the pool
through leases in Redis, the Celery worker and Celery beat. Around them: a private
redis-server and a fresh database in the PostgreSQL server of ``MDHUB_TEST_POSTGRES_URL``
(scripts/test.sh starts a private cluster in its Redis pass), migrated and set up by the
documented commands. A WebSocket client on each Daphne receives ticks; the feed worker
holding the connections that carry the subscribed instruments is SIGKILLed, and the ticks go
on, carried by the other worker once the dead one's leases lapse. Every log line the
processes write (stderr) is JSON.

Runs in the Redis pass of scripts/test.sh. Without PostgreSQL it skips, or fails when ``CI``
is set: a skipped production test must never pass for a green CI run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
import pytest
import redis

from tests.conftest import PYTHON, REPO_ROOT, free_ports, subprocess_env

pytestmark = [pytest.mark.redis, pytest.mark.postgres]

PROCFILE = REPO_ROOT / "Procfile"
PROCESSES = ("simulators", "web1", "web2", "feeds1", "feeds2", "worker", "beat")
WORKERS = {"feeds1": "feeds-1", "feeds2": "feeds-2"}  # Procfile name -> --worker-id
LEASE_TTL = 3.0
# After the kill, ticks of the dead worker's instruments must be back within this: the leases
# lapse at most one TTL after the kill, then the survivor claims and opens the connections.
RESUME_BOUND = LEASE_TTL + 5.0
# Anything received this long after the kill cannot come from the killed worker: its last
# batch crosses Redis and Daphne in milliseconds.
GRACE = 1.0
PREFIX = "mdhub:feeds:"
JSON_KEYS = {"timestamp", "level", "logger", "message", "process"}
# Celery warns on stderr, before logging is set up, when the worker runs as root (CI does).
ROOT_WARNING = re.compile(
    r"^\S*platforms\.py:\d+: SecurityWarning: You're running the worker with superuser "
    r"privileges.*?^\s+_warn_or_raise_security_error\(.*?$\n?",
    re.MULTILINE | re.DOTALL,
)


def _unavailable(why: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{why} (CI is set: the production-shape test must run there)", pytrace=False)
    pytest.skip(why)


def procfile() -> dict[str, str]:
    entries = {}
    for line in PROCFILE.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_-]+):\s*(.+)$", line)
        if match:
            entries[match[1]] = match[2]
    return entries


# --- the database ---------------------------------------------------------------------------


@pytest.fixture
def postgres_db() -> Iterator[str]:
    """A fresh database in the PostgreSQL server of MDHUB_TEST_POSTGRES_URL; dropped after."""
    if not os.environ.get("REDIS_URL"):
        pytest.skip("the production-shape test runs in the Redis pass of scripts/test.sh")
    server = os.environ.get("MDHUB_TEST_POSTGRES_URL", "")
    if not server:
        _unavailable(
            "MDHUB_TEST_POSTGRES_URL is not set: no PostgreSQL server to run the production "
            "shape on (scripts/test.sh starts one when Debian's postgresql package is installed)"
        )
    import psycopg

    try:
        admin = psycopg.connect(server, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as exc:
        _unavailable(f"no PostgreSQL server at MDHUB_TEST_POSTGRES_URL: {exc}")
    name = f"mdhub_shape_{uuid.uuid4().hex[:10]}"
    try:
        admin.execute(f'CREATE DATABASE "{name}"')
        yield urlunsplit(urlsplit(server)._replace(path=f"/{name}"))
    finally:
        with contextlib.suppress(psycopg.Error):
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


# --- the processes --------------------------------------------------------------------------


@dataclass
class Shape:
    """The production processes, each in its own process group, logs in ``logs``."""

    logs: Path
    env: dict[str, str]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    killed: set[str] = field(default_factory=set)

    def manage(self, *args: str, timeout: float = 120) -> str:
        done = subprocess.run(
            [PYTHON, "manage.py", *args], cwd=REPO_ROOT, env=self.env, capture_output=True,
            text=True, timeout=timeout,
        )  # fmt: skip
        if done.returncode:
            raise AssertionError(f"manage.py {' '.join(args)} failed:\n{done.stderr[-3000:]}")
        return done.stdout

    def start(self, name: str, command: str) -> None:
        with (
            (self.logs / f"{name}.out").open("wb") as out,
            (self.logs / f"{name}.err").open("wb") as err,
        ):
            self.procs[name] = subprocess.Popen(
                ["bash", "-c", f"exec {command}"], cwd=REPO_ROOT, env=self.env, stdout=out,
                stderr=err, start_new_session=True,
            )  # fmt: skip

    def check(self) -> None:
        for name, proc in self.procs.items():
            if name not in self.killed and proc.poll() is not None:
                raise AssertionError(f"{name} exited with {proc.returncode}")

    def kill(self, name: str) -> None:
        self.killed.add(name)
        os.killpg(self.procs[name].pid, signal.SIGKILL)
        self.procs[name].wait(timeout=10)

    def stop(self) -> None:
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        for proc in self.procs.values():  # stragglers, and children left in the groups
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def text(self, name: str, stream: str) -> str:
        return (self.logs / f"{name}.{stream}").read_text(errors="replace")

    def tails(self, lines: int = 25) -> str:
        parts = []
        for path in sorted(self.logs.iterdir()):
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"----- {path.name} (last {len(tail)} lines)\n" + "\n".join(tail))
        return "\n".join(parts)


@pytest.fixture
def shape(tmp_path: Path, redis_url: str, postgres_db: str) -> Iterator[Shape]:
    redis.Redis.from_url(redis_url).flushall()
    *sim_ports, web1_port, web2_port = free_ports(6)
    env = subprocess_env(
        PATH=f"{Path(PYTHON).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        DJANGO_SETTINGS_MODULE="mdproject.settings",
        REDIS_URL=redis_url,
        DATABASE_URL=postgres_db,
        SECRET_KEY=secrets.token_urlsafe(40),
        ALLOWED_HOSTS="127.0.0.1,localhost",
        MDHUB_VAR_DIR=str(tmp_path / "var"),
        LOG_LEVEL="INFO",  # LOG_FORMAT unset: REDIS_URL makes it JSON
        PYTHONUNBUFFERED="1",  # as under honcho: banners reach the log files at once
        WEB_HOST="127.0.0.1",
        WEB1_PORT=str(web1_port),
        WEB2_PORT=str(web2_port),
        # The simulators on free ports, over the enabled instruments only (less CPU), ticking
        # often enough that a pause in one instrument's ticks means something.
        SIMULATOR_OPTIONS=(
            f"--fyers-rest-port {sim_ports[0]} --fyers-socket-port {sim_ports[1]} "
            f"--upstox-rest-port {sim_ports[2]} --upstox-feed-port {sim_ports[3]} "
            "--enabled-only --ticks-per-second 4"
        ),
        FYERS_API_URL=f"http://127.0.0.1:{sim_ports[0]}",
        FYERS_SOCKET_URL=f"ws://127.0.0.1:{sim_ports[1]}/hsm/v1-5/prod",
        UPSTOX_API_URL=f"http://127.0.0.1:{sim_ports[2]}",
        UPSTOX_FEED_URL=f"ws://127.0.0.1:{sim_ports[3]}/v3/feed/market-data-feed",
        SIMULATOR_WAIT="60",
        MDHUB_MARKET_HOURS="always",  # the simulators trade around the clock
        FEEDS_LEASE_TTL=str(LEASE_TTL),
        # Small FYERS connections, so that the starter watchlist needs several of them and
        # each worker holds some.
        FYERS_SYMBOLS_PER_CONNECTION="10",
    )
    logs = tmp_path / "logs"
    logs.mkdir()
    shape = Shape(logs=logs, env=env)
    try:
        yield shape
    finally:
        shape.stop()
        with contextlib.suppress(redis.RedisError):
            redis.Redis.from_url(redis_url).flushall()


# --- helpers --------------------------------------------------------------------------------


def _beats(client: redis.Redis, kind: str) -> dict[str, dict[str, Any]]:
    keys = list(client.scan_iter(match=f"{PREFIX}beat:{kind}:*", count=1000))
    values = client.mget(keys) if keys else []
    head = len(f"{PREFIX}beat:{kind}:")
    return {k.decode()[head:]: orjson.loads(v) for k, v in zip(keys, values, strict=True) if v}


def _leases(client: redis.Redis) -> dict[str, str]:
    """Connection name -> the worker holding its lease (the planner's lease left out)."""
    keys = list(client.scan_iter(match=f"{PREFIX}lease:*", count=1000))
    values = client.mget(keys) if keys else []
    head = len(f"{PREFIX}lease:")
    leases = {k.decode()[head:]: v.decode() for k, v in zip(keys, values, strict=True) if v}
    leases.pop("planner", None)
    return leases


async def _until(shape: Shape, predicate: Callable[[], Any], limit: float, what: str) -> Any:
    deadline = time.monotonic() + limit
    while True:
        result = predicate()
        if result:
            return result
        shape.check()
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {limit:g} s: {what}")
        await asyncio.sleep(0.2)


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _assignments(database_url: str) -> dict[str, set[str]]:
    """Instrument key -> the connections carrying it, from the PoolAssignment rows."""
    import psycopg

    carried: dict[str, set[str]] = defaultdict(set)
    with psycopg.connect(database_url, connect_timeout=10) as conn:
        rows = conn.execute(
            "SELECT i.key, a.provider, a.label, p.connection_slot FROM feeds_poolassignment p "
            "JOIN feeds_instrument i ON i.id = p.instrument_id "
            "JOIN feeds_provideraccount a ON a.id = p.account_id"
        ).fetchall()
    for key, provider, label, slot in rows:
        carried[key].add(f"{provider}:{label}:{slot}")
    return carried


class Client:
    """A WebSocket API client on one Daphne: subscribes, then notes when each symbol ticks."""

    def __init__(self, port: int, token: str) -> None:
        self.url = f"ws://127.0.0.1:{port}/ws/v1/market/"
        self.token = token
        self.received: dict[str, list[float]] = defaultdict(list)  # symbol -> monotonic times
        self.subscribed: list[str] = []
        self.task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()

    async def run(self, symbols: list[str]) -> None:
        from websockets.asyncio.client import connect

        headers = {"Authorization": f"Token {self.token}"}
        async with connect(self.url, additional_headers=headers, open_timeout=20) as ws:
            welcome = json.loads(await ws.recv())
            assert welcome["type"] == "welcome", welcome
            await ws.send(json.dumps({"action": "subscribe", "id": 1, "symbols": symbols}))
            async for raw in ws:
                message = json.loads(raw)
                if message["type"] == "subscribed":
                    self.subscribed = [s["symbol"] for s in message["symbols"]]
                    self.ready.set()
                elif message["type"] == "update":
                    now = time.monotonic()
                    for item in message["data"]:
                        self.received[item["symbol"]].append(now)
                elif message["type"] in ("error", "closing"):
                    raise AssertionError(f"{self.url}: {message}")

    def start(self, symbols: list[str]) -> None:
        self.task = asyncio.get_running_loop().create_task(self.run(symbols))

    def check(self) -> None:
        if self.task is not None and self.task.done():
            self.task.result()  # raises what ended it
            raise AssertionError(f"{self.url}: the socket closed")

    def ticked_after(self, symbol: str, since: float) -> float | None:
        """When ``symbol`` first ticked after ``since`` (monotonic), or None."""
        return next((t for t in self.received[symbol] if t > since), None)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task


def _json_lines(shape: Shape, name: str) -> list[dict[str, Any]]:
    """The process's stderr as log records; fails on any line that is not one."""
    text = shape.text(name, "err")
    if name == "worker":
        text = ROOT_WARNING.sub("", text)
    lines = text.split("\n")[:-1]  # a killed process may leave half a line behind
    records = []
    for line in filter(None, lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise AssertionError(f"{name}: a log line that is not JSON: {line!r}") from None
        assert isinstance(record, dict) and record.keys() >= JSON_KEYS, (name, record)
        records.append(record)
    assert records, f"{name} logged nothing"
    return records


# --- the test -------------------------------------------------------------------------------


async def test_production_shape_serves_ticks_and_survives_a_feed_worker_kill(
    shape: Shape, redis_url: str, postgres_db: str
) -> None:
    started = time.monotonic()
    clients: list[Client] = []
    try:
        await _scenario(shape, redis_url, postgres_db, clients)
    except BaseException:
        print(f"production-shape logs ({shape.logs}):\n{shape.tails()}")
        raise
    finally:
        for client in clients:
            await client.stop()
    print(f"production shape: {time.monotonic() - started:.1f} s")


async def _scenario(shape: Shape, redis_url: str, database_url: str, clients: list) -> None:
    lines = procfile()
    assert set(lines) == set(PROCESSES), f"Procfile processes: {sorted(lines)}"
    t0 = time.monotonic()

    # The documented first-run commands, against PostgreSQL.
    shape.manage("migrate", "--noinput")
    shape.manage("setup_hub", "--no-admin")
    token = shape.manage(
        "shell", "-c",
        "from django.contrib.auth import get_user_model\n"
        "from feeds.services import api_token_create\n"
        "user = get_user_model().objects.create_user('shape-client')\n"
        "print(api_token_create(user=user, name='production shape test')[1])",
    ).strip().splitlines()[-1]  # fmt: skip
    assert token.startswith("mdh_")
    t_setup = time.monotonic() - t0

    for name in PROCESSES:
        shape.start(name, lines[name])
    web_ports = [int(shape.env["WEB1_PORT"]), int(shape.env["WEB2_PORT"])]
    await _until(shape, lambda: all(_port_open(p) for p in web_ports), 90, "Daphne listening")

    # Both workers hold connections, together every one the recorded assignment names, their
    # heartbeats agree with the leases, and that has not changed for a while (no rebalancing
    # under way).
    client = redis.Redis.from_url(redis_url)
    seen: dict[str, Any] = {"leases": None, "since": 0.0}

    def settled() -> dict[str, set[str]] | None:
        beats = _beats(client, "worker")
        held = {w: set(beats.get(w, {}).get("connections", [])) for w in WORKERS.values()}
        leases = _leases(client)
        leased = {w: {c for c, owner in leases.items() if owner == w} for w in WORKERS.values()}
        every = set().union(*_assignments(database_url).values())
        ok = held == leased and all(held.values()) and set(leases) == every and len(every) >= 4
        now = time.monotonic()
        if not ok or leases != seen["leases"]:
            seen.update(leases=leases if ok else None, since=now)
            return None
        return held if now - seen["since"] >= 1.5 else None

    held = await _until(shape, settled, 60, "the two feed workers sharing every connection")
    t_up = time.monotonic() - t0

    # Two instruments per connection, each carried by that connection alone (critical ones
    # are on a FYERS and an Upstox connection: they would tick on through the other).
    carried = _assignments(database_url)
    connection_of = {key: min(conns) for key, conns in carried.items() if len(conns) == 1}
    by_connection: dict[str, list[str]] = defaultdict(list)
    for key in sorted(connection_of):
        if len(by_connection[connection_of[key]]) < 2:
            by_connection[connection_of[key]].append(key)
    symbols = sorted(k for keys in by_connection.values() for k in keys)
    leases = _leases(client)
    victim_id = leases["fyers:primary:0"]
    victim = next(name for name, wid in WORKERS.items() if wid == victim_id)
    survivor_id = next(wid for wid in WORKERS.values() if wid != victim_id)
    victim_conns = {c for c, owner in leases.items() if owner == victim_id}
    assert victim_conns == held[victim_id]
    victim_symbols = [k for k in symbols if connection_of[k] in victim_conns]
    assert len(victim_symbols) >= 2, (victim_symbols, held)

    # A client on each Daphne process; every symbol ticks on both.
    for port in web_ports:
        clients.append(Client(port, token))
        clients[-1].start(symbols)
    for c in clients:
        await asyncio.wait_for(c.ready.wait(), 30)
        assert sorted(c.subscribed) == symbols

    def all_ticking(since: float, which: list[str]) -> bool:
        for c in clients:
            c.check()
        return all(c.ticked_after(s, since) for c in clients for s in which)

    await _until(shape, lambda: all_ticking(0, symbols), 30, "ticks of every symbol on both")

    # Kill the worker carrying fyers:primary:0 (and more): no goodbye, its leases just lapse.
    # No one else may open those connections before the leases run out.
    lease_left = min(client.pttl(f"{PREFIX}lease:{c}") for c in victim_conns) / 1000
    shape.kill(victim)
    killed = time.monotonic()
    await _until(
        shape, lambda: all_ticking(killed + GRACE, victim_symbols), RESUME_BOUND + 2,
        f"ticks of {victim}'s instruments again after the kill",
    )  # fmt: skip
    resumed = max(
        c.ticked_after(s, killed + GRACE) - killed for c in clients for s in victim_symbols
    )
    # They did stop: nothing came between the grace and the end of the dead worker's leases,
    # so what came after was carried by the survivor.
    during = [
        (s, round(t - killed, 3))
        for c in clients
        for s in victim_symbols
        for t in c.received[s]
        if killed + GRACE < t < killed + lease_left
    ]
    assert not during, f"ticks while the dead worker's leases still ran: {during}"
    assert resumed <= RESUME_BOUND, f"ticks resumed {resumed:.2f} s after the kill"
    # The survivor holds every lease now, the dead worker's included.
    await _until(
        shape, lambda: set(_leases(client).values()) == {survivor_id}, 5,
        f"{survivor_id} holding every lease",
    )  # fmt: skip
    # Every symbol ticks on both clients at the end, the survivor's own ones included.
    now = time.monotonic()
    await _until(shape, lambda: all_ticking(now, symbols), 10, "every symbol ticking at the end")

    # Celery: the worker answers over the Redis broker; beat runs the DatabaseScheduler.
    shape.check()
    ping = await asyncio.to_thread(
        subprocess.run,
        [str(Path(PYTHON).parent / "celery"), "-A", "mdproject", "inspect", "ping",
         "--timeout", "10"],
        cwd=REPO_ROOT, env=shape.env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert ping.returncode == 0 and "pong" in ping.stdout, ping.stdout + ping.stderr
    assert "scheduler -> django_celery_beat.schedulers.DatabaseScheduler" in shape.text(
        "beat", "out"
    )
    beat_records = _json_lines(shape, "beat")
    assert any(r["message"] == "beat: Starting..." for r in beat_records), beat_records[:5]

    # Every process logged, and only JSON lines (with timestamp, level, logger, message,
    # process id); the workers' lines carry their names.
    records = {name: _json_lines(shape, name) for name in PROCESSES}
    assert any(r["logger"] == "celery.apps.worker" and "ready" in r["message"]
               for r in records["worker"])  # fmt: skip
    for name, worker_id in WORKERS.items():
        assert any(worker_id in r["message"] for r in records[name])
    assert any("Listening on TCP address" in r["message"] for r in records["web1"])
    shape.check()
    client.close()
    print(
        f"setup {t_setup:.1f} s, processes up {t_up - t_setup:.1f} s; {len(symbols)} symbols "
        f"({len(victim_symbols)} on {victim}'s {len(victim_conns)} connections); ticks "
        f"resumed {resumed:.2f} s after the kill (lease TTL {LEASE_TTL:g} s)"
    )
