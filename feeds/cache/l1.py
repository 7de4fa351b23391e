"""L1: the in-process latest values, as the layered cache reads them.

A process has at most a few tables (the feed worker's ``LatestTicks``, the fan-out hub's
latest records); each registers a reader under a name when it starts and unregisters when it
stops. ``l1_reader()`` gives the cache one reader over all of them: for each provider the
newest value any table holds. No Django.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from feeds.cache.l2 import tick_record
from feeds.cache.layers import L1Reader
from feeds.pool.latest import LatestTicks

MAX_READERS = 8  # a process has a handful of tables; more means registrations leak

_readers: dict[str, L1Reader] = {}


def l1_register(name: str, reader: L1Reader) -> None:
    """Make ``reader`` (key -> {provider: record}) this process's L1 under ``name``,
    replacing an earlier one of that name."""
    if name not in _readers and len(_readers) >= MAX_READERS:
        raise RuntimeError(f"more than {MAX_READERS} L1 tables registered: {sorted(_readers)}")
    _readers[name] = reader


def l1_unregister(name: str) -> None:
    _readers.pop(name, None)


def l1_reader() -> L1Reader | None:
    """One reader over the registered tables, or None when the process has none (the cache
    then skips L1 instead of counting a miss per symbol)."""
    readers = list(_readers.values())
    if not readers:
        return None
    if len(readers) == 1:
        return readers[0]

    def read(key: str) -> Mapping[str, dict[str, Any]]:
        merged: dict[str, dict[str, Any]] = {}
        for reader in readers:
            for provider, record in reader(key).items():
                held = merged.get(provider)
                if held is None or record.get("recv_ns", 0) > held.get("recv_ns", 0):
                    merged[provider] = record
        return merged

    return read


def latest_ticks_reader(table: LatestTicks) -> L1Reader:
    """The feed worker's ``LatestTicks`` as an L1 reader; ticks become records on read."""

    def read(key: str) -> Mapping[str, dict[str, Any]]:
        return {str(p): tick_record(t) for p, t in table.providers(key).items()}

    return read
