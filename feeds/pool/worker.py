"""The feed worker: one asyncio loop holding a connection pool, kept true to the assignment.

Every change to the pool goes through ``_sync``, run by one task, so changes never interleave:

* the *planner* (one worker at a time, by lease) runs the pure ``distribute`` over the enabled
  instruments, the provider accounts and the connections that are unavailable, records the
  assignment and tells the other workers;
* every worker claims leases on a fair share of the connections in the assignment and makes
  its clients carry what the assignment says for those (``ConnectionPool.apply``).

What wakes a sync: a control message (an admin edit committed, the planner's new assignment,
another worker's connection failing), a health change of one of our connections, a lease
change, and a periodic reconcile as the safety net. Health-triggered syncs reuse the inputs
already loaded, so a failover costs a ``distribute`` and the socket work, not a database read.

Failover: a connection that goes down, fails auth or falls silent is unavailable at once
(``HealthTracker``); the next plan places its symbols elsewhere (another FYERS connection
first, then Upstox) while its client keeps its subscriptions and reconnects with back-off.
After it has been live for the hysteresis period the plan moves them back.

Every tick takes one path, inline in the socket's read loop: the validation hook, the L1
table, the publisher hook. No Django here: the database and the control channel are behind
``WorkerBackend`` (``feeds.runtime`` implements it), leases and heartbeats behind
``Coordinator`` (Redis, or in memory for the embedded single worker).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from feeds.pool.coordination import Coordinator
from feeds.pool.distribution import Conn, Placement, Plan, distribute
from feeds.pool.health import HealthTracker
from feeds.pool.latest import LatestTicks
from feeds.pool.pool import (
    ConnectionPool,
    PoolInputs,
    conn_from_name,
    connection_name,
    desired_by_conn,
)
from feeds.providers.base import ClientState, FeedClient
from feeds.providers.ticks import Tick

logger = logging.getLogger(__name__)

PLANNER_LEASE = "planner"
ControlMessage = dict[str, Any]
TickHook = Callable[[list[Tick]], None]


def _raise_if_cancelling() -> None:
    """Some client libraries turn a cancellation into their own error; a loop that catches
    errors to keep going must still stop when its task is being cancelled."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class WorkerBackend(Protocol):
    """What the worker needs from the rest of the hub (the database, the control channel)."""

    async def load_inputs(self) -> PoolInputs: ...

    async def record_plan(
        self, plan: Plan, *, worker_id: str, holders: Mapping[str, str]
    ) -> None: ...

    async def record_health(self, statuses: list[dict[str, Any]], *, worker_id: str) -> None: ...

    def control_messages(self) -> AsyncIterator[ControlMessage]: ...

    async def send_control(self, message: ControlMessage) -> None: ...

    async def close(self) -> None:
        """Wait for database work still running on behalf of cancelled tasks."""


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    lease_ttl: float = 10.0  # a dead worker's connections are free again after this
    lease_check: float = 0.25  # how often unheld connections are looked for
    health_interval: float = 0.2  # time-based health rules (grace, recovery)
    heartbeat_interval: float = 1.0  # heartbeats to the coordinator
    health_record_interval: float = 0.0  # own ConnectionHealth rows; 0: the health check's only
    reconcile_interval: float = 30.0  # full re-read of the database, the safety net
    recover_after: float = 5.0  # live this long before symbols move back
    connect_grace: float = 3.0  # a new connection's first connect may take this long
    debounce: float = 0.02  # coalesce bursts of wake-ups into one sync
    log_interval: float = 10.0
    client_options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class WorkerStats:
    ticks: Counter[str] = field(default_factory=Counter)  # per provider
    syncs: int = 0
    failovers: int = 0
    returns: int = 0
    sync_errors: int = 0
    hook_errors: int = 0
    ordered_restarts: int = 0  # failover orders from the health check carried out


