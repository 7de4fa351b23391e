"""L3: the providers' REST quotes as the layered cache fetches them.

FYERS ``quotes`` (LTP, OHLC, best bid/ask, volume) and Upstox full quotes (the same plus
5-level depth, circuits and OI), each through its client's rate budget: a call that does not
fit raises ``RateLimited`` before anything is sent, and the cache falls through to L4. No
Django.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from feeds.cache.l2 import tick_record
from feeds.cache.layers import L3Fetcher
from feeds.providers.fyers.rest import FyersRestClient
from feeds.providers.rest import PartialRateLimited, RestClientBase
from feeds.providers.ticks import Tick
from feeds.providers.upstox.rest import UpstoxRestClient

logger = logging.getLogger(__name__)


def rest_fetcher(client: RestClientBase) -> L3Fetcher:
    """The client's richest multi-symbol quote call, answering cache records."""
    if isinstance(client, FyersRestClient):
        call = client.quotes
    elif isinstance(client, UpstoxRestClient):
        call = client.full_quotes
    else:
        raise TypeError(f"no L3 quote call for {type(client).__name__}")

    async def fetch(symbols: Sequence[str]) -> Mapping[str, dict[str, Any]]:
        ticks: Mapping[str, Tick]
        try:
            ticks = await call(list(symbols))
        except PartialRateLimited as exc:
            # Some chunks went out before the budget ran dry: use what arrived; the rest
            # of the symbols are L3 misses.
            logger.debug("L3 %s: %s", client.provider, exc)
            ticks = exc.partial
        return {symbol: tick_record(tick) for symbol, tick in ticks.items()}

    return fetch
