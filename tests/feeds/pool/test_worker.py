"""The feed worker against both simulators over real sockets, with the real database.

Each test starts the simulators on free ports, points the settings at them, enables
instruments through the services and runs a ``FeedWorker`` built exactly as ``runfeeds``
builds it (in the Redis pass of the suite, coordination and control go through Redis).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from asgiref.sync import sync_to_async
from django.test import Client
from django.utils import timezone

from feeds.models import Instrument, PlacementIssue, PoolAssignment, ProviderAccount
from feeds.pool.distribution import Conn
from feeds.pool.worker import FeedWorker
from feeds.providers.backoff import Backoff
from feeds.providers.simulation.run import SimulatorSet
from feeds.providers.ticks import Tick
from feeds.runtime import feed_worker_build, worker_config_from_settings
from monitoring.models import ConnectionHealth
from tests.feeds.live import enable, until

pytestmark = pytest.mark.django_db(transaction=True)

FAILOVER_BUDGET = 2.0  # seconds, the issue's bound


@contextlib.asynccontextmanager
async def running(**overrides) -> AsyncIterator[FeedWorker]:
    config = worker_config_from_settings(
        worker_id=f"test-{uuid.uuid4().hex[:8]}",
        recover_after=1.0,
        connect_grace=2.0,
        lease_ttl=3.0,
        health_interval=0.05,
        client_options={
            "silence_timeout": 0.5,
            "backoff": Backoff(base=0.1, cap=1.0),
            "auth_backoff": Backoff(base=0.5, cap=1.0),
        },
        **overrides,
    )
    worker = feed_worker_build(config=config)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield worker
    finally:
        stop.set()
        await task
        await worker.coordinator.close()


def carried(worker: FeedWorker) -> set[tuple[str, str]]:
    assert worker.plan is not None
    return {(k, p.conn.provider) for k, ps in worker.plan.assignment.items() for p in ps}


def all_ticked(worker: FeedWorker, pairs: set[tuple[str, str]]) -> bool:
    return all(worker.latest.get(k, provider) is not None for k, provider in pairs)


def on_conn(worker: FeedWorker, conn: Conn) -> set[str]:
    assert worker.plan is not None
    return {k for k, ps in worker.plan.assignment.items() for p in ps if p.conn == conn}


async def test_a_thousand_symbols_on_five_fyers_connections_plus_upstox(sims) -> None:
    critical = await enable(20, tier="critical", priority=100)
    await enable(980, tier="high_frequency", skip=20)
    async with running(health_record_interval=0.5) as worker:
        await until(lambda: worker.plan is not None and bool(worker.pool.clients), 10, "a plan")
        fyers = {c for c in worker.pool.clients if c.provider == "fyers"}
        assert fyers == {Conn("fyers", "primary", s) for s in range(5)}
        assert {len(c.subscriptions) for k, c in worker.pool.clients.items() if k in fyers} == {200}
        upstox = [c for k, c in worker.pool.clients.items() if k.provider == "upstox"]
        assert sum(len(c.subscriptions) for c in upstox) == 20  # the critical cross-checks
        pairs = carried(worker)
        assert len(pairs) == 1020
        await until(lambda: all_ticked(worker, pairs), 20, "a tick for every symbol")
        assert set(worker.latest.providers(critical[0])) == {"fyers", "upstox"}
        # Each connection's health is recorded for the health check to read. The
        # first rows can predate the first ticks, so wait for a row written after.
        ticking_since = await sync_to_async(lambda: timezone.now())()
        recorded = sync_to_async(
            lambda: (
                ConnectionHealth.objects.filter(recorded_at__gt=ticking_since)
                .values("connection_id")
                .distinct()
                .count()
            )
        )
        for _ in range(100):
            if await recorded() >= 6:
                break
            await asyncio.sleep(0.05)

    rows = await sync_to_async(
        lambda: list(PoolAssignment.objects.values_list("account__provider", "connection_slot"))
    )()
    assert len(rows) == 1020
    per_slot = {s: sum(1 for p, x in rows if p == "fyers" and x == s) for s in range(5)}
    assert per_slot == {s: 200 for s in range(5)}

    health = await sync_to_async(
        lambda: {
            h.connection_id: h
            for h in ConnectionHealth.objects.select_related("account").order_by("recorded_at")
        }
    )()
    assert set(health) == {f"fyers:primary:{s}" for s in range(5)} | {"upstox:primary:0"}
    assert all(h.state == "live" and h.messages_total > 0 for h in health.values())
    assert health["fyers:primary:0"].symbols == 200 and health["fyers:primary:0"].symbol_cap == 200
    assert health["upstox:primary:0"].account.provider == "upstox"


def _sim_connection(sims: SimulatorSet, worker: FeedWorker, conn: Conn) -> int:
    """The simulator's id for the socket our connection ``conn`` holds."""
    client = worker.pool.clients[conn]
    local = client._ws.local_address  # type: ignore[attr-defined]
    sim = sims.fyers if conn.provider == "fyers" else sims.upstox
    return next(c.id for c in sim.connections.values() if c.socket.remote_address == local)