class FeedWorker:
    def __init__(
        self,
        *,
        backend: WorkerBackend,
        coordinator: Coordinator,
        config: WorkerConfig | None = None,
        validate: TickHook | None = None,
        publish: TickHook | None = None,
    ) -> None:
        self.config = config or WorkerConfig()
        self.id = self.config.worker_id
        self.backend = backend
        self.coordinator = coordinator
        self.validate = validate  # the validation issue marks ticks here
        self.publish = publish  # the fan-out issue publishes them here
        self.latest = LatestTicks()
        self.stats = WorkerStats()
        self.tracker: HealthTracker[Conn] = HealthTracker(
            recover_after=self.config.recover_after, connect_grace=self.config.connect_grace
        )
        self.pool = ConnectionPool(
            endpoints={},
            identities={},
            on_ticks=self._on_ticks,
            on_state=self._on_state,
            client_options=self.config.client_options,
        )
        self.plan: Plan | None = None  # the planner's latest plan
        self.assignment: Mapping[str, tuple[Placement, ...]] = {}  # what the pool follows
        self._desired: dict[Conn, dict[str, str]] = {}  # the same, per connection
        self.planner = False
        self.leases: set[str] = set()  # connection names this worker holds
        self._inputs: PoolInputs | None = None
        # The assignment and lease holders last written to the database (by the planner).
        self._recorded: tuple[Mapping[str, tuple[Placement, ...]], dict[str, str]] | None = None
        # Others' connections as their holders last reported them: name -> (at, available).
        # The newest report wins, whether it came as a control message or a heartbeat.
        self._remote: dict[str, tuple[float, bool]] = {}
        self._held_elsewhere: set[str] = set()  # connections other workers hold leases on
        self._assignment_version = 0.0  # the planner's last recorded assignment, seen
        self._lock = asyncio.Lock()  # the pool changes under it only
        self._to_record: tuple[Plan, dict[str, str]] | None = None
        self._record_wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._auth_refused: set[tuple[str, str]] = set()  # accounts whose token was refused
        self._workers = 1  # live workers, from the heartbeats
        self._wake = asyncio.Event()
        self._reload = True
        self._last_renew = 0.0
        self._last_renewed_ok = time.monotonic()
        self._started = time.monotonic()
        self._last_log: tuple[float, dict[str, int]] = (self._started, {})

    # --- the tick path -------------------------------------------------------------------

    def _on_ticks(self, ticks: list[Tick]) -> None:
        # Inline in the socket's read loop: keep it short and never raise into it.
        if self.validate is not None:
            try:
                self.validate(ticks)
            except Exception:
                self.stats.hook_errors += 1
                logger.exception("worker: validation hook failed; ticks pass unvalidated")
        put = self.latest.put
        for tick in ticks:
            put(tick)
        self.stats.ticks[str(ticks[0].provider)] += len(ticks)
        if self.publish is not None:
            try:
                self.publish(ticks)
            except Exception:
                self.stats.hook_errors += 1
                logger.exception("worker: publisher hook failed")

    # --- life ----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Until ``stop`` is set (or the task is cancelled); then release everything."""
        stop = stop or asyncio.Event()
        loops = [
            self._sync_loop(),
            self._control_loop(),
            self._health_loop(),
            self._lease_loop(),
            self._heartbeat_loop(),
            self._every(self.config.reconcile_interval, self._reconcile),
            self._every(self.config.health_record_interval, self._record_health),
            self._every(self.config.log_interval, self._log_status),
            self._announce_first_ticks(),
            self._recorder_loop(),
        ]
        tasks = [asyncio.create_task(c) for c in loops]
        try:
            await self._beat_worker()  # count ourselves before the first claim
            await self._lease_step()
            self.wake(reload=True)
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            _, stuck = await asyncio.wait(tasks, timeout=5.0)
            if stuck:  # a library swallowed the cancellation; do not hang the shutdown
                logger.error("worker %s: %d loops did not stop: %s", self.id, len(stuck),
                             [t.get_coro().__qualname__ for t in stuck])  # fmt: skip
            await self._shutdown()

    async def _shutdown(self) -> None:
        pending, self._to_record = self._to_record, None
        if pending is not None and self.planner:
            with contextlib.suppress(Exception):  # the last plan, so the table is true
                await self.backend.record_plan(pending[0], worker_id=self.id, holders=pending[1])
        await self.pool.close()
        names = self.leases | ({PLANNER_LEASE} if self.planner else set())
        with contextlib.suppress(Exception):
            await self.coordinator.release(names, owner=self.id)
            # Expire our heartbeats now, so no one counts this worker in its fair share.
            await self.coordinator.beat("worker", self.id, {}, ttl=0.001)
            for name in self.leases:
                await self.coordinator.beat("connection", name, {}, ttl=0.001)
            # Others take the released connections now instead of after the lease TTL.
            await self.backend.send_control({"type": "pool.leases", "worker": self.id})
        self.leases.clear()
        self.planner = False
        await self.backend.close()
        logger.info("worker %s: stopped; connections released", self.id)

    def wake(self, *, reload: bool = False) -> None:
        self._reload |= reload
        self._wake.set()

    # --- the one place that changes the pool ---------------------------------------------

    async def _sync_loop(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(self.config.debounce)
            self._wake.clear()
            reload, self._reload = self._reload, False
            try:
                async with self._lock:
                    await self._sync(reload=reload)
            except Exception:
                _raise_if_cancelling()
                self.stats.sync_errors += 1
                logger.exception("worker %s: sync failed; retrying in 1 s", self.id)
                await asyncio.sleep(1.0)
                self.wake(reload=True)
            self.stats.syncs += 1

    async def _sync(self, *, reload: bool) -> None:
        if reload or self._inputs is None:
            self._inputs = await self.backend.load_inputs()
            self.pool.update_directory(
                endpoints=self._inputs.endpoints, identities=self._inputs.identities
            )
        inputs = self._inputs
        # One snapshot for the plan and for what we hold: health may change during the awaits
        # below, and a connection the plan fills must never also be held with its old load.
        failed = self.tracker.unavailable()
        if self.planner:
            # Our own last plan carries the failover homes the database does not.
            current = self.plan.assignment if self.plan is not None else inputs.current
            plan = distribute(
                wants=inputs.wants,
                accounts=inputs.accounts,
                current=current,
                unavailable=self.unavailable() | failed,
            )
            self._log_plan(plan)
            self.plan = plan
            self.assignment = plan.assignment
        else:
            self.plan = None
            self.assignment = inputs.current  # as the planner recorded it
        desired = self._desired = desired_by_conn(self.assignment)
        leases_before = set(self.leases)
        await self._claim(desired)
        mine = {c: keys for c, keys in desired.items() if connection_name(c) in self.leases}
        hold = {c for c in failed & self.pool.clients.keys() if not mine.get(c)}
        result = await self.pool.apply(mine, hold=hold)
        for conn in result.closed:
            self.tracker.forget(conn)
        if self.leases != leases_before:
            await self._beat_worker()  # others see the new split now, not at the next beat
        if result.opened:
            await self._beat_connections()  # and the new connections' first heartbeats
        if result.opened or result.closed or result.subscribed or result.unsubscribed:
            logger.info(
                "worker %s: +%d/-%d symbols; opened %s; closed %s; now %d connections",
                self.id, result.subscribed, result.unsubscribed,
                [connection_name(c) for c in result.opened] or "none",
                [connection_name(c) for c in result.closed] or "none", len(self.pool.clients),
            )  # fmt: skip
        if self.planner and self.plan is not None:
            holders = await self.coordinator.holders([connection_name(c) for c in desired])
            if reload or self._recorded != (self.assignment, holders):
                # Written by its own task, so a slow database never delays the next failover.
                self._to_record = (self.plan, holders)
                self._recorded = (self.assignment, holders)
                self._record_wake.set()

    async def _recorder_loop(self) -> None:
        """Write the latest plan (only the latest: older ones are superseded), then tell the
        other workers to follow it."""
        while True:
            await self._record_wake.wait()
            self._record_wake.clear()
            pending, self._to_record = self._to_record, None
            if pending is None or not self.planner:
                continue
            plan, holders = pending
            try:
                await self.backend.record_plan(plan, worker_id=self.id, holders=holders)
                version = time.time()
                await self.coordinator.beat(
                    "assignment", "version", {"version": version, "worker": self.id},
                    ttl=365 * 86400.0,
                )  # fmt: skip
                await self.backend.send_control(
                    {"type": "pool.assigned", "worker": self.id, "version": version}
                )
            except Exception:
                _raise_if_cancelling()
                logger.exception("worker %s: recording the plan failed; retrying", self.id)
                self._recorded = None  # the next sync records again
                await asyncio.sleep(1.0)
                self.wake()

    def unavailable(self) -> set[Conn]:
        """Connections no symbol may be placed on: ours from the tracker, others' as their
        workers report them."""
        down = set(self.tracker.unavailable())
        for name, (_, available) in self._remote.items():
            if not available:
                with contextlib.suppress(ValueError):
                    down.add(conn_from_name(name))
        if self._auth_refused and self._inputs is not None:
            # Only slots nobody has open: others' sockets authenticated before and still work.
            for account in self._inputs.accounts:
                if (account.provider, account.name) in self._auth_refused:
                    for slot in range(account.max_connections):
                        conn = Conn(account.provider, account.name, slot)
                        if conn not in self.pool.clients and (
                            connection_name(conn) not in self._held_elsewhere
                        ):
                            down.add(conn)
        return down

    def _log_plan(self, plan: Plan) -> None:
        previous = self.plan
        if previous is None or previous.left_out.keys() != plan.left_out.keys():
            if plan.left_out:
                sample = ", ".join(f"{k} ({r})" for k, r in list(plan.left_out.items())[:3])
                logger.warning(
                    "worker %s: %d instruments left out for lack of capacity, e.g. %s",
                    self.id, len(plan.left_out), sample,
                )  # fmt: skip
            elif previous is not None and previous.left_out:
                logger.info("worker %s: every enabled instrument is placed again", self.id)
        if plan.moved:
            logger.info("worker %s: plan moved %d placements", self.id, plan.moved)

    # --- leases --------------------------------------------------------------------------

    async def _claim(self, desired: Mapping[Conn, Mapping[str, str]]) -> None:
        """Hold a fair share of the connections that carry symbols; let go of the rest."""
        ttl = self.config.lease_ttl
        self._workers = max(1, len(await self.coordinator.beats("worker")))
        names = sorted(connection_name(c) for c, keys in desired.items() if keys)
        watching = {
            connection_name(c) for c in self.tracker.unavailable() & self.pool.clients.keys()
        }
        keep = set(names) | watching
        stale = self.leases - keep
        if stale:
            await self._let_go(stale, why="no longer in the assignment")
        share = math.ceil(len(names) / max(1, self._workers))
        own = self.leases - watching
        surplus = sorted(own, reverse=True)[: max(0, len(own) - share)]
        if surplus and self._workers > 1:
            await self._let_go(set(surplus), why=f"rebalancing over {self._workers} workers")
        holders = await self.coordinator.holders([n for n in names if n not in self.leases])
        self._held_elsewhere = {n for n, owner in holders.items() if owner != self.id}
        # A failed connection we keep watching does not count against our share.
        owned = len(self.leases - watching)
        for name in names:
            if owned >= share:
                break
            if name in self.leases or name in holders:
                continue
            if await self.coordinator.claim(name, owner=self.id, ttl=ttl):
                self.leases.add(name)
                owned += 1

    async def _let_go(self, names: set[str], *, why: str) -> None:
        await self.pool.drop([conn_from_name(n) for n in names])
        for name in names:
            self.tracker.forget(conn_from_name(name))
        await self.coordinator.release(names, owner=self.id)
        self.leases -= names
        for name in names:  # the next holder's heartbeat replaces ours
            await self.coordinator.beat("connection", name, {}, ttl=0.001)
        await self._beat_worker()
        logger.info("worker %s: released %s (%s)", self.id, sorted(names), why)
        await self.backend.send_control({"type": "pool.leases", "worker": self.id})

    async def _renew(self, now: float) -> None:
        ttl = self.config.lease_ttl
        held = self.leases | ({PLANNER_LEASE} if self.planner else set())
        try:
            kept = await self.coordinator.renew(held, owner=self.id, ttl=ttl)
        except Exception:
            _raise_if_cancelling()
            if now - self._last_renewed_ok > 0.75 * ttl:
                # Fence ourselves: past the TTL another worker may claim and open them.
                logger.error("worker %s: cannot renew leases for %.1f s; closing everything",
                             self.id, now - self._last_renewed_ok)  # fmt: skip
                await self._lose(self.leases, planner=True)
            raise
        self._last_renewed_ok = now
        missing = held - kept
        # Gone without a new owner (the coordinator restarted, say): take them back.
        for name in list(missing):
            if await self.coordinator.claim(name, owner=self.id, ttl=ttl):
                missing.discard(name)
        if missing:
            await self._lose(missing - {PLANNER_LEASE}, planner=PLANNER_LEASE in missing)

    async def _lose(self, names: set[str], *, planner: bool) -> None:
        """Leases another worker may hold now: stop using them at once."""
        async with self._lock:
            if names:
                logger.error("worker %s: lost leases %s; closing them", self.id, sorted(names))
                conns = [conn_from_name(n) for n in names]
                await self.pool.drop(conns)
                for conn in conns:
                    self.tracker.forget(conn)
                self.leases -= names
            if planner and self.planner:
                logger.error("worker %s: lost the planner lease", self.id)
                self.planner, self.plan, self._recorded = False, None, None
        self.wake(reload=True)  # follow the recorded assignment from now on

    async def _lease_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.lease_check)
            try:
                await self._lease_step()
            except Exception:
                _raise_if_cancelling()
                logger.exception("worker %s: lease step failed", self.id)

    async def _lease_step(self) -> None:
        ttl, now = self.config.lease_ttl, time.monotonic()
        if now - self._last_renew >= ttl / 4:
            self._last_renew = now
            await self._renew(now)
        if not self.planner and await self.coordinator.claim(PLANNER_LEASE, owner=self.id, ttl=ttl):
            self.planner = True
            logger.info("worker %s: planning the pool", self.id)
            self.wake(reload=True)
            return
        # Connections nobody holds (a dead worker's, or new ones): sync to claim them. The
        # planner also re-records the assignment when another worker took connections.
        names = [connection_name(c) for c, keys in self._desired.items() if keys]
        if self.planner:
            holders = await self.coordinator.holders(names)
            recorded = self._recorded[1] if self._recorded else {}
            if len(holders) < len(names) or holders != recorded:
                self.wake()
            return
        unheld = set(names) - self.leases
        if unheld and len(await self.coordinator.holders(unheld)) < len(unheld):
            self.wake()

    # --- health --------------------------------------------------------------------------

    def _on_state(self, client: FeedClient, state: ClientState, reason: str) -> None:
        try:
            conn = conn_from_name(client.name)
        except ValueError:
            return
        if state is ClientState.CLOSED or conn not in self.pool.clients:
            return
        account = (conn.provider, conn.account)
        # A refused token, or a first connect that fails (the endpoint unreachable), will
        # fail for every new socket of the account too: fail over to connections already
        # open rather than cascade through fresh ones, until one authenticates again.
        refusing = reason.startswith("auth failed") or client.stats.connects == 0
        if state is ClientState.DOWN and refusing:
            if account not in self._auth_refused:
                logger.warning("worker %s: %s:%s refuses new connections (%s)", self.id,
                               *account, reason)  # fmt: skip
                self._auth_refused.add(account)
                self.wake()
        elif state is ClientState.LIVE and account in self._auth_refused:
            logger.info("worker %s: %s:%s authenticates again", self.id, *account)
            self._auth_refused.discard(account)
            self.wake()
        if self.tracker.observe(conn, state, time.monotonic()):
            self._availability_changed(conn, reason)

    async def _health_loop(self) -> None:
        # State changes arrive through ``_on_state``; this runs the time-based rules (a
        # first connect past its grace, a recovery past its hysteresis).
        while True:
            await asyncio.sleep(self.config.health_interval)
            before = self.tracker.unavailable()
            self.tracker.tick(time.monotonic())
            for conn in before ^ self.tracker.unavailable():
                client = self.pool.clients.get(conn)
                self._availability_changed(conn, client.state_reason if client else "gone")

    def _availability_changed(self, conn: Conn, reason: str) -> None:
        name = connection_name(conn)
        available = conn not in self.tracker.unavailable()
        carried = len(self._desired.get(conn, {}))
        if available:
            self.stats.returns += 1
            logger.info("worker %s: %s healthy again; moving its symbols back", self.id, name)
        else:
            self.stats.failovers += 1
            logger.warning(
                "worker %s: %s unavailable (%s); moving its %d symbols",
                self.id, name, reason, carried,
            )  # fmt: skip
        self.wake()
        if not self.planner:
            self._background(self._report_health(name, available))

    async def _report_health(self, name: str, available: bool) -> None:
        # The heartbeat first, so a planner reading heartbeats never sees an older state
        # than the message says; both carry the time of the report and the newest wins.
        await self._beat_connections()
        message = {"type": "pool.health", "conn": name, "available": available}
        await self.backend.send_control({**message, "worker": self.id, "at": time.time()})

    def _background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)  # a reference, so the task is not collected mid-flight
        task.add_done_callback(self._tasks.discard)

    def _remote_report(self, name: str, at: float, available: bool) -> bool:
        """Keep the newest report about another worker's connection; True if it changed."""
        previous = self._remote.get(name)
        if previous is not None and previous[0] >= at:
            return False
        self._remote[name] = (at, available)
        return previous is None or previous[1] != available

    # --- control messages ----------------------------------------------------------------

    async def _control_loop(self) -> None:
        delay = 0.5
        while True:
            try:
                async for message in self.backend.control_messages():
                    delay = 0.5
                    self._on_control(message)
            except Exception:
                _raise_if_cancelling()
                logger.warning("worker %s: control channel failed; retrying", self.id,
                               exc_info=True)  # fmt: skip
            # The periodic reconcile covers what is missed meanwhile.
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    def _on_control(self, message: ControlMessage) -> None:
        kind, sender = message.get("type"), message.get("worker")
        if kind == "pool.changed":
            if self.planner:
                logger.info("worker %s: configuration changed (%s)", self.id,
                            message.get("reason", "?"))  # fmt: skip
                self.wake(reload=True)
        elif kind == "pool.assigned":
            if sender != self.id and not self.planner:
                self._assignment_version = max(
                    self._assignment_version, float(message.get("version") or 0)
                )
                self.wake(reload=True)
        elif kind == "pool.health":
            name, at = message.get("conn"), float(message.get("at") or time.time())
            fresh = self.planner and sender != self.id and isinstance(name, str)
            if fresh and self._remote_report(name, at, bool(message.get("available"))):
                self.wake()
        elif kind == "pool.leases":
            if sender != self.id:
                self.wake()
        elif kind == "pool.failover":
            self._failover_ordered(message)
        else:
            logger.debug("worker %s: ignoring control message %r", self.id, kind)

    def _failover_ordered(self, message: ControlMessage) -> None:
        """The health check saw one of our connections unhealthy while we still used it (it
        answers pings but carries nothing, say): end its session. The client reconnects at
        once; meanwhile its symbols fail over, and return once it has been live a while."""
        name = message.get("conn")
        if not isinstance(name, str) or name not in self.leases:
            return  # another worker's, or already gone
        client = self.pool.clients.get(conn_from_name(name))
        if client is None:
            return
        reason = str(message.get("reason") or "health check")[:200]
        logger.warning("worker %s: health check orders %s restarted (%s)", self.id, name, reason)
        self.stats.ordered_restarts += 1
        self._background(self._restart(client, reason))

    async def _restart(self, client: FeedClient, reason: str) -> None:
        if not await client.restart(reason):
            logger.info("worker %s: %s was not live; nothing to restart", self.id, client.name)

    # --- heartbeats, records, logs -------------------------------------------------------

    async def _beat_worker(self) -> None:
        info = {
            "worker": self.id,
            "pid": os.getpid(),
            "planner": self.planner,
            "connections": sorted(self.leases),
            "ticks": sum(self.stats.ticks.values()),
            "uptime": round(time.monotonic() - self._started, 1),
            "at": time.time(),
        }
        # Shorter-lived than the leases: by the time a dead worker's leases lapse, it no
        # longer counts in anyone's fair share.
        ttl = min(self.config.lease_ttl, 2.5 * self.config.heartbeat_interval)
        await self.coordinator.beat("worker", self.id, info, ttl=ttl)

    async def _beat_connections(self) -> None:
        ttl = self.config.lease_ttl
        for status in self.connection_statuses():
            await self.coordinator.beat("connection", status["name"], status, ttl=ttl)

    def connection_statuses(self) -> list[dict[str, Any]]:
        unavailable = self.tracker.unavailable()
        now = time.time()
        return [
            {**client.status(), "available": conn not in unavailable, "worker": self.id,
             "at": now}
            for conn, client in sorted(self.pool.clients.items())
        ]  # fmt: skip

    async def _heartbeat_loop(self) -> None:
        while True:
            try:
                await self._beat_worker()
                await self._beat_connections()
                workers = max(1, len(await self.coordinator.beats("worker")))
                if workers != self._workers:
                    # A worker joined or left: the fair share changed.
                    logger.info("worker %s: %d workers now", self.id, workers)
                    self._workers = workers
                    self.wake()
                if self.planner:
                    await self._read_remote_health()
                else:
                    await self._check_assignment_version()
            except Exception:
                _raise_if_cancelling()
                logger.warning("worker %s: heartbeat failed", self.id, exc_info=True)
            await asyncio.sleep(self.config.heartbeat_interval)

    async def _read_remote_health(self) -> None:
        """The planner's view of other workers' connections, from their heartbeats."""
        beats = await self.coordinator.beats("connection")
        changed = False
        for name, info in beats.items():
            if info.get("worker") in (None, self.id):
                continue
            at = float(info.get("at") or 0)
            changed |= self._remote_report(name, at, bool(info.get("available", True)))
        for name in [n for n in self._remote if n not in beats or n in self.leases]:
            # Its heartbeat lapsed (a dead worker: the lease takeover handles it) or it is ours.
            changed |= not self._remote.pop(name)[1]
        if changed:
            self.wake()

    async def _check_assignment_version(self) -> None:
        """A missed ``pool.assigned`` message costs one heartbeat interval, not a reconcile."""
        versions = await self.coordinator.beats("assignment")
        version = float(versions.get("version", {}).get("version") or 0)
        if version > self._assignment_version:
            self._assignment_version = version
            self.wake(reload=True)

    async def _every(self, seconds: float, action: Callable[[], Awaitable[None]]) -> None:
        if seconds <= 0:
            return  # turned off
        while True:
            await asyncio.sleep(seconds)
            try:
                await action()
            except Exception:
                _raise_if_cancelling()
                logger.exception("worker %s: %s failed", self.id, action.__name__)

    async def _announce_first_ticks(self, limit: float = 60.0) -> None:
        """One log line when every subscription has delivered a tick: the hub is up."""
        start = time.monotonic()
        while time.monotonic() - start < limit:
            await asyncio.sleep(0.2)
            mine = [
                (k, p.conn.provider)
                for k, ps in self.assignment.items()
                for p in ps
                if connection_name(p.conn) in self.leases
            ]
            if mine and all(self.latest.get(k, provider) for k, provider in mine):
                logger.info("worker %s: all %d subscriptions ticking, %.1f s after start",
                            self.id, len(mine), time.monotonic() - self._started)  # fmt: skip
                return

    async def _reconcile(self) -> None:
        self.wake(reload=True)

    async def _record_health(self) -> None:
        statuses = self.connection_statuses()
        if statuses:
            await self.backend.record_health(statuses, worker_id=self.id)

    async def _log_status(self) -> None:
        clients = self.pool.clients.values()
        live = sum(1 for c in clients if c.state is ClientState.LIVE)
        symbols = sum(len(c.subscriptions) for c in clients)
        now, ticks = time.monotonic(), dict(self.stats.ticks)
        span = max(now - self._last_log[0], 1e-9)
        rates = ", ".join(
            f"{provider} {(n - self._last_log[1].get(provider, 0)) / span:,.0f}/s"
            for provider, n in sorted(ticks.items())
        )
        self._last_log = (now, ticks)
        logger.info(
            "worker %s: %d/%d connections live, %d subscriptions, %d instruments ticked; "
            "ticks %s%s",
            self.id, live, len(self.pool.clients), symbols, len(self.latest), rates or "none yet",
            "; planner" if self.planner else "",
        )  # fmt: skip
