"""The layered caches behind every snapshot: one walk, L1 to L4, per symbol.

- **L1** the in-process latest values (the feed worker's table, the fan-out hub's);
- **L2** Redis, the same for every process (production mode only);
- **L3** the primary provider's REST quote, through its rate-limited client;
- **L4** the other provider's value when fresh, else the newest value seen anywhere (either
  provider, any layer, or the last persisted one), marked stale.

A symbol stops at the first value whose age is within ``max_age``. Values found too old on
the way are remembered, so when nothing is fresh the answer is the newest of them. L3 is one
call per provider for all the symbols that reach it; a refused or failed call (rate budget,
provider down, bad token) is a miss like any other, logged once per burst, never raised.

No Django: readers, the Redis store, the REST fetchers and the persisted-value loader are
handed in.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from feeds.cache.l2 import RedisLatestStore

logger = logging.getLogger(__name__)

Layer = Literal["l1", "l2", "l3", "l4"]
LAYERS: tuple[Layer, ...] = ("l1", "l2", "l3", "l4")
PROVIDERS = ("fyers", "upstox")

Record = dict[str, Any]
# key -> {provider: record}; an empty mapping when the table has nothing for the key.
L1Reader = Callable[[str], Mapping[str, Record]]
# The provider's own symbols -> {symbol: record} for those it answered.
L3Fetcher = Callable[[Sequence[str]], Awaitable[Mapping[str, Record]]]
# Canonical keys -> {key: (provider, record)} for those with a persisted value.
L4Loader = Callable[[Sequence[str]], Awaitable[Mapping[str, tuple[str, Record]]]]


@dataclass(frozen=True, slots=True)
class InstrumentRef:
    """What the walk needs of an instrument: its key, whose value comes first, and how each
    provider's REST API names it ("" where that provider does not list it)."""

    key: str
    primary: str
    fyers_symbol: str = ""
    upstox_key: str = ""
    tier: str = ""

    def symbol(self, provider: str) -> str:
        return self.fyers_symbol if provider == "fyers" else self.upstox_key


@dataclass(frozen=True, slots=True)
class CachedValue:
    """A symbol's value as the caches had it. ``source`` None: no layer had any value."""

    key: str
    record: Record | None
    provider: str | None
    source: Layer | None
    age: float | None  # seconds since the hub received it
    stale: bool


@dataclass(slots=True)
class LayerStats:
    """Lookups per layer: a hit when the layer supplied a value within ``max_age``, a miss
    when it was consulted and did not. Fixed keys, plain counters."""

    hits: dict[str, int] = field(default_factory=lambda: dict.fromkeys(LAYERS, 0))
    misses: dict[str, int] = field(default_factory=lambda: dict.fromkeys(LAYERS, 0))
    stale: int = 0  # answers that were the newest of old values (nothing fresh anywhere)
    missing: int = 0  # answers with no value at all

    def hit_rates(self) -> dict[str, float | None]:
        """Hits over lookups per layer; None for a layer never consulted."""
        rates: dict[str, float | None] = {}
        for layer in LAYERS:
            lookups = self.hits[layer] + self.misses[layer]
            rates[layer] = self.hits[layer] / lookups if lookups else None
        return rates

    def reset(self) -> None:
        for layer in LAYERS:
            self.hits[layer] = self.misses[layer] = 0
        self.stale = self.missing = 0


class _BurstLog:
    """The first failure of a layer is logged; the rest of the burst only counted, until the
    layer works again. One entry per layer and provider, so it stays small."""

    def __init__(self) -> None:
        self._failing: dict[str, int] = {}

    def failed(self, name: str, exc: BaseException) -> None:
        count = self._failing.get(name, 0)
        if not count:
            logger.warning("cache %s: %s: %s (falling through; quiet until it works again)",
                           name, type(exc).__name__, exc)  # fmt: skip
        self._failing[name] = count + 1

    def worked(self, name: str) -> None:
        count = self._failing.pop(name, 0)
        if count:
            logger.info("cache %s works again after %d failed lookups", name, count)


@dataclass(slots=True)
class _Seen:
    layer: Layer
    provider: str
    record: Record

    @property
    def recv_ns(self) -> int:
        value = self.record.get("recv_ns")
        return value if isinstance(value, int) else 0