# The issue's four, and a broker refusing new sockets (its connection limit reached).
FAULTS = ["close_clean", "close_unclean", "stall", "reject_auth", "connection_limit"]


@pytest.mark.parametrize("fault", FAULTS)
async def test_failover_moves_symbols_within_two_seconds_and_back(sims, fault) -> None:
    await enable(450, tier="high_frequency")  # FYERS slots 0, 1 (200 each) and 2 (50)
    await enable(40, tier="standard", skip=450)  # Upstox
    async with running() as worker:
        pairs_ready = lambda: worker.plan is not None and all_ticked(worker, carried(worker))  # noqa: E731
        await until(pairs_ready, 20, "every symbol ticking before the fault")
        victim = Conn("fyers", "primary", 0)
        affected = on_conn(worker, victim)
        assert len(affected) == 200
        others = {k: [p.conn for p in ps] for k, ps in worker.plan.assignment.items()}
        others = {k: c for k, c in others.items() if k not in affected}
        other_clients = {c: cl for c, cl in worker.pool.clients.items() if c != victim}
        sim_id = _sim_connection(sims, worker, victim)
        # The first tick of each affected symbol through another connection, from the
        # publisher hook (the victim itself may reconnect and deliver them too).
        elsewhere: dict[str, int] = {}

        def record(ticks: list[Tick]) -> None:
            for tick in ticks:
                if tick.instrument in affected and tick.connection != victim_name:
                    elsewhere.setdefault(tick.instrument, tick.recv_ns)

        victim_name = "fyers:primary:0"
        t0 = time.time_ns()
        worker.publish = record
        if fault == "close_clean":
            await sims.fyers.fault_close(sim_id, clean=True)
        elif fault == "close_unclean":
            await sims.fyers.fault_close(sim_id, clean=False)
        elif fault == "stall":
            sims.fyers.fault_stall(sim_id, 2.0)
        elif fault == "reject_auth":
            sims.hub.tokens.reject_auth["fyers"] = True
            await sims.fyers.fault_close(sim_id, clean=True)
        else:
            sims.fyers.max_connections = 2  # the two survivors: nothing new gets in
            await sims.fyers.fault_close(sim_id, clean=False)

        await until(lambda: len(elsewhere) == len(affected), 10, "ticks through other sockets")
        took = (max(elsewhere.values()) - t0) / 1e9
        assert took < FAILOVER_BUDGET, f"{fault}: failover took {took:.2f} s"
        worker.publish = None
        assert not on_conn(worker, victim) & affected
        moved = {p.reason for k in affected for p in worker.plan.assignment[k]}
        assert moved == {"failover"}
        # Nothing else moved, and no other socket was touched.
        now = {k: [p.conn for p in ps] for k, ps in worker.plan.assignment.items()}
        assert {k: now[k] for k in others} == others
        assert all(cl.stats.connects == 1 for cl in other_clients.values())

        if fault == "reject_auth":
            await asyncio.sleep(0.5)
            sims.hub.tokens.reject_auth["fyers"] = False
        elif fault == "connection_limit":
            await asyncio.sleep(0.5)
            sims.fyers.max_connections = None

        def home_again() -> bool:
            return worker.plan is not None and on_conn(worker, victim) == affected

        await until(home_again, 15, "the symbols moving back once the connection is healthy")
        assert {p.reason for k in affected for p in worker.plan.assignment[k]} == {"tier_rule"}
        await until(
            lambda: set(worker.pool.clients) == set(other_clients) | {victim},
            5,
            "the temporary connection closed",
        )
        t1 = time.time_ns()
        await until(
            lambda: all(worker.latest.get(k, "fyers").recv_ns > t1 for k in affected),
            10,  # 2 ticks/s each: in 5 s one of 200 symbols stays quiet about 1% of the time
            "ticks from home",
        )


async def test_short_capacity_leaves_the_lowest_priority_out_and_says_so(sims) -> None:
    await sync_to_async(
        lambda: ProviderAccount.objects.filter(provider="fyers").update(max_connections=1)
    )()
    await sync_to_async(
        lambda: ProviderAccount.objects.filter(provider="upstox").update(enabled=False)
    )()
    high = await enable(150, tier="high_frequency", priority=90)
    low = await enable(100, tier="high_frequency", priority=10, skip=150)
    async with running() as worker:
        await until(lambda: worker.plan is not None and bool(worker.pool.clients), 10, "a plan")
        assert set(worker.plan.left_out) == set(low[50:])  # lowest priority, then key order
        await until(lambda: all_ticked(worker, carried(worker)), 20, "the placed ones ticking")
        assert set(k for k, _ in carried(worker)) == set(high) | set(low[:50])

    issues = await sync_to_async(
        lambda: {i.instrument.key: i for i in PlacementIssue.objects.select_related("instrument")}
    )()
    assert set(issues) == set(low[50:])
    assert all(i.kind == "left_out" and "no capacity" in i.reason for i in issues.values())


