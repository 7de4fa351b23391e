"""L1: the feed worker's in-process latest-tick table.

One entry per (instrument, provider): critical instruments are carried by both providers and
the later tiers compare them, so neither may overwrite the other. Reads are plain dict
lookups. Bounded by the number of instruments the worker carries; ``forget`` drops the ones
it no longer does.
"""

from __future__ import annotations

from collections.abc import Iterable

from feeds.providers.ticks import Tick


class LatestTicks:
    def __init__(self) -> None:
        self._by_key: dict[str, dict[str, Tick]] = {}
        self.updates = 0

    def put(self, tick: Tick) -> None:
        providers = self._by_key.get(tick.instrument)
        if providers is None:
            providers = self._by_key[tick.instrument] = {}
        providers[tick.provider] = tick
        self.updates += 1

    def get(self, key: str, provider: str | None = None) -> Tick | None:
        """The latest tick of ``key``: from ``provider``, or the most recently received."""
        providers = self._by_key.get(key)
        if not providers:
            return None
        if provider is not None:
            return providers.get(provider)
        return max(providers.values(), key=lambda t: t.recv_ns)

    def providers(self, key: str) -> dict[str, Tick]:
        return dict(self._by_key.get(key, {}))

    def forget(self, keys: Iterable[str]) -> None:
        for key in keys:
            self._by_key.pop(key, None)

    def keys(self) -> set[str]:
        return set(self._by_key)

    def __len__(self) -> int:
        return len(self._by_key)