class LayeredCache:
    """Walks L1..L4 for a batch of instruments; each part may be absent in a process."""

    def __init__(
        self,
        *,
        l1: L1Reader | None = None,
        l2: RedisLatestStore | None = None,
        l3: Mapping[str, L3Fetcher] | None = None,
        l4: L4Loader | None = None,
        fresh_age: float = 0.1,
        clock: Callable[[], int] = time.time_ns,
        stats: LayerStats | None = None,
    ) -> None:
        # Public: a process gains its L1 table after start-up (the worker registers it), so
        # whoever owns the cache may set it later.
        self.l1 = l1
        self.l2 = l2
        self.l3: Mapping[str, L3Fetcher] = l3 or {}
        self.l4 = l4
        self.fresh_age = fresh_age
        self.clock = clock
        self.stats = stats if stats is not None else LayerStats()
        self._log = _BurstLog()

    def _age(self, record: Mapping[str, Any], now: int) -> float | None:
        recv_ns = record.get("recv_ns")
        if not isinstance(recv_ns, int):
            return None
        # Another host's clock may run a little ahead: a value is never younger than new.
        return max(0, now - recv_ns) / 1e9

    async def get(
        self,
        instruments: Iterable[InstrumentRef],
        max_age: float | None = None,
        *,
        fresh_age: float | None = None,
    ) -> dict[str, CachedValue]:
        """key -> value for every instrument, in the order given. ``fresh_age`` overrides the
        cache's own for this call (what counts as fresh, and the default ``max_age``)."""
        fresh = self.fresh_age if fresh_age is None else fresh_age
        bound = fresh if max_age is None else max_age
        refs = {ref.key: ref for ref in instruments}
        found: dict[str, CachedValue] = {}
        seen: dict[str, list[_Seen]] = {key: [] for key in refs}
        stats = self.stats

        def settle(key: str, layer: Layer, provider: str, record: Record, now: int) -> bool:
            age = self._age(record, now)
            if age is None or age > bound:
                return False
            found[key] = CachedValue(key, record, provider, layer, age, age > fresh)
            stats.hits[layer] += 1
            return True

        def consult(layer: Layer, tables: Mapping[str, Mapping[str, Record]]) -> None:
            now = self.clock()
            for key in [k for k in refs if k not in found]:
                primary = refs[key].primary
                providers = tables.get(key) or {}
                for provider, record in providers.items():
                    if provider != primary:
                        seen[key].append(_Seen(layer, provider, record))
                record = providers.get(primary)
                if record is not None and settle(key, layer, primary, record, now):
                    continue
                stats.misses[layer] += 1
                if record is not None:
                    seen[key].append(_Seen(layer, primary, record))

        if self.l1 is not None and refs:
            read = self.l1
            consult("l1", {key: read(key) for key in refs})

        if self.l2 is not None and len(found) < len(refs):
            wanted = [k for k in refs if k not in found]
            try:
                tables = await self.l2.read(wanted)
            except Exception as exc:  # Redis away: the lower layers still answer
                self._log.failed("l2", exc)
                tables = {}
            else:
                self._log.worked("l2")
            consult("l2", tables)

        if self.l3 and len(found) < len(refs):
            await self._l3(refs, found, seen, settle)

        if len(found) < len(refs):
            await self._l4(refs, found, seen, settle)

        return {key: found[key] for key in refs}

    async def _l3(
        self,
        refs: Mapping[str, InstrumentRef],
        found: dict[str, CachedValue],
        seen: dict[str, list[_Seen]],
        settle: Callable[[str, Layer, str, Record, int], bool],
    ) -> None:
        # One call per provider for every symbol that reached L3, the providers in parallel.
        by_provider: dict[str, dict[str, str]] = {}  # provider -> symbol -> key
        for key, ref in refs.items():
            symbol = ref.symbol(ref.primary)
            if key not in found and symbol and ref.primary in self.l3:
                by_provider.setdefault(ref.primary, {})[symbol] = key
        if not by_provider:
            return
        providers = list(by_provider)
        answers = await asyncio.gather(
            *(self.l3[p](list(by_provider[p])) for p in providers), return_exceptions=True
        )
        now = self.clock()
        for provider, answer in zip(providers, answers, strict=True):
            name = f"l3:{provider}"
            if isinstance(answer, BaseException):
                if not isinstance(answer, Exception):
                    raise answer  # cancellation and friends are not a cache miss
                self._log.failed(name, answer)
                answer = {}
            else:
                self._log.worked(name)
            for symbol, key in by_provider[provider].items():
                record = answer.get(symbol)
                if record is not None and settle(key, "l3", provider, record, now):
                    continue
                self.stats.misses["l3"] += 1
                if record is not None:
                    seen[key].append(_Seen("l3", provider, record))

    async def _l4(
        self,
        refs: Mapping[str, InstrumentRef],
        found: dict[str, CachedValue],
        seen: dict[str, list[_Seen]],
        settle: Callable[[str, Layer, str, Record, int], bool],
    ) -> None:
        now = self.clock()
        rest: list[str] = []
        for key in [k for k in refs if k not in found]:
            # The other provider's live value, if fresh, beats anything persisted.
            primary = refs[key].primary
            others = [s for s in seen[key] if s.provider != primary and s.layer in ("l1", "l2")]
            newest = max(others, key=lambda s: s.recv_ns, default=None)
            if newest is not None and settle(key, "l4", newest.provider, newest.record, now):
                continue
            rest.append(key)
        if not rest:
            return
        persisted: Mapping[str, tuple[str, Record]] = {}
        if self.l4 is not None:
            try:
                persisted = await self.l4(rest)
            except Exception as exc:  # the database away: answer with what the caches had
                self._log.failed("l4", exc)
            else:
                self._log.worked("l4")
        now = self.clock()
        for key in rest:
            self.stats.misses["l4"] += 1
            candidates = seen[key]
            if key in persisted:
                provider, record = persisted[key]
                candidates.append(_Seen("l4", provider, record))
            best: _Seen | None = None
            for candidate in candidates:  # strictly newer: on a tie the earlier layer wins
                if best is None or candidate.recv_ns > best.recv_ns:
                    best = candidate
            if best is None:
                self.stats.missing += 1
                found[key] = CachedValue(key, None, None, None, None, stale=False)
                continue
            self.stats.stale += 1
            # A value of the other provider is L4's by definition, whichever layer held it.
            layer: Layer = "l4" if best.provider != refs[key].primary else best.layer
            found[key] = CachedValue(
                key, best.record, best.provider, layer, self._age(best.record, now), stale=True
            )
