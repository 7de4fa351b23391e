"""The connection pool applying distribution plans to real clients over real sockets."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from feeds.pool.distribution import Account, Conn, Want, distribute
from feeds.pool.latest import LatestTicks
from feeds.pool.pool import AccountEndpoints, ConnectionPool, Identity, desired_by_conn
from feeds.providers.backoff import Backoff
from feeds.providers.simulation.run import SimulatorSet, start_simulators, universe_from_masters
from feeds.providers.ticks import Tick


@pytest.fixture(scope="module")
def universe():
    both = [i for i in universe_from_masters() if i.fytoken and i.upstox_key]
    return sorted(both, key=lambda i: i.key)[:1200]


@pytest.fixture
async def sims(universe) -> AsyncIterator[SimulatorSet]:
    sims = await start_simulators(universe, seed=5, ticks_per_second=1, step_interval=0.05)
    yield sims
    await sims.stop()


def accounts_and_endpoints(sims: SimulatorSet, *, fyers_connections: int = 10):
    fyers_token, upstox_token = sims.hub.tokens.issue_fyers(), sims.hub.tokens.issue_upstox()
    accounts = [
        Account("primary", "fyers", max_connections=fyers_connections, per_connection=200),
        Account("primary", "upstox", max_connections=2, per_connection=5000,
                mode_limits={"ltpc": {"individual": 5000, "combined": 2000},
                             "option_greeks": {"individual": 3000, "combined": 2000},
                             "full": {"individual": 2000, "combined": 1500},
                             "full_d30": {"individual": 50, "combined": 50}}),
    ]  # fmt: skip
    endpoints = {
        ("fyers", "primary"): AccountEndpoints(
            "fyers", "primary", f"http://127.0.0.1:{sims.fyers.rest_port}",
            f"ws://127.0.0.1:{sims.fyers.ws_port}/hsm/v1-5/prod", lambda: fyers_token,
            fyers_connections, 200,
        ),
        ("upstox", "primary"): AccountEndpoints(
            "upstox", "primary", f"http://127.0.0.1:{sims.upstox.rest_port}",
            f"ws://127.0.0.1:{sims.upstox.ws_port}/v3/feed/market-data-feed",
            lambda: upstox_token, 2, 5000, accounts[1].mode_limits,
        ),
    }  # fmt: skip
    return accounts, endpoints


async def test_a_thousand_symbols_on_five_fyers_pools_plus_upstox_all_tick(sims, universe):
    wants = [Want(i.key, "critical", 100, "quote", True, True) for i in universe[:20]]
    wants += [Want(i.key, "high_frequency", 50, "quote", True, True) for i in universe[20:1000]]
    wants += [Want(i.key, "standard", 10, "ltp", True, True) for i in universe[1000:1200]]
    accounts, endpoints = accounts_and_endpoints(sims)
    plan = distribute(wants=wants, accounts=accounts)

    fyers_conns = {c for c in plan.connections if c.provider == "fyers"}
    assert fyers_conns == {Conn("fyers", "primary", s) for s in range(5)}  # 1000 / 200
    assert all(plan.connections[c] == 200 for c in fyers_conns)
    assert not plan.left_out

    latest = LatestTicks()
    seen: Counter[tuple[str, str]] = Counter()

    expected = {(k, p.conn.provider) for k, ps in plan.assignment.items() for p in ps}
    all_seen = asyncio.Event()

    def on_ticks(ticks: list[Tick]) -> None:
        for tick in ticks:
            latest.put(tick)
            seen[(tick.instrument, tick.provider)] += 1
        if expected <= set(seen):
            all_seen.set()

    identities = {i.key: Identity(i.key, i.fyers_symbol, i.fytoken, i.upstox_key) for i in universe}
    pool = ConnectionPool(
        endpoints=endpoints, identities=identities, on_ticks=on_ticks,
        client_options={"backoff": Backoff(base=0.05, cap=0.5)},
    )  # fmt: skip
    try:
        result = await pool.apply(desired_by_conn(plan.assignment))
        assert len(result.opened) == 6 and result.subscribed == 1220
        assert len(expected) == 1000 + 20 + 200  # critical ones on both providers
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_seen.wait(), 20)
        missing = expected - set(seen)
        assert not missing, f"{len(missing)} never ticked, e.g. {sorted(missing)[:5]}"
        assert len(pool.clients) == 6 and not pool.refused
        assert all(s["state"] == "live" for s in pool.status())
        assert set(latest.providers(universe[0].key)) == {"fyers", "upstox"}  # critical
    finally:
        await pool.close()
