"""The worker's decision rules on their own: reports from other workers, the new-socket
breaker, lease fencing. No sockets and no database: an empty backend, and the in-memory
coordinator (the same one the embedded run uses) or one whose Redis is gone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection, Mapping
from typing import Any

import pytest

from feeds.pool.coordination import MemoryCoordinator
from feeds.pool.distribution import Account, Conn, Plan
from feeds.pool.pool import PoolInputs
from feeds.pool.worker import FeedWorker, WorkerConfig


class EmptyBackend:
    """Nothing enabled, nothing recorded, a control channel that never speaks."""

    def __init__(self, accounts: list[Account] | None = None) -> None:
        self.inputs = PoolInputs(
            wants=[], accounts=accounts or [], endpoints={}, identities={}, current={}
        )

    async def load_inputs(self) -> PoolInputs:
        return self.inputs

    async def record_plan(self, plan: Plan, *, worker_id: str, holders: Mapping[str, str]) -> None:
        return None

    async def record_health(self, statuses: list[dict[str, Any]], *, worker_id: str) -> None:
        return None

    async def control_messages(self) -> AsyncIterator[dict[str, Any]]:
        await asyncio.Event().wait()
        yield {}

    async def send_control(self, message: dict[str, Any]) -> None:
        return None

    async def close(self) -> None:
        return None


class UnreachableRedis(MemoryCoordinator):
    """Claims worked once; now every renewal fails like a lost Redis connection."""

    broken = False

    async def renew(self, names: Collection[str], *, owner: str, ttl: float) -> set[str]:
        if self.broken:
            raise ConnectionError("Redis is unreachable")
        return await super().renew(names, owner=owner, ttl=ttl)


def worker(**kwargs: Any) -> FeedWorker:
    return FeedWorker(
        backend=kwargs.pop("backend", EmptyBackend()),
        coordinator=kwargs.pop("coordinator", MemoryCoordinator()),
        config=WorkerConfig(worker_id="w1", **kwargs),
    )


async def test_the_newest_report_about_another_workers_connection_wins() -> None:
    w = worker()
    w.planner = True
    fyers3 = Conn("fyers", "primary", 3)
    w._on_control({"type": "pool.health", "conn": "fyers:primary:3", "available": False,
                   "worker": "w2", "at": 100.0})  # fmt: skip
    assert fyers3 in w.unavailable()
    # An older heartbeat saying "available" (written before the failure) changes nothing.
    assert not w._remote_report("fyers:primary:3", 99.0, True)
    assert fyers3 in w.unavailable()
    assert w._remote_report("fyers:primary:3", 101.0, True)
    assert fyers3 not in w.unavailable()
    # Reports about our own messages are ignored.
    w._on_control({"type": "pool.health", "conn": "fyers:primary:4", "available": False,
                   "worker": "w1", "at": 102.0})  # fmt: skip
    assert Conn("fyers", "primary", 4) not in w.unavailable()


async def test_a_refusing_account_blocks_only_slots_nobody_has_open() -> None:
    account = Account("primary", "fyers", max_connections=4, per_connection=200)
    w = worker(backend=EmptyBackend([account]))
    w._inputs = w.backend.inputs  # type: ignore[attr-defined]
    w._auth_refused.add(("fyers", "primary"))
    w._held_elsewhere = {"fyers:primary:1"}  # another worker's live socket
    assert w.unavailable() == {Conn("fyers", "primary", s) for s in (0, 2, 3)}


async def test_a_worker_that_cannot_renew_its_leases_closes_them_before_the_ttl() -> None:
    coordinator = UnreachableRedis()
    w = worker(coordinator=coordinator, lease_ttl=1.0)
    assert await coordinator.claim("fyers:primary:0", owner="w1", ttl=1.0)
    w.leases.add("fyers:primary:0")
    coordinator.broken = True
    start = w._last_renewed_ok
    with pytest.raises(ConnectionError):
        await w._renew(start + 0.5)  # within three quarters of the TTL: keep going
    assert w.leases == {"fyers:primary:0"}
    with pytest.raises(ConnectionError):
        await w._renew(start + 0.8)  # past it: another worker may claim them soon
    assert w.leases == set()


async def test_a_lease_that_vanished_without_a_new_owner_is_taken_back() -> None:
    coordinator = MemoryCoordinator()
    w = worker(coordinator=coordinator)
    assert await coordinator.claim("fyers:primary:0", owner="w1", ttl=10.0)
    w.leases.add("fyers:primary:0")
    await coordinator.release({"fyers:primary:0"}, owner="w1")  # Redis restarted, say
    await w._renew(w._last_renewed_ok + 1.0)
    assert w.leases == {"fyers:primary:0"}
    assert await coordinator.holders(["fyers:primary:0"]) == {"fyers:primary:0": "w1"}
    # Taken by someone else meanwhile: let go.
    await coordinator.release({"fyers:primary:0"}, owner="w1")
    assert await coordinator.claim("fyers:primary:0", owner="w2", ttl=10.0)
    await w._renew(w._last_renewed_ok + 1.0)
    assert w.leases == set()
