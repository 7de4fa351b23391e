"""The L1 registry: the tables a process registers, read as one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from feeds.cache import l1
from feeds.cache.l1 import l1_reader, l1_register, l1_unregister, latest_ticks_reader
from feeds.pool.latest import LatestTicks
from feeds.providers.ticks import DepthLevel, ProviderName, Tick


@pytest.fixture(autouse=True)
def empty_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(l1, "_readers", {})
    yield


def tick(key: str, provider: ProviderName, ltp: int, recv_ns: int) -> Tick:
    t = Tick(provider, f"sym-{key}", ltp, 2, recv_ns)
    t.instrument = key
    return t


def test_no_table_means_no_l1() -> None:
    assert l1_reader() is None
    l1_register("worker", lambda key: {})
    assert l1_reader() is not None
    l1_unregister("worker")
    l1_unregister("worker")  # twice is harmless
    assert l1_reader() is None


def test_the_workers_table_reads_as_records() -> None:
    table = LatestTicks()
    depth = tick("NSE:SBIN", ProviderName.FYERS, 81_005, 10)
    depth.bids = (DepthLevel(81_000, 50, 3),)
    table.put(depth)
    table.put(tick("NSE:SBIN", ProviderName.UPSTOX, 81_010, 11))
    l1_register("worker", latest_ticks_reader(table))
    read = l1_reader()
    assert read is not None
    assert read("NSE:SBIN") == {
        "fyers": {"ltp": 81_005, "scale": 2, "recv_ns": 10, "bids": [[81_000, 50, 3]]},
        "upstox": {"ltp": 81_010, "scale": 2, "recv_ns": 11},
    }
    assert read("NSE:OTHER") == {}
    table.put(tick("NSE:SBIN", ProviderName.FYERS, 81_020, 12))  # read live, not copied
    assert read("NSE:SBIN")["fyers"]["ltp"] == 81_020


def test_several_tables_give_the_newest_value_per_provider() -> None:
    worker, hub = LatestTicks(), LatestTicks()
    worker.put(tick("NSE:SBIN", ProviderName.FYERS, 1, 100))
    worker.put(tick("NSE:SBIN", ProviderName.UPSTOX, 2, 300))
    hub.put(tick("NSE:SBIN", ProviderName.FYERS, 3, 200))
    l1_register("worker", latest_ticks_reader(worker))
    l1_register("hub", latest_ticks_reader(hub))
    read = l1_reader()
    assert read is not None
    found = read("NSE:SBIN")
    assert (found["fyers"]["ltp"], found["upstox"]["ltp"]) == (3, 2)


def test_registrations_are_bounded_and_replace_by_name() -> None:
    for i in range(l1.MAX_READERS):
        l1_register(f"table-{i}", lambda key: {})
    l1_register("table-0", lambda key: {"fyers": {"recv_ns": 1}})  # same name: replaced
    with pytest.raises(RuntimeError, match="L1 tables"):
        l1_register("one-too-many", lambda key: {})
