"""The connection pool: the provider clients a worker holds, kept true to a distribution plan.

``apply(desired)`` turns what each connection should carry into socket work: the diff
against what its client holds, unsubscriptions first (they free room under the caps), then
subscriptions, opening a client for a connection that gets its first symbols and closing
one that has none left. Clients reconnect on their own; their ticks go
to one callback. No Django here: the worker builds the endpoints and identities from the
database and the settings.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from feeds.pool.distribution import (  # noqa: F401  (the names are re-exported)
    Account,
    Conn,
    Placement,
    Want,
    conn_from_name,
    connection_name,
)
from feeds.providers.base import ConnectionSlots, FeedClient, StateSink, TickSink
from feeds.providers.errors import CapExceeded
from feeds.providers.fyers.client import FyersClient
from feeds.providers.fyers.rest import FyersRestClient
from feeds.providers.upstox.client import UpstoxClient
from feeds.providers.upstox.rest import UpstoxRestClient

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AccountEndpoints:
    """Where and how one provider account connects."""

    provider: str
    account: str
    api_url: str
    socket_url: str  # FYERS data socket, or the Upstox feed entry point
    token: Callable[[], str | None]
    max_connections: int
    per_connection: int
    mode_limits: Mapping[str, Mapping[str, int]] | None = None


@dataclass(frozen=True, slots=True)
class Identity:
    """One instrument as each provider names it."""

    key: str
    fyers_symbol: str = ""
    fytoken: str = ""
    upstox_key: str = ""

    def symbol(self, provider: str) -> str:
        return self.fyers_symbol if provider == "fyers" else self.upstox_key


def desired_by_conn(assignment: Mapping[str, Iterable[Placement]]) -> dict[Conn, dict[str, str]]:
    """Turn an assignment (key -> placements) into what each connection must carry."""
    desired: dict[Conn, dict[str, str]] = {}
    for key, placements in assignment.items():
        for placement in placements:
            desired.setdefault(placement.conn, {})[key] = placement.mode
    return desired


@dataclass(slots=True)
class ApplyResult:
    subscribed: int = 0
    unsubscribed: int = 0
    opened: list[Conn] = field(default_factory=list)
    closed: list[Conn] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class PoolInputs:
    """Everything the distribution and the pool need, read in one go."""

    wants: list[Want]
    accounts: list[Account]
    endpoints: dict[tuple[str, str], AccountEndpoints]
    identities: dict[str, Identity]
    current: dict[str, tuple[Placement, ...]]


class ConnectionPool:
    def __init__(
        self,
        *,
        endpoints: Mapping[tuple[str, str], AccountEndpoints],
        identities: Mapping[str, Identity],
        on_ticks: TickSink,
        on_state: StateSink | None = None,
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.endpoints = dict(endpoints)
        self.identities = dict(identities)
        self.on_ticks = on_ticks
        self.on_state = on_state
        self.client_options = dict(client_options or {})
        self.clients: dict[Conn, FeedClient] = {}
        self._rest: dict[tuple[str, str], FyersRestClient | UpstoxRestClient] = {}
        self._slots: dict[tuple[str, str], ConnectionSlots] = {}
        self.refused: dict[Conn, str] = {}  # connections whose last plan step was refused

    # --- plans ---------------------------------------------------------------------------

    async def apply(
        self, desired: Mapping[Conn, Mapping[str, str]], *, hold: Collection[Conn] = ()
    ) -> ApplyResult:
        """Make the sockets carry ``desired`` (connection -> instrument key -> mode): the diff
        against what each client holds now, unsubscriptions first (they free room under the
        caps), then subscriptions, opening clients that get their first symbols and closing
        those left with none. Connections in ``hold`` (failed ones whose symbols moved
        elsewhere) keep their subscriptions and stay open, so that they reconnect and show
        when they are healthy again. Refusals are recorded in ``refused``, not raised."""
        result = ApplyResult()
        for conn, client in list(self.clients.items()):
            if conn in hold:
                continue
            wanted = desired.get(conn, {})
            symbols = {self._symbol(conn, k) for k in wanted}
            gone = [s for s in client.subscriptions if s not in symbols]
            if gone:
                await client.unsubscribe(gone)
                result.unsubscribed += len(gone)
        for conn, wanted in desired.items():
            if not wanted:
                continue
            client = self._client(conn, result)
            if client is None:
                continue
            held = client.subscriptions
            symbols = {self._symbol(conn, k): m for k, m in wanted.items()}
            new = {s: m for s, m in symbols.items() if held.get(s) != m}
            if not new:
                continue
            try:
                await client.subscribe(new)
                self.refused.pop(conn, None)
                result.subscribed += len(new)
            except CapExceeded as exc:  # the plan and the client disagree on a cap
                self.refused[conn] = str(exc)
                logger.error("pool: %s refused %d symbols: %s", conn, len(new), exc)
        for conn in [c for c, client in self.clients.items() if not client.subscriptions]:
            if conn not in hold:
                await self._close(conn)
                result.closed.append(conn)
        return result

    def update_directory(
        self,
        *,
        endpoints: Mapping[tuple[str, str], AccountEndpoints],
        identities: Mapping[str, Identity],
    ) -> None:
        """New or edited accounts and instruments: open clients take the new caps and token
        readers, and learn the new or changed symbols' keys."""
        self.endpoints = dict(endpoints)
        for key, slots in self._slots.items():
            account = self.endpoints.get(key)
            if account is not None:
                slots.limit = account.max_connections
        for conn, client in self.clients.items():
            account = self.endpoints.get((conn.provider, conn.account))
            if account is None:
                continue  # the account is gone: the next plan closes its connections
            client.set_account(token=account.token, symbol_cap=account.per_connection)
            if isinstance(client, UpstoxClient) and account.mode_limits:
                client.mode_limits = account.mode_limits
        changed = {k: i for k, i in identities.items() if self.identities.get(k) != i}
        self.identities = dict(identities)
        if not changed:
            return
        for client in self.clients.values():
            client.instruments.update(
                {
                    i.symbol(client.provider): k
                    for k, i in changed.items()
                    if i.symbol(client.provider)
                }
            )
            if isinstance(client, FyersClient):
                client.fytokens.update(
                    {i.fyers_symbol: i.fytoken for i in changed.values() if i.fytoken}
                )

    async def drop(self, conns: Collection[Conn]) -> None:
        """Close connections at once (a lease lost: another worker may open them now)."""
        for conn in conns:
            await self._close(conn)

    def _symbol(self, conn: Conn, key: str) -> str:
        return self.identities[key].symbol(conn.provider)

    def _client(self, conn: Conn, result: ApplyResult | None = None) -> FeedClient | None:
        client = self.clients.get(conn)
        if client is not None:
            return client
        account = self.endpoints.get((conn.provider, conn.account))
        if account is None:
            self.refused[conn] = "no such provider account"
            return None
        slots = self._slots.setdefault(
            (conn.provider, conn.account),
            ConnectionSlots(f"{conn.provider}:{conn.account}", account.max_connections),
        )
        options: dict[str, Any] = {
            "name": connection_name(conn),
            "token": account.token,
            "on_ticks": self.on_ticks,
            "on_state": self.on_state,
            "symbol_cap": account.per_connection,
            "slots": slots,
            **self.client_options,
        }
        rest = self._rest_client(account)
        if conn.provider == "fyers":
            client: FeedClient = FyersClient(
                socket_url=account.socket_url,
                rest=rest,  # type: ignore[arg-type]
                fytokens={i.fyers_symbol: i.fytoken for i in self.identities.values() if i.fytoken},
                instruments={
                    i.fyers_symbol: k for k, i in self.identities.items() if i.fyers_symbol
                },
                **options,
            )
        else:
            client = UpstoxClient(
                feed_url=account.socket_url,
                rest=rest,  # type: ignore[arg-type]
                mode_limits=account.mode_limits,
                instruments={i.upstox_key: k for k, i in self.identities.items() if i.upstox_key},
                **options,
            )
        try:
            client.start()
        except CapExceeded as exc:
            self.refused[conn] = str(exc)
            logger.error("pool: cannot open %s: %s", conn, exc)
            return None
        self.clients[conn] = client
        if result is not None:
            result.opened.append(conn)
        return client

    def _rest_client(self, account: AccountEndpoints) -> FyersRestClient | UpstoxRestClient:
        key = (account.provider, account.account)
        rest = self._rest.get(key)
        if rest is None:

            def required() -> str:
                # The account as edited last, so a changed token variable applies at once.
                current = self.endpoints.get(key)
                return (current.token() if current is not None else None) or ""

            cls = FyersRestClient if account.provider == "fyers" else UpstoxRestClient
            rest = self._rest[key] = cls(api_url=account.api_url, token=required)
        return rest

    async def _close(self, conn: Conn) -> None:
        client = self.clients.pop(conn, None)
        if client is not None:
            await client.close()

    # --- state ---------------------------------------------------------------------------

    def status(self) -> list[dict[str, object]]:
        return [client.status() for _, client in sorted(self.clients.items())]

    async def close(self) -> None:
        await asyncio.gather(*(self._close(conn) for conn in list(self.clients)))
        for rest in self._rest.values():
            await rest.close()
        self._rest.clear()
