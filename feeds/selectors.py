"""Read paths for instruments and provider accounts."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as aioredis
from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Case, IntegerField, Q, QuerySet, Value, When

from feeds.cache.l1 import l1_reader
from feeds.cache.l2 import RedisLatestStore
from feeds.cache.l3 import rest_fetcher
from feeds.cache.layers import CachedValue, InstrumentRef, LayeredCache, LayerStats
from feeds.delivery.hub import Limits
from feeds.models import (
    ClientLimits,
    Instrument,
    LastTick,
    PoolAssignment,
    Provider,
    ProviderAccount,
    WatchlistItem,
)
from feeds.pool.distribution import Account, Conn, Placement, Want
from feeds.pool.pool import AccountEndpoints, Identity, PoolInputs
from feeds.providers.fyers.rest import FyersRestClient
from feeds.providers.ratelimit import RateLimiter, Window
from feeds.providers.rest import RestClientBase
from feeds.providers.upstox.rest import UpstoxRestClient
from feeds.tuning import LOW_TIERS, hub_tuning_get


def instruments_for_simulation(*, enabled_only: bool = False) -> QuerySet[Instrument]:
    """Instruments a simulator should list: anything with at least one provider identity."""
    queryset = Instrument.objects.exclude(fyers_token="", upstox_key="")
    return queryset.filter(enabled=True) if enabled_only else queryset


def _token_reader(name: str) -> Callable[[], str | None]:
    # Read at each connect, so a rotated token is picked up without a restart.
    return lambda: os.environ.get(name)


def pool_inputs_get() -> PoolInputs:
    """Enabled instruments and provider accounts, both providers' identities, and the
    assignment as last recorded."""
    instruments = list(
        Instrument.objects.filter(enabled=True)
        .exclude(fyers_token="", upstox_key="")
        .only("key", "tier", "priority", "data_mode", "fyers_symbol", "fyers_token", "upstox_key")
    )
    wants = [
        Want(
            key=i.key,
            tier=i.tier,
            priority=i.priority,
            mode=i.data_mode,
            on_fyers=bool(i.fyers_token and i.fyers_symbol),
            on_upstox=bool(i.upstox_key),
        )
        for i in instruments
    ]
    identities = {
        i.key: Identity(i.key, i.fyers_symbol, i.fyers_token, i.upstox_key) for i in instruments
    }
    accounts, endpoints = [], {}
    for account in ProviderAccount.objects.filter(enabled=True).order_by("provider", "id"):
        urls = settings.FYERS if account.provider == Provider.FYERS else settings.UPSTOX
        accounts.append(
            Account(
                name=account.label,
                provider=account.provider,
                max_connections=account.max_connections,
                per_connection=account.max_symbols_per_connection,
                mode_limits=account.mode_limits or None,
            )
        )
        endpoints[(account.provider, account.label)] = AccountEndpoints(
            provider=account.provider,
            account=account.label,
            api_url=urls["API_URL"],
            socket_url=urls["SOCKET_URL"]
            if account.provider == Provider.FYERS
            else urls["FEED_URL"],
            token=_token_reader(account.token_env),
            max_connections=account.max_connections,
            per_connection=account.max_symbols_per_connection,
            mode_limits=account.mode_limits or None,
        )
    current: dict[str, list[Placement]] = {}
    rows = PoolAssignment.objects.filter(instrument__in=instruments).select_related(
        "instrument", "account"
    )
    for row in rows:
        conn = Conn(row.account.provider, row.account.label, row.connection_slot)
        current.setdefault(row.instrument.key, []).append(
            Placement(conn=conn, mode=row.data_mode, reason=row.reason)
        )
    return PoolInputs(
        wants=wants,
        accounts=accounts,
        endpoints=endpoints,
        identities=identities,
        current={k: tuple(sorted(v, key=lambda p: p.conn)) for k, v in current.items()},
    )


# --- Live pages: instrument search and watchlists -------------------------------------------

INSTRUMENT_SEARCH_MAX = 100  # results
INSTRUMENT_QUERY_MAX = 100  # characters (keys and symbols are at most 64)


def instruments_search(*, query: str, limit: int = 20) -> list[Instrument]:
    """Instruments whose canonical key, FYERS symbol, Upstox key or name contains ``query``
    (case-insensitive): enabled ones first, then exact matches, then symbols starting with it.
    """
    text = query.strip()[:INSTRUMENT_QUERY_MAX]
    if not text:
        return []
    limit = max(1, min(limit, INSTRUMENT_SEARCH_MAX))
    matches = (
        Q(key__icontains=text)
        | Q(fyers_symbol__icontains=text)
        | Q(upstox_key__icontains=text)
        | Q(name__icontains=text)
    )
    # "SBIN" should put NSE:SBIN above NSE:SBINEQWARR and SBI-named rows: rank exact, then
    # symbol-prefix matches (the part after the exchange prefix), then the rest.
    exact = (
        Q(key__iexact=text)
        | Q(key__iendswith=f":{text}")
        | Q(fyers_symbol__iexact=text)
        | Q(upstox_key__iexact=text)
    )
    rank = Case(
        When(exact, then=Value(0)),
        When(key__icontains=f":{text}", then=Value(1)),
        default=Value(2),
        output_field=IntegerField(),
    )
    return list(
        Instrument.objects.filter(matches)
        .annotate(search_rank=rank)
        .order_by("-enabled", "search_rank", "key")[:limit]
    )


def instrument_get(*, key: str) -> Instrument | None:
    """The instrument with this canonical key, or None."""
    return Instrument.objects.filter(key=key).first()


def watchlist_get(*, user: AbstractBaseUser) -> list[WatchlistItem]:
    """The user's watchlist in the user's order, each item with its instrument."""
    return list(
        WatchlistItem.objects.filter(user=user)
        .select_related("instrument")
        .order_by("position", "added_at", "pk")
    )


# --- WebSocket API ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResolvedSymbol:
    key: str
    enabled: bool
    feed_mode: str


def instruments_resolve(*, symbols: Sequence[str]) -> dict[str, ResolvedSymbol | None]:
    """Each symbol as a client wrote it (canonical key, FYERS symbol or Upstox key) -> its
    instrument, or None when no instrument has that symbol in any form. One query."""
    wanted = list(dict.fromkeys(symbols))
    rows = Instrument.objects.filter(
        Q(key__in=wanted) | Q(fyers_symbol__in=wanted) | Q(upstox_key__in=wanted)
    ).values_list("key", "fyers_symbol", "upstox_key", "enabled", "data_mode")
    by_form: dict[str, ResolvedSymbol] = {}
    for key, fyers_symbol, upstox_key, enabled, data_mode in rows:
        resolved = ResolvedSymbol(key=key, enabled=enabled, feed_mode=data_mode)
        # The canonical key wins over another instrument's provider form of the same text.
        by_form[key] = resolved
        for form in (fyers_symbol, upstox_key):
            if form:
                by_form.setdefault(form, resolved)
    return {s: by_form.get(s) for s in wanted}


def client_limits_get(*, user: AbstractBaseUser) -> Limits:
    """The user's WebSocket API limits: their ClientLimits row, else the settings' defaults."""
    row = ClientLimits.objects.filter(user=user).first()
    if row is not None:
        return Limits(
            subscriptions=row.max_subscriptions,
            requests_per_second=row.max_requests_per_second,
            updates_per_second=row.max_updates_per_second,
            connections=row.max_connections,
        )
    delivery = settings.DELIVERY
    return Limits(
        subscriptions=delivery["MAX_SUBSCRIPTIONS"],
        requests_per_second=delivery["MAX_REQUESTS_PER_SECOND"],
        updates_per_second=delivery["MAX_UPDATES_PER_SECOND"],
        connections=delivery["MAX_CONNECTIONS"],
    )


# --- Market data: the layered caches (L1-L4) -----------------------------------------------

_IN_CHUNK = 500  # keys per IN (...): well under SQLite's bound on query parameters
_L3_TIMEOUT = 2.0  # seconds a snapshot waits for a provider's REST answer before L4
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _chunks(keys: Iterable[str]) -> Iterator[list[str]]:
    wanted = list(dict.fromkeys(keys))
    for start in range(0, len(wanted), _IN_CHUNK):
        yield wanted[start : start + _IN_CHUNK]


def instrument_refs_get(*, keys: Iterable[str]) -> dict[str, InstrumentRef]:
    """The known ``keys`` as the caches walk them. The primary provider is the one whose pool
    connection carries the instrument (FYERS when both do), else FYERS when it lists it, else
    Upstox."""
    refs: dict[str, InstrumentRef] = {}
    for chunk in _chunks(keys):
        carried: dict[str, set[str]] = {}
        rows = PoolAssignment.objects.filter(instrument__key__in=chunk).values_list(
            "instrument__key", "account__provider"
        )
        for key, provider in rows:
            carried.setdefault(key, set()).add(provider)
        instruments = Instrument.objects.filter(key__in=chunk).values_list(
            "key", "fyers_symbol", "upstox_key", "tier"
        )
        for key, fyers_symbol, upstox_key, tier in instruments:
            on = carried.get(key, set())
            if Provider.FYERS in on or (Provider.UPSTOX not in on and fyers_symbol):
                primary = Provider.FYERS.value
            else:
                primary = Provider.UPSTOX.value
            refs[key] = InstrumentRef(key, primary, fyers_symbol, upstox_key, tier)
    return refs


def last_ticks_get(*, keys: Iterable[str]) -> dict[str, tuple[str, dict[str, Any]]]:
    """key -> (provider, record) of the persisted last tick, for the keys that have one."""
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for chunk in _chunks(keys):
        rows = LastTick.objects.filter(instrument__key__in=chunk).values_list(
            "instrument__key", "provider", "record", "received_at"
        )
        for key, provider, record, received_at in rows:
            record = dict(record)
            if not isinstance(record.get("recv_ns"), int):  # ages are taken from recv_ns
                record["recv_ns"] = (received_at - _EPOCH) // timedelta(microseconds=1) * 1000
            found[key] = (provider, record)
    return found


# One LayerStats per process, whichever loop asked. The caches themselves are per event loop:
# their Redis client and HTTP sessions belong to the loop that made them. The rate limiters
# are per process, so that every loop spends from the same provider budget.
_cache_stats = LayerStats()
_limiters: dict[str, tuple[tuple[Window, ...], RateLimiter]] = {}  # one per provider


@dataclass(slots=True)
class _LoopCache:
    config: tuple[Any, ...]
    cache: LayeredCache
    redis: aioredis.Redis | None
    clients: list[RestClientBase]

    async def close(self) -> None:
        for client in self.clients:
            await client.close()
        if self.redis is not None:
            await self.redis.aclose()


_loop_caches: dict[asyncio.AbstractEventLoop, _LoopCache] = {}

_REST_CLIENTS: dict[str, type[RestClientBase]] = {
    Provider.FYERS.value: FyersRestClient,
    Provider.UPSTOX.value: UpstoxRestClient,
}


def _rest_windows(provider: str) -> tuple[Window, ...]:
    """The budget from the settings (per second, per minute), plus the provider's longer
    windows (Upstox: 2000 per 30 min)."""
    conf = settings.FYERS if provider == Provider.FYERS else settings.UPSTOX
    longer = [w for w in _REST_CLIENTS[provider].default_windows if w.seconds > 60]
    return (Window(conf["RATE_PER_SECOND"], 1.0), Window(conf["RATE_PER_MINUTE"], 60.0), *longer)


def _rest_limiter(provider: str, windows: tuple[Window, ...]) -> RateLimiter:
    held = _limiters.get(provider)
    if held is None or held[0] != windows:
        held = _limiters[provider] = (windows, RateLimiter(windows, name=f"{provider} L3"))
    return held[1]


def _env_token(name: str) -> Callable[[], str]:
    # Read at each call, so a rotated token is picked up without a restart.
    return lambda: os.environ.get(name, "")


def _market_inputs(keys: list[str]) -> tuple[dict[str, InstrumentRef], dict[str, str]]:
    """The instruments' refs, and each provider's first enabled account (provider ->
    token variable) for L3."""
    accounts: dict[str, str] = {}
    rows = ProviderAccount.objects.filter(enabled=True).order_by("provider", "id")
    for provider, token_env in rows.values_list("provider", "token_env"):
        accounts.setdefault(provider, token_env)
    return instrument_refs_get(keys=keys), accounts


async def _persisted(keys: Sequence[str]) -> dict[str, tuple[str, dict[str, Any]]]:
    return await database_sync_to_async(last_ticks_get)(keys=keys)


async def _layered_cache(accounts: Mapping[str, str]) -> LayeredCache:
    """This loop's cache, rebuilt when the settings or the accounts changed."""
    loop = asyncio.get_running_loop()
    delivery = settings.DELIVERY
    windows = {p: _rest_windows(p) for p in sorted(accounts) if p in _REST_CLIENTS}
    config = (
        settings.REDIS_URL, delivery["L2_TTL"], delivery["FRESH_AGE"], delivery["REST_MAX_WAIT"],
        settings.FYERS["API_URL"], settings.UPSTOX["API_URL"], tuple(sorted(accounts.items())),
        tuple(windows.items()),
    )  # fmt: skip
    held = _loop_caches.get(loop)
    if held is not None and held.config == config:
        return held.cache
    for gone in [lp for lp in _loop_caches if lp.is_closed()]:
        del _loop_caches[gone]  # bounded by the loops alive
    redis_client = aioredis.from_url(settings.REDIS_URL) if settings.REDIS_URL else None
    clients: list[RestClientBase] = []
    for provider, provider_windows in windows.items():
        conf = settings.FYERS if provider == Provider.FYERS else settings.UPSTOX
        clients.append(
            _REST_CLIENTS[provider](
                api_url=conf["API_URL"],
                token=_env_token(accounts[provider]),
                limiter=_rest_limiter(provider, provider_windows),
                timeout=_L3_TIMEOUT,
                max_wait=delivery["REST_MAX_WAIT"],
            )
        )
    store = None if redis_client is None else RedisLatestStore(redis_client, ttl=delivery["L2_TTL"])
    cache = LayeredCache(
        l2=store,
        l3={str(c.provider): rest_fetcher(c) for c in clients},
        l4=_persisted,
        fresh_age=delivery["FRESH_AGE"],
        stats=_cache_stats,
    )
    _loop_caches[loop] = _LoopCache(config, cache, redis_client, clients)
    if held is not None:
        await held.close()
    return cache