async def test_raising_an_accounts_limits_places_what_was_left_out(sims) -> None:
    await sync_to_async(
        lambda: ProviderAccount.objects.filter(provider="fyers").update(max_connections=1)
    )()
    await sync_to_async(
        lambda: ProviderAccount.objects.filter(provider="upstox").update(enabled=False)
    )()
    await enable(250, tier="high_frequency")
    async with running() as worker:
        await until(lambda: worker.plan is not None and bool(worker.pool.clients), 10, "a plan")
        left = set(worker.plan.left_out)
        assert len(left) == 50

        def more_connections() -> None:
            account = ProviderAccount.objects.get(provider="fyers")
            account.max_connections = 2
            account.save()  # what the admin's form does

        await sync_to_async(more_connections)()
        await until(
            lambda: all(worker.latest.get(k, "fyers") is not None for k in left),
            FAILOVER_BUDGET,
            "the left-out symbols ticking on a second connection",
        )
        assert not worker.plan.left_out and not worker.pool.refused
        assert len(worker.pool.clients) == 2
        issues = sync_to_async(PlacementIssue.objects.count)
        for _ in range(100):  # recorded right after the sockets changed
            if not await issues():
                break
            await asyncio.sleep(0.02)
        assert await issues() == 0


async def test_an_admin_edit_reaches_the_running_worker_within_two_seconds(
    sims, admin_user
) -> None:
    await enable(50, tier="high_frequency")
    newcomer = await sync_to_async(
        lambda: (
            Instrument.objects.filter(instrument_type="EQ", enabled=False)
            .exclude(fyers_token="")
            .order_by("key")
            .first()
        )
    )()
    async with running() as worker:
        await until(lambda: worker.plan is not None and bool(worker.pool.clients), 10, "a plan")

        client = Client()
        url = f"/admin/feeds/instrument/{newcomer.pk}/change/"

        def open_form() -> dict:
            # The admin's page as the operator opens it (not part of the 2 s).
            client.force_login(admin_user)
            page = client.get(url).context
            data = {**page["adminform"].form.initial, "tier": "high_frequency", "priority": 70,
                    "enabled": "on"}  # fmt: skip
            for formset in page["inline_admin_formsets"]:
                management = formset.formset.management_form
                data.update({management.add_prefix(k): v for k, v in management.initial.items()})
            return data

        def save(data: dict) -> int:
            response = client.post(url, data)
            assert response.status_code == 302, response.context["errors"]
            return response.status_code

        data = await sync_to_async(open_form)()
        t0 = time.monotonic()
        assert await sync_to_async(save)(data) == 302
        await until(
            lambda: worker.latest.get(newcomer.key, "fyers") is not None,
            FAILOVER_BUDGET - (time.monotonic() - t0),
            "the newly enabled instrument ticking",
        )
        # The plan is recorded right after the sockets change.
        recorded = sync_to_async(PoolAssignment.objects.filter(instrument=newcomer).exists)
        for _ in range(100):
            if await recorded():
                break
            await asyncio.sleep(0.02)
    row = await sync_to_async(
        lambda: PoolAssignment.objects.select_related("account").get(instrument=newcomer)
    )()
    assert row.account.provider == "fyers" and row.reason == "tier_rule"


async def test_a_provider_account_change_reaches_the_running_worker(sims) -> None:
    fyers_first = await enable(20, tier="high_frequency")
    upstox_first = await enable(30, tier="standard", skip=20)
    async with running() as worker:
        await until(lambda: worker.plan is not None, 10, "a plan")
        await until(lambda: all_ticked(worker, carried(worker)), 20, "every symbol ticking")
        assert {p for k, p in carried(worker) if k in upstox_first} == {"upstox"}

        def disable_upstox() -> None:
            account = ProviderAccount.objects.get(provider="upstox")
            account.enabled = False
            account.save()  # what the admin's form does

        t0 = time.time_ns()
        await sync_to_async(disable_upstox)()
        # The standard ones overflow to FYERS (they are listed there too) and tick there.
        await until(
            lambda: all(
                (t := worker.latest.get(k, "fyers")) is not None and t.recv_ns > t0
                for k in upstox_first
            ),
            FAILOVER_BUDGET,
            "the Upstox symbols ticking on FYERS",
        )
        assert not any(c.provider == "upstox" for c in worker.pool.clients)
        assert {p.reason for k in upstox_first for p in worker.plan.assignment[k]} == {"overflow"}
        assert all(worker.plan.assignment[k][0].conn.provider == "fyers" for k in fyers_first)
