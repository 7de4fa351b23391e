"""Read paths for instruments and provider accounts."""

from __future__ import annotations

import os
from collections.abc import Callable

from django.conf import settings
from django.db.models import QuerySet

from feeds.models import Instrument, PoolAssignment, Provider, ProviderAccount
from feeds.pool.distribution import Account, Conn, Placement, Want
from feeds.pool.pool import AccountEndpoints, Identity, PoolInputs


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
