"""L3: the providers' REST quotes as the layered cache fetches them.

FYERS ``quotes`` (LTP, OHLC, best bid/ask, volume) and Upstox full quotes (the same plus
5-level depth, circuits and OI), each through its client's rate budget. A snapshot of more
symbols than the budget can carry asks for as many as fit (within the client's ``max_wait``)
and leaves the rest to L4, rather than none; a call that fits nothing raises the client's
``RateLimited`` before anything is sent. No Django.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from feeds.cache.l2 import tick_record
from feeds.cache.layers import L3Fetcher
from feeds.providers.fyers.rest import MAX_SYMBOLS_PER_QUOTES_CALL, FyersRestClient
from feeds.providers.rest import PartialRateLimited, RestClientBase
from feeds.providers.ticks import Tick
from feeds.providers.upstox.rest import MAX_KEYS_PER_QUOTE_CALL, UpstoxRestClient

logger = logging.getLogger(__name__)


def affordable(client: RestClientBase, symbols: int, per_call: int) -> int:
    """How many of ``symbols`` the client's budget takes now (0 when not one call fits)."""
    limiter = client.limiter
    # One client call may not need more requests than any window allows (limiter rule).
    calls = min(-(-symbols // per_call), *(w.limit for w in limiter.windows))
    while calls > 0 and limiter.delay_for(calls) > client.max_wait:
        calls -= 1
    return min(symbols, calls * per_call)


def rest_fetcher(client: RestClientBase) -> L3Fetcher:
    """The client's richest multi-symbol quote call, answering cache records."""
    call: Callable[[Sequence[str]], Awaitable[dict[str, Tick]]]
    if isinstance(client, FyersRestClient):
        call, per_call = client.quotes, MAX_SYMBOLS_PER_QUOTES_CALL
    elif isinstance(client, UpstoxRestClient):
        call, per_call = client.full_quotes, MAX_KEYS_PER_QUOTE_CALL
    else:
        raise TypeError(f"no L3 quote call for {type(client).__name__}")

    async def fetch(symbols: Sequence[str]) -> Mapping[str, dict[str, Any]]:
        wanted = list(dict.fromkeys(symbols))
        # Nothing fits: still ask for one call's worth, so the client refuses it (counted
        # in its stats) with its own RateLimited for the cache to log.
        count = affordable(client, len(wanted), per_call) or per_call
        if count < len(wanted):
            logger.debug("L3 %s: budget for %d of %d symbols", client.provider, count,
                         len(wanted))  # fmt: skip
        ticks: Mapping[str, Tick]
        try:
            ticks = await call(wanted[:count])
        except PartialRateLimited as exc:
            # The budget ran dry part-way (another user of the limiter): use what arrived.
            logger.debug("L3 %s: %s", client.provider, exc)
            ticks = exc.partial
        return {symbol: tick_record(tick) for symbol, tick in ticks.items()}

    return fetch