async def market_data_get(
    *, symbols: Sequence[str], max_age: float | None = None
) -> dict[str, CachedValue]:
    """The latest value of each symbol (canonical keys) from the caches, with its age and
    the layer that supplied it: the first within ``max_age`` (default: the FRESH_AGE
    setting), else the newest there is, marked stale. A symbol no layer has comes back with
    ``source`` None. Never raises for a layer that is down or out of rate budget."""
    if isinstance(symbols, str):
        raise TypeError("symbols must be a sequence of keys, not one string")
    keys = list(dict.fromkeys(symbols))
    if not keys:
        return {}
    refs, accounts = await database_sync_to_async(_market_inputs)(keys)
    cache = await _layered_cache(accounts)
    cache.l1 = l1_reader()  # the worker or the hub may have registered a table since
    bound = settings.DELIVERY["FRESH_AGE"] if max_age is None else max_age
    # A key no instrument has still gets its answer (source None, unless a table has it).
    walk = [refs.get(k) or InstrumentRef(k, Provider.FYERS.value) for k in keys]
    low_fresh = hub_tuning_get().low_tier_fresh_age
    low = [r for r in walk if r.tier in LOW_TIERS] if max_age is None and low_fresh else []
    if not low:
        return await cache.get(walk, max_age=bound)
    # The performance monitor lengthened what counts as fresh for the low tiers: their
    # snapshots take a slightly older in-memory value rather than a REST call.
    found = await cache.get([r for r in walk if r.tier not in LOW_TIERS], max_age=bound)
    found.update(await cache.get(low, fresh_age=low_fresh))
    return {key: found[key] for key in keys}


async def market_data_close() -> None:
    """Close this loop's Redis client and REST sessions (shutdown, tests)."""
    held = _loop_caches.pop(asyncio.get_running_loop(), None)
    if held is not None:
        await held.close()


def cache_stats() -> LayerStats:
    """This process's cache lookups per layer (hits, misses, ``hit_rates()``)."""
    return _cache_stats
